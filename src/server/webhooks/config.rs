//! The `webhooks:` section of the config file (`--config`, `./nagare.yaml`): where
//! `nagare serve` posts the engine's events.
//!
//! ```yaml
//! webhooks:
//!   - url: https://app.example.com/hooks/nagare
//!     secret: { env: NAGARE_WEBHOOK_SECRET }   # or { file: ... }, or a literal
//!     events: [instance_completed, task_opened] # default: every event
//!     processes: [expense-approval]             # default: every process
//!     timeout: 10s                              # per attempt
//!     attempts: 8                               # then the event is dropped (logged)
//!     backoff: 1s                               # first wait; doubles, at most 5m
//!     queue: 1000                               # events waiting; beyond, the oldest are dropped
//! ```

use nagare_connectors::{ConfigError, Secret};
use nagare_engine::EventKind;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// Most endpoints a server posts to.
pub const MAX_WEBHOOKS: usize = 16;
/// Shortest secret accepted (bytes): a guessable secret signs nothing.
pub const MIN_SECRET_LEN: usize = 16;
/// Default and largest attempts per event.
pub const DEFAULT_ATTEMPTS: u32 = 8;
pub const MAX_ATTEMPTS: u32 = 20;
/// Default and largest events waiting per endpoint (each holds its JSON body).
pub const DEFAULT_QUEUE: usize = 1000;
pub const MAX_QUEUE: usize = 100_000;
/// Default per-attempt timeout; the largest is [`MAX_TIMEOUT`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Default first wait between attempts; waits double up to [`MAX_BACKOFF`].
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One endpoint, as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to `POST` (http or https).
    pub url: String,
    /// Key of the HMAC-SHA256 signature (at least [`MIN_SECRET_LEN`] bytes).
    pub secret: Secret,
    /// Event types to send ([`EventKind::NAMES`]); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only events of these process ids; empty: all.
    #[serde(default)]
    pub processes: Vec<String>,
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default, with = "opt_duration")]
    pub backoff: Option<Duration>,
    #[serde(default)]
    pub queue: Option<usize>,
}

/// An endpoint checked and with its secret read: what the dispatcher runs on.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Vec<u8>,
    pub events: Vec<String>,
    pub processes: Vec<String>,
    pub timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
    pub queue: usize,
}

impl Webhook {
    /// A webhook for `url` with every default (tests and embedding code).
    pub fn new(url: impl Into<String>, secret: impl Into<Vec<u8>>) -> Webhook {
        Webhook {
            url: url.into(),
            secret: secret.into(),
            events: Vec::new(),
            processes: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            backoff: DEFAULT_BACKOFF,
            queue: DEFAULT_QUEUE,
        }
    }

    /// Whether an event of `process` with type `name` goes to this endpoint.
    pub fn wants(&self, name: &str, process: &str) -> bool {
        (self.events.is_empty() || self.events.iter().any(|e| e == name))
            && (self.processes.is_empty() || self.processes.iter().any(|p| p == process))
    }
}

/// Read the `webhooks:` section of a YAML config file (none: no webhooks).
pub fn from_file(path: &Path) -> Result<Vec<Webhook>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
    from_yaml(&text).map_err(|e| match e {
        ConfigError::Parse { reason, .. } => ConfigError::Parse { path: path.display().to_string(), reason },
        other => other,
    })
}

/// Read the `webhooks:` section of a YAML text, check it and read the secrets.
pub fn from_yaml(text: &str) -> Result<Vec<Webhook>, ConfigError> {
    let parse = |reason: String| ConfigError::Parse { path: "(text)".into(), reason };
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| parse(e.to_string()))?;
    let Some(section) = doc.get("webhooks") else { return Ok(Vec::new()) };
    let configs: Vec<WebhookConfig> =
        serde_yaml::from_value(section.clone()).map_err(|e| parse(format!("in `webhooks`: {e}")))?;
    if configs.len() > MAX_WEBHOOKS {
        return Err(parse(format!("`webhooks` lists {} endpoints; at most {MAX_WEBHOOKS}", configs.len())));
    }
    configs.iter().enumerate().map(|(i, c)| check(i, c)).collect()
}

