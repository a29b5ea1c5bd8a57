//! Crash test: kill the engine process with SIGKILL at random moments while it runs
//! 1,000 instances, restart it, and prove that every instance completes with no
//! step run twice.
//!
//! The test binary re-executes itself as the engine process (`crash_child`, which
//! does nothing unless `NAGARE_CRASH_CHILD_DIR` is set), so no extra binary is
//! needed. The child registers a connector `effect` that stands for an external
//! service honouring idempotency keys: it appends every call to `calls.log` (key, pid, attempt) and
//! every *new* key to `effects.log`. The engine promises at-least-once calls with a
//! stable key, so `calls.log` may hold re-runs, but `effects.log` must hold each
//! expected key exactly once, and the history must show each step exactly once.
//!
//! Set `NAGARE_CRASH_SEED` to replay a particular sequence of kill delays.
#![cfg(unix)]

mod common;

use common::child::{self, Rng};
use nagare_engine::runtime::{HistoryEvent, Status};
use nagare_engine::store::InstanceFilter;
use nagare_engine::{Call, Engine, Executor, FnConnector, StartOptions, Vars};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "NAGARE_CRASH_CHILD_DIR";
const INSTANCES: u64 = 1000;
const PROCESS: &str = "crash";
/// Service steps per instance: `first` and `right`.
const SERVICE_STEPS: u64 = 2;

const YAML: &str = r#"
id: crash
variables:
  n: { type: number, required: true }
  a: { type: number }
  b: { type: string }
  c: { type: number }
  d: { type: string }
start: { next: prep }
nodes:
  prep:
    script: 'a = n * 2;'
    next: first
  first:
    service: effect
    with: { n: n, step: 1 }
    set: { b: result.key }
    next: fork
  fork:
    parallel: [left, right]
  left:
    script: 'c = a + 1;'
    next: join
  right:
    service: effect
    with: { n: n, a: a }
    set: { d: result.key }
    next: join
  join: { join: fork, next: finish }
  finish:
    script: 'c = c + 1;'
    next: done
  done: { end: }
"#;

// ---------------------------------------------------------------------------
// The child: an engine process that runs until all instances are complete.
// ---------------------------------------------------------------------------

#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    child_main(Path::new(&dir));
}

/// The side-effect log of a service that dedups by idempotency key.
struct Receiver {
    effects: File,
    seen: HashSet<String>,
    calls: File,
}

