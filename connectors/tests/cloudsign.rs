//! The CloudSign connector against the in-process emulator: the token flow, paging,
//! files, participants, attributes, the signer's outcome and its webhook, failure
//! classification, idempotent drafts and the checks made before any request.

use base64::Engine as _;
use nagare_connectors::cloudsign::emulator::{Emulator, Faults};
use nagare_connectors::cloudsign::files::{sha256_hex, MemoryBlobs};
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::{Call, ConnectorError};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "../../tests/support/log_capture.rs"]
mod log_capture;

const SATO: &str = "demo-client-sato";

/// Serve the emulator (every test starts here or in [`run`], so the log capture is
/// installed before anything logs).
async fn serve(router: axum::Router) -> String {
    log_capture::install();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

struct Env {
    emu: Emulator,
    c: Connectors,
    blobs: MemoryBlobs,
}

/// An emulator and a `cloudsign` instance: sato and tanaka by literal client id,
/// `nooption` whose account lacks the Web API option, `ghost` by an unset variable.
async fn env() -> Env {
    let emu = Emulator::in_memory();
    let base = serve(emu.router()).await;
    let blobs = MemoryBlobs::default();
    let yaml = format!(
        "connectors:\n  cloudsign:\n    type: cloudsign\n    base_url: '{base}'\n    users:\n      sato: {SATO}\n      tanaka: demo-client-tanaka\n      nooption: demo-client-no-option\n      ghost: {{ env: NAGARE_TEST_CLOUDSIGN_UNSET }}\n"
    );
    let c = Connectors::with_blobs(&ConnectorsConfig::from_yaml(&yaml).unwrap(), Arc::new(blobs.clone()));
    Env { emu, c, blobs }
}

async fn run(c: &Connectors, op: &str, key: &str, input: Value) -> Result<Value, ConnectorError> {
    log_capture::install();
    let name = format!("cloudsign.{op}");
    let call =
        Call { connector: name.clone(), input, idempotency_key: key.into(), instance: 1, node: "n".into(), attempt: 1 };
    c.registry().get(&name).unwrap().call(&call).await
}

fn pdf(text: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% {text}\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n").into_bytes()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn drafts(emu: &Emulator) -> usize {
    emu.read(|s| s.documents.values().filter(|d| d.status == 0).count())
}

/// A draft with one file and two recipients, ready to send.
async fn ready_draft(e: &Env, key: &str) -> String {
    let r = run(
        &e.c,
        "create_draft",
        key,
        json!({
            "user": "sato", "title": "業務委託契約書",
            "files": [{"name": "契約書.pdf", "content_base64": b64(&pdf(key))}],
            "participants": [{"email": "signer@example.com", "name": "署名 太郎"}],
        }),
    )
    .await
    .unwrap();
    r["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tokens_are_cached_and_renewed_when_they_expire() {
    let e = env().await;
    let id = ready_draft(&e, "t/1").await;
    for _ in 0..5 {
        run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.unwrap();
    }
    assert_eq!(e.emu.token_requests(), 1, "one token for every call within its hour");
    // Another user: their own token (and a document of sato's is not theirs).
    let err = run(&e.c, "get", "g", json!({"user": "tanaka", "document": id})).await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Business { code, .. } if code == "forbidden"), "{err:?}");
    assert_eq!(e.emu.token_requests(), 2);
    // The emulator's hour passes: the cached token is refused once, a new one is
    // issued and the request sent again, unseen by the caller.
    e.emu.advance(Duration::from_secs(3601));
    let before = e.emu.requests();
    let got = run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.unwrap();
    assert_eq!(got["status_name"], json!("draft"));
    assert_eq!(e.emu.token_requests(), 3);
    assert_eq!(e.emu.requests() - before, 3, "401, /token, the request again");
    // Short-lived tokens: the client renews before the expiry it was told.
    e.emu.set_token_ttl(Duration::from_secs(10));
    e.emu.advance(Duration::from_secs(3601));
    run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.unwrap();
    let after_first = e.emu.token_requests();
    run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.unwrap();
    assert_eq!(e.emu.token_requests(), after_first + 1, "a token about to expire is not used");
}

