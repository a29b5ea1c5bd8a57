//! Issue 10 regression tests that need the engine's insides: a provoked panic in a
//! step (a test-only hook), and the due window against a store whose flush has not
//! finished yet.

use crate::clock::VirtualClock;
use crate::contain::provoke;
use crate::runtime::{Outcome, Status, TaskStatus, Wait};
use crate::store::{Kv, KvPair, KvStore, Op, StoreError};
use crate::{Engine, Executor, FnConnector, StartOptions, Vars};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};

const TASK: &str = r#"
id: approve
lanes:
  staff: { groups: [staff] }
variables:
  ok: { type: bool }
start: { next: review }
nodes:
  review:
    user_task: Review
    lane: staff
    form: { ok: required }
    next: done
  done: { end: }
"#;

const TIMER: &str = r#"
id: wait
start: { next: pause }
nodes:
  pause: { timer: 1h, next: done }
  done: { end: }
"#;

const SERVICE: &str = r#"
id: call
start: { next: 督促 }
nodes:
  督促: { service: test.call, next: done }
  done: { end: }
"#;

fn t0() -> DateTime<Utc> {
    "2026-12-01T00:00:00Z".parse().unwrap()
}

fn start(engine: &Engine, process: &str) -> crate::runtime::Instance {
    engine.start(process, Vars::new(), StartOptions::default()).unwrap()
}

#[test]
fn a_panic_in_a_step_becomes_an_incident_on_that_instance() {
    let engine = Engine::in_memory();
    engine.deploy("approve.yaml", TASK).unwrap();
    let inst = start(&engine, "approve");
    let task = engine.tasks(&Default::default()).unwrap().remove(0);

    provoke::panic_in_next_step();
    let data: Vars = [("ok".to_string(), json!(true))].into();
    let after = engine.complete(&task.id, "sato", data.clone(), Outcome::Next).expect("contained, not an error");

    assert_eq!(after.status, Status::Incident);
    assert_eq!(after.vars.get("ok"), None, "the completion was rolled back");
    let incident = &after.incidents[0];
    assert_eq!(incident.node, "review");
    assert!(incident.message.contains("provoked by a test"), "{}", incident.message);
    assert_eq!(engine.instance(inst.id).unwrap(), after, "stored as returned");
    assert_eq!(engine.task(&task.id).unwrap().status, TaskStatus::Cancelled, "its task is withdrawn");

    // Nothing is wedged: the same instance (and so its lock shard) goes on.
    let retried = engine.retry_incident(inst.id, incident.id, Vars::new(), "admin").unwrap();
    assert_eq!(retried.status, Status::Running);
    let task = engine.tasks(&Default::default()).unwrap().remove(0);
    let done = engine.complete(&task.id, "sato", data, Outcome::Next).unwrap();
    assert_eq!(done.status, Status::Completed);
}

#[test]
fn a_panic_while_retrying_an_incident_keeps_the_incident() {
    let engine = Engine::in_memory();
    engine.deploy("approve.yaml", TASK).unwrap();
    let inst = start(&engine, "approve");
    let task = engine.tasks(&Default::default()).unwrap().remove(0);
    provoke::panic_in_next_step();
    let data: Vars = [("ok".to_string(), json!(true))].into();
    let first = engine.complete(&task.id, "sato", data, Outcome::Next).unwrap().incidents[0].id;
    provoke::panic_in_next_step();
    let after = engine.retry_incident(inst.id, first, Vars::new(), "admin").unwrap();
    assert_eq!(after.status, Status::Incident);
    assert_eq!(after.incidents.len(), 1, "the failed retry replaced the incident");
    assert_ne!(after.incidents[0].id, first);
    assert!(matches!(after.tokens[0].wait, Wait::Incident { incident } if incident == after.incidents[0].id));
}

#[test]
fn a_panic_in_a_start_is_an_internal_error_and_starts_nothing() {
    let engine = Engine::in_memory();
    engine.deploy("approve.yaml", TASK).unwrap();
    crate::contain::provoke::panic_in_next_start();
    let err = engine.start("approve", Vars::new(), StartOptions::default()).unwrap_err();
    assert!(matches!(&err, crate::EngineError::Internal(m) if m.contains("provoked")), "{err}");
    assert!(engine.instances(&Default::default()).unwrap().is_empty());
    assert_eq!(start(&engine, "approve").status, Status::Running, "the next start works");
}

