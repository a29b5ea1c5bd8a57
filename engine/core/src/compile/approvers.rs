//! `approvers:` of a user task (合議): several approvers decide one step together.
//!
//! Not a machinery of its own: it compiles down to the node's `multi_instance:`
//! (one task per approver, assigned to them, parallel or sequential) whose output
//! is each approver's `{user, decision, comment, at}`, plus a [`ConsensusSpec`]
//! that the runtime asks after every decision whether the step is decided (enough
//! approvals, or too many rejections for the rule ever to be met) and which way
//! the token goes (`next` or `rejected`).

use super::*;
use crate::model::{ApproversDef, FieldMode, RuleValue, UsersDef};
use serde_json::Value;

/// The name the approver's user id is read by inside the task, unless `as:` says.
pub const DEFAULT_ITEM: &str = "approver";

/// Longest user id accepted in a list of users (the same bound as `assignee`).
pub const MAX_USER_CHARS: usize = 200;

/// What `approvers:` compiles to: the node's multi-instance spec and the consensus.
pub(super) struct Compiled {
    pub(super) multi: MultiSpec,
    pub(super) consensus: ConsensusSpec,
}

/// The item name of `a` after checking it is usable (like `multi_instance: as:`).
pub(super) fn item_name(cx: &mut Cx, id: &str, a: &ApproversDef, names: &[&str]) -> Option<String> {
    let name = a.item.clone().unwrap_or_else(|| DEFAULT_ITEM.to_string());
    let taken = names.contains(&name.as_str())
        || expr::BUILTIN_NAMES.contains(&name.as_str())
        || CONTEXT_NAMES.contains(&name.as_str());
    let path = ["nodes", id, "approvers", "as"];
    let loc = if a.item.is_some() { cx.loc(&path) } else { cx.key_loc(&["nodes", id, "approvers"]) };
    if expr::compile(&name, [name.as_str()]).is_err() {
        cx.err(
            "bad-variable-name",
            loc,
            format!("`as: {name}` is not a name expressions can read"),
            "use letters, digits and `_`, starting with a letter: `approver`",
        );
        None
    } else if taken {
        cx.err(
            "duplicate-name",
            loc,
            format!("the approver's name `{name}` is already a name in this process"),
            "give the approver another name with `as:` under `approvers:` (it is local to each approver's task)",
        );
        None
    } else {
        Some(name)
    }
}

/// A user id written in a list: not blank, bounded, no control characters.
fn user_id_problem(u: &str) -> Option<String> {
    if u.trim().is_empty() {
        Some("a user id is empty".into())
    } else if u.chars().count() > MAX_USER_CHARS {
        Some(format!("a user id is at most {MAX_USER_CHARS} characters"))
    } else if u.chars().any(char::is_control) {
        Some("a user id has control characters".into())
    } else {
        None
    }
}

/// `users:`/`to:` as an expression giving a list: a YAML list becomes a rhai array
/// literal (checked here, with the position of a bad entry); an expression is
/// compiled as written. Also returns the static length of a literal list.
pub(crate) fn compile_users(
    cx: &mut Cx,
    path: &[&str],
    users: &UsersDef,
    names: &[&str],
) -> Option<(Expr, Option<u32>)> {
    match users {
        UsersDef::Expr(src) => Some((cx.compile_expr(path, src, names)?, None)),
        UsersDef::List(list) => {
            let mut ok = true;
            let mut seen: Vec<&str> = Vec::new();
            for (i, u) in list.iter().enumerate() {
                let index = i.to_string();
                let at: Vec<&str> = path.iter().copied().chain([index.as_str()]).collect();
                if let Some(problem) = user_id_problem(u) {
                    cx.err(
                        "bad-user",
                        cx.loc(&at),
                        format!("`{u}`: {problem}"),
                        "write the user ids of the users file",
                    );
                    ok = false;
                } else if seen.contains(&u.trim()) {
                    cx.err(
                        "duplicate-user",
                        cx.loc(&at),
                        format!("`{u}` is listed twice"),
                        "name each user once (a person decides or reads once)",
                    );
                    ok = false;
                } else {
                    seen.push(u.trim());
                }
            }
            if list.is_empty() {
                cx.err(
                    "no-users",
                    cx.loc(path),
                    "the list of users is empty".into(),
                    "name at least one user, e.g. `[tanaka, suzuki]`, or give an expression such as `部長一覧`",
                );
                ok = false;
            }
            if !ok {
                return None;
            }
            let trimmed: Vec<&str> = list.iter().map(|u| u.trim()).collect();
            let source = serde_json::to_string(&trimmed).expect("strings serialise");
            match expr::compile(&source, names.iter().copied()) {
                Ok(e) => Some((e, Some(list.len() as u32))),
                Err(e) => {
                    cx.err(
                        "bad-user",
                        cx.loc(path),
                        format!("the list of users cannot be read: {}", e.message),
                        "write plain user ids",
                    );
                    None
                }
            }
        }
    }
}

