//! `sub_process:` — an embedded sub-process: a scope with its own start, nodes and
//! ends, local variables, and boundary events on the whole of it.
//!
//! Running it reuses the machinery of multi-instance bodies
//! ([`crate::runtime::step`]'s `multi` module): the arriving token parks as the body
//! ([`Wait::Scope`], holding the boundary timers), one run starts inside at
//! `<id>/start` in a frame of its own with its locals, and the run is done when its
//! last token has ended. A multi-instance sub-process has one such run per item.

use crate::compile::for_kinds::*;
use crate::process::*;
use crate::runtime::step::for_kinds::*;

pub(crate) const KIND: super::Kind = super::Kind {
    key: "sub_process",
    summary: "A group of steps with its own start and ends, local variables (`variables`, `in`, `out`) and boundary events on the whole group.",
    body: "its own nodes: `sub_process: { start: { next: check }, nodes: { check: {..}, done: { end: } } }`",
    keys: &["next", "boundary", "multi_instance"],
    no_next: "",
    present: |n| n.sub_process.is_some(),
    compile,
};

fn compile(nc: &mut NodeCx<'_, '_>) -> Option<NodeKind> {
    let (id, n, nm) = (nc.id, nc.n, nc.nm);
    let sub = n.sub_process.as_ref()?;
    let start = nc.resolve(&format!("{id}/start"), &["nodes", id, "sub_process", "start"], "start");
    if sub.nodes.is_empty() {
        nc.cx.err(
            "missing-kind",
            nc.cx.key_loc(&["nodes", id, "sub_process"]),
            format!("sub-process `{id}` has no nodes"),
            "add `nodes:` with at least the steps and an `end:`",
        );
        nc.ok = false;
    }
    let locals: Vec<String> = sub.variables.keys().cloned().collect();
    // `in`: locals of this sub-process, from the outside.
    let mut ins = Vec::new();
    for (var, src) in &sub.ins {
        if !locals.contains(var) {
            nc.cx.err(
                "undeclared-variable",
                nc.cx.key_loc(&["nodes", id, "sub_process", "in", var]),
                format!("`in` sets `{var}`, which is not a local variable of `{id}`"),
                format!("declare it under this sub-process's `variables:`; locals: {}", locals.join(", ")),
            );
            nc.ok = false;
        } else if let Some(e) = nc.cx.compile_value_for(&["nodes", id, "sub_process", "in", var], src, nm.names, var) {
            ins.push((var.clone(), e));
        } else {
            nc.ok = false;
        }
    }
    // `out`: variables outside, from the inside (its locals readable).
    let inner: Vec<&str> = nm.names.iter().copied().chain(locals.iter().map(String::as_str)).collect();
    let mut outs = Vec::new();
    for (var, src) in &sub.out {
        if !nm.vars.contains_key(var) {
            nc.cx.err(
                "undeclared-variable",
                nc.cx.key_loc(&["nodes", id, "sub_process", "out", var]),
                format!("`out` writes `{var}`, which is not a variable outside `{id}`"),
                undeclared_hint(var, nm.names),
            );
            nc.ok = false;
        } else if let Some(e) = nc.cx.compile_value_for(&["nodes", id, "sub_process", "out", var], src, &inner, var) {
            outs.push((var.clone(), e));
        } else {
            nc.ok = false;
        }
    }
    let boundary = nc.boundary(true, false);
    let next = nc.next()?;
    Some(NodeKind::SubProcess(SubProcessSpec { start: start?, next, boundary: boundary?, locals, ins, outs }))
}

/// A token arrives: a plain sub-process starts its one run; an item of a
/// multi-instance one enters its run (its item locals exist already).
pub(crate) fn exec(run: &mut Run<'_>, token: Moving, node: &Node, spec: &SubProcessSpec) {
    if run.is_item(&token) {
        run.enter_run(token, node, spec)
    } else {
        run.begin_scope(token, node, spec)
    }
}
