//! Connector settings: one section per connector *instance*, secrets by reference.
//!
//! A process names a connector as `<instance>.<operation>` (`kintone.get`,
//! `crm.request`); the settings of the instance (base URL, app, credentials) live in
//! the config file, never in the process or its variables. Credentials are
//! [`Secret`]s: a reference to an environment variable or a file, or (for local
//! trials) a literal in the config file. They are read when a call is made and are
//! never printed: `Debug` shows only where a secret comes from.
//!
//! ```yaml
//! connectors:
//!   kintone:                          # kintone.get, kintone.query, kintone.update, ...
//!     type: kintone
//!     base_url: https://example.cybozu.com
//!     app: 12
//!     token: { env: KINTONE_TOKEN }
//!   crm:                              # crm.request
//!     type: http
//!     base_url: https://crm.example.com/api/
//!     headers: { Authorization: { env: CRM_AUTH } }
//!   rakuraku:                         # rakuraku.import (Rakuraku Seisan CSV import)
//!     type: rakuraku
//!     base_url: https://example.rakurakuseisan.jp
//!     account: abc1234
//!     token: { env: RAKURAKU_TOKEN }
//!   mail:                             # mail.send over SMTP
//!     type: smtp
//!     host: smtp.example.com
//!     tls: starttls
//!     user: { env: SMTP_USER }
//!     password: { env: SMTP_PASSWORD }
//!     from: 'nagare <nagare@example.com>'
//!   pdf:                              # pdf.render, pdf.sign: run by external workers
//!     type: external                  # that poll POST /api/v1/jobs/activate
//!     operations: [render, sign]
//! ```

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config problem, said so that the person can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the config file {path} is not valid: {reason}")]
    Parse { path: String, reason: String },
    #[error("connector `{instance}`: {reason}")]
    Invalid { instance: String, reason: String },
    /// A secret could not be read. Says where it was looked for, never its value.
    #[error("secret `{what}` is not available: {reason}")]
    Secret { what: String, reason: String },
}

/// A credential, by reference. `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    /// `{ env: KINTONE_TOKEN }`: read from the environment at call time.
    Env { env: String },
    /// `{ file: /run/secrets/kintone }`: the file's content, trimmed.
    File { file: PathBuf },
    /// A literal in the config file (keep that file private).
    Value(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Env { env } => write!(f, "Secret(env {env})"),
            Secret::File { file } => write!(f, "Secret(file {})", file.display()),
            Secret::Value(_) => f.write_str("Secret(***)"),
        }
    }
}

impl Secret {
    /// Read the secret. `what` names it in the error (`connectors.kintone.token`).
    pub fn reveal(&self, what: &str) -> Result<String, ConfigError> {
        let err = |reason: String| ConfigError::Secret { what: what.to_string(), reason };
        let v = match self {
            Secret::Env { env } => {
                std::env::var(env).map_err(|_| err(format!("environment variable {env} is not set")))?
            }
            Secret::File { file } => std::fs::read_to_string(file)
                .map_err(|e| err(format!("cannot read {}: {e}", file.display())))?
                .trim()
                .to_string(),
            Secret::Value(v) => v.clone(),
        };
        if v.is_empty() {
            return Err(err("it is empty".into()));
        }
        Ok(v)
    }
}

/// The `connectors:` section of the config file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConnectorsConfig {
    #[serde(default)]
    pub connectors: IndexMap<String, InstanceConfig>,
}

/// One connector instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum InstanceConfig {
    #[cfg(feature = "kintone")]
    Kintone(KintoneConfig),
    #[cfg(feature = "http")]
    Http(HttpConfig),
    External(ExternalConfig),
    #[cfg(feature = "cloudsign")]
    Cloudsign(CloudsignConfig),
    #[cfg(feature = "rakuraku")]
    Rakuraku(crate::rakuraku::RakurakuConfig),
    #[cfg(feature = "mail")]
    Smtp(crate::mail::SmtpConfig),
}

