//! One instance from V to W: map every piece of state, collect findings, then
//! re-arm what must be re-armed with the runtime's own arming code.

use super::{compare, Finding, InstancePlan, Migrated, Migration, Move, TaskChange, TimerChoice};
use crate::expr::Env;
use crate::process::{Node, NodeKind, Process};
use crate::runtime::step::for_kinds::*;
use crate::runtime::{HistoryEvent, Instance};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Most change lines the `migrated` history line lists (the plan lists all).
const MAX_HISTORY_CHANGES: usize = 50;

/// Something armed that must be armed again under W's definition.
enum Rearm {
    /// The boundary timers and messages of token `token` (a task: its due date).
    Boundaries { token: u32, task_due: Option<DateTime<Utc>> },
    /// The timer of a timer catch.
    Timer { token: u32 },
    /// The subscription of a message catch.
    Message { token: u32 },
    /// The boundaries of fork activation `activation`.
    Fork { activation: u32 },
}

struct Cx<'m, 'a> {
    m: &'m Migration<'a>,
    plan: InstancePlan,
    rearm: Vec<Rearm>,
    tasks: Vec<TaskChange>,
    unclaimed: Vec<String>,
}

impl<'a> Cx<'_, 'a> {
    /// A problem, once (every token of a broken fork would report it again).
    fn problem(&mut self, code: &str, message: String) {
        let f = Finding { code: code.into(), message };
        if !self.plan.problems.contains(&f) {
            self.plan.problems.push(f);
        }
    }

    fn warn(&mut self, code: &str, message: String) {
        let f = Finding { code: code.into(), message };
        if !self.plan.warnings.contains(&f) {
            self.plan.warnings.push(f);
        }
    }

    fn moved(&mut self, what: &str, id: impl ToString, from: &str, to: &str, note: Option<String>) {
        self.plan.moves.push(Move { what: what.into(), id: id.to_string(), from: from.into(), to: to.into(), note });
    }

    /// W's node for V's node `old`, or a `node-gone` problem naming `what`.
    fn node(&mut self, old: &str, what: &str) -> Option<(usize, &'a Node)> {
        let m = self.m;
        let to: &'a Process = m.to;
        let new = m.target(old);
        match to.node(new) {
            Some(n) => Some(n),
            None => {
                let how = if new == old {
                    "no longer exists".to_string()
                } else {
                    format!("is mapped to `{new}`, which does not exist")
                };
                self.problem(
                    "node-gone",
                    format!("{what} is at `{old}`, which {how} in version {}: add `--map {old}=<node>`", m.to.version),
                );
                None
            }
        }
    }
}

