//! The CloudSign Web API client: the access token, the request limiter, and the
//! endpoints the connector uses.
//!
//! Paths, bodies and error shapes follow the official OpenAPI (0.31.0): bodies are
//! `application/x-www-form-urlencoded` except the file upload (multipart) and
//! `PUT /documents/{id}/attribute` (JSON); errors are `{error, message}`. A client
//! is built per call with the caller's client id; tokens and limiter windows live
//! in [`Shared`], which outlives calls. The client id and tokens go only into
//! request bodies and headers, never into errors or logs.

use super::limiter::Window;
use super::multipart::{self, Part};
use crate::http_error::{self, host_of, snippet};
use nagare_engine::ConnectorError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Documents CloudSign returns per page of `GET /documents`.
pub const PAGE: usize = 100;
/// How long CloudSign blocks a token that went over 800 requests a minute: the
/// wait after a 429 that says no `Retry-After`.
pub const BLOCKED_FOR: Duration = Duration::from_secs(60);
/// A token is renewed this long before CloudSign says it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// A failed CloudSign request.
#[derive(Debug, Clone, PartialEq)]
pub enum CsError {
    /// CloudSign answered with an error status (and usually `{error, message}`).
    Api { status: u16, kind: Option<String>, message: String, retry_after: Option<Duration> },
    /// No answer, or the request could not be made; already classified.
    Other(ConnectorError),
}

impl CsError {
    pub fn status(&self) -> Option<u16> {
        match self {
            CsError::Api { status, .. } => Some(*status),
            CsError::Other(_) => None,
        }
    }

    /// `CloudSign not_acceptable (HTTP 403): message`
    pub fn describe(&self) -> String {
        match self {
            CsError::Api { status, kind, message, .. } => {
                format!("CloudSign {} (HTTP {status}): {message}", kind.as_deref().unwrap_or("error"))
            }
            CsError::Other(e) => e.to_string(),
        }
    }
}

/// Statuses that are CloudSign refusing this request: business errors a process
/// may catch by CloudSign's `error` kind (`not_acceptable`, `too_large_request`...).
const BUSINESS_STATUSES: &[u16] = &[400, 403, 404, 409, 413, 415];

impl From<CsError> for ConnectorError {
    fn from(e: CsError) -> Self {
        let text = e.describe();
        match e {
            CsError::Other(c) => c,
            CsError::Api { status: 429, retry_after, .. } => {
                // CloudSign blocks a token for a minute once it is over its limit.
                http_error::retryable(text, Some(retry_after.unwrap_or(BLOCKED_FOR)))
            }
            CsError::Api { status, retry_after, .. } if http_error::is_retryable_status(status) => {
                http_error::retryable(text, retry_after)
            }
            CsError::Api { status: 401, .. } => ConnectorError::Fatal(format!(
                "{text} — the access token was refused even after a new one was issued; check the user's client id"
            )),
            CsError::Api { status, kind, .. } if BUSINESS_STATUSES.contains(&status) => {
                ConnectorError::Business { code: kind.unwrap_or_else(|| format!("HTTP_{status}")), message: text }
            }
            CsError::Api { .. } => ConnectorError::Fatal(text),
        }
    }
}

#[derive(Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

/// State shared by every call of one connector instance: access tokens by client
/// id and the limiter window of each token. Keys are SHA-256 digests, so the
/// secrets themselves are held only as long as a call runs.
pub struct Shared {
    tokens: Mutex<HashMap<String, Token>>,
    windows: Mutex<HashMap<String, Window>>,
    rate: u32,
}

impl Shared {
    pub fn new(rate_per_minute: u32) -> Shared {
        Shared { tokens: Mutex::new(HashMap::new()), windows: Mutex::new(HashMap::new()), rate: rate_per_minute }
    }

    /// Wait until the token may send one more request.
    async fn throttle(&self, token: &str) {
        let key = super::files::sha256_hex(token.as_bytes());
        loop {
            let wait = {
                let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
                if w.len() > 10_000 {
                    // Tokens of the past; a window is a minute long, so dropping all is safe enough.
                    w.clear();
                }
                w.entry(key.clone()).or_insert_with(|| Window::new(self.rate)).acquire(Instant::now())
            };
            match wait {
                None => return,
                Some(d) => {
                    tracing::info!(wait_ms = d.as_millis() as u64, "CloudSign request limit reached; waiting");
                    tokio::time::sleep(d).await;
                }
            }
        }
    }
}