fn check(i: usize, c: &WebhookConfig) -> Result<Webhook, ConfigError> {
    let bad = |reason: String| ConfigError::Invalid { instance: format!("webhooks[{i}]"), reason };
    let url = reqwest::Url::parse(&c.url).map_err(|e| bad(format!("url `{}` is not a URL: {e}", c.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!("url `{}` must start with https:// (or http://)", c.url)));
    }
    if let Some(e) = c.events.iter().find(|e| !EventKind::NAMES.contains(&e.as_str())) {
        return Err(bad(format!("unknown event `{e}`; events are {}", EventKind::NAMES.join(", "))));
    }
    let secret = c.secret.reveal(&format!("webhooks[{i}].secret"))?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(bad(format!(
            "the secret has {} bytes; use at least {MIN_SECRET_LEN} (e.g. `nagare token`'s)",
            secret.len()
        )));
    }
    let within = |what: &str, d: Option<Duration>, default: Duration, max: Duration| match d {
        None => Ok(default),
        Some(d) if !d.is_zero() && d <= max => Ok(d),
        Some(d) => Err(bad(format!("`{what}` {d:?} is out of range: more than 0 and at most {max:?}"))),
    };
    let attempts = c.attempts.unwrap_or(DEFAULT_ATTEMPTS);
    if !(1..=MAX_ATTEMPTS).contains(&attempts) {
        return Err(bad(format!("`attempts` must be 1 to {MAX_ATTEMPTS}")));
    }
    let queue = c.queue.unwrap_or(DEFAULT_QUEUE);
    if !(1..=MAX_QUEUE).contains(&queue) {
        return Err(bad(format!("`queue` must be 1 to {MAX_QUEUE}")));
    }
    Ok(Webhook {
        url: c.url.clone(),
        secret: secret.into_bytes(),
        events: c.events.clone(),
        processes: c.processes.clone(),
        timeout: within("timeout", c.timeout, DEFAULT_TIMEOUT, MAX_TIMEOUT)?,
        attempts,
        backoff: within("backoff", c.backoff, DEFAULT_BACKOFF, MAX_BACKOFF)?,
        queue,
    })
}

mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("`{s}`: {e}"))))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_webhooks_section_with_defaults() {
        let hooks = from_yaml(
            "connectors: {}\nwebhooks:\n  - url: http://127.0.0.1:9/h\n    secret: 0123456789abcdef\n    events: [task_opened]\n    backoff: 10ms\n",
        )
        .unwrap();
        assert_eq!(hooks.len(), 1);
        let h = &hooks[0];
        assert_eq!((h.attempts, h.queue, h.timeout), (DEFAULT_ATTEMPTS, DEFAULT_QUEUE, DEFAULT_TIMEOUT));
        assert_eq!(h.backoff, Duration::from_millis(10));
        assert!(h.wants("task_opened", "any") && !h.wants("task_completed", "any"));
        assert!(from_yaml("connectors: {}\n").unwrap().is_empty());
    }

    #[test]
    fn bad_webhooks_are_refused_saying_which_and_why() {
        let err = |yaml: &str| from_yaml(yaml).unwrap_err().to_string();
        let e = err("webhooks:\n  - { url: ftp://x, secret: 0123456789abcdef }\n");
        assert!(e.contains("webhooks[0]") && e.contains("https://"), "{e}");
        let e = err("webhooks:\n  - { url: http://x, secret: 0123456789abcdef, events: [task_open] }\n");
        assert!(e.contains("unknown event `task_open`"), "{e}");
        let e = err("webhooks:\n  - { url: http://x, secret: short }\n");
        assert!(e.contains("at least 16"), "{e}");
        let e = err("webhooks:\n  - { url: http://x, secret: { env: NAGARE_TEST_UNSET_HOOK } }\n");
        assert!(e.contains("NAGARE_TEST_UNSET_HOOK"), "{e}");
        let e = err("webhooks:\n  - { url: http://x, secret: 0123456789abcdef, attempts: 0 }\n");
        assert!(e.contains("attempts"), "{e}");
        let e = err("webhooks:\n  - { url: http://x, secret: 0123456789abcdef, retries: 3 }\n");
        assert!(e.contains("retries"), "{e}");
    }
}
