//! Unknown keys, reported all at once with a suggestion.
//!
//! serde's `deny_unknown_fields` stops at the first stray key; designers fixing a file
//! want every mistake in one run. This walks the spanned tree against the key lists
//! below (the same fields as [`crate::model`]) before serde runs. A node's keys
//! come from the kinds table ([`crate::kinds::node_keys`]).

use crate::diag::{hint_for, Diagnostic, Diagnostics};
use crate::load::tree::{YKind, YNode};

pub const TOP_KEYS: &[&str] = &[
    "id",
    "name",
    "version",
    "description",
    "time_zone",
    "lanes",
    "variables",
    "settings",
    "fallback",
    "priority",
    "retention",
    "start",
    "nodes",
];
pub const LANE_KEYS: &[&str] = &["name", "groups", "notify"];
pub const NOTIFY_KEYS: &[&str] = &["on", "via"];
pub const VAR_KEYS: &[&str] =
    &["type", "label", "required", "options", "default", "max_length", "max_size", "content_types", "sensitive"];
pub const START_KEYS: &[&str] = &["name", "timer", "message", "set", "watch", "rules", "groups", "next"];
pub const RULE_KEYS: &[&str] = &["when", "field", "message"];
pub const WATCH_KEYS: &[&str] = &["source", "settings", "every", "set", "on_retrigger"];
pub const BRANCH_KEYS: &[&str] = &["when", "next"];
pub const RETRY_KEYS: &[&str] = &["attempts", "backoff"];
pub const TIMER_KEYS: &[&str] = &["duration", "date", "at", "cron", "cycle", "catch_up"];
pub const BOUNDARY_KEYS: &[&str] =
    &["timer", "error", "message", "key", "interrupting", "every", "times", "set", "next"];
pub const EVENT_BRANCH_KEYS: &[&str] = &["message", "key", "set", "timer", "next"];
pub const MULTI_KEYS: &[&str] = &["for_each", "as", "index", "sequential", "output", "into", "complete_when", "limit"];
pub const APPROVERS_KEYS: &[&str] =
    &["users", "rule", "order", "decision", "approve", "comment", "into", "rejected", "as"];
pub const SUB_PROCESS_KEYS: &[&str] = &["variables", "in", "out", "start", "nodes"];
pub const SUB_START_KEYS: &[&str] = &["name", "next"];
pub const END_KEYS: &[&str] = &["error", "message"];

/// Element kinds the engine knows by name but does not run yet; naming them gives a
/// clearer error than "unknown key".
const NOT_YET: &[&str] = &["signal", "escalation", "compensation", "transaction", "conditional", "link"];

fn check_keys(node: &YNode, allowed: &[&str], what: &str, diags: &mut Diagnostics) {
    let Some(map) = node.as_map() else { return };
    for (k, _) in map {
        if allowed.contains(&k.text.as_str()) {
            continue;
        }
        let d = if NOT_YET.contains(&k.text.as_str()) {
            Diagnostic::error(
                "unsupported-element",
                k.loc,
                format!("`{}` elements are not supported by this engine version", k.text),
            )
            .with_hint("model the step with tasks, gateways, timers and messages instead")
        } else {
            let hint = match k.text.as_str() {
                // BPMN's name for it.
                "call_activity" if allowed.contains(&"call") => "write `call: <process id>`".to_string(),
                _ => hint_for(&k.text, allowed.iter().copied()),
            };
            Diagnostic::error("unknown-key", k.loc, format!("unknown key `{}` in {what}", k.text)).with_hint(hint)
        };
        diags.push(d);
    }
}

fn check_timer(timer: Option<&YNode>, diags: &mut Diagnostics) {
    if let Some(t) = timer {
        check_keys(t, TIMER_KEYS, "a timer", diags);
    }
}

fn each_entry(node: Option<&YNode>) -> impl Iterator<Item = &YNode> {
    node.and_then(YNode::as_map).into_iter().flatten().map(|(_, v)| v)
}