pub(super) fn instance(
    m: &Migration,
    inst: &Instance,
    tasks: &BTreeMap<String, Task>,
    by: &str,
    now: DateTime<Utc>,
) -> (InstancePlan, Option<Migrated>) {
    let plan = InstancePlan {
        instance: inst.id,
        revision: inst.history_len,
        business_key: inst.business_key.clone(),
        status: inst.status,
        moves: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let mut cx = Cx { m, plan, rearm: Vec::new(), tasks: Vec::new(), unclaimed: Vec::new() };
    if inst.process != m.from.id || inst.version != m.from.version {
        let msg = format!("is on {} version {}, not version {}", inst.process, inst.version, m.from.version);
        cx.problem("wrong-version", msg);
        return (cx.plan, None);
    }
    if inst.status.is_finished() {
        cx.problem("not-running", format!("is {}", inst.status.as_str()));
        return (cx.plan, None);
    }
    let mut out = inst.clone();
    out.version = m.to.version;
    variables(&mut cx, inst, &mut out, now);
    for i in 0..out.tokens.len() {
        token(&mut cx, &mut out, i, tasks);
    }
    structures(&mut cx, &mut out);
    if !cx.plan.problems.is_empty() {
        return (cx.plan, None);
    }
    let transition = {
        let mut run = Run::new(m.to, &mut out, now);
        let changes = summary(&cx.plan.moves);
        run.log(None, Some(by.to_string()), HistoryEvent::Migrated { from: m.from.version, to: m.to.version, changes });
        for task in std::mem::take(&mut cx.unclaimed) {
            // The engine clears the record's assignee with the rest of the task's
            // rewrite ([`TaskChange::unclaim`]); the token forgets it here.
            let node = run.inst.task_token(&task).map(|t| t.node.clone());
            if let Some(i) = run.inst.task_token_index(&task) {
                run.inst.tokens[i].wait = Wait::Task { task: task.clone(), assignee: None };
            }
            run.log(node, Some(by.to_string()), HistoryEvent::TaskAssigned { task, to: None });
        }
        for r in std::mem::take(&mut cx.rearm) {
            if let Err(msg) = rearm(&mut run, r) {
                cx.problem("rearm-failed", msg);
            }
        }
        std::mem::take(&mut run.out)
    };
    if let Err(e) = out.check_invariants(m.to) {
        cx.problem("invariant", format!("on version {} it would break an invariant: {}", m.to.version, e.what));
    }
    if !cx.plan.problems.is_empty() {
        return (cx.plan, None);
    }
    let tasks = std::mem::take(&mut cx.tasks);
    (cx.plan, Some(Migrated { instance: out, transition, tasks }))
}

/// The change lines of the `migrated` history entry.
fn summary(moves: &[Move]) -> Vec<String> {
    let mut lines: Vec<String> = moves
        .iter()
        .filter(|m| m.from != m.to || m.note.is_some())
        .map(|m| {
            let note = m.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            format!("{} {}: {} → {}{note}", m.what, m.id, m.from, m.to)
        })
        .collect();
    if lines.len() > MAX_HISTORY_CHANGES {
        let more = lines.len() - MAX_HISTORY_CHANGES;
        lines.truncate(MAX_HISTORY_CHANGES);
        lines.push(format!("… and {more} more"));
    }
    lines
}

/// Variables W does not declare are dropped; values that do not fit W's type are
/// converted (`set`), else replaced by the plan's default, else invalid.
fn variables(cx: &mut Cx, inst: &Instance, out: &mut Instance, now: DateTime<Utc>) {
    let m = cx.m;
    let (from, to) = (m.from, m.to);
    for (name, v) in &inst.vars {
        if !to.vars.contains_key(name) {
            out.vars.remove(name);
            let v = if from.vars.get(name).is_some_and(|s| s.sensitive) {
                &Value::String(crate::sensitive::MASK.into())
            } else {
                v
            };
            cx.warn(
                "variable-dropped",
                format!("`{name}` = {} is not declared in version {}: dropped", short(v), to.version),
            );
            cx.moved("variable", name, "declared", "dropped", None);
        }
    }
    let settings = to.setting_env();
    let env = Env {
        vars: &inst.vars,
        declared: &m.names,
        now,
        instance: inst.id,
        started_by: inst.started_by.as_deref(),
        extra: &settings,
    };
    for (name, spec) in &to.vars {
        // A sensitive value never reaches the plan or the history line.
        let hidden = spec.sensitive || from.vars.get(name).is_some_and(|s| s.sensitive);
        let short = |v: &Value| if hidden { crate::sensitive::MASK.to_string() } else { short(v) };
        let old = inst.vars.get(name).filter(|v| !v.is_null());
        let default = m.spec.defaults.get(name);
        let was = from.vars.get(name).map(|s| s.ty.name()).unwrap_or("undeclared");
        let now_ty = spec.ty.name();
        let conversion = m.conversions.iter().find(|(n, _)| n == name).map(|(_, e)| e);
        match (old, conversion) {
            (Some(v), Some(e)) => {
                let converted = e.eval(&env).map_err(|err| err.to_string()).and_then(|nv| spec.check(&nv).map(|()| nv));
                match (converted, default) {
                    (Ok(nv), _) => {
                        let note = format!("{} → {}", short(v), short(&nv));
                        out.vars.insert(name.clone(), nv);
                        cx.moved("variable", name, was, now_ty, Some(format!("converted: {note}")));
                    }
                    (Err(err), Some(d)) => {
                        out.vars.insert(name.clone(), d.clone());
                        cx.warn("conversion-failed", format!("`{name}`: `{}` failed ({err}); the default {} is used", e.source.trim(), short(d)));
                        cx.moved("variable", name, was, now_ty, Some(format!("default {}", short(d))));
                    }
                    (Err(err), None) => cx.problem(
                        "conversion-failed",
                        format!("`{name}` = {}: `{}` gives no {now_ty} value ({err}); fix the expression or add `--default {name}=<value>`", short(v), e.source.trim()),
                    ),
                }
            }
            (Some(v), None) => match (spec.check(v), default) {
                (Ok(()), _) => {
                    if was != now_ty {
                        cx.moved("variable", name, was, now_ty, Some("kept: the value fits".into()));
                    }
                }
                (Err(_), Some(d)) => {
                    out.vars.insert(name.clone(), d.clone());
                    cx.moved("variable", name, was, now_ty, Some(format!("default {} replaces {}", short(d), short(v))));
                }
                (Err(err), None) => cx.problem(
                    "type-changed",
                    format!("`{name}` = {} does not fit version {}'s {now_ty} ({err}): add `--set {name}=<expression>` or `--default {name}=<value>`", short(v), to.version),
                ),
            },
            (None, _) => {
                if let Some(d) = default.or(spec.default.as_ref()) {
                    out.vars.insert(name.clone(), d.clone());
                    cx.moved("variable", name, "unset", now_ty, Some(format!("default {}", short(d))));
                }
            }
        }
    }
}

/// A value as a short text for reports (values may be large or sensitive-looking;
/// reports show at most 60 characters).
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// Whether wait `w` can be held at a node of `kind` (as `check_invariants` says).
fn fits(w: &Wait, node: &Node) -> bool {
    matches!(
        (w, &node.kind),
        (Wait::Incident { .. }, _)
            | (Wait::Task { .. }, NodeKind::UserTask(_))
            | (Wait::Job { .. }, NodeKind::Service(_))
            | (Wait::Timer { .. }, NodeKind::TimerCatch { .. })
            | (Wait::Message { .. }, NodeKind::MessageCatch { .. })
            | (Wait::Events { .. }, NodeKind::EventBased { .. })
            | (Wait::Call { .. }, NodeKind::Call(_))
    ) || matches!(w, Wait::Scope { .. }) && (node.multi.is_some() || matches!(node.kind, NodeKind::SubProcess(_)))
}

fn wait_name(w: &Wait) -> &'static str {
    match w {
        Wait::Task { .. } => "a task",
        Wait::Job { .. } => "a connector call",
        Wait::Incident { .. } => "an incident",
        Wait::Timer { .. } => "a timer",
        Wait::Message { .. } => "a message",
        Wait::Events { .. } => "an event-based gateway",
        Wait::Call { .. } => "a called instance",
        Wait::Scope { .. } => "its items or sub-process run",
    }
}

