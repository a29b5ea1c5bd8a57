//! `processes/master-sync.yaml` end to end against the emulators: a kintone app of
//! employees (or a CSV file variable) → the Rakuraku emulator → a report mail in the
//! SMTP sink. A durable engine in a temp dir on a virtual clock; the tests never sleep.

use chrono::{DateTime, Duration, Utc};
use nagare_connectors::cloudsign::files::FsBlobs;
use nagare_connectors::kintone::emulator::state::{ApiToken, App, FieldDef};
use nagare_connectors::kintone::emulator::Emulator as Kintone;
use nagare_connectors::mail::sink::Sink;
use nagare_connectors::rakuraku::emulator::{Emulator as Rakuraku, DEMO_ACCOUNT, DEMO_TOKEN as RK_TOKEN};
use nagare_connectors::users::Contact;
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::blobs::WriteLimits;
use nagare_engine::runtime::{HistoryEvent, Status};
use nagare_engine::{Engine, EngineError, Executor, StartOptions, Vars, VirtualClock};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

const PROCESS: &str = "master-sync";
const APP: u64 = 3;
const KINTONE_TOKEN: &str = "employees-token";

fn process_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("processes/master-sync.yaml")).unwrap()
}

fn t0() -> DateTime<Utc> {
    // 2026-12-01 07:00 in Tokyo: the next 06:00 run is 23 hours away (further than
    // any retry a test waits for).
    "2026-11-30T22:00:00Z".parse().unwrap()
}

async fn listen() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    (l, a)
}

/// The employees app: field codes are the CSV headers.
fn employees_app() -> App {
    let text = |label: &str| FieldDef {
        ty: "SINGLE_LINE_TEXT".into(),
        label: label.into(),
        options: None,
        required: false,
        unique: false,
        default_value: None,
    };
    let mut fields = indexmap::IndexMap::new();
    for code in ["社員コード", "氏名", "フリガナ", "メールアドレス", "部門コード", "役職コード"]
    {
        fields.insert(code.to_string(), text(code));
    }
    App {
        id: APP,
        name: "社員名簿".into(),
        fields,
        tokens: vec![ApiToken { token: KINTONE_TOKEN.into(), view: true, add: true, edit: true }],
        process: None,
        guest_space: None,
        records: Default::default(),
        next_id: 1,
    }
}

struct World {
    _data: tempfile::TempDir,
    clock: Arc<VirtualClock>,
    engine: Engine,
    exec: Executor,
    kintone: Kintone,
    rakuraku: Rakuraku,
    sink: Sink,
}

