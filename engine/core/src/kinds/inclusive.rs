//! `inclusive:` — an inclusive gateway: a fork over every branch whose condition
//! holds (`default` when none does); its join waits for exactly the branches taken.

use crate::compile::for_kinds::*;
use crate::expr::Expr;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "inclusive",
    summary:
        "Forks to every branch whose condition holds (`default` when none does); its `join` waits for exactly those.",
    body: "list the branches below it: `- when: 金額 >= 50000` / `  next: <node>`, and add `default: <node>`",
    keys: &["default", "boundary"],
    no_next: "an inclusive gateway routes with its branches",
    present: |n| n.inclusive.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let list = nc.n.inclusive.as_deref().unwrap_or_default();
    let (branches, default) = super::exclusive::conditions(nc, list)?;
    let boundary = nc.boundary(false, false)?;
    Some(NodeKind::Inclusive { branches, default, boundary })
}

/// Fork to every branch whose condition holds, else to `default`.
pub(crate) fn exec(
    run: &mut Run<'_>,
    token: Moving,
    node: &Node,
    branches: &[(Expr, NodeIx)],
    default: Option<NodeIx>,
) {
    let mut taken = Vec::new();
    for (cond, target) in branches {
        match cond.eval_bool(&run.env()) {
            Ok(true) => taken.push(*target),
            Ok(false) => {}
            Err(e) => {
                let msg = format!("condition `{}` failed: {e}", cond.source.trim());
                return run.incident(token, msg, None);
            }
        }
    }
    if taken.is_empty() {
        match default {
            Some(d) => taken.push(d),
            None => return run.incident(token, "no condition holds and there is no `default`".into(), None),
        }
    }
    run.fork(token, &node.id, &taken);
}