/// One token: its node, its frames, what it waits on and what it armed.
fn token(cx: &mut Cx, out: &mut Instance, i: usize, tasks: &BTreeMap<String, Task>) {
    let m = cx.m;
    let t = out.tokens[i].clone();
    let Some((_, vnode)) = m.from.node(&t.node) else {
        cx.problem(
            "node-gone",
            format!("token {} is at `{}`, which version {} does not have (corrupt?)", t.id, t.node, m.from.version),
        );
        return;
    };
    let Some((wix, wnode)) = cx.node(&t.node, &format!("token {} ({})", t.id, wait_name(&t.wait))) else { return };
    let new_id = wnode.id.clone();
    if !fits(&t.wait, wnode) {
        cx.problem(
            "wait-mismatch",
            format!(
                "token {} waits on {} at `{}`, but `{new_id}` is a {} node in version {}",
                t.id,
                wait_name(&t.wait),
                t.node,
                wnode.kind.name(),
                m.to.version
            ),
        );
        return;
    }
    let scope = frames(cx, &t.scope, &format!("token {}", t.id));
    check_scope(cx, t.id, &new_id, wix, &scope);
    let mut note = None;
    match &t.wait {
        Wait::Task { task, assignee } => {
            task_change(cx, task, assignee.as_deref(), vnode, wnode, tasks);
            cx.moved("task", task, &t.node, &new_id, None);
        }
        Wait::Timer { job } => {
            if let (NodeKind::TimerCatch { when: a, .. }, NodeKind::TimerCatch { when: b, .. }) =
                (&vnode.kind, &wnode.kind)
            {
                let (a, b) = (compare::when(a), compare::when(b));
                if a != b {
                    note = Some(timer_choice(cx, &format!("timer {job} of `{new_id}`"), &a, &b));
                    if m.spec.timers == TimerChoice::Rearm {
                        cx.rearm.push(Rearm::Timer { token: t.id });
                    }
                }
            }
            cx.moved("timer", job, &t.node, &new_id, note.clone());
        }
        Wait::Message { name, key } => {
            let (a, b) = (compare::catch(&vnode.kind), compare::catch(&wnode.kind));
            if let (Some(a), Some(b)) = (a, b) {
                let key_of = |s: &crate::process::MessageSpec| s.key.as_ref().map(|k| k.source.trim().to_string());
                if a.name != b.name || (key_of(a) != key_of(b) && m.spec.timers == TimerChoice::Rearm) {
                    cx.rearm.push(Rearm::Message { token: t.id });
                    note = Some(format!("re-subscribed as `{}`", b.name));
                } else if key_of(a) != key_of(b) {
                    cx.warn(
                        "message-changed",
                        format!(
                            "token {} keeps waiting for `{name}` with key `{key}` (the key expression changed)",
                            t.id
                        ),
                    );
                }
            }
            cx.moved("message", format!("{name}/{key}"), &t.node, &new_id, note.clone());
        }
        Wait::Events { .. } => {
            if compare::gateway(&vnode.kind) != compare::gateway(&wnode.kind) {
                cx.problem(
                    "gateway-changed",
                    format!("token {} waits at event-based gateway `{}`, whose triggers changed in version {}; let it move on first or map it to another node", t.id, t.node, m.to.version),
                );
            }
        }
        Wait::Call { child, .. } => {
            if let (NodeKind::Call(a), NodeKind::Call(b)) = (&vnode.kind, &wnode.kind) {
                if a.process != b.process {
                    let child = child.map(|c| format!(" (instance {c})")).unwrap_or_default();
                    cx.warn(
                        "call-changed",
                        format!(
                            "token {} keeps waiting for its `{}` call{child}; version {} calls `{}`",
                            t.id, a.process, m.to.version, b.process
                        ),
                    );
                }
            }
        }
        Wait::Incident { incident } => cx.moved("incident", incident, &t.node, &new_id, None),
        Wait::Job { .. } | Wait::Scope { .. } => {}
    }
    if !matches!(t.wait, Wait::Incident { .. } | Wait::Events { .. }) {
        let item = scope.last().is_some_and(|f| f.body && f.fork == new_id);
        let (vb, wb) = if item { (&[][..], &[][..]) } else { (vnode.kind.boundary(), wnode.kind.boundary()) };
        if let Some(n) = boundary_change(cx, &format!("the boundaries of `{new_id}` (token {})", t.id), vb, wb) {
            let task_due = match &t.wait {
                Wait::Task { task, .. } => tasks.get(task).and_then(|r| r.due),
                _ => None,
            };
            cx.rearm.push(Rearm::Boundaries { token: t.id, task_due });
            note = Some(n);
        }
    }
    cx.moved("token", t.id, &t.node, &new_id, note);
    let tok = &mut out.tokens[i];
    tok.node = new_id;
    tok.scope = scope;
}

