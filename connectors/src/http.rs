//! `http.request`: call any HTTP service from a service step.
//!
//! Input (`with:`): `method` (default GET), `url` (absolute, or relative to the
//! instance's `base_url`), `headers`, `query`, and one body: `json`, `form` (URL
//! encoded) or `body` (text). `business_statuses` and `accept_statuses` override
//! the error rules for one step. Output: `{status, headers, body}`, the body parsed
//! when the answer is JSON, text otherwise.
//!
//! Errors follow [`crate::http_error`]: 5xx/408/429 and network failures retry,
//! 401/403/407 are fatal, other 4xx are business errors `HTTP_<status>` the process
//! can catch (unless the config or step narrows which statuses count as business).
//! Non-GET calls carry `Idempotency-Key` (stable across retries of one call).

use crate::config::HttpConfig;
use crate::http_error::{self, host_of, snippet};
use crate::settings::Settings;
use nagare_engine::connector::BoxFuture;
use nagare_engine::{Call, Connector, ConnectorError};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Largest response body read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 8 << 20;

/// One `http` connector instance (`http.request`, or `<name>.request`).
pub struct HttpConnector {
    name: String,
    settings: Settings<HttpConfig>,
    client: reqwest::Client,
}

impl HttpConnector {
    pub fn new(name: &str, settings: Settings<HttpConfig>) -> Self {
        HttpConnector { name: name.to_string(), settings, client: client() }
    }
}

/// The HTTP client every connector uses: rustls, no proxy lookup, bounded redirects.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("nagare/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("the HTTP client builds (TLS roots are compiled in)")
}

fn fatal(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::Fatal(msg.into())
}

fn statuses(v: Option<&Value>, what: &str) -> Result<Option<Vec<u16>>, ConnectorError> {
    let Some(v) = v else { return Ok(None) };
    let list = v.as_array().ok_or_else(|| fatal(format!("`{what}` must be a list of HTTP statuses")))?;
    list.iter()
        .map(|s| {
            s.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| fatal(format!("`{what}`: `{s}` is not an HTTP status")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl HttpConnector {
    async fn run(&self, call: &Call) -> Result<Value, ConnectorError> {
        let cfg = self.settings.get();
        let input = call.input.as_object().cloned().unwrap_or_default();
        let method_name = input.get("method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method_name.as_bytes())
            .map_err(|_| fatal(format!("`method: {method_name}` is not an HTTP method")))?;
        let raw_url = input.get("url").and_then(Value::as_str).ok_or_else(|| fatal("`url` is missing"))?;
        let url = match (reqwest::Url::parse(raw_url), &cfg.base_url) {
            (Ok(u), _) => u,
            (Err(_), Some(base)) => reqwest::Url::parse(base)
                .and_then(|b| b.join(raw_url))
                .map_err(|e| fatal(format!("`url: {raw_url}` cannot be joined to the base URL: {e}")))?,
            (Err(e), None) => {
                return Err(fatal(format!(
                    "`url: {raw_url}` is not an absolute URL ({e}) and connector `{}` has no base_url",
                    self.name
                )))
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(fatal(format!("`url` must be http or https, not `{}`", url.scheme())));
        }
        let host = host_of(&url);
        let mut req = self.client.request(method.clone(), url.clone());
        if let Some(t) = cfg.timeout {
            req = req.timeout(t);
        }
        for (name, secret) in &cfg.headers {
            let value =
                secret.reveal(&format!("connectors.{}.headers.{name}", self.name)).map_err(|e| fatal(e.to_string()))?;
            req = req.header(name.as_str(), value);
        }
        if let Some(h) = input.get("headers") {
            let h = h.as_object().ok_or_else(|| fatal("`headers` must be a map"))?;
            for (k, v) in h {
                req = req.header(k.as_str(), text(v));
            }
        }
        if let Some(q) = input.get("query") {
            let q = q.as_object().ok_or_else(|| fatal("`query` must be a map"))?;
            let pairs: Vec<(String, String)> = q.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            req = req.query(&pairs);
        }
        let bodies = ["json", "form", "body"].iter().filter(|k| input.contains_key(**k)).count();
        if bodies > 1 {
            return Err(fatal("give only one of `json`, `form` and `body`"));
        }
        if let Some(j) = input.get("json") {
            req = req.json(j);
        } else if let Some(f) = input.get("form") {
            let f = f.as_object().ok_or_else(|| fatal("`form` must be a map"))?;
            let pairs: Vec<(String, String)> = f.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            req = req.form(&pairs);
        } else if let Some(b) = input.get("body") {
            req = req.body(text(b));
        }
        if !matches!(method, reqwest::Method::GET | reqwest::Method::HEAD | reqwest::Method::OPTIONS) {
            req = req.header("Idempotency-Key", header_safe(&call.idempotency_key));
        }

        let mut resp = req.send().await.map_err(|e| http_error::transport(&e, &host))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| http_error::transport(&e, &host))? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(fatal(format!("{host}: the answer is larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        let is_json = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"));
        let body_text = String::from_utf8_lossy(&bytes).into_owned();
        let body = if is_json {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(body_text.clone()))
        } else {
            Value::String(body_text.clone())
        };

        let accept = statuses(input.get("accept_statuses"), "accept_statuses")?.unwrap_or_default();
        if (200..300).contains(&status) || accept.contains(&status) {
            let mut hmap = Map::new();
            for (k, v) in &headers {
                if let Ok(v) = v.to_str() {
                    hmap.insert(k.as_str().to_string(), Value::String(v.to_string()));
                }
            }
            return Ok(json!({ "status": status, "headers": hmap, "body": body }));
        }
        let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let message = format!("{method} {host}{}: HTTP {status} {reason}: {}", url.path(), snippet(&body_text, 300));
        if http_error::is_retryable_status(status) {
            return Err(http_error::retryable(message, http_error::retry_after(&headers)));
        }
        if http_error::is_auth_status(status) {
            return Err(fatal(format!("{message} (check the credentials of connector `{}`)", self.name)));
        }
        let business = statuses(input.get("business_statuses"), "business_statuses")?
            .or_else(|| cfg.business_statuses.clone())
            .map(|list| list.contains(&status))
            .unwrap_or((400..500).contains(&status));
        if business {
            Err(ConnectorError::Business { code: format!("HTTP_{status}"), message })
        } else {
            Err(fatal(message))
        }
    }
}

impl Connector for HttpConnector {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(self.run(call))
    }
}

/// `key` as a header value of visible ASCII only: every byte outside
/// `A-Z a-z 0-9 - . _ ~ / :` percent-encoded (UTF-8), so `1a2b/5/督促/7` goes as
/// `1a2b/5/%E7%9D%A3%E4%BF%83/7`. Strict proxies refuse raw UTF-8 in headers; the
/// encoding is one-to-one, so distinct keys stay distinct.
pub fn header_safe(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod header_tests {
    use super::header_safe;

    #[test]
    fn idempotency_key_header_is_percent_encoded_ascii() {
        let v = header_safe("1a2b/5/督促/7");
        assert_eq!(v, "1a2b/5/%E7%9D%A3%E4%BF%83/7");
        assert!(reqwest::header::HeaderValue::from_str(&v).is_ok_and(|h| h.to_str().is_ok()));
        assert_eq!(header_safe("a%b c"), "a%25b%20c", "`%` itself is encoded: one-to-one");
        assert_eq!(header_safe("9f/12/notify-1.x_y~z:3"), "9f/12/notify-1.x_y~z:3");
    }
}
