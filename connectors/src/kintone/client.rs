//! The kintone REST client: the endpoints the connector and the watcher use.
//!
//! Paths, headers, status codes and error bodies follow the kintone REST API
//! (`/k/v1/record.json`, `/k/v1/records.json`, `/k/v1/record/status.json`).
//! Credentials are read from the settings for each client (one per call) and go
//! only into request headers; errors carry kintone's `code`, `id`, `message` and
//! `errors`, never a header.

use super::query;
use crate::config::KintoneConfig;
use crate::http_error::{self, host_of, snippet};
use base64::Engine as _;
use nagare_engine::ConnectorError;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Records fetched per request when reading all matches.
pub const PAGE: u64 = 500;

/// A failed kintone request.
#[derive(Debug, Clone, PartialEq)]
pub enum KintoneError {
    /// kintone answered with an error body (or a bare status).
    Api {
        status: u16,
        code: Option<String>,
        id: Option<String>,
        message: String,
        errors: Option<Value>,
        retry_after: Option<Duration>,
    },
    /// No answer, or the request could not be made; already classified.
    Other(ConnectorError),
}

impl KintoneError {
    pub fn code(&self) -> Option<&str> {
        match self {
            KintoneError::Api { code, .. } => code.as_deref(),
            KintoneError::Other(_) => None,
        }
    }

    /// `kintone GAIA_RE01 (HTTP 404, id: x): message; errors: {...}`
    pub fn describe(&self) -> String {
        match self {
            KintoneError::Api { status, code, id, message, errors, .. } => {
                let mut s = format!("kintone {} (HTTP {status}", code.as_deref().unwrap_or("error"));
                if let Some(id) = id {
                    s.push_str(&format!(", id: {id}"));
                }
                s.push_str(&format!("): {message}"));
                if let Some(e) = errors {
                    s.push_str(&format!("; errors: {e}"));
                }
                s
            }
            KintoneError::Other(e) => e.to_string(),
        }
    }
}

/// Codes that mean the credentials or their rights must be fixed: retrying as is
/// cannot help. kintone sends some of them with HTTP 520 or 400, so the code
/// decides, not the status.
const AUTH_CODES: &[&str] = &["GAIA_IA02", "CB_AU01", "CB_NO02", "GAIA_NO01", "CB_WA01"];

impl From<KintoneError> for ConnectorError {
    fn from(e: KintoneError) -> Self {
        let text = e.describe();
        match e {
            KintoneError::Other(c) => c,
            KintoneError::Api { status, code, retry_after, .. } => {
                let code_s = code.as_deref().unwrap_or("");
                if AUTH_CODES.contains(&code_s) || http_error::is_auth_status(status) {
                    ConnectorError::Fatal(format!("{text} — check the API token or user of the connector, then retry"))
                } else if code_s == "GAIA_AP01" {
                    ConnectorError::Fatal(format!("{text} — check `app` in the connector settings or the step"))
                } else if http_error::is_retryable_status(status) {
                    http_error::retryable(text, retry_after)
                } else if let Some(code) = code {
                    ConnectorError::Business { code, message: text }
                } else {
                    ConnectorError::Fatal(text)
                }
            }
        }
    }
}

enum Auth {
    Token(String),
    Password(String),
}

/// A client for one kintone domain with one set of credentials.
pub struct Client {
    base: reqwest::Url,
    host: String,
    auth: Auth,
    /// `Authorization: Basic ...` of a domain with Basic authentication.
    basic: Option<String>,
    /// `k/v1/` or a guest space's `k/guest/{space}/v1/`.
    api: String,
    timeout: Duration,
    http: reqwest::Client,
}

