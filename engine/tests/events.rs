//! Engine events ([`Engine::subscribe`]): sent once a commit is durable, in commit
//! order per instance, nothing for a refused request, and a slow subscriber is told
//! it lagged.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::runtime::{Outcome, Status};
use nagare_engine::{ConnectorError, Engine, EngineError, EngineEvent, EventKind, Executor, FnConnector, VirtualClock};
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

const YAML: &str = r#"
id: 承認
lanes:
  担当: { groups: [staff] }
variables:
  承認: { type: bool }
start: { next: 取得 }
nodes:
  取得:
    service: test.flaky
    retry: { attempts: 3, backoff: 1s..1s }
    next: 確認
  確認:
    user_task: 確認する
    lane: 担当
    form: { 承認: required }
    next: 完了
  完了: { end: }
"#;

fn engine_with(clock: Arc<VirtualClock>, capacity: usize) -> Engine {
    let calls = Arc::new(AtomicU32::new(0));
    Engine::builder()
        .in_memory()
        .clock(clock)
        .event_capacity(capacity)
        .connector(
            "test.flaky",
            FnConnector(move |_c: &nagare_engine::Call| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(ConnectorError::Retryable("HTTP 503".into()))
                } else {
                    Ok(json!({}))
                }
            }),
        )
        .build()
        .unwrap()
}

fn t0() -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse().unwrap()
}

/// Every event waiting in `rx` now.
fn drain(rx: &mut Receiver<EngineEvent>) -> Vec<EngineEvent> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => out.push(e),
            Err(TryRecvError::Empty) => return out,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