#[tokio::test]
async fn list_follows_pages_of_100() {
    let e = env().await;
    let now = e.emu.now();
    let acct = e.emu.read(|s| s.clients[SATO].clone());
    for i in 0..230 {
        let mut f = serde_json::Map::new();
        f.insert("title".into(), json!(format!("doc {i}")));
        e.emu.write(|s| s.create(&acct, &f, now)).unwrap();
    }
    let before = e.emu.requests();
    let all = run(&e.c, "list", "l", json!({"user": "sato", "status": "draft"})).await.unwrap();
    assert_eq!((all["count"].clone(), all["total"].clone()), (json!(230), json!(230)));
    let ids: std::collections::HashSet<&str> =
        all["documents"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 230, "no document twice");
    assert_eq!(e.emu.requests() - before, 4, "/token and three pages");
    let some = run(&e.c, "list", "l", json!({"user": "sato", "max": 150})).await.unwrap();
    assert_eq!(some["count"], json!(150));
    let none = run(&e.c, "list", "l", json!({"user": "sato", "status": "concluded"})).await.unwrap();
    assert_eq!(none["count"], json!(0));
    let err = run(&e.c, "list", "l", json!({"user": "sato", "status": "signed"})).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Fatal(_)));
}

#[tokio::test]
async fn files_participants_and_attributes_reach_the_draft() {
    let e = env().await;
    let stored = pdf("stored");
    let sha = e.blobs.put(stored.clone());
    let r = run(
        &e.c,
        "create_draft",
        "d/1",
        json!({
            "user": "sato", "title": "売買契約", "note": "社内メモ", "message": "ご確認ください",
            "files": [
                {"name": "本体.pdf", "content_type": "application/pdf", "size": stored.len(), "sha256": sha},
                {"name": "別紙.pdf", "content_base64": b64(&pdf("inline"))},
            ],
            "participants": [
                {"email": "first@example.com", "name": "一番", "organization": "A社"},
                {"email": "second@example.com", "name": "二番"},
            ],
            "attributes": {"counterparty": "A社", "amount": 1200000, "contract_at": "2026-12-01"},
        }),
    )
    .await
    .unwrap();
    assert_eq!(r["created"], json!(true));
    let id = r["id"].as_str().unwrap();
    let emails: Vec<&str> =
        r["participants"].as_array().unwrap().iter().map(|p| p["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["sato@example.com", "first@example.com", "second@example.com"], "sender first, then in order");
    let doc = e.emu.read(|s| s.documents[id].clone());
    assert!(doc.note.starts_with("社内メモ\n[nagare:d/1]"), "{}", doc.note);
    assert_eq!(doc.message, "ご確認ください");
    assert_eq!(doc.participants[1].organization, "A社");
    assert_eq!(json!(doc.attribute), json!({"counterparty": "A社", "amount": 1200000, "contract_at": "2026-12-01"}));
    // Attributes again: only the keys given change.
    run(&e.c, "set_attributes", "a", json!({"user": "sato", "document": id, "attributes": {"local_id": "K-7"}}))
        .await
        .unwrap();
    assert_eq!(e.emu.read(|s| s.documents[id].attribute["counterparty"].clone()), json!("A社"));
    // Round trip: the bytes downloaded are the bytes uploaded.
    let files = r["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    let d = run(&e.c, "download", "x", json!({"user": "sato", "document": id})).await.unwrap();
    assert_eq!(d["sha256"], json!(sha));
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(d["content_base64"].as_str().unwrap()).unwrap(),
        stored
    );
    let d2 = run(&e.c, "download", "x", json!({"user": "sato", "document": id, "file": files[1]["id"]})).await.unwrap();
    assert_eq!(d2["sha256"], json!(sha256_hex(&pdf("inline"))));
    // upload and add_participants on their own, retried: nothing twice.
    let extra =
        json!({"user": "sato", "document": id, "file": {"name": "追加.pdf", "content_base64": b64(&pdf("extra"))}});
    let u1 = run(&e.c, "upload", "u", extra.clone()).await.unwrap();
    let u2 = run(&e.c, "upload", "u", extra).await.unwrap();
    assert_eq!(u1["file_id"], u2["file_id"]);
    let more =
        json!({"user": "sato", "document": id, "participants": [{"email": "third@example.com", "name": "三番"}]});
    run(&e.c, "add_participants", "p", more.clone()).await.unwrap();
    let p = run(&e.c, "add_participants", "p", more).await.unwrap();
    assert_eq!(p["participants"].as_array().unwrap().len(), 4);
    assert_eq!(p["files"].as_array().unwrap().len(), 3);
}

/// Records the webhook posts it receives.
async fn webhook_sink() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let got: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let g = got.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let ua = headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                g.lock().unwrap().push((ua, serde_json::from_slice(&body).unwrap()));
                "ok"
            }
        }),
    );
    (format!("{}/hook", serve(router).await), got)
}

