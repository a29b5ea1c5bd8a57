//! A local SMTP sink: receives mail over a real SMTP conversation and keeps it
//! where a test or a person can read it.
//!
//! `nagare emulate smtp --data DIR` serves SMTP and an HTTP listing; tests use
//! [`Sink::in_memory`] and [`Sink::serve_smtp`]. It speaks `EHLO`/`HELO`,
//! `AUTH PLAIN` (accepting any login unless [`Sink::require_login`] sets one),
//! `MAIL FROM`, `RCPT TO`, `DATA` (dot-unstuffed), `RSET`, `NOOP` and `QUIT`;
//! no `STARTTLS` (use `tls: none` towards it). Each mail is written to
//! `DIR/<n>.eml` as received (with `X-Envelope-From`/`X-Envelope-To` added at the
//! top) and listed by `GET /mails` as JSON: decoded subject, from, to, text, html,
//! attachments ([`super::mime`]). `GET /mails/{n}/raw` gives the .eml,
//! `DELETE /mails` forgets them.
//!
//! Limits: lines of 4,096 bytes, mails of 25 MB, 100 recipients, 10 minutes of
//! silence per connection, the last 1,000 mails in memory (older .eml files stay
//! on disk).

use super::mime::{self, Parsed};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

pub const MAX_LINE: usize = 4096;
pub const MAX_MAIL_BYTES: usize = 25 << 20;
pub const MAX_RCPT: usize = 100;
const KEEP: usize = 1000;
const IDLE: Duration = Duration::from_secs(600);

/// One mail received.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    pub id: u64,
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    /// Who logged in with `AUTH PLAIN`, if anyone.
    pub login: Option<String>,
    #[serde(flatten)]
    pub mail: Parsed,
    #[serde(skip)]
    pub raw: Vec<u8>,
}

struct Inner {
    dir: Option<PathBuf>,
    mails: Mutex<VecDeque<Received>>,
    next: Mutex<u64>,
    login: Mutex<Option<(String, String)>>,
}

/// The sink. Cheap to clone; clones share the mailbox.
#[derive(Clone)]
pub struct Sink {
    inner: Arc<Inner>,
}

impl Sink {
    pub fn in_memory() -> Sink {
        Self::with(None, Vec::new())
    }

