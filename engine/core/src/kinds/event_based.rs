//! `event_based:` — an event-based gateway: the first of its messages and timers
//! to happen wins; the others are withdrawn.

use crate::compile::for_kinds::*;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "event_based",
    summary: "The first of its message and timer branches to happen wins; the others are withdrawn.",
    body: "list the events: `- { message: 返信, next: a }` and `- { timer: 7d, next: b }`",
    keys: &[],
    no_next: "an event_based gateway routes with its branches",
    present: |n| n.event_based.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    let list = n.event_based.as_deref().unwrap_or_default();
    if list.is_empty() {
        nc.cx.err(
            "no-outgoing",
            nc.cx.key_loc(&["nodes", id]),
            format!("event-based gateway `{id}` has no branches"),
            "list the events: `- { message: 返信, next: a }` and `- { timer: 7d, next: b }`",
        );
        return None;
    }
    let mut branches = Vec::new();
    for (i, b) in list.iter().enumerate() {
        let i = i.to_string();
        let at = |k: &'static str| -> [&str; 5] { ["nodes", id, "event_based", i.as_str(), k] };
        let target = nc.resolve(&b.next, &at("next"), "next");
        let trigger = match (&b.message, &b.timer) {
            (Some(name), None) => compile_message(nc.cx, &at("message"), name, b.key.as_ref(), b.set.as_ref(), nm)
                .map(EventTrigger::Message),
            (None, Some(t)) => {
                for (key, set) in [("key", b.key.is_some()), ("set", b.set.is_some())] {
                    if set {
                        nc.cx.err(
                            "misplaced-key",
                            nc.cx.key_loc(&at(key)),
                            format!("`{key}` applies to message branches, not timers"),
                            "remove it",
                        );
                        nc.ok = false;
                    }
                }
                compile_timer(nc.cx, &at("timer"), t, nm, false).map(EventTrigger::Timer)
            }
            _ => {
                nc.cx.err(
                    "bad-event",
                    nc.cx.key_loc(&["nodes", id, "event_based", i.as_str()]),
                    "an event-based branch needs exactly one of `message` and `timer`".into(),
                    "write `- { message: 返信, key: 番号, next: a }` or `- { timer: 7d, next: b }`",
                );
                None
            }
        };
        match (trigger, target) {
            (Some(t), Some(n)) => branches.push((t, n)),
            _ => nc.ok = false,
        }
    }
    Some(NodeKind::EventBased { branches })
}

/// Subscribe to every message branch and arm every timer branch; the first wins.
pub(crate) fn exec(run: &mut Run<'_>, mut token: Moving, node: &Node, branches: &[(EventTrigger, NodeIx)]) {
    let mut messages = Vec::new();
    let mut dues = Vec::new();
    for (i, (trigger, _)) in branches.iter().enumerate() {
        let r = match trigger {
            EventTrigger::Message(m) => run.message_key(m).map(|key| {
                messages.push(MessageWait { branch: i as u16, name: m.name.clone(), key });
            }),
            EventTrigger::Timer(when) => run.timer_due(when, None).map(|d| dues.push((i as u16, d))),
        };
        if let Err(msg) = r {
            return run.incident(token, msg, None);
        }
    }
    for m in &messages {
        run.subscribe(token.id, &node.id, &m.name, &m.key);
    }
    run.arm(&mut token, dues);
    run.park(token, Wait::Events { messages });
}