/// A request body.
pub enum Body {
    None,
    Form(Vec<(String, String)>),
    Json(Value),
    Multipart(Vec<Part>),
}

/// A client for one CloudSign host with one client id.
pub struct Client {
    base: reqwest::Url,
    host: String,
    client_id: String,
    timeout: Duration,
    http: reqwest::Client,
    shared: Arc<Shared>,
}

impl Client {
    pub fn new(
        base: reqwest::Url,
        client_id: String,
        timeout: Duration,
        http: reqwest::Client,
        shared: Arc<Shared>,
    ) -> Client {
        Client { host: host_of(&base), base, client_id, timeout, http, shared }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        let mut u = self.base.clone();
        let joined = format!("{}/{}", u.path().trim_end_matches('/'), path.trim_start_matches('/'));
        u.set_path(&joined);
        u
    }

    fn cache_key(&self) -> String {
        format!("{}|{}", self.host, super::files::sha256_hex(self.client_id.as_bytes()))
    }

    fn transport(&self, e: reqwest::Error) -> CsError {
        CsError::Other(http_error::transport(&e, &self.host))
    }

    /// The access token: cached until shortly before it expires, `POST /token` otherwise.
    async fn token(&self, renew: bool) -> Result<String, CsError> {
        let key = self.cache_key();
        if !renew {
            let cached = self.shared.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
            if let Some(t) = cached.filter(|t| Instant::now() < t.renew_at) {
                return Ok(t.value);
            }
        }
        let req = self.http.post(self.url("token")).form(&[("client_id", self.client_id.as_str())]);
        let (_, bytes) = self.finish(req).await?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let value = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                CsError::Other(ConnectorError::Retryable(format!(
                    "{}: POST /token answered without access_token",
                    self.host
                )))
            })?
            .to_string();
        let secs = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        let renew_at = Instant::now() + Duration::from_secs(secs).saturating_sub(EXPIRY_MARGIN);
        let mut tokens = self.shared.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() > 10_000 {
            tokens.clear();
        }
        tokens.insert(key, Token { value: value.clone(), renew_at });
        tracing::debug!(host = %self.host, expires_in = secs, "CloudSign access token issued");
        Ok(value)
    }

    /// Send and read the answer; an error status becomes [`CsError::Api`].
    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), CsError> {
        let resp = req.timeout(self.timeout).send().await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let retry_after = http_error::retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?.to_vec();
        if (200..300).contains(&status) {
            return Ok((status, bytes));
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        Err(CsError::Api {
            status,
            kind: s("error"),
            message: s("message").unwrap_or_else(|| snippet(&String::from_utf8_lossy(&bytes), 300)),
            retry_after,
        })
    }

    /// One API request with the access token; on 401 a new token is issued and the
    /// request sent once more.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: &Body,
    ) -> Result<Vec<u8>, CsError> {
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            self.shared.throttle(&token).await;
            let mut req = self
                .http
                .request(method.clone(), self.url(path))
                .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"));
            if !query.is_empty() {
                req = req.query(query);
            }
            req = match body {
                Body::None => req,
                Body::Form(f) => req.form(f),
                Body::Json(v) => req.json(v),
                Body::Multipart(parts) => {
                    // A boundary from the content's hash cannot occur in that content.
                    let mut h = Vec::new();
                    for p in parts {
                        h.extend_from_slice(super::files::sha256_hex(&p.data).as_bytes());
                    }
                    let boundary = format!("nagare-{}", &super::files::sha256_hex(&h)[..32]);
                    let (bytes, ct) = multipart::build(&boundary, parts);
                    req.header(reqwest::header::CONTENT_TYPE, ct).body(bytes)
                }
            };
            match self.finish(req).await {
                Err(CsError::Api { status: 401, .. }) if !renewed => {
                    tracing::info!(host = %self.host, "CloudSign refused the access token; issuing a new one");
                    renewed = true;
                }
                other => return other.map(|(_, b)| b),
            }
        }
    }

    /// `GET` a file, handing the body to `chunk` as it arrives (never whole in
    /// memory); `chunk` answers `false` to stop (the caller keeps why). Token
    /// renewal on 401 as [`Client::raw`]. Returns the bytes read.
    pub async fn download(&self, path: &str, chunk: &mut (dyn FnMut(&[u8]) -> bool + Send)) -> Result<u64, CsError> {
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            self.shared.throttle(&token).await;
            let req = self
                .http
                .get(self.url(path))
                .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"))
                .timeout(self.timeout);
            let mut resp = req.send().await.map_err(|e| self.transport(e))?;
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                let retry_after = http_error::retry_after(resp.headers());
                let bytes = resp.bytes().await.map_err(|e| self.transport(e))?.to_vec();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
                let e = CsError::Api {
                    status,
                    kind: s("error"),
                    message: s("message").unwrap_or_else(|| snippet(&String::from_utf8_lossy(&bytes), 300)),
                    retry_after,
                };
                if status == 401 && !renewed {
                    renewed = true;
                    continue;
                }
                return Err(e);
            }
            let mut n = 0u64;
            while let Some(bytes) = resp.chunk().await.map_err(|e| self.transport(e))? {
                n += bytes.len() as u64;
                if !chunk(&bytes) {
                    break;
                }
            }
            return Ok(n);
        }
    }

    /// Who this client is, without the secret: the host and a digest of the client
    /// id (keys the import state of one integration).
    pub fn identity(&self) -> String {
        super::files::sha256_hex(self.cache_key().as_bytes())[..24].to_string()
    }

    /// A request whose answer is JSON (an empty answer is `null`).
    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: &Body,
    ) -> Result<Value, CsError> {
        let bytes = self.raw(method, path, query, body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            CsError::Other(ConnectorError::Retryable(format!(
                "{}: the answer is not JSON ({e}): {}",
                self.host,
                snippet(&String::from_utf8_lossy(&bytes), 200)
            )))
        })
    }

    /// `GET /documents/{id}`.
    pub async fn document(&self, id: &str) -> Result<Value, CsError> {
        self.json(reqwest::Method::GET, &format!("documents/{}", seg(id)), &[], &Body::None).await
    }

    /// `GET /documents?status=&page=`: documents of the client's user, newest
    /// first, at most `max`, following pages of [`PAGE`].
    /// `light`: without files and participants (`with_files=n`, `with_participants=n`).
    pub async fn list(&self, status: Option<u8>, max: usize, light: bool) -> Result<(Vec<Value>, u64), CsError> {
        let mut out = Vec::new();
        let mut total = 0;
        for page in 1.. {
            let mut q = vec![("page", page.to_string())];
            if light {
                q.push(("with_files", "n".into()));
                q.push(("with_participants", "n".into()));
            }
            if let Some(s) = status {
                q.push(("status", s.to_string()));
            }
            let v = self.json(reqwest::Method::GET, "documents", &q, &Body::None).await?;
            total = v.get("total").and_then(Value::as_u64).unwrap_or(0);
            let docs = v.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
            let n = docs.len();
            out.extend(docs);
            if n < PAGE || out.len() >= max || out.len() as u64 >= total {
                break;
            }
        }
        out.truncate(max);
        Ok((out, total))
    }
}