/// What to do with armed boundaries whose definition differs: `Some(note)` when
/// they are re-armed (always when their slots changed: armed timers name a slot).
fn boundary_change(
    cx: &mut Cx,
    what: &str,
    vb: &[crate::process::Boundary],
    wb: &[crate::process::Boundary],
) -> Option<String> {
    if compare::boundary_defs(vb) == compare::boundary_defs(wb) {
        return None;
    }
    if compare::boundary_shape(vb) != compare::boundary_shape(wb) {
        cx.warn("timer-changed", format!("{what} changed in version {}: re-armed as defined there", cx.m.to.version));
        return Some("boundaries re-armed".into());
    }
    match cx.m.spec.timers {
        TimerChoice::Keep => {
            cx.warn(
                "timer-changed",
                format!("{what} changed in version {}: kept as armed (`--timers rearm` re-arms them)", cx.m.to.version),
            );
            None
        }
        TimerChoice::Rearm => Some("boundaries re-armed".into()),
    }
}

fn timer_choice(cx: &mut Cx, what: &str, old: &str, new: &str) -> String {
    match cx.m.spec.timers {
        TimerChoice::Keep => {
            cx.warn(
                "timer-changed",
                format!("{what} was armed {old}; version {} says {new}: kept as armed", cx.m.to.version),
            );
            "kept".into()
        }
        TimerChoice::Rearm => {
            cx.warn("timer-changed", format!("{what} was armed {old}; re-armed {new} from now"));
            "re-armed".into()
        }
    }
}

