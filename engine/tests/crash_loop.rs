//! Issue 10, finding 2: a job that stops the engine process every time it runs
//! (here: a connector that aborts the process) must not make every restart stop
//! again. Each start of a job is counted in its record before it runs; after
//! `MAX_JOB_STARTS` starts without an outcome the next start raises an incident
//! instead of running it.
//!
//! The test binary re-executes itself as the engine process (`crash_loop_child`,
//! which does nothing unless `NAGARE_CRASH_LOOP_DIR` is set), reopening the same
//! store each time, as `nagare serve` restarted by a supervisor would.
#![cfg(unix)]

use nagare_engine::engine::MAX_JOB_STARTS;
use nagare_engine::runtime::Status;
use nagare_engine::{Engine, Executor, FnConnector, StartOptions, Vars};
use std::path::Path;
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "NAGARE_CRASH_LOOP_DIR";

const YAML: &str = r#"
id: loop
start: { next: 督促 }
nodes:
  督促: { service: test.abort, next: done }
  done: { end: }
"#;

fn open(dir: &Path) -> Engine {
    Engine::builder()
        .data_dir(dir)
        .unwrap()
        .connector("test.abort", FnConnector(|_: &nagare_engine::Call| std::process::abort()))
        .build()
        .unwrap()
}

#[test]
fn crash_loop_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let engine = open(Path::new(&dir));
    engine.deploy("loop.yaml", YAML).unwrap();
    if engine.instances(&Default::default()).unwrap().is_empty() {
        engine.start("loop", Vars::new(), StartOptions::default()).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ran = rt.block_on(Executor::new(engine.clone()).run_until_idle());
    eprintln!("child ran {ran} job(s) and exits normally");
}

#[test]
fn a_job_that_aborts_the_engine_every_time_becomes_an_incident_instead_of_a_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let restarts = MAX_JOB_STARTS + 2;
    let mut aborted = 0;
    for _ in 0..restarts {
        let status = Command::new(&exe)
            .args(["--exact", "crash_loop_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if !status.success() {
            aborted += 1;
        }
    }
    assert_eq!(aborted, MAX_JOB_STARTS, "the job ran {MAX_JOB_STARTS} times, then no more");

    let engine = open(dir.path());
    let inst = engine.instances(&Default::default()).unwrap().remove(0);
    assert_eq!(inst.status, Status::Incident);
    let incident = &inst.incidents[0];
    assert_eq!(incident.node, "督促");
    assert!(
        incident.message.contains(&format!("started {MAX_JOB_STARTS} times without finishing")),
        "{}",
        incident.message
    );
    assert!(engine.store().jobs().unwrap().is_empty(), "the job is not pending any more");
}
