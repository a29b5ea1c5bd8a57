//! `timer:` — an intermediate timer: the token waits until the timer fires.

use crate::compile::for_kinds::*;
use crate::process::*;

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
