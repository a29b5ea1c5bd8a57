//! Call activities through the whole engine on a virtual clock: a parent waits for
//! a called instance, maps its final variables back, catches its uncaught error ends
//! on the call, cancels it when cancelled, pins versions, stops call cycles at the
//! depth limit, and continues exactly once after a crash between the child's final
//! commit and its own continuation.

use chrono::{DateTime, Utc};
use nagare_engine::runtime::{Event, HistoryEvent, Instance, JobKind, Outcome, Status, Wait, MAX_CALL_DEPTH};
use nagare_engine::store::{InstanceFilter, TaskQuery};
use nagare_engine::{Engine, EngineError, Executor, StartOptions, Vars, VirtualClock};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

const CHILD: &str = r#"
id: common-approval
lanes: { boss: {} }
variables:
  amount: { type: number, required: true }
  requester: { type: string }
  decision: { type: bool }
start: { next: check }
nodes:
  check:
    exclusive:
      - { when: 'amount > 1000000', next: too_big }
    default: approve
  too_big: { end: { error: rejected, message: too big } }
  approve:
    user_task: Approve
    lane: boss
    form: { decision: required }
    next: done
  done: { end: }
"#;

const PARENT: &str = r#"
id: order
variables:
  total: { type: number, required: true }
  approved: { type: bool }
  note: { type: string }
start: { next: approve }
nodes:
  approve:
    call: common-approval
    in: { amount: total, requester: started_by }
    out: { approved: decision }
    next: after
    boundary:
      - { error: rejected, next: on_rejected }
  after: { script: 'note = "after";', next: done }
  on_rejected: { script: 'note = "rejected";', next: done }
  done: { end: }
"#;

/// The same caller without a boundary on the call.
const UNCAUGHT: &str = r#"
id: order-uncaught
variables:
  total: { type: number, required: true }
  approved: { type: bool }
start: { next: approve }
nodes:
  approve:
    call: common-approval
    in: { amount: total }
    out: { approved: decision }
    next: done
  done: { end: }
"#;

fn t0() -> DateTime<Utc> {
    "2026-12-01T09:00:00Z".parse().expect("time")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio")
}

fn mem_engine() -> Engine {
    let clock = Arc::new(VirtualClock::new(t0()));
    Engine::builder().in_memory().clock(clock).build().expect("engine")
}

fn engine_on(dir: &Path) -> Engine {
    let clock = Arc::new(VirtualClock::new(t0()));
    Engine::builder().data_dir(dir).expect("store").clock(clock).build().expect("engine")
}

fn deploy(engine: &Engine, text: &str) {
    let d = engine.deploy("p.yaml", text).unwrap_or_else(|e| panic!("deploy: {e}"));
    assert!(d.created);
}

fn run(engine: &Engine) -> usize {
    rt().block_on(Executor::new(engine.clone()).run_until_idle())
}

fn start(engine: &Engine, process: &str, vars: serde_json::Value, key: Option<&str>) -> Instance {
    let vars: Vars = serde_json::from_value(vars).expect("vars");
    let opts = StartOptions { by: Some("sato".into()), business_key: key.map(str::to_string) };
    engine.start(process, vars, opts).unwrap_or_else(|e| panic!("start: {e}"))
}

fn count(engine: &Engine, id: u64, name: &str) -> usize {
    engine.history(id).expect("history").iter().filter(|h| h.event.name() == name).count()
}

fn all(engine: &Engine) -> Vec<Instance> {
    engine.instances(&InstanceFilter::default()).expect("instances")
}

/// The instance called from `parent`, from the parent's waiting token.
fn child_of(engine: &Engine, parent: u64) -> Instance {
    let p = engine.instance(parent).expect("parent");
    let child = p.children().next().unwrap_or_else(|| panic!("instance {parent} waits for no child: {p:#?}"));
    engine.instance(child).expect("child")
}

fn approve(engine: &Engine, child: &Instance, decision: bool) {
    let task = child.open_task_ids().next().expect("an open task").to_string();
    let data: Vars = [("decision".to_string(), json!(decision))].into_iter().collect();
    engine.complete(&task, "boss", data, Outcome::Next).expect("complete");
}

