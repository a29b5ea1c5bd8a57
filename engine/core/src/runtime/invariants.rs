//! What must hold of every stored instance, whatever events it has seen.
//!
//! [`Instance::check_invariants`] is asserted (`debug_assert!`) by the engine after
//! every step and checked by the property tests and the seeded simulation
//! ([`crate::sim`]) after every action. It reads only the instance and its process:
//! the store projections (task and job records) are checked by the simulation.

use super::state::{Instance, Status, Wait};
use crate::process::{NodeKind, Process};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// The first broken invariant found, with what it saw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instance {instance}: {what}")]
pub struct InvariantViolation {
    pub instance: u64,
    pub what: String,
}

macro_rules! ensure {
    ($inst:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(InvariantViolation { instance: $inst.id, what: format!($($fmt)+) });
        }
    };
}

impl Instance {
    /// Tokens are conserved and every wait is consistent with the process:
    ///
    /// - a finished instance holds no token, join or incident, and has an end time;
    ///   unread circulation tasks may outlive a completed instance, not a cancelled one;
    ///   a running one has no incident, one in `incident` status has some;
    /// - token, incident, task, job and timer ids are unique, each token waits on
    ///   what its node can wait for, and each incident stops exactly its token;
    /// - fork bookkeeping: every branch of a live fork activation has a token or has
    ///   arrived at its join (none lost); no branch arrives twice; a join still
    ///   waiting is not full (so each join fires once); one branch holds at most one
    ///   token on its main path (none duplicated; reminder side paths aside).
    pub fn check_invariants(&self, p: &Process) -> Result<(), InvariantViolation> {
        ensure!(self, self.history_len > 0, "no history");
        self.check_unread(p)?;
        if self.status.is_finished() {
            ensure!(self, self.tokens.is_empty(), "{} but holds tokens {:?}", self.status.as_str(), self.tokens);
            ensure!(self, self.joins.is_empty(), "{} but waits at joins {:?}", self.status.as_str(), self.joins);
            ensure!(self, self.incidents.is_empty(), "{} with open incidents", self.status.as_str());
            ensure!(
                self,
                self.forks.is_empty(),
                "{} with fork boundaries armed {:?}",
                self.status.as_str(),
                self.forks
            );
            ensure!(
                self,
                self.multis.is_empty() && self.locals.is_empty(),
                "{} with items running",
                self.status.as_str()
            );
            ensure!(self, self.ended_at.is_some(), "{} without an end time", self.status.as_str());
            return Ok(());
        }
        ensure!(self, self.ended_at.is_none(), "{} with an end time", self.status.as_str());
        ensure!(self, !self.tokens.is_empty(), "{} without a token (stuck)", self.status.as_str());
        match self.status {
            Status::Running => ensure!(self, self.incidents.is_empty(), "running with incidents {:?}", self.incidents),
            _ => ensure!(self, !self.incidents.is_empty(), "incident status without an incident"),
        }
        self.check_waits(p)?;
        self.check_incidents()?;
        self.check_forks(p)?;
        self.check_items()
    }

    /// Circulations: each unread task is listed once, at a `circulate` node, with no
    /// token waiting on it; a cancelled instance has withdrawn them all.
    fn check_unread(&self, p: &Process) -> Result<(), InvariantViolation> {
        ensure!(
            self,
            self.status != Status::Cancelled || self.unread.is_empty(),
            "cancelled with unread circulation tasks {:?}",
            self.unread
        );
        let mut seen = HashSet::new();
        for r in &self.unread {
            ensure!(self, seen.insert(r.task.as_str()), "unread task {} listed twice", r.task);
            let at_circulation = matches!(p.node(&r.node).map(|(_, n)| &n.kind), Some(NodeKind::Circulate(_)));
            ensure!(self, at_circulation, "unread task {} at `{}`, which is not a circulation", r.task, r.node);
            ensure!(self, self.task_token_index(&r.task).is_none(), "a token waits on read task {}", r.task);
        }
        Ok(())
    }

