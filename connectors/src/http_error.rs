//! How HTTP failures become connector errors, shared by every HTTP-based connector.
//!
//! The rule (README, "Connectors"): no answer, connection refused, timeouts, 5xx,
//! 408 and 429 are worth retrying; 401, 403 and 407 mean the credentials must be
//! fixed first (fatal); other 4xx are the service refusing this request, which a
//! connector reports as a business error with a code or as fatal. Messages name the
//! host and what went wrong, never headers or credentials.

use nagare_engine::ConnectorError;
use reqwest::header::HeaderMap;
use std::time::Duration;

/// Statuses worth a retry whatever the service says.
pub fn is_retryable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Statuses that mean the credentials or their rights are wrong.
pub fn is_auth_status(status: u16) -> bool {
    matches!(status, 401 | 403 | 407)
}

/// `Retry-After` in seconds (the HTTP-date form is read too).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let now = chrono::Utc::now();
    (when.with_timezone(&chrono::Utc) - now).to_std().ok()
}

/// A retryable error. With a `Retry-After`, the engine waits at least that long
/// before the next attempt, and the message says so.
pub fn retryable(message: String, after: Option<Duration>) -> ConnectorError {
    match after {
        Some(after) => ConnectorError::RetryAfter {
            message: format!("{message} (the service asked to retry after {})", humantime::format_duration(after)),
            after,
        },
        None => ConnectorError::Retryable(message),
    }
}

/// A failure before any HTTP answer: refused, reset, DNS, timeout, bad URL.
pub fn transport(e: &reqwest::Error, host: &str) -> ConnectorError {
    // The URL is left out on purpose (a query string may carry data); the cause
    // chain says what happened ("Connection refused").
    let mut cause = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    let what = if e.is_timeout() {
        "no answer in time".to_string()
    } else if e.is_connect() {
        format!("cannot connect ({cause})")
    } else if e.is_builder() {
        return ConnectorError::Fatal(format!("cannot build the request to {host}: {cause}"));
    } else if e.is_decode() || e.is_body() {
        format!("the answer could not be read ({cause})")
    } else {
        format!("request failed ({cause})")
    };
    ConnectorError::Retryable(format!("{host}: {what}"))
}

/// Host and port of a URL, for messages.
pub fn host_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.scheme().to_string(),
    }
}

/// At most `max` characters of a response body, for error texts.
pub fn snippet(body: &str, max: usize) -> String {
    let t = body.trim();
    if t.chars().count() <= max {
        t.to_string()
    } else {
        let cut: String = t.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let e = retryable("HTTP 429".into(), retry_after(&h));
        assert_eq!(
            e,
            ConnectorError::RetryAfter {
                message: "HTTP 429 (the service asked to retry after 7s)".into(),
                after: Duration::from_secs(7)
            }
        );
    }

    #[test]
    fn status_classes() {
        assert!(is_retryable_status(503) && is_retryable_status(429) && is_retryable_status(408));
        assert!(!is_retryable_status(404));
        assert!(is_auth_status(401) && is_auth_status(403) && !is_auth_status(404));
    }

    #[test]
    fn snippet_cuts_long_bodies() {
        assert_eq!(snippet("  short ", 10), "short");
        assert_eq!(snippet("あいうえおかきくけこさ", 10), "あいうえおかきくけこ…");
    }
}