#[test]
fn parent_waits_for_the_child_task_then_maps_out_and_continues() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    deploy(&engine, PARENT);
    let parent = start(&engine, "order", json!({ "total": 5000 }), Some("ORD-1"));
    assert!(matches!(parent.tokens[0].wait, Wait::Call { child: None, .. }), "the start job is pending");
    assert!(run(&engine) >= 1);

    let child = child_of(&engine, parent.id);
    assert_eq!(child.process, "common-approval");
    assert_eq!(child.vars["amount"], json!(5000));
    assert_eq!(child.vars["requester"], json!("sato"), "`in` reads the parent's started_by");
    assert_eq!(child.business_key.as_deref(), Some("ORD-1"), "the child shows the parent's key");
    assert_eq!(child.started_by.as_deref(), Some("sato"));
    let link = child.parent.clone().expect("parent link");
    assert_eq!((link.instance, link.node.as_str(), link.depth), (parent.id, "approve", 1));
    assert_eq!(count(&engine, parent.id, "call_started"), 1);
    // The key stays the parent's: a start with it finds the parent, never the child.
    let again = start(&engine, "order", json!({ "total": 1 }), Some("ORD-1"));
    assert_eq!(again.id, parent.id);

    approve(&engine, &child, true);
    assert_eq!(engine.instance(child.id).unwrap().status, Status::Completed);
    assert_eq!(engine.instance(parent.id).unwrap().status, Status::Running, "told by a job, not inline");
    run(&engine);

    let parent = engine.instance(parent.id).unwrap();
    assert_eq!(parent.status, Status::Completed);
    assert_eq!(parent.vars["approved"], json!(true));
    assert_eq!(parent.vars["note"], json!("after"));
    assert_eq!(count(&engine, parent.id, "call_completed"), 1);
    assert!(engine.store().jobs().unwrap().is_empty(), "no job left behind");
}

#[test]
fn a_child_error_end_is_caught_by_the_boundary_on_the_call() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    deploy(&engine, PARENT);
    let parent = start(&engine, "order", json!({ "total": 2_000_000 }), None);
    run(&engine);
    let parent = engine.instance(parent.id).unwrap();
    assert_eq!(parent.status, Status::Completed);
    assert_eq!(parent.vars["note"], json!("rejected"));
    assert_eq!(parent.vars.get("approved"), None, "no `out` mapping after an error");
    let child = all(&engine).into_iter().find(|i| i.id != parent.id).expect("child");
    assert_eq!(child.status, Status::Completed, "a child ended by an uncaught error end is completed");
    assert_eq!(count(&engine, child.id, "error_thrown"), 1);
    assert_eq!(count(&engine, parent.id, "error_caught"), 1);
    let h = engine.history(parent.id).unwrap();
    assert!(h
        .iter()
        .any(|h| matches!(&h.event, HistoryEvent::CallCompleted { error: Some(c), .. } if c == "rejected")));
}

#[test]
fn an_uncaught_child_error_is_an_incident_on_the_parent() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    deploy(&engine, UNCAUGHT);
    let parent = start(&engine, "order-uncaught", json!({ "total": 2_000_000 }), None);
    run(&engine);
    let parent = engine.instance(parent.id).unwrap();
    assert_eq!(parent.status, Status::Incident);
    assert_eq!(parent.incidents.len(), 1);
    let msg = &parent.incidents[0].message;
    assert!(msg.contains("`rejected`") && msg.contains("too big"), "{msg}");
    assert_eq!(parent.incidents[0].node, "approve");
}

#[test]
fn a_refused_child_start_is_an_incident_with_the_field_errors() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    // `amount` is given, but as text: the child's declared type refuses it at run time.
    let caller = r#"
id: bad-caller
variables:
  total: { type: string }
start: { next: approve }
nodes:
  approve:
    call: common-approval
    in: { amount: 'total + "!"' }
    next: done
  done: { end: }
"#;
    deploy(&engine, caller);
    let parent = start(&engine, "bad-caller", json!({ "total": "x" }), None);
    run(&engine);
    let parent = engine.instance(parent.id).unwrap();
    assert_eq!(parent.status, Status::Incident);
    let msg = &parent.incidents[0].message;
    assert!(msg.contains("refused the start") && msg.contains("amount"), "{msg}");
    assert_eq!(all(&engine).len(), 1, "no child was created");
}

