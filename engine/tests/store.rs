//! Store behaviour through the engine: durability across reopen, versioned
//! deploys, business keys, group commit under concurrency, format version.

use nagare_engine::runtime::{Outcome, Status};
use nagare_engine::store::{Durability, Kv, KvStore, MemKv, SledKv, StoreError};
use nagare_engine::{Engine, Executor, FnConnector, StartOptions, Vars};
use serde_json::json;

mod common;
use common::TestStore;

const V1: &str = r#"
id: approve
lanes: { boss: { groups: [bosses] } }
variables:
  ok: { type: bool }
  note: { type: string }
start: { next: decide }
nodes:
  decide:
    user_task: Decide
    lane: boss
    form: { ok: required }
    next: done
  done: { end: }
"#;

fn open_task(engine: &Engine, id: u64) -> String {
    engine.instance(id).unwrap().open_task_ids().next().expect("an open task").to_string()
}

#[test]
fn state_survives_reopen_and_versions_are_kept() {
    for store in TestStore::all("state_survives_reopen_and_versions_are_kept") {
        state_survives_reopen_on(&store);
    }
}

fn state_survives_reopen_on(store: &TestStore) {
    let id = {
        let engine = store.engine();
        assert!(engine.deploy("approve.yaml", V1).unwrap().created);
        // Same text again: no new version.
        let again = engine.deploy("approve.yaml", V1).unwrap();
        assert!(!again.created);
        assert_eq!(again.version, 1);
        engine.start("approve", Vars::new(), StartOptions::default()).unwrap().id
    };
    let engine = store.engine();
    // A changed file is version 2; the running instance stays on version 1.
    let v2 = V1.replace("Decide", "Decide (v2)");
    assert_eq!(engine.deploy("approve.yaml", &v2).unwrap().version, 2);
    let inst = engine.instance(id).unwrap();
    assert_eq!(inst.version, 1);
    let task = open_task(&engine, id);
    assert_eq!(engine.task(&task).unwrap().title, "Decide");
    let done = engine.complete(&task, "boss1", [("ok".to_string(), json!(true))].into(), Outcome::Next).unwrap();
    assert_eq!(done.status, Status::Completed);
    let newer = engine.start("approve", Vars::new(), StartOptions::default()).unwrap();
    assert_eq!(newer.version, 2);
    assert!(newer.id > id, "instance ids keep growing across restarts");
}

#[test]
fn business_key_starts_once() {
    for store in TestStore::all("business_key_starts_once") {
        let engine = store.engine();
        engine.deploy("approve.yaml", V1).unwrap();
        let opts = StartOptions { business_key: Some("record-42".into()), ..Default::default() };
        let a = engine.start("approve", Vars::new(), opts.clone()).unwrap();
        let b = engine.start("approve", Vars::new(), opts).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(engine.instances(&Default::default()).unwrap().len(), 1);
        assert_eq!(engine.store().instance_by_key("approve", "record-42").unwrap(), Some(a.id));
        assert_eq!(engine.store().instance_by_key("approve", "record-43").unwrap(), None);
    }
}

#[test]
fn concurrent_commits_are_all_durable() {
    for store in TestStore::all("concurrent_commits_are_all_durable") {
        concurrent_commits_on(&store);
    }
}

fn concurrent_commits_on(store: &TestStore) {
    {
        let engine = store.builder_with(Durability::Flush).build().unwrap();
        engine.deploy("approve.yaml", V1).unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let engine = engine.clone();
                s.spawn(move || {
                    for _ in 0..25 {
                        let i = engine.start("approve", Vars::new(), StartOptions::default()).unwrap();
                        let t = open_task(&engine, i.id);
                        engine.complete(&t, "boss", [("ok".to_string(), json!(false))].into(), Outcome::Next).unwrap();
                    }
                });
            }
        });
    }
    let engine = store.engine();
    let all = engine.instances(&Default::default()).unwrap();
    assert_eq!(all.len(), 200);
    assert!(all.iter().all(|i| i.status == Status::Completed));
}

#[test]
fn two_completes_of_one_task_one_wins() {
    for store in TestStore::all("two_completes_of_one_task_one_wins") {
        two_completes_on(&store.engine());
    }
}

fn two_completes_on(engine: &Engine) {
    engine.deploy("approve.yaml", V1).unwrap();
    let i = engine.start("approve", Vars::new(), StartOptions::default()).unwrap();
    let t = open_task(engine, i.id);
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|n| {
                let (engine, t) = (engine.clone(), t.clone());
                s.spawn(move || {
                    engine.complete(&t, &format!("u{n}"), [("ok".to_string(), json!(true))].into(), Outcome::Next)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, nagare_engine::EngineError::Conflict(_))));
    let completions = engine.history(i.id).unwrap().iter().filter(|h| h.event.name() == "task_completed").count();
    assert_eq!(completions, 1);
}

