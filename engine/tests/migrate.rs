//! Instance migration of the two business processes: instances at every wait state
//! moved to a changed version (a step added before them, a task renamed by a
//! mapping, a variable's type changed with a conversion, a lane's groups changed),
//! the dry run naming exactly the invalid ones, the apply re-checking, idempotent,
//! recorded in the history, and the migrated instances running to completion.

use chrono::{DateTime, Utc};
use nagare_engine::migrate::{LaneChoice, MigrationSpec, TimerChoice};
use nagare_engine::runtime::{HistoryEvent, Outcome, Status, Task, Wait};
use nagare_engine::store::TaskQuery;
use nagare_engine::{
    ApplyOutcome, Call, ConnectorError, Engine, Executor, FnConnector, MigrationPlan, StartOptions, Vars, VirtualClock,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn process_text(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../processes").join(name))
        .expect("process file")
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio")
}

fn run_jobs(engine: &Engine) {
    rt().block_on(Executor::new(engine.clone()).run_until_idle());
}

fn vars(v: Value) -> Vars {
    serde_json::from_value(v).expect("vars")
}

fn open_tasks(engine: &Engine, id: u64) -> Vec<Task> {
    engine.tasks(&TaskQuery { instance: Some(id), ..Default::default() }).expect("tasks")
}

fn only_task(engine: &Engine, id: u64) -> Task {
    let tasks = open_tasks(engine, id);
    assert_eq!(tasks.len(), 1, "instance {id}: one open task expected, got {tasks:?}");
    tasks.into_iter().next().unwrap()
}

fn complete(engine: &Engine, id: u64, data: Value, outcome: Outcome) {
    let task = only_task(engine, id);
    engine.complete(&task.id, "tester", vars(data), outcome).unwrap_or_else(|e| panic!("complete {}: {e}", task.node));
}

fn migrated_lines(engine: &Engine, id: u64) -> Vec<HistoryEvent> {
    engine.history(id).unwrap().into_iter().map(|h| h.event).filter(|e| e.name() == "migrated").collect()
}

fn nodes_of(engine: &Engine, id: u64) -> Vec<String> {
    engine.instance(id).unwrap().tokens.iter().map(|t| t.node.clone()).collect()
}

/// Complete every open task (with `data_for` its node), run due jobs, retry
/// incidents, until every instance in `ids` ends; returns the nodes whose tasks opened.
fn drive_to_end(engine: &Engine, ids: &[u64], data_for: &dyn Fn(&str) -> Value) -> Vec<String> {
    let mut opened = Vec::new();
    for _ in 0..40 {
        run_jobs(engine);
        let mut busy = false;
        for &id in ids {
            let inst = engine.instance(id).unwrap();
            if inst.status.is_finished() {
                continue;
            }
            busy = true;
            for inc in &inst.incidents {
                engine.retry_incident(id, inc.id, Vars::new(), "admin").unwrap();
            }
            for task in open_tasks(engine, id) {
                opened.push(task.node.clone());
                let user = task.assignee.as_deref().unwrap_or("tester");
                engine
                    .complete(&task.id, user, vars(data_for(&task.node)), Outcome::Next)
                    .unwrap_or_else(|e| panic!("instance {id}: complete {}: {e}", task.node));
            }
        }
        if !busy {
            return opened;
        }
    }
    for &id in ids {
        let inst = engine.instance(id).unwrap();
        assert_eq!(inst.status, Status::Completed, "instance {id} did not end: {:?}", inst.tokens);
    }
    opened
}

// ---------------------------------------------------------------------------
// 経費精算 (expense approval)
// ---------------------------------------------------------------------------

/// Version 2 of the expense approval: a reception check added before 上長承認, the
/// receipt check renamed 証憑確認, 領収書あり a choice instead of a flag, and the
/// managers' lane shared with team leads.
fn expense_v2() -> String {
    let v1 = process_text("expense-approval.yaml");
    let v2 = v1
        .replacen("    next: 上長承認\n", "    next: 受付確認\n", 1)
        .replace(
            "  上長承認:\n",
            "  受付確認:\n    name: 受付確認\n    user_task: 申請の受付確認\n    lane: 経理\n    next: 上長承認\n\n  上長承認:\n",
        )
        .replace("  領収書確認:\n", "  証憑確認:\n")
        .replace("parallel: [領収書確認, 消費税計算]", "parallel: [証憑確認, 消費税計算]")
        .replace(
            "領収書あり: { type: bool, label: 領収書あり, default: true }",
            "領収書あり: { type: choice, label: 領収書あり, options: [あり, なし], default: あり }",
        )
        .replace("groups: [managers] }", "groups: [managers, leads] }");
    assert_ne!(v1, v2);
    assert!(v2.contains("受付確認:") && v2.contains("証憑確認:") && v2.contains("leads"), "edits applied");
    v2
}

/// Version 3: the second approval removed (a node gone, with no mapping).
fn expense_v3() -> String {
    let v1 = process_text("expense-approval.yaml");
    let start = v1.find("  部長承認:\n").unwrap();
    let end = v1.find("  承認記録:\n").unwrap();
    let v3 = format!("{}{}", &v1[..start], &v1[end..]).replace("next: 部長承認", "next: 承認記録");
    assert!(!v3.contains("部長承認:"));
    v3
}

struct Expense {
    engine: Engine,
    fixed: Arc<AtomicBool>,
}

fn expense_engine() -> Expense {
    let fixed = Arc::new(AtomicBool::new(false));
    let f = fixed.clone();
    let echo = FnConnector(move |c: &Call| -> Result<Value, ConnectorError> {
        if c.input["件名"] == "失敗" && !f.load(Ordering::SeqCst) {
            return Err(ConnectorError::Fatal("accounting system refused".into()));
        }
        Ok(c.input.clone())
    });
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = Engine::builder().in_memory().clock(clock).connector("echo", echo).build().expect("engine");
    engine.deploy("expense-approval.yaml", &process_text("expense-approval.yaml")).expect("v1");
    Expense { engine, fixed }
}

fn start_expense(engine: &Engine, title: &str, amount: i64) -> u64 {
    let v = json!({ "件名": title, "費目": "交通費", "金額": amount, "利用日": "2026-11-30" });
    engine
        .start("expense-approval", vars(v), StartOptions { by: Some("sato".into()), ..Default::default() })
        .unwrap()
        .id
}

/// The expense instances, one per wait state, by name.
fn expense_instances(e: &Expense) -> BTreeMap<&'static str, u64> {
    let engine = &e.engine;
    let mut ids = BTreeMap::new();
    // In incident at the accounting system call (built first: running its job must
    // not run the pending call below).
    let f = start_expense(engine, "失敗", 3000);
    complete(engine, f, json!({}), Outcome::Next);
    complete(engine, f, json!({}), Outcome::Next);
    complete(engine, f, json!({ "領収書確認済": true }), Outcome::Next);
    run_jobs(engine);
    assert_eq!(engine.instance(f).unwrap().status, Status::Incident);
    ids.insert("incident", f);
    // Back at 申請 after a send back.
    let a = start_expense(engine, "差し戻し", 3000);
    complete(engine, a, json!({}), Outcome::Next);
    complete(engine, a, json!({}), Outcome::SendBack { comment: "領収書を添付してください".into() });
    ids.insert("sent_back", a);
    // At 上長承認, open and claimed.
    let b = start_expense(engine, "承認待ち", 3000);
    complete(engine, b, json!({}), Outcome::Next);
    ids.insert("approval", b);
    let bc = start_expense(engine, "承認中", 3000);
    complete(engine, bc, json!({}), Outcome::Next);
    engine.claim(&only_task(engine, bc).id, "suzuki").unwrap();
    ids.insert("approval_claimed", bc);
    // At 部長承認 (50,000 yen or more).
    let c = start_expense(engine, "高額", 80_000);
    complete(engine, c, json!({}), Outcome::Next);
    complete(engine, c, json!({}), Outcome::Next);
    ids.insert("second_approval", c);
    // In the fork: 領収書確認 open, the tax script arrived at the join.
    let d = start_expense(engine, "経理中", 3000);
    complete(engine, d, json!({}), Outcome::Next);
    complete(engine, d, json!({}), Outcome::Next);
    assert_eq!(engine.instance(d).unwrap().joins.len(), 1, "the script's branch waits at the join");
    ids.insert("fork", d);
    // Waiting for the accounting system call (job pending).
    let s = start_expense(engine, "連携待ち", 3000);
    complete(engine, s, json!({}), Outcome::Next);
    complete(engine, s, json!({}), Outcome::Next);
    complete(engine, s, json!({ "領収書確認済": true }), Outcome::Next);
    assert!(matches!(engine.instance(s).unwrap().tokens[0].wait, Wait::Job { .. }));
    ids.insert("service", s);
    ids
}

