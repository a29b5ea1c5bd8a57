//! Call activities on the simulated disk: random task completions, cancels,
//! executor runs, failing writes and flushes, and crashes that drop every unflushed
//! write, then a drain. Whatever the disk kept, no child is started twice for one
//! call, no caller hears of a child twice, no child exists without its caller's
//! record of it, and after the drain every instance has ended with no job left.

use crate::clock::VirtualClock;
use crate::engine::Engine;
use crate::executor::Executor;
use crate::expr::Vars;
use crate::runtime::{HistoryEvent, Outcome};
use crate::sim::disk::Disk;
use crate::sim::{FaultRates, Rng};
use crate::store::{InstanceFilter, KvStore, TaskQuery};
use crate::StartOptions;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

const LEAF: &str = r#"
id: leaf
lanes: { staff: {} }
variables:
  amount: { type: number, required: true }
  decision: { type: bool }
start: { next: check }
nodes:
  check:
    exclusive:
      - { when: 'amount > 6', next: boom }
    default: approve
  boom: { end: { error: big } }
  approve: { user_task: Approve, lane: staff, form: { decision: required }, next: done }
  done: { end: }
"#;

const FAN: &str = r#"
id: fan
variables:
  n1: { type: number, required: true }
  n2: { type: number, required: true }
  d1: { type: bool }
  d2: { type: bool }
start: { next: fork }
nodes:
  fork: { parallel: [c1, c2] }
  c1:
    call: leaf
    in: { amount: n1 }
    out: { d1: decision }
    next: join
    boundary: [ { error: big, next: join } ]
  c2:
    call: leaf
    in: { amount: n2 }
    out: { d2: decision }
    next: join
    boundary: [ { error: big, next: join } ]
  join: { join: fork, next: done }
  done: { end: }
"#;

fn open(disk: &Disk, clock: &Arc<VirtualClock>) -> Option<Engine> {
    let store = KvStore::new(disk.open()).ok()?;
    Engine::builder().store(store).clock(clock.clone()).queue_window(3).build().ok()
}

fn run(rt: &tokio::runtime::Runtime, engine: &Engine) {
    rt.block_on(Executor::new(engine.clone()).run_until_idle());
}

fn one_seed(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let disk = Disk::new(rng.split());
    let clock = Arc::new(VirtualClock::new("2026-12-01T09:00:00Z".parse().expect("time")));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let mut engine = open(&disk, &clock).ok_or("open")?;
    engine.deploy("leaf.yaml", LEAF).map_err(|e| e.to_string())?;
    engine.deploy("fan.yaml", FAN).map_err(|e| e.to_string())?;
    disk.set_faults(FaultRates { apply_fails: 30, flush_fails: 60 });
    for _ in 0..40 {
        match rng.below(8) {
            0 | 1 => {
                let vars: Vars =
                    [("n1".to_string(), json!(rng.below(10))), ("n2".to_string(), json!(rng.below(10)))].into();
                let _ = engine.start("fan", vars, StartOptions::default());
            }
            2 | 3 => {
                if let Ok(tasks) = engine.tasks(&TaskQuery::default()) {
                    if !tasks.is_empty() {
                        let t = &tasks[rng.index(tasks.len())];
                        let data: Vars = [("decision".to_string(), json!(rng.chance(500)))].into();
                        let _ = engine.complete(&t.id, "u", data, Outcome::Next);
                    }
                }
            }
            4 => {
                if let Ok(all) = engine.instances(&InstanceFilter::default()) {
                    let live: Vec<u64> = all.iter().filter(|i| !i.status.is_finished()).map(|i| i.id).collect();
                    if !live.is_empty() {
                        let _ = engine.cancel(live[rng.index(live.len())], "admin", "test");
                    }
                }
            }
            5 => disk.background_flush(),
            6 => {
                drop(engine);
                disk.crash();
                let mut reopened = None;
                for _ in 0..5 {
                    reopened = open(&disk, &clock);
                    if reopened.is_some() {
                        break;
                    }
                }
                engine = reopened.ok_or("reopen failed five times")?;
            }
            _ => run(&rt, &engine),
        }
    }
    // Drain: a healthy disk, a restart, then answer everything.
    disk.set_faults(FaultRates::default());
    drop(engine);
    disk.crash();
    let engine = open(&disk, &clock).ok_or("reopen for the drain")?;
    for _ in 0..12 {
        run(&rt, &engine);
        let all = engine.instances(&InstanceFilter::default()).map_err(|e| e.to_string())?;
        if all.iter().all(|i| i.status.is_finished()) {
            break;
        }
        for t in engine.tasks(&TaskQuery::default()).map_err(|e| e.to_string())? {
            let data: Vars = [("decision".to_string(), json!(true))].into();
            engine.complete(&t.id, "u", data, Outcome::Next).map_err(|e| format!("complete {}: {e}", t.id))?;
        }
        for i in all.iter().filter(|i| i.parent.is_none() && !i.incidents.is_empty()) {
            for inc in &i.incidents {
                engine.retry_incident(i.id, inc.id, Vars::new(), "admin").map_err(|e| e.to_string())?;
            }
        }
    }
    run(&rt, &engine);

    let all = engine.instances(&InstanceFilter::default()).map_err(|e| e.to_string())?;
    let mut started: BTreeMap<u64, u64> = BTreeMap::new();
    for i in &all {
        if !i.status.is_finished() {
            return Err(format!("instance {} is {} after the drain: {i:#?}", i.id, i.status.as_str()));
        }
        let p = engine.process(&i.process, i.version).ok_or("process")?;
        i.check_invariants(&p).map_err(|e| e.to_string())?;
        let mut answered: BTreeMap<u64, u32> = BTreeMap::new();
        for h in engine.history(i.id).map_err(|e| e.to_string())? {
            match h.event {
                HistoryEvent::CallStarted { child, .. } if started.insert(child, i.id).is_some() => {
                    return Err(format!("child {child} started twice"));
                }
                HistoryEvent::CallCompleted { child, .. } => *answered.entry(child).or_default() += 1,
                _ => {}
            }
        }
        if let Some((child, n)) = answered.iter().find(|(_, n)| **n > 1) {
            return Err(format!("instance {} heard of child {child} {n} times", i.id));
        }
    }
    for i in all.iter().filter(|i| i.parent.is_some()) {
        let link = i.parent.as_ref().expect("filtered");
        if started.get(&i.id) != Some(&link.instance) {
            return Err(format!("instance {} names caller {} that never recorded it", i.id, link.instance));
        }
    }
    let jobs = engine.store().jobs().map_err(|e| e.to_string())?;
    if !jobs.is_empty() {
        return Err(format!("jobs left after the drain: {jobs:?}"));
    }
    Ok(())
}

#[test]
fn calls_survive_crashes_and_disk_faults() {
    let seeds = std::env::var("NAGARE_CALL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60u64);
    let failed: Vec<String> =
        (0..seeds).filter_map(|s| one_seed(s).err().map(|e| format!("seed {s}: {e}"))).take(3).collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
