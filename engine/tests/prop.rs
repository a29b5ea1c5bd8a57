//! Property tests: random valid processes and random event orders.
//!
//! Processes are generated from a block grammar (a sequence of blocks; a block is a
//! user task, a script, an exclusive choice of 2–3 branches that merge again, a
//! parallel fork of 2–4 branches closed by its join, or an inclusive fork of 2–3
//! conditional branches whose join waits for the ones taken), written out as YAML and
//! deployed. The test then completes a random open task until none remain and,
//! after every event, checks that tokens are never lost or duplicated: every open
//! task has exactly one token and vice versa, every branch of every fork activation
//! is either still running or has arrived at its join (never both, never neither),
//! no two tokens stand in the same place, and at the end every fork was joined
//! exactly once.

use chrono::{DateTime, Utc};
use nagare_engine::compile::CompileOptions;
use nagare_engine::load::load_str;
use nagare_engine::process::Process;
use nagare_engine::runtime::{self, Event, HistoryEvent, Instance, Outcome, Status, Wait};
use nagare_engine::store::TaskQuery;
use nagare_engine::{Engine, EngineError, StartOptions, Vars};
use proptest::prelude::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

const VARS: u8 = 3;

#[derive(Debug, Clone)]
enum Block {
    Task,
    /// `v<var> = v<var> + <add>;`
    Script {
        var: u8,
        add: u8,
    },
    /// Branches with the condition `v<var> > <threshold>`; the last is the default.
    Exclusive(Vec<(u8, u8, Vec<Block>)>),
    Parallel(Vec<Vec<Block>>),
    /// Every branch whose condition `v<var> > <threshold>` holds (the last is the
    /// default), closed by a join that waits for the branches taken.
    Inclusive(Vec<(u8, u8, Vec<Block>)>),
    /// A multi-instance user task over `items` items, one at a time or all at
    /// once, ending early after `early` items if given.
    Multi {
        items: u8,
        sequential: bool,
        early: Option<u8>,
    },
}

fn block() -> impl Strategy<Value = Block> {
    let leaf = prop_oneof![
        3 => Just(Block::Task),
        1 => (0..4u8, any::<bool>(), prop::option::of(1..3u8))
            .prop_map(|(items, sequential, early)| Block::Multi { items, sequential, early }),
        1 => (0..VARS, 1..3u8).prop_map(|(var, add)| Block::Script { var, add }),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let seq = prop::collection::vec(inner, 1..=3);
        prop_oneof![
            prop::collection::vec((0..VARS, 0..10u8, seq.clone()), 2..=3).prop_map(Block::Exclusive),
            prop::collection::vec(seq.clone(), 2..=4).prop_map(Block::Parallel),
            prop::collection::vec((0..VARS, 0..10u8, seq), 2..=3).prop_map(Block::Inclusive),
        ]
    })
}

fn program() -> impl Strategy<Value = Vec<Block>> {
    prop::collection::vec(block(), 1..=4).prop_filter("keep processes small", |p| task_nodes(p) <= 40)
}

fn task_nodes(seq: &[Block]) -> usize {
    seq.iter()
        .map(|b| match b {
            Block::Task => 1,
            Block::Multi { items, .. } => usize::from(*items),
            Block::Script { .. } => 0,
            Block::Exclusive(bs) | Block::Inclusive(bs) => bs.iter().map(|(_, _, s)| task_nodes(s)).sum(),
            Block::Parallel(bs) => bs.iter().map(|s| task_nodes(s)).sum(),
        })
        .sum()
}

/// Most tokens that can wait at once (a multi-instance body waits beside its items).
fn width(seq: &[Block]) -> usize {
    seq.iter()
        .map(|b| match b {
            Block::Task => 1,
            Block::Multi { items, .. } => usize::from(*items) + 1,
            Block::Script { .. } => 0,
            Block::Exclusive(bs) => bs.iter().map(|(_, _, s)| width(s)).max().unwrap_or(0),
            Block::Parallel(bs) => bs.iter().map(|s| width(s)).sum(),
            Block::Inclusive(bs) => bs.iter().map(|(_, _, s)| width(s)).sum(),
        })
        .max()
        .unwrap_or(0)
}