    /// Multi-instance bookkeeping: one body token per activation, every started
    /// and unfinished item has exactly its token and its locals (none lost, none
    /// doubled), the counts agree.
    fn check_items(&self) -> Result<(), InvariantViolation> {
        for t in &self.tokens {
            if let Wait::Scope { activation } = t.wait {
                ensure!(
                    self,
                    self.multis.iter().any(|m| m.activation == activation && m.node == t.node),
                    "token {} waits for the items of activation {activation}, which are not running",
                    t.id
                );
            }
        }
        let mut seen = HashSet::new();
        for m in &self.multis {
            ensure!(self, seen.insert(m.activation), "two multi-instance records for activation {}", m.activation);
            let bodies = self
                .tokens
                .iter()
                .filter(|t| matches!(t.wait, Wait::Scope { activation } if activation == m.activation))
                .count();
            ensure!(self, bodies == 1, "activation {} of `{}` has {bodies} body tokens", m.activation, m.node);
            ensure!(
                self,
                m.done <= m.started && m.started <= m.total,
                "items of `{}`: {} done, {} started, {} in all",
                m.node,
                m.done,
                m.started,
                m.total
            );
            ensure!(
                self,
                m.started as usize + m.pending.len() == m.total as usize,
                "items of `{}`: {} started and {} pending of {}",
                m.node,
                m.started,
                m.pending.len(),
                m.total
            );
            ensure!(
                self,
                m.results.is_empty() || m.results.len() == m.total as usize,
                "items of `{}`: {} results for {} items",
                m.node,
                m.results.len(),
                m.total
            );
            let running: BTreeSet<u16> = self
                .tokens
                .iter()
                .filter_map(|t| t.scope.iter().find(|f| f.body && f.activation == m.activation))
                .map(|f| f.branch)
                .collect();
            let unfinished = (m.started - m.done) as usize;
            ensure!(
                self,
                running.len() == unfinished,
                "items of `{}`: {} running items hold tokens, {unfinished} expected (item lost or doubled)",
                m.node,
                running.len()
            );
            ensure!(
                self,
                running.iter().all(|b| u32::from(*b) < m.started),
                "items of `{}`: a token for an item not started",
                m.node
            );
            let locals = self.locals.iter().filter(|l| l.activation == m.activation).count();
            ensure!(self, locals == unfinished, "items of `{}`: {locals} locals for {unfinished} running", m.node);
        }
        for l in &self.locals {
            ensure!(
                self,
                self.multis.iter().any(|m| m.activation == l.activation),
                "locals of activation {} outlive its items",
                l.activation
            );
        }
        Ok(())
    }

