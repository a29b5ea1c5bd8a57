//! 契約稟議 (processes/contract-approval.yaml) end to end: `nagare serve`'s server
//! (API, executor, CloudSign webhook) over a durable engine on a virtual clock, the
//! CloudSign emulator on 127.0.0.1:0, and the demo users of `config/users.yaml`
//! working their tasks over HTTP.
//!
//! Time only moves when a test moves the virtual clock (retries, reminders, the
//! hourly poll, the expiry); the tests never sleep for a timer.

use chrono::{DateTime, Utc};
use nagare::server::auth::Users;
use nagare::server::{AppState, Server};
use nagare_connectors::cloudsign::emulator::{Emulator, Faults};
use nagare_connectors::cloudsign::files::FsBlobs;
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::runtime::HistoryEvent;
use nagare_engine::{Engine, VirtualClock};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROCESS: &str = "contract-approval";
const HOOK_SECRET: &str = "hook-secret-7c2a";
/// The requester's CloudSign client id (a demo client of the emulator).
const SATO_CLIENT: &str = "demo-client-sato";
/// A client id whose account lacks CloudSign's Web API option: every call is 403.
const NO_OPTION_CLIENT: &str = "demo-client-no-option";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn t0() -> DateTime<Utc> {
    "2026-12-01T00:00:00Z".parse().unwrap()
}

fn config(base: &str, client: &str) -> ConnectorsConfig {
    ConnectorsConfig::from_yaml(&format!(
        "connectors:\n  cloudsign:\n    type: cloudsign\n    base_url: '{base}'\n    timeout: 5s\n    users: {{ sato: {client} }}\n    webhook_secret: {HOOK_SECRET}\n"
    ))
    .unwrap()
}

fn pdf(body: &str) -> Vec<u8> {
    format!("%PDF-1.7\n{body}\n%%EOF\n").into_bytes()
}

fn recipients() -> Value {
    json!([
        { "name": "先方 担当", "email": "tantou@example.co.jp", "signing_authority": false },
        { "name": "先方 代表", "email": "daihyo@example.co.jp", "signing_authority": true },
    ])
}

/// The server, engine, clock and emulator of one test.
struct World {
    base: String,
    http: reqwest::Client,
    engine: Engine,
    clock: Arc<VirtualClock>,
    emu: Emulator,
    cs: String,
    connectors: Arc<Connectors>,
    server: Option<Server>,
    _data: tempfile::TempDir,
}

struct Resp {
    status: u16,
    body: Value,
}

impl Resp {
    #[track_caller]
    fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status: {}", self.body);
        self.body
    }
}

