//! Property test of instance migration: random processes (tasks with and without
//! boundary timers, timer catches, parallel forks, sub-processes, multi-instance
//! tasks), instances driven to random wait states, random edits (a step removed,
//! renamed with or without a mapping, inserted before another, a timer changed, a
//! branch removed), then plan and apply. A migrated instance never holds a token on
//! a node its new version lacks, it keeps every invariant, its task records follow
//! it, the plan's verdict is what the apply did, and every instance (migrated or
//! not) still runs to its end.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::migrate::{MigrationSpec, TimerChoice};
use nagare_engine::runtime::{Outcome, Status, Wait};
use nagare_engine::store::TaskQuery;
use nagare_engine::{ApplyOutcome, Engine, Executor, StartOptions, Vars, VirtualClock};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum B {
    /// A user task, maybe with an interrupting boundary timer (minutes).
    Task {
        id: String,
        boundary: Option<u32>,
    },
    /// A timer catch (minutes).
    Timer {
        id: String,
        minutes: u32,
    },
    Par {
        id: String,
        branches: Vec<Vec<B>>,
    },
    Sub {
        id: String,
        inner: Vec<B>,
    },
    Multi {
        id: String,
        items: u8,
    },
}

fn block() -> impl Strategy<Value = B> {
    let leaf = prop_oneof![
        3 => prop::option::of(5..90u32).prop_map(|boundary| B::Task { id: String::new(), boundary }),
        1 => (5..90u32).prop_map(|minutes| B::Timer { id: String::new(), minutes }),
        1 => (1..3u8).prop_map(|items| B::Multi { id: String::new(), items }),
    ];
    leaf.prop_recursive(2, 16, 3, |inner| {
        let seq = prop::collection::vec(inner, 1..=3);
        prop_oneof![
            prop::collection::vec(seq.clone(), 2..=3).prop_map(|branches| B::Par { id: String::new(), branches }),
            seq.prop_map(|inner| B::Sub { id: String::new(), inner }),
        ]
    })
}

/// Give every block an id, in pre-order.
fn name(seq: &mut [B], n: &mut usize) {
    for b in seq {
        *n += 1;
        match b {
            B::Task { id, .. } => *id = format!("t{n}"),
            B::Timer { id, .. } => *id = format!("w{n}"),
            B::Multi { id, .. } => *id = format!("m{n}"),
            B::Par { id, branches } => {
                *id = format!("f{n}");
                for s in branches {
                    name(s, n);
                }
            }
            B::Sub { id, inner } => {
                *id = format!("p{n}");
                name(inner, n);
            }
        }
    }
}

fn count(seq: &[B]) -> usize {
    seq.iter()
        .map(|b| {
            1 + match b {
                B::Par { branches, .. } => branches.iter().map(|s| count(s)).sum(),
                B::Sub { inner, .. } => count(inner),
                _ => 0,
            }
        })
        .sum()
}

#[derive(Debug, Clone, Copy)]
enum EditKind {
    Drop,
    Rename { mapped: bool },
    InsertBefore,
    Retime,
    DropBranch,
}

fn edit_kind() -> impl Strategy<Value = EditKind> {
    prop_oneof![
        Just(EditKind::Drop),
        any::<bool>().prop_map(|mapped| EditKind::Rename { mapped }),
        Just(EditKind::InsertBefore),
        Just(EditKind::Retime),
        Just(EditKind::DropBranch),
    ]
}