#[test]
fn unknown_store_format_is_refused() {
    let kv = MemKv::default();
    kv.apply(vec![(b"m/format".to_vec(), Some(b"99".to_vec()))]).unwrap();
    let err = KvStore::new(kv).err().expect("must refuse");
    assert!(matches!(err, StoreError::UnknownFormat { .. }));
    assert!(err.to_string().contains("format version 99"), "{err}");
}

#[test]
fn second_process_on_same_dir_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledKv::open(dir.path(), Durability::Flush).unwrap();
    let second = SledKv::open(dir.path(), Durability::Flush);
    // sled locks the directory per process; within one process it may share. Either
    // way, opening must not corrupt or panic.
    if let Err(e) = second {
        assert!(e.to_string().contains(&dir.path().display().to_string()), "{e}");
    }
}

#[test]
fn undeclared_and_mistyped_start_variables_are_refused() {
    for store in TestStore::all("undeclared_and_mistyped_start_variables_are_refused") {
        mistyped_start_on(&store.engine());
    }
}

fn mistyped_start_on(engine: &Engine) {
    engine.deploy("approve.yaml", V1).unwrap();
    let vars: Vars = [("ok".to_string(), json!("yes")), ("nope".to_string(), json!(1))].into();
    let err = engine.start("approve", vars, StartOptions::default()).unwrap_err().to_string();
    assert!(err.contains("ok: expected true or false"), "{err}");
    assert!(err.contains("nope: not a declared variable"), "{err}");
    let long: Vars = [("note".to_string(), json!("x".repeat(5000)))].into();
    let err = engine.start("approve", long, StartOptions::default()).unwrap_err().to_string();
    assert!(err.contains("too long"), "{err}");
}

/// Two engines on one PostgreSQL database (two nodes): racing completes of one task
/// have one winner, the others are refused as on one node (409), never a store
/// error; racing starts with one business key make one instance.
#[test]
fn two_nodes_on_one_database_complete_a_task_once_and_start_a_key_once() {
    for store in TestStore::all("two_nodes_on_one_database").into_iter().filter(|s| s.shared()) {
        let nodes = [store.engine(), store.engine()];
        nodes[0].deploy("approve.yaml", V1).unwrap();
        nodes[1].deploy("approve.yaml", V1).unwrap();
        for round in 0..10 {
            let i = nodes[round % 2].start("approve", Vars::new(), StartOptions::default()).unwrap();
            let t = open_task(&nodes[0], i.id);
            let results: Vec<_> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|n| {
                        let (engine, t) = (nodes[n % 2].clone(), t.clone());
                        s.spawn(move || {
                            engine.complete(
                                &t,
                                &format!("u{n}"),
                                [("ok".to_string(), json!(true))].into(),
                                Outcome::Next,
                            )
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
            for e in results.iter().filter_map(|r| r.as_ref().err()) {
                assert!(matches!(e, nagare_engine::EngineError::Conflict(_)), "{e}");
            }
            let completions =
                nodes[1].history(i.id).unwrap().iter().filter(|h| h.event.name() == "task_completed").count();
            assert_eq!(completions, 1);
        }
        let key = StartOptions { business_key: Some("record-7".into()), ..Default::default() };
        let ids: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|n| {
                    let (engine, key) = (nodes[n % 2].clone(), key.clone());
                    s.spawn(move || engine.start("approve", Vars::new(), key).unwrap().id)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "one instance for the key: {ids:?}");
        let keyed = nodes[0].instances(&Default::default()).unwrap();
        assert_eq!(keyed.iter().filter(|i| i.business_key.as_deref() == Some("record-7")).count(), 1);
    }
}

const CALL: &str = r#"
id: call
start: { next: call }
nodes:
  call: { service: test.count, next: done }
  done: { end: }
"#;

/// A job pending when two nodes open the database is in both nodes' queues: it
/// runs on the node that leases it first, the other leaves it (it is gone after).
#[test]
fn two_nodes_run_a_pending_job_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    for store in TestStore::all("two_nodes_run_a_pending_job_once").into_iter().filter(|s| s.shared()) {
        let calls = Arc::new(AtomicUsize::new(0));
        let node = || {
            let calls = calls.clone();
            let count = FnConnector(move |_: &nagare_engine::Call| {
                calls.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                Ok(json!({}))
            });
            store.builder().connector("test.count", count).build().unwrap()
        };
        let first = node();
        first.deploy("call.yaml", CALL).unwrap();
        let ids: Vec<u64> =
            (0..10).map(|_| first.start("call", Vars::new(), StartOptions::default()).unwrap().id).collect();
        let second = node();
        assert_eq!(second.store().jobs().unwrap().len(), 10, "both nodes load the pending jobs");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let (a, b) = (Executor::new(first.clone()), Executor::new(second.clone()));
            tokio::join!(a.run_until_idle(), b.run_until_idle());
        });
        assert_eq!(calls.load(Ordering::SeqCst), 10, "each job called once");
        for id in ids {
            assert_eq!(first.instance(id).unwrap().status, Status::Completed);
        }
    }
}