/// Writes the YAML and remembers which join closes which fork.
#[derive(Default)]
struct Emitter {
    nodes: Vec<String>,
    counter: usize,
    fork_join: Vec<(String, String)>,
    /// Multi-instance nodes that may end before every item is done.
    early: Vec<String>,
}

impl Emitter {
    fn id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    /// Emit a sequence leading to `next`; returns the id of its first node.
    fn seq(&mut self, seq: &[Block], next: &str) -> String {
        let mut next = next.to_string();
        for b in seq.iter().rev() {
            next = self.block(b, &next);
        }
        next
    }

    fn block(&mut self, b: &Block, next: &str) -> String {
        match b {
            Block::Task => {
                let id = self.id("t");
                self.nodes.push(format!("  {id}: {{ user_task: 'Task {id}', lane: staff, next: {next} }}"));
                id
            }
            Block::Multi { items, sequential, early } => {
                let id = self.id("m");
                let list: Vec<String> = (0..*items).map(|i| i.to_string()).collect();
                let mut multi = format!("for_each: '[{}]', as: item, sequential: {sequential}", list.join(", "));
                if let Some(k) = early {
                    write!(multi, ", complete_when: 'done >= {k}'").expect("write");
                    self.early.push(id.clone());
                }
                self.nodes.push(format!(
                    "  {id}: {{ user_task: 'Task {id}', lane: staff, next: {next}, multi_instance: {{ {multi} }} }}"
                ));
                id
            }
            Block::Script { var, add } => {
                let id = self.id("s");
                self.nodes.push(format!("  {id}: {{ script: 'v{var} = v{var} + {add};', next: {next} }}"));
                id
            }
            Block::Exclusive(branches) => {
                let id = self.id("x");
                let firsts: Vec<String> = branches.iter().map(|(_, _, s)| self.seq(s, next)).collect();
                let mut node = format!("  {id}:\n    exclusive:\n");
                let last = branches.len() - 1;
                for ((var, threshold, _), first) in branches.iter().zip(&firsts).take(last) {
                    writeln!(node, "      - {{ when: 'v{var} > {threshold}', next: {first} }}").expect("write");
                }
                write!(node, "    default: {}", firsts[last]).expect("write");
                self.nodes.push(node);
                id
            }
            Block::Inclusive(branches) => {
                let fork = self.id("o");
                let join = self.id("j");
                self.nodes.push(format!("  {join}: {{ join: {fork}, next: {next} }}"));
                let firsts: Vec<String> = branches.iter().map(|(_, _, s)| self.seq(s, &join)).collect();
                let mut node = format!("  {fork}:\n    inclusive:\n");
                let last = branches.len() - 1;
                for ((var, threshold, _), first) in branches.iter().zip(&firsts).take(last) {
                    writeln!(node, "      - {{ when: 'v{var} > {threshold}', next: {first} }}").expect("write");
                }
                write!(node, "    default: {}", firsts[last]).expect("write");
                self.nodes.push(node);
                self.fork_join.push((fork.clone(), join));
                fork
            }
            Block::Parallel(branches) => {
                let fork = self.id("f");
                let join = self.id("j");
                self.nodes.push(format!("  {join}: {{ join: {fork}, next: {next} }}"));
                let firsts: Vec<String> = branches.iter().map(|s| self.seq(s, &join)).collect();
                self.nodes.push(format!("  {fork}: {{ parallel: [{}] }}", firsts.join(", ")));
                self.fork_join.push((fork.clone(), join));
                fork
            }
        }
    }
}

struct Generated {
    yaml: String,
    fork_join: Vec<(String, String)>,
    early: Vec<String>,
}

