//! Property test of call activities: a fork of three calls, random task
//! completions, cancels of children or of the parent, and executor runs held back
//! so that starts, ends and cancels queue up and cross. After a drain: every
//! instance ended, no job is left, and each child the parent called was answered
//! exactly once (mapped, caught, or withdrawn), never twice.

use chrono::{DateTime, Utc};
use nagare_engine::runtime::{HistoryEvent, Outcome, Status};
use nagare_engine::store::{InstanceFilter, TaskQuery};
use nagare_engine::{Engine, Executor, StartOptions, Vars, VirtualClock};
use proptest::prelude::*;
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

fn fan() -> String {
    let mut y = String::from("id: fan\nvariables:\n");
    for i in 1..=3 {
        y.push_str(&format!("  n{i}: {{ type: number, required: true }}\n  d{i}: {{ type: bool }}\n"));
    }
    y.push_str("start: { next: fork }\nnodes:\n  fork: { parallel: [c1, c2, c3] }\n");
    for i in 1..=3 {
        y.push_str(&format!(
            "  c{i}:\n    call: leaf\n    in: {{ amount: n{i} }}\n    out: {{ d{i}: decision }}\n    next: join\n    boundary:\n      - {{ error: big, next: join }}\n"
        ));
    }
    y.push_str("  join: { join: fork, next: done }\n  done: { end: }\n");
    y
}

#[derive(Debug, Clone)]
enum Action {
    /// Complete the `n`th open task with `decision`.
    Complete(usize, bool),
    /// Cancel the `n`th running child.
    CancelChild(usize),
    CancelParent,
    /// Let the executor run what is due.
    Run,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..4usize, any::<bool>()).prop_map(|(n, d)| Action::Complete(n, d)),
        1 => (0..4usize).prop_map(Action::CancelChild),
        1 => Just(Action::CancelParent),
        3 => Just(Action::Run),
    ]
}

fn t0() -> DateTime<Utc> {
    "2026-12-01T09:00:00Z".parse().expect("time")
}

fn run(rt: &tokio::runtime::Runtime, engine: &Engine) {
    rt.block_on(Executor::new(engine.clone()).run_until_idle());
}

fn complete(engine: &Engine, n: usize, decision: bool) {
    let tasks = engine.tasks(&TaskQuery::default()).expect("tasks");
    if let Some(t) = tasks.get(n % tasks.len().max(1)) {
        let data: Vars = [("decision".to_string(), json!(decision))].into_iter().collect();
        // May be refused: the task closed meanwhile; nothing to check then.
        let _ = engine.complete(&t.id, "u", data, Outcome::Next);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_call_is_answered_once(
        amounts in prop::collection::vec(0..10u8, 3),
        actions in prop::collection::vec(action(), 0..14),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
        let engine = Engine::builder().in_memory().clock(Arc::new(VirtualClock::new(t0()))).build().expect("engine");
        engine.deploy("leaf.yaml", LEAF).expect("leaf");
        engine.deploy("fan.yaml", &fan()).expect("fan");
        let vars: Vars = (1..=3).map(|i| (format!("n{i}"), json!(amounts[i - 1]))).collect();
        let parent = engine.start("fan", vars, StartOptions::default()).expect("start").id;
        for a in &actions {
            match a {
                Action::Complete(n, d) => complete(&engine, *n, *d),
                Action::CancelChild(n) => {
                    let children: Vec<u64> = engine.instance(parent).unwrap().children().collect();
                    if let Some(c) = children.get(n % children.len().max(1)) {
                        let _ = engine.cancel(*c, "admin", "test");
                    }
                }
                Action::CancelParent => {
                    let _ = engine.cancel(parent, "admin", "test");
                }
                Action::Run => run(&rt, &engine),
            }
        }
        // Drain: run, answer every task, retry the parent's incidents (a cancelled child).
        for _ in 0..12 {
            run(&rt, &engine);
            let p = engine.instance(parent).unwrap();
            if p.status.is_finished() {
                break;
            }
            for t in engine.tasks(&TaskQuery::default()).unwrap() {
                let data: Vars = [("decision".to_string(), json!(true))].into_iter().collect();
                engine.complete(&t.id, "u", data, Outcome::Next).expect("an open task completes");
            }
            for i in &p.incidents {
                engine.retry_incident(parent, i.id, Vars::new(), "admin").expect("retry");
            }
        }
        run(&rt, &engine);

        let all = engine.instances(&InstanceFilter::default()).unwrap();
        for i in &all {
            prop_assert!(i.status.is_finished(), "instance {} is {}", i.id, i.status.as_str());
            i.check_invariants(&engine.process(&i.process, i.version).unwrap()).unwrap();
        }
        prop_assert!(engine.store().jobs().unwrap().is_empty(), "jobs left: {:?}", engine.store().jobs().unwrap());
        prop_assert!(engine.tasks(&TaskQuery::default()).unwrap().is_empty());

        // Each child the parent started is answered at most once, and a child that
        // completed while its call still waited was answered exactly once.
        let history = engine.history(parent).unwrap();
        let mut started = BTreeMap::new();
        let mut answered: BTreeMap<u64, usize> = BTreeMap::new();
        for h in &history {
            match &h.event {
                HistoryEvent::CallStarted { child, .. } => {
                    prop_assert!(started.insert(*child, ()).is_none(), "child {} started twice", child);
                }
                HistoryEvent::CallCompleted { child, .. } => *answered.entry(*child).or_default() += 1,
                _ => {}
            }
        }
        for (child, n) in &answered {
            prop_assert_eq!(*n, 1, "child {} answered {} times", child, n);
            prop_assert!(started.contains_key(child));
        }
        for i in all.iter().filter(|i| i.parent.is_some()) {
            prop_assert!(started.contains_key(&i.id), "instance {} has a parent that never started it", i.id);
        }
        let p = engine.instance(parent).unwrap();
        if p.status == Status::Completed {
            // Every branch got through its call: three answers since the last start of each.
            prop_assert!(answered.len() >= 3, "completed with {} answers", answered.len());
        }
    }
}
