//! Crash test of the migration apply: a child process applies a plan of 300
//! instances and is killed with SIGKILL at random moments; the apply is run again
//! until it finishes. Every instance must end up on the new version exactly once
//! (one `migrated` history line), its task record with it, and then run to its end.
//!
//! The test binary re-executes itself as the child (`migrate_crash_child`, which
//! does nothing unless `NAGARE_MIGRATE_CHILD_DIR` is set), as `crash.rs` does.
//! `NAGARE_CRASH_SEED` replays a sequence of kill delays.
#![cfg(unix)]

mod common;

use common::child::{self, Rng};
use nagare_engine::migrate::MigrationSpec;
use nagare_engine::runtime::{Outcome, Status};
use nagare_engine::store::{Durability, InstanceFilter, TaskQuery};
use nagare_engine::{Engine, MigrationPlan, StartOptions, Vars};
use serde_json::json;
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

const CHILD_ENV: &str = "NAGARE_MIGRATE_CHILD_DIR";
const INSTANCES: u64 = 300;

const V1: &str = r#"
id: mig-crash
lanes: { staff: { groups: [staff] } }
variables:
  n: { type: number, required: true }
start: { next: check }
nodes:
  check: { user_task: Check, lane: staff, next: done }
  done: { end: }
"#;

const V2: &str = r#"
id: mig-crash
lanes: { staff: { groups: [staff] } }
variables:
  n: { type: string, required: true }
start: { next: review }
nodes:
  review: { user_task: Review, lane: staff, next: archive }
  archive: { script: 'n = n + "!";', next: done }
  done: { end: }
"#;

#[test]
fn migrate_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = Path::new(&dir);
    let engine = Engine::builder().data_dir(dir.join("data")).expect("open").build().expect("engine");
    let plan: MigrationPlan =
        serde_json::from_str(&std::fs::read_to_string(dir.join("plan.json")).expect("plan")).expect("plan json");
    let mut log = OpenOptions::new().create(true).append(true).open(dir.join("progress.log")).expect("log");
    let report = engine
        .apply_migration(&plan, "crash-test", |o| {
            writeln!(log, "{} {}", o.instance(), o.name()).expect("write progress");
        })
        .expect("apply");
    assert!(!report.counts.contains_key("failed"), "{report:?}");
}

fn spawn_child(dir: &Path, run: usize) -> Child {
    child::spawn("migrate_crash_child", CHILD_ENV, dir, run, &[])
}

/// Deploy both versions, start the instances, write the plan.
fn prepare(dir: &Path) {
    let engine = Engine::builder().data_dir_with(dir.join("data"), Durability::Relaxed).expect("open").build().unwrap();
    engine.deploy("mig-crash.yaml", V1).unwrap();
    for n in 0..INSTANCES {
        let vars: Vars = [("n".to_string(), json!(n))].into();
        engine.start("mig-crash", vars, StartOptions::default()).unwrap();
    }
    engine.deploy("mig-crash.yaml", V2).unwrap();
    let mut spec = MigrationSpec { process: "mig-crash".into(), from: 1, to: 2, ..Default::default() };
    spec.map.insert("check".into(), "review".into());
    spec.set.insert("n".into(), "`n${n}`".into());
    let plan = engine.plan_migration(spec, "crash-test").unwrap();
    assert_eq!(plan.summary.valid as u64, INSTANCES, "{:?}", plan.instances.first());
    std::fs::write(dir.join("plan.json"), serde_json::to_string(&plan).unwrap()).unwrap();
    engine.flush().unwrap();
}

#[test]
fn a_killed_migration_resumes_and_migrates_each_instance_once() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let mut rng = Rng::from_env("migrate crash test");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    prepare(dir);

    let kills = rng.range(4, 8) as usize;
    let mut killed = 0;
    let mut run = 0;
    let mut finished = false;
    while killed < kills {
        run += 1;
        let mut child = spawn_child(dir, run);
        let delay = rng.range(30, 350);
        if let Some(status) = child::kill_after(&mut child, Duration::from_millis(delay)) {
            child::assert_succeeded(status, dir, run);
            finished = true;
            break;
        }
        killed += 1;
        let progress = std::fs::read_to_string(dir.join("progress.log")).unwrap_or_default();
        eprintln!("kill {killed}/{kills} after {delay} ms: {} outcomes logged so far", progress.lines().count());
    }
    if !finished {
        run += 1;
        let mut child = spawn_child(dir, run);
        let status = child::wait_within(&mut child, Duration::from_secs(120));
        let status = status.unwrap_or_else(|| panic!("the last apply did not finish:\n{}", child::log(dir, run)));
        child::assert_succeeded(status, dir, run);
    }

    // Each instance was committed as migrated at most once, by whichever run.
    let mut migrated: BTreeMap<u64, usize> = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("progress.log")).unwrap().lines() {
        let (id, outcome) = line.split_once(' ').unwrap();
        assert!(matches!(outcome, "migrated" | "already_migrated"), "{line}");
        if outcome == "migrated" {
            *migrated.entry(id.parse().unwrap()).or_default() += 1;
        }
    }
    assert!(migrated.values().all(|n| *n == 1), "an instance reported migrated twice");

    let engine = Engine::builder().data_dir(dir.join("data")).expect("reopen").build().unwrap();
    let all = engine.instances(&InstanceFilter::default()).unwrap();
    assert_eq!(all.len() as u64, INSTANCES);
    for inst in &all {
        assert_eq!(inst.version, 2, "instance {}", inst.id);
        assert_eq!(inst.tokens[0].node, "review");
        let lines = engine.history(inst.id).unwrap().iter().filter(|h| h.event.name() == "migrated").count();
        assert_eq!(lines, 1, "instance {}: migrated lines", inst.id);
        assert!(inst.vars["n"].as_str().is_some_and(|s| s.starts_with('n')), "{:?}", inst.vars);
    }
    let tasks = engine.tasks(&TaskQuery::default()).unwrap();
    assert_eq!(tasks.len() as u64, INSTANCES);
    for t in &tasks {
        assert_eq!((t.version, t.node.as_str(), t.title.as_str()), (2, "review", "Review"));
        engine.complete(&t.id, "sato", Vars::new(), Outcome::Next).unwrap();
    }
    for inst in engine.instances(&InstanceFilter::default()).unwrap() {
        assert_eq!(inst.status, Status::Completed, "instance {}", inst.id);
        assert!(inst.vars["n"].as_str().unwrap().ends_with('!'));
    }
}