const TOP: &str = r#"
id: top
start: { next: call }
nodes:
  call: { call: mid, next: done }
  done: { end: }
"#;

const MID: &str = r#"
id: mid
start: { next: call }
nodes:
  call: { call: common-approval, in: { amount: 10 }, next: done }
  done: { end: }
"#;

#[test]
fn cancelling_the_parent_cancels_the_child_and_the_grandchild() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    deploy(&engine, MID);
    deploy(&engine, TOP);
    let top = start(&engine, "top", json!({}), None);
    run(&engine);
    let mid = child_of(&engine, top.id);
    let leaf = child_of(&engine, mid.id);
    assert_eq!(leaf.parent.as_ref().unwrap().depth, 2);
    assert_eq!(engine.tasks(&TaskQuery::default()).unwrap().len(), 1);

    engine.cancel(top.id, "admin", "no longer needed").expect("cancel");
    run(&engine);
    for id in [top.id, mid.id, leaf.id] {
        assert_eq!(engine.instance(id).unwrap().status, Status::Cancelled, "instance {id}");
    }
    assert!(engine.tasks(&TaskQuery::default()).unwrap().is_empty(), "the grandchild's task is closed");
    assert_eq!(engine.instance(leaf.id).unwrap().participants, ["sato"], "the cascade names no user");
    assert!(engine.store().jobs().unwrap().is_empty(), "no job left behind");
}

#[test]
fn a_child_cancelled_on_its_own_is_an_incident_on_the_parent() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    deploy(&engine, PARENT);
    let parent = start(&engine, "order", json!({ "total": 5 }), None);
    run(&engine);
    let child = child_of(&engine, parent.id);
    engine.cancel(child.id, "admin", "wrong").expect("cancel");
    run(&engine);
    let p = engine.instance(parent.id).unwrap();
    assert_eq!(p.status, Status::Incident);
    assert!(p.incidents[0].message.contains("cancelled"), "{}", p.incidents[0].message);
    // Retrying calls again: a new child.
    engine.retry_incident(parent.id, p.incidents[0].id, Vars::new(), "admin").expect("retry");
    run(&engine);
    let second = child_of(&engine, parent.id);
    assert_ne!(second.id, child.id);
    assert_eq!(second.status, Status::Running);
}

#[test]
fn a_pinned_version_starts_that_version_and_the_default_is_the_latest() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    deploy(&engine, &CHILD.replace("user_task: Approve", "user_task: Approve (v2)"));
    let pinned = PARENT.replace("call: common-approval", "call: common-approval\n    version: 1");
    deploy(&engine, &pinned.replace("id: order", "id: order-pinned"));
    deploy(&engine, PARENT);
    let a = start(&engine, "order-pinned", json!({ "total": 5 }), None);
    let b = start(&engine, "order", json!({ "total": 5 }), None);
    run(&engine);
    assert_eq!(child_of(&engine, a.id).version, 1);
    assert_eq!(child_of(&engine, b.id).version, 2);
    let h = engine.history(a.id).unwrap();
    assert!(h.iter().any(|h| matches!(&h.event, HistoryEvent::CallStarted { version: 1, .. })));
    // A pinned version that does not exist is a deploy error.
    let err = engine.deploy("p.yaml", &pinned.replace("version: 1", "version: 7")).unwrap_err();
    assert!(err.to_string().contains("unknown-version"), "{err}");
}

