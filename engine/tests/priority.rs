//! Task and job priority: deploy checks, task priorities, and the executor's fair
//! share between processes (deterministic: virtual clock, one slot).

use chrono::{DateTime, Utc};
use nagare_engine::runtime::Status;
use nagare_engine::store::TaskQuery;
use nagare_engine::{Call, Engine, Executor, FnConnector, VirtualClock};
use std::sync::{Arc, Mutex};

mod common;
use common::TestStore;

fn service_process(id: &str, priority: &str) -> String {
    format!(
        r#"
id: {id}
{priority}
variables:
  urgent: {{ type: bool, default: false }}
start: {{ next: call }}
nodes:
  call:
    service: rec.call
    priority: "if urgent {{ 90 }} else {{ 10 }}"
    next: done
  done: {{ end: }}
"#
    )
}

/// Every call the connector saw, in order: "<process>:<urgent>".
fn recording_engine(store: &TestStore, calls: Arc<Mutex<Vec<String>>>) -> (Engine, Arc<VirtualClock>) {
    let t0: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
    let clock = Arc::new(VirtualClock::new(t0));
    let engine = store
        .builder()
        .clock(clock.clone())
        .connector(
            "rec.call",
            FnConnector(move |c: &Call| {
                calls.lock().unwrap().push(format!("{}", c.instance));
                Ok(serde_json::json!({}))
            }),
        )
        .build()
        .unwrap();
    (engine, clock)
}

fn start(e: &Engine, process: &str, urgent: bool) -> u64 {
    let vars = [("urgent".to_string(), serde_json::json!(urgent))].into_iter().collect();
    e.start(process, vars, Default::default()).unwrap().id
}

#[test]
fn a_flood_of_low_priority_jobs_does_not_starve_another_process() {
    for store in TestStore::all("a_flood_of_low_priority_jobs_does_not_starve_another_process") {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (e, _clock) = recording_engine(&store, calls.clone());
        e.deploy("flood.yaml", &service_process("flood", "")).unwrap();
        e.deploy("other.yaml", &service_process("other", "")).unwrap();
        let flood: Vec<u64> = (0..300).map(|_| start(&e, "flood", false)).collect();
        // Queued after the whole flood, at the same (low) priority.
        let other: Vec<u64> = (0..3).map(|_| start(&e, "other", false)).collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let exec = Executor::new(e.clone()).concurrency(1);
        rt.block_on(exec.run_until_idle());
        let order = calls.lock().unwrap().clone();
        assert_eq!(order.len(), 303, "every job ran once");
        for id in &other {
            let at = order.iter().position(|c| *c == id.to_string()).expect("ran");
            // Turns alternate: the other process's jobs are among the first 6 calls,
            // not behind 300 (FIFO would put them at 300..303).
            assert!(at < 6, "job of instance {id} ran at position {at}: {order:?}");
        }
        for id in flood.iter().chain(&other) {
            assert_eq!(e.instance(*id).unwrap().status, Status::Completed);
        }
    }
}

#[test]
fn within_a_process_higher_priority_jobs_run_first() {
    for store in TestStore::all("within_a_process_higher_priority_jobs_run_first") {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (e, _clock) = recording_engine(&store, calls.clone());
        e.deploy("flood.yaml", &service_process("flood", "")).unwrap();
        let routine: Vec<u64> = (0..50).map(|_| start(&e, "flood", false)).collect();
        let urgent = start(&e, "flood", true);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(Executor::new(e.clone()).concurrency(1).run_until_idle());
        let order = calls.lock().unwrap().clone();
        assert_eq!(order.first(), Some(&urgent.to_string()), "urgent first: {order:?}");
        assert_eq!(order.len(), routine.len() + 1);
    }
}

#[test]
fn priority_literals_are_checked_at_deploy() {
    let e = Engine::builder()
        .in_memory()
        .connector("rec.call", FnConnector(|_: &Call| Ok(serde_json::json!({}))))
        .build()
        .unwrap();
    let bad = service_process("p", "priority: 101");
    let err = e.deploy("p.yaml", &bad).unwrap_err().to_string();
    assert!(err.contains("bad-priority") && err.contains("p.yaml:3"), "{err}");
    let bad = service_process("p", "priority: high").to_string();
    let err = e.deploy("p.yaml", &bad).unwrap_err().to_string();
    assert!(err.contains("bad-priority"), "{err}");
    let node_bad = service_process("p", "").replace("\"if urgent { 90 } else { 10 }\"", "-3");
    let err = e.deploy("p.yaml", &node_bad).unwrap_err().to_string();
    assert!(err.contains("bad-priority") && err.contains("outside 0–100"), "{err}");
    e.deploy("p.yaml", &service_process("p", "priority: 70\nretention: 90d")).unwrap();
    for bad in ["retention: 1h", "retention: P1M", "retention: soon"] {
        let err = e.deploy("q.yaml", &service_process("q", bad)).unwrap_err().to_string();
        assert!(err.contains("bad-retention"), "{bad}: {err}");
    }
}

const TASKS: &str = r#"
id: inbox
variables:
  score: { type: number, default: 50 }
lanes: { staff: { groups: [staff] } }
start: { next: check }
nodes:
  check:
    user_task: 確認する
    lane: staff
    priority: score
    next: done
  done: { end: }
"#;

#[test]
fn a_task_takes_its_priority_and_an_unusable_one_is_an_incident() {
    let e = Engine::builder().in_memory().build().unwrap();
    e.deploy("inbox.yaml", TASKS).unwrap();
    let with = |score: serde_json::Value| [("score".to_string(), score)].into_iter().collect();
    let ok = e.start("inbox", with(serde_json::json!(80)), Default::default()).unwrap();
    let tasks = e.tasks(&TaskQuery { instance: Some(ok.id), ..TaskQuery::default() }).unwrap();
    assert_eq!(tasks[0].priority, 80);
    for bad in [serde_json::json!(101), serde_json::json!(2.5), serde_json::json!(-1)] {
        let i = e.start("inbox", with(bad.clone()), Default::default()).unwrap();
        assert_eq!(i.incidents.len(), 1, "{bad}: an incident, not a clamped priority");
        assert!(i.incidents[0].message.contains("priority `score`"), "{}", i.incidents[0].message);
        assert!(e.tasks(&TaskQuery { instance: Some(i.id), ..TaskQuery::default() }).unwrap().is_empty());
    }
}