async fn wait_for(got: &Arc<Mutex<Vec<(String, Value)>>>, n: usize) {
    for _ in 0..200 {
        if got.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} webhook posts expected, got {:?}", got.lock().unwrap());
}

#[tokio::test]
async fn send_then_the_signer_agrees_or_declines() {
    let e = env().await;
    let (url, got) = webhook_sink().await;
    e.emu.set_webhook(Some(url));
    let id = ready_draft(&e, "s/1").await;
    let sent = run(&e.c, "send", "s", json!({"user": "sato", "document": id})).await.unwrap();
    assert_eq!((sent["sent"].clone(), sent["status_name"].clone()), (json!(true), json!("in_progress")));
    let again = run(&e.c, "send", "s", json!({"user": "sato", "document": id})).await.unwrap();
    assert_eq!(again["sent"], json!(false), "a retry does not send (nor remind) again");
    wait_for(&got, 1).await;
    e.emu.answer(&id, true, "").await.unwrap();
    let doc = run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.unwrap();
    assert_eq!(doc["status_name"], json!("concluded"));
    wait_for(&got, 2).await;
    {
        let posts = got.lock().unwrap();
        assert_eq!(posts[1].0, "CloudSignWebHook");
        assert_eq!(posts[1].1["documentID"], json!(id));
        assert_eq!(posts[1].1["status"], json!(2));
        assert_eq!(posts[1].1["userID"], json!("sato"));
        assert_eq!(posts[1].1["email"], json!("sato@example.com"));
        assert!(posts[1].1["text"].as_str().unwrap().starts_with("COMPLETED : 業務委託契約書"));
    }
    // Declined: status 3 and a CANCELED text.
    let id2 = ready_draft(&e, "s/2").await;
    run(&e.c, "send", "s2", json!({"user": "sato", "document": id2})).await.unwrap();
    e.emu.answer(&id2, false, "金額が違います").await.unwrap();
    let doc = run(&e.c, "get", "g", json!({"user": "sato", "document": id2})).await.unwrap();
    assert_eq!(doc["status_name"], json!("declined"));
    wait_for(&got, 4).await;
    assert!(got.lock().unwrap().iter().any(|(_, b)| b["documentID"] == json!(id2) && b["status"] == json!(3)));
    // A concluded document cannot be changed: CloudSign's 403 `not_acceptable`.
    let err = run(
        &e.c,
        "add_participants",
        "p",
        json!({"user": "sato", "document": id, "participants": [{"email": "x@example.com", "name": "x"}]}),
    )
    .await
    .unwrap_err();
    assert!(matches!(&err, ConnectorError::Business { code, .. } if code == "not_acceptable"), "{err:?}");
}

#[tokio::test]
async fn only_drafts_are_deleted() {
    let e = env().await;
    let draft = ready_draft(&e, "x/1").await;
    let sent = ready_draft(&e, "x/2").await;
    run(&e.c, "send", "s", json!({"user": "sato", "document": sent})).await.unwrap();
    let err = run(&e.c, "delete", "d", json!({"user": "sato", "document": sent})).await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Business { code, .. } if code == "bad_request"), "{err:?}");
    assert!(e.emu.read(|s| s.documents.contains_key(&sent)));
    let r = run(&e.c, "delete", "d", json!({"user": "sato", "document": draft})).await.unwrap();
    assert_eq!(r["deleted"], json!(true));
    assert!(!e.emu.read(|s| s.documents.contains_key(&draft)));
    let r = run(&e.c, "delete", "d", json!({"user": "sato", "document": draft})).await.unwrap();
    assert_eq!(r["deleted"], json!(false), "a retry after the draft is gone succeeds");
}