fn to_yaml(program: &[Block]) -> Generated {
    let mut e = Emitter::default();
    let first = e.seq(program, "end");
    let mut yaml = String::from("id: prop\nlanes:\n  staff: { groups: [staff] }\nvariables:\n");
    for v in 0..VARS {
        writeln!(yaml, "  v{v}: {{ type: number, default: 0 }}").expect("write");
    }
    writeln!(yaml, "start: {{ next: {first} }}\nnodes:").expect("write");
    for n in &e.nodes {
        yaml.push_str(n);
        yaml.push('\n');
    }
    yaml.push_str("  end: { end: }\n");
    Generated { yaml, fork_join: e.fork_join, early: e.early }
}

fn start_vars(values: &[u8]) -> Vars {
    values.iter().enumerate().map(|(i, v)| (format!("v{i}"), json!(v))).collect()
}

/// Tokens are neither lost nor duplicated, in any state reachable by events: the
/// engine's own checker ([`Instance::check_invariants`]) plus what holds for these
/// processes in particular (only user tasks wait, no incidents, a known bound).
fn check_tokens(inst: &Instance, p: &Process, open_tasks: &[String], bound: usize) -> Result<(), TestCaseError> {
    if let Err(e) = inst.check_invariants(p) {
        return Err(TestCaseError::fail(e.to_string()));
    }
    // One token per open task and one open task per token; all tokens wait on tasks.
    let mut waiting = BTreeSet::new();
    for t in &inst.tokens {
        match &t.wait {
            Wait::Task { task, .. } => prop_assert!(waiting.insert(task.clone()), "two tokens wait on task {task}"),
            Wait::Scope { .. } => {}
            other => prop_assert!(false, "token {} waits on {other:?}", t.id),
        }
    }
    let open: BTreeSet<String> = open_tasks.iter().cloned().collect();
    prop_assert_eq!(open.len(), open_tasks.len(), "a task is listed twice");
    prop_assert_eq!(&waiting, &open, "tokens waiting on tasks vs open tasks");
    prop_assert!(inst.tokens.len() <= bound, "{} tokens, at most {bound} possible", inst.tokens.len());
    prop_assert!(inst.incidents.is_empty(), "incidents: {:?}", inst.incidents);
    Ok(())
}

fn check_history(engine: &Engine, id: u64, g: &Generated) -> Result<(), TestCaseError> {
    let history = engine.history(id).expect("history");
    let seqs: Vec<u32> = history.iter().map(|h| h.seq).collect();
    prop_assert_eq!(seqs, (0..history.len() as u32).collect::<Vec<_>>());
    let mut count: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut opened = BTreeSet::new();
    let mut completed = BTreeSet::new();
    for h in &history {
        *count.entry((h.event.name(), h.node.as_deref().unwrap_or("-"))).or_default() += 1;
        match &h.event {
            // Tasks of items withdrawn by an early completion are never completed.
            HistoryEvent::TaskOpened { .. } if g.early.iter().any(|n| h.node.as_deref() == Some(n.as_str())) => {}
            HistoryEvent::TaskOpened { task } => prop_assert!(opened.insert(task.clone()), "task {task} opened twice"),
            HistoryEvent::TaskCompleted { .. } if g.early.iter().any(|n| h.node.as_deref() == Some(n.as_str())) => {}
            HistoryEvent::TaskCompleted { task, .. } => {
                prop_assert!(completed.insert(task.clone()), "task {task} completed twice")
            }
            _ => {}
        }
    }
    prop_assert_eq!(&opened, &completed, "every opened task was completed, once");
    for (fork, join) in &g.fork_join {
        let forked = count.get(&("forked", fork.as_str())).copied().unwrap_or(0);
        let joined = count.get(&("joined", join.as_str())).copied().unwrap_or(0);
        prop_assert_eq!(forked, joined, "fork {} ran {} times, join {} fired {} times", fork, forked, join, joined);
        prop_assert!(forked <= 1, "no loops, so fork {} runs at most once", fork);
    }
    prop_assert_eq!(count.get(&("started", "-")).copied(), Some(1));
    prop_assert_eq!(count.get(&("completed", "-")).copied(), Some(1));
    prop_assert_eq!(count.get(&("ended", "end")).copied(), Some(1));
    Ok(())
}