/// Report every key that the process format does not define.
pub fn check(root: &YNode, diags: &mut Diagnostics) {
    if !matches!(root.kind, YKind::Map(_)) {
        diags.push(
            Diagnostic::error("not-a-map", root.loc, "a process file must be a YAML map")
                .with_hint("start the file with `id: my-process`"),
        );
        return;
    }
    check_keys(root, TOP_KEYS, "the process", diags);
    for lane in each_entry(root.get("lanes")) {
        check_keys(lane, LANE_KEYS, "a lane", diags);
        if let Some(n) = lane.get("notify") {
            check_keys(n, NOTIFY_KEYS, "a lane's `notify`", diags);
        }
    }
    for var in each_entry(root.get("variables")) {
        check_keys(var, VAR_KEYS, "a variable", diags);
    }
    for setting in each_entry(root.get("settings")) {
        check_keys(setting, VAR_KEYS, "a setting", diags);
    }
    if let Some(start) = root.get("start") {
        check_keys(start, START_KEYS, "`start`", diags);
        if let Some(watch) = start.get("watch") {
            check_keys(watch, WATCH_KEYS, "`start: watch`", diags);
        }
        check_timer(start.get("timer"), diags);
        for rule in start.get("rules").and_then(YNode::as_seq).into_iter().flatten() {
            check_keys(rule, RULE_KEYS, "a rule", diags);
        }
    }
    for node in each_entry(root.get("nodes")) {
        check_node(node, diags, 0);
    }
}

/// Deepest nesting of sub-processes (the YAML depth limit bounds it anyway).
const MAX_SUB_DEPTH: usize = 8;

/// The keys of one node, and of the nodes of its sub-process.
fn check_node(node: &YNode, diags: &mut Diagnostics, depth: usize) {
    check_keys(node, crate::kinds::node_keys(), "a node", diags);
    for kind in ["exclusive", "inclusive"] {
        for branch in node.get(kind).and_then(YNode::as_seq).into_iter().flatten() {
            check_keys(branch, BRANCH_KEYS, &format!("an {kind} branch"), diags);
        }
    }
    for branch in node.get("event_based").and_then(YNode::as_seq).into_iter().flatten() {
        check_keys(branch, EVENT_BRANCH_KEYS, "an event_based branch", diags);
        check_timer(branch.get("timer"), diags);
    }
    for b in node.get("boundary").and_then(YNode::as_seq).into_iter().flatten() {
        check_keys(b, BOUNDARY_KEYS, "a boundary event", diags);
        check_timer(b.get("timer"), diags);
    }
    check_timer(node.get("timer"), diags);
    for rule in node.get("rules").and_then(YNode::as_seq).into_iter().flatten() {
        check_keys(rule, RULE_KEYS, "a rule", diags);
    }
    if let Some(end) = node.get("end") {
        check_keys(end, END_KEYS, "`end`", diags);
    }
    if let Some(multi) = node.get("multi_instance") {
        check_keys(multi, MULTI_KEYS, "`multi_instance`", diags);
    }
    if let Some(approvers) = node.get("approvers") {
        check_keys(approvers, APPROVERS_KEYS, "`approvers`", diags);
    }
    if let Some(retry) = node.get("retry") {
        check_keys(retry, RETRY_KEYS, "`retry`", diags);
    }
    if let Some(sub) = node.get("sub_process") {
        check_keys(sub, SUB_PROCESS_KEYS, "`sub_process`", diags);
        for var in each_entry(sub.get("variables")) {
            check_keys(var, VAR_KEYS, "a variable", diags);
        }
        if let Some(start) = sub.get("start") {
            check_keys(start, SUB_START_KEYS, "a sub-process's `start`", diags);
        }
        if depth < MAX_SUB_DEPTH {
            for inner in each_entry(sub.get("nodes")) {
                check_node(inner, diags, depth + 1);
            }
        }
    }
}