    /// Open `dir`, listing the .eml files already there.
    pub fn open(dir: &Path) -> std::io::Result<Sink> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(|e| {
                let p = e.ok()?.path();
                let n = p.file_stem()?.to_str()?.parse().ok()?;
                (p.extension()? == "eml").then_some((n, p))
            })
            .collect();
        found.sort();
        let skip = found.len().saturating_sub(KEEP);
        let mut mails = Vec::new();
        for (n, p) in found.into_iter().skip(skip) {
            let raw = std::fs::read(&p)?;
            mails.push(received(n, &raw, None));
        }
        Ok(Self::with(Some(dir.to_path_buf()), mails))
    }

    fn with(dir: Option<PathBuf>, mails: Vec<Received>) -> Sink {
        let next = mails.last().map_or(1, |m| m.id + 1);
        Sink {
            inner: Arc::new(Inner {
                dir,
                mails: Mutex::new(mails.into()),
                next: Mutex::new(next),
                login: Mutex::new(None),
            }),
        }
    }

    /// Accept `AUTH PLAIN` only with this user and password (and require it).
    pub fn require_login(&self, user: &str, password: &str) {
        *self.inner.login.lock().unwrap_or_else(|p| p.into_inner()) = Some((user.into(), password.into()));
    }

    /// The mails received, oldest first.
    pub fn mails(&self) -> Vec<Received> {
        self.inner.mails.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.inner.mails.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn store(&self, from: String, to: Vec<String>, login: Option<String>, data: Vec<u8>) -> std::io::Result<u64> {
        let id = {
            let mut n = self.inner.next.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n - 1
        };
        let mut raw = format!("X-Envelope-From: <{from}>\r\nX-Envelope-To: {}\r\n", to.join(", ")).into_bytes();
        raw.extend_from_slice(&data);
        if let Some(dir) = &self.inner.dir {
            std::fs::write(dir.join(format!("{id:06}.eml")), &raw)?;
        }
        let mut r = received(id, &raw, login);
        r.envelope_from = from;
        r.envelope_to = to;
        let mut mails = self.inner.mails.lock().unwrap_or_else(|p| p.into_inner());
        if mails.len() >= KEEP {
            mails.pop_front();
        }
        mails.push_back(r);
        Ok(id)
    }

    /// Serve SMTP on `listener` until `shutdown` completes.
    pub async fn serve_smtp(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => { tracing::warn!(error = %e, "smtp sink: accept failed"); continue; }
                    };
                    let sink = self.clone();
                    tokio::spawn(async move {
                        let (r, w) = stream.into_split();
                        if let Err(e) = sink.session(r, w).await {
                            tracing::debug!(%peer, error = %e, "smtp sink: session ended");
                        }
                    });
                }
            }
        }
    }

    /// One SMTP conversation.
    pub async fn session<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(&self, r: R, mut w: W) -> std::io::Result<()> {
        let mut r = BufReader::new(r);
        reply(&mut w, "220 nagare-sink ESMTP ready").await?;
        let required = self.inner.login.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (mut from, mut to, mut login): (Option<String>, Vec<String>, Option<String>) = (None, Vec::new(), None);
        loop {
            let Some(line) = read_line(&mut r).await? else { return Ok(()) };
            let upper = line.to_ascii_uppercase();
            let verb = upper.split_whitespace().next().unwrap_or("");
            match verb {
                "EHLO" => {
                    reply(&mut w, &format!("250-nagare-sink\r\n250-AUTH PLAIN\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE {MAX_MAIL_BYTES}")).await?
                }
                "HELO" => reply(&mut w, "250 nagare-sink").await?,
                "AUTH" => {
                    let mut words = line.split_whitespace().skip(1);
                    if !words.next().is_some_and(|m| m.eq_ignore_ascii_case("PLAIN")) {
                        reply(&mut w, "504 5.5.4 only AUTH PLAIN").await?;
                        continue;
                    }
                    let token = match words.next() {
                        Some(t) => t.to_string(),
                        None => {
                            reply(&mut w, "334 ").await?;
                            read_line(&mut r).await?.unwrap_or_default()
                        }
                    };
                    match plain_login(&token) {
                        Some((u, p)) if required.as_ref().is_none_or(|(ru, rp)| *ru == u && *rp == p) => {
                            login = Some(u);
                            reply(&mut w, "235 2.7.0 Authentication successful").await?;
                        }
                        _ => reply(&mut w, "535 5.7.8 Authentication credentials invalid").await?,
                    }
                }
                "MAIL" if required.is_some() && login.is_none() => {
                    reply(&mut w, "530 5.7.0 Authentication required").await?
                }
                "MAIL" => match path_arg(&line, "FROM:") {
                    Some(a) => {
                        (from, to) = (Some(a), Vec::new());
                        reply(&mut w, "250 2.1.0 OK").await?
                    }
                    None => reply(&mut w, "501 5.5.4 MAIL FROM:<address>").await?,
                },
                "RCPT" if from.is_none() => reply(&mut w, "503 5.5.1 MAIL first").await?,
                "RCPT" => match path_arg(&line, "TO:") {
                    Some(_) if to.len() >= MAX_RCPT => reply(&mut w, "452 4.5.3 too many recipients").await?,
                    Some(a) if a.contains('@') => {
                        to.push(a);
                        reply(&mut w, "250 2.1.5 OK").await?
                    }
                    _ => reply(&mut w, "553 5.1.3 RCPT TO:<user@domain>").await?,
                },
                "DATA" if to.is_empty() => reply(&mut w, "503 5.5.1 RCPT first").await?,
                "DATA" => {
                    reply(&mut w, "354 End data with <CR><LF>.<CR><LF>").await?;
                    let mut data = Vec::new();
                    let mut too_big = false;
                    loop {
                        let Some(l) = read_line(&mut r).await? else { return Ok(()) };
                        if l == "." {
                            break;
                        }
                        let l = l.strip_prefix('.').unwrap_or(&l);
                        if data.len() + l.len() + 2 > MAX_MAIL_BYTES {
                            too_big = true;
                            continue;
                        }
                        data.extend_from_slice(l.as_bytes());
                        data.extend_from_slice(b"\r\n");
                    }
                    let env_from = from.take().unwrap_or_default();
                    let env_to = std::mem::take(&mut to);
                    if too_big {
                        reply(&mut w, &format!("552 5.3.4 message larger than {MAX_MAIL_BYTES} bytes")).await?;
                        continue;
                    }
                    match self.store(env_from, env_to, login.clone(), data) {
                        Ok(id) => reply(&mut w, &format!("250 2.0.0 OK queued as {id}")).await?,
                        Err(e) => reply(&mut w, &format!("451 4.3.0 cannot store the mail: {e}")).await?,
                    }
                }
                "RSET" => {
                    (from, to) = (None, Vec::new());
                    reply(&mut w, "250 2.0.0 OK").await?
                }
                "NOOP" => reply(&mut w, "250 2.0.0 OK").await?,
                "QUIT" => {
                    reply(&mut w, "221 2.0.0 Bye").await?;
                    return Ok(());
                }
                "STARTTLS" => reply(&mut w, "454 4.7.0 TLS not available (use tls: none)").await?,
                _ => reply(&mut w, "500 5.5.2 unknown command").await?,
            }
        }
    }

    /// The HTTP listing.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/mails", get(list).delete(clear))
            .route("/mails/{id}/raw", get(raw))
            .with_state(self.clone())
    }
}