fn open_tasks(engine: &Engine, id: u64) -> Vec<String> {
    let mut tasks: Vec<String> = engine
        .tasks(&TaskQuery { instance: Some(id), ..Default::default() })
        .expect("tasks")
        .into_iter()
        .map(|t| t.id)
        .collect();
    tasks.sort();
    tasks
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random processes, random completion orders (with claims and stale repeats
    /// mixed in): tokens never lost or duplicated, each join fires once.
    #[test]
    fn tokens_are_conserved(
        program in program(),
        values in prop::collection::vec(0..10u8, VARS as usize),
        ops in prop::collection::vec((any::<prop::sample::Index>(), 0..8u8), 0..80),
    ) {
        let g = to_yaml(&program);
        let engine = Engine::in_memory();
        if let Err(e) = engine.deploy("prop.yaml", &g.yaml) {
            prop_assert!(false, "generated process does not deploy: {e}\n{}", g.yaml);
        }
        let bound = width(&program);
        let process = engine.latest("prop").expect("deployed");
        let inst = engine.start("prop", start_vars(&values), StartOptions::default()).expect("start");
        let id = inst.id;
        check_tokens(&inst, &process, &open_tasks(&engine, id), bound)?;
        let mut done: Vec<String> = Vec::new();
        let mut ops = ops.into_iter();
        let mut events = 0;
        loop {
            let open = open_tasks(&engine, id);
            if open.is_empty() {
                break;
            }
            events += 1;
            prop_assert!(events <= 2 * task_nodes(&program) + 80, "too many events");
            let (pick, kind) = match ops.next() {
                Some((pick, kind)) => (Some(pick), kind),
                None => (None, 7),
            };
            let pick = |len: usize| pick.as_ref().map_or(0, |p| p.index(len));
            let before = engine.instance(id).expect("instance");
            match kind {
                // Repeat an already completed task: refused, nothing changes.
                0 if !done.is_empty() => {
                    let old = &done[pick(done.len())];
                    let err = engine.complete(old, "u", Vars::new(), Outcome::Next).unwrap_err();
                    prop_assert!(matches!(err, EngineError::Conflict(_)), "{err}");
                    prop_assert_eq!(&engine.instance(id).expect("instance"), &before);
                }
                // Claim by one user, a refused completion by another.
                1 => {
                    let task = open[pick(open.len())].clone();
                    engine.claim(&task, "alice").expect("claim");
                    let err = engine.complete(&task, "bob", Vars::new(), Outcome::Next).unwrap_err();
                    prop_assert!(matches!(err, EngineError::Conflict(_)), "{err}");
                }
                _ => {
                    let task = open[pick(open.len())].clone();
                    let claimed = matches!(
                        before.task_token(&task).map(|t| &t.wait),
                        Some(Wait::Task { assignee: Some(_), .. })
                    );
                    let user = if claimed { "alice" } else { "u" };
                    engine.complete(&task, user, Vars::new(), Outcome::Next).expect("complete");
                    done.push(task);
                }
            }
            let inst = engine.instance(id).expect("instance");
            check_tokens(&inst, &process, &open_tasks(&engine, id), bound)?;
            if !inst.tokens.is_empty() {
                prop_assert_eq!(inst.status, Status::Running);
            }
        }
        let inst = engine.instance(id).expect("instance");
        prop_assert_eq!(inst.status, Status::Completed, "{:#?}", inst);
        prop_assert!(inst.tokens.is_empty() && inst.joins.is_empty());
        check_history(&engine, id, &g)?;
    }

    /// The pure core is deterministic: the same events give the same state and
    /// the same transitions.
    #[test]
    fn core_is_deterministic(
        program in program(),
        values in prop::collection::vec(0..10u8, VARS as usize),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..60),
    ) {
        let g = to_yaml(&program);
        let loaded = load_str("prop.yaml", &g.yaml, &CompileOptions::default());
        let process = match loaded {
            Ok(l) => l.process,
            Err(d) => return Err(TestCaseError::fail(format!("does not load: {d}\n{}", g.yaml))),
        };
        let t0: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().expect("time");
        let (mut a, ta) = runtime::start(&process, 7, start_vars(&values), Some("u".into()), None, t0).expect("start");
        let (mut b, tb) = runtime::start(&process, 7, start_vars(&values), Some("u".into()), None, t0).expect("start");
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(ta, tb);
        let mut picks = picks.into_iter();
        let mut minute = 0;
        while !a.status.is_finished() {
            let mut open: Vec<String> = a
                .tokens
                .iter()
                .filter_map(|t| match &t.wait {
                    Wait::Task { task, .. } => Some(task.clone()),
                    _ => None,
                })
                .collect();
            open.sort();
            prop_assert!(!open.is_empty(), "running without open tasks: {:#?}", a);
            let task = picks.next().map(|i| i.get(&open).clone()).unwrap_or_else(|| open[0].clone());
            minute += 1;
            let now = t0 + chrono::Duration::minutes(minute);
            let event = Event::Complete { task, user: "u".into(), data: Vars::new(), outcome: Outcome::Next };
            let ta = runtime::step(&process, &mut a, event.clone(), now).expect("step");
            let tb = runtime::step(&process, &mut b, event, now).expect("step");
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(ta, tb);
        }
        prop_assert_eq!(a.status, Status::Completed);
    }
}