/// Compile `approvers:` of node `id`; `names` already holds `item`.
#[allow(clippy::too_many_arguments)]
pub(super) fn compile_approvers(
    cx: &mut Cx,
    id: &str,
    n: &NodeDef,
    a: &ApproversDef,
    item: &str,
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
    resolve: &nodes::Resolve<'_>,
) -> Option<Compiled> {
    let at = |key: &'static str| ["nodes", id, "approvers", key];
    let here = ["nodes", id, "approvers"];
    let mut ok = true;

    if n.multi_instance.is_some() || n.assignee.is_some() {
        let key = if n.multi_instance.is_some() { "multi_instance" } else { "assignee" };
        cx.err(
            "misplaced-key",
            cx.key_loc(&["nodes", id, key]),
            format!("`{key}` does not go with `approvers:` on `{id}`: each approver gets their own task"),
            "remove it; `approvers:` runs the task once per approver, assigned to them",
        );
        ok = false;
    }

    let users = match &a.users {
        Some(u) => compile_users(cx, &at("users"), u, names),
        None => {
            cx.err(
                "missing-users",
                cx.key_loc(&here),
                format!("`approvers:` of `{id}` does not say who approves"),
                "add `users: [tanaka, suzuki]` or an expression giving a list of user ids, e.g. `users: 部長一覧`",
            );
            None
        }
    };
    ok &= users.is_some();
    let static_len = users.as_ref().and_then(|(_, len)| *len);

    let rule = match &a.rule {
        None => Some(ConsensusRule::All),
        Some(RuleValue::Word(w)) if w.trim() == "all" => Some(ConsensusRule::All),
        Some(RuleValue::Word(w)) if w.trim() == "any" => Some(ConsensusRule::Any),
        Some(RuleValue::Count(c)) if *c >= 1 && *c <= i64::from(MAX_ITEMS) => Some(ConsensusRule::AtLeast(*c as u32)),
        Some(RuleValue::Count(c)) => {
            cx.err(
                "bad-rule",
                cx.loc(&at("rule")),
                format!("`rule: {c}` is out of range"),
                format!("a number of approvals from 1 to {MAX_ITEMS}, or `all` / `any`"),
            );
            None
        }
        Some(RuleValue::Word(w)) => {
            let close = suggest(w.trim(), ["all", "any"]).map(|s| format!("did you mean `{s}`? ")).unwrap_or_default();
            cx.err(
                "bad-rule",
                cx.loc(&at("rule")),
                format!("unknown rule `{w}`"),
                format!("{close}`rule:` is `all` (everyone approves), `any` (one approval is enough) or a number N (at least N of the approvers)"),
            );
            None
        }
    };
    if let (Some(ConsensusRule::AtLeast(need)), Some(len)) = (rule, static_len) {
        if need > len {
            cx.err(
                "rule-unreachable",
                cx.loc(&at("rule")),
                format!("`rule: {need}` needs {need} approvals, but only {len} approvers are listed"),
                format!("lower the rule to at most {len}, or list more approvers"),
            );
            ok = false;
        }
    }
    ok &= rule.is_some();

    let sequential = match a.order.as_deref().map(str::trim) {
        None | Some("parallel") => false,
        Some("sequential") => true,
        Some(other) => {
            let close =
                suggest(other, ["parallel", "sequential"]).map(|s| format!("did you mean `{s}`? ")).unwrap_or_default();
            cx.err(
                "bad-order",
                cx.loc(&at("order")),
                format!("unknown order `{other}`"),
                format!("{close}`order:` is `parallel` (all at once, the default) or `sequential` (one after another, in list order)"),
            );
            ok = false;
            false
        }
    };

    let decision = decision_of(cx, id, n, a, vars);
    ok &= decision.is_some();
    let comment = match &a.comment {
        None => None,
        Some(var) => {
            ok &= field_var(cx, id, n, var, "comment", vars, &[FieldMode::Optional, FieldMode::Required]);
            Some(var.clone())
        }
    };

    let into = match &a.into {
        None => None,
        Some(var) => {
            let into = super::multi::list_target(cx, &at("into"), var, vars, "decisions", "record");
            ok &= into.is_some();
            into
        }
    };

    let rejected = match &a.rejected {
        Some(t) => resolve(cx, t, &at("rejected"), "rejected"),
        None => {
            cx.err(
                "missing-rejected",
                cx.key_loc(&here),
                format!("`approvers:` of `{id}` does not say where a rejected request goes"),
                "add `rejected: <node id>`, the step taken when the rule can no longer be met (e.g. back to the applicant, or an end)",
            );
            None
        }
    };
    ok &= rejected.is_some();

    // Each approver's record, read right after their task (their decision is local).
    let (decision, approve) = decision?;
    let comment_part = comment.as_ref().map(|c| format!(", comment: {c}")).unwrap_or_default();
    let output_src = format!("#{{ user: {item}, decision: {decision}{comment_part}, at: now }}");
    let output = cx.compile_expr(&here, &output_src, names);
    ok &= output.is_some();
    let (for_each, _) = users?;
    let multi = MultiSpec {
        for_each,
        item: item.to_string(),
        index: None,
        sequential,
        output,
        into,
        complete_when: None,
        limit: MAX_ITEMS,
    };
    let consensus = ConsensusSpec { rule: rule?, decision, approve, comment, rejected: rejected? };
    ok.then_some(Compiled { multi, consensus })
}