async fn reply<W: AsyncWrite + Unpin>(w: &mut W, s: &str) -> std::io::Result<()> {
    w.write_all(format!("{s}\r\n").as_bytes()).await
}

fn received(id: u64, raw: &[u8], login: Option<String>) -> Received {
    let mail = mime::parse(raw);
    let (hdr, _) = raw.split_at(raw.len().min(4096));
    let text = String::from_utf8_lossy(hdr);
    let env = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().trim_matches(['<', '>']).to_string())
    };
    Received {
        id,
        envelope_from: env("X-Envelope-From:").unwrap_or_default(),
        envelope_to: env("X-Envelope-To:").map(|v| v.split(", ").map(str::to_string).collect()).unwrap_or_default(),
        login,
        mail,
        raw: raw.to_vec(),
    }
}

/// One line without its ending; `None` at end of stream. Too-long lines and
/// silence end the session.
async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = tokio::time::timeout(IDLE, (&mut *r).take(MAX_LINE as u64 + 2).read_until(b'\n', &mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// `MAIL FROM:<a@b> SIZE=…` → `a@b`.
fn path_arg(line: &str, key: &str) -> Option<String> {
    let at = line.to_ascii_uppercase().find(key)? + key.len();
    let rest = line[at..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some(rest[..end].to_string())
}

/// `AUTH PLAIN` token → (user, password).
fn plain_login(token: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let mut parts = bytes.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let pass = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((user, pass))
}

async fn list(State(sink): State<Sink>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "mails": sink.mails() }))
}

async fn clear(State(sink): State<Sink>) -> StatusCode {
    sink.clear();
    StatusCode::NO_CONTENT
}

async fn raw(State(sink): State<Sink>, UrlPath(id): UrlPath<u64>) -> Response {
    match sink.mails().into_iter().find(|m| m.id == id) {
        Some(m) => ([("content-type", "message/rfc822")], m.raw).into_response(),
        None => {
            (StatusCode::NOT_FOUND, Json(serde_json::json!({"code": "not_found", "message": format!("no mail {id}")})))
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_conversation_by_hand() {
        let sink = Sink::in_memory();
        sink.require_login("u", "p");
        let script = "EHLO me\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN AHUAeA==\r\nAUTH PLAIN AHUAcA==\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
        let mut out = Vec::new();
        sink.session(script.as_bytes(), &mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        let codes: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
        assert_eq!(
            codes,
            ["220", "250", "250", "250", "250", "250", "530", "535", "235", "250", "250", "354", "250", "221"]
        );
        let m = &sink.mails()[0];
        assert_eq!((m.envelope_from.as_str(), m.envelope_to.clone()), ("a@b", vec!["c@d".to_string()]));
        assert_eq!(m.mail.subject, "hi");
        assert_eq!(m.mail.text.as_deref(), Some(".dot"), "dot-unstuffed");
        assert_eq!(m.login.as_deref(), Some("u"));
    }
}