#[test]
fn a_call_cycle_warns_at_deploy_and_stops_at_the_depth_limit() {
    let engine = mem_engine();
    let a = "id: ping\nstart: { next: c }\nnodes:\n  c: { call: pong, next: done }\n  done: { end: }\n";
    let b = "id: pong\nstart: { next: c }\nnodes:\n  c: { call: ping, next: done }\n  done: { end: }\n";
    let first = engine.deploy("ping.yaml", a).expect("deploy ping");
    let codes: Vec<&str> = first.warnings.0.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["unknown-process"], "{}", first.warnings);
    let second = engine.deploy("pong.yaml", b).expect("deploy pong");
    let w: Vec<String> = second.warnings.0.iter().map(|d| format!("{} {}", d.code, d.message)).collect();
    assert!(w.iter().any(|w| w.starts_with("call-cycle") && w.contains("pong → ping → pong")), "{w:?}");

    let top = start(&engine, "ping", json!({}), None);
    run(&engine);
    let inst = all(&engine);
    assert_eq!(inst.len() as u32, MAX_CALL_DEPTH + 1, "the top instance and {MAX_CALL_DEPTH} levels of calls");
    let deepest = inst.iter().find(|i| i.parent.as_ref().is_some_and(|l| l.depth == MAX_CALL_DEPTH)).unwrap();
    assert_eq!(deepest.status, Status::Incident);
    assert!(deepest.incidents[0].message.contains("limit"), "{}", deepest.incidents[0].message);
    assert_eq!(engine.instance(top.id).unwrap().status, Status::Running, "the top waits; the incident is below");
}

#[test]
fn deploy_checks_the_called_process_and_the_mappings() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    let bad = r#"
id: checked
variables:
  total: { type: number }
  flag: { type: string }
start: { next: c }
nodes:
  c:
    call: common-aproval
    next: done
  done: { end: }
"#;
    // An unknown id deploys with a warning that suggests the deployed one.
    let d = engine.deploy("checked.yaml", bad).expect("a warning only");
    let w = d.warnings.0.iter().find(|w| w.code == "unknown-process").expect("warning");
    assert!(w.hint.as_deref().unwrap_or("").contains("common-approval"), "{w:?}");
    assert_eq!((w.line, w.col), (9, 11));

    let wrong = bad.replace("common-aproval", "common-approval").replace(
        "    next: done",
        "    in: { amount: total, amonut: total }\n    out: { flg: decision, flag: decision }\n    next: done",
    );
    let err = engine.deploy("checked.yaml", &wrong).unwrap_err();
    let EngineError::Invalid(diags) = err else { panic!("not a diagnostic: {err}") };
    let found: Vec<String> = diags.0.iter().map(|d| format!("{} {}:{} {}", d.code, d.line, d.col, d.message)).collect();
    assert!(found.iter().any(|f| f.starts_with("undeclared-variable 10:") && f.contains("amonut")), "{found:?}");
    assert!(found.iter().any(|f| f.starts_with("undeclared-variable 11:") && f.contains("flg")), "{found:?}");
    assert!(
        found.iter().any(|f| f.starts_with("type-mismatch 11:") && f.contains("`decision` is a bool")),
        "{found:?}"
    );
    // Without `amount` (required, no default) every start would be refused.
    let missing = bad.replace("common-aproval", "common-approval");
    let EngineError::Invalid(diags) = engine.deploy("checked.yaml", &missing).unwrap_err() else { panic!() };
    assert!(diags.0.iter().any(|d| d.code == "missing-input" && d.message.contains("amount")), "{diags}");
}

/// The parent's commit scheduled the child's start; the engine dies before it runs.
/// After the restart the child starts once, and running the start job again (a
/// second delivery) starts nothing.
#[test]
fn a_crash_before_the_child_starts_starts_it_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, start_job) = {
        let engine = engine_on(dir.path());
        deploy(&engine, CHILD);
        deploy(&engine, PARENT);
        let parent = start(&engine, "order", json!({ "total": 5 }), None);
        let job = engine.store().jobs().unwrap().into_iter().find(|j| matches!(j.kind, JobKind::CallStart { .. }));
        (parent.id, job.expect("the start job is stored with the parent"))
    };
    let engine = engine_on(dir.path());
    run(&engine);
    assert_eq!(all(&engine).len(), 2);
    let again = engine.fire(&start_job);
    assert!(matches!(again, Err(EngineError::Conflict(_))), "{again:?}");
    assert_eq!(all(&engine).len(), 2, "no second child");
    assert_eq!(count(&engine, parent, "call_started"), 1);
}