#[tokio::test]
async fn a_panic_when_a_timer_fires_becomes_an_incident_and_the_timer_is_not_fired_again() {
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = Engine::builder().in_memory().clock(clock).build().unwrap();
    engine.deploy("wait.yaml", TIMER).unwrap();
    let inst = start(&engine, "wait");
    let ex = Executor::new(engine.clone());
    provoke::panic_in_next_step();
    assert_eq!(ex.advance(Duration::hours(2)).await, 1);
    let after = engine.instance(inst.id).unwrap();
    assert_eq!(after.status, Status::Incident, "{after:#?}");
    assert!(engine.store().jobs().unwrap().is_empty(), "the timer job is consumed");
    assert_eq!(ex.advance(Duration::hours(2)).await, 0);
}

#[tokio::test]
async fn a_connector_that_panics_fails_its_job_and_the_executor_goes_on() {
    let engine = Engine::builder()
        .in_memory()
        .connector(
            "test.call",
            FnConnector(|c: &crate::Call| {
                if c.instance == 1 {
                    panic!("connector bug");
                }
                Ok(json!({}))
            }),
        )
        .build()
        .unwrap();
    engine.deploy("call.yaml", SERVICE).unwrap();
    let bad = start(&engine, "call");
    let good = start(&engine, "call");
    assert_eq!(Executor::new(engine.clone()).run_until_idle().await, 2);
    let bad = engine.instance(bad.id).unwrap();
    assert_eq!(bad.status, Status::Incident);
    assert!(bad.incidents[0].message.contains("connector bug"), "{}", bad.incidents[0].message);
    assert_eq!(engine.instance(good.id).unwrap().status, Status::Completed);
}

/// A connector whose future panics after its first poll, run by the executor loop.
#[tokio::test]
async fn a_connector_future_that_panics_is_contained_in_the_running_executor() {
    struct Late;
    impl crate::Connector for Late {
        fn call<'a>(
            &'a self,
            call: &'a crate::Call,
        ) -> crate::connector::BoxFuture<'a, Result<serde_json::Value, crate::ConnectorError>> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                if call.instance == 1 {
                    panic!("late connector bug");
                }
                Ok(json!({}))
            })
        }
    }
    let engine = Engine::builder().in_memory().connector("test.call", Late).build().unwrap();
    engine.deploy("call.yaml", SERVICE).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ex = Executor::new(engine.clone());
    let running = tokio::spawn(async move {
        ex.run(async {
            let _ = stopped.await;
        })
        .await
    });
    let bad = start(&engine, "call");
    let good = start(&engine, "call");
    for _ in 0..500 {
        let done = [bad.id, good.id].iter().all(|id| engine.instance(*id).unwrap().status != Status::Running);
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    running.await.expect("the executor loop did not panic");
    let bad = engine.instance(bad.id).unwrap();
    assert_eq!(bad.status, Status::Incident);
    assert!(bad.incidents[0].message.contains("late connector bug"), "{}", bad.incidents[0].message);
    assert_eq!(engine.instance(good.id).unwrap().status, Status::Completed);
}

// ---------------------------------------------------------------------------
// A disk whose flush can be held: writes are visible at once, durable at flush.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct DiskState {
    visible: BTreeMap<Vec<u8>, Vec<u8>>,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The next `apply` stops after making its writes visible, before flushing.
    hold_next: bool,
    held: bool,
    release: bool,
}

#[derive(Clone, Default)]
struct SlowDisk(Arc<(Mutex<DiskState>, Condvar)>);

impl SlowDisk {
    fn state(&self) -> std::sync::MutexGuard<'_, DiskState> {
        self.0 .0.lock().unwrap()
    }

    fn hold_next_flush(&self) {
        self.state().hold_next = true;
    }

    fn wait_until_held(&self) {
        let (m, cv) = &*self.0;
        let _g = cv.wait_while(m.lock().unwrap(), |s| !s.held).unwrap();
    }

    fn release(&self) {
        self.state().release = true;
        self.0 .1.notify_all();
    }

    fn is_durable(&self, key: &[u8]) -> bool {
        self.state().durable.contains_key(key)
    }

    /// The disk after a crash: only what was flushed.
    fn crashed(&self) -> SlowDisk {
        let durable = self.state().durable.clone();
        SlowDisk(Arc::new((
            Mutex::new(DiskState { visible: durable.clone(), durable, ..Default::default() }),
            Condvar::new(),
        )))
    }
}

