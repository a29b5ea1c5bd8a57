//! One flow node: which kind it is, keys that belong to other kinds, its lane; the
//! kind's own checks are its `compile` in [`crate::kinds`].

use super::*;
use crate::kinds::{self, Kind};

/// What a kind's compile step works with: the node, the names it may use, and
/// `ok`, false once a finding was reported that does not stop the compile step
/// (so every finding of the node is reported, and the node still fails).
pub(crate) struct NodeCx<'n, 'm> {
    pub(crate) cx: &'n mut Cx<'m>,
    pub(crate) id: &'n str,
    pub(crate) n: &'n NodeDef,
    /// The kind key (`user_task`).
    pub(crate) kind: &'static str,
    pub(crate) lanes: &'n IndexMap<String, Lane>,
    pub(crate) nm: &'n Names<'n>,
    pub(crate) resolve: &'n Resolve<'n>,
    pub(crate) opts: &'n CompileOptions,
    pub(crate) ok: bool,
}

/// Node id → index, reporting unknown ids and references back to start.
pub(crate) type Resolve<'r> = dyn Fn(&mut Cx<'_>, &str, &[&str], &str) -> Option<NodeIx> + 'r;

impl NodeCx<'_, '_> {
    /// The node named at `path`, for the key `what`.
    pub(crate) fn resolve(&mut self, target: &str, path: &[&str], what: &str) -> Option<NodeIx> {
        (self.resolve)(self.cx, target, path, what)
    }

    /// The node's `next`, which this kind needs.
    pub(crate) fn next(&mut self) -> Option<NodeIx> {
        let (id, kind) = (self.id, self.kind);
        match &self.n.next {
            Some(t) => self.resolve(t, &["nodes", id, "next"], "next"),
            None => {
                self.cx.err(
                    "missing-next",
                    self.cx.key_loc(&["nodes", id]),
                    format!("{kind} node `{id}` has no `next`"),
                    "add `next: <node id>` naming the step that follows",
                );
                None
            }
        }
    }

    /// The node's `boundary:` events (`on_task`: timers too, not only errors).
    pub(crate) fn boundary(&mut self, on_task: bool, has_due: bool) -> Option<Vec<Boundary>> {
        let list = self.n.boundary.as_deref().unwrap_or_default();
        compile_boundary(self.cx, self.id, list, on_task, has_due, self.nm, &self.resolve)
    }
}