    fn check_waits(&self, p: &Process) -> Result<(), InvariantViolation> {
        let mut ids = HashSet::new();
        let mut waits_on = HashSet::new();
        for t in &self.tokens {
            ensure!(self, ids.insert(t.id), "two tokens with id {}", t.id);
            ensure!(self, t.id <= self.seq, "token {} beyond the counter {}", t.id, self.seq);
            let Some((_, node)) = p.node(&t.node) else {
                return Err(InvariantViolation {
                    instance: self.id,
                    what: format!("token {} at unknown node {}", t.id, t.node),
                });
            };
            let fits = matches!(
                (&t.wait, &node.kind),
                (Wait::Incident { .. }, _)
                    | (Wait::Task { .. }, NodeKind::UserTask(_))
                    | (Wait::Job { .. }, NodeKind::Service(_))
                    | (Wait::Timer { .. }, NodeKind::TimerCatch { .. })
                    | (Wait::Message { .. }, NodeKind::MessageCatch { .. })
                    | (Wait::Events { .. }, NodeKind::EventBased { .. })
                    | (Wait::Call { .. }, NodeKind::Call(_))
            ) || matches!(t.wait, Wait::Scope { .. })
                && (node.multi.is_some() || matches!(node.kind, NodeKind::SubProcess(_)));
            ensure!(self, fits, "token {} waits on {:?} at {} node {}", t.id, t.wait, node.kind.name(), t.node);
            match &t.wait {
                Wait::Task { task, .. } => {
                    ensure!(self, waits_on.insert(task.clone()), "two tokens wait on task {task}")
                }
                Wait::Job { job, .. } | Wait::Timer { job } | Wait::Call { job, .. } => {
                    ensure!(self, waits_on.insert(job.clone()), "two waits on job {job}")
                }
                _ => {}
            }
            let timer_slots = match &node.kind {
                NodeKind::EventBased { branches } => branches.len(),
                kind => kind.boundary().len(),
            };
            ensure!(
                self,
                t.timers.is_empty() || !matches!(t.wait, Wait::Incident { .. }),
                "token {} stopped by an incident keeps timers armed",
                t.id
            );
            for a in &t.timers {
                ensure!(self, waits_on.insert(a.job.clone()), "timer job {} armed twice", a.job);
                ensure!(
                    self,
                    usize::from(a.index) < timer_slots,
                    "timer {} armed on slot {} of {}",
                    a.job,
                    a.index,
                    t.node
                );
            }
            ensure!(
                self,
                t.listens.is_empty() || !matches!(t.wait, Wait::Incident { .. }),
                "token {} stopped by an incident keeps listening for messages",
                t.id
            );
            for m in &t.listens {
                let listens = node.kind.boundary().get(usize::from(m.branch)).and_then(|b| b.message());
                ensure!(
                    self,
                    listens.is_some_and(|spec| spec.name == m.name),
                    "token {} listens for `{}` on boundary {} of {}, which is not that message",
                    t.id,
                    m.name,
                    m.branch,
                    t.node
                );
            }
        }
        for w in &self.forks {
            let fork = p.node(&w.fork).map(|(_, n)| &n.kind);
            ensure!(self, fork.is_some_and(NodeKind::is_fork), "boundaries armed for {}, not a fork", w.fork);
            let slots = fork.map(|k| k.boundary()).unwrap_or_default();
            for a in &w.timers {
                ensure!(self, waits_on.insert(a.job.clone()), "timer job {} armed twice", a.job);
                ensure!(self, usize::from(a.index) < slots.len(), "timer {} on slot {} of {}", a.job, a.index, w.fork);
            }
            for m in &w.listens {
                let listens = slots.get(usize::from(m.branch)).and_then(|b| b.message());
                ensure!(
                    self,
                    listens.is_some_and(|s| s.name == m.name),
                    "fork {} listens for `{}` off its boundary",
                    w.fork,
                    m.name
                );
            }
        }
        Ok(())
    }

    fn check_incidents(&self) -> Result<(), InvariantViolation> {
        let mut ids = HashSet::new();
        for i in &self.incidents {
            ensure!(self, ids.insert(i.id), "two incidents with id {}", i.id);
            let stopped =
                self.tokens.iter().filter(|t| matches!(t.wait, Wait::Incident { incident } if incident == i.id));
            ensure!(self, stopped.count() == 1, "incident {} does not stop exactly one token", i.id);
            ensure!(
                self,
                self.tokens
                    .iter()
                    .any(|t| t.id == i.token && matches!(t.wait, Wait::Incident { incident } if incident == i.id)),
                "incident {} names token {}, which it does not stop",
                i.id,
                i.token
            );
        }
        for t in &self.tokens {
            if let Wait::Incident { incident } = t.wait {
                ensure!(self, ids.contains(&incident), "token {} stopped by unknown incident {incident}", t.id);
            }
        }
        Ok(())
    }