/// The open task on W's node: title and lane from W; groups kept or re-assigned.
fn task_change(
    cx: &mut Cx,
    task: &str,
    assignee: Option<&str>,
    vnode: &Node,
    wnode: &Node,
    tasks: &BTreeMap<String, Task>,
) {
    let m = cx.m;
    let NodeKind::UserTask(spec) = &wnode.kind else { return };
    let lane = wnode.lane.clone().unwrap_or_default();
    let new_groups = m.to.lane_groups(&lane).to_vec();
    let old_groups = match tasks.get(task) {
        Some(r) => r.groups.clone(),
        None => m.from.lane_groups(vnode.lane.as_deref().unwrap_or_default()).to_vec(),
    };
    let mut change = TaskChange {
        task: task.into(),
        node: wnode.id.clone(),
        title: spec.title.clone(),
        lane,
        groups: None,
        unclaim: false,
    };
    if old_groups != new_groups {
        let (from, to) = (old_groups.join(","), new_groups.join(","));
        match m.spec.lanes {
            super::LaneChoice::Keep => cx.warn(
                "lane-groups-changed",
                format!("task {task}: its lane's groups are {to} in version {}; it stays with {from} (`--lanes reassign` moves it)", m.to.version),
            ),
            super::LaneChoice::Reassign => {
                cx.warn("lane-groups-changed", format!("task {task}: moves from groups {from} to {to}{}", if assignee.is_some() { ", unclaimed" } else { "" }));
                change.groups = Some(new_groups);
                if assignee.is_some() {
                    change.unclaim = true;
                    cx.unclaimed.push(task.into());
                }
            }
        }
    }
    cx.tasks.push(change);
}

/// Frames with W's node ids, each checked: a fork is still a fork with as many
/// branches as the activation runs; a body frame is still a multi-instance node or
/// a sub-process.
fn frames(cx: &mut Cx, scope: &[Frame], what: &str) -> Vec<Frame> {
    let m = cx.m;
    let mut out = Vec::with_capacity(scope.len());
    for f in scope {
        let Some((_, n)) = cx.node(&f.fork, &format!("{what} (inside `{}`)", f.fork)) else { continue };
        let mut nf = f.clone();
        nf.fork = n.id.clone();
        if f.body {
            if n.multi.is_none() && !matches!(n.kind, NodeKind::SubProcess(_)) {
                cx.problem("scope-changed", format!("{what} runs inside `{}`, which is no longer a multi-instance node or sub-process in version {}", f.fork, m.to.version));
            }
        } else {
            match &n.kind {
                NodeKind::Parallel { branches, .. } if branches.len() != usize::from(f.width) => cx.problem(
                    "branch-gone",
                    format!("{what} is in a branch of fork `{}` that runs {} branches; version {} has {}: its join would wait for a branch that is gone", f.fork, f.width, m.to.version, branches.len()),
                ),
                NodeKind::Inclusive { branches, default, .. }
                    if branches.len() + usize::from(default.is_some()) < usize::from(f.width) =>
                {
                    cx.problem("branch-gone", format!("{what} is in fork `{}` with {} branches taken; version {} has fewer", f.fork, f.width, m.to.version))
                }
                k if !k.is_fork() => cx.problem("scope-changed", format!("{what} runs inside fork `{}`, which is a {} node in version {}", f.fork, k.name(), m.to.version)),
                _ => {}
            }
        }
        out.push(nf);
    }
    out
}

