//! Message boundaries and fork timers through the engine facade, across restarts of
//! a sled store: the subscriptions and timer jobs they arm are durable, so a message
//! or a due time after a restart still reaches them.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::runtime::{Outcome, Status, TaskStatus};
use nagare_engine::store::TaskQuery;
use nagare_engine::{Correlation, Engine, Executor, MessageOptions, StartOptions, Vars, VirtualClock};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

fn engine_on(dir: &Path, clock: &Arc<VirtualClock>) -> Engine {
    Engine::builder().data_dir(dir).expect("store").clock(clock.clone()).build().expect("engine")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio")
}

fn count(engine: &Engine, id: u64, name: &str) -> usize {
    engine.history(id).expect("history").iter().filter(|h| h.event.name() == name).count()
}

const REVIEW: &str = r#"
id: review
lanes: { staff: {} }
variables:
  order: { type: string, required: true }
  reason: { type: string }
  asked: { type: number, default: 0 }
start: { next: check }
nodes:
  check:
    user_task: Check the order
    lane: staff
    next: done
    boundary:
      - message: question
        key: order
        interrupting: false
        next: note
      - message: cancelled
        key: order
        set: { reason: payload.why }
        next: withdrawn
  note: { script: 'asked += 1;', next: noted }
  noted: { end: }
  withdrawn: { end: }
  done: { end: }
"#;

/// The boundary subscriptions of an open task are stored with it: after a restart a
/// non-interrupting message fires (the task stays), then an interrupting one ends it.
#[test]
fn a_message_reaches_a_task_boundary_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let id = {
        let engine = engine_on(dir.path(), &clock);
        engine.deploy("review.yaml", REVIEW).unwrap();
        let vars: Vars = [("order".to_string(), json!("A-1"))].into_iter().collect();
        engine.start("review", vars, StartOptions::default()).unwrap().id
    };
    let engine = engine_on(dir.path(), &clock);
    assert_eq!(engine.waiting_for("question", "A-1").unwrap().len(), 1, "subscription survived the restart");
    let no_ttl = MessageOptions { ttl: Some(std::time::Duration::ZERO) };
    let c = engine.correlate("question", "A-1", json!({}), &no_ttl).unwrap();
    assert_eq!(c, Correlation::Delivered { instance: id, node: "check".into() });
    let inst = engine.instance(id).unwrap();
    assert_eq!(inst.vars["asked"], json!(1));
    assert_eq!(inst.status, Status::Running, "a non-interrupting boundary leaves the task open");
    assert_eq!(engine.waiting_for("question", "A-1").unwrap().len(), 1, "and it keeps listening");

    drop(engine);
    let engine = engine_on(dir.path(), &clock);
    let c = engine.correlate("cancelled", "A-1", json!({ "why": "customer" }), &no_ttl).unwrap();
    assert_eq!(c, Correlation::Delivered { instance: id, node: "check".into() });
    let inst = engine.instance(id).unwrap();
    assert_eq!(inst.status, Status::Completed);
    assert_eq!(inst.vars["reason"], json!("customer"));
    let tasks = engine.tasks(&TaskQuery::default()).unwrap();
    assert!(tasks.is_empty(), "the task is closed: {tasks:?}");
    assert!(engine.waiting_for("question", "A-1").unwrap().is_empty(), "every subscription withdrawn");
    assert!(engine.waiting_for("cancelled", "A-1").unwrap().is_empty());
    let err = engine.correlate("question", "A-1", json!({}), &no_ttl);
    assert!(err.is_err(), "nobody listens any more: {err:?}");
}

const FORK: &str = r#"
id: fork-deadline
lanes: { staff: {} }
variables:
  late: { type: bool, default: false }
start: { next: split }
nodes:
  split:
    parallel: [a, b]
    boundary:
      - timer: 1h
        next: overdue
  a: { user_task: A, lane: staff, next: merge }
  b: { user_task: B, lane: staff, next: merge }
  merge: { join: split, next: done }
  overdue: { script: 'late = true;', next: ended }
  ended: { end: }
  done: { end: }
"#;

/// A fork's boundary timer is a stored job like any other: due during downtime, it
/// fires once after the restart, and both branches' tasks are closed as cancelled.
#[test]
fn a_fork_timer_due_during_downtime_fires_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let (id, b) = {
        let engine = engine_on(dir.path(), &clock);
        engine.deploy("fork.yaml", FORK).unwrap();
        let id = engine.start("fork-deadline", Vars::new(), StartOptions::default()).unwrap().id;
        let open = engine.tasks(&TaskQuery::default()).unwrap();
        let a = open.iter().find(|t| t.node == "a").unwrap();
        let b = open.iter().find(|t| t.node == "b").unwrap().id.clone();
        engine.complete(&a.id, "u", Vars::new(), Outcome::Next).unwrap();
        (id, b)
    };
    clock.advance(Duration::hours(5));
    let engine = engine_on(dir.path(), &clock);
    let ran = rt().block_on(Executor::new(engine.clone()).run_until_idle());
    assert_eq!(ran, 1, "the fork's timer");
    let inst = engine.instance(id).unwrap();
    assert_eq!(inst.status, Status::Completed);
    assert_eq!(inst.vars["late"], json!(true));
    assert_eq!(count(&engine, id, "interrupted"), 1);
    assert_eq!(engine.task(&b).unwrap().status, TaskStatus::Cancelled, "the open branch's task is cancelled");
    assert!(engine.store().jobs().unwrap().is_empty(), "no job left");
    drop(engine);
    let engine = engine_on(dir.path(), &clock);
    assert_eq!(rt().block_on(Executor::new(engine.clone()).run_until_idle()), 0);
    assert_eq!(count(&engine, id, "timer_fired"), 1);
}

/// Regression: a fork whose branches join in the step that forked subscribes its
/// message boundary and withdraws it in one commit; the store applies deletes before
/// puts, so the subscription stayed in the index. It must not.
#[test]
fn a_subscription_made_and_withdrawn_in_one_commit_is_not_stored() {
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let engine = Engine::builder().in_memory().clock(clock).build().expect("engine");
    let yaml = r#"
id: instant
variables:
  k: { type: string }
start: { next: split }
nodes:
  split:
    parallel: [a, b]
    boundary: [ { message: stop, key: k, next: done } ]
  a: { script: '1;', next: merge }
  b: { script: '2;', next: merge }
  merge: { join: split, next: done }
  done: { end: }
"#;
    engine.deploy("instant.yaml", yaml).unwrap();
    let vars: Vars = [("k".to_string(), json!("K"))].into_iter().collect();
    let inst = engine.start("instant", vars, StartOptions::default()).unwrap();
    assert_eq!(inst.status, Status::Completed);
    assert!(engine.waiting_for("stop", "K").unwrap().is_empty(), "no stale subscription");
}
