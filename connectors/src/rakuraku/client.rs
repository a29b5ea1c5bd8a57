//! The Rakuraku Seisan CSV import client: one `POST {base}/{account}/api/v1/csvimport`.
//!
//! The request is `multipart/form-data` (reqwest writes the boundary) with a `json`
//! part holding the parameters and an `uploadFile` part holding the Shift_JIS CSV;
//! the API token goes in `X-RS-apitoken`. Each request first takes a slot from the
//! account's [`Limiter`] (20 a minute by default). Answers:
//!
//! - 2xx whose body starts `Status: 503 Maintenance mode` (how Rakuraku answers
//!   during maintenance): retry later, never success;
//! - 2xx with JSON: the service's answer, returned as is;
//! - 2xx with anything else: retry later (an HTML page is not an import result);
//! - 401/403/407: fatal (fix the token); 404: fatal (fix `base_url`/`account`);
//!   408/429/5xx and no answer: retry;
//!   other 4xx: the service refused this file, a business error `RAKURAKU_<code>`.

use super::limiter::Limiter;
use super::RakurakuConfig;
use crate::http_error::{self, host_of, snippet};
use nagare_engine::ConnectorError;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The first line of the maintenance answer.
pub const MAINTENANCE_MARK: &str = "Status: 503 Maintenance mode";

/// A client for one account, with its token read from the settings.
pub struct Client {
    url: reqwest::Url,
    host: String,
    account_key: String,
    token: String,
    timeout: Duration,
    per_minute: usize,
    http: reqwest::Client,
    limiter: Arc<Limiter>,
}

impl Client {
    /// Build from settings, reading the token now. `instance` names the settings in errors.
    pub fn new(
        cfg: &RakurakuConfig,
        instance: &str,
        http: reqwest::Client,
        limiter: Arc<Limiter>,
    ) -> Result<Client, ConnectorError> {
        let fatal = |m: String| ConnectorError::Fatal(m);
        let base =
            reqwest::Url::parse(&cfg.base_url).map_err(|e| fatal(format!("connectors.{instance}.base_url: {e}")))?;
        let url = base
            .join(&format!("{}/{}/api/v1/csvimport", base.path().trim_end_matches('/'), cfg.account))
            .map_err(|e| fatal(format!("connectors.{instance}.account: {e}")))?;
        let token = cfg.token.reveal(&format!("connectors.{instance}.token")).map_err(|e| fatal(e.to_string()))?;
        Ok(Client {
            host: host_of(&url),
            account_key: format!("{}/{}", host_of(&url), cfg.account),
            url,
            token,
            timeout: cfg.timeout.unwrap_or(Duration::from_secs(120)),
            per_minute: cfg.per_minute(),
            http,
            limiter,
        })
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Send one file. `key` is sent as `Idempotency-Key` (the emulator answers a
    /// repeated key with the first result; the real service is not known to).
    pub async fn import(
        &self,
        params: &Value,
        csv: Vec<u8>,
        file_name: &str,
        key: &str,
    ) -> Result<Value, ConnectorError> {
        self.limiter.acquire(&self.account_key, self.per_minute).await;
        let file = reqwest::multipart::Part::bytes(csv)
            .file_name(file_name.to_string())
            .mime_str("text/csv")
            .expect("text/csv is a MIME type");
        let json = reqwest::multipart::Part::text(params.to_string())
            .mime_str("application/json")
            .expect("application/json is a MIME type");
        let form = reqwest::multipart::Form::new().part("json", json).part("uploadFile", file);
        let resp = self
            .http
            .post(self.url.clone())
            .header("X-RS-apitoken", &self.token)
            .header("Idempotency-Key", key)
            .multipart(form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| http_error::transport(&e, &self.host))?;
        let status = resp.status().as_u16();
        let retry_after = http_error::retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| http_error::transport(&e, &self.host))?;
        classify(&self.host, status, &text, retry_after)
    }
}

/// Whether a body is Rakuraku's maintenance answer.
pub fn is_maintenance(body: &str) -> bool {
    let head = body.trim_start_matches('\u{feff}').trim_start();
    head.starts_with(MAINTENANCE_MARK) || head.lines().next().is_some_and(|l| l.contains("Maintenance mode"))
}

/// An answer as a result or a classified error.
pub fn classify(host: &str, status: u16, body: &str, retry_after: Option<Duration>) -> Result<Value, ConnectorError> {
    if (200..300).contains(&status) {
        if is_maintenance(body) {
            return Err(ConnectorError::Retryable(format!(
                "{host}: Rakuraku Seisan is in maintenance (`{MAINTENANCE_MARK}`); nothing was imported, retry later"
            )));
        }
        return serde_json::from_str(body).map_err(|_| {
            ConnectorError::Retryable(format!("{host}: HTTP {status} but not an import result: {}", snippet(body, 200)))
        });
    }
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = json.get("code").and_then(Value::as_str).map(str::to_string);
    let message = json.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| snippet(body, 300));
    let mut text = format!("Rakuraku Seisan HTTP {status}");
    if let Some(c) = &code {
        text.push_str(&format!(" {c}"));
    }
    text.push_str(&format!(": {message}"));
    if let Some(errs) = json.get("errors").filter(|e| !e.is_null()) {
        text.push_str(&format!("; errors: {}", snippet(&errs.to_string(), 2000)));
    }
    if http_error::is_auth_status(status) {
        Err(ConnectorError::Fatal(format!(
            "{text} — check the API token (`X-RS-apitoken`) of the connector, then retry"
        )))
    } else if status == 404 {
        Err(ConnectorError::Fatal(format!("{text} — check `base_url` and `account` of the connector (the import URL is {host}/<account>/api/v1/csvimport)")))
    } else if http_error::is_retryable_status(status) {
        Err(http_error::retryable(text, retry_after))
    } else {
        Err(ConnectorError::Business {
            code: format!("RAKURAKU_{}", code.unwrap_or_else(|| format!("HTTP_{status}"))),
            message: text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_is_never_success() {
        let body = "Status: 503 Maintenance mode\r\nContent-Type: text/html\r\n\r\n<html>メンテナンス中</html>";
        assert!(
            matches!(classify("h", 200, body, None), Err(ConnectorError::Retryable(m)) if m.contains("maintenance"))
        );
        assert!(matches!(classify("h", 200, "<html>login</html>", None), Err(ConnectorError::Retryable(_))));
        assert_eq!(classify("h", 200, r#"{"status":"success"}"#, None).unwrap()["status"], "success");
    }

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(classify("h", 401, "{}", None), Err(ConnectorError::Fatal(_))));
        assert!(matches!(
            classify("h", 429, "{}", Some(Duration::from_secs(5))),
            Err(ConnectorError::RetryAfter { .. })
        ));
        let e = classify("h", 400, r#"{"code":"E_COLUMN","message":"列がありません","errors":[{"row":2}]}"#, None);
        assert!(
            matches!(&e, Err(ConnectorError::Business { code, message }) if code == "RAKURAKU_E_COLUMN" && message.contains("列がありません") && message.contains("\"row\":2")),
            "{e:?}"
        );
    }
}