    fn check_forks(&self, p: &Process) -> Result<(), InvariantViolation> {
        // Joins: no branch arrives twice, a join still waiting is not full.
        let mut joins: BTreeMap<u32, &super::state::JoinWait> = BTreeMap::new();
        for j in &self.joins {
            let distinct: BTreeSet<&u16> = j.arrived.iter().collect();
            ensure!(self, distinct.len() == j.arrived.len(), "a branch arrived twice at join {}", j.join);
            ensure!(self, j.arrived.len() < usize::from(j.width), "join {} is full but still waits", j.join);
            ensure!(self, j.arrived.iter().all(|b| *b < j.width), "join {} got a branch beyond its width", j.join);
            ensure!(self, joins.insert(j.activation, j).is_none(), "two joins for activation {}", j.activation);
        }
        // Live activations and the branches that still have tokens on their main
        // path. A reminder's side token keeps the scope it started in and may
        // outlive its fork's join (it ends on its own), so it does not count.
        let side = match self.tokens.iter().any(|t| !t.scope.is_empty()) {
            true => side_path_nodes(p),
            false => HashSet::new(),
        };
        // A side token stopped at its task or fork by a message it could not map
        // (the payload waits in its incident) is on a side path too.
        let stalled_side: HashSet<u32> = self
            .incidents
            .iter()
            .filter(|i| {
                let b = i.pending_branch.and_then(|b| p.node(&i.node)?.1.kind.boundary().get(usize::from(b)));
                b.is_some_and(|b| b.is_side())
            })
            .map(|i| i.token)
            .collect();
        let on_side = |t: &super::state::Token| side.contains(t.node.as_str()) || stalled_side.contains(&t.id);
        let mut live: BTreeMap<u32, (u16, BTreeSet<u16>)> = BTreeMap::new();
        for t in self.tokens.iter().filter(|t| !on_side(t)) {
            for f in &t.scope {
                ensure!(
                    self,
                    f.branch < f.width,
                    "token {} in branch {} of a fork of width {}",
                    t.id,
                    f.branch,
                    f.width
                );
                let e = live.entry(f.activation).or_insert((f.width, BTreeSet::new()));
                ensure!(self, e.0 == f.width, "activation {} seen with two widths", f.activation);
                e.1.insert(f.branch);
            }
        }
        for j in joins.values() {
            ensure!(self, live.contains_key(&j.activation), "join {} waits for branches that have no token", j.join);
            ensure!(self, live[&j.activation].0 == j.width, "join {} and its branches disagree on the width", j.join);
        }
        for w in &self.forks {
            ensure!(
                self,
                live.contains_key(&w.activation),
                "fork {} keeps boundaries armed for activation {}, which has no branch left",
                w.fork,
                w.activation
            );
        }
        let bodies: BTreeSet<u32> = self.multis.iter().map(|m| m.activation).collect();
        for (activation, (width, running)) in live.iter().filter(|(a, _)| !bodies.contains(a)) {
            let arrived: BTreeSet<u16> =
                joins.get(activation).map(|j| j.arrived.iter().copied().collect()).unwrap_or_default();
            for b in 0..*width {
                ensure!(
                    self,
                    running.contains(&b) || arrived.contains(&b),
                    "activation {activation} branch {b} has neither a token nor an arrival (token lost)"
                );
            }
        }
        // One token per branch on the main path; reminder side paths run beside it.
        let mut by_path: BTreeMap<Vec<(u32, u16)>, Vec<&super::state::Token>> = BTreeMap::new();
        for t in self.tokens.iter().filter(|t| !t.scope.is_empty()) {
            by_path.entry(t.scope.iter().map(|f| (f.activation, f.branch)).collect()).or_default().push(t);
        }
        let crowded: Vec<_> = by_path.into_iter().filter(|(_, tokens)| tokens.len() > 1).collect();
        if !crowded.is_empty() {
            for (path, tokens) in crowded {
                let main = tokens.iter().filter(|t| !on_side(t)).count();
                let nodes: Vec<&str> = tokens.iter().map(|t| t.node.as_str()).collect();
                ensure!(
                    self,
                    main <= 1,
                    "{main} tokens on the main path of branch {path:?} at {nodes:?} (token duplicated)"
                );
            }
        }
        // A branch on its main path that has also arrived was duplicated.
        for t in &self.tokens {
            if let Some(f) = t.scope.last() {
                if joins.get(&f.activation).is_some_and(|j| j.arrived.contains(&f.branch)) {
                    ensure!(
                        self,
                        on_side(t),
                        "activation {} branch {} has arrived and still has token {} at {} (token duplicated)",
                        f.activation,
                        f.branch,
                        t.id,
                        t.node
                    );
                }
            }
        }
        Ok(())
    }
}

/// Nodes on the paths of non-interrupting timer and message boundaries: tokens there
/// run beside the token of their branch and never reach a join.
fn side_path_nodes(p: &Process) -> HashSet<&str> {
    let mut seen = HashSet::new();
    let mut stack: Vec<usize> =
        p.nodes.iter().flat_map(|n| n.kind.boundary()).filter(|b| b.is_side()).map(|b| b.next).collect();
    while let Some(ix) = stack.pop() {
        if seen.insert(ix) {
            stack.extend(p.nodes[ix].kind.successors());
        }
    }
    seen.into_iter().map(|ix| p.nodes[ix].id.as_str()).collect()
}
