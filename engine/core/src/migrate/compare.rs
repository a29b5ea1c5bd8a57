//! What two versions of a node have in common: the signatures of what a waiting
//! token arms (timers, messages, boundaries), and each node's compile-time scope.

use crate::compile::{scoped_successors, SIDE};
use crate::process::{Boundary, BoundaryTrigger, EventTrigger, MessageSpec, NodeIx, NodeKind, Process, TimerWhen};

/// The timer's definition as text: equal text, same due time for the same state.
pub(super) fn when(w: &TimerWhen) -> String {
    match w {
        TimerWhen::After(span) => format!("after {span:?}"),
        TimerWhen::Date(t) => format!("at {}", t.to_rfc3339()),
        TimerWhen::At(e) => format!("at `{}`", e.source.trim()),
        TimerWhen::Due => "at the task's due date".into(),
    }
}

fn message(m: &MessageSpec) -> String {
    format!("message {} key `{}`", m.name, m.key.as_ref().map(|k| k.source.trim()).unwrap_or(""))
}

/// The shape of a node's boundaries: what occupies each slot. Armed timers and
/// subscriptions name their slot, so a different shape cannot keep them.
pub(super) fn boundary_shape(bs: &[Boundary]) -> Vec<String> {
    bs.iter()
        .map(|b| match &b.trigger {
            BoundaryTrigger::Timer { interrupting, .. } => format!("timer interrupting={interrupting}"),
            BoundaryTrigger::Error { code } => format!("error {}", code.as_deref().unwrap_or("any")),
            BoundaryTrigger::Message { message, interrupting } => {
                format!("message {} interrupting={interrupting}", message.name)
            }
        })
        .collect()
}

/// The full definition of what a node's boundaries arm (due times, repeats, keys).
pub(super) fn boundary_defs(bs: &[Boundary]) -> Vec<String> {
    bs.iter()
        .map(|b| match &b.trigger {
            BoundaryTrigger::Timer { when: w, interrupting, every, times } => {
                format!("timer {} interrupting={interrupting} every={every:?} times={times:?}", when(w))
            }
            BoundaryTrigger::Error { code } => format!("error {}", code.as_deref().unwrap_or("any")),
            BoundaryTrigger::Message { message: m, interrupting } => {
                format!("{} interrupting={interrupting}", message(m))
            }
        })
        .collect()
}

/// What an event-based gateway waits for, branch by branch.
pub(super) fn gateway(kind: &NodeKind) -> Vec<String> {
    match kind {
        NodeKind::EventBased { branches } => branches
            .iter()
            .map(|(t, _)| match t {
                EventTrigger::Message(m) => message(m),
                EventTrigger::Timer(w) => format!("timer {}", when(w)),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A message catch's definition.
pub(super) fn catch(kind: &NodeKind) -> Option<&MessageSpec> {
    match kind {
        NodeKind::MessageCatch { message, .. } => Some(message),
        _ => None,
    }
}

/// For each node, the forks and sub-processes it sits in (outermost first) as the
/// compiler proves them (the same walk, [`scoped_successors`], as
/// `compile::graph::check_parallel_scopes`; a compiled process reaches each node
/// with one stack, so the first one met is the one), side paths left out: a token
/// stored at that node must carry exactly these frames.
pub(super) fn scope_stacks(p: &Process) -> Vec<Option<Vec<NodeIx>>> {
    let mut scope: Vec<Option<Vec<NodeIx>>> = vec![None; p.nodes.len()];
    let mut queue = std::collections::VecDeque::from([(p.start, Vec::<NodeIx>::new())]);
    while let Some((i, stack)) = queue.pop_front() {
        if scope[i].is_some() {
            continue;
        }
        queue.extend(scoped_successors(i, &p.nodes[i].kind, &stack));
        scope[i] = Some(stack);
    }
    for s in scope.iter_mut().flatten() {
        s.retain(|&f| f != SIDE);
    }
    scope
}