fn contacts() -> Vec<Contact> {
    let c = |id: &str, name: &str, email: Option<&str>, groups: &[&str]| Contact {
        id: id.into(),
        name: Some(name.into()),
        email: email.map(str::to_string),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    vec![
        c("suzuki", "鈴木 経理", Some("suzuki@example.com"), &["accounting"]),
        c("admin", "システム管理者", None, &[]),
        c("tanaka", "田中 一郎", Some("tanaka@example.com"), &["managers"]),
        c("yamada", "山田 部長", Some("yamada@example.com"), &["managers"]),
    ]
}

async fn world(process: &str) -> World {
    let data = tempfile::tempdir().unwrap();
    let kintone = Kintone::in_memory();
    kintone
        .write(|s| {
            s.apps.insert(APP, employees_app());
            Ok(())
        })
        .unwrap();
    let (kl, kaddr) = listen().await;
    let k = kintone.clone();
    tokio::spawn(async move { k.serve(kl, std::future::pending()).await.unwrap() });
    let rakuraku = Rakuraku::in_memory();
    let (rl, raddr) = listen().await;
    let r = rakuraku.clone();
    tokio::spawn(async move { r.serve(rl, std::future::pending()).await.unwrap() });
    let sink = Sink::in_memory();
    let (sl, saddr) = listen().await;
    let s = sink.clone();
    tokio::spawn(async move { s.serve_smtp(sl, std::future::pending()).await.unwrap() });
    let port = saddr.rsplit(':').next().unwrap();
    let cfg = ConnectorsConfig::from_yaml(&format!(
        "connectors:
  kintone: {{ type: kintone, base_url: 'http://{kaddr}', app: {APP}, token: {KINTONE_TOKEN}, timeout: 5s }}
  rakuraku: {{ type: rakuraku, base_url: 'http://{raddr}', account: {DEMO_ACCOUNT}, token: {RK_TOKEN} }}
  mail: {{ type: smtp, host: 127.0.0.1, port: {port}, tls: none, from: 'nagare <nagare@example.com>' }}
"
    ))
    .unwrap();
    let connectors = Connectors::with_blobs(&cfg, Arc::new(FsBlobs::new(data.path())));
    connectors.set_users(contacts());
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = Engine::builder()
        .data_dir(data.path())
        .unwrap()
        .clock(clock.clone())
        .connectors(connectors.registry())
        .build()
        .unwrap();
    engine.deploy("processes/master-sync.yaml", process).unwrap();
    let exec = Executor::new(engine.clone());
    World { _data: data, clock, engine, exec, kintone, rakuraku, sink }
}

fn vars(pairs: &[(&str, Value)]) -> Vars {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

impl World {
    fn add_employee(&self, code: &str, name: &str, mail: &str) {
        let mut rec = Map::new();
        for (k, v) in [("社員コード", code), ("氏名", name), ("メールアドレス", mail), ("部門コード", "D1")]
        {
            rec.insert(k.into(), json!({ "value": v }));
        }
        self.kintone.write(|s| s.add_record(APP, &rec, "test", t0()).map(|_| ())).unwrap();
    }

    fn set(&self, settings: &[(&str, Value)]) {
        self.engine.change_settings(PROCESS, vars(settings), "admin").unwrap();
    }

    /// Start by hand as `user` and run every job (retries included) to the end.
    async fn run(&self, user: &str, start: Vars) -> u64 {
        let i = self.engine.start(PROCESS, start, StartOptions { by: Some(user.into()), business_key: None }).unwrap();
        self.settle().await;
        i.id
    }

    async fn settle(&self) {
        for _ in 0..50 {
            self.exec.run_until_idle().await;
            if self.exec.queued() == 0 {
                return;
            }
            self.clock.advance(Duration::minutes(10));
        }
    }

    fn completed(&self, id: u64) -> Value {
        let i = self.engine.instance(id).unwrap();
        assert_eq!(i.status, Status::Completed, "{:?}", i.incidents);
        json!(i.vars)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_imports_the_kintone_rows_that_the_emulator_then_lists_identically_and_mails_the_counts() {
    let w = world(&process_text()).await;
    w.add_employee("E001", "佐藤 花子", "sato@example.com");
    w.add_employee("E002", "高橋 一郎", "takahashi@example.com");
    w.add_employee("E003", "～波ダッシュ～", "");
    let id = w.run("suzuki", Vars::new()).await;
    let v = w.completed(id);
    assert_eq!(v["結果"]["rows"], 3, "{v}");
    assert_eq!(v["結果"]["inserted"], 3, "{v}");

    let listed: Vec<Value> = w.rakuraku.rows(0).into_iter().map(|r| json!(r)).collect();
    let kintone: Vec<Value> = w.kintone.read(|s| {
        s.apps[&APP]
            .records
            .values()
            .map(|r| {
                let plain = s.apps[&APP].render(r, &[]);
                let mut row = Map::new();
                for code in ["社員コード", "氏名", "フリガナ", "メールアドレス", "部門コード", "役職コード"]
                {
                    row.insert(code.into(), plain[code]["value"].clone());
                }
                Value::Object(row)
            })
            .collect()
    });
    assert_eq!(listed, kintone, "the emulator lists what kintone holds");

    // The report goes to the one who started it, with the counts.
    let mails = w.sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].envelope_to, vec!["suzuki@example.com".to_string()]);
    assert!(mails[0].mail.subject.contains("完了"), "{}", mails[0].mail.subject);
    let text = mails[0].mail.text.clone().unwrap();
    assert!(text.contains("inserted: 3") && text.contains("rows: 3") && text.contains("suzuki"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takahashi_with_the_ibm_kanji_is_reported_with_row_and_column_and_nothing_is_imported() {
    let w = world(&process_text()).await;
    w.add_employee("E001", "佐藤 花子", "sato@example.com");
    w.add_employee("E002", "髙橋 一郎", "takahashi@example.com");
    let id = w.run("suzuki", Vars::new()).await;
    let v = w.completed(id);
    assert_eq!(v["失敗"], true);
    let err = v["エラー"].as_str().unwrap();
    assert!(err.contains("row 2, column `氏名`") && err.contains("髙"), "{err}");
    assert!(w.rakuraku.rows(0).is_empty());
    let mails = w.sink.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].mail.subject.contains("エラー"), "{}", mails[0].mail.subject);
    let text = mails[0].mail.text.clone().unwrap();
    assert!(text.contains("row 2, column `氏名`") && text.contains("U+9AD9"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_rows_are_skipped_or_updated_by_the_setting() {
    let w = world(&process_text()).await;
    w.add_employee("E001", "佐藤 花子", "sato@example.com");
    w.run("suzuki", Vars::new()).await;
    w.kintone
        .write(|s| {
            let mut rec = Map::new();
            rec.insert("氏名".into(), json!({ "value": "佐藤 華子" }));
            s.update_record(APP, 1, &rec, None, "test", t0()).map(|_| ())
        })
        .unwrap();
    w.set(&[("update_existing", json!(false))]);
    let id = w.run("suzuki", Vars::new()).await;
    assert_eq!(w.completed(id)["結果"]["skipped"], 1);
    assert_eq!(w.rakuraku.rows(0)[0]["氏名"], "佐藤 花子", "skipped: unchanged");
    w.set(&[("update_existing", json!(true))]);
    let id = w.run("suzuki", Vars::new()).await;
    assert_eq!(w.completed(id)["結果"]["updated"], 1);
    assert_eq!(w.rakuraku.rows(0)[0]["氏名"], "佐藤 華子", "updated");
    let last = w.sink.mails().pop().unwrap();
    assert!(last.mail.text.unwrap().contains("updated: 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_only_reports_send_nothing_on_success_and_go_to_the_admin_address() {
    let w = world(&process_text()).await;
    w.add_employee("E001", "佐藤 花子", "sato@example.com");
    w.set(&[
        ("report_when", json!("error_only")),
        ("report_to", json!("admin")),
        ("admin_email", json!("ops@example.com")),
    ]);
    let id = w.run("suzuki", Vars::new()).await;
    w.completed(id);
    assert_eq!(w.rakuraku.rows(0).len(), 1);
    assert!(w.sink.mails().is_empty(), "success with error_only: no mail");
    w.add_employee("E002", "髙橋", "");
    let id = w.run("suzuki", Vars::new()).await;
    assert_eq!(w.completed(id)["失敗"], true);
    let mails = w.sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].envelope_to, vec!["ops@example.com".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_file_variable_is_the_source_when_the_setting_says_so() {
    let w = world(&process_text()).await;
    w.set(&[("source", json!("csv"))]);
    // The start rule: a csv run needs the file.
    let e = w.engine.start(PROCESS, Vars::new(), StartOptions { by: Some("suzuki".into()), ..Default::default() });
    assert!(matches!(e, Err(EngineError::Rejected(_))), "{e:?}");
    let csv =
        "社員コード,氏名,メールアドレス,部門コード\r\nC1,山田 太郎,yamada@example.com,D1\r\nC2,\"田中, 一郎\",,D2\r\n";
    let stored = w.engine.blobs().put(csv.as_bytes(), WriteLimits { max_size: 1 << 20, pdf: false }).unwrap();
    let file = w.engine.file_ref(stored, "社員.csv", "text/csv", "suzuki");
    let id = w.run("suzuki", vars(&[("csv_file", json!(file))])).await;
    assert_eq!(w.completed(id)["結果"]["inserted"], 2);
    let rows = w.rakuraku.rows(0);
    assert_eq!(rows[1]["氏名"], "田中, 一郎");
    assert_eq!(rows[0]["フリガナ"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_fires_on_the_virtual_clock_and_pausing_it_stops_it() {
    let w = world(&process_text()).await;
    w.add_employee("E001", "佐藤 花子", "sato@example.com");
    let count = |w: &World| w.engine.instances(&Default::default()).unwrap().len();
    assert_eq!(count(&w), 0);
    // 06:00 Tokyo is 23 hours away.
    w.exec.advance(Duration::hours(22) + Duration::minutes(59)).await;
    assert_eq!(count(&w), 0);
    w.exec.advance(Duration::minutes(2)).await;
    w.settle().await;
    assert_eq!(count(&w), 1, "the 06:00 run");
    let i = &w.engine.instances(&Default::default()).unwrap()[0];
    assert_eq!(i.started_by.as_deref(), Some("timer"));
    assert_eq!(w.rakuraku.rows(0).len(), 1);
    // A timed run has no starter with an address: the report goes to admin_email.
    assert_eq!(w.sink.mails()[0].envelope_to, vec!["admin@example.com".to_string()]);

    w.engine.pause_start(PROCESS, true, "admin").unwrap();
    w.exec.advance(Duration::days(2)).await;
    assert_eq!(count(&w), 1, "paused: no run for two days");
    w.engine.pause_start(PROCESS, false, "admin").unwrap();
    w.exec.advance(Duration::days(1)).await;
    assert_eq!(count(&w), 2, "resumed: the next 06:00 runs, no burst");
}

#[tokio::test]
async fn a_deploy_with_duplicate_key_0_for_approver_settings_names_the_line() {
    let text = process_text().replacen(
        "      masterId: 0\n      duplicateKey: 'if update_existing { 1 } else { 0 }'",
        "      masterId: 18\n      duplicateKey: 0",
        1,
    );
    assert_ne!(text, process_text());
    let line = text.lines().position(|l| l == "      duplicateKey: 0").unwrap() + 1;
    let engine =
        Engine::builder().connectors(Connectors::new(&ConnectorsConfig::default()).registry()).build().unwrap();
    let e = engine.deploy("processes/master-sync.yaml", &text).unwrap_err().to_string();
    assert!(e.contains(&format!("master-sync.yaml:{line}:")), "names line {line}: {e}");
    assert!(e.contains("duplicateKey"), "{e}");
}

/// The history says what the import did, part by part (progress of a long sync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_records_the_import_result() {
    let w = world(&process_text()).await;
    w.add_employee("E001", "佐藤 花子", "sato@example.com");
    let id = w.run("suzuki", Vars::new()).await;
    let done: Vec<String> = w
        .engine
        .history(id)
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            HistoryEvent::JobSucceeded { .. } => h.node,
            _ => None,
        })
        .collect();
    assert!(done.contains(&"取込".to_string()), "{done:?}");
}

const NOTIFIED: &str = r#"
id: notified
lanes:
  申請: { groups: [managers], notify: { on: [send_back] } }
  経理: { groups: [accounting], notify: { on: [open, overdue], via: mail } }
variables:
  件名: { type: string }
start: { next: 確認 }
nodes:
  申請修正: { user_task: 申請を直す, lane: 申請, next: 確認 }
  確認:
    user_task: 経費を確認する
    lane: 経理
    due: add_days(now, 1)
    send_back: 申請修正
    next: done
  done: { end: }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_with_notify_mails_its_group_when_a_task_opens_is_overdue_or_is_sent_back() {
    use nagare_engine::runtime::Outcome;
    use nagare_engine::store::TaskQuery;
    let w = world(&process_text()).await;
    w.engine.deploy("notified.yaml", NOTIFIED).unwrap();
    w.engine.pause_start(PROCESS, true, "admin").unwrap(); // no master-sync mail in between
    let i = w
        .engine
        .start("notified", Vars::new(), StartOptions { by: Some("tanaka".into()), ..Default::default() })
        .unwrap();
    w.exec.run_until_idle().await;
    let mails = w.sink.mails();
    assert_eq!(mails.len(), 1, "one mail for the opened task");
    assert_eq!(mails[0].envelope_to, vec!["suzuki@example.com".to_string()]);
    assert_eq!(mails[0].mail.subject, "[新しいタスク] 経費を確認する");
    let text = mails[0].mail.text.clone().unwrap();
    assert!(text.contains("期限: 2026-12-02 07:00 JST"), "{text}");

    // A day later the task is overdue: a second mail.
    w.exec.advance(Duration::days(1) + Duration::minutes(1)).await;
    let mails = w.sink.mails();
    assert_eq!(mails.len(), 2, "{:?}", mails.iter().map(|m| &m.mail.subject).collect::<Vec<_>>());
    assert_eq!(mails[1].mail.subject, "[期限切れ] 経費を確認する");

    // Sent back: the 申請 lane's managers hear of it (one mail, Bcc); fixed, the
    // check opens again and accounting hears of it.
    let task =
        |w: &World| w.engine.tasks(&TaskQuery { instance: Some(i.id), ..Default::default() }).unwrap()[0].clone();
    let t = task(&w);
    w.engine.claim(&t.id, "suzuki").unwrap();
    w.engine.complete(&t.id, "suzuki", Vars::new(), Outcome::SendBack { comment: "領収書がない".into() }).unwrap();
    w.exec.run_until_idle().await;
    let mails = w.sink.mails();
    assert_eq!(mails.len(), 3);
    assert_eq!(mails[2].mail.subject, "[差し戻し] 申請を直す");
    assert_eq!(mails[2].envelope_to, vec!["tanaka@example.com".to_string(), "yamada@example.com".to_string()]);
    let fix = task(&w);
    w.engine.complete(&fix.id, "tanaka", Vars::new(), Outcome::Next).unwrap();
    w.exec.run_until_idle().await;
    assert_eq!(w.sink.mails().len(), 4);

    // Done before its due time: the overdue notice of the reopened task is dropped unsent.
    let again = task(&w);
    w.engine.claim(&again.id, "suzuki").unwrap();
    w.engine.complete(&again.id, "suzuki", Vars::new(), Outcome::Next).unwrap();
    w.exec.advance(Duration::days(2)).await;
    assert_eq!(w.sink.mails().len(), 4);
    assert_eq!(w.exec.queued(), 1, "only the (paused) master-sync schedule is left");
}

#[test]
fn an_unknown_notify_event_is_refused_at_deploy_with_its_line() {
    let text = NOTIFIED.replace("on: [open, overdue]", "on: [open, opened]");
    let line = text.lines().position(|l| l.contains("opened")).unwrap() + 1;
    let engine = Engine::builder().build().unwrap();
    let e = engine.deploy("notified.yaml", &text).unwrap_err().to_string();
    assert!(e.contains(&format!("notified.yaml:{line}:")) && e.contains("`opened`"), "{e}");
    let typo = NOTIFIED.replace("via: mail", "vía: mail");
    let e = engine.deploy("notified.yaml", &typo).unwrap_err().to_string();
    assert!(e.contains("vía"), "{e}");
}
