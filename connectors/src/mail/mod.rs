//! `mail.send`: mail over SMTP (lettre), and a local SMTP sink for tests and demos.
//!
//! Input (`with:`): `to` (an address or a list; `山田 太郎 <yamada@example.com>`
//! works), `cc`?, `bcc`?, `reply_to`?, `from`? (default: the instance's `from`),
//! `subject`, and `text` and/or `html`; `attachments`? a list of `file` variable
//! values (read from the blob store) or `{name,
//! content_type, content_base64}`. Subjects and display names are encoded per RFC
//! 2047 (UTF-8), file names per RFC 2231 (lettre does both). Result:
//! `{message_id, recipients}`. The `Message-ID` is made from the call's
//! idempotency key, so a retried send has the same id and a receiver can drop
//! the second copy.
//!
//! Errors: no answer, refused connection, timeouts and 4xx replies retry; a
//! rejected login is fatal (fix the credentials); another 5xx reply (an address
//! refused, say) is the business error `MAIL_REJECTED`; bad input is fatal.

pub mod mime;
#[cfg(feature = "emulators")]
pub mod sink;

use crate::config::Secret;
use crate::settings::Settings;
use base64::Engine as _;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use nagare_engine::connector::BoxFuture;
use nagare_engine::{Call, Connector, ConnectorError, Registry};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Most recipients of one mail (to + cc + bcc).
pub const MAX_RECIPIENTS: usize = 100;
/// Most bytes of all attachments of one mail (before base64).
pub const MAX_ATTACHMENT_BYTES: usize = 20 << 20;
/// Longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 998;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (a local relay or the sink).
    None,
    /// Plain connect, then `STARTTLS`, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Settings of an `smtp` connector instance.
///
/// ```yaml
/// connectors:
///   mail:
///     type: smtp
///     host: smtp.example.com
///     port: 587                 # default: 25 / 587 / 465 by `tls`
///     tls: starttls             # none | starttls | tls
///     user: { env: SMTP_USER }
///     password: { env: SMTP_PASSWORD }
///     from: '経理部 <keiri@example.com>'
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    #[serde(default)]
    pub user: Option<Secret>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// The sender when a step gives none.
    pub from: String,
    /// Per-send timeout (default 60s).
    #[serde(default, with = "crate::config::opt_duration")]
    pub timeout: Option<Duration>,
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        })
    }

    /// The settings' own rules (called by the config loader).
    pub fn check(&self) -> Result<(), String> {
        if self.host.trim().is_empty() || self.host.contains(['/', ' ', ':']) {
            return Err(format!("`host` `{}` must be a host name or address (the port goes in `port`)", self.host));
        }
        self.from.parse::<Mailbox>().map_err(|e| format!("`from` `{}` is not an address: {e}", self.from))?;
        if self.user.is_some() != self.password.is_some() {
            return Err("set both `user` and `password`, or neither".into());
        }
        if self.user.is_some() && self.tls == TlsMode::None && !is_loopback(&self.host) {
            return Err("a password would travel in clear text: use `tls: starttls` or `tls: tls`".into());
        }
        Ok(())
    }
}

/// `mail.send` of one connector instance.
pub struct MailConnector {
    instance: String,
    settings: Settings<Option<SmtpConfig>>,
    /// Where the content of attached `file` variables comes from.
    blobs: std::sync::Arc<dyn crate::cloudsign::files::BlobSource>,
}

/// Register `<name>.send` (settings `None`: not configured; a call says how to configure it).
pub fn register(
    registry: &mut Registry,
    name: &str,
    settings: Settings<Option<SmtpConfig>>,
    blobs: std::sync::Arc<dyn crate::cloudsign::files::BlobSource>,
) {
    registry.register(format!("{name}.send"), MailConnector { instance: name.to_string(), settings, blobs });
}