pub(super) fn compile_node(
    cx: &mut Cx,
    id: &str,
    n: &NodeDef,
    lanes: &IndexMap<String, Lane>,
    nm: &Names,
    resolve: &Resolve<'_>,
    opts: &CompileOptions,
) -> Option<(NodeKind, Option<MultiSpec>)> {
    let here = ["nodes", id];
    let kind: &Kind = match kinds::which(n).as_slice() {
        [k] => k,
        [] => {
            if let Some((key, loc)) = empty_kind_key(cx, &here) {
                cx.err("empty-kind", loc, format!("`{key}:` of node `{id}` is empty"), empty_kind_hint(key));
                return None;
            }
            cx.err(
                "missing-kind",
                cx.key_loc(&here),
                format!("node `{id}` does not say what it is"),
                format!("add one of: {}", kinds::kind_keys().collect::<Vec<_>>().join(", ")),
            );
            return None;
        }
        many => {
            cx.err(
                "several-kinds",
                cx.key_loc(&here),
                format!("node `{id}` is at once {}", many.iter().map(|k| k.key).collect::<Vec<_>>().join(" and ")),
                "a node is exactly one kind: split it into two nodes joined by `next`",
            );
            return None;
        }
    };

    // Keys that belong to other kinds.
    let mut ok = true;
    for field in kinds::attribute_keys() {
        if n.has(field) == Some(true) && !kind.keys.contains(&field) {
            let hint = if field == "next" {
                kind.no_next.to_string()
            } else {
                format!("`{field}` belongs to {}; remove it here", kinds::owners(field).join(" or "))
            };
            cx.err(
                "misplaced-key",
                cx.key_loc(&["nodes", id, field]),
                format!("`{field}` does not apply to a {} node (`{id}`)", kind.key),
                hint,
            );
            ok = false;
        }
    }

    if let Some(lane) = &n.lane {
        if !lanes.contains_key(lane) {
            cx.err(
                "unknown-lane",
                cx.loc(&["nodes", id, "lane"]),
                format!("unknown lane `{lane}`"),
                hint_for(lane, lanes.keys().map(String::as_str)),
            );
            ok = false;
        }
    }

    // A multi-instance node's own expressions read its item (and index) too; so do
    // those of a consensus (`approvers:`), multi-instance over its approvers.
    let approvers = n.approvers.as_ref().filter(|_| kind.keys.contains(&"approvers"));
    let approver = approvers.and_then(|a| super::approvers::item_name(cx, id, a, nm.names));
    ok &= approvers.is_none() || approver.is_some();
    let items = match (&n.multi_instance, &approver) {
        (_, Some(a)) => vec![a.clone()],
        (Some(m), None) if kind.keys.contains(&"multi_instance") => super::multi::item_names(cx, id, m, nm.names),
        _ => Vec::new(),
    };
    let names: Vec<&str> = nm.names.iter().copied().chain(items.iter().map(String::as_str)).collect();
    let with_result: Vec<&str> = nm.with_result.iter().copied().chain(items.iter().map(String::as_str)).collect();
    let nm = &Names { vars: nm.vars, names: &names, with_result: &with_result, tz: nm.tz };
    // A sub-process's `output` reads its locals too.
    let sub_locals: Vec<&str> = n.sub_process.iter().flat_map(|s| s.variables.keys().map(String::as_str)).collect();
    let output_names: Vec<&str> = nm.with_result.iter().copied().chain(sub_locals.iter().copied()).collect();
    let mut consensus = None;
    let multi = match (&n.multi_instance, approvers.zip(approver.as_deref())) {
        (_, Some((a, item))) => {
            let compiled = super::approvers::compile_approvers(cx, id, n, a, item, nm.vars, nm.names, resolve);
            ok &= compiled.is_some();
            compiled.map(|c| {
                consensus = Some((item.to_string(), c.consensus));
                c.multi
            })
        }
        (Some(m), None) if kind.keys.contains(&"multi_instance") => {
            let spec = super::multi::compile_multi(cx, id, m, nm.vars, nm.names, &output_names);
            ok &= spec.is_some();
            spec
        }
        _ => None,
    };

    if multi.is_some() {
        for key in ["outcomes", "send_back"] {
            if n.has(key) == Some(true) {
                cx.err(
                    "misplaced-key",
                    cx.key_loc(&["nodes", id, key]),
                    format!("`{key}` does not apply to a multi-instance node (`{id}`): each item ends with `next`"),
                    "give the form a choice field (e.g. `decision`) and collect it with `output: decision`",
                );
                ok = false;
            }
        }
    }

    let mut nc = NodeCx { cx, id, n, kind: kind.key, lanes, nm, resolve, opts, ok };
    let mut compiled = (kind.compile)(&mut nc)?;
    if let Some((item, c)) = consensus {
        super::approvers::attach(&mut compiled, &item, c);
    }
    // The table and `NodeKind::name` (history, API) call the kind the same.
    debug_assert_eq!(compiled.name(), kind.key, "kind `{}` compiled to a `{}` node", kind.key, compiled.name());
    nc.ok.then_some((compiled, multi))
}

/// A kind key written with nothing after it (`exclusive:`): serde reads it as absent,
/// but the designer did say what the node is, so the finding names that key.
fn empty_kind_key(cx: &Cx, here: &[&str]) -> Option<(&'static str, Loc)> {
    let node = cx.node_at(here)?;
    kinds::kind_keys().find_map(|k| match node.get(k)?.kind {
        YKind::Scalar(ref v, Style::Plain) if matches!(v.as_str(), "" | "~" | "null" | "Null" | "NULL") => {
            Some((k, node.key_loc(k)?))
        }
        _ => None,
    })
}

/// What a kind key needs after it, with an example to copy.
fn empty_kind_hint(key: &str) -> String {
    let body = kinds::kind(key).map_or("write a body after the key", |k| k.body);
    format!("`{key}:` needs a body: {body}")
}
