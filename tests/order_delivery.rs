//! Order to delivery end to end: the kintone emulator on 127.0.0.1:0, a durable
//! engine in a temp dir with a virtual clock, the executor and the kintone watcher.
//!
//! Time only moves when a test moves the virtual clock: a retry "5 minutes later"
//! runs at once, and the tests never sleep.

use chrono::{DateTime, Duration, Utc};
use nagare_connectors::kintone::emulator::{Emulator, Faults, DEMO_TOKEN};
use nagare_connectors::kintone::trigger::Watcher;
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::runtime::{HistoryEvent, Instance, Outcome, Status};
use nagare_engine::store::TaskQuery;
use nagare_engine::{Clock, Engine, Executor, Vars, VirtualClock};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

const PROCESS: &str = "order-delivery";

fn process_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("processes/order-delivery.yaml")).unwrap()
}

/// The emulator served on a port; stoppable and restartable on the same port.
struct Kintone {
    emu: Emulator,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Kintone {
    async fn start(emu: Emulator, addr: &str) -> Kintone {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let e = emu.clone();
        let task = tokio::spawn(async move {
            e.serve(listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Kintone { emu, addr, stop: Some(tx), task: Some(task) }
    }

    async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    async fn restart(&mut self) {
        let again = Kintone::start(self.emu.clone(), &self.addr.to_string()).await;
        *self = again;
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A record through the emulator's HTTP API, as any kintone client sees it.
    async fn fetch(&self, id: u64) -> serde_json::Map<String, Value> {
        let v: Value = reqwest::Client::new()
            .get(format!("{}/k/v1/record.json?app=1&id={id}", self.base()))
            .header("X-Cybozu-API-Token", DEMO_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["record"].as_object().unwrap().clone()
    }
}

fn config(base: &str, token: &str) -> ConnectorsConfig {
    ConnectorsConfig::from_yaml(&format!(
        "connectors:\n  kintone:\n    type: kintone\n    base_url: {base}\n    app: 1\n    token: {token}\n    timeout: 5s\n"
    ))
    .unwrap()
}

/// Engine, executor and watcher on a data dir, with the virtual clock.
struct World {
    clock: Arc<VirtualClock>,
    engine: Engine,
    connectors: Arc<Connectors>,
    watcher: Watcher,
    exec: Executor,
}

fn t0() -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse().unwrap()
}

fn world(data: &Path, clock: Arc<VirtualClock>, cfg: &ConnectorsConfig) -> World {
    let connectors = Arc::new(Connectors::new(cfg));
    let engine = Engine::builder()
        .data_dir(data)
        .unwrap()
        .clock(clock.clone())
        .connectors(connectors.registry())
        .build()
        .unwrap();
    engine.deploy("processes/order-delivery.yaml", &process_text()).unwrap();
    let watcher = Watcher::new(engine.clone(), connectors.clone());
    let exec = Executor::new(engine.clone());
    World { clock, engine, connectors, watcher, exec }
}

impl World {
    /// Run due jobs; while some wait for a retry, move the clock by `step` and run
    /// again, at most `rounds` times.
    async fn settle(&self, step: Duration, rounds: usize) {
        for _ in 0..rounds {
            self.exec.run_until_idle().await;
            if self.exec.queued() == 0 {
                return;
            }
            self.clock.advance(step);
        }
        self.exec.run_until_idle().await;
    }

    fn instance(&self, id: u64) -> Instance {
        self.engine.instance(id).unwrap()
    }

    /// The one open task in `group`, claimed and completed by `user`.
    async fn work(&self, group: &str, node: &str, user: &str, data: Vars, outcome: Outcome) {
        let q = TaskQuery { groups: Some(vec![group.to_string()]), ..Default::default() };
        let tasks = self.engine.tasks(&q).unwrap();
        assert_eq!(tasks.len(), 1, "one open task for {group}: {tasks:?}");
        assert_eq!(tasks[0].node, node, "the task for {group}");
        self.engine.claim(&tasks[0].id, user).unwrap();
        self.engine.complete(&tasks[0].id, user, data, outcome).unwrap();
        self.settle(Duration::minutes(5), 20).await;
    }

    fn open_groups(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.engine.tasks(&TaskQuery::default()).unwrap().into_iter().flat_map(|t| t.groups).collect();
        v.sort();
        v
    }
}

fn vars(pairs: &[(&str, Value)]) -> Vars {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn field(r: &serde_json::Map<String, Value>, code: &str) -> Value {
    r[code]["value"].clone()
}

fn failures(engine: &Engine, id: u64) -> Vec<String> {
    engine
        .history(id)
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            HistoryEvent::JobFailed { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_set_to_taiouyou_runs_the_whole_process_once() {
    let data = tempfile::tempdir().unwrap();
    let emu_dir = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::open(emu_dir.path()).unwrap(), "127.0.0.1:0").await;
    let cfg = config(&kintone.base(), DEMO_TOKEN);
    let clock = Arc::new(VirtualClock::new(t0()));
    let w = world(data.path(), clock.clone(), &cfg);

    // Nothing needs action yet.
    let r = w.watcher.poll(PROCESS).await.unwrap();
    assert_eq!((r.matched, r.started.len()), (0, 0));

    // Someone sets record 1 to 対応要 in kintone.
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let r = w.watcher.poll(PROCESS).await.unwrap();
    assert_eq!(r.started.len(), 1, "{r:?}");
    let id = r.started[0];
    let again = w.watcher.poll(PROCESS).await.unwrap();
    assert_eq!((again.started.len(), again.existing), (0, 1), "polled again: no second instance");

    // The engine restarts (every handle dropped, the store reopened): still one.
    drop(w);
    let w = world(data.path(), clock.clone(), &cfg);
    let after = w.watcher.poll(PROCESS).await.unwrap();
    assert_eq!((after.started.len(), after.existing), (0, 1), "after a restart: no second instance");
    assert_eq!(w.engine.instances(&Default::default()).unwrap().len(), 1);

    // The system lane fetches the record and writes back k_Qid and 3_対応中.
    w.settle(Duration::minutes(5), 20).await;
    let inst = w.instance(id);
    assert_eq!(inst.vars["q_customerName"], json!("山田 太郎"));
    assert_eq!(inst.vars["q_plan"], json!("スタンダード"));
    assert_eq!(inst.vars["q_maintenanceDatetime"], json!("2026-12-01T01:00:00Z"));
    assert_eq!(inst.vars["q_taskLimitDatetime"], json!("2026-11-30T01:00:00Z"));
    assert_eq!(inst.vars["件名"], json!("納品: 山田 太郎 様 スタンダード (C-0001)"));
    let rec = kintone.fetch(1).await;
    assert_eq!(field(&rec, "k_ステータス"), json!("3_対応中"));
    assert_eq!(field(&rec, "k_Qid"), json!(id.to_string()));
    assert_eq!(w.open_groups(), ["license"]);

    // License, then build sends back once, license fixes, build again.
    w.work("license", "ライセンスキー手配", "kato", vars(&[("q_licenseKey", json!("LK-1111"))]), Outcome::Next).await;
    assert_eq!(w.open_groups(), ["build"]);
    let back = Outcome::SendBack { comment: "ライセンスキー修正: キーが無効です".into() };
    w.work("build", "環境構築", "ito", Vars::new(), back).await;
    assert_eq!(w.open_groups(), ["license"]);
    w.work("license", "ライセンスキー修正", "kato", vars(&[("q_licenseKey", json!("LK-2222"))]), Outcome::Next).await;
    let built = vars(&[("q_accessUrl", json!("https://c-0001.example.jp")), ("q_password", json!("init-pass"))]);
    w.work("build", "環境構築", "ito", built, Outcome::Next).await;

    // The customer wants the manual: shipping comes last.
    assert_eq!(w.open_groups(), ["shipping"]);
    let shipped = vars(&[
        ("q_sendZipcode", json!("100-0001")),
        ("q_sendAddress", json!("東京都千代田区千代田1-1")),
        ("q_sendName", json!("山田 太郎")),
        ("q_trackingNo", json!("1234-5678-9012")),
    ]);
    w.work("shipping", "マニュアル送付手配", "ueda", shipped, Outcome::Next).await;

    let inst = w.instance(id);
    assert_eq!(inst.status, Status::Completed, "{inst:?}");
    assert_eq!(inst.vars["q_licenseKey"], json!("LK-2222"));
    let rec = kintone.fetch(1).await;
    assert_eq!(field(&rec, "k_ステータス"), json!("4_対応済"));
    assert_eq!(field(&rec, "k_Qid"), json!(id.to_string()));
    assert_eq!(field(&rec, "k_氏名"), json!("山田 太郎"), "fields the process does not write are kept");
    // The order of the people's steps, from the history.
    let steps: Vec<String> = w
        .engine
        .history(id)
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            HistoryEvent::TaskCompleted { outcome, .. } => Some(format!("{} {outcome}", h.node.unwrap_or_default())),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        [
            "ライセンスキー手配 next",
            "環境構築 send_back",
            "ライセンスキー修正 next",
            "環境構築 next",
            "マニュアル送付手配 next"
        ]
    );
    assert!(w.watcher.poll(PROCESS).await.unwrap().started.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_action_ends_on_the_no_action_branch() {
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    kintone.emu.edit(1, 2, &[("k_ステータス", json!("対応要"))]).unwrap();
    let id = w.watcher.poll(PROCESS).await.unwrap().started[0];
    // Changed back before the fetch ran.
    kintone.emu.edit(1, 2, &[("k_ステータス", json!("未対応"))]).unwrap();
    w.settle(Duration::minutes(5), 20).await;
    let inst = w.instance(id);
    assert_eq!(inst.status, Status::Completed);
    assert_eq!(inst.vars["件名"], json!("対応なし: 佐藤 花子 (C-0002)"));
    assert_eq!(field(&kintone.fetch(2).await, "k_Qid"), json!(""), "nothing written back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundreds_three_times_then_success() {
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let id = w.watcher.poll(PROCESS).await.unwrap().started[0];

    kintone.emu.set_faults(Faults { fail_next: 3, ..Default::default() });
    w.settle(Duration::minutes(5), 20).await;
    let inst = w.instance(id);
    assert!(inst.incidents.is_empty(), "{:?}", inst.incidents);
    assert_eq!(inst.vars["q_customerName"], json!("山田 太郎"));
    let f = failures(&w.engine, id);
    assert_eq!(f.len(), 3, "{f:?}");
    assert!(f.iter().all(|m| m.contains("EMU_FAULT") && m.contains("HTTP 500")), "{f:?}");
    assert_eq!(w.open_groups(), ["license"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_calls_are_retried_and_say_when() {
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let id = w.watcher.poll(PROCESS).await.unwrap().started[0];
    kintone.emu.set_faults(Faults { throttle_next: 1, retry_after_secs: Some(30), ..Default::default() });
    w.settle(Duration::minutes(5), 20).await;
    let f = failures(&w.engine, id);
    assert_eq!(f.len(), 1);
    assert!(f[0].contains("HTTP 429") && f[0].contains("retry after 30s"), "{f:?}");
    // The step's first backoff is 5s; kintone asked for 30s, and got it.
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
    assert_eq!(waits, [30]);
    assert_eq!(w.open_groups(), ["license"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_an_incident_with_kintones_message_then_fixed_and_retried() {
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let good = config(&kintone.base(), DEMO_TOKEN);
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &good);
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let id = w.watcher.poll(PROCESS).await.unwrap().started[0];

    // Someone rotates the token in the config to a wrong one.
    let secret = "wrong-token-d41d8cd98f";
    w.connectors.reload(&config(&kintone.base(), secret)).unwrap();
    w.settle(Duration::minutes(5), 20).await;
    let inst = w.instance(id);
    assert_eq!(inst.status, Status::Incident);
    let incident = &inst.incidents[0];
    assert_eq!(incident.node, "kintone取得");
    assert!(incident.message.contains("GAIA_IA02"), "{}", incident.message);
    assert!(
        incident.message.contains("指定したAPIトークンは、アプリで生成されたトークンと異なります"),
        "{}",
        incident.message
    );
    assert_eq!(failures(&w.engine, id).len(), 1, "a fatal error is not retried");
    // The secret is nowhere in the instance, its history or the incident.
    let everything = format!("{:?}{:?}", w.instance(id), w.engine.history(id).unwrap());
    assert!(!everything.contains(secret));

    // Fixed config, retried: the instance goes on.
    w.connectors.reload(&good).unwrap();
    w.engine.retry_incident(id, incident.id, Vars::new(), "admin").unwrap();
    w.settle(Duration::minutes(5), 20).await;
    let inst = w.instance(id);
    assert_eq!(inst.status, Status::Running);
    assert_eq!(inst.vars["q_customerName"], json!("山田 太郎"));
    assert_eq!(field(&kintone.fetch(1).await, "k_ステータス"), json!("3_対応中"));
    assert_eq!(w.open_groups(), ["license"]);
}

const CONFLICT: &str = r#"
id: conflict
variables:
  rid: { type: string, required: true }
  rev: { type: string }
  conflicts: { type: number }
lanes:
  担当: { groups: [staff] }
start: { next: fetch }
nodes:
  fetch:
    service: kintone.get
    with: { id: rid }
    set: { rev: result.revision }
    next: check
  check:
    user_task: 確認
    lane: 担当
    next: write
  write:
    service: kintone.update
    with:
      id: rid
      revision: rev
      record: '#{ k_ステータス: "3_対応中" }'
    set: { conflicts: result.conflicts }
    next: done
  done: { end: }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_conflict_rereads_and_loses_no_update() {
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    w.engine.deploy("conflict.yaml", CONFLICT).unwrap();
    let inst = w.engine.start("conflict", vars(&[("rid", json!("1"))]), Default::default()).unwrap();
    w.settle(Duration::minutes(5), 20).await;
    assert_eq!(w.instance(inst.id).vars["rev"], json!("1"));

    // While the task is open, someone edits the record in kintone.
    let rev = kintone.emu.edit(1, 1, &[("k_氏名", json!("山田 太郎 (旧姓 佐藤)"))]).unwrap();
    assert_eq!(rev, 2);
    w.work("staff", "check", "sato", Vars::new(), Outcome::Next).await;

    let done = w.instance(inst.id);
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(done.vars["conflicts"], json!(1), "one conflict, re-read, sent again");
    let rec = kintone.fetch(1).await;
    assert_eq!(field(&rec, "k_ステータス"), json!("3_対応中"), "our write landed");
    assert_eq!(field(&rec, "k_氏名"), json!("山田 太郎 (旧姓 佐藤)"), "their write was not lost");
    assert_eq!(rec["$revision"]["value"], json!("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kintone_down_for_a_minute_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let emu_dir = tempfile::tempdir().unwrap();
    let mut kintone = Kintone::start(Emulator::open(emu_dir.path()).unwrap(), "127.0.0.1:0").await;
    let clock = Arc::new(VirtualClock::new(t0()));
    let w = world(data.path(), clock.clone(), &config(&kintone.base(), DEMO_TOKEN));
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let id = w.watcher.poll(PROCESS).await.unwrap().started[0];

    // kintone goes away: the watcher reports it and the fetch keeps retrying.
    kintone.stop().await;
    assert!(w.watcher.poll(PROCESS).await.is_err());
    let start = clock.now();
    while clock.now() - start < Duration::seconds(60) {
        w.exec.run_until_idle().await;
        clock.advance(Duration::seconds(10));
    }
    let inst = w.instance(id);
    assert!(inst.incidents.is_empty(), "still retrying after a minute: {:?}", inst.incidents);
    let f = failures(&w.engine, id);
    assert!(f.len() >= 3, "{f:?}");
    assert!(f.iter().all(|m| m.contains("cannot connect") || m.contains("request failed")), "{f:?}");

    // Back (same port, same data): the next retry gets through.
    kintone.restart().await;
    w.settle(Duration::minutes(5), 20).await;
    let inst = w.instance(id);
    assert_eq!(inst.vars["q_customerName"], json!("山田 太郎"));
    assert_eq!(field(&kintone.fetch(1).await, "k_Qid"), json!(id.to_string()));
    assert_eq!(w.open_groups(), ["license"]);
    assert_eq!(w.watcher.poll(PROCESS).await.unwrap().started.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_starts_once_and_only_for_matching_records() {
    use nagare_connectors::kintone::trigger::webhook_router;
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    let watcher = Arc::new(Watcher::new(w.engine.clone(), w.connectors.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum_serve(listener, webhook_router(watcher)).await });
    let url = format!("http://{hook_addr}/hooks/kintone/{PROCESS}");
    let body = |id: &str| {
        json!({
            "id": "01234567-89ab", "type": "UPDATE_RECORD", "app": {"id": "1", "name": "契約台帳"},
            "record": {"$id": {"type": "__ID__", "value": id}, "k_ステータス": {"type": "RADIO_BUTTON", "value": "対応要"}},
            "recordTitle": "C-0001", "url": "https://example.cybozu.com/k/1/show#record=1", "timestamp": "2026-11-23T00:00:00Z"
        })
    };
    let http = reqwest::Client::new();
    let post = |b: Value| http.post(&url).json(&b).send();

    // The body claims 対応要, but kintone says 未対応: nothing starts.
    let r: Value = post(body("1")).await.unwrap().json().await.unwrap();
    assert_eq!(r["started"], json!(false), "{r}");
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let r: Value = post(body("1")).await.unwrap().json().await.unwrap();
    assert_eq!(r["started"], json!(true), "{r}");
    let first = r["instance"].clone();
    let r: Value = post(body("1")).await.unwrap().json().await.unwrap();
    assert_eq!(r["started"], json!(false), "delivered twice: {r}");
    // The poll sees the same record: still one instance.
    assert_eq!(w.watcher.poll(PROCESS).await.unwrap().existing, 1);
    assert_eq!(w.engine.instances(&Default::default()).unwrap().len(), 1);
    assert_eq!(first, json!(w.engine.instances(&Default::default()).unwrap()[0].id));
    let bad = post(json!({"type": "UPDATE_RECORD", "app": {"id": "2"}, "record": {}})).await.unwrap();
    assert_eq!(bad.status(), 400);
}

async fn axum_serve(listener: tokio::net::TcpListener, router: axum::Router) {
    axum::serve(listener, router).await.unwrap();
}

/// The same story as people and kintone live it: `nagare serve`'s server (API,
/// executor and watcher together), kintone's webhook, and each lane's people working
/// their inbox over HTTP with the demo users of `config/users.yaml`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_process_through_the_task_list_api_and_the_webhook() {
    use nagare::server::auth::Users;
    use nagare::server::{AppState, Server};
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    let users = Users::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/users.yaml")).unwrap();
    let watcher = Arc::new(Watcher::new(w.engine.clone(), w.connectors.clone()));
    let state = AppState::new(w.engine.clone(), users).with_watcher(watcher);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Server::start_with(listener, state, std::future::pending()).unwrap();
    let api = server.url();
    let http = reqwest::Client::new();
    let call = |user: &str, path: String, body: Option<Value>| {
        let req = match &body {
            Some(b) => http.post(format!("{api}{path}")).json(b),
            None => http.get(format!("{api}{path}")),
        };
        let user = user.to_string();
        async move {
            let resp = req.bearer_auth(format!("demo-{user}")).send().await.unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap();
            assert!(status < 300, "{user} {path}: {status} {v}");
            v
        }
    };
    // The one task in `user`'s inbox, once the executor has run the service steps.
    let inbox = |user: &'static str| {
        let call = &call;
        async move {
            for _ in 0..200 {
                let items = call(user, "/api/v1/tasks".into(), None).await["items"].as_array().unwrap().clone();
                if let [one] = items.as_slice() {
                    return (one["id"].as_str().unwrap().to_string(), one["node"].as_str().unwrap().to_string());
                }
                assert!(items.is_empty(), "{user}: one task at a time: {items:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            panic!("no task reached {user}'s inbox");
        }
    };

    // kintone: record 1 set to 対応要; its webhook reaches the server twice. The
    // watcher's poll may get there first: either way, one instance.
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let hook = format!("{api}/hooks/kintone/{PROCESS}");
    let body = json!({ "type": "UPDATE_RECORD", "app": { "id": "1" }, "record": { "$id": { "type": "__ID__", "value": "1" } } });
    let mut started = 0;
    for _ in 0..2 {
        let r: Value = http.post(&hook).json(&body).send().await.unwrap().json().await.unwrap();
        started += usize::from(r["started"] == json!(true));
        // Once an instance has run its first steps, the record is no longer 対応要
        // (the process writes its status back): a later delivery sees that instead.
        let reason = r["reason"].as_str().unwrap_or("");
        let known = reason.starts_with("the record's instance") && reason.ends_with("is still running")
            || reason == "the record does not match the watch condition now";
        assert!(r["started"] == json!(true) || known, "{r}");
    }
    assert!(started <= 1);
    let list = call("admin", format!("/api/v1/instances?process={PROCESS}"), None).await;
    let list = list["items"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_u64().unwrap();
    // Issue 15.2: a start by hand for the same record gets the running instance.
    let by_hand = json!({ "process": PROCESS, "variables": { "q_kintoneId": "1" } });
    let same = call("ito", "/api/v1/instances".into(), Some(by_hand)).await;
    assert_eq!((same["id"].as_u64(), same["business_key"].as_str()), (Some(id), Some("kintone:1:1")), "{same}");

    // ライセンス担当 (ito) → 構築担当 (watanabe) sends back → ito fixes → watanabe builds.
    let (task, node) = inbox("ito").await;
    assert_eq!(node, "ライセンスキー手配");
    let form = call("ito", format!("/api/v1/tasks/{task}"), None).await;
    assert!(form.get("sent_back").is_none(), "opened in the normal flow: {form}");
    let plan = form["form"].as_array().unwrap().iter().find(|f| f["name"] == "q_plan").unwrap().clone();
    assert_eq!((plan["value"].clone(), plan["mode"].clone()), (json!("スタンダード"), json!("readonly")));
    call("ito", format!("/api/v1/tasks/{task}/complete"), Some(json!({ "variables": { "q_licenseKey": "LK-1111" } })))
        .await;
    let (task, node) = inbox("watanabe").await;
    assert_eq!(node, "環境構築");
    call("watanabe", format!("/api/v1/tasks/{task}/send-back"), Some(json!({ "comment": "キーが無効です" }))).await;
    let (task, node) = inbox("ito").await;
    assert_eq!(node, "ライセンスキー修正");
    // Issue 15.3: the reopened task says who sent it back, when, and why.
    let fix = call("ito", format!("/api/v1/tasks/{task}"), None).await;
    assert_eq!(fix["sent_back"]["by"], json!("watanabe"), "{fix}");
    assert_eq!(fix["sent_back"]["comment"], json!("キーが無効です"));
    assert_eq!(fix["sent_back"]["from_node"], json!("環境構築"));
    assert_eq!(fix["sent_back"]["at"], json!(t0()), "the virtual clock's now");
    call("ito", format!("/api/v1/tasks/{task}/complete"), Some(json!({ "variables": { "q_licenseKey": "LK-2222" } })))
        .await;
    let (task, _) = inbox("watanabe").await;
    let built = json!({ "variables": { "q_accessUrl": "https://c-0001.example.jp", "q_password": "init" } });
    call("watanabe", format!("/api/v1/tasks/{task}/complete"), Some(built)).await;
    // 送付担当 (kobayashi): the customer wants the manual.
    let (task, node) = inbox("kobayashi").await;
    assert_eq!(node, "マニュアル送付手配");
    let shipped = json!({ "variables": { "q_sendZipcode": "100-0001", "q_sendAddress": "東京都千代田区千代田1-1",
        "q_sendName": "山田 太郎", "q_trackingNo": "1234-5678" } });
    call("kobayashi", format!("/api/v1/tasks/{task}/complete"), Some(shipped)).await;

    // The last service step writes 4_対応済 back; the instance completes.
    let mut inst = Value::Null;
    for _ in 0..200 {
        inst = call("admin", format!("/api/v1/instances/{id}"), None).await;
        if inst["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(inst["status"], "completed", "{inst}");
    let rec = kintone.fetch(1).await;
    assert_eq!(field(&rec, "k_ステータス"), json!("4_対応済"));
    assert_eq!(field(&rec, "k_Qid"), json!(id.to_string()));
    let history = call("admin", format!("/api/v1/instances/{id}/history"), None).await;
    let who: Vec<&str> = history.as_array().unwrap().iter().filter_map(|h| h["user"].as_str()).collect();
    for user in ["ito", "watanabe", "kobayashi"] {
        assert!(who.contains(&user), "{user} is in the history: {history}");
    }
    // Issue 15.5: the initial password is masked for everyone but 構築担当.
    let mask = json!(nagare_engine::sensitive::MASK);
    let password_in = |h: &Value| {
        h.as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["details"]["vars"].get("q_password").cloned())
            .collect::<Vec<Value>>()
    };
    assert_eq!(password_in(&history), std::slice::from_ref(&mask), "admin: {history}");
    assert!(!history.to_string().contains("\"init\""), "{history}");
    let ito = call("ito", format!("/api/v1/instances/{id}/history"), None).await;
    assert_eq!(password_in(&ito), std::slice::from_ref(&mask), "ライセンス担当");
    let watanabe = call("watanabe", format!("/api/v1/instances/{id}/history"), None).await;
    assert_eq!(password_in(&watanabe), [json!("init")], "構築担当 entered it");
    assert_eq!(call("admin", format!("/api/v1/instances/{id}"), None).await["variables"]["q_password"], mask);
    assert_eq!(
        call("watanabe", format!("/api/v1/instances/{id}"), None).await["variables"]["q_password"],
        json!("init")
    );
    server.shutdown().await.unwrap();
}

/// The `started` line's trigger of instance `id`.
fn trigger_of(engine: &Engine, id: u64) -> nagare_engine::runtime::Trigger {
    match engine.history(id).unwrap().into_iter().next().unwrap().event {
        HistoryEvent::Started { trigger: Some(t), .. } => t,
        other => panic!("instance {id} has no trigger in its started line: {other:?}"),
    }
}

/// Issue 15.1: a re-opened order (back to 対応要 after its instance ended) starts a
/// second generation, once, though the webhook and the poll see it at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_record_starts_its_next_generation_once_under_a_concurrent_webhook_and_poll() {
    use nagare_connectors::kintone::trigger::webhook_router;
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    let watcher = Arc::new(Watcher::new(w.engine.clone(), w.connectors.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum_serve(listener, webhook_router(watcher)).await });
    let url = format!("http://{hook_addr}/hooks/kintone/{PROCESS}");
    let body = json!({ "type": "UPDATE_RECORD", "app": { "id": "1" }, "record": { "$id": { "type": "__ID__", "value": "1" } } });
    let http = reqwest::Client::new();

    // Generation 1: started by the poll, runs its first steps, then ends (cancelled).
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let first = w.watcher.poll(PROCESS).await.unwrap().started;
    assert_eq!(first.len(), 1);
    let first = first[0];
    let t = trigger_of(&w.engine, first);
    assert_eq!((t.via.as_str(), t.record.as_str(), t.generation), ("poll", "kintone:1:1", 1));
    assert_eq!(w.instance(first).business_key.as_deref(), Some("kintone:1:1"));
    w.settle(Duration::minutes(5), 20).await;
    assert_eq!(field(&kintone.fetch(1).await, "k_ステータス"), json!("3_対応中"));
    // While it runs, a webhook for the record starts nothing.
    w.engine.cancel(first, "admin", "the customer called").unwrap();

    // The user re-opens the order: webhook and poll race; one instance starts.
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let hook = http.post(&url).json(&body).send();
    let (hook, poll) = tokio::join!(hook, w.watcher.poll(PROCESS));
    let hook: Value = hook.unwrap().json().await.unwrap();
    let poll = poll.unwrap();
    let started_by_hook = usize::from(hook["started"] == json!(true));
    assert_eq!(started_by_hook + poll.started.len(), 1, "hook {hook}, poll {poll:?}");
    let all = w.engine.instances(&Default::default()).unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    let second = all.iter().map(|i| i.id).find(|id| *id != first).unwrap();
    assert_eq!(w.instance(second).business_key.as_deref(), Some("kintone:1:1#2"));
    let t = trigger_of(&w.engine, second);
    assert_eq!((t.record.as_str(), t.generation), ("kintone:1:1", 2));
    assert_eq!(t.via, if started_by_hook == 1 { "webhook" } else { "poll" });
    assert!(t.revision.is_some());

    // Polled and hooked again while generation 2 runs: nothing more.
    assert_eq!(w.watcher.poll(PROCESS).await.unwrap().started, Vec::<u64>::new());
    let again: Value = http.post(&url).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!((again["started"].clone(), again["instance"].clone()), (json!(false), json!(second)), "{again}");

    // Generation 2 ends before touching the record (still 対応要, same revision):
    // the record has not changed since, so it does not start over and over.
    w.engine.cancel(second, "admin", "duplicate").unwrap();
    let r = w.watcher.poll(PROCESS).await.unwrap();
    assert_eq!((r.started.len(), r.existing), (0, 1), "{r:?}");
    // It changes (someone edits it, still 対応要): generation 3.
    kintone.emu.edit(1, 1, &[("k_氏名", json!("山田 次郎"))]).unwrap();
    let r = w.watcher.poll(PROCESS).await.unwrap();
    assert_eq!(r.started.len(), 1, "{r:?}");
    assert_eq!(w.instance(r.started[0]).business_key.as_deref(), Some("kintone:1:1#3"));
}

/// Issue 15.1: `on_retrigger: ignore` keeps one instance per record forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_retrigger_ignore_never_starts_a_record_twice() {
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    let text = process_text().replace("    every: 30s\n", "    every: 30s\n    on_retrigger: ignore\n");
    assert!(text.contains("on_retrigger: ignore"));
    w.engine.deploy("processes/order-delivery.yaml", &text).unwrap();
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    let first = w.watcher.poll(PROCESS).await.unwrap().started;
    assert_eq!(first.len(), 1);
    w.engine.cancel(first[0], "admin", "test").unwrap();
    kintone.emu.edit(1, 1, &[("k_氏名", json!("山田 次郎"))]).unwrap();
    let r = w.watcher.poll(PROCESS).await.unwrap();
    assert_eq!((r.started.len(), r.existing), (0, 1), "{r:?}");
    assert_eq!(w.engine.instances(&Default::default()).unwrap().len(), 1);
}

/// Issue 15.2: a start by hand with the record variable takes the record's key:
/// the running instance comes back instead of a second one; after it ended, the
/// next generation starts, said `manual` in the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_starts_of_a_watched_process_take_the_record_key() {
    use nagare_engine::StartOptions;
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    let by_hand = || StartOptions { by: Some("ito".into()), business_key: None };
    let one = w.engine.start(PROCESS, vars(&[("q_kintoneId", json!("1"))]), by_hand()).unwrap();
    assert_eq!(one.business_key.as_deref(), Some("kintone:1:1"));
    assert_eq!(trigger_of(&w.engine, one.id).via, "manual");
    // The watcher sees the record later: it has its instance.
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    assert_eq!(w.watcher.poll(PROCESS).await.unwrap().started, Vec::<u64>::new());
    let same = w.engine.start(PROCESS, vars(&[("q_kintoneId", json!("1"))]), by_hand()).unwrap();
    assert_eq!(same.id, one.id);
    w.engine.cancel(one.id, "admin", "test").unwrap();
    let next = w.engine.start(PROCESS, vars(&[("q_kintoneId", json!("1"))]), by_hand()).unwrap();
    assert_ne!(next.id, one.id);
    assert_eq!(next.business_key.as_deref(), Some("kintone:1:1#2"));
    // Not a record id: refused with the field named.
    let err = w.engine.start(PROCESS, vars(&[("q_kintoneId", json!("abc"))]), by_hand()).unwrap_err();
    assert!(err.to_string().contains("q_kintoneId") || format!("{err:?}").contains("q_kintoneId"), "{err:?}");
}

/// Issue 15.4: without a requested build date the shipping task is due in five
/// days, like the others (it had no due date).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipping_is_due_in_five_days_without_a_requested_build_date() {
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要")), ("k_構築希望日時", json!(""))]).unwrap();
    let id = w.watcher.poll(PROCESS).await.unwrap().started[0];
    w.settle(Duration::minutes(5), 20).await;
    assert_eq!(w.instance(id).vars.get("q_maintenanceDatetime").cloned().unwrap_or(Value::Null), Value::Null);
    w.work("license", "ライセンスキー手配", "kato", vars(&[("q_licenseKey", json!("LK-1"))]), Outcome::Next).await;
    let built = vars(&[("q_accessUrl", json!("https://c.example.jp")), ("q_password", json!("pw"))]);
    w.work("build", "環境構築", "ito", built, Outcome::Next).await;
    let q = TaskQuery { groups: Some(vec!["shipping".into()]), ..Default::default() };
    let tasks = w.engine.tasks(&q).unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].due, Some(t0() + Duration::days(5)));
}

/// Issue 15.6: a watch query with kintone's functions is passed to kintone and
/// evaluated (here by the emulator) instead of being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_queries_may_use_kintone_functions() {
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::start(Emulator::in_memory(), "127.0.0.1:0").await;
    let w = world(data.path(), Arc::new(VirtualClock::new(t0())), &config(&kintone.base(), DEMO_TOKEN));
    let watch = |cond: &str| {
        let text = process_text().replace(
            r#"settings: { query: 'k_ステータス in ("対応要")' }"#,
            &format!("settings: {{ query: '{cond}' }}"),
        );
        assert!(text.contains(cond));
        w.engine.deploy("processes/order-delivery.yaml", &text).unwrap();
    };
    kintone.emu.edit(1, 1, &[("k_ステータス", json!("対応要"))]).unwrap();
    // Edited just now (the emulator's real clock): not before yesterday, not tomorrow.
    watch(r#"k_ステータス in ("対応要") and 更新日時 >= FROM_TODAY(-1, DAYS) and 更新日時 < TOMORROW()"#);
    let r = w.watcher.poll(PROCESS).await.unwrap();
    assert_eq!((r.matched, r.started.len()), (1, 1), "{r:?}");
    watch(r#"k_ステータス in ("対応要") and 更新日時 < FROM_TODAY(-1, DAYS)"#);
    assert_eq!(w.watcher.poll(PROCESS).await.unwrap().matched, 0);
    // A misspelt function is still refused, before anything is sent.
    watch(r#"更新日時 = TODAYS()"#);
    let e = w.watcher.poll(PROCESS).await.unwrap_err().to_string();
    assert!(e.contains("unknown function `TODAYS()`"), "{e}");
}