fn open_append(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => s.lines().map(str::to_string).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn child_main(dir: &Path) {
    let receiver = Arc::new(Mutex::new(Receiver {
        effects: open_append(&dir.join("effects.log")),
        seen: read_lines(&dir.join("effects.log")).into_iter().collect(),
        calls: open_append(&dir.join("calls.log")),
    }));
    let effect = FnConnector(move |c: &Call| {
        let mut r = receiver.lock().expect("receiver lock");
        // One write call per line, so a kill leaves whole lines only.
        let line = format!("{}\n", c.idempotency_key);
        let call = format!("{} {} {}\n", c.idempotency_key, std::process::id(), c.attempt);
        r.calls.write_all(call.as_bytes()).expect("write calls.log");
        if r.seen.insert(c.idempotency_key.clone()) {
            r.effects.write_all(line.as_bytes()).expect("write effects.log");
        }
        Ok(json!({ "key": c.idempotency_key }))
    });
    let engine = Engine::builder()
        .data_dir(dir.join("data"))
        .expect("open data dir")
        .connector("effect", effect)
        // Up to 20 kills land at random moments, often while the same recovered
        // jobs are running again; with the default of 5 unfinished starts such a
        // job would (rightly) become a crash-loop incident, which is not what this
        // test checks. The guard itself is tested in `reliability_tests`.
        .max_job_starts(1000)
        .build()
        .expect("build engine");
    engine.deploy("crash.yaml", YAML).expect("deploy");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let exec = Executor::new(engine.clone());
        eprintln!("child: engine open, {} jobs pending", engine.store().jobs().expect("jobs").len());
        let executor = tokio::spawn(async move {
            exec.run(async {
                let _ = stop_rx.await;
            })
            .await
        });

        // Start every instance; a restarted child skips those that exist already.
        const STARTERS: u64 = 8;
        let mut starters = Vec::new();
        for k in 0..STARTERS {
            let engine = engine.clone();
            starters.push(tokio::task::spawn_blocking(move || {
                for n in (k..INSTANCES).step_by(STARTERS as usize) {
                    let key = n.to_string();
                    if engine.store().instance_by_key(PROCESS, &key).expect("lookup").is_some() {
                        continue;
                    }
                    let vars: Vars = [("n".to_string(), json!(n))].into();
                    let opts = StartOptions { by: Some("crash-test".into()), business_key: Some(key) };
                    engine.start(PROCESS, vars, opts).expect("start");
                }
            }));
        }
        for s in starters {
            s.await.expect("starter");
        }
        eprintln!("child: all instances started");
        let mut polls = 0u64;

        loop {
            let e = engine.clone();
            let all = tokio::task::spawn_blocking(move || e.instances(&InstanceFilter::default()).expect("instances"))
                .await
                .expect("list");
            if let Some(bad) = all.iter().find(|i| i.status == Status::Incident || i.status == Status::Cancelled) {
                panic!("instance {} is {}: {:#?}", bad.id, bad.status.as_str(), bad.incidents);
            }
            let done = all.iter().filter(|i| i.status == Status::Completed).count() as u64;
            if done == INSTANCES {
                break;
            }
            polls += 1;
            if polls % 40 == 0 {
                let jobs = engine.store().jobs().expect("jobs");
                let running: Vec<_> = all.iter().filter(|i| i.status == Status::Running).take(3).collect();
                eprintln!(
                    "child: {done} completed, {} jobs stored, e.g. {running:?} jobs {:?}",
                    jobs.len(),
                    jobs.iter().take(3).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop_tx.send(());
        executor.await.expect("executor");
    });
}

// ---------------------------------------------------------------------------
// The parent: kill children at random moments, then check the result.
// ---------------------------------------------------------------------------

fn spawn_child(dir: &Path, run: usize) -> Child {
    child::spawn("crash_child", CHILD_ENV, dir, run, &[])
}

#[test]
fn crash_survives_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let mut rng = Rng::from_env("crash test");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let began = Instant::now();

    let kills = rng.range(10, 20) as usize;
    let mut killed = 0;
    let mut run = 0;
    while killed < kills {
        run += 1;
        let mut child = spawn_child(&dir, run);
        let delay = rng.range(50, 400);
        if let Some(status) = child::kill_after(&mut child, Duration::from_millis(delay)) {
            // It finished everything before we got to kill it.
            child::assert_succeeded(status, &dir, run);
            break;
        }
        killed += 1;
        let effects = read_lines(&dir.join("effects.log")).len();
        let calls = read_lines(&dir.join("calls.log")).len();
        eprintln!("kill {killed}/{kills} after {delay} ms: {effects} effects, {calls} calls so far");
    }

    // A last run, left alone, must finish the rest.
    run += 1;
    let mut child = spawn_child(&dir, run);
    let Some(status) = child::wait_within(&mut child, Duration::from_secs(120)) else {
        let log = child::log(&dir, run);
        let kept = tmp.keep();
        panic!(
            "the final engine run did not complete all {INSTANCES} instances within 120 s (data kept in {}):\n{log}",
            kept.display()
        );
    };
    child::assert_succeeded(status, &dir, run);
    eprintln!("crash test: {killed} kills, {run} engine runs, {:.1} s", began.elapsed().as_secs_f64());

    verify(&dir);
}

/// What one instance's history must contain, each exactly once: (event, node).
fn expected_steps() -> BTreeMap<(String, String), usize> {
    [
        ("started", "-"),
        ("script_ran", "prep"),
        ("job_scheduled", "first"),
        ("job_succeeded", "first"),
        ("forked", "fork"),
        ("script_ran", "left"),
        ("job_scheduled", "right"),
        ("job_succeeded", "right"),
        ("joined", "join"),
        ("script_ran", "finish"),
        ("ended", "done"),
        ("completed", "-"),
    ]
    .into_iter()
    .map(|(e, n)| ((e.to_string(), n.to_string()), 1))
    .collect()
}

fn verify(dir: &Path) {
    let data: PathBuf = dir.join("data");
    let engine = Engine::builder().data_dir(&data).expect("open data dir").build().expect("build engine");
    let all = engine.instances(&InstanceFilter::default()).expect("instances");
    assert_eq!(all.len() as u64, INSTANCES, "one instance per business key");
    assert!(engine.store().jobs().expect("jobs").is_empty(), "no job left over");

    let mut keys_seen = HashSet::new();
    let mut expected_effects = HashSet::new();
    let expected = expected_steps();
    for inst in &all {
        assert_eq!(inst.status, Status::Completed, "instance {} is {}", inst.id, inst.status.as_str());
        assert!(inst.tokens.is_empty() && inst.joins.is_empty() && inst.incidents.is_empty(), "{inst:#?}");
        let key = inst.business_key.clone().expect("business key");
        let n: u64 = key.parse().expect("numeric key");
        assert!(n < INSTANCES && keys_seen.insert(n), "business key {key} twice or out of range");

        let history = engine.history(inst.id).expect("history");
        // Nothing lost: the lines are numbered 0.. without gaps or repeats.
        let seqs: Vec<u32> = history.iter().map(|h| h.seq).collect();
        assert_eq!(
            seqs,
            (0..inst.history_len).collect::<Vec<_>>(),
            "history of instance {} has gaps or repeats",
            inst.id
        );
        // Nothing twice: every step exactly once.
        let mut steps: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut jobs = BTreeMap::new();
        for h in &history {
            let node = h.node.clone().unwrap_or_else(|| "-".into());
            *steps.entry((h.event.name().to_string(), node.clone())).or_default() += 1;
            if let HistoryEvent::JobScheduled { job, .. } = &h.event {
                let seq = job.split_once('-').expect("job id <instance>-<seq>").1;
                let ikey = format!("{}/{}/{}", inst.id, node, seq);
                expected_effects.insert(ikey.clone());
                jobs.insert(node, ikey);
            }
        }
        assert_eq!(steps, expected, "steps of instance {} (key {key})", inst.id);

        // The variables show each script and each result applied once.
        let v = &inst.vars;
        assert_eq!(v["n"], json!(n));
        assert_eq!(v["a"], json!(n * 2));
        assert_eq!(v["c"], json!(n * 2 + 2), "c = a + 1, then + 1");
        assert_eq!(v["b"].as_str().map(without_incarnation), Some(jobs["first"].as_str()));
        assert_eq!(v["d"].as_str().map(without_incarnation), Some(jobs["right"].as_str()));
    }

    let effects = read_lines(&dir.join("effects.log"));
    let calls = read_lines(&dir.join("calls.log"));
    let unique: HashSet<&String> = effects.iter().collect();
    assert_eq!(unique.len(), effects.len(), "an effect was recorded twice");
    assert_eq!(effects.len() as u64, INSTANCES * SERVICE_STEPS, "one effect per service step");
    // One incarnation per call: the same step never went out under two keys.
    let effects: HashSet<String> = effects.iter().map(|k| without_incarnation(k).to_string()).collect();
    assert_eq!(effects.len() as u64, INSTANCES * SERVICE_STEPS, "a step was called under two keys");
    assert_eq!(effects, expected_effects, "effects match the scheduled calls exactly");
    // Re-runs come from restarts only: one engine process never calls a job twice.
    let mut per_run = HashSet::new();
    for c in &calls {
        let mut parts = c.split(' ');
        let (key, pid, attempt) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        assert!(expected_effects.contains(without_incarnation(key)), "a call with an unknown idempotency key: {c}");
        assert_eq!(attempt, "1", "no call failed, so none is a retry: {c}");
        assert!(per_run.insert((key, pid)), "one engine process called {key} twice");
    }
    let reruns = calls.len() as u64 - INSTANCES * SERVICE_STEPS;
    eprintln!(
        "crash test: {} effects, {} calls: {reruns} re-run(s) after kills (at-least-once), deduplicated by idempotency key",
        effects.len(),
        calls.len()
    );
}

/// Regression: `start` took the business-key lock and the new instance's lock from
/// one set of shards, so a start whose key and id fell into the same shard waited
/// on itself forever (the first hit here was the 460th keyed start).
#[test]
fn many_keyed_starts_do_not_deadlock() {
    let engine = Engine::in_memory();
    let p = "id: keyed\nvariables:\n  n: { type: number }\nstart: { next: done }\nnodes:\n  done: { end: }\n";
    engine.deploy("keyed.yaml", p).expect("deploy");
    for n in 0..3000u64 {
        let vars: Vars = [("n".to_string(), json!(n))].into();
        let opts = StartOptions { by: None, business_key: Some(n.to_string()) };
        assert_eq!(engine.start("keyed", vars, opts).expect("start").status, Status::Completed);
    }
}

/// `<instance>/<node>/<seq>` of an idempotency key `<incarnation>/<instance>/<node>/<seq>`.
fn without_incarnation(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, rest)| rest)
}