/// Apply `kind` to the `target`th block (pre-order); renames go into `map` when mapped.
fn edit(
    seq: &mut Vec<B>,
    target: &mut usize,
    kind: EditKind,
    map: &mut BTreeMap<String, String>,
    fresh: &mut usize,
) -> bool {
    for i in 0..seq.len() {
        if *target == 0 {
            match kind {
                EditKind::Drop if seq.len() > 1 => {
                    seq.remove(i);
                }
                EditKind::Drop => {}
                EditKind::Rename { mapped } => {
                    if let B::Task { id, .. } | B::Timer { id, .. } | B::Multi { id, .. } = &mut seq[i] {
                        let new = format!("{id}r");
                        if mapped {
                            map.insert(id.clone(), new.clone());
                        }
                        *id = new;
                    }
                }
                EditKind::InsertBefore => {
                    *fresh += 1;
                    seq.insert(i, B::Task { id: format!("n{fresh}"), boundary: None });
                }
                EditKind::Retime => match &mut seq[i] {
                    B::Timer { minutes, .. } => *minutes += 7,
                    B::Task { boundary, .. } => *boundary = Some(boundary.map_or(30, |m| m + 7)),
                    _ => {}
                },
                EditKind::DropBranch => {
                    if let B::Par { branches, .. } = &mut seq[i] {
                        if branches.len() > 2 {
                            branches.pop();
                        }
                    }
                }
            }
            return true;
        }
        *target -= 1;
        let done = match &mut seq[i] {
            B::Par { branches, .. } => branches.iter_mut().any(|s| edit(s, target, kind, map, fresh)),
            B::Sub { inner, .. } => edit(inner, target, kind, map, fresh),
            _ => false,
        };
        if done {
            return true;
        }
    }
    false
}

struct Emitter {
    nodes: Vec<String>,
}

impl Emitter {
    fn seq(&mut self, seq: &[B], next: &str) -> String {
        let mut next = next.to_string();
        for b in seq.iter().rev() {
            next = self.block(b, &next);
        }
        next
    }

    fn block(&mut self, b: &B, next: &str) -> String {
        match b {
            B::Task { id, boundary } => {
                let bnd =
                    boundary.map(|m| format!(", boundary: [{{ timer: {m}m, next: {next} }}]")).unwrap_or_default();
                self.nodes.push(format!("  {id}: {{ user_task: 'Task {id}', lane: staff, next: {next}{bnd} }}"));
                id.clone()
            }
            B::Timer { id, minutes } => {
                self.nodes.push(format!("  {id}: {{ timer: {minutes}m, next: {next} }}"));
                id.clone()
            }
            B::Multi { id, items } => {
                let list: Vec<String> = (0..*items).map(|i| i.to_string()).collect();
                self.nodes.push(format!(
                    "  {id}: {{ user_task: 'Task {id}', lane: staff, next: {next}, multi_instance: {{ for_each: '[{}]', as: item }} }}",
                    list.join(", ")
                ));
                id.clone()
            }
            B::Par { id, branches } => {
                let join = format!("{id}_join");
                self.nodes.push(format!("  {join}: {{ join: {id}, next: {next} }}"));
                let firsts: Vec<String> = branches.iter().map(|s| self.seq(s, &join)).collect();
                self.nodes.push(format!("  {id}: {{ parallel: [{}] }}", firsts.join(", ")));
                id.clone()
            }
            B::Sub { id, inner } => {
                let end = format!("{id}_end");
                let mut sub = Emitter { nodes: Vec::new() };
                let first = sub.seq(inner, &end);
                let mut node = format!("  {id}:\n    sub_process:\n      start: {{ next: {first} }}\n      nodes:\n");
                for n in &sub.nodes {
                    for line in n.lines() {
                        writeln!(node, "      {line}").unwrap();
                    }
                }
                writeln!(node, "        {end}: {{ end: }}").unwrap();
                write!(node, "    next: {next}").unwrap();
                self.nodes.push(node);
                id.clone()
            }
        }
    }
}