/// Attachments given as `file` variables (`{name, content_type, size, sha256}`) read
/// from the blob store into the `{name, content_type, content_base64}` form, so a
/// process can attach an uploaded file as it is. The size limit applies as to any
/// attachment.
fn resolve_file_attachments(
    input: &mut Map<String, Value>,
    blobs: &dyn crate::cloudsign::files::BlobSource,
) -> Result<(), ConnectorError> {
    let Some(Value::Array(list)) = input.get_mut("attachments") else { return Ok(()) };
    let mut total = 0usize;
    for (i, a) in list.iter_mut().enumerate() {
        let Some(sha) = a.get("sha256").and_then(Value::as_str).filter(|_| a.get("content_base64").is_none()) else {
            continue;
        };
        let declared = a.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
        if total + declared > MAX_ATTACHMENT_BYTES {
            return Err(fatal(format!("attachments are larger than {MAX_ATTACHMENT_BYTES} bytes together")));
        }
        let bytes = blobs.open(sha).map_err(|e| fatal(format!("attachments[{i}]: {e}")))?;
        total += bytes.len();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let mut out = Map::new();
        out.insert("name".into(), a.get("name").cloned().unwrap_or(Value::Null));
        out.insert("content_type".into(), a.get("content_type").cloned().unwrap_or(Value::Null));
        out.insert("content_base64".into(), Value::String(encoded));
        *a = Value::Object(out);
    }
    Ok(())
}

fn fatal(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::Fatal(msg.into())
}

/// One address or a list of them.
fn mailboxes(input: &Map<String, Value>, key: &str) -> Result<Vec<Mailbox>, ConnectorError> {
    let items: Vec<&Value> = match input.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
    };
    items
        .into_iter()
        .map(|v| {
            let s = v.as_str().ok_or_else(|| fatal(format!("`{key}`: {v} is not an address")))?;
            s.trim().parse::<Mailbox>().map_err(|e| fatal(format!("`{key}`: `{s}` is not an address ({e})")))
        })
        .collect()
}

/// A Message-ID from the idempotency key: the same for every retry of one call.
fn message_id(key: &str, from: &Mailbox) -> String {
    let local: String =
        key.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '.' }).collect();
    format!("<{local}.nagare@{}>", from.email.domain())
}

/// Build the message from a step's input; with its Message-ID.
pub fn build_message(
    input: &Map<String, Value>,
    default_from: &str,
    key: &str,
) -> Result<(Message, String), ConnectorError> {
    let from = match input.get("from").and_then(Value::as_str) {
        Some(f) => f.parse::<Mailbox>().map_err(|e| fatal(format!("`from`: `{f}` is not an address ({e})")))?,
        None => default_from.parse::<Mailbox>().map_err(|e| fatal(format!("the connector's `from`: {e}")))?,
    };
    let (to, cc, bcc) = (mailboxes(input, "to")?, mailboxes(input, "cc")?, mailboxes(input, "bcc")?);
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(fatal("no recipient: give `to` (an address or a list)"));
    }
    if to.len() + cc.len() + bcc.len() > MAX_RECIPIENTS {
        return Err(fatal(format!("more than {MAX_RECIPIENTS} recipients in one mail")));
    }
    let subject = input.get("subject").and_then(Value::as_str).unwrap_or("");
    if subject.chars().count() > MAX_SUBJECT_CHARS || subject.contains(['\r', '\n']) {
        return Err(fatal(format!("`subject` must be one line of at most {MAX_SUBJECT_CHARS} characters")));
    }
    let mut b = Message::builder().from(from.clone()).subject(subject);
    for m in to {
        b = b.to(m);
    }
    for m in cc {
        b = b.cc(m);
    }
    for m in bcc {
        b = b.bcc(m);
    }
    for m in mailboxes(input, "reply_to")? {
        b = b.reply_to(m);
    }
    let text = input.get("text").and_then(Value::as_str).map(str::to_string);
    let html = input.get("html").and_then(Value::as_str).map(str::to_string);
    let body = match (text, html) {
        (Some(t), Some(h)) => Err(MultiPart::alternative_plain_html(t, h)),
        (Some(t), None) => Ok(SinglePart::plain(t)),
        (None, Some(h)) => Ok(SinglePart::html(h)),
        (None, None) => return Err(fatal("no body: give `text`, `html` or both")),
    };
    let attachments = attachments(input)?;
    let id = message_id(key, &from);
    let b = b.message_id(Some(id.clone()));
    let msg = match (body, attachments.is_empty()) {
        (Ok(single), true) => b.singlepart(single),
        (Err(multi), true) => b.multipart(multi),
        (body, false) => {
            let mut mixed = match body {
                Ok(single) => MultiPart::mixed().singlepart(single),
                Err(multi) => MultiPart::mixed().multipart(multi),
            };
            for a in attachments {
                mixed = mixed.singlepart(a);
            }
            b.multipart(mixed)
        }
    };
    let msg = msg.map_err(|e| fatal(format!("cannot build the mail: {e}")))?;
    Ok((msg, id))
}

