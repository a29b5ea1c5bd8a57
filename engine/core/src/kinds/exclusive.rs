//! `exclusive:` — an exclusive gateway: the first branch whose condition holds, else
//! `default`. [`conditions`] is shared with the inclusive gateway.

use crate::compile::for_kinds::*;
use crate::expr::Expr;
use crate::model::BranchDef;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "exclusive",
    summary: "Routes to the first branch whose condition holds, else to `default`.",
    body: "list the branches below it: `- when: 金額 >= 50000` / `  next: <node>`, and add `default: <node>`",
    keys: &["default"],
    no_next: "an exclusive gateway routes with its branches and `default`",
    present: |n| n.exclusive.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let list = nc.n.exclusive.as_deref().unwrap_or_default();
    let (branches, default) = conditions(nc, list)?;
    Some(NodeKind::Exclusive { branches, default })
}

/// A conditional branch: its `when:` and where it leads.
pub(super) type Branch = (Expr, NodeIx);

/// The `when:`/`next:` branches and the `default` of a conditional gateway; a
/// gateway with no way out is an error, one without `default` a warning.
pub(super) fn conditions(nc: &mut NodeCx<'_, '_>, list: &[BranchDef]) -> Option<(Vec<Branch>, Option<NodeIx>)> {
    let (id, n, nm, kind) = (nc.id, nc.n, nc.nm, nc.kind);
    let mut branches = Vec::new();
    for (i, b) in list.iter().enumerate() {
        let i = i.to_string();
        let cond = nc.cx.compile_condition(&["nodes", id, kind, &i, "when"], &b.when, nm.names);
        let target = nc.resolve(&b.next, &["nodes", id, kind, &i, "next"], "next");
        match (cond, target) {
            (Some(c), Some(t)) => branches.push((c, t)),
            _ => nc.ok = false,
        }
    }
    let default = match &n.default {
        Some(t) => Some(nc.resolve(t, &["nodes", id, "default"], "default")?),
        None => None,
    };
    if list.is_empty() && default.is_none() {
        nc.cx.err(
            "no-outgoing",
            nc.cx.key_loc(&["nodes", id]),
            format!("{kind} gateway `{id}` has no way out"),
            "add branches `- when: <condition>` / `next: <node>` and a `default`",
        );
        return None;
    }
    if default.is_none() {
        nc.cx.diags.push(
            Diagnostic::warning("no-default", nc.cx.key_loc(&["nodes", id]), format!("{kind} gateway `{id}` has no `default`; when no condition holds the instance stops with an incident"))
                .with_hint("add `default: <node>` for the case no condition matches"),
        );
    }
    Some((branches, default))
}

/// Route to the first branch whose condition holds, else `default`.
pub(crate) fn exec(
    run: &mut Run<'_>,
    token: Moving,
    node: &Node,
    branches: &[(Expr, NodeIx)],
    default: Option<NodeIx>,
) {
    let p = run.p;
    let here = Some(node.id.clone());
    let mut chosen = None;
    for (cond, target) in branches {
        match cond.eval_bool(&run.env()) {
            Ok(true) => {
                chosen = Some(*target);
                break;
            }
            Ok(false) => {}
            Err(e) => {
                let msg = format!("condition `{}` failed: {e}", cond.source.trim());
                return run.incident(token, msg, None);
            }
        }
    }
    match chosen.or(default) {
        Some(t) => {
            run.log(here, None, HistoryEvent::Routed { to: p.nodes[t].id.clone() });
            run.go(token, t);
        }
        None => run.incident(token, "no condition holds and there is no `default`".into(), None),
    }
}