fn yaml(seq: &[B]) -> String {
    let mut e = Emitter { nodes: Vec::new() };
    let first = e.seq(seq, "end");
    let mut y = format!("id: mprop\nlanes:\n  staff: {{ groups: [staff] }}\nstart: {{ next: {first} }}\nnodes:\n");
    for n in &e.nodes {
        y.push_str(n);
        y.push('\n');
    }
    y.push_str("  end: { end: }\n");
    y
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// One random action: complete the `pick`th open task, or let `minutes` pass.
fn act(engine: &Engine, rt: &tokio::runtime::Runtime, pick: usize, minutes: u32) {
    let tasks = engine.tasks(&TaskQuery::default()).unwrap();
    if minutes < 40 && !tasks.is_empty() {
        let t = &tasks[pick % tasks.len()];
        engine.complete(&t.id, "u", Vars::new(), Outcome::Next).unwrap();
    } else {
        rt.block_on(Executor::new(engine.clone()).advance(Duration::minutes(i64::from(minutes))));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_migrated_instance_never_holds_a_token_on_a_missing_node(
        mut program in prop::collection::vec(block(), 1..=4),
        edits in prop::collection::vec((edit_kind(), 0..64usize), 1..=3),
        actions in prop::collection::vec((0..16usize, 0..90u32), 0..14),
        rearm in any::<bool>(),
    ) {
        name(&mut program, &mut 0);
        let v1 = yaml(&program);
        let mut changed = program.clone();
        let mut map = BTreeMap::new();
        let mut fresh = 0;
        for (kind, target) in edits {
            let total = count(&changed);
            edit(&mut changed, &mut (target % total), kind, &mut map, &mut fresh);
        }
        let v2 = yaml(&changed);
        prop_assume!(v1 != v2);

        let clock = Arc::new(VirtualClock::new(t0()));
        let engine = Engine::builder().in_memory().clock(clock).build().unwrap();
        engine.deploy("mprop.yaml", &v1).map_err(|e| TestCaseError::fail(format!("{e}\n{v1}")))?;
        let rt = rt();
        let ids: Vec<u64> =
            (0..3).map(|_| engine.start("mprop", Vars::new(), StartOptions::default()).unwrap().id).collect();
        for (pick, minutes) in actions {
            act(&engine, &rt, pick, minutes);
        }
        let d = engine.deploy("mprop.yaml", &v2).map_err(|e| TestCaseError::fail(format!("{e}\n{v2}")))?;
        prop_assert_eq!(d.version, 2);
        let from = engine.process("mprop", 1).unwrap();
        let to = engine.process("mprop", 2).unwrap();
        // A mapping may name a node a later edit removed: such a spec is refused whole.
        let map: BTreeMap<String, String> =
            map.into_iter().filter(|(o, n)| from.node(o).is_some() && to.node(n).is_some()).collect();
        let timers = if rearm { TimerChoice::Rearm } else { TimerChoice::Keep };
        let spec = MigrationSpec { process: "mprop".into(), from: 1, to: 2, map, timers, ..Default::default() };
        let plan = engine.plan_migration(spec, "admin").unwrap();
        let report = engine.apply_migration(&plan, "admin", |_| {}).unwrap();

        for (p, outcome) in plan.instances.iter().zip(&report.outcomes) {
            let inst = engine.instance(p.instance).unwrap();
            let on = if inst.version == 2 { &to } else { &from };
            for t in &inst.tokens {
                prop_assert!(on.node(&t.node).is_some(), "token {} at `{}`, not a node of version {}\n{v1}\n{v2}", t.id, t.node, inst.version);
            }
            if let Err(e) = inst.check_invariants(on) {
                return Err(TestCaseError::fail(format!("{e}\nplan {p:?}\n{v1}\n{v2}")));
            }
            match outcome {
                ApplyOutcome::Migrated { .. } => prop_assert!(p.is_valid() && inst.version == 2),
                ApplyOutcome::Invalid { .. } => prop_assert!(!p.is_valid() && inst.version == 1),
                ApplyOutcome::Gone { .. } => prop_assert!(inst.status.is_finished()),
                other => prop_assert!(false, "unexpected {other:?}"),
            }
            for t in &inst.tokens {
                if let Wait::Task { task, .. } = &t.wait {
                    let rec = engine.task(task).unwrap();
                    prop_assert_eq!((rec.version, rec.node.as_str()), (inst.version, t.node.as_str()));
                }
            }
        }

        // Everything still ends: tasks completed, timers let run.
        for round in 0..200 {
            let open = ids.iter().filter(|id| !engine.instance(**id).unwrap().status.is_finished()).count();
            if open == 0 {
                break;
            }
            prop_assert!(round < 199, "instances did not end\n{v1}\n{v2}\n{:?}", ids.iter().map(|i| engine.instance(*i).unwrap()).collect::<Vec<_>>());
            act(&engine, &rt, round, if round % 3 == 2 { 90 } else { 0 });
        }
        for id in &ids {
            prop_assert_eq!(engine.instance(*id).unwrap().status, Status::Completed);
        }
    }
}