/// `attachments: [{name, content_type, content_base64}]`.
fn attachments(input: &Map<String, Value>) -> Result<Vec<SinglePart>, ConnectorError> {
    let list = match input.get("attachments") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(fatal("`attachments` must be a list of {name, content_type, content_base64}")),
    };
    let mut total = 0;
    let mut out = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let field = |k: &str| a.get(k).and_then(Value::as_str);
        let name = field("name").filter(|n| !n.trim().is_empty() && !n.contains(['\r', '\n', '/', '\\']));
        let name = name.ok_or_else(|| fatal(format!("attachments[{i}]: `name` must be a file name")))?;
        let ct = field("content_type").unwrap_or("application/octet-stream");
        let ct = ContentType::parse(ct).map_err(|e| fatal(format!("attachments[{i}]: `content_type` `{ct}`: {e}")))?;
        let data =
            field("content_base64").ok_or_else(|| fatal(format!("attachments[{i}]: `content_base64` is missing")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| fatal(format!("attachments[{i}]: `content_base64` is not base64 ({e})")))?;
        total += bytes.len();
        if total > MAX_ATTACHMENT_BYTES {
            return Err(fatal(format!("attachments are larger than {MAX_ATTACHMENT_BYTES} bytes together")));
        }
        // Base64 always: a file is sent byte for byte (a text-like encoding would
        // turn LF into CRLF and let SMTP dot-stuffing touch lines of a PDF).
        let body =
            lettre::message::Body::new_with_encoding(bytes, lettre::message::header::ContentTransferEncoding::Base64)
                .map_err(|_| fatal(format!("attachments[{i}]: cannot encode")))?;
        out.push(Attachment::new(name.to_string()).body(body, ct));
    }
    Ok(out)
}

/// Whether the cause is a failed TLS handshake (rustls reports a peer that does
/// not speak TLS, or a certificate it refuses, as `InvalidData`): a setting to
/// fix, not a moment to wait out.
fn tls_failure(e: &lettre::transport::smtp::Error) -> bool {
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        if s.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData) {
            return true;
        }
        src = s.source();
    }
    false
}

/// An SMTP failure as a connector error.
fn classify(e: lettre::transport::smtp::Error, host: &str) -> ConnectorError {
    let code = e.status().map(|c| c.to_string());
    let text = format!("SMTP {host}: {e}");
    if e.is_transient() || e.is_timeout() {
        ConnectorError::Retryable(text)
    } else if e.is_permanent() {
        // 530/534/535: authentication required or refused.
        if matches!(code.as_deref(), Some("530" | "534" | "535")) {
            ConnectorError::Fatal(format!("{text} — check `user` and `password` of the connector, then retry"))
        } else {
            ConnectorError::Business { code: "MAIL_REJECTED".into(), message: text }
        }
    } else if e.is_tls() || tls_failure(&e) {
        ConnectorError::Fatal(format!("{text} — check `tls` and `port` of the connector"))
    } else if e.is_client() {
        ConnectorError::Fatal(text)
    } else {
        // Connection refused or dropped, a reply that could not be read.
        ConnectorError::Retryable(text)
    }
}