impl Client {
    /// Build from settings, reading the secrets now. `instance` names the settings in errors.
    pub fn new(cfg: &KintoneConfig, instance: &str, http: reqwest::Client) -> Result<Client, ConnectorError> {
        let base = reqwest::Url::parse(&cfg.base_url)
            .map_err(|e| ConnectorError::Fatal(format!("connectors.{instance}.base_url: {e}")))?;
        let secret = |s: &crate::config::Secret, what: &str| {
            s.reveal(&format!("connectors.{instance}.{what}")).map_err(|e| ConnectorError::Fatal(e.to_string()))
        };
        let auth = match (&cfg.token, &cfg.user, &cfg.password) {
            (Some(t), _, _) => Auth::Token(secret(t, "token")?),
            (None, Some(u), Some(p)) => {
                let pair = format!("{}:{}", secret(u, "user")?, secret(p, "password")?);
                Auth::Password(base64::engine::general_purpose::STANDARD.encode(pair))
            }
            _ => {
                return Err(ConnectorError::Fatal(format!(
                    "connectors.{instance}: set `token` or both `user` and `password`"
                )))
            }
        };
        let basic = match &cfg.basic_auth {
            None => None,
            Some(b) => {
                let pair =
                    format!("{}:{}", secret(&b.user, "basic_auth.user")?, secret(&b.password, "basic_auth.password")?);
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
        };
        let api = match cfg.guest_space {
            Some(space) => format!("k/guest/{space}/v1/"),
            None => "k/v1/".to_string(),
        };
        Ok(Client {
            host: host_of(&base),
            base,
            auth,
            basic,
            api,
            timeout: cfg.timeout.unwrap_or(Duration::from_secs(30)),
            http,
        })
    }

    /// The URL of `path` (`k/v1/record.json`), in the guest space if configured.
    fn url(&self, path: &str) -> reqwest::Url {
        let path = match path.strip_prefix("k/v1/") {
            Some(rest) => format!("{}{rest}", self.api),
            None => path.to_string(),
        };
        self.base.join(&path).unwrap_or_else(|_| self.base.clone())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, KintoneError> {
        let req = match &self.auth {
            Auth::Token(t) => req.header("X-Cybozu-API-Token", t),
            Auth::Password(p) => req.header("X-Cybozu-Authorization", p),
        };
        let req = match &self.basic {
            Some(b) => req.header("Authorization", b),
            None => req,
        };
        let resp = req
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| KintoneError::Other(http_error::transport(&e, &self.host)))?;
        let status = resp.status().as_u16();
        let retry_after = http_error::retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| KintoneError::Other(http_error::transport(&e, &self.host)))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| {
                KintoneError::Other(ConnectorError::Retryable(format!(
                    "{}: the answer is not JSON ({e}): {}",
                    self.host,
                    snippet(&text, 200)
                )))
            });
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        Err(KintoneError::Api {
            status,
            code: s("code"),
            id: s("id"),
            message: s("message").unwrap_or_else(|| snippet(&text, 300)),
            errors: body.get("errors").filter(|e| !e.is_null()).cloned(),
            retry_after,
        })
    }

    /// `GET /k/v1/record.json`: one record in kintone's shape.
    pub async fn get_record(&self, app: u64, id: u64) -> Result<Map<String, Value>, KintoneError> {
        let req = self.http.get(self.url("k/v1/record.json")).query(&[("app", app), ("id", id)]);
        let v = self.send(req).await?;
        Ok(v.get("record").and_then(Value::as_object).cloned().unwrap_or_default())
    }

    /// `GET /k/v1/records.json`: one page of a query.
    pub async fn get_records(
        &self,
        app: u64,
        query: &str,
        fields: &[String],
    ) -> Result<Vec<Map<String, Value>>, KintoneError> {
        let mut params: Vec<(String, String)> = vec![("app".into(), app.to_string()), ("query".into(), query.into())];
        for (i, f) in fields.iter().enumerate() {
            params.push((format!("fields[{i}]"), f.clone()));
        }
        let req = self.http.get(self.url("k/v1/records.json")).query(&params);
        let v = self.send(req).await?;
        Ok(v.get("records")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|r| r.as_object().cloned()).collect())
            .unwrap_or_default())
    }

    /// Every record matching `cond` (a condition without `order by`/`limit`), in
    /// `$id` order, at most `max`. Pages by `$id > last` rather than by `offset`,
    /// so it is not bound by kintone's 10,000 offset limit and a record added
    /// meanwhile is neither skipped nor read twice.
    pub async fn query_all(
        &self,
        app: u64,
        cond: &str,
        fields: &[String],
        max: usize,
    ) -> Result<Vec<Map<String, Value>>, KintoneError> {
        let mut out = Vec::new();
        let mut last: u64 = 0;
        let mut fields = fields.to_vec();
        if !fields.is_empty() && !fields.iter().any(|f| f == "$id") {
            fields.push("$id".into());
        }
        loop {
            let limit = PAGE.min((max - out.len()) as u64);
            let filter =
                if cond.trim().is_empty() { format!("$id > {last}") } else { format!("({cond}) and $id > {last}") };
            let page = self.get_records(app, &format!("{filter} order by $id asc limit {limit}"), &fields).await?;
            let n = page.len() as u64;
            for r in page {
                if let Some(id) = record_id(&r) {
                    last = last.max(id);
                }
                out.push(r);
            }
            if n < limit || out.len() >= max {
                return Ok(out);
            }
        }
    }

    /// Records matching a full query (with its own `order by`), paging by `offset`
    /// up to kintone's offset limit.
    pub async fn query_ordered(
        &self,
        app: u64,
        q: &query::Query,
        src_cond: &str,
        fields: &[String],
        max: usize,
    ) -> Result<Vec<Map<String, Value>>, KintoneError> {
        let order: Vec<String> =
            q.order.iter().map(|(f, asc)| format!("{f} {}", if *asc { "asc" } else { "desc" })).collect();
        let mut out = Vec::new();
        let mut offset = q.offset.unwrap_or(0);
        let cap = q.limit.map(|l| l as usize).unwrap_or(max).min(max);
        while out.len() < cap && offset <= query::MAX_OFFSET {
            let limit = PAGE.min((cap - out.len()) as u64);
            let text = format!("{src_cond} order by {} limit {limit} offset {offset}", order.join(", "));
            let page = self.get_records(app, text.trim_start(), fields).await?;
            let n = page.len() as u64;
            out.extend(page);
            offset += n;
            if n < limit {
                break;
            }
        }
        Ok(out)
    }

    /// `POST /k/v1/file.json` (multipart) → the fileKey to put in a FILE field.
    pub async fn upload_file(&self, name: &str, content_type: &str, bytes: Vec<u8>) -> Result<String, KintoneError> {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str(content_type)
            .map_err(|e| KintoneError::Other(ConnectorError::Fatal(format!("content type `{content_type}`: {e}"))))?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let v = self.send(self.http.post(self.url("k/v1/file.json")).multipart(form)).await?;
        Ok(text(&v["fileKey"]))
    }

    /// `POST /k/v1/record.json` → (id, revision).
    pub async fn add_record(&self, app: u64, record: Map<String, Value>) -> Result<(String, String), KintoneError> {
        let req = self.http.post(self.url("k/v1/record.json")).json(&json!({ "app": app, "record": record }));
        let v = self.send(req).await?;
        Ok((text(&v["id"]), text(&v["revision"])))
    }

    /// `PUT /k/v1/record.json` → new revision. `revision: None` means no check.
    pub async fn update_record(
        &self,
        app: u64,
        id: u64,
        record: &Map<String, Value>,
        revision: Option<i64>,
    ) -> Result<String, KintoneError> {
        let mut body = json!({ "app": app, "id": id, "record": record });
        if let Some(r) = revision {
            body["revision"] = json!(r);
        }
        let v = self.send(self.http.put(self.url("k/v1/record.json")).json(&body)).await?;
        Ok(text(&v["revision"]))
    }

    /// `PUT /k/v1/record/status.json` → new revision.
    pub async fn update_status(
        &self,
        app: u64,
        id: u64,
        action: &str,
        assignee: Option<&str>,
        revision: Option<i64>,
    ) -> Result<String, KintoneError> {
        let mut body = json!({ "app": app, "id": id, "action": action });
        if let Some(a) = assignee {
            body["assignee"] = json!(a);
        }
        if let Some(r) = revision {
            body["revision"] = json!(r);
        }
        let v = self.send(self.http.put(self.url("k/v1/record/status.json")).json(&body)).await?;
        Ok(text(&v["revision"]))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A record's `$id` as a number.
pub fn record_id(r: &Map<String, Value>) -> Option<u64> {
    r.get("$id")?.get("value")?.as_str()?.parse().ok()
}

/// A record's `$revision` as a number.
pub fn record_revision(r: &Map<String, Value>) -> Option<i64> {
    r.get("$revision")?.get("value")?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> KintoneError {
        KintoneError::Api {
            status,
            code: Some(code.into()),
            id: Some("abc".into()),
            message: "m".into(),
            errors: None,
            retry_after: None,
        }
    }

    #[test]
    fn classification_goes_by_code_first() {
        assert!(matches!(ConnectorError::from(api(520, "GAIA_IA02")), ConnectorError::Fatal(_)));
        assert!(matches!(ConnectorError::from(api(520, "CB_UN01")), ConnectorError::Retryable(_)));
        assert!(matches!(ConnectorError::from(api(429, "X")), ConnectorError::Retryable(_)));
        assert!(matches!(ConnectorError::from(api(404, "GAIA_AP01")), ConnectorError::Fatal(_)));
        assert_eq!(
            ConnectorError::from(api(404, "GAIA_RE01")),
            ConnectorError::Business {
                code: "GAIA_RE01".into(),
                message: "kintone GAIA_RE01 (HTTP 404, id: abc): m".into()
            }
        );
    }
}
