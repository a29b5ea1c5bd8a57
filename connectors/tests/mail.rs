//! `mail.send` against the local SMTP sink: a Japanese mail with an attachment
//! arrives decoded; logins, retries and a missing server are classified.

use base64::Engine as _;
use nagare_connectors::mail::sink::Sink;
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::{Call, ConnectorError};
use serde_json::{json, Value};

async fn smtp(sink: &Sink) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = sink.clone();
    tokio::spawn(async move { s.serve_smtp(listener, std::future::pending()).await.unwrap() });
    port
}

async fn http(sink: &Sink) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = sink.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn connectors(yaml: &str) -> Connectors {
    Connectors::new(&ConnectorsConfig::from_yaml(yaml).unwrap())
}

async fn send(c: &Connectors, name: &str, key: &str, input: Value) -> Result<Value, ConnectorError> {
    let call =
        Call { connector: name.into(), input, idempotency_key: key.into(), instance: 1, node: "n".into(), attempt: 1 };
    c.registry().get(name).unwrap().call(&call).await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_japanese_mail_with_an_attachment_arrives_decoded() {
    let sink = Sink::in_memory();
    sink.require_login("nagare", "s3cret");
    let port = smtp(&sink).await;
    let c = connectors(&format!(
        "connectors:\n  mail: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: none, user: nagare, password: s3cret, from: '楽楽連携 <sync@example.com>' }}\n"
    ));
    // A Shift_JIS CSV as the attachment, with a Japanese file name.
    let csv = b"\x8e\xd0\x88\xf5\x83\x52\x81\x5b\x83\x68\r\nE1\r\n".to_vec();
    let long_line = "長い行".repeat(100);
    let r = send(
        &c,
        "mail.send",
        "12/report/1",
        json!({
            "to": ["山田 太郎 <yamada@example.com>", "keiri@example.com"],
            "cc": "佐藤 <sato@example.com>",
            "bcc": ["audit@example.com"],
            "subject": "【楽楽精算】マスタ取込の結果: 成功 3件、エラー 0件",
            "text": format!("取込が終わりました。\n社員 3件\n{long_line}"),
            "html": "<p>取込が終わりました。</p>",
            "attachments": [{"name": "取込結果.csv", "content_type": "text/csv", "content_base64": b64(&csv)}],
        }),
    )
    .await
    .unwrap();
    assert_eq!(r["recipients"].as_array().unwrap().len(), 4);
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.login.as_deref(), Some("nagare"));
    assert_eq!(m.mail.subject, "【楽楽精算】マスタ取込の結果: 成功 3件、エラー 0件");
    assert_eq!(m.mail.from, "楽楽連携 <sync@example.com>");
    assert_eq!(m.mail.to, vec!["山田 太郎 <yamada@example.com>", "keiri@example.com"]);
    assert_eq!(m.mail.cc, vec!["佐藤 <sato@example.com>"]);
    assert!(m.envelope_to.contains(&"audit@example.com".to_string()), "bcc in the envelope only");
    let raw_text = String::from_utf8_lossy(&m.raw);
    assert!(!raw_text.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "no Bcc header: {raw_text}");
    assert_eq!(m.mail.text.as_deref(), Some(format!("取込が終わりました。\n社員 3件\n{long_line}").as_str()));
    assert_eq!(m.mail.html.as_deref(), Some("<p>取込が終わりました。</p>"));
    assert_eq!(m.mail.attachments.len(), 1);
    assert_eq!(m.mail.attachments[0].name, "取込結果.csv");
    assert_eq!(m.mail.attachments[0].content_type, "text/csv");
    assert_eq!(m.mail.attachments[0].content_base64, b64(&csv), "bytes unchanged");
    assert_eq!(m.mail.message_id, r["message_id"].as_str().unwrap());
    // The same, over HTTP.
    let base = http(&sink).await;
    let listed: Value = reqwest::get(format!("{base}/mails")).await.unwrap().json().await.unwrap();
    assert_eq!(listed["mails"][0]["subject"], "【楽楽精算】マスタ取込の結果: 成功 3件、エラー 0件");
    assert_eq!(listed["mails"][0]["to"][0], "山田 太郎 <yamada@example.com>");
    let raw = reqwest::get(format!("{base}/mails/{}/raw", m.id)).await.unwrap().bytes().await.unwrap();
    assert_eq!(raw.as_ref(), m.raw.as_slice());
}

#[tokio::test]
async fn a_retried_send_keeps_its_message_id() {
    let sink = Sink::in_memory();
    let port = smtp(&sink).await;
    let c = connectors(&format!(
        "connectors:\n  notify: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: none, from: nagare@example.com }}\n"
    ));
    let input = json!({"to": "a@example.com", "subject": "件名", "text": "本文"});
    let a = send(&c, "notify.send", "5/n/1", input.clone()).await.unwrap();
    let b = send(&c, "notify.send", "5/n/1", input).await.unwrap();
    assert_eq!(a["message_id"], b["message_id"]);
    let ids: Vec<String> = sink.mails().iter().map(|m| m.mail.message_id.clone()).collect();
    assert_eq!(ids, vec![a["message_id"].as_str().unwrap().to_string(); 2]);
}