/// Settings of a CloudSign connector instance (`cloudsign.*`): one API host, and the
/// client id of each user who sends documents (CloudSign's client id is a per-user
/// credential: documents are created and sent in that user's name).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudsignConfig {
    /// `https://api-sandbox.cloudsign.jp`, `https://api.cloudsign.jp`, or the
    /// emulator's `http://127.0.0.1:8082`.
    pub base_url: String,
    /// Client id per nagare user id: the call uses the one of its `user`.
    #[serde(default)]
    pub users: IndexMap<String, Secret>,
    /// Client id for calls whose user has none in `users` (optional; without it
    /// such a call is a business error `no_credential`).
    #[serde(default)]
    pub client_id: Option<Secret>,
    /// Per-request timeout (default 30s).
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Requests a minute per access token the client allows itself (default and
    /// largest 800, CloudSign's limit).
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
    /// Shared secret of `POST /hooks/cloudsign/{secret}` (or `?token=`).
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// Source addresses allowed to post the webhook without the secret (CloudSign
    /// sends from fixed addresses and signs nothing).
    #[serde(default)]
    pub webhook_allow: Vec<std::net::IpAddr>,
}

/// An instance whose operations are served by external workers (any language),
/// which activate their jobs over the HTTP API; the engine holds no code or
/// settings for them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    /// Operation names: `render` makes the connector `<instance>.render`.
    pub operations: Vec<String>,
}

/// Settings of a kintone connector instance: one app on one domain.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KintoneConfig {
    /// `https://example.cybozu.com` (or the emulator's `http://127.0.0.1:8081`).
    pub base_url: String,
    /// The app a call uses when its input names none.
    #[serde(default)]
    pub app: Option<u64>,
    /// API token(s) of the app: sent as `X-Cybozu-API-Token`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Password authentication (`X-Cybozu-Authorization`), when no token is set.
    #[serde(default)]
    pub user: Option<Secret>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// Per-request timeout (default 30s). The step's own `timeout:` bounds the whole call.
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Shared secret a kintone webhook must send as `?secret=` (optional).
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// The apps live in this guest space: requests go to `/k/guest/{space}/v1/`.
    #[serde(default)]
    pub guest_space: Option<u64>,
    /// The domain's Basic authentication, sent as `Authorization: Basic` besides
    /// the token or password.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
}

/// Login and password of a domain's Basic authentication (secret references).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub user: Secret,
    pub password: Secret,
}

/// Settings of an `http` connector instance.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Relative URLs in a call are resolved against this.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Headers sent with every call (credentials go here, by reference).
    #[serde(default)]
    pub headers: IndexMap<String, Secret>,
    /// Statuses that are business errors (`HTTP_<status>`); default: 4xx except
    /// 401, 403, 407, 408 and 429.
    #[serde(default)]
    pub business_statuses: Option<Vec<u16>>,
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
}

pub(crate) mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("`{s}`: {e}"))))
            .transpose()
    }
}

