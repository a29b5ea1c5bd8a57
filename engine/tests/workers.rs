//! External workers: leases, expiry, stale results and retries, on a virtual clock.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::runtime::{Failure, Status};
use nagare_engine::{Engine, Executor, JobError, Registry, VirtualClock};
use serde_json::json;
use std::sync::Arc;

mod common;
use common::TestStore;

const YAML: &str = r#"
id: pdf
variables:
  name: { type: text }
  url: { type: text }
start: { next: render }
nodes:
  render:
    service: pdf.render
    with: { title: name }
    set: { url: result.url }
    retry: { attempts: 3, backoff: 10s..10s }
    next: done
  done: { end: }
"#;

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

struct Fixture {
    engine: Engine,
    clock: Arc<VirtualClock>,
    exec: Executor,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(store: &TestStore) -> Self {
        let t0: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().unwrap();
        let clock = Arc::new(VirtualClock::new(t0));
        let engine = store.builder().clock(clock.clone()).external("pdf.render").build().unwrap();
        engine.deploy("pdf.yaml", YAML).unwrap();
        let exec = Executor::new(engine.clone());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Fixture { engine, clock, exec, rt }
    }

    fn start(&self) -> u64 {
        let vars = [("name".to_string(), json!("見積書"))].into_iter().collect();
        self.engine.start("pdf", vars, Default::default()).unwrap().id
    }

    /// Let the executor route due jobs (it must not run or drop external ones).
    fn settle(&self) -> usize {
        self.rt.block_on(self.exec.run_until_idle())
    }

    fn advance(&self, by: Duration) {
        self.rt.block_on(self.exec.advance(by));
    }
}

#[test]
fn activate_complete_and_the_instance_moves_on() {
    for store in TestStore::all("activate_complete_and_the_instance_moves_on") {
        activate_complete_and_the_instance_moves_on_on(&store);
    }
}

fn activate_complete_and_the_instance_moves_on_on(store: &TestStore) {
    let f = Fixture::new(store);
    let id = f.start();
    assert_eq!(f.settle(), 0, "the executor runs no external job");
    assert_eq!(f.engine.worker_pool_len(), 1);
    let jobs = f.engine.activate_jobs("pdf.render", "w1", 10, LEASE).unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!((job.instance, job.node.as_str(), job.attempt), (id, "render", 1));
    assert_eq!(job.input, json!({ "title": "見積書" }));
    assert_eq!(job.lease_until, f.engine.now() + Duration::seconds(30));
    assert!(!job.idempotency_key.is_empty());
    // Leased: nobody else gets it.
    assert!(f.engine.activate_jobs("pdf.render", "w2", 10, LEASE).unwrap().is_empty());

    // Another worker cannot report it; the holder can, once.
    let e = f.engine.complete_job(&job.id, "w2", json!({ "url": "x" })).unwrap_err();
    assert!(matches!(&e, JobError::NotLeased { holder: Some(h), .. } if h == "w1"), "{e}");
    let inst = f.engine.complete_job(&job.id, "w1", json!({ "url": "https://files/1.pdf" })).unwrap();
    assert_eq!(inst.status, Status::Completed);
    assert_eq!(inst.vars["url"], json!("https://files/1.pdf"));
    let again = f.engine.complete_job(&job.id, "w1", json!({ "url": "y" })).unwrap_err();
    assert!(matches!(again, JobError::Stale(_)), "{again}");
    assert_eq!(f.engine.worker_pool_len(), 0);
}

#[test]
fn an_expired_lease_goes_to_another_worker_and_the_first_is_refused() {
    for store in TestStore::all("an_expired_lease_goes_to_another_worker_and_the_first_is_refused") {
        an_expired_lease_goes_to_another_worker_and_the_first_is_refused_on(&store);
    }
}