/// A token at W's node `wix` must carry the frames the compiler proves for it.
fn check_scope(cx: &mut Cx, token: u32, node: &str, wix: usize, scope: &[Frame]) {
    let m = cx.m;
    let mut have: Vec<&str> = scope.iter().map(|f| f.fork.as_str()).collect();
    if scope.last().is_some_and(|f| f.body && f.fork == node) {
        have.pop();
    }
    let want: Option<Vec<&str>> =
        m.scopes[wix].as_ref().map(|s| s.iter().map(|&ix| m.to.nodes[ix].id.as_str()).collect());
    match want {
        None => cx.problem("scope-changed", format!("token {token} would be at `{node}`, which no path reaches in version {}", m.to.version)),
        Some(want) if want != have => cx.problem(
            "scope-changed",
            format!("token {token} is inside [{}] but `{node}` is inside [{}] in version {}: map it to a node of the same fork", have.join(", "), want.join(", "), m.to.version),
        ),
        Some(_) => {}
    }
}

/// Joins, fork watches, multi-instance records, locals and incidents: node ids
/// mapped and checked against W.
fn structures(cx: &mut Cx, out: &mut Instance) {
    let m = cx.m;
    let mut joins = std::mem::take(&mut out.joins);
    for j in &mut joins {
        let what = format!("join `{}` (activation {})", j.join, j.activation);
        let Some((_, n)) = cx.node(&j.join, &what) else { continue };
        let fork =
            out.tokens.iter().flat_map(|t| &t.scope).find(|f| f.activation == j.activation).map(|f| f.fork.clone());
        match &n.kind {
            NodeKind::Join { fork: fix, .. } => {
                let wfork = &m.to.nodes[*fix];
                if fork.as_deref().is_some_and(|f| f != wfork.id) {
                    cx.problem(
                        "scope-changed",
                        format!(
                            "{what} would close fork `{}` in version {}, not `{}`",
                            wfork.id,
                            m.to.version,
                            fork.unwrap_or_default()
                        ),
                    );
                }
                if let NodeKind::Parallel { branches, .. } = &wfork.kind {
                    if branches.len() != usize::from(j.width) {
                        cx.problem(
                            "branch-gone",
                            format!(
                                "{what} waits for {} branches ({} arrived); fork `{}` has {} in version {}",
                                j.width,
                                j.arrived.len(),
                                wfork.id,
                                branches.len(),
                                m.to.version
                            ),
                        );
                    }
                }
            }
            k => cx.problem("scope-changed", format!("{what} is a {} node in version {}", k.name(), m.to.version)),
        }
        let new = n.id.clone();
        cx.moved("join", j.activation, &j.join, &new, Some(format!("{} of {} arrived", j.arrived.len(), j.width)));
        j.join = new;
        j.scope = frames(cx, &j.scope, &what);
    }
    out.joins = joins;
    let mut forks = std::mem::take(&mut out.forks);
    for w in &mut forks {
        let what = format!("the boundaries of fork `{}` (activation {})", w.fork, w.activation);
        let Some((_, vn)) = m.from.node(&w.fork) else { continue };
        let Some((_, n)) = cx.node(&w.fork, &what) else { continue };
        let new = n.id.clone();
        if !n.kind.is_fork() {
            cx.problem(
                "scope-changed",
                format!("{what}: `{new}` is a {} node in version {}", n.kind.name(), m.to.version),
            );
            continue;
        }
        let note = boundary_change(cx, &what, vn.kind.boundary(), n.kind.boundary());
        if note.is_some() {
            cx.rearm.push(Rearm::Fork { activation: w.activation });
        }
        cx.moved("fork", w.activation, &w.fork, &new, note);
        w.fork = new;
        w.scope = frames(cx, &w.scope, &what);
    }
    out.forks = forks;
    let mut multis = std::mem::take(&mut out.multis);
    for mi in &mut multis {
        let what = format!("the items of `{}` (activation {})", mi.node, mi.activation);
        let Some((_, n)) = cx.node(&mi.node, &what) else { continue };
        let new = n.id.clone();
        let mut allowed: Vec<&str> = Vec::new();
        if let Some(spec) = &n.multi {
            allowed.push(&spec.item);
            allowed.extend(spec.index.as_deref());
        }
        if let NodeKind::SubProcess(s) = &n.kind {
            allowed.extend(s.locals.iter().map(String::as_str));
        }
        for l in out.locals.iter().filter(|l| l.activation == mi.activation) {
            for k in l.vars.keys().filter(|k| !allowed.contains(&k.as_str())) {
                cx.problem(
                    "local-gone",
                    format!(
                        "{what}: item {} holds local `{k}`, which `{new}` does not declare in version {}",
                        l.branch, m.to.version
                    ),
                );
            }
        }
        cx.moved("body", mi.activation, &mi.node, &new, Some(format!("{} of {} items done", mi.done, mi.total)));
        mi.node = new;
    }
    out.multis = multis;
    for inc in &mut out.incidents {
        inc.node = m.target(&inc.node).to_string();
    }
}

