//! `inclusive:` — an inclusive gateway: a fork over every branch whose condition
//! holds (`default` when none does); its join waits for exactly the branches taken.

use crate::compile::for_kinds::*;
use crate::process::*;

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
