//! `timer:` — an intermediate timer: the token waits until the timer fires.

use crate::compile::for_kinds::*;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "timer",
    summary: "Waits until a time: a duration, a date, or an expression giving one.",
    body: "how long or until when: `timer: 3d` or `timer: { at: add_days(now, 1) }`",
    keys: &["next"],
    no_next: "",
    present: |n| n.timer.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    let when = compile_timer(nc.cx, &["nodes", id, "timer"], n.timer.as_ref()?, nm, false);
    let next = nc.next();
    Some(NodeKind::TimerCatch { when: when?, next: next? })
}

/// Arm the timer; the token waits for it.
pub(crate) fn exec(run: &mut Run<'_>, token: Moving, node: &Node, when: &TimerWhen) {
    match run.timer_due(when, None) {
        Ok(due) => {
            let job = run.schedule_timer(token.id, &node.id, due);
            run.park(token, Wait::Timer { job });
        }
        Err(msg) => run.incident(token, msg, None),
    }
}
