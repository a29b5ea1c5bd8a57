//! `join:` — closes the fork it names: waits for every branch of one activation.

use crate::compile::for_kinds::*;
use crate::process::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "join",
    summary: "Closes the fork it names: waits for exactly the branches that fork started, then moves on once.",
    body: "name the fork it closes: `join: <parallel node id>`",
    keys: &["next"],
    no_next: "",
    present: |n| n.join.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n) = (nc.id, nc.n);
    let fork_id = n.join.as_deref().unwrap_or_default();
    let fork = nc.resolve(fork_id, &["nodes", id, "join"], "join")?;
    let next = nc.next()?;
    Some(NodeKind::Join { fork, next })
}