/// Jobs scheduled by a node that then stops (dies) are run by another node that
/// never saw them scheduled: it looks for other nodes' jobs every few seconds.
#[test]
fn a_job_scheduled_by_a_node_that_stops_is_run_by_another() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    for store in TestStore::all("a_job_scheduled_by_a_node_that_stops").into_iter().filter(|s| s.shared()) {
        let calls = Arc::new(AtomicUsize::new(0));
        let node = || {
            let calls = calls.clone();
            let count = FnConnector(move |_: &nagare_engine::Call| {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(json!({}))
            });
            store.builder().connector("test.count", count).build().unwrap()
        };
        let survivor = node();
        survivor.deploy("call.yaml", CALL).unwrap();
        let ids: Vec<u64> = {
            let stopping = node();
            (0..5).map(|_| stopping.start("call", Vars::new(), StartOptions::default()).unwrap().id).collect()
        };
        let exec = Executor::new(survivor.clone());
        assert_eq!(exec.queued(), 0, "the survivor was not told of them");
        let all_done = || ids.iter().all(|id| survivor.instance(*id).unwrap().status == Status::Completed);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(exec.run(async {
            for _ in 0..200 {
                if all_done() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }));
        let done = all_done();
        assert!(done, "the survivor ran the stopped node's jobs");
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }
}

const EXTERNAL: &str = r#"
id: ext
start: { next: render }
nodes:
  render: { service: pdf.render, next: done }
  done: { end: }
"#;

/// The rescan of a shared store offers due jobs again: an external worker's lease
/// on one survives it, and its result is taken.
#[test]
fn a_worker_lease_survives_the_rescan_of_a_shared_store() {
    for store in TestStore::all("a_worker_lease_survives_the_rescan").into_iter().filter(|s| s.shared()) {
        let engine = store.builder().external("pdf.render").build().unwrap();
        engine.deploy("ext.yaml", EXTERNAL).unwrap();
        let id = engine.start("ext", Vars::new(), StartOptions::default()).unwrap().id;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let exec = Executor::new(engine.clone());
        let lease = std::time::Duration::from_secs(60);
        rt.block_on(exec.run(async {
            // Let the executor offer it, lease it, then outlive a rescan or two.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let jobs = engine.activate_jobs("pdf.render", "w1", 1, lease).unwrap();
            assert_eq!(jobs.len(), 1);
            tokio::time::sleep(nagare_engine::executor::RESCAN_SHARED * 2).await;
            engine.complete_job(&jobs[0].id, "w1", json!({})).unwrap();
        }));
        assert_eq!(engine.instance(id).unwrap().status, Status::Completed);
    }
}

/// With a shared store a worker's lease is in the database: a job leased through
/// one node is not handed out by another, and its worker may report to any node.
#[test]
fn a_worker_lease_taken_on_one_node_holds_on_the_other() {
    for store in TestStore::all("a_worker_lease_taken_on_one_node").into_iter().filter(|s| s.shared()) {
        let a = store.builder().external("pdf.render").build().unwrap();
        a.deploy("ext.yaml", EXTERNAL).unwrap();
        let id = a.start("ext", Vars::new(), StartOptions::default()).unwrap().id;
        let b = store.builder().external("pdf.render").build().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (ea, eb) = (Executor::new(a.clone()), Executor::new(b.clone()));
        let lease = std::time::Duration::from_secs(60);
        rt.block_on(async {
            let (done, stop) = tokio::sync::oneshot::channel::<()>();
            let both = async {
                // Both nodes offer the job to their workers' pools.
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                assert_eq!((a.worker_pool_len(), b.worker_pool_len()), (1, 1));
                let got = a.activate_jobs("pdf.render", "w1", 1, lease).unwrap();
                assert_eq!(got.len(), 1);
                assert!(b.activate_jobs("pdf.render", "w2", 1, lease).unwrap().is_empty(), "leased through a");
                let err = b.complete_job(&got[0].id, "w2", json!({})).unwrap_err();
                assert!(err.to_string().contains("worker `w1` holds it"), "{err}");
                b.complete_job(&got[0].id, "w1", json!({})).unwrap();
                let _ = done.send(());
            };
            tokio::join!(
                ea.run(both),
                eb.run(async {
                    let _ = stop.await;
                })
            );
        });
        assert_eq!(a.instance(id).unwrap().status, Status::Completed);
    }
}