#[tokio::test]
async fn login_failures_are_fatal_and_a_missing_server_retries() {
    let sink = Sink::in_memory();
    sink.require_login("nagare", "s3cret");
    let port = smtp(&sink).await;
    let c = connectors(&format!(
        "connectors:\n  mail: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: none, user: nagare, password: wrong, from: a@example.com }}\n  nologin: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: none, from: a@example.com }}\n"
    ));
    let input = json!({"to": "b@example.com", "subject": "s", "text": "t"});
    let e = send(&c, "mail.send", "k", input.clone()).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("535")), "{e:?}");
    let e = send(&c, "nologin.send", "k", input.clone()).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("530")), "{e:?}");
    assert!(sink.mails().is_empty());
    // Nothing listening: retry later.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let c = connectors(&format!(
        "connectors:\n  mail: {{ type: smtp, host: 127.0.0.1, port: {free}, tls: none, from: a@example.com, timeout: 5s }}\n"
    ));
    let e = send(&c, "mail.send", "k", input.clone()).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Retryable(_)), "{e:?}");
    // Not configured: the message says how.
    let e = send(&connectors(""), "mail.send", "k", input).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("type: smtp")), "{e:?}");
}

#[tokio::test]
async fn the_sink_keeps_mail_as_eml_files_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::open(dir.path()).unwrap();
    let port = smtp(&sink).await;
    let c = connectors(&format!(
        "connectors:\n  mail: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: none, from: a@example.com }}\n"
    ));
    send(&c, "mail.send", "k", json!({"to": "b@example.com", "subject": "保存", "text": "t"})).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let again = Sink::open(dir.path()).unwrap();
    assert_eq!(again.mails()[0].mail.subject, "保存");
    assert_eq!(again.mails()[0].envelope_to, vec!["b@example.com"]);
}

#[tokio::test]
async fn tls_is_never_silently_dropped() {
    // The sink offers no STARTTLS: a `starttls` instance refuses to go on in clear
    // text, and `tls` cannot handshake with a plain-text server.
    let sink = Sink::in_memory();
    let port = smtp(&sink).await;
    let c = connectors(&format!(
        "connectors:\n  st: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: starttls, from: a@example.com, timeout: 5s }}\n  tl: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: tls, from: a@example.com, timeout: 5s }}\n"
    ));
    let input = json!({"to": "b@example.com", "subject": "s", "text": "t"});
    let e = send(&c, "st.send", "k", input.clone()).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(_)), "{e:?}");
    let e = send(&c, "tl.send", "k", input).await.unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("tls")), "{e:?}");
    assert!(sink.mails().is_empty());
}

/// A `file` variable (an uploaded contract, a CSV) is attached as it is: the mail
/// connector reads its content from the blob store.
#[tokio::test]
async fn a_file_variable_is_attached_from_the_blob_store() {
    use nagare_connectors::cloudsign::files::MemoryBlobs;
    let sink = Sink::in_memory();
    let port = smtp(&sink).await;
    let blobs = MemoryBlobs::default();
    let pdf = b"%PDF-1.7\n...\n%%EOF\n".to_vec();
    let sha = blobs.put(pdf.clone());
    let yaml = format!(
        "connectors:\n  mail: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: none, from: 'a@example.com' }}\n"
    );
    let c = Connectors::with_blobs(&ConnectorsConfig::from_yaml(&yaml).unwrap(), std::sync::Arc::new(blobs));
    let file = json!({"name": "契約書.pdf", "content_type": "application/pdf", "size": pdf.len(), "sha256": sha,
        "created_by": "sato", "created_at": "2026-12-01T00:00:00Z"});
    send(
        &c,
        "mail.send",
        "1/n/1",
        json!({"to": "b@example.com", "subject": "契約書", "text": "添付します", "attachments": [file]}),
    )
    .await
    .unwrap();
    let m = &sink.mails()[0];
    assert_eq!(m.mail.attachments.len(), 1);
    assert_eq!(m.mail.attachments[0].name, "契約書.pdf");
    assert_eq!(m.mail.attachments[0].content_base64, b64(&pdf));
    // A file that is not in the store is a clear error naming the attachment.
    let missing = json!({"name": "x.pdf", "content_type": "application/pdf", "size": 3, "sha256": "0".repeat(64)});
    let e = send(
        &c,
        "mail.send",
        "1/n/2",
        json!({"to": "b@example.com", "subject": "x", "text": "x", "attachments": [missing]}),
    )
    .await
    .unwrap_err();
    assert!(matches!(&e, ConnectorError::Fatal(m) if m.contains("attachments[0]")), "{e:?}");
}

/// Lines of a body that start with a dot arrive as written (SMTP dot-stuffing is
/// undone by the receiver, and only once).
#[tokio::test]
async fn lines_starting_with_a_dot_arrive_as_written() {
    let sink = Sink::in_memory();
    let port = smtp(&sink).await;
    let c = connectors(&format!(
        "connectors:\n  mail: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: none, from: 'a@example.com' }}\n"
    ));
    let text = "...\n.\n.x\nend";
    send(&c, "mail.send", "1/n/1", json!({"to": "b@example.com", "subject": "dots", "text": text})).await.unwrap();
    // (the decoded body ends with the line break the text part was sent with)
    assert_eq!(sink.mails()[0].mail.text.as_deref().map(|t| t.trim_end_matches('\n')), Some(text));
}
