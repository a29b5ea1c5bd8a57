//! Sub-processes in the node table: their nodes are flattened into the one list of
//! the process (ids are unique in a file), each remembering the sub-process it is
//! in, and their local variables join the names its nodes may read.

use super::*;
use crate::model::SubProcessDef;

/// One node of the flattened table.
pub(super) struct Entry<'d> {
    pub(super) id: String,
    /// `None`: the generated start of sub-process `container` (`<id>/start`).
    pub(super) def: Option<&'d NodeDef>,
    /// The sub-process the node is in; `None` at the top.
    pub(super) container: Option<String>,
}

/// The id of a sub-process's own start node.
pub(crate) fn start_id(sub: &str) -> String {
    format!("{sub}/start")
}

/// Flatten `nodes` (inside `container`, written at YAML path `prefix`) into `out`,
/// each sub-process followed by its start and its nodes. Node paths of nested nodes
/// become aliases, so `[nodes, <id>]` points at their line.
pub(super) fn flatten<'d>(
    cx: &mut Cx,
    nodes: &'d IndexMap<String, NodeDef>,
    container: Option<&str>,
    prefix: &[String],
    out: &mut Vec<Entry<'d>>,
) {
    for (id, n) in nodes {
        let mut path: Vec<String> = prefix.to_vec();
        path.push(id.clone());
        if out.iter().any(|e| e.id == *id) {
            let where_ = match container {
                Some(c) => format!("inside sub-process `{c}`"),
                None => "at the top".to_string(),
            };
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            let loc = cx.map.key_loc(&p);
            cx.err(
                "duplicate-id",
                loc,
                format!("node id `{id}` {where_} is used twice in this process"),
                "node ids are unique in the whole file, sub-processes included: rename one",
            );
            continue;
        }
        if container.is_some() {
            cx.aliases.insert(("nodes".into(), id.clone()), path.clone());
        }
        out.push(Entry { id: id.clone(), def: Some(n), container: container.map(str::to_string) });
        if let Some(sub) = &n.sub_process {
            let mut start = path.clone();
            start.extend(["sub_process".to_string(), "start".to_string()]);
            cx.aliases.insert(("nodes".into(), start_id(id)), start);
            out.push(Entry { id: start_id(id), def: None, container: Some(id.clone()) });
            let mut inner = path.clone();
            inner.extend(["sub_process".to_string(), "nodes".to_string()]);
            flatten(cx, &sub.nodes, Some(id), &inner, out);
        }
    }
}

/// The path of sub-process `id`'s local variable declarations, as [`Cx`] reads it.
pub(super) fn locals_section(id: &str) -> String {
    format!("~{id}")
}

/// Compile the local variables of sub-process `id` into `locals`; names must be
/// new in the process (not a variable, setting or another sub-process's local).
pub(super) fn compile_locals(
    cx: &mut Cx,
    id: &str,
    sub: &SubProcessDef,
    taken: &[&str],
    locals: &mut IndexMap<String, VarSpec>,
) {
    let section = locals_section(id);
    let real = |cx: &Cx, name: &str| -> Vec<String> {
        let mut p = cx
            .aliases
            .get(&("nodes".to_string(), id.to_string()))
            .cloned()
            .unwrap_or_else(|| vec!["nodes".to_string(), id.to_string()]);
        p.extend(["sub_process".to_string(), "variables".to_string(), name.to_string()]);
        p
    };
    for (name, v) in &sub.variables {
        let path = real(cx, name);
        cx.aliases.insert((section.clone(), name.clone()), path);
        if taken.contains(&name.as_str()) || locals.contains_key(name) {
            cx.err(
                "duplicate-name",
                cx.key_loc(&[&section, name]),
                format!("local variable `{name}` of `{id}` is already a name in this process"),
                "names are unique in the whole file: rename the local variable",
            );
            continue;
        }
        if let Some(spec) = compile_var(cx, &section, name, v) {
            locals.insert(name.clone(), spec);
        }
    }
}

/// The sub-processes `container` is in, innermost first, itself included.
pub(super) fn chain<'e>(entries: &'e [Entry<'_>], container: Option<&'e str>) -> Vec<&'e str> {
    let mut out = Vec::new();
    let mut at = container;
    while let Some(c) = at {
        out.push(c);
        at = entries.iter().find(|e| e.id == c).and_then(|e| e.container.as_deref());
    }
    out
}