/// The engine's invariant checker is not vacuous: it rejects a lost token, a
/// duplicated token, a branch that both runs and has arrived, a full join that
/// still waits, and a finished instance that still holds a token.
#[test]
fn checker_catches_lost_and_duplicated_tokens() {
    let program = vec![Block::Parallel(vec![vec![Block::Task], vec![Block::Task, Block::Task], vec![Block::Task]])];
    let g = to_yaml(&program);
    let engine = Engine::in_memory();
    engine.deploy("prop.yaml", &g.yaml).expect("deploy");
    let p = engine.latest("prop").expect("deployed");
    let inst = engine.start("prop", Vars::new(), StartOptions::default()).expect("start");
    let first = open_tasks(&engine, inst.id)[0].clone();
    let inst = engine.complete(&first, "u", Vars::new(), Outcome::Next).expect("complete");
    let open = open_tasks(&engine, inst.id);
    let bound = width(&program);
    assert!(check_tokens(&inst, &p, &open, bound).is_ok());
    assert_eq!(inst.check_invariants(&p), Ok(()));
    assert_eq!(inst.joins.len(), 1, "one branch arrived: {inst:#?}");

    let mut lost = inst.clone();
    lost.tokens.pop();
    assert!(lost.check_invariants(&p).is_err(), "a branch with neither a token nor an arrival");
    assert!(check_tokens(&lost, &p, &open, bound).is_err(), "lost token with its task still open");

    let mut twice = inst.clone();
    let mut copy = twice.tokens[0].clone();
    copy.id = 999;
    copy.wait = Wait::Task { task: "x-1".into(), assignee: None };
    twice.tokens.push(copy);
    let err = twice.check_invariants(&p).expect_err("two tokens in one branch");
    assert!(err.what.contains("duplicated") || err.what.contains("beyond the counter"), "{err}");
    twice.seq = 1000;
    let err = twice.check_invariants(&p).expect_err("two tokens in one branch");
    assert!(err.what.contains("duplicated"), "{err}");

    let mut both = inst.clone();
    let running = both.tokens[0].scope.last().expect("inside the fork").branch;
    both.joins[0].arrived.push(running);
    assert!(both.check_invariants(&p).is_err(), "a branch running and arrived at once");

    let mut full = inst.clone();
    let w = full.joins[0].width;
    full.joins[0].arrived = (0..w).collect();
    assert!(full.check_invariants(&p).is_err(), "a full join that did not fire");

    let mut ended = inst.clone();
    ended.status = Status::Completed;
    ended.ended_at = Some(ended.started_at);
    assert!(ended.check_invariants(&p).is_err(), "completed while tokens wait");
}