fn an_expired_lease_goes_to_another_worker_and_the_first_is_refused_on(store: &TestStore) {
    let f = Fixture::new(store);
    f.start();
    f.settle();
    let first = f.engine.activate_jobs("pdf.render", "w1", 1, LEASE).unwrap().remove(0);
    f.clock.advance(Duration::seconds(29));
    assert!(f.engine.activate_jobs("pdf.render", "w2", 1, LEASE).unwrap().is_empty(), "lease still held");
    f.clock.advance(Duration::seconds(1));
    let second = f.engine.activate_jobs("pdf.render", "w2", 1, LEASE).unwrap().remove(0);
    assert_eq!((second.id.as_str(), second.attempt), (first.id.as_str(), first.attempt));
    assert_eq!(second.idempotency_key, first.idempotency_key, "a repeat is recognisable by the service");
    let stale = f.engine.complete_job(&first.id, "w1", json!({ "url": "late" })).unwrap_err();
    assert!(matches!(&stale, JobError::NotLeased { holder: Some(h), .. } if h == "w2"), "{stale}");
    let inst = f.engine.complete_job(&second.id, "w2", json!({ "url": "ok" })).unwrap();
    assert_eq!((inst.status, &inst.vars["url"]), (Status::Completed, &json!("ok")));
}

#[test]
fn an_expired_lease_not_taken_again_still_counts() {
    for store in TestStore::all("an_expired_lease_not_taken_again_still_counts") {
        an_expired_lease_not_taken_again_still_counts_on(&store);
    }
}

fn an_expired_lease_not_taken_again_still_counts_on(store: &TestStore) {
    let f = Fixture::new(store);
    f.start();
    f.settle();
    let job = f.engine.activate_jobs("pdf.render", "w1", 1, LEASE).unwrap().remove(0);
    f.clock.advance(Duration::minutes(5));
    let inst = f.engine.complete_job(&job.id, "w1", json!({ "url": "slow" })).unwrap();
    assert_eq!(inst.status, Status::Completed);
}

#[test]
fn a_retryable_failure_is_retried_after_the_backoff_and_activated_again() {
    for store in TestStore::all("a_retryable_failure_is_retried_after_the_backoff_and_activated_again") {
        a_retryable_failure_is_retried_after_the_backoff_and_activated_again_on(&store);
    }
}

fn a_retryable_failure_is_retried_after_the_backoff_and_activated_again_on(store: &TestStore) {
    let f = Fixture::new(store);
    let id = f.start();
    f.settle();
    let job = f.engine.activate_jobs("pdf.render", "w1", 1, LEASE).unwrap().remove(0);
    let failure = Failure::Retryable { message: "printer jam".into(), retry_after_ms: None };
    let inst = f.engine.fail_job(&job.id, "w1", failure).unwrap();
    assert_eq!(inst.status, Status::Running);
    f.settle();
    assert!(f.engine.activate_jobs("pdf.render", "w1", 1, LEASE).unwrap().is_empty(), "not due before the backoff");
    f.advance(Duration::seconds(10));
    let retry = f.engine.activate_jobs("pdf.render", "w2", 1, LEASE).unwrap().remove(0);
    assert_eq!((retry.id.as_str(), retry.attempt), (job.id.as_str(), 2));
    // The first attempt's lease is void now.
    assert!(matches!(f.engine.complete_job(&job.id, "w1", json!({})), Err(JobError::NotLeased { .. })));
    f.engine.complete_job(&retry.id, "w2", json!({ "url": "u" })).unwrap();
    assert_eq!(f.engine.instance(id).unwrap().status, Status::Completed);
}

#[test]
fn a_fatal_failure_raises_an_incident() {
    for store in TestStore::all("a_fatal_failure_raises_an_incident") {
        a_fatal_failure_raises_an_incident_on(&store);
    }
}

fn a_fatal_failure_raises_an_incident_on(store: &TestStore) {
    let f = Fixture::new(store);
    let id = f.start();
    f.settle();
    let job = f.engine.activate_jobs("pdf.render", "w1", 1, LEASE).unwrap().remove(0);
    let inst = f.engine.fail_job(&job.id, "w1", Failure::Fatal { message: "bad template".into() }).unwrap();
    assert_eq!(inst.status, Status::Incident);
    assert!(inst.incidents[0].message.contains("bad template"), "{:?}", inst.incidents);
    assert_eq!(f.engine.instance(id).unwrap().status, Status::Incident);
    assert_eq!(f.engine.worker_pool_len(), 0);
}