impl MailConnector {
    async fn run(&self, call: &Call) -> Result<Value, ConnectorError> {
        let cfg = self.settings.get();
        let cfg = cfg.as_ref().as_ref().ok_or_else(|| {
            fatal(format!(
                "the mail connector `{0}` is not configured: add `connectors: {0}: {{type: smtp, host, from}}` to the config file (see README, Connectors)",
                self.instance
            ))
        })?;
        let mut input = call.input.as_object().cloned().unwrap_or_default();
        resolve_file_attachments(&mut input, self.blobs.as_ref())?;
        let (msg, id) = build_message(&input, &cfg.from, &call.idempotency_key)?;
        let recipients: Vec<String> = msg.envelope().to().iter().map(|a| a.to_string()).collect();
        let host = format!("{}:{}", cfg.host, cfg.port());
        let builder = match cfg.tls {
            TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
            TlsMode::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(|e| fatal(format!("connectors.{}.host: {e}", self.instance)))?,
            TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)
                .map_err(|e| fatal(format!("connectors.{}.host: {e}", self.instance)))?,
        };
        let mut builder = builder.port(cfg.port()).timeout(Some(cfg.timeout.unwrap_or(Duration::from_secs(60))));
        if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
            let secret = |s: &Secret, what: &str| {
                s.reveal(&format!("connectors.{}.{what}", self.instance)).map_err(|e| fatal(e.to_string()))
            };
            builder = builder.credentials(Credentials::new(secret(u, "user")?, secret(p, "password")?));
        }
        let transport = builder.build();
        tracing::debug!(connector = %call.connector, host = %host, recipients = recipients.len(), "sending mail");
        let resp = transport.send(msg).await.map_err(|e| classify(e, &host))?;
        Ok(json!({
            "message_id": id,
            "recipients": recipients,
            "reply": resp.message().collect::<Vec<_>>().join(" "),
        }))
    }
}

impl Connector for MailConnector {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(self.run(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Result<(), String> {
        serde_yaml::from_str::<SmtpConfig>(yaml).map_err(|e| e.to_string())?.check()
    }

    #[test]
    fn settings_are_checked() {
        assert!(cfg("{host: smtp.example.com, from: a@example.com}").is_ok());
        let e = cfg("{host: smtp.example.com, tls: none, user: u, password: p, from: a@example.com}").unwrap_err();
        assert!(e.contains("clear text"), "{e}");
        assert!(cfg("{host: 127.0.0.1, tls: none, user: u, password: p, from: a@example.com}").is_ok());
        assert!(cfg("{host: x, from: not-an-address}").unwrap_err().contains("`from`"));
        assert!(cfg("{host: x, user: u, from: a@example.com}").unwrap_err().contains("both"));
        assert!(cfg("{host: 'x:25', from: a@example.com}").unwrap_err().contains("port"));
    }

    #[test]
    fn japanese_subject_and_names_are_rfc2047_utf8() {
        let input = json!({
            "to": ["山田 太郎 <yamada@example.com>"],
            "subject": "マスタ取込の結果 (成功 3件)",
            "text": "本文です。",
        });
        let (m, _) = build_message(input.as_object().unwrap(), "経理部 <keiri@example.com>", "7/n/1").unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(headers.is_ascii(), "headers are 7-bit: {headers}");
        assert!(headers.contains("=?utf-8?b?"), "{headers}");
        assert!(headers.contains("Message-ID: <7.n.1.nagare@example.com>"), "{headers}");
        let parsed = mime::parse(raw.as_bytes());
        assert_eq!(parsed.subject, "マスタ取込の結果 (成功 3件)");
        assert_eq!(parsed.from, "経理部 <keiri@example.com>");
        assert_eq!(parsed.to, vec!["山田 太郎 <yamada@example.com>"]);
        assert_eq!(parsed.text.as_deref(), Some("本文です。"));
    }

    #[test]
    fn bad_input_is_fatal() {
        let e = |v: Value| build_message(v.as_object().unwrap(), "a@example.com", "k").unwrap_err();
        assert!(matches!(e(json!({"subject": "s", "text": "t"})), ConnectorError::Fatal(m) if m.contains("recipient")));
        assert!(matches!(e(json!({"to": "x", "text": "t"})), ConnectorError::Fatal(m) if m.contains("`to`")));
        assert!(matches!(e(json!({"to": "a@example.com"})), ConnectorError::Fatal(m) if m.contains("body")));
        assert!(
            matches!(e(json!({"to": "a@example.com", "text": "t", "attachments": [{"name": "a", "content_base64": "!!"}]})), ConnectorError::Fatal(m) if m.contains("base64"))
        );
        assert!(matches!(
            e(json!({"to": "a@example.com", "text": "t", "subject": "a\r\nBcc: x@y"})),
            ConnectorError::Fatal(_)
        ));
    }
}