/// The child's final commit is durable, the engine dies before the parent hears of
/// it: after the restart the parent continues, exactly once, also when the result
/// is delivered a second time.
#[test]
fn a_crash_between_the_child_end_and_the_parent_continues_the_parent_once() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child, end_job) = {
        let engine = engine_on(dir.path());
        deploy(&engine, CHILD);
        deploy(&engine, PARENT);
        let parent = start(&engine, "order", json!({ "total": 5 }), None);
        run(&engine);
        let child = child_of(&engine, parent.id);
        approve(&engine, &child, true);
        // Dies here: the child's final commit holds the job that tells the parent.
        let job = engine.store().jobs().unwrap().into_iter().find(|j| matches!(j.kind, JobKind::CallEnd { .. }));
        assert_eq!(engine.instance(parent.id).unwrap().status, Status::Running);
        (parent.id, child.id, job.expect("the call_end job is in the child's final commit"))
    };
    let engine = engine_on(dir.path());
    run(&engine);
    let p = engine.instance(parent).unwrap();
    assert_eq!(p.status, Status::Completed);
    assert_eq!(p.vars["approved"], json!(true));
    assert_eq!(count(&engine, parent, "call_completed"), 1);
    let history = engine.history(parent).unwrap().len();

    // A second delivery: the job again, and the event itself.
    assert!(matches!(engine.fire(&end_job), Err(EngineError::Conflict(_))));
    let JobKind::CallEnd { outcome, .. } = end_job.kind.clone() else { unreachable!() };
    let event = Event::CallEnded { job: end_job.id.clone(), child, outcome, vars: Vars::new() };
    assert!(engine.handle(parent, event).is_err(), "a finished parent refuses it");
    assert_eq!(engine.history(parent).unwrap().len(), history, "nothing happened twice");
}

/// A caller deployed before the process it calls: a warning, `out:` compiled
/// without knowing the child's variables, and the mapping still works at run time.
#[test]
fn a_caller_deployed_before_its_child_maps_out_at_run_time() {
    let engine = mem_engine();
    let d = engine.deploy("order.yaml", PARENT).expect("deploys with a warning");
    assert!(d.warnings.0.iter().any(|w| w.code == "unknown-process"), "{}", d.warnings);
    let early = start(&engine, "order", json!({ "total": 5 }), None);
    run(&engine);
    let p = engine.instance(early.id).unwrap();
    assert_eq!(p.status, Status::Incident, "nothing to call yet");
    assert!(p.incidents[0].message.contains("no process `common-approval`"), "{}", p.incidents[0].message);

    deploy(&engine, CHILD);
    engine.retry_incident(early.id, p.incidents[0].id, Vars::new(), "admin").expect("retry");
    run(&engine);
    approve(&engine, &child_of(&engine, early.id), false);
    run(&engine);
    let p = engine.instance(early.id).unwrap();
    assert_eq!(p.status, Status::Completed);
    assert_eq!(p.vars["approved"], json!(false));
}

/// An interrupting timer on the call ends the wait: the child is cancelled and the
/// parent takes the timer's path; the child's late end changes nothing.
#[test]
fn an_interrupting_timer_on_the_call_cancels_the_child() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    let timed = PARENT.replace(
        "      - { error: rejected, next: on_rejected }",
        "      - { error: rejected, next: on_rejected }\n      - { timer: 1h, next: on_rejected }",
    );
    deploy(&engine, &timed);
    let parent = start(&engine, "order", json!({ "total": 5 }), None);
    run(&engine);
    let child = child_of(&engine, parent.id);
    rt().block_on(Executor::new(engine.clone()).advance(chrono::Duration::hours(2)));
    let p = engine.instance(parent.id).unwrap();
    assert_eq!(p.status, Status::Completed);
    assert_eq!(p.vars["note"], json!("rejected"));
    assert_eq!(engine.instance(child.id).unwrap().status, Status::Cancelled);
    assert!(engine.tasks(&TaskQuery::default()).unwrap().is_empty());
    assert!(engine.store().jobs().unwrap().is_empty(), "no job left behind");
    assert_eq!(count(&engine, parent.id, "call_completed"), 0);
}