#[test]
fn cancelled_instances_drop_their_jobs_from_the_pool() {
    for store in TestStore::all("cancelled_instances_drop_their_jobs_from_the_pool") {
        cancelled_instances_drop_their_jobs_from_the_pool_on(&store);
    }
}

fn cancelled_instances_drop_their_jobs_from_the_pool_on(store: &TestStore) {
    let f = Fixture::new(store);
    let id = f.start();
    f.settle();
    let job = f.engine.activate_jobs("pdf.render", "w1", 1, LEASE).unwrap().remove(0);
    f.engine.cancel(id, "admin", "not needed").unwrap();
    assert!(matches!(f.engine.complete_job(&job.id, "w1", json!({})), Err(JobError::Stale(_))));
    f.clock.advance(Duration::minutes(1));
    assert!(f.engine.activate_jobs("pdf.render", "w1", 1, LEASE).unwrap().is_empty());
}

#[test]
fn only_external_connectors_can_be_activated_and_validation_accepts_them() {
    for store in TestStore::all("only_external_connectors_can_be_activated_and_validation_accepts_them") {
        only_external_connectors_can_be_activated_and_validation_accepts_them_on(&store);
    }
}

fn only_external_connectors_can_be_activated_and_validation_accepts_them_on(store: &TestStore) {
    let f = Fixture::new(store);
    assert!(matches!(f.engine.activate_jobs("echo", "w1", 1, LEASE), Err(JobError::NotExternal(_))));
    let plain = Engine::builder().in_memory().build().unwrap();
    assert!(plain.deploy("pdf.yaml", YAML).is_err(), "unknown connector without the declaration");
    let mut reg = Registry::default();
    reg.register_external("pdf.render");
    let via_registry = Engine::builder().in_memory().connectors(reg).build().unwrap();
    via_registry.deploy("pdf.yaml", YAML).unwrap();
}

/// With one process (sled, memory) leases live in memory: a restart frees them. A
/// shared store (PostgreSQL) keeps them.
#[test]
fn a_restart_makes_leased_jobs_available_again() {
    for store in TestStore::all("a_restart_makes_leased_jobs_available_again") {
        a_restart_makes_leased_jobs_available_again_on(&store);
    }
}

fn a_restart_makes_leased_jobs_available_again_on(store: &TestStore) {
    let t0: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let open = || {
        let clock = Arc::new(VirtualClock::new(t0));
        store.builder().clock(clock).external("pdf.render").build().unwrap()
    };
    let first_id = {
        let engine = open();
        engine.deploy("pdf.yaml", YAML).unwrap();
        engine.start("pdf", Default::default(), Default::default()).unwrap();
        rt.block_on(Executor::new(engine.clone()).run_until_idle());
        engine.activate_jobs("pdf.render", "w1", 1, LEASE).unwrap().remove(0).id
    };
    let engine = open();
    rt.block_on(Executor::new(engine.clone()).run_until_idle());
    if store.shared() {
        // A shared store keeps worker leases in the database: the lease outlives
        // the restart (as it outlives any one node), and its worker reports.
        assert!(engine.activate_jobs("pdf.render", "w2", 1, LEASE).unwrap().is_empty(), "still w1's");
        engine.complete_job(&first_id, "w1", json!({ "url": "u" })).unwrap();
        return;
    }
    assert!(
        matches!(engine.complete_job(&first_id, "w1", json!({})), Err(JobError::NotLeased { holder: None, .. })),
        "leases are not kept across a restart"
    );
    let again = engine.activate_jobs("pdf.render", "w2", 1, LEASE).unwrap().remove(0);
    assert_eq!(again.id, first_id);
    engine.complete_job(&again.id, "w2", json!({ "url": "u" })).unwrap();
}