impl ConnectorsConfig {
    /// Read the `connectors:` section of a YAML file; other top-level keys are left
    /// to whoever owns them (the same file may configure the server).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { reason, .. } => ConfigError::Parse { path: path.display().to_string(), reason },
            other => other,
        })
    }

    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let parse = |reason: String| ConfigError::Parse { path: "(text)".into(), reason };
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| parse(e.to_string()))?;
        let section = match doc.get("connectors") {
            Some(s) => s.clone(),
            None => return Ok(ConnectorsConfig::default()),
        };
        let connectors: IndexMap<String, InstanceConfig> =
            serde_yaml::from_value(section).map_err(|e| parse(format!("in `connectors`: {e}")))?;
        let cfg = ConnectorsConfig { connectors };
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (name, c) in &self.connectors {
            let bad = |reason: &str| ConfigError::Invalid { instance: name.clone(), reason: reason.to_string() };
            if name.is_empty() || name.contains('.') || name.contains(char::is_whitespace) {
                return Err(bad("an instance name may not be empty or contain `.` or spaces"));
            }
            match c {
                #[cfg(feature = "kintone")]
                InstanceConfig::Kintone(k) => {
                    check_url(&k.base_url).map_err(|e| bad(&e))?;
                    if k.token.is_none() && (k.user.is_none() || k.password.is_none()) {
                        return Err(bad("set `token` (an API token) or both `user` and `password`"));
                    }
                }
                #[cfg(feature = "http")]
                InstanceConfig::Http(h) => {
                    if let Some(u) = &h.base_url {
                        check_url(u).map_err(|e| bad(&e))?;
                    }
                }
                #[cfg(feature = "cloudsign")]
                InstanceConfig::Cloudsign(c) => {
                    check_url(&c.base_url).map_err(|e| bad(&e))?;
                    if c.users.keys().any(|u| u.trim().is_empty()) {
                        return Err(bad("a user id in `users` may not be empty"));
                    }
                    if c.rate_per_minute.is_some_and(|r| r == 0 || r > 800) {
                        return Err(bad("`rate_per_minute` must be 1 to 800 (CloudSign blocks a token above 800)"));
                    }
                }
                #[cfg(feature = "rakuraku")]
                InstanceConfig::Rakuraku(r) => r.check().map_err(|e| bad(&e))?,
                #[cfg(feature = "mail")]
                InstanceConfig::Smtp(m) => m.check().map_err(|e| bad(&e))?,
                InstanceConfig::External(x) => {
                    if x.operations.is_empty() {
                        return Err(bad("list the operations workers serve, e.g. `operations: [render]`"));
                    }
                    if x.operations.iter().any(|o| o.is_empty() || o.contains(char::is_whitespace)) {
                        return Err(bad("an operation name may not be empty or contain spaces"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(feature = "http")]
pub(crate) fn check_url(u: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(u).map_err(|e| format!("base_url `{u}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("base_url `{u}` must start with https:// (or http:// for a local emulator)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_connectors_section_and_ignores_the_rest() {
        let cfg = ConnectorsConfig::from_yaml(
            r#"
users: { sato: { groups: [staff] } }
connectors:
  kintone:
    type: kintone
    base_url: http://127.0.0.1:8081
    app: 1
    token: { env: NAGARE_TEST_UNSET_TOKEN }
    timeout: 5s
  crm:
    type: http
    base_url: https://crm.example.com/api/
    headers: { Authorization: "Bearer literal" }
"#,
        )
        .unwrap();
        let InstanceConfig::Kintone(k) = &cfg.connectors["kintone"] else { panic!() };
        assert_eq!(k.app, Some(1));
        assert_eq!(k.timeout, Some(Duration::from_secs(5)));
        let err = k.token.as_ref().unwrap().reveal("connectors.kintone.token").unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret `connectors.kintone.token` is not available: environment variable NAGARE_TEST_UNSET_TOKEN is not set"
        );
        let InstanceConfig::Http(h) = &cfg.connectors["crm"] else { panic!() };
        assert_eq!(h.headers["Authorization"].reveal("x").unwrap(), "Bearer literal");
    }

    #[test]
    fn debug_never_shows_a_literal_secret() {
        let s = Secret::Value("hunter2".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let cfg = ConnectorsConfig::from_yaml(
            "connectors:\n  k:\n    type: kintone\n    base_url: http://x\n    token: hunter2\n",
        )
        .unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn external_instances_declare_worker_served_connectors() {
        let cfg = ConnectorsConfig::from_yaml("connectors:\n  pdf: { type: external, operations: [render, sign] }\n")
            .unwrap();
        let registry = crate::Connectors::new(&cfg).registry();
        assert!(registry.is_external("pdf.render") && registry.is_external("pdf.sign"));
        assert!(!registry.is_external("pdf.other") && registry.get("pdf.render").is_none());
        assert!(registry.names().contains(&"pdf.render".to_string()), "processes may use it");
        let e = ConnectorsConfig::from_yaml("connectors:\n  pdf: { type: external, operations: [] }\n").unwrap_err();
        assert!(e.to_string().contains("operations"), "{e}");
    }

    #[test]
    fn missing_credentials_and_bad_urls_are_refused() {
        let e = ConnectorsConfig::from_yaml("connectors:\n  k: { type: kintone, base_url: http://x }\n").unwrap_err();
        assert!(e.to_string().contains("set `token`"), "{e}");
        let e = ConnectorsConfig::from_yaml("connectors:\n  k: { type: kintone, base_url: ftp://x, token: t }\n")
            .unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = ConnectorsConfig::from_yaml("connectors:\n  k: { type: kintone, base_url: http://x, tokn: t }\n")
            .unwrap_err();
        assert!(e.to_string().contains("tokn"), "{e}");
    }
}