/// The parent is cancelled and the engine dies before the cascade runs: after the
/// restart the stored `call_cancel` job still cancels the child.
#[test]
fn a_crash_after_the_parent_cancel_still_cancels_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let (parent, child) = {
        let engine = engine_on(dir.path());
        deploy(&engine, CHILD);
        deploy(&engine, PARENT);
        let parent = start(&engine, "order", json!({ "total": 5 }), None);
        run(&engine);
        let child = child_of(&engine, parent.id);
        engine.cancel(parent.id, "admin", "stop").expect("cancel");
        assert_eq!(engine.instance(child.id).unwrap().status, Status::Running, "not yet: by a job");
        (parent.id, child.id)
    };
    let engine = engine_on(dir.path());
    run(&engine);
    assert_eq!(engine.instance(parent).unwrap().status, Status::Cancelled);
    assert_eq!(engine.instance(child).unwrap().status, Status::Cancelled);
    assert!(engine.tasks(&TaskQuery::default()).unwrap().is_empty());
}

/// An error thrown in another branch ends the fork around the call: the call's
/// child is cancelled with the branch.
#[test]
fn a_fork_ended_by_an_error_cancels_the_call_inside_it() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    let forked = r#"
id: forked
start: { next: fork }
nodes:
  fork:
    parallel: [approve, wait]
    boundary:
      - { error: late, next: failed }
  approve: { call: common-approval, in: { amount: 10 }, next: join }
  wait: { timer: 1h, next: throw }
  throw: { end: { error: late } }
  join: { join: fork, next: done }
  failed: { end: }
  done: { end: }
"#;
    deploy(&engine, forked);
    let parent = start(&engine, "forked", json!({}), None);
    run(&engine);
    let child = child_of(&engine, parent.id);
    rt().block_on(Executor::new(engine.clone()).advance(chrono::Duration::hours(2)));
    assert_eq!(engine.instance(parent.id).unwrap().status, Status::Completed);
    assert_eq!(engine.instance(child.id).unwrap().status, Status::Cancelled);
    assert!(engine.store().jobs().unwrap().is_empty(), "no job left behind");
}

/// `key:` gives the called instance its own business key instead of the caller's.
#[test]
fn a_call_with_key_gives_the_child_its_own_business_key() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    deploy(&engine, &PARENT.replace("    next: after\n", "    key: '\"APR-\" + total'\n    next: after\n"));
    let parent = start(&engine, "order", json!({ "total": 5 }), Some("ORD-9"));
    run(&engine);
    assert_eq!(child_of(&engine, parent.id).business_key.as_deref(), Some("APR-5"));
}

/// A call inside a sub-process reads and writes the sub-process's locals; an
/// error it throws is caught by the sub-process's boundary when the call has none.
#[test]
fn a_call_inside_a_sub_process_uses_its_locals_and_boundary() {
    let engine = mem_engine();
    deploy(&engine, CHILD);
    let grouped = r#"
id: grouped
variables:
  total: { type: number, required: true }
  outcome: { type: string }
start: { next: group }
nodes:
  group:
    sub_process:
      variables:
        doubled: { type: number }
        ok: { type: bool }
      in: { doubled: total * 2 }
      out: { outcome: '"ok=" + ok' }
      start: { next: approve }
      nodes:
        approve: { call: common-approval, in: { amount: doubled }, out: { ok: decision }, next: inner_done }
        inner_done: { end: }
    boundary:
      - { error: rejected, set: { outcome: '"caught " + error.code' }, next: done }
    next: done
  done: { end: }
"#;
    deploy(&engine, grouped);
    let small = start(&engine, "grouped", json!({ "total": 5 }), None);
    run(&engine);
    let child = child_of(&engine, small.id);
    assert_eq!(child.vars["amount"], json!(10), "`in:` read the local");
    approve(&engine, &child, true);
    run(&engine);
    let p = engine.instance(small.id).unwrap();
    assert_eq!(p.status, Status::Completed, "{p:#?}");
    assert_eq!(p.vars["outcome"], json!("ok=true"), "`out:` wrote the local, the group's out read it");

    let big = start(&engine, "grouped", json!({ "total": 1_000_000 }), None);
    run(&engine);
    let p = engine.instance(big.id).unwrap();
    assert_eq!(p.status, Status::Completed, "{p:#?}");
    assert_eq!(p.vars["outcome"], json!("caught rejected"));
}
