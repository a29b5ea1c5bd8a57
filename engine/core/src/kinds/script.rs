//! `script:` — a rhai script that assigns declared variables; the token does not wait.

use crate::compile::for_kinds::*;
use crate::expr::Expr;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

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

/// Run the script; the variables it assigns are type-checked before any is written.
pub(crate) fn exec(run: &mut Run<'_>, token: Moving, node: &Node, script: &Expr, next: NodeIx) {
    let p = run.p;
    let here = Some(node.id.clone());
    match script.run_script(&run.env()) {
        Ok(changed) => {
            for (name, v) in &changed {
                // Locals (a multi-instance item) have no declared type.
                if let Err(e) = p.vars.get(name).map_or(Ok(()), |spec| spec.check(v)) {
                    let msg = format!("script set `{name}`: {e}");
                    return run.incident(token, msg, None);
                }
            }
            let names = changed.iter().map(|(n, _)| n.clone()).collect();
            run.set_vars(changed);
            run.log(here, None, HistoryEvent::ScriptRan { changed: names });
            run.go(token, next);
        }
        Err(e) => run.incident(token, format!("script failed: {e}"), None),
    }
}