/// Arm again under W's definition (the old job or subscription withdrawn in the
/// same commit).
fn rearm(run: &mut Run, r: Rearm) -> Result<(), String> {
    let p: &Process = run.p;
    match r {
        Rearm::Boundaries { token, task_due } => {
            let i = index(run, token)?;
            let t = &mut run.inst.tokens[i];
            let (timers, listens) = (std::mem::take(&mut t.timers), std::mem::take(&mut t.listens));
            let (node, scope) = (t.node.clone(), t.scope.clone());
            run.withdraw(token, &timers, &listens);
            let (_, n) = p.node(&node).ok_or_else(|| format!("`{node}` is not a node"))?;
            let item = scope.last().is_some_and(|f| f.body && f.fork == node);
            let bs = if item { &[][..] } else { n.kind.boundary() };
            run.enter(&scope);
            let armings =
                run.prepare_boundaries(bs, task_due).map_err(|e| format!("token {token} at `{node}`: {e}"))?;
            let (timers, listens) = run.arm_prepared(token, &node, armings);
            let t = &mut run.inst.tokens[i];
            t.timers = timers;
            t.listens = listens;
        }
        Rearm::Timer { token } => {
            let i = index(run, token)?;
            let t = run.inst.tokens[i].clone();
            let (_, n) = p.node(&t.node).ok_or_else(|| format!("`{}` is not a node", t.node))?;
            let (NodeKind::TimerCatch { when, .. }, Wait::Timer { job }) = (&n.kind, &t.wait) else {
                return Err(format!("token {token} is not at a timer"));
            };
            run.enter(&t.scope);
            let due = run.timer_due(when, None).map_err(|e| format!("token {token} at `{}`: {e}", t.node))?;
            run.out.commands.push(Command::CancelJob { job: job.clone() });
            let job = run.schedule_timer(token, &t.node, due);
            run.inst.tokens[i].wait = Wait::Timer { job };
        }
        Rearm::Message { token } => {
            let i = index(run, token)?;
            let t = run.inst.tokens[i].clone();
            let (_, n) = p.node(&t.node).ok_or_else(|| format!("`{}` is not a node", t.node))?;
            let (Some(spec), Wait::Message { name, key }) = (compare::catch(&n.kind), &t.wait) else {
                return Err(format!("token {token} is not at a message catch"));
            };
            run.enter(&t.scope);
            let new_key = run.message_key(spec).map_err(|e| format!("token {token} at `{}`: {e}", t.node))?;
            run.out.commands.push(Command::Unsubscribe { token, name: name.clone(), key: key.clone() });
            run.subscribe(token, &t.node, &spec.name, &new_key);
            run.inst.tokens[i].wait = Wait::Message { name: spec.name.clone(), key: new_key };
        }
        Rearm::Fork { activation } => {
            let i = run.inst.forks.iter().position(|w| w.activation == activation).ok_or("fork watch gone")?;
            let w = &mut run.inst.forks[i];
            let (timers, listens) = (std::mem::take(&mut w.timers), std::mem::take(&mut w.listens));
            let (fork, scope) = (w.fork.clone(), w.scope.clone());
            run.withdraw(activation, &timers, &listens);
            let (_, n) = p.node(&fork).ok_or_else(|| format!("`{fork}` is not a node"))?;
            run.enter(&scope);
            let armings = run.prepare_boundaries(n.kind.boundary(), None).map_err(|e| format!("fork `{fork}`: {e}"))?;
            let (timers, listens) = run.arm_prepared(activation, &fork, armings);
            if timers.is_empty() && listens.is_empty() {
                run.inst.forks.remove(i);
            } else {
                let w = &mut run.inst.forks[i];
                w.timers = timers;
                w.listens = listens;
            }
        }
    }
    Ok(())
}

fn index(run: &Run, token: u32) -> Result<usize, String> {
    run.inst.tokens.iter().position(|t| t.id == token).ok_or_else(|| format!("token {token} gone"))
}