/// The decision variable and the value that approves: a bool (`true`) or a choice
/// (`approve:`, one of its options).
fn decision_of(
    cx: &mut Cx,
    id: &str,
    n: &NodeDef,
    a: &ApproversDef,
    vars: &IndexMap<String, VarSpec>,
) -> Option<(String, Value)> {
    let at = |key: &'static str| ["nodes", id, "approvers", key];
    let Some(var) = &a.decision else {
        cx.err(
            "missing-decision",
            cx.key_loc(&["nodes", id, "approvers"]),
            format!("`approvers:` of `{id}` does not say which field holds each approver's decision"),
            "add `decision: <variable>`: a declared bool (true approves) or choice (with `approve: <option>`)",
        );
        return None;
    };
    if !field_var(cx, id, n, var, "decision", vars, &[FieldMode::Required]) {
        return None;
    }
    let spec = vars.get(var)?;
    match (&spec.ty, &a.approve) {
        (VarType::Bool, None) => Some((var.clone(), Value::Bool(true))),
        (VarType::Choice { options }, Some(v)) if options.contains(v) => Some((var.clone(), Value::String(v.clone()))),
        (VarType::Choice { options }, Some(v)) => {
            cx.err(
                "unknown-option",
                cx.loc(&at("approve")),
                format!("`approve: {v}` is not an option of `{var}`"),
                match suggest(v, options.iter().map(String::as_str)) {
                    Some(close) => format!("did you mean `{close}`? options: {}", options.join(", ")),
                    None => format!("options: {}", options.join(", ")),
                },
            );
            None
        }
        (VarType::Choice { options }, None) => {
            cx.err(
                "missing-approve",
                cx.key_loc(&["nodes", id, "approvers"]),
                format!("`decision: {var}` is a choice; which option approves?"),
                format!("add `approve: <option>`; options: {}", options.join(", ")),
            );
            None
        }
        (VarType::Bool, Some(_)) => {
            cx.err(
                "misplaced-key",
                cx.key_loc(&at("approve")),
                format!("`decision: {var}` is a bool: `true` approves, so `approve:` has no use"),
                "remove `approve:`, or make the decision a choice variable",
            );
            None
        }
        (other, _) => {
            cx.err(
                "type-mismatch",
                cx.loc(&at("decision")),
                format!("`decision: {var}` is a {} variable; a decision is a bool or a choice", other.name()),
                format!("declare `{var}` as `type: bool` or `type: choice` with options such as [承認, 否認]"),
            );
            None
        }
    }
}

/// `var` (the `key` of `approvers:`) is a declared variable and, when the form lists
/// it, in one of the modes `allowed` (it is added to the form when it does not).
fn field_var(
    cx: &mut Cx,
    id: &str,
    n: &NodeDef,
    var: &str,
    key: &'static str,
    vars: &IndexMap<String, VarSpec>,
    allowed: &[FieldMode],
) -> bool {
    if !vars.contains_key(var) {
        let names: Vec<&str> = vars.keys().map(String::as_str).collect();
        cx.err(
            "undeclared-variable",
            cx.loc(&["nodes", id, "approvers", key]),
            format!("`{key}: {var}` is not a declared variable"),
            undeclared_hint(var, &names),
        );
        return false;
    }
    match n.form.as_ref().and_then(|f| f.get(var)) {
        Some(mode) if !allowed.contains(mode) => {
            let want = if allowed.len() == 1 { "required" } else { "optional or required" };
            cx.err(
                "bad-field-mode",
                cx.loc(&["nodes", id, "form", var]),
                format!("`{var}` is each approver's {key}; on the form it must be {want}"),
                format!("write `{var}: {want}`, or leave it out of `form:` (it is added)"),
            );
            false
        }
        _ => true,
    }
}

/// Finish the user task `kind` compiled for a node with `approvers:`: its task goes
/// to the approver, its form has the decision (required) and the comment (optional),
/// and it carries the consensus.
pub(super) fn attach(kind: &mut NodeKind, item: &str, consensus: ConsensusSpec) {
    let NodeKind::UserTask(spec) = kind else { return };
    spec.assignee = expr::compile(item, [item]).ok();
    let wanted = [
        Some((&consensus.decision, FieldMode::Required)),
        consensus.comment.as_ref().map(|c| (c, FieldMode::Optional)),
    ];
    for (var, mode) in wanted.into_iter().flatten() {
        if !spec.form.iter().any(|f| f.var == *var) {
            spec.form.push(FormField { var: var.clone(), mode });
        }
    }
    spec.consensus = Some(Box::new(consensus));
}
