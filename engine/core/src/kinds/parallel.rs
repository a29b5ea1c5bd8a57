//! `parallel:` — a parallel fork: one token per branch; its `join` waits for all.

use crate::compile::for_kinds::*;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "parallel",
    summary: "Forks: one token per branch; the `join` naming it waits for all of them.",
    body: "list the branches: `parallel: [a, b]`",
    keys: &["boundary"],
    no_next: "a parallel fork lists its branches: `parallel: [a, b]`",
    present: |n| n.parallel.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n) = (nc.id, nc.n);
    let list = n.parallel.as_deref().unwrap_or_default();
    if list.is_empty() {
        nc.cx.err(
            "no-outgoing",
            nc.cx.key_loc(&["nodes", id]),
            format!("parallel fork `{id}` has no branches"),
            "list the branches: `parallel: [a, b]`",
        );
        return None;
    }
    let mut branches = Vec::new();
    for (i, t) in list.iter().enumerate() {
        branches.push(nc.resolve(t, &["nodes", id, "parallel", &i.to_string()], "parallel")?);
    }
    let boundary = nc.boundary(false, false)?;
    Some(NodeKind::Parallel { branches, boundary })
}

/// One token per branch; the join waits for all of them.
pub(crate) fn exec(run: &mut Run<'_>, token: Moving, node: &Node, branches: &[NodeIx]) {
    run.fork(token, &node.id, branches);
}