impl Kv for SlowDisk {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state().visible.get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        self.scan_from(prefix, prefix, limit)
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        let s = self.state();
        let start = if from > prefix { from } else { prefix };
        Ok(s.visible
            .range(start.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<KvPair>, StoreError> {
        let s = self.state();
        Ok(s.visible
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .last()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let (m, cv) = &*self.0;
        let mut s = m.lock().unwrap();
        for (k, v) in ops {
            match v {
                Some(v) => s.visible.insert(k, v),
                None => s.visible.remove(&k),
            };
        }
        if std::mem::take(&mut s.hold_next) {
            s.held = true;
            cv.notify_all();
            s = cv.wait_while(s, |s| !s.release).unwrap();
        }
        s.durable = s.visible.clone();
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut s = self.state();
        s.durable = s.visible.clone();
        Ok(())
    }
}

fn engine_on(disk: &SlowDisk, clock: Arc<VirtualClock>, window: usize) -> Engine {
    let calls = FnConnector(|_: &crate::Call| Ok(json!({})));
    let store = KvStore::new(disk.clone()).unwrap();
    Engine::builder().store(store).clock(clock).queue_window(window).connector("test.call", calls).build().unwrap()
}

fn job_key(id: &str) -> Vec<u8> {
    [b"j/".as_slice(), id.as_bytes()].concat()
}

/// Issue 10, finding 12: a refill of the due window scanned the store and handed
/// out a job whose commit was applied but not flushed yet (group commit), so its
/// call could leave before a crash undid the commit.
#[test]
fn the_due_window_never_hands_out_a_job_whose_commit_is_not_durable() {
    let disk = SlowDisk::default();
    let clock = Arc::new(VirtualClock::new(t0()));
    // A window of two: three timers overflow it, so later jobs come by refills.
    let engine = engine_on(&disk, clock.clone(), 2);
    engine.deploy("wait.yaml", TIMER).unwrap();
    engine.deploy("call.yaml", SERVICE).unwrap();
    for _ in 0..3 {
        start(&engine, "wait");
    }
    clock.advance(Duration::hours(2));

    disk.hold_next_flush();
    let e2 = engine.clone();
    let starting = std::thread::spawn(move || start(&e2, "call"));
    disk.wait_until_held();

    let due = engine.take_due(engine.now(), 10);
    let not_durable: Vec<&String> = due.iter().filter(|id| !disk.is_durable(&job_key(id))).collect();
    disk.release();
    let inst = starting.join().unwrap();
    assert_eq!(due.len(), 4, "three timers and the call: {due:?}");
    assert!(not_durable.is_empty(), "handed out before their commit was durable: {not_durable:?}");
    assert_eq!(inst.status, Status::Running);
}

/// Issue 10, finding 12: a crash that loses an unflushed start hands its instance
/// id out again; the new instance's calls must not share the lost one's keys.
#[test]
fn idempotency_keys_differ_when_a_lost_start_reuses_an_instance_id() {
    let disk = SlowDisk::default();
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = engine_on(&disk, clock.clone(), 100);
    engine.deploy("call.yaml", SERVICE).unwrap();

    disk.hold_next_flush();
    let e2 = engine.clone();
    let lost = std::thread::spawn(move || start(&e2, "call"));
    disk.wait_until_held();
    let lost_job = engine.store().jobs().unwrap().remove(0);
    let crashed = disk.crashed();
    disk.release();
    let lost_inst = lost.join().unwrap();
    drop(engine);

    let engine = engine_on(&crashed, clock, 100);
    let again = start(&engine, "call");
    assert_eq!(again.id, lost_inst.id, "the lost start's id is handed out again");
    let job = engine.store().jobs().unwrap().remove(0);
    assert_eq!(job.id, lost_job.id);
    let key = |j: &crate::runtime::Job| match &j.kind {
        crate::runtime::JobKind::Connector { idempotency_key, .. } => idempotency_key.clone(),
        other => panic!("not a call: {other:?}"),
    };
    assert_ne!(key(&job), key(&lost_job), "a key is never used for two calls");
    let (incarnation, rest) = key(&job).split_once('/').map(|(a, b)| (a.to_string(), b.to_string())).unwrap();
    assert_eq!(incarnation, engine.store().incarnation());
    assert_eq!(rest, format!("{}/督促/2", again.id), "<incarnation>/<instance>/<node>/<seq>");
}

const DAILY: &str = r#"
id: daily
start:
  timer: { cron: "0 9 * * *" }
  next: done
nodes:
  done: { end: }
"#;

/// Start `id` as the executor does, `n` times, as if the process died each time.
fn begin_runs(engine: &Engine, id: &str, n: u32) {
    for i in 1..=n {
        let job = engine.begin_run(id).unwrap().unwrap_or_else(|| panic!("start {i} of {id} runs"));
        assert_eq!(job.id, id);
    }
}

#[test]
fn a_timer_that_stopped_the_engine_five_times_becomes_an_incident() {
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = Engine::builder().in_memory().clock(clock.clone()).build().unwrap();
    engine.deploy("wait.yaml", TIMER).unwrap();
    let inst = start(&engine, "wait");
    let job = engine.store().jobs().unwrap().remove(0);
    begin_runs(&engine, &job.id, crate::engine::MAX_JOB_STARTS);
    assert!(engine.begin_run(&job.id).unwrap().is_none(), "the sixth start does not run");
    let after = engine.instance(inst.id).unwrap();
    assert_eq!(after.status, Status::Incident);
    assert!(after.incidents[0].message.contains("started 5 times"), "{}", after.incidents[0].message);
    assert!(engine.store().jobs().unwrap().is_empty());
}

#[test]
fn an_outcome_starts_the_count_again() {
    let engine = Engine::builder()
        .in_memory()
        .connector("test.call", FnConnector(|_: &crate::Call| Ok(json!({}))))
        .build()
        .unwrap();
    engine.deploy("call.yaml", SERVICE).unwrap();
    start(&engine, "call");
    let job = engine.store().jobs().unwrap().remove(0);
    begin_runs(&engine, &job.id, crate::engine::MAX_JOB_STARTS);
    // A retryable failure is an outcome: the next attempt is counted from zero.
    let failure = crate::runtime::Failure::Retryable { message: "503".into(), retry_after_ms: None };
    engine.finish_job(&job, Err(failure)).unwrap();
    begin_runs(&engine, &job.id, crate::engine::MAX_JOB_STARTS);
}

#[test]
fn a_scheduled_start_that_stopped_the_engine_five_times_skips_to_its_next_time() {
    let clock = Arc::new(VirtualClock::new("2026-12-01T08:59:00+09:00".parse().unwrap()));
    let engine = Engine::builder().in_memory().clock(clock.clone()).build().unwrap();
    engine.deploy("daily.yaml", DAILY).unwrap();
    clock.advance(Duration::minutes(2));
    begin_runs(&engine, "start:daily", crate::engine::MAX_JOB_STARTS);
    assert!(engine.begin_run("start:daily").unwrap().is_none());
    assert!(engine.instances(&Default::default()).unwrap().is_empty(), "this slot is skipped");
    let next = engine.store().job("start:daily").unwrap().expect("still scheduled");
    assert_eq!(next.due, "2026-12-02T09:00:00+09:00".parse::<DateTime<Utc>>().unwrap());
    // Counted from zero at the new time.
    begin_runs(&engine, "start:daily", crate::engine::MAX_JOB_STARTS);
}

/// A disk that refuses to flush for a while is not a job that keeps stopping the
/// engine: starts whose count could not be made durable do not count.
#[test]
fn failed_start_counts_do_not_add_up_to_a_false_crash_loop() {
    use crate::sim::disk::{Disk, FaultRates};
    let disk = Disk::new(crate::sim::rng::Rng::new(7));
    let store = crate::store::KvStore::new(disk.open()).unwrap();
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = Engine::builder().store(store).clock(clock).build().unwrap();
    engine.deploy("wait.yaml", TIMER).unwrap();
    let inst = start(&engine, "wait");
    let job = engine.store().jobs().unwrap().remove(0);
    disk.set_faults(FaultRates { apply_fails: 0, flush_fails: 1000 });
    for _ in 0..=crate::engine::MAX_JOB_STARTS {
        assert!(engine.begin_run(&job.id).is_err(), "the disk is full");
    }
    disk.set_faults(FaultRates::default());
    let run = engine.begin_run(&job.id).unwrap();
    assert_eq!(run.map(|j| j.id), Some(job.id.clone()), "the job runs: it never started before");
    assert_eq!(engine.instance(inst.id).unwrap().status, Status::Running);
}