impl World {
    /// `client`: sato's CloudSign client id in the config. `webhook`: whether the
    /// emulator posts status changes to the server.
    async fn start(client: &str, webhook: bool) -> World {
        let emu = Emulator::in_memory();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cs = format!("http://{}", listener.local_addr().unwrap());
        let e = emu.clone();
        tokio::spawn(async move { e.serve(listener, std::future::pending()).await.unwrap() });

        let data = tempfile::tempdir().unwrap();
        let clock = Arc::new(VirtualClock::new(t0()));
        let connectors = Arc::new(Connectors::with_blobs(&config(&cs, client), Arc::new(FsBlobs::new(data.path()))));
        let engine = Engine::builder()
            .data_dir(data.path())
            .unwrap()
            .clock(clock.clone())
            .connectors(connectors.registry())
            .build()
            .unwrap();
        let text = std::fs::read_to_string(root().join("processes/contract-approval.yaml")).unwrap();
        engine.deploy("processes/contract-approval.yaml", &text).unwrap();
        let users = Users::load(&root().join("config/users.yaml")).unwrap();
        engine.set_org(nagare::server::org::load_file(&root().join("config/org.yaml"), &users).unwrap());
        let state = AppState::new(engine.clone(), users).with_connectors(connectors.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start_with(listener, state, std::future::pending()).unwrap();
        let base = server.url();
        if webhook {
            emu.set_webhook(Some(format!("{base}/hooks/cloudsign/{HOOK_SECRET}")));
        }
        World {
            base,
            http: reqwest::Client::new(),
            engine,
            clock,
            emu,
            cs,
            connectors,
            server: Some(server),
            _data: data,
        }
    }

    async fn call(&self, method: Method, user: &str, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(format!("demo-{user}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    async fn get(&self, user: &str, path: &str) -> Resp {
        self.call(Method::GET, user, path, None).await
    }

    async fn post(&self, user: &str, path: &str, body: Value) -> Resp {
        self.call(Method::POST, user, path, Some(body)).await
    }

    async fn upload(&self, user: &str, name: &str, content_type: &str, bytes: Vec<u8>) -> Resp {
        let resp = self
            .http
            .post(format!("{}/api/v1/files", self.base))
            .query(&[("process", PROCESS), ("variable", "契約書"), ("name", name)])
            .bearer_auth(format!("demo-{user}"))
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        Resp { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    /// sato files a request: with the contract and recipients, or without.
    async fn file(&self, with_contract: bool) -> u64 {
        let mut vars = json!({ "件名": "業務委託契約の締結", "取引先": "株式会社サンプル", "金額": 1_200_000,
            "申請理由": "開発業務の委託" });
        if with_contract {
            let file = self.upload("sato", "業務委託契約書.pdf", "application/pdf", pdf("契約本文")).await.expect(201);
            vars["契約書"] = file;
            vars["送付先"] = recipients();
        }
        let inst =
            self.post("sato", "/api/v1/instances", json!({ "process": PROCESS, "variables": vars })).await.expect(201);
        inst["id"].as_u64().unwrap()
    }

    async fn instance(&self, id: u64) -> Value {
        self.get("admin", &format!("/api/v1/instances/{id}")).await.expect(200)
    }

    /// Poll (real time, clock still) until `done` holds.
    async fn wait_for(&self, id: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.instance(id).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "instance {id} did not get there: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Move the virtual clock a minute at a time until `done` holds (retries).
    async fn advance_until(&self, id: u64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.instance(id).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "instance {id} did not get there: {v}");
            self.clock.advance(chrono::Duration::minutes(1));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Move the clock by `by`, stopping at every due time on the way and letting
    /// the server's executor run what is due then (as if time had passed).
    async fn advance(&self, by: chrono::Duration) {
        let target = self.clock_now() + by;
        loop {
            self.idle().await;
            match self.next_due() {
                Some(due) if due <= target => self.clock.set(due.max(self.clock_now())),
                _ => break,
            }
        }
        self.clock.set(target);
        self.idle().await;
    }

    /// The earliest due job in the store (running jobs stay there until reported).
    fn next_due(&self) -> Option<DateTime<Utc>> {
        let first = nagare_engine::internals::store(&self.engine).due_after(None, 1).unwrap();
        first.first().and_then(|(ms, _)| DateTime::from_timestamp_millis(*ms))
    }

    /// Until no job is due now (nothing left for the executor at this time).
    async fn idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.next_due().is_some_and(|d| d <= self.clock_now()) {
            assert!(Instant::now() < deadline, "jobs stay due");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn clock_now(&self) -> DateTime<Utc> {
        use nagare_engine::Clock;
        self.clock.now()
    }

    /// The instance once it waits at the task `node`, and that task's id.
    async fn task(&self, id: u64, node: &str) -> String {
        let v = self.wait_for(id, |v| open_task(v, node).is_some()).await;
        open_task(&v, node).unwrap()
    }

    async fn complete(&self, user: &str, id: u64, node: &str, body: Value) -> Value {
        let task = self.task(id, node).await;
        self.post(user, &format!("/api/v1/tasks/{task}/complete"), body).await.expect(200)
    }

    /// The draft's id once the instance waits in the approval (draft created).
    async fn draft(&self, id: u64) -> String {
        let v = self.advance_until(id, |v| open_task(v, "上長承認").is_some()).await;
        v["variables"]["文書ID"].as_str().expect("a CloudSign draft").to_string()
    }

    /// Manager, then legal, approve.
    async fn approve_all(&self, id: u64) {
        self.complete("tanaka", id, "上長承認", json!({ "variables": { "上長コメント": "問題ありません" } })).await;
        self.complete("kimura", id, "法務承認", json!({ "variables": { "法務コメント": "条項確認済み" } })).await;
    }

    fn document(&self, doc: &str) -> Option<nagare_connectors::cloudsign::emulator::state::Document> {
        self.emu.read(|s| s.documents.get(doc).cloned())
    }

    fn failures(&self, id: u64) -> Vec<String> {
        self.engine
            .history(id)
            .unwrap()
            .into_iter()
            .filter_map(|h| match h.event {
                HistoryEvent::JobFailed { message, .. } => Some(message),
                _ => None,
            })
            .collect()
    }

    async fn finish(mut self) {
        self.server.take().unwrap().shutdown().await.unwrap();
    }
}

fn open_task(v: &Value, node: &str) -> Option<String> {
    v["open_tasks"].as_array()?.iter().find(|t| t["node"] == node).map(|t| t["id"].as_str().unwrap().to_string())
}

fn open_nodes(v: &Value) -> Vec<String> {
    let mut n: Vec<String> =
        v["open_tasks"].as_array().unwrap().iter().map(|t| t["node"].as_str().unwrap().to_string()).collect();
    n.sort();
    n
}

fn waits_at(v: &Value, node: &str) -> bool {
    v["waiting"].as_array().is_some_and(|w| w.iter().any(|x| x["node"] == node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_sends_the_draft_and_the_webhook_concludes_it() {
    let w = World::start(SATO_CLIENT, true).await;
    let id = w.file(true).await;

    // Filing created the draft in sato's name, with the file, recipients and attributes.
    let doc = w.draft(id).await;
    let d = w.document(&doc).unwrap();
    assert_eq!((d.status, d.user_id.as_str(), d.title.as_str()), (0, "sato", "業務委託契約の締結"));
    assert_eq!(d.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["業務委託契約書.pdf"]);
    let emails: Vec<&str> = d.participants.iter().skip(1).map(|p| p.email.as_str()).collect();
    assert_eq!(emails, ["tantou@example.co.jp", "daihyo@example.co.jp"], "recipients in send order");
    assert_eq!(d.attribute["counterparty"], json!("株式会社サンプル"));
    assert_eq!(d.attribute["amount"], json!(1_200_000));
    // The approval and the requester's withdrawal are open side by side; the
    // approval is sato's manager's (tanaka, from config/org.yaml), due in three
    // business days (Fri 12-04, end of the day in Japan).
    let v = w.instance(id).await;
    assert_eq!(open_nodes(&v), ["上長承認", "取り下げ受付"]);
    let approval = v["open_tasks"].as_array().unwrap().iter().find(|t| t["node"] == "上長承認").unwrap();
    assert_eq!(approval["assignee"], json!("tanaka"), "{approval}");
    assert_eq!(approval["due"], json!("2026-12-04T14:59:59Z"), "{approval}");
    let other_manager =
        w.post("yamada", &format!("/api/v1/tasks/{}/complete", approval["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(other_manager.status, 409, "only the requester's manager approves: {}", other_manager.body);

    // A day and a half without an answer: one reminder, the task stays open.
    w.advance(chrono::Duration::hours(36)).await;
    let v = w.instance(id).await;
    assert_eq!(v["variables"]["督促回数"], json!(1), "{v}");
    // The manager sends it back once; sato explains; then both approve.
    let task = w.task(id, "上長承認").await;
    w.post("tanaka", &format!("/api/v1/tasks/{task}/send-back"), json!({ "comment": "理由を詳しく" }))
        .await
        .expect(200);
    w.complete("sato", id, "修正", json!({ "variables": { "申請理由": "開発業務の委託（3か月）" } })).await;
    w.approve_all(id).await;
    // The history records whom the org chose: the manager, then everyone in 法務部.
    let routed: Vec<Vec<String>> = w
        .engine
        .history(id)
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            HistoryEvent::TaskRouted { to, .. } => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(routed, [vec!["tanaka"], vec!["tanaka"], vec!["kimura"]], "before and after the send-back, then legal");

    // Final approval: sent; the withdrawal task is gone with the approval.
    let v = w.wait_for(id, |v| waits_at(v, "締結待ち")).await;
    assert_eq!(v["variables"]["状態"], json!("送信済"));
    assert!(v["variables"]["承認日時"].is_string());
    assert!(open_nodes(&v).is_empty(), "no withdrawal after the final approval: {v}");
    assert_eq!(w.document(&doc).unwrap().status, 1, "sent");

    // Both recipients agree in send order; CloudSign's webhook reaches nagare when
    // the last one concludes the contract; the outcome is recorded.
    w.emu.answer(&doc, true, "").await.unwrap();
    let v = w.instance(id).await;
    assert!(waits_at(&v, "締結待ち"), "one of two agreed: still waiting: {v}");
    w.emu.answer(&doc, true, "").await.unwrap();
    let v = w.wait_for(id, |v| v["status"] == "completed").await;
    assert_eq!(v["variables"]["状態"], json!("締結"), "{v}");
    assert_eq!(v["variables"]["CloudSign状態"], json!("concluded"));
    assert_eq!(v["variables"]["締結日"], json!("2026-12-02"), "the concluded date (JST) of the virtual clock");
    assert_eq!(w.emu.deliveries().last().unwrap().status, Some(200));
    // The draft was created exactly once.
    assert_eq!(w.emu.read(|s| s.documents.len()), 1);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_the_process_polls_until_concluded() {
    let w = World::start(SATO_CLIENT, false).await;
    let id = w.file(true).await;
    let doc = w.draft(id).await;
    w.approve_all(id).await;
    w.wait_for(id, |v| waits_at(v, "締結待ち")).await;

    // An hour: CloudSign is asked, the signer has not answered yet; wait again.
    w.advance(chrono::Duration::hours(1)).await;
    let v = w.wait_for(id, |v| waits_at(v, "締結待ち")).await;
    assert_eq!(v["variables"]["CloudSign状態"], json!("in_progress"));
    let polls = |w: &World| {
        w.engine
            .history(id)
            .unwrap()
            .iter()
            .filter(|h| h.node.as_deref() == Some("状況確認") && matches!(h.event, HistoryEvent::JobScheduled { .. }))
            .count()
    };
    assert_eq!(polls(&w), 1);

    // Both recipients agree; nobody tells nagare; the next poll finds out.
    w.emu.answer(&doc, true, "").await.unwrap();
    w.emu.answer(&doc, true, "").await.unwrap();
    assert!(w.emu.deliveries().is_empty(), "no webhook configured");
    w.advance(chrono::Duration::hours(1)).await;
    let v = w.wait_for(id, |v| v["status"] == "completed").await;
    assert_eq!(v["variables"]["状態"], json!("締結"), "{v}");
    assert_eq!(v["variables"]["締結日"], json!("2026-12-01"));
    assert_eq!(polls(&w), 2);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_contract_is_recorded_as_declined() {
    let w = World::start(SATO_CLIENT, true).await;
    let id = w.file(true).await;
    let doc = w.draft(id).await;
    w.approve_all(id).await;
    w.wait_for(id, |v| waits_at(v, "締結待ち")).await;
    w.emu.answer(&doc, false, "金額が違います").await.unwrap();
    let v = w.wait_for(id, |v| v["status"] == "completed").await;
    assert_eq!(v["variables"]["状態"], json!("辞退"), "{v}");
    assert!(v["variables"]["締結日"].is_null());
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_deletes_the_draft() {
    let w = World::start(SATO_CLIENT, true).await;
    let id = w.file(true).await;
    let doc = w.draft(id).await;
    w.complete("tanaka", id, "上長承認", json!({ "outcome": "reject", "variables": { "上長コメント": "予算超過" } }))
        .await;
    let v = w.wait_for(id, |v| v["status"] == "completed").await;
    assert_eq!(v["variables"]["状態"], json!("却下"), "{v}");
    assert_eq!(v["variables"]["下書き削除"], json!(true));
    assert!(w.document(&doc).is_none(), "the draft is gone from CloudSign");
    assert!(open_nodes(&v).is_empty(), "the withdrawal task ended with the request: {v}");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_deletes_the_draft_and_is_impossible_after_final_approval() {
    let w = World::start(SATO_CLIENT, true).await;
    // Withdrawn while the manager has it.
    let id = w.file(true).await;
    let doc = w.draft(id).await;
    // Only the requester: a colleague in the same group is refused.
    let task = w.task(id, "取り下げ受付").await;
    let theirs = w
        .post("kato", &format!("/api/v1/tasks/{task}/complete"), json!({ "variables": { "取り下げ理由": "x" } }))
        .await;
    assert_eq!(theirs.status, 409, "{}", theirs.body);
    let inbox = w.get("sato", "/api/v1/tasks").await.expect(200);
    assert!(inbox["items"].as_array().unwrap().iter().any(|t| t["id"] == task.as_str()), "in sato's inbox: {inbox}");
    w.complete("sato", id, "取り下げ受付", json!({ "variables": { "取り下げ理由": "先方都合で延期" } })).await;
    let v = w.wait_for(id, |v| v["status"] == "completed").await;
    assert_eq!(v["variables"]["状態"], json!("取り下げ"), "{v}");
    assert!(w.document(&doc).is_none(), "the draft is gone from CloudSign");
    assert!(open_nodes(&v).is_empty(), "the manager's task was withdrawn too: {v}");

    // Another request, approved: its withdrawal task is closed and cannot be completed.
    let id = w.file(true).await;
    w.draft(id).await;
    let withdraw = w.task(id, "取り下げ受付").await;
    w.approve_all(id).await;
    w.wait_for(id, |v| waits_at(v, "締結待ち")).await;
    let late = w
        .post("sato", &format!("/api/v1/tasks/{withdraw}/complete"), json!({ "variables": { "取り下げ理由": "x" } }))
        .await;
    assert!(matches!(late.status, 404 | 409), "{} {}", late.status, late.body);
    assert_eq!(w.instance(id).await["variables"]["状態"], json!("送信済"));
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_deletes_its_draft() {
    let w = World::start(SATO_CLIENT, true).await;
    let id = w.file(true).await;
    let doc = w.draft(id).await;
    // 14 business days from Tue 2026-12-01: midnight of Mon 12-21 in Japan.
    w.advance(chrono::Duration::days(18)).await;
    assert_eq!(w.instance(id).await["status"], json!("running"), "calendar days are not business days");
    w.advance(chrono::Duration::days(2)).await;
    let v = w.wait_for(id, |v| v["status"] == "completed").await;
    assert_eq!(v["variables"]["状態"], json!("期限切れ"), "{v}");
    assert_eq!(v["variables"]["督促回数"], json!(3), "three reminders, then no more");
    assert!(w.document(&doc).is_none());
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_contract_in_optional_mode_nothing_reaches_cloudsign() {
    let w = World::start(SATO_CLIENT, true).await;
    let id = w.file(false).await;
    w.approve_all(id).await;
    let v = w.wait_for(id, |v| v["status"] == "completed").await;
    assert_eq!(v["variables"]["状態"], json!("承認"), "{v}");
    assert_eq!(w.emu.requests(), 0);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_mode_refuses_an_empty_request_with_every_reason() {
    let w = World::start(SATO_CLIENT, true).await;
    let put = |user: &'static str, v: Value| {
        let w = &w;
        async move { w.call(Method::PUT, user, &format!("/api/v1/processes/{PROCESS}/config"), Some(v)).await }
    };
    put("sato", json!({ "settings": { "cloudsign": "required" } })).await.expect(403);
    put("admin", json!({ "settings": { "cloudsign": "required" } })).await.expect(200);

    let start = |vars: Value| json!({ "process": PROCESS, "variables": vars });
    // An empty request: every reason at once, the missing fields and the CloudSign rules.
    let err = w.post("sato", "/api/v1/instances", start(json!({}))).await.expect(422);
    assert_eq!(err["code"], "invalid-data");
    let mut fields: Vec<&str> =
        err["details"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    fields.sort();
    assert_eq!(fields, ["件名", "取引先", "契約書", "送付先", "送付先", "金額"], "{err}");
    let message = err["message"].as_str().unwrap();
    for why in ["契約書（PDF）を添付", "送付先を1人以上", "契約締結権限者"] {
        assert!(message.contains(why), "{why}: {err}");
    }
    // The same with the plain fields filled in: the CloudSign reasons remain.
    let basics = json!({ "件名": "秘密保持契約", "取引先": "株式会社サンプル", "金額": 0 });
    let err = w.post("sato", "/api/v1/instances", start(basics.clone())).await.expect(422);
    assert_eq!(err["details"]["errors"].as_array().unwrap().len(), 3, "{err}");

    // Recipients, none with signing authority, and one without an address.
    let mut vars = basics.clone();
    vars["送付先"] = json!([{ "name": "先方 担当", "email": "tantou@example.co.jp", "signing_authority": false },
                             { "name": "先方 経理", "signing_authority": false }]);
    let err = w.post("sato", "/api/v1/instances", start(vars)).await.expect(422);
    let message = err["message"].as_str().unwrap();
    for why in ["契約書（PDF）を添付", "契約締結権限者", "email"] {
        assert!(message.contains(why), "{why}: {err}");
    }
    assert_eq!(w.emu.requests(), 0, "nothing reached CloudSign");
    assert!(w.engine.instances(&Default::default()).unwrap().is_empty());

    // Off: no CloudSign at all, even with a contract.
    put("admin", json!({ "settings": { "cloudsign": "off" } })).await.expect(200);
    let id = w.file(true).await;
    let v = w.wait_for(id, |v| open_task(v, "上長承認").is_some()).await;
    assert!(v["variables"]["文書ID"].is_null());
    assert_eq!(w.emu.requests(), 0);
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_12_mb_file_and_a_non_pdf_are_refused_before_any_call() {
    let w = World::start(SATO_CLIENT, true).await;
    let big = pdf(&"x".repeat(12 * 1024 * 1024));
    let err = w.upload("sato", "大きな契約書.pdf", "application/pdf", big).await.expect(413);
    assert_eq!(err["code"], "file-too-large", "{err}");
    let err = w.upload("sato", "契約書.pdf", "application/pdf", b"PK\x03\x04 a zip".to_vec()).await.expect(422);
    assert_eq!(err["code"], "not-a-pdf", "{err}");
    let err = w.upload("sato", "契約書.docx", "application/msword", b"docx".to_vec()).await.expect(422);
    assert_eq!(err["code"], "content-type-not-accepted", "{err}");
    assert_eq!(w.emu.requests(), 0, "no CloudSign call");
    assert!(w.engine.instances(&Default::default()).unwrap().is_empty());
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expiring_mid_process_is_renewed_transparently() {
    let w = World::start(SATO_CLIENT, true).await;
    let id = w.file(true).await;
    let doc = w.draft(id).await;
    assert_eq!(w.emu.token_requests(), 1);
    // CloudSign's clock passes the token's hour; nagare's cache still holds it.
    w.emu.advance(Duration::from_secs(2 * 3600));
    w.approve_all(id).await;
    w.wait_for(id, |v| waits_at(v, "締結待ち")).await;
    assert_eq!(w.document(&doc).unwrap().status, 1, "sent with the new token");
    assert_eq!(w.emu.token_requests(), 2, "one renewal");
    assert!(w.failures(id).is_empty(), "no failed attempt: {:?}", w.failures(id));
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried() {
    let w = World::start(SATO_CLIENT, true).await;
    w.emu.set_faults(Faults { throttle_next: 1, fail_next: 2, retry_after_secs: Some(30), ..Default::default() });
    let id = w.file(true).await;
    let doc = w.draft(id).await;
    let f = w.failures(id);
    assert_eq!(f.len(), 3, "{f:?}");
    assert!(f[0].contains("429"), "{f:?}");
    assert!(f[1..].iter().all(|m| m.contains("500")), "{f:?}");
    // CloudSign's Retry-After (30 s) is longer than the step's first backoff (5 s): honoured.
    let waits: Vec<i64> = w
        .engine
        .history(id)
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            HistoryEvent::JobFailed { retry_at: Some(at), .. } => Some((at - h.at).num_seconds()),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 3, "{waits:?}");
    assert_eq!(waits[0], 30, "{waits:?}");
    let v = w.instance(id).await;
    assert!(v["incidents"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(w.emu.read(|s| s.documents.len()), 1, "one draft: {doc}");
    w.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_403_is_an_incident_that_retry_fixes_after_the_config_is_corrected() {
    let w = World::start(NO_OPTION_CLIENT, true).await;
    let id = w.file(true).await;
    let v = w.advance_until(id, |v| !v["incidents"].as_array().unwrap().is_empty()).await;
    let incident = &v["incidents"][0];
    assert_eq!(incident["node"], "下書き作成");
    let message = incident["message"].as_str().unwrap();
    assert!(message.contains("webapi_option_required"), "{message}");
    assert!(!v.to_string().contains(NO_OPTION_CLIENT), "no client id in the instance: {v}");
    assert_eq!(w.failures(id).len(), 1, "a 403 is not retried");
    assert!(w.emu.read(|s| s.documents.is_empty()));

    // The administrator gives sato the right client id and retries.
    w.connectors.reload(&config(&w.cs, SATO_CLIENT)).unwrap();
    let n = incident["id"].as_u64().unwrap();
    w.post("admin", &format!("/api/v1/instances/{id}/incidents/{n}/retry"), json!({})).await.expect(200);
    let doc = w.draft(id).await;
    assert_eq!(w.document(&doc).unwrap().user_id, "sato");
    w.finish().await;
}

#[test]
fn the_process_validates() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nagare"))
        .args(["validate", "processes/contract-approval.yaml"])
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("warning"), "no warnings: {text}");
}
