//! `script:` — a rhai script that assigns declared variables; the token does not wait.

use crate::compile::for_kinds::*;
use crate::process::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "script",
    summary: "Runs a rhai script that assigns declared variables, then moves on.",
    body: "write the script: `script: 'let 合計 = 金額 + 消費税;'`",
    keys: &["lane", "next"],
    no_next: "",
    present: |n| n.script.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    let src = n.script.as_deref().unwrap_or_default();
    let script = nc.cx.compile_expr(&["nodes", id, "script"], src, nm.names);
    let next = nc.next();
    Some(NodeKind::Script { script: script?, next: next? })
}