#[tokio::test]
async fn throttling_and_server_errors_are_retryable_forbidden_is_a_business_error() {
    let e = env().await;
    let id = ready_draft(&e, "f/1").await;
    e.emu.set_faults(Faults { throttle_next: 1, retry_after_secs: Some(7), ..Faults::default() });
    let err = run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.unwrap_err();
    match err {
        ConnectorError::RetryAfter { after, message } => {
            assert_eq!(after, Duration::from_secs(7));
            assert!(message.contains("too_many_requests") && message.contains("HTTP 429"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    e.emu.set_faults(Faults { fail_next: 1, ..Faults::default() });
    let err = run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Retryable(m) if m.contains("internal_server_error")), "{err:?}");
    // The engine's retry: the next attempt goes through.
    assert!(run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.is_ok());
    // An account without the Web API option: 403 with CloudSign's kind as the code.
    let err = run(&e.c, "list", "l", json!({"user": "nooption"})).await.unwrap_err();
    assert!(matches!(&err, ConnectorError::Business { code, .. } if code == "webapi_option_required"), "{err:?}");
}

#[tokio::test]
async fn a_retried_create_finds_the_draft_of_the_earlier_attempt() {
    let e = env().await;
    let input = json!({
        "user": "sato", "title": "再試行",
        "files": [{"name": "a.pdf", "content_base64": b64(&pdf("a"))}],
        "participants": [{"email": "p@example.com", "name": "P"}],
    });
    let first = run(&e.c, "create_draft", "7/draft/1", input.clone()).await.unwrap();
    // The engine crashed before committing the result: the same call runs again.
    let again = run(&e.c, "create_draft", "7/draft/1", input.clone()).await.unwrap();
    assert_eq!(first["id"], again["id"]);
    assert_eq!((first["created"].clone(), again["created"].clone()), (json!(true), json!(false)));
    assert_eq!(again["files"].as_array().unwrap().len(), 1);
    assert_eq!(again["participants"].as_array().unwrap().len(), 2);
    assert_eq!(drafts(&e.emu), 1);
    // Another call (another key) is another draft.
    run(&e.c, "create_draft", "8/draft/1", input).await.unwrap();
    assert_eq!(drafts(&e.emu), 2);
}

#[tokio::test]
async fn bad_files_are_refused_before_any_request() {
    let e = env().await;
    let big = {
        let mut b = pdf("big");
        b.truncate(b.len() - 6);
        b.resize(12 * 1024 * 1024, b' ');
        b.extend_from_slice(b"%%EOF\n");
        b
    };
    let big_sha = e.blobs.put(big.clone());
    let not_pdf = e.blobs.put(b"PK\x03\x04 a zip".to_vec());
    let before = e.emu.requests();
    let cases = [
        (json!({"name": "big.pdf", "size": big.len(), "sha256": big_sha}), "at most 10485760 bytes"),
        (json!({"name": "big.pdf", "sha256": big_sha}), "at most 10485760 bytes"),
        (json!({"name": "a.zip", "sha256": not_pdf}), "not a PDF"),
        (json!({"name": "a.docx", "content_type": "application/msword", "sha256": not_pdf}), "PDF files only"),
        (json!({"name": "x.pdf", "content_base64": b64(b"plain text")}), "not a PDF"),
    ];
    for (file, why) in cases {
        let err =
            run(&e.c, "create_draft", "k", json!({"user": "sato", "title": "t", "files": [file]})).await.unwrap_err();
        match err {
            ConnectorError::Business { code, message } => {
                assert_eq!(code, "invalid_file");
                assert!(message.starts_with("`files[0]` (") && message.contains(why), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    let err = run(
        &e.c,
        "upload",
        "k",
        json!({"user": "sato", "document": "abc", "file": {"name": "a.zip", "sha256": not_pdf}}),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Business { message, .. } if message.starts_with("`file` (a.zip)")),
        "{err:?}"
    );
    assert_eq!(e.emu.requests(), before, "no request reached CloudSign");
}

#[tokio::test]
async fn credentials_are_per_user_and_never_shown() {
    let e = env().await;
    let err = run(&e.c, "list", "l", json!({"user": "suzuki"})).await.unwrap_err();
    match &err {
        ConnectorError::Business { code, message } => {
            assert_eq!(code, "no_credential");
            assert!(
                message.contains("user `suzuki`") && message.contains("connectors.cloudsign.users.suzuki"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = run(&e.c, "list", "l", json!({})).await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Business { code, message } if code == "no_credential" && message.contains("`user:`")),
        "{err:?}"
    );
    let err = run(&e.c, "list", "l", json!({"user": "ghost"})).await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Business { code, message } if code == "no_credential" && message.contains("NAGARE_TEST_CLOUDSIGN_UNSET")),
        "{err:?}"
    );
    // Documents are created in the user's own account.
    let id = ready_draft(&e, "c/1").await;
    assert_eq!(e.emu.read(|s| s.documents[&id].user_id.clone()), "sato");
    // Neither the client id nor the access token appears in a result or an error.
    let token = e.emu.read(|s| s.tokens.keys().next().cloned()).unwrap();
    let mut seen = Vec::new();
    seen.push(run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.unwrap().to_string());
    seen.push(run(&e.c, "list", "l", json!({"user": "sato"})).await.unwrap().to_string());
    seen.push(format!("{:?}", run(&e.c, "get", "g", json!({"user": "sato", "document": "nope"})).await.unwrap_err()));
    e.emu.set_faults(Faults { fail_next: 1, ..Faults::default() });
    seen.push(format!("{:?}", run(&e.c, "get", "g", json!({"user": "sato", "document": id})).await.unwrap_err()));
    seen.push(format!(
        "{:?}",
        ConnectorsConfig::from_yaml(&format!(
            "connectors:\n  cs: {{ type: cloudsign, base_url: 'http://x', client_id: {SATO} }}\n"
        ))
        .unwrap()
    ));
    for s in &seen {
        assert!(!s.contains(SATO) && !s.contains(&token), "a secret leaked: {s}");
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    // Every line of every thread at TRACE (see tests/support/log_capture.rs for why
    // not a per-test subscriber): the connector, reqwest, hyper and the emulator.
    let logs = log_capture::install();
    let mark = logs.mark();
    let e = env().await;
    let id = ready_draft(&e, "log/1").await;
    let mut tokens: Vec<String> = e.emu.read(|s| s.tokens.keys().cloned().collect());
    e.emu.advance(Duration::from_secs(3601));
    e.emu.set_faults(Faults { throttle_next: 1, retry_after_secs: Some(1), ..Faults::default() });
    let _ = run(&e.c, "send", "s", json!({"user": "sato", "document": id})).await.unwrap_err();
    run(&e.c, "send", "s", json!({"user": "sato", "document": id})).await.unwrap();
    let _ = run(&e.c, "list", "l", json!({"user": "ghost"})).await.unwrap_err();
    tokens.extend(e.emu.read(|s| s.tokens.keys().cloned().collect::<Vec<_>>()));
    assert_eq!(tokens.len(), 2);
    assert_eq!(e.emu.token_requests(), 2, "the token was renewed once");
    // This test's own calls were logged (its `current_thread` runtime runs them here)...
    let ours = logs.of_this_thread_since(mark);
    assert!(ours.contains("cloudsign call") && ours.contains("issuing a new one"), "the calls were logged: {ours}");
    // ...and no line of any thread or test carries a secret.
    let text = logs.all();
    assert!(!text.contains(SATO), "the client id is in the logs: {text}");
    for t in tokens {
        assert!(!text.contains(&t), "an access token is in the logs: {text}");
    }
}

#[tokio::test]
async fn the_emulator_keeps_documents_and_files_in_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let content = pdf("kept");
    let id = {
        let emu = Emulator::open(dir.path()).unwrap();
        let base = serve(emu.router()).await;
        let c = Connectors::new(
            &ConnectorsConfig::from_yaml(&format!(
                "connectors:\n  cloudsign: {{ type: cloudsign, base_url: '{base}', client_id: {SATO} }}\n"
            ))
            .unwrap(),
        );
        let r = run(
            &c,
            "create_draft",
            "p/1",
            json!({"title": "保存", "files": [{"name": "a.pdf", "content_base64": b64(&content)}]}),
        )
        .await
        .unwrap();
        r["id"].as_str().unwrap().to_string()
    };
    let emu = Emulator::open(dir.path()).unwrap();
    let base = serve(emu.router()).await;
    let c = Connectors::new(
        &ConnectorsConfig::from_yaml(&format!(
            "connectors:\n  cloudsign: {{ type: cloudsign, base_url: '{base}', client_id: {SATO} }}\n"
        ))
        .unwrap(),
    );
    let d = run(&c, "download", "x", json!({"document": id})).await.unwrap();
    assert_eq!(d["sha256"], json!(sha256_hex(&content)));
    assert_eq!(e_title(&emu, &id), "保存");
    // A damaged state file is reported, not replaced.
    std::fs::write(dir.path().join("cloudsign.json"), b"{ not json").unwrap();
    assert!(Emulator::open(dir.path()).err().unwrap().to_string().contains("damaged"));
}

fn e_title(emu: &Emulator, id: &str) -> String {
    emu.read(|s| s.documents[id].title.clone())
}

/// The emulator answers like CloudSign where the connector never goes: wrong
/// bodies and credentials get CloudSign's statuses and `{error, message}`.
#[tokio::test]
async fn the_emulator_speaks_cloudsigns_errors() {
    let emu = Emulator::in_memory();
    let base = serve(emu.router()).await;
    let http = reqwest::Client::new();
    let kind = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        (status, v["error"].as_str().unwrap().to_string())
    };
    let r = http.post(format!("{base}/token")).form(&[("client_id", "nope")]).send().await.unwrap();
    assert_eq!(kind(r).await, (400, "invalid_client".into()));
    let r = http.post(format!("{base}/token")).form(&[("client_id", "")]).send().await.unwrap();
    assert_eq!(kind(r).await, (400, "invalid_request".into()));
    let r = http.get(format!("{base}/documents")).header("authorization", "Bearer 0000").send().await.unwrap();
    assert_eq!(kind(r).await, (401, "unauthorized".into()));
    let tok: Value =
        http.post(format!("{base}/token")).form(&[("client_id", SATO)]).send().await.unwrap().json().await.unwrap();
    let again: Value =
        http.post(format!("{base}/token")).form(&[("client_id", SATO)]).send().await.unwrap().json().await.unwrap();
    assert_eq!(tok["access_token"], again["access_token"], "the same token within its hour");
    let auth = tok["access_token"].as_str().unwrap().to_string(); // bare token, as the spec's apiKey header
    let r = http
        .post(format!("{base}/documents"))
        .header("authorization", &auth)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(kind(r).await, (415, "unsupported_media_type".into()));
    let doc: Value = http
        .post(format!("{base}/documents"))
        .header("authorization", &auth)
        .form(&[("title", "書類")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = doc["id"].as_str().unwrap();
    assert_eq!((doc["status"].clone(), doc["participants"][0]["order"].clone()), (json!(0), json!(0)));
    let r = http
        .post(format!("{base}/documents/{id}/files"))
        .header("authorization", &auth)
        .header("content-type", "multipart/form-data; boundary=b")
        .body("--b\r\nContent-Disposition: form-data; name=\"uploadfile\"; filename=\"a.pdf\"\r\nContent-Type: application/pdf\r\n\r\nnot a pdf\r\n--b--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(kind(r).await, (400, "bad_request".into()));
    let r = http
        .post(format!("{base}/documents/{id}/files"))
        .header("authorization", &auth)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(kind(r).await, (415, "unsupported_media_type".into()));
    let big = vec![b'a'; 20 * 1024 * 1024 + 10];
    let r = http
        .post(format!("{base}/documents/{id}/files"))
        .header("authorization", &auth)
        .header("content-type", "multipart/form-data; boundary=b")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(kind(r).await, (413, "too_large_request".into()));
    let r = http.post(format!("{base}/documents/{id}")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(kind(r).await, (400, "bad_request".into()), "a draft without recipients cannot be sent");
    let r = http
        .put(format!("{base}/documents/{id}/attribute"))
        .header("authorization", &auth)
        .form(&[("amount", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(kind(r).await, (415, "unsupported_media_type".into()), "attributes are JSON");
    let r = http.get(format!("{base}/documents/nope")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(kind(r).await, (404, "not_found".into()));
    let r = http.get(format!("{base}/no/such/path")).send().await.unwrap();
    assert_eq!(kind(r).await, (404, "not_found".into()));
    let r = http.delete(format!("{base}/documents/{id}")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

/// Without a config the operations exist (a process using them deploys) and a call
/// says how to configure the connector.
#[tokio::test]
async fn unconfigured_calls_say_how_to_configure() {
    let registry = nagare_connectors::builtin();
    for op in nagare_connectors::cloudsign::OPERATIONS {
        assert!(registry.get(&format!("cloudsign.{op}")).is_some(), "cloudsign.{op}");
    }
    let c = Connectors::new(&ConnectorsConfig::default());
    let err = run(&c, "list", "l", json!({"user": "sato"})).await.unwrap_err();
    assert!(
        matches!(&err, ConnectorError::Fatal(m) if m.contains("connectors: cloudsign: {type: cloudsign")),
        "{err:?}"
    );
    // Configured later (reload): the next call uses it.
    let e = env().await;
    let base = e.c.cloudsign("cloudsign").unwrap().as_ref().as_ref().unwrap().base_url.clone();
    c.reload(
        &ConnectorsConfig::from_yaml(&format!(
            "connectors:\n  cloudsign: {{ type: cloudsign, base_url: '{base}', users: {{ sato: {SATO} }} }}\n"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(run(&c, "list", "l", json!({"user": "sato"})).await.unwrap()["count"], json!(0));
}