/// A path segment from an id: only what CloudSign ids contain (letters, digits, `-`, `_`).
pub fn seg(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, kind: &str) -> CsError {
        CsError::Api { status, kind: Some(kind.into()), message: "m".into(), retry_after: None }
    }

    #[test]
    fn classification_by_status() {
        assert!(matches!(ConnectorError::from(api(500, "internal_server_error")), ConnectorError::Retryable(_)));
        let e = CsError::Api {
            status: 429,
            kind: Some("too_many_requests".into()),
            message: "m".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(
            matches!(ConnectorError::from(e), ConnectorError::RetryAfter { after, .. } if after == Duration::from_secs(3))
        );
        assert!(
            matches!(ConnectorError::from(api(429, "too_many_requests")), ConnectorError::RetryAfter { after, .. } if after == BLOCKED_FOR),
            "without Retry-After, CloudSign's one-minute block"
        );
        assert_eq!(
            ConnectorError::from(api(403, "not_acceptable")),
            ConnectorError::Business {
                code: "not_acceptable".into(),
                message: "CloudSign not_acceptable (HTTP 403): m".into()
            }
        );
        assert!(
            matches!(ConnectorError::from(api(413, "too_large_request")), ConnectorError::Business { code, .. } if code == "too_large_request")
        );
        assert!(matches!(ConnectorError::from(api(401, "unauthorized")), ConnectorError::Fatal(_)));
        assert!(matches!(ConnectorError::from(api(405, "method_not_allowed")), ConnectorError::Fatal(_)));
    }

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(seg("../token?x=1"), "tokenx1");
        assert_eq!(seg("2f0c-aa_1"), "2f0c-aa_1");
    }
}