fn names(events: &[EngineEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

#[tokio::test]
async fn events_arrive_in_commit_order_for_a_process_run_through_the_engine() {
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = engine_with(clock.clone(), 64);
    engine.deploy("a.yaml", YAML).unwrap();
    let mut rx = engine.subscribe();
    let inst = engine.start("承認", Default::default(), Default::default()).unwrap();
    let exec = Executor::new(engine.clone());
    exec.run_until_idle().await; // the first call fails: retried in 1s
    clock.advance(Duration::seconds(1));
    exec.run_until_idle().await; // succeeds: the task opens
    let task = engine.instance(inst.id).unwrap().open_task_ids().next().unwrap().to_string();
    engine.claim(&task, "suzuki").unwrap();
    let done = engine.complete(&task, "suzuki", [("承認".to_string(), json!(true))].into(), Outcome::Next).unwrap();
    assert_eq!(done.status, Status::Completed);

    let events = drain(&mut rx);
    assert!(events.iter().all(|e| e.instance == inst.id && e.process == "承認" && e.version == 1));
    assert_eq!(
        names(&events),
        ["instance_started", "job_failed", "task_opened", "task_claimed", "task_completed", "instance_completed"]
    );
    match &events[1].kind {
        EventKind::JobFailed { attempt, retry_at, node, .. } => {
            assert_eq!((*attempt, node.as_deref()), (1, Some("取得")));
            assert_eq!(*retry_at, Some(t0() + Duration::seconds(1)));
        }
        other => panic!("{other:?}"),
    }
    match &events[3].kind {
        EventKind::TaskClaimed { task: t } => assert_eq!(t.assignee.as_deref(), Some("suzuki")),
        other => panic!("{other:?}"),
    }
    match &events[4].kind {
        EventKind::TaskCompleted { task: t } => {
            assert_eq!((t.id.as_str(), t.completed_by.as_deref()), (task.as_str(), Some("suzuki")))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        events[5].kind,
        EventKind::InstanceCompleted { status: Status::Completed, end_node: Some("完了".into()) }
    );
    // Each event describes a state already in the store.
    assert_eq!(engine.instance(inst.id).unwrap().status, Status::Completed);
    // The wire form: a `type` tag next to the instance fields.
    let wire = serde_json::to_value(&events[5]).unwrap();
    assert_eq!((wire["type"].as_str(), wire["end_node"].as_str()), (Some("instance_completed"), Some("完了")));
    assert_eq!(wire["instance"], json!(inst.id));
}

#[tokio::test]
async fn cancel_tells_the_open_task_cancelled_then_the_instance() {
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = engine_with(clock.clone(), 64);
    engine.deploy("a.yaml", YAML).unwrap();
    let inst = engine.start("承認", Default::default(), Default::default()).unwrap();
    let exec = Executor::new(engine.clone());
    exec.run_until_idle().await;
    clock.advance(Duration::seconds(1));
    exec.run_until_idle().await;
    let mut rx = engine.subscribe();
    engine.cancel(inst.id, "admin", "no longer needed").unwrap();
    let events = drain(&mut rx);
    assert_eq!(names(&events), ["task_cancelled", "instance_cancelled"]);
    assert_eq!(
        events[1].kind,
        EventKind::InstanceCancelled {
            status: Status::Cancelled,
            reason: "no longer needed".into(),
            by: Some("admin".into())
        }
    );
}

#[tokio::test]
async fn nothing_is_emitted_for_a_rejected_event() {
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = engine_with(clock.clone(), 64);
    engine.deploy("a.yaml", YAML).unwrap();
    let inst = engine.start("承認", Default::default(), Default::default()).unwrap();
    let exec = Executor::new(engine.clone());
    exec.run_until_idle().await;
    clock.advance(Duration::seconds(1));
    exec.run_until_idle().await;
    let task = engine.instance(inst.id).unwrap().open_task_ids().next().unwrap().to_string();
    engine.claim(&task, "suzuki").unwrap();
    let mut rx = engine.subscribe();
    // A required field missing (422), a task claimed by someone else (409), an
    // unknown outcome: each refused, and not one event.
    let missing = engine.complete(&task, "suzuki", Default::default(), Outcome::Next);
    assert!(matches!(missing, Err(EngineError::Rejected(_))), "{missing:?}");
    let taken = engine.claim(&task, "tanaka");
    assert!(matches!(taken, Err(EngineError::Conflict(_))), "{taken:?}");
    let unknown = engine.complete(&task, "suzuki", [("承認".into(), json!(true))].into(), Outcome::Named("x".into()));
    assert!(unknown.is_err());
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[tokio::test]
async fn a_slow_subscriber_learns_it_lagged() {
    let engine = Engine::builder().in_memory().event_capacity(4).build().unwrap();
    engine.deploy("s.yaml", "id: s\nlanes:\n  l: { groups: [g] }\nstart: { next: t }\nnodes:\n  t: { user_task: T, lane: l, next: e }\n  e: { end: }\n").unwrap();
    let mut slow = engine.subscribe();
    for _ in 0..5 {
        engine.start("s", Default::default(), Default::default()).unwrap(); // 2 events each
    }
    // 10 sent, 4 kept: the first read says 6 were missed, then the newest 4 follow.
    assert_eq!(slow.recv().await, Err(RecvError::Lagged(6)));
    let rest: Vec<_> = (0..4).map(|_| slow.try_recv().unwrap()).collect();
    assert_eq!(names(&rest), ["instance_started", "task_opened", "instance_started", "task_opened"]);
    assert_eq!(slow.try_recv(), Err(TryRecvError::Empty));
}

const CHILD: &str = r#"
id: child
lanes: { boss: {} }
variables:
  decision: { type: bool }
start: { next: approve }
nodes:
  approve: { user_task: Approve, lane: boss, form: { decision: required }, next: done }
  done: { end: }
"#;

const PARENT: &str = r#"
id: parent
variables:
  approved: { type: bool }
start: { next: approve }
nodes:
  approve: { call: child, out: { approved: decision }, next: done }
  done: { end: }
"#;

/// Through the async handle: a call activity commits the caller and the new child
/// in one batch; each gets its own events, and the child's end is followed by the
/// parent's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_activity_tells_both_instances_through_the_async_handle() {
    let engine = Engine::in_memory().asynchronous();
    engine.deploy("child.yaml", CHILD).await.unwrap();
    engine.deploy("parent.yaml", PARENT).await.unwrap();
    let mut rx = engine.subscribe();
    let parent = engine.start("parent", Default::default(), Default::default()).await.unwrap();
    Executor::new(engine.blocking().clone()).run_until_idle().await;
    let started = rx.recv().await.unwrap();
    assert_eq!((started.kind.name(), started.instance), ("instance_started", parent.id));
    let child = rx.recv().await.unwrap();
    let EventKind::InstanceStarted { parent: Some(p), .. } = child.kind else { panic!("{child:?}") };
    assert_eq!((p, child.process.as_str()), (parent.id, "child"));
    let opened = rx.recv().await.unwrap();
    let task = opened.kind.task().expect("the child's task").clone();
    assert_eq!((opened.instance, task.instance), (child.instance, child.instance));

    engine.complete(task.id, "boss", [("decision".into(), json!(true))].into(), Outcome::Next).await.unwrap();
    Executor::new(engine.blocking().clone()).run_until_idle().await;
    let rest = drain(&mut rx);
    let seen: Vec<_> = rest.iter().map(|e| (e.kind.name(), e.instance)).collect();
    assert_eq!(
        seen,
        [("task_completed", child.instance), ("instance_completed", child.instance), ("instance_completed", parent.id)]
    );
    assert_eq!(engine.instance(parent.id).await.unwrap().vars["approved"], json!(true));
}
