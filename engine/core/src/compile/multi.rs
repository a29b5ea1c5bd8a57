//! `multi_instance:` of a node: the list, the item's names, what is collected.
//!
//! Compiled beside the node's kind (any kind whose table entry takes the key), and
//! before it: the item and index names are readable in the node's own expressions.

use super::*;

/// Names a `complete_when:` reads besides the variables.
pub(crate) const CONDITION_NAMES: &[&str] = &["results", "done", "total"];

/// The item and index names of `m` after checking they are usable: not a declared
/// variable or setting, not a name the engine gives.
pub(super) fn item_names(cx: &mut Cx, id: &str, m: &MultiDef, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let index = m.index.as_ref().map(|i| (i, "index"));
    for (name, key) in std::iter::once((&m.item, "as")).chain(index) {
        let path = ["nodes", id, "multi_instance", key];
        let taken = names.contains(&name.as_str())
            || expr::BUILTIN_NAMES.contains(&name.as_str())
            || CONTEXT_NAMES.contains(&name.as_str());
        if expr::compile(name, [name.as_str()]).is_err() {
            cx.err(
                "bad-variable-name",
                cx.loc(&path),
                format!("`{key}: {name}` is not a name expressions can read"),
                "use letters, digits and `_`, starting with a letter: `item`, `file`, `approver`",
            );
        } else if taken || out.contains(name) {
            cx.err(
                "duplicate-name",
                cx.loc(&path),
                format!("`{key}: {name}` is already a name in this process"),
                "pick a name of its own for the item (it is local to each item)",
            );
        } else {
            out.push(name.clone());
        }
    }
    out
}

/// Compile `m`; `names` already holds the item names.
pub(super) fn compile_multi(
    cx: &mut Cx,
    id: &str,
    m: &MultiDef,
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
    with_result: &[&str],
) -> Option<MultiSpec> {
    let at = |key: &'static str| ["nodes", id, "multi_instance", key];
    let mut ok = true;
    let for_each = cx.compile_expr(&at("for_each"), &m.for_each, names);
    let output = match &m.output {
        Some(src) => {
            let e = cx.compile_expr(&at("output"), src, with_result);
            ok &= e.is_some();
            e
        }
        None => None,
    };
    let into = match &m.into {
        None => None,
        Some(var) => {
            let into = list_target(cx, &at("into"), var, vars, "outputs", "collect");
            ok &= into.is_some();
            into
        }
    };
    if into.is_some() && output.is_none() {
        cx.err(
            "missing-output",
            cx.key_loc(&["nodes", id, "multi_instance"]),
            "`into:` needs `output:`, the value each item contributes".into(),
            "add e.g. `output: result` (a service task) or `output: decision` (a form field)",
        );
        ok = false;
    }
    let complete_when = match &m.complete_when {
        Some(src) => {
            let with: Vec<&str> = names.iter().copied().chain(CONDITION_NAMES.iter().copied()).collect();
            let e = cx.compile_condition(&at("complete_when"), src, &with);
            ok &= e.is_some();
            e
        }
        None => None,
    };
    let limit = match m.limit {
        None => MAX_ITEMS,
        Some(n) if (1..=MAX_ITEMS).contains(&n) => n,
        Some(n) => {
            cx.err(
                "bad-limit",
                cx.loc(&at("limit")),
                format!("`limit: {n}` is out of range"),
                format!("use 1 to {MAX_ITEMS}; split larger lists into batches (a loop around the node)"),
            );
            ok = false;
            MAX_ITEMS
        }
    };
    Some(MultiSpec {
        for_each: for_each?,
        item: m.item.clone(),
        index: m.index.clone(),
        sequential: m.sequential,
        output,
        into,
        complete_when,
        limit,
    })
    .filter(|_| ok)
}

/// `into: VAR` of a node that gathers one value per item (`multi_instance:`'s
/// outputs, `approvers:`' decisions): `VAR` must be a declared `list` variable.
/// `None` after reporting why not (`what`: what is gathered, `verb`: how the hint
/// says it).
pub(super) fn list_target(
    cx: &mut Cx,
    path: &[&str],
    var: &str,
    vars: &IndexMap<String, VarSpec>,
    what: &str,
    verb: &str,
) -> Option<String> {
    match vars.get(var) {
        Some(spec) if spec.ty == VarType::List => Some(var.to_string()),
        Some(spec) => {
            cx.err(
                "type-mismatch",
                cx.loc(path),
                format!("`into: {var}` is a {} variable; the {what} are a list", spec.ty.name()),
                format!("declare `{var}` with `type: list`, or {verb} into another variable"),
            );
            None
        }
        None => {
            cx.err(
                "undeclared-variable",
                cx.loc(path),
                format!("`into: {var}` is not a declared variable"),
                format!("declare `{var}: {{ type: list }}` under `variables:`"),
            );
            None
        }
    }
}