fn expense_spec(to: u32) -> MigrationSpec {
    MigrationSpec { process: "expense-approval".into(), from: 1, to, ..Default::default() }
}

#[test]
fn expense_instances_at_every_wait_state_migrate_and_complete() {
    let e = expense_instances_engine();
    let (engine, ids) = (&e.0.engine, &e.1);
    assert_eq!(engine.deploy("expense-approval.yaml", &expense_v2()).unwrap().version, 2);

    // Without a conversion, the flag cannot become a choice: every instance is invalid.
    let plan = engine.plan_migration(expense_spec(2), "admin").unwrap();
    assert_eq!(plan.summary.instances, ids.len());
    assert_eq!(plan.summary.invalid, ids.len());
    for p in &plan.instances {
        assert!(p.problems.iter().any(|f| f.code == "type-changed" && f.message.contains("領収書あり")), "{p:?}");
    }

    // With the conversion and the mapping, every instance may move.
    let mut spec = expense_spec(2);
    spec.map.insert("領収書確認".into(), "証憑確認".into());
    spec.set.insert("領収書あり".into(), r#"if 領収書あり { "あり" } else { "なし" }"#.into());
    let plan = engine.plan_migration(spec.clone(), "admin").unwrap();
    assert_eq!(plan.summary.valid, ids.len(), "{:#?}", plan.instances);
    let fork = plan.instances.iter().find(|p| p.instance == ids["fork"]).unwrap();
    assert!(fork.moves.iter().any(|m| m.what == "task" && m.from == "領収書確認" && m.to == "証憑確認"), "{fork:?}");
    assert!(fork.moves.iter().any(|m| m.what == "join" && m.to == "経理合流"));
    let approval = plan.instances.iter().find(|p| p.instance == ids["approval"]).unwrap();
    assert!(approval.warnings.iter().any(|w| w.code == "lane-groups-changed"), "{approval:?}");
    // A dry run writes nothing.
    for id in ids.values() {
        assert_eq!(engine.instance(*id).unwrap().version, 1);
    }

    // The plan file round-trips (what the CLI writes and reads back).
    let text = serde_json::to_string_pretty(&plan).unwrap();
    let plan: MigrationPlan = serde_json::from_str(&text).unwrap();
    let report = engine.apply_migration(&plan, "admin", |_| {}).unwrap();
    assert_eq!(report.counts.get("migrated"), Some(&ids.len()), "{report:?}");

    // Idempotent: a second apply finds every instance on version 2.
    let again = engine.apply_migration(&plan, "admin", |_| {}).unwrap();
    assert_eq!(again.counts.get("already_migrated"), Some(&ids.len()), "{again:?}");

    for (name, id) in ids {
        let inst = engine.instance(*id).unwrap();
        assert_eq!(inst.version, 2, "{name}");
        assert_eq!(inst.vars["領収書あり"], json!("あり"), "{name}: converted");
        let lines = migrated_lines(engine, *id);
        assert_eq!(lines.len(), 1, "{name}: one migrated history line");
        assert!(matches!(&lines[0], HistoryEvent::Migrated { from: 1, to: 2, .. }));
        for t in open_tasks(engine, *id) {
            assert_eq!(t.version, 2, "{name}: task record on version 2");
        }
    }
    assert_eq!(nodes_of(engine, ids["fork"]), ["証憑確認"]);
    let receipt = only_task(engine, ids["fork"]);
    assert_eq!((receipt.node.as_str(), receipt.title.as_str()), ("証憑確認", "領収書の確認"));
    // Lanes kept (the default): the claimed task keeps its groups and its assignee.
    let claimed = only_task(engine, ids["approval_claimed"]);
    assert_eq!((claimed.groups.clone(), claimed.assignee.as_deref()), (vec!["managers".to_string()], Some("suzuki")));

    // Every migrated instance runs to its end on version 2; the one sent back
    // passes the step added before 上長承認.
    e.0.fixed.store(true, Ordering::SeqCst);
    let all: Vec<u64> = ids.values().copied().collect();
    let opened = drive_to_end(engine, &all, &|node| match node {
        "証憑確認" => json!({ "領収書確認済": true }),
        _ => json!({}),
    });
    assert!(opened.iter().any(|n| n == "受付確認"), "the new step ran: {opened:?}");
    for (name, id) in ids {
        let inst = engine.instance(*id).unwrap();
        assert_eq!(inst.status, Status::Completed, "{name}");
        assert_eq!(inst.version, 2, "{name}");
    }
    let sent_back = engine.history(ids["sent_back"]).unwrap();
    assert!(sent_back.iter().any(|h| h.node.as_deref() == Some("受付確認")));
}

fn expense_instances_engine() -> (Expense, BTreeMap<&'static str, u64>) {
    let e = expense_engine();
    let ids = expense_instances(&e);
    (e, ids)
}

#[test]
fn the_dry_run_lists_exactly_the_instances_on_a_removed_node() {
    let (e, ids) = expense_instances_engine();
    let engine = &e.engine;
    assert_eq!(engine.deploy("expense-approval.yaml", &expense_v3()).unwrap().version, 2);
    let plan = engine.plan_migration(expense_spec(2), "admin").unwrap();
    let invalid: Vec<u64> = plan.instances.iter().filter(|p| !p.is_valid()).map(|p| p.instance).collect();
    assert_eq!(invalid, [ids["second_approval"]], "{:#?}", plan.instances);
    let p = plan.instances.iter().find(|p| p.instance == ids["second_approval"]).unwrap();
    assert_eq!(p.problems[0].code, "node-gone");
    assert!(p.problems[0].message.contains("部長承認"), "{p:?}");

    // The apply migrates the others and leaves the invalid one on version 1.
    let report = engine.apply_migration(&plan, "admin", |_| {}).unwrap();
    assert_eq!(report.counts.get("invalid"), Some(&1));
    assert_eq!(report.counts.get("migrated"), Some(&(ids.len() - 1)));
    assert_eq!(engine.instance(ids["second_approval"]).unwrap().version, 1);

    // Mapping the removed step to 承認記録's successor... a wait state: the
    // accounting check is in a fork, so a token outside it cannot land there.
    let mut spec = expense_spec(2);
    spec.map.insert("部長承認".into(), "領収書確認".into());
    let plan = engine.plan_migration(spec, "admin").unwrap();
    let p = plan.instances.iter().find(|p| p.instance == ids["second_approval"]).unwrap();
    assert!(p.problems.iter().any(|f| f.code == "scope-changed"), "{p:?}");
}

#[test]
fn an_instance_that_moved_since_the_plan_is_skipped_and_reported() {
    let (e, ids) = expense_instances_engine();
    let engine = &e.engine;
    engine.deploy("expense-approval.yaml", &expense_v2()).unwrap();
    let mut spec = expense_spec(2);
    spec.map.insert("領収書確認".into(), "証憑確認".into());
    spec.set.insert("領収書あり".into(), r#"if 領収書あり { "あり" } else { "なし" }"#.into());
    spec.lanes = LaneChoice::Reassign;
    let plan = engine.plan_migration(spec.clone(), "admin").unwrap();
    // Someone acts on one instance between plan and apply.
    let moved = ids["approval"];
    engine.claim(&only_task(engine, moved).id, "tanaka").unwrap();
    let mut outcomes = Vec::new();
    let report = engine.apply_migration(&plan, "admin", |o| outcomes.push(o.clone())).unwrap();
    assert_eq!(outcomes.len(), ids.len(), "progress hears of every instance");
    assert!(matches!(report.outcomes.iter().find(|o| o.instance() == moved), Some(ApplyOutcome::Moved { .. })));
    assert_eq!(engine.instance(moved).unwrap().version, 1);
    // Re-assigned lanes: the claimed task went back to the new groups, unclaimed.
    let claimed = only_task(engine, ids["approval_claimed"]);
    assert_eq!(claimed.groups, ["managers", "leads"]);
    assert_eq!(claimed.assignee, None);
    let t = &engine.instance(ids["approval_claimed"]).unwrap().tokens[0];
    assert!(matches!(&t.wait, Wait::Task { assignee: None, .. }), "{t:?}");
    // Planned again, it moves too.
    let plan = engine.plan_migration(spec, "admin").unwrap();
    assert_eq!(plan.summary.instances, 1);
    let report = engine.apply_migration(&plan, "admin", |_| {}).unwrap();
    assert_eq!(report.counts.get("migrated"), Some(&1));
    assert_eq!(only_task(engine, moved).groups, ["managers", "leads"]);
}

#[test]
fn a_bad_spec_is_refused_with_every_mistake() {
    let e = expense_engine();
    e.engine.deploy("expense-approval.yaml", &expense_v2()).unwrap();
    let mut spec = expense_spec(2);
    spec.map.insert("ない".into(), "証憑確認".into());
    spec.map.insert("領収書確認".into(), "証憑確".into());
    spec.set.insert("領収書あり".into(), "if (".into());
    spec.defaults.insert("金額".into(), json!("たくさん"));
    let err = e.engine.plan_migration(spec, "admin").unwrap_err().to_string();
    for part in ["map.ない", "map.領収書確認", "証憑確認", "set.領収書あり", "defaults.金額"] {
        assert!(err.contains(part), "{part} in {err}");
    }
    let mut spec = expense_spec(9);
    spec.timers = TimerChoice::Rearm;
    assert!(e.engine.plan_migration(spec, "admin").is_err());
}

// ---------------------------------------------------------------------------
// 受注納品 (order delivery)
// ---------------------------------------------------------------------------

fn order_v2() -> String {
    let v1 = process_text("order-delivery.yaml");
    let v2 = v1
        .replace("  ライセンスキー手配:\n", "  ライセンス手配:\n")
        .replace("    next: ライセンスキー手配\n", "    next: ライセンス手配\n")
        .replacen(
            "    next: 環境構築\n",
            "    next: 環境準備\n\n  環境準備:\n    name: 環境準備\n    user_task: 構築環境の準備\n    lane: 構築担当\n    next: 環境構築\n",
            1,
        )
        .replace("options: [ライト, スタンダード, プレミアム]", "options: [Light, Standard, Premium]")
        .replace("groups: [build] }", "groups: [build, infra] }");
    assert!(v2.contains("ライセンス手配:") && v2.contains("環境準備:") && v2.contains("Premium"), "edits applied");
    v2
}

/// The engine, and the switch that makes the ledger answer with version 2's plan
/// names (the ledger's radio buttons are renamed with the process).
fn order_engine() -> (Engine, Arc<AtomicBool>) {
    let english = Arc::new(AtomicBool::new(false));
    let en = english.clone();
    let get = FnConnector(move |c: &Call| -> Result<Value, ConnectorError> {
        let id = c.input["id"].as_str().unwrap_or_default().to_string();
        let plan = if en.load(Ordering::SeqCst) { "Standard" } else { "スタンダード" };
        Ok(json!({ "record": {
            "k_id": format!("C-{id}"), "k_氏名": "山田", "k_メールアドレス": "yamada@example.jp",
            "k_プラン": plan, "k_構築希望日時": "2026-12-20T10:00:00+09:00",
            "k_マニュアル送付希望": "希望する", "k_ステータス": "対応要",
        }}))
    });
    let update = FnConnector(|_: &Call| -> Result<Value, ConnectorError> { Ok(json!({ "revision": "2" })) });
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = Engine::builder()
        .in_memory()
        .clock(clock)
        .connector("kintone.get", get)
        .connector("kintone.update", update)
        .build()
        .expect("engine");
    engine.deploy("order-delivery.yaml", &process_text("order-delivery.yaml")).expect("v1");
    (engine, english)
}

fn start_order(engine: &Engine, record: &str) -> u64 {
    engine.start("order-delivery", vars(json!({ "q_kintoneId": record })), StartOptions::default()).unwrap().id
}

fn order_data(node: &str) -> Value {
    match node {
        "ライセンスキー手配" | "ライセンス手配" | "ライセンスキー修正" => {
            json!({ "q_licenseKey": "KEY-1" })
        }
        "環境構築" => json!({ "q_accessUrl": "https://example.jp", "q_password": "pw" }),
        "マニュアル送付手配" => json!({
            "q_sendZipcode": "100-0001", "q_sendAddress": "東京都", "q_sendName": "山田", "q_trackingNo": "123"
        }),
        _ => json!({}),
    }
}

#[test]
fn order_instances_at_every_wait_state_migrate_and_complete() {
    let (engine, english) = order_engine();
    let mut ids = BTreeMap::new();
    // The first kintone call pending (the executor has not run yet).
    let fetch = start_order(&engine, "1");
    ids.insert("fetch", fetch);
    // The others: fetched and at their tasks.
    let license = start_order(&engine, "2");
    let build = start_order(&engine, "3");
    let build_claimed = start_order(&engine, "4");
    let fix = start_order(&engine, "5");
    let ship = start_order(&engine, "6");
    run_jobs(&engine);
    assert_eq!(only_task(&engine, license).node, "ライセンスキー手配");
    ids.insert("license", license);
    for id in [build, build_claimed, fix, ship] {
        complete(&engine, id, order_data("ライセンスキー手配"), Outcome::Next);
    }
    ids.insert("build", build);
    engine.claim(&only_task(&engine, build_claimed).id, "kato").unwrap();
    ids.insert("build_claimed", build_claimed);
    complete(&engine, fix, json!({}), Outcome::SendBack { comment: "キーが使えません".into() });
    assert_eq!(only_task(&engine, fix).node, "ライセンスキー修正");
    ids.insert("fix", fix);
    complete(&engine, ship, order_data("環境構築"), Outcome::Next);
    assert_eq!(only_task(&engine, ship).node, "マニュアル送付手配");
    ids.insert("ship", ship);
    // Past the last task, the final kintone update pending: started last, driven by
    // hand so that the executor does not run it.
    let update = start_order(&engine, "7");
    run_jobs(&engine);
    for node in ["ライセンスキー手配", "環境構築", "マニュアル送付手配"] {
        complete(&engine, update, order_data(node), Outcome::Next);
    }
    assert!(matches!(engine.instance(update).unwrap().tokens[0].wait, Wait::Job { .. }));
    ids.insert("update", update);

    assert_eq!(engine.deploy("order-delivery.yaml", &order_v2()).unwrap().version, 2);
    let mut spec = MigrationSpec { process: "order-delivery".into(), from: 1, to: 2, ..Default::default() };
    spec.map.insert("ライセンスキー手配".into(), "ライセンス手配".into());
    spec.set.insert(
        "q_plan".into(),
        r#"switch q_plan { "ライト" => "Light", "スタンダード" => "Standard", "プレミアム" => "Premium" }"#.into(),
    );
    spec.lanes = LaneChoice::Reassign;
    let plan = engine.plan_migration(spec, "admin").unwrap();
    assert_eq!(plan.summary.valid, ids.len(), "{:#?}", plan.instances);
    let report = engine.apply_migration(&plan, "admin", |_| {}).unwrap();
    assert_eq!(report.counts.get("migrated"), Some(&(ids.len())), "{report:?}");

    for (name, id) in &ids {
        let inst = engine.instance(*id).unwrap();
        assert_eq!(inst.version, 2, "{name}");
        assert_eq!(migrated_lines(&engine, *id).len(), 1, "{name}");
        if *name != "fetch" {
            assert_eq!(inst.vars["q_plan"], json!("Standard"), "{name}");
        }
    }
    assert_eq!(only_task(&engine, license).node, "ライセンス手配");
    assert_eq!(nodes_of(&engine, license), ["ライセンス手配"]);
    let claimed = only_task(&engine, build_claimed);
    assert_eq!((claimed.groups.clone(), claimed.assignee.clone()), (vec!["build".to_string(), "infra".into()], None));

    english.store(true, Ordering::SeqCst);
    let all: Vec<u64> = ids.values().copied().collect();
    let opened = drive_to_end(&engine, &all, &order_data);
    // The license step of a migrated instance leads to the step added before 環境構築.
    assert!(opened.iter().any(|n| n == "環境準備"), "{opened:?}");
    for (name, id) in &ids {
        assert_eq!(engine.instance(*id).unwrap().status, Status::Completed, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Timers and messages
// ---------------------------------------------------------------------------

const WAITS_V1: &str = r#"
id: waits
lanes: { staff: { groups: [staff] } }
variables:
  order: { type: string, required: true }
start: { next: fork }
nodes:
  fork: { parallel: [pause, paid, check] }
  pause: { timer: 1h, next: join }
  paid: { message: payment, key: order, next: join }
  check: { user_task: Check, lane: staff, next: join }
  join: { join: fork, next: done }
  done: { end: }
"#;

/// The timer takes two hours, the message is renamed and keyed differently, and the
/// task gets a reminder boundary.
const WAITS_V2: &str = r#"
id: waits
lanes: { staff: { groups: [staff] } }
variables:
  order: { type: string, required: true }
start: { next: fork }
nodes:
  fork: { parallel: [pause, paid, check] }
  pause: { timer: 2h, next: join }
  paid: { message: payment.received, key: '"P-" + order', next: join }
  check:
    user_task: Check
    lane: staff
    next: join
    boundary:
      - { timer: 30m, interrupting: false, next: remind }
  remind: { script: 'order = order;', next: reminded }
  reminded: { end: }
  join: { join: fork, next: done }
  done: { end: }
"#;

fn waits_engine() -> (Engine, Arc<VirtualClock>, u64) {
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = Engine::builder().in_memory().clock(clock.clone()).build().unwrap();
    engine.deploy("waits.yaml", WAITS_V1).unwrap();
    let id = engine.start("waits", vars(json!({ "order": "A1" })), StartOptions::default()).unwrap().id;
    clock.advance(chrono::Duration::minutes(10));
    engine.deploy("waits.yaml", WAITS_V2).unwrap();
    (engine, clock, id)
}

fn timer_job(engine: &Engine, id: u64) -> nagare_engine::runtime::Job {
    let inst = engine.instance(id).unwrap();
    let job = inst
        .tokens
        .iter()
        .find_map(|t| match &t.wait {
            Wait::Timer { job } => Some(job.clone()),
            _ => None,
        })
        .expect("a timer token");
    engine.store().job(&job).unwrap().expect("its job")
}

#[test]
fn changed_timers_are_kept_or_rearmed_and_renamed_messages_resubscribed() {
    for rearm in [false, true] {
        let (engine, _clock, id) = waits_engine();
        let before = timer_job(&engine, id);
        assert_eq!(before.due, t0() + chrono::Duration::hours(1));
        let spec = MigrationSpec {
            process: "waits".into(),
            from: 1,
            to: 2,
            timers: if rearm { TimerChoice::Rearm } else { TimerChoice::Keep },
            ..Default::default()
        };
        let plan = engine.plan_migration(spec, "admin").unwrap();
        let p = &plan.instances[0];
        assert!(p.is_valid(), "{p:?}");
        assert!(p.warnings.iter().any(|w| w.code == "timer-changed" && w.message.contains("pause")), "{p:?}");
        engine.apply_migration(&plan, "admin", |_| {}).unwrap();
        let after = timer_job(&engine, id);
        if rearm {
            // Re-armed from the migration (10 minutes in): two hours from then.
            assert_ne!(after.id, before.id);
            assert_eq!(after.due, t0() + chrono::Duration::minutes(130));
            assert!(engine.store().job(&before.id).unwrap().is_none(), "the old timer is withdrawn");
        } else {
            assert_eq!(after, before, "kept as armed");
        }
        // The task's new reminder boundary is armed (its slots changed: always).
        let inst = engine.instance(id).unwrap();
        let task = inst.tokens.iter().find(|t| t.node == "check").unwrap();
        assert_eq!(task.timers.len(), 1, "{task:?}");
        assert_eq!(task.timers[0].due, t0() + chrono::Duration::minutes(40));
        // The message wait follows the new name and key.
        let msg = inst.tokens.iter().find(|t| t.node == "paid").unwrap();
        assert_eq!(msg.wait, Wait::Message { name: "payment.received".into(), key: "P-A1".into() });
        let old = engine.correlate(
            "payment",
            "A1",
            json!({}),
            &nagare_engine::MessageOptions { ttl: Some(std::time::Duration::ZERO) },
        );
        assert!(old.is_err(), "nobody waits for the old name any more");
        engine
            .correlate("payment.received", "P-A1", json!({}), &nagare_engine::MessageOptions::default())
            .expect("delivered to the migrated token");
        // Then it runs to its end on version 2.
        rt().block_on(Executor::new(engine.clone()).advance(chrono::Duration::hours(3)));
        let task = only_task(&engine, id);
        engine.complete(&task.id, "u", Vars::new(), Outcome::Next).unwrap();
        let inst = engine.instance(id).unwrap();
        assert_eq!(inst.status, Status::Completed, "{:?}", inst.tokens);
        assert!(engine.history(id).unwrap().iter().any(|h| h.node.as_deref() == Some("remind")), "the reminder fired");
    }
}
