//! CloudSign's webhook through `nagare serve`: a document's outcome reaches the
//! instance waiting for it; a wrong secret is refused; no secret reaches the
//! instance's variables or history.

use crate::common::*;
use nagare::server::{AppState, Server};
use nagare_connectors::cloudsign::emulator::Emulator;
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::Engine;
use serde_json::{json, Value};
use std::sync::Arc;

const CLIENT_ID: &str = "demo-client-sato";
const HOOK_SECRET: &str = "hook-secret-5b1e";

const SIGN: &str = r#"
id: cs-sign
variables:
  申請者: { type: string, required: true }
  契約書: { type: text, required: true }
  文書: { type: string }
  結果: { type: string }
start: { next: 下書き }
nodes:
  下書き:
    service: cloudsign.create_draft
    with:
      user: 申請者
      title: '"業務委託契約書"'
      files: '[#{ name: "契約書.pdf", content_base64: 契約書 }]'
      participants: '[#{ email: "signer@example.com", name: "署名 太郎" }]'
    set: { 文書: result.id }
    next: 送信
  送信:
    service: cloudsign.send
    with: { user: 申請者, document: 文書 }
    next: 締結待ち
  締結待ち:
    message: cloudsign.status
    key: 文書
    set: { 結果: payload.status_name }
    next: 完了
  完了: { end: }
"#;

async fn serve_emulator(emu: &Emulator) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let e = emu.clone();
    tokio::spawn(async move { e.serve(listener, std::future::pending()).await.unwrap() });
    format!("http://{addr}")
}

async fn hook(api: &Api, path: &str, body: Value) -> Resp {
    let resp = api
        .http
        .post(format!("{}{path}", api.base))
        .header("user-agent", "CloudSignWebHook")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudsign_webhook_delivers_the_outcome_to_the_waiting_instance() {
    let emu = Emulator::in_memory();
    let cs = serve_emulator(&emu).await;
    let cfg = ConnectorsConfig::from_yaml(&format!(
        "connectors:\n  cloudsign:\n    type: cloudsign\n    base_url: '{cs}'\n    users: {{ sato: {CLIENT_ID} }}\n    webhook_secret: {HOOK_SECRET}\n"
    ))
    .unwrap();
    let connectors = Arc::new(Connectors::new(&cfg));
    let engine = Engine::builder().in_memory().connectors(connectors.registry()).build().unwrap();
    engine.deploy("cs-sign.yaml", SIGN).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = AppState::new(engine.clone(), sample_users()).with_connectors(connectors);
    let server = Server::start_with(listener, state, std::future::pending()).unwrap();
    let api = Api { base: server.url(), server: Some(server), http: reqwest::Client::new(), engine, _dir: None };
    emu.set_webhook(Some(format!("{}/hooks/cloudsign/{HOOK_SECRET}", api.base)));

    // base64 of "%PDF-1.4\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
    let pdf = "JVBERi0xLjQKMSAwIG9iago8PD4+CmVuZG9iagolJUVPRgo=";
    let started = api
        .post(
            SATO,
            "/api/v1/instances",
            json!({ "process": "cs-sign", "variables": { "申請者": "sato", "契約書": pdf } }),
        )
        .await
        .expect(201);
    let id = started["id"].as_u64().unwrap();
    let waiting =
        api.wait_for(id, |v| v["waiting"].as_array().is_some_and(|w| w.iter().any(|x| x["node"] == "締結待ち"))).await;
    let doc = waiting["variables"]["文書"].as_str().unwrap().to_string();
    assert_eq!(emu.read(|s| s.documents[&doc].status), 1, "sent");

    // Not from CloudSign: refused, and the instance still waits.
    let body = json!({ "documentID": doc, "status": 2, "userID": "sato", "email": "sato@example.com", "text": "COMPLETED : x" });
    hook(&api, "/hooks/cloudsign/wrong-secret", body.clone()).await.error(401, "bad-secret");
    hook(&api, "/hooks/cloudsign?token=wrong-secret", body.clone()).await.error(401, "bad-secret");
    hook(&api, "/hooks/cloudsign", body).await.error(401, "bad-secret");
    hook(&api, &format!("/hooks/cloudsign/{HOOK_SECRET}"), json!({ "status": 2 })).await.error(400, "bad-webhook");
    let still = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    assert_eq!(still["status"], json!("running"), "{still}");

    // The signer agrees: the emulator posts the webhook, the instance goes on.
    emu.answer(&doc, true, "").await.unwrap();
    let done = api.wait_for(id, |v| v["status"] == "completed").await;
    assert_eq!(done["variables"]["結果"], json!("concluded"));
    let delivered = emu.deliveries();
    let last = delivered.last().unwrap();
    assert_eq!((last.body["status"].clone(), last.status), (json!(2), Some(200)));

    // No secret in the variables or the history.
    let history = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect_text(200);
    let token = emu.read(|s| s.tokens.keys().next().cloned()).unwrap();
    for text in [history, done.to_string()] {
        assert!(
            !text.contains(CLIENT_ID) && !text.contains(&token) && !text.contains(HOOK_SECRET),
            "a secret leaked: {text}"
        );
    }
    api.finish().await;
}

async fn server_with(cfg: &str) -> Api {
    let connectors = Arc::new(Connectors::new(&ConnectorsConfig::from_yaml(cfg).unwrap()));
    let engine = Engine::builder().in_memory().connectors(connectors.registry()).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = AppState::new(engine.clone(), sample_users()).with_connectors(connectors);
    let server = Server::start_with(listener, state, std::future::pending()).unwrap();
    Api { base: server.url(), server: Some(server), http: reqwest::Client::new(), engine, _dir: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudsign_webhook_from_an_allowed_address_needs_no_secret() {
    let api = server_with(
        "connectors:\n  cs: { type: cloudsign, base_url: 'http://127.0.0.1:9', webhook_allow: [127.0.0.1] }\n",
    )
    .await;
    let outcome = hook(
        &api,
        "/hooks/cloudsign",
        json!({ "documentID": "d-1", "status": 3, "userID": "u", "email": "e", "text": "CANCELED : x" }),
    )
    .await
    .expect(200);
    assert_eq!(outcome["result"], json!("buffered"), "kept for the instance that will wait: {outcome}");
    let sent = hook(&api, "/hooks/cloudsign", json!({ "documentID": "d-1", "status": 1 })).await.expect(200);
    assert_eq!(sent["result"], json!("ignored"));
    api.finish().await;

    let api = server_with(
        "connectors:\n  cs: { type: cloudsign, base_url: 'http://127.0.0.1:9', webhook_allow: [10.0.0.1] }\n",
    )
    .await;
    hook(&api, "/hooks/cloudsign", json!({ "documentID": "d-1", "status": 2 })).await.error(401, "bad-secret");
    api.finish().await;

    let api = server_with("connectors:\n  cs: { type: cloudsign, base_url: 'http://127.0.0.1:9' }\n").await;
    hook(&api, "/hooks/cloudsign/anything", json!({ "documentID": "d-1", "status": 2 })).await.error(404, "not-found");
    api.finish().await;
}
