//! From a parsed [`ProcessDef`] to a runnable [`Process`], with every finding.
//!
//! Checks run in passes and collect diagnostics instead of stopping at the first:
//! names and kinds, references, expressions, then graph properties with petgraph
//! (reachability, a way to an end, loops without a wait state, parallel scopes).

use crate::diag::{hint_for, suggest, Diagnostic, Diagnostics, Loc};
use crate::expr::{self, Expr, ExprError};
use crate::load::tree::{SourceMap, Style, YKind};
use crate::model::{EndKind, NodeDef, ProcessDef, WatchDef};
use crate::process::*;
use crate::types::{VarType, TYPE_NAMES};
use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, Reversed};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Which connectors exist, when the caller knows (deploy does; offline validate may not).
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    pub connectors: Option<Vec<String>>,
}

const KIND_KEYS: &[&str] = &["user_task", "service", "script", "exclusive", "parallel", "join", "end"];

struct Cx<'a> {
    map: &'a SourceMap,
    diags: Diagnostics,
}

impl Cx<'_> {
    fn loc(&self, path: &[&str]) -> Loc {
        self.map.loc(path)
    }
    fn key_loc(&self, path: &[&str]) -> Loc {
        self.map.key_loc(path)
    }
    fn err(&mut self, code: &'static str, loc: Loc, msg: String, hint: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, loc, msg).with_hint(hint));
    }

    /// Where inside the YAML value at `path` an expression error points.
    fn expr_loc(&self, path: &[&str], e: &ExprError) -> Loc {
        let Some(node) = self.map.node(path) else { return self.loc(path) };
        match &node.kind {
            // The parser places a block scalar at its first non-blank content line,
            // already past the indentation that the scalar's text does not contain.
            YKind::Scalar(text, Style::Block) => {
                let blank = text.chars().take_while(|&c| c == '\n').count();
                Loc::new(node.loc.line + e.line.saturating_sub(1 + blank), node.loc.col + e.col - 1)
            }
            YKind::Scalar(_, style) if e.line <= 1 => {
                let quote = usize::from(*style == Style::Quoted);
                Loc::new(node.loc.line, node.loc.col + quote + e.col - 1)
            }
            _ => Loc::new(node.loc.line + e.line - 1, e.col),
        }
    }

    fn compile_expr(&mut self, path: &[&str], source: &str, names: &[&str]) -> Option<Expr> {
        match expr::compile(source, names.iter().copied()) {
            Ok(e) => Some(e),
            Err(e) => {
                let loc = self.expr_loc(path, &e);
                let (code, hint) = if e.message.contains("Undefined variable")
                    || e.message.contains("Variable not found")
                {
                    let name = e.message.rsplit(':').next().map(str::trim).unwrap_or("").to_string();
                    let candidates: Vec<&str> =
                        names.iter().copied().chain(expr::BUILTIN_NAMES.iter().copied()).collect();
                    (
                        "undeclared-variable",
                        format!(
                            "declare `{name}` under `variables:`{}",
                            suggest(&name, candidates.iter().copied())
                                .map(|s| format!(", or did you mean `{s}`?"))
                                .unwrap_or_default()
                        ),
                    )
                } else {
                    ("expression-syntax", "expressions are rhai: e.g. `amount > 10000 && kind == \"出張\"`".to_string())
                };
                self.err(code, loc, format!("in expression `{}`: {}", excerpt(source, e.line), e.message), hint);
                None
            }
        }
    }
}

/// The expression as a one-line quote: the whole of it, or the line with the error.
fn excerpt(source: &str, line: usize) -> &str {
    let source = source.trim();
    if source.contains('\n') {
        source.lines().nth(line.saturating_sub(1)).unwrap_or(source).trim()
    } else {
        source
    }
}

/// "did you mean `x`?", or the list of declared variables, for a name not declared.
fn undeclared_hint(var: &str, names: &[&str]) -> String {
    match suggest(var, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? otherwise declare `{var}` under `variables:`"),
        None if names.is_empty() => format!("declare `{var}` under `variables:`"),
        None => format!("declare `{var}` under `variables:` (declared: {})", names.join(", ")),
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '/')
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. `30s`, `5m`, `2h`"))
}

/// Compile a definition. On success the process may still carry warnings.
pub fn compile(
    def: &ProcessDef,
    map: &SourceMap,
    opts: &CompileOptions,
) -> Result<(Process, Diagnostics), Diagnostics> {
    let mut cx = Cx { map, diags: Diagnostics::default() };

    if !valid_id(&def.id) {
        cx.err(
            "bad-id",
            cx.loc(&["id"]),
            format!("process id `{}` is not usable", def.id),
            "use letters, digits, `-` or `_`, with no spaces or `/`",
        );
    }

    // Lanes: a lane with no groups is worked by the group of the same name.
    let mut lanes = IndexMap::new();
    for (id, l) in &def.lanes {
        let groups = if l.groups.is_empty() { vec![id.clone()] } else { l.groups.clone() };
        lanes.insert(id.clone(), Lane { name: l.name.clone().unwrap_or_else(|| id.clone()), groups });
    }

    // Variables.
    let mut vars = IndexMap::new();
    for (name, v) in &def.variables {
        let path = ["variables", name.as_str()];
        if expr::compile(name, [name.as_str()]).is_err()
            || expr::BUILTIN_NAMES.contains(&name.as_str())
            || name == "result"
        {
            cx.err("bad-variable-name", cx.key_loc(&path), format!("`{name}` cannot be used as a variable name"), "start with a letter or `_` and use letters, digits and `_` (Japanese letters are fine); avoid rhai keywords and the reserved names `now`, `instance_id` and `result`");
            continue;
        }
        let ty = match v.ty.as_str() {
            "string" => VarType::String,
            "text" => VarType::Text,
            "number" => VarType::Number,
            "bool" | "boolean" => VarType::Bool,
            "date" => VarType::Date,
            "datetime" => VarType::Datetime,
            "list" => VarType::List,
            "object" => VarType::Object,
            "choice" => match &v.options {
                Some(o) if !o.is_empty() => VarType::Choice { options: o.clone() },
                _ => {
                    cx.err(
                        "choice-without-options",
                        cx.key_loc(&path),
                        format!("choice variable `{name}` has no options"),
                        "add `options: [はい, いいえ]`",
                    );
                    continue;
                }
            },
            other => {
                cx.err(
                    "unknown-type",
                    cx.loc(&["variables", name, "type"]),
                    format!("unknown type `{other}` for variable `{name}`"),
                    hint_for(other, TYPE_NAMES.iter().copied()),
                );
                continue;
            }
        };
        if v.options.is_some() && !matches!(ty, VarType::Choice { .. }) {
            cx.err(
                "options-without-choice",
                cx.key_loc(&["variables", name, "options"]),
                format!("`options` only applies to `type: choice`, and `{name}` is a {}", ty.name()),
                "write `type: choice`, or remove `options`",
            );
        }
        let spec = VarSpec {
            ty,
            label: v.label.clone(),
            required: v.required,
            default: v.default.clone(),
            max_length: v.max_length,
        };
        if let Some(d) = &v.default {
            if let Err(e) = spec.check(d) {
                cx.err(
                    "bad-default",
                    cx.loc(&["variables", name, "default"]),
                    format!("default of `{name}`: {e}"),
                    format!("write a {} value", spec.ty.name()),
                );
            }
        }
        vars.insert(name.clone(), spec);
    }
    let var_names: Vec<String> = def.variables.keys().cloned().collect();
    let names: Vec<&str> = var_names.iter().map(String::as_str).collect();
    let mut names_with_result = names.clone();
    names_with_result.push("result");

    // Node table: start first, then nodes in file order.
    let mut ids: Vec<&str> = vec!["start"];
    for id in def.nodes.keys() {
        if id == "start" {
            cx.err(
                "duplicate-id",
                cx.key_loc(&["nodes", id]),
                "node id `start` is taken by the start event".into(),
                "rename this node",
            );
        }
        if !valid_id(id) {
            cx.err(
                "bad-id",
                cx.key_loc(&["nodes", id]),
                format!("node id `{id}` is not usable"),
                "use letters, digits, `-` or `_`, with no spaces or `/`",
            );
        }
        ids.push(id);
    }
    let index: HashMap<String, NodeIx> = ids.iter().enumerate().map(|(i, id)| (id.to_string(), i)).collect();
    let node_ids: Vec<&str> = def.nodes.keys().map(String::as_str).collect();

    let resolve = |cx: &mut Cx, target: &str, path: &[&str], what: &str| -> Option<NodeIx> {
        match index.get(target) {
            Some(&ix) if ix != 0 => Some(ix),
            Some(_) => {
                cx.err(
                    "bad-reference",
                    cx.loc(path),
                    format!("`{what}` cannot lead back to the start event"),
                    "point it at the first node after start",
                );
                None
            }
            None => {
                cx.err(
                    "unknown-node",
                    cx.loc(path),
                    format!("unknown node `{target}` in `{what}`"),
                    hint_for(target, node_ids.iter().copied()),
                );
                None
            }
        }
    };

    let mut nodes: Vec<Node> = Vec::with_capacity(ids.len());
    let start_next = resolve(&mut cx, &def.start.next, &["start", "next"], "next");
    nodes.push(Node {
        id: "start".into(),
        name: def.start.name.clone(),
        lane: None,
        kind: NodeKind::Start { next: start_next.unwrap_or(0) },
    });

    let watch = def.start.watch.as_ref().and_then(|w| compile_watch(&mut cx, w, &vars, &names, opts));

    let mut broken = start_next.is_none();
    for (id, n) in &def.nodes {
        match compile_node(&mut cx, id, n, &lanes, &vars, &names, &names_with_result, &resolve, opts) {
            Some(kind) => nodes.push(Node { id: id.clone(), name: n.name.clone(), lane: n.lane.clone(), kind }),
            None => {
                broken = true;
                nodes.push(Node { id: id.clone(), name: None, lane: None, kind: NodeKind::End { terminate: false } });
            }
        }
    }

    if !broken {
        check_graph(&mut cx, &nodes);
    }

    if cx.diags.has_errors() {
        return Err(cx.diags);
    }
    let process = Process {
        id: def.id.clone(),
        name: def.name.clone().unwrap_or_else(|| def.id.clone()),
        version: 0,
        digest: String::new(),
        source: String::new(),
        lanes,
        vars,
        var_names,
        nodes,
        index,
        start: 0,
        watch,
    };
    Ok((process, cx.diags))
}

/// `start: watch:`: the interval, the start variables (expressions over `record`)
/// and, when the engine knows its connectors, that `source` names an instance.
fn compile_watch(
    cx: &mut Cx,
    w: &WatchDef,
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
    opts: &CompileOptions,
) -> Option<WatchSpec> {
    let mut ok = true;
    if let Some(known) = &opts.connectors {
        let prefix = format!("{}.", w.source);
        if !known.iter().any(|c| c.starts_with(&prefix)) {
            let sources: BTreeSet<&str> = known.iter().filter_map(|c| c.split_once('.').map(|(s, _)| s)).collect();
            cx.err(
                "unknown-connector",
                cx.loc(&["start", "watch", "source"]),
                format!("no connector instance `{}` is registered to watch", w.source),
                hint_for(&w.source, sources.iter().copied()),
            );
            ok = false;
        }
    }
    let every = match &w.every {
        Some(e) => match parse_duration(e) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                cx.err(
                    "bad-duration",
                    cx.loc(&["start", "watch", "every"]),
                    format!("`every: {e}` is too short"),
                    "poll at most once a second: write e.g. `every: 30s`",
                );
                ok = false;
                Duration::from_secs(60)
            }
            Err(msg) => {
                cx.err("bad-duration", cx.loc(&["start", "watch", "every"]), msg, "write e.g. `every: 30s`");
                ok = false;
                Duration::from_secs(60)
            }
        },
        None => Duration::from_secs(60),
    };
    let mut with_record = names.to_vec();
    with_record.push("record");
    let mut set = Vec::new();
    for (var, src) in &w.set {
        if !vars.contains_key(var) {
            cx.err(
                "undeclared-variable",
                cx.key_loc(&["start", "watch", "set", var]),
                format!("`set` writes `{var}`, which is not a declared variable"),
                undeclared_hint(var, names),
            );
            ok = false;
        } else if let Some(e) = cx.compile_expr(&["start", "watch", "set", var], src, &with_record) {
            set.push((var.clone(), e));
        } else {
            ok = false;
        }
    }
    ok.then(|| WatchSpec { source: w.source.clone(), settings: w.settings.clone().into_iter().collect(), every, set })
}

#[allow(clippy::too_many_arguments)]
fn compile_node(
    cx: &mut Cx,
    id: &str,
    n: &NodeDef,
    lanes: &IndexMap<String, Lane>,
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
    names_with_result: &[&str],
    resolve: &impl Fn(&mut Cx, &str, &[&str], &str) -> Option<NodeIx>,
    opts: &CompileOptions,
) -> Option<NodeKind> {
    let here = ["nodes", id];
    let present: Vec<&str> = KIND_KEYS
        .iter()
        .copied()
        .filter(|k| match *k {
            "user_task" => n.user_task.is_some(),
            "service" => n.service.is_some(),
            "script" => n.script.is_some(),
            "exclusive" => n.exclusive.is_some(),
            "parallel" => n.parallel.is_some(),
            "join" => n.join.is_some(),
            "end" => n.end.is_some(),
            _ => false,
        })
        .collect();
    let kind = match present.as_slice() {
        [k] => *k,
        [] => {
            cx.err(
                "missing-kind",
                cx.key_loc(&here),
                format!("node `{id}` does not say what it is"),
                "add one of: user_task, service, script, exclusive, parallel, join, end",
            );
            return None;
        }
        many => {
            cx.err(
                "several-kinds",
                cx.key_loc(&here),
                format!("node `{id}` is at once {}", many.join(" and ")),
                "a node is exactly one kind: split it into two nodes joined by `next`",
            );
            return None;
        }
    };

    // Keys that belong to other kinds.
    let fields: &[(&str, bool, &[&str])] = &[
        ("form", n.form.is_some(), &["user_task"]),
        ("due", n.due.is_some(), &["user_task"]),
        ("send_back", n.send_back.is_some(), &["user_task"]),
        ("outcomes", n.outcomes.is_some(), &["user_task"]),
        ("with", n.with.is_some(), &["service"]),
        ("set", n.set.is_some(), &["service"]),
        ("retry", n.retry.is_some(), &["service"]),
        ("timeout", n.timeout.is_some(), &["service"]),
        ("default", n.default.is_some(), &["exclusive"]),
        ("lane", n.lane.is_some(), &["user_task", "service", "script"]),
        ("next", n.next.is_some(), &["user_task", "service", "script", "join"]),
    ];
    let mut ok = true;
    for (field, set, kinds) in fields {
        if *set && !kinds.contains(&kind) {
            let hint = if *field == "next" && kind == "exclusive" {
                "an exclusive gateway routes with its branches and `default`".to_string()
            } else if *field == "next" && kind == "parallel" {
                "a parallel fork lists its branches: `parallel: [a, b]`".to_string()
            } else {
                format!("`{field}` belongs to {}; remove it here", kinds.join(" or "))
            };
            cx.err(
                "misplaced-key",
                cx.key_loc(&["nodes", id, field]),
                format!("`{field}` does not apply to a {kind} node (`{id}`)"),
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

    let next = |cx: &mut Cx| -> Option<NodeIx> {
        match &n.next {
            Some(t) => resolve(cx, t, &["nodes", id, "next"], "next"),
            None => {
                cx.err(
                    "missing-next",
                    cx.key_loc(&here),
                    format!("{kind} node `{id}` has no `next`"),
                    "add `next: <node id>` naming the step that follows",
                );
                None
            }
        }
    };

    let kind = match kind {
        "end" => NodeKind::End { terminate: matches!(n.end, Some(Some(EndKind::Terminate))) },
        "script" => {
            let src = n.script.as_deref().unwrap_or_default();
            let script = cx.compile_expr(&["nodes", id, "script"], src, names);
            let next = next(cx);
            NodeKind::Script { script: script?, next: next? }
        }
        "user_task" => {
            if n.lane.is_none() {
                cx.err(
                    "missing-lane",
                    cx.key_loc(&here),
                    format!("user task `{id}` has no lane, so nobody could work it"),
                    format!(
                        "add `lane: <lane id>`; lanes: {}",
                        lanes.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                    ),
                );
                ok = false;
            }
            let mut form = Vec::new();
            for (var, mode) in n.form.iter().flatten() {
                if vars.contains_key(var) {
                    form.push(FormField { var: var.clone(), mode: *mode });
                } else {
                    cx.err(
                        "undeclared-variable",
                        cx.key_loc(&["nodes", id, "form", var]),
                        format!("form field `{var}` is not a declared variable"),
                        undeclared_hint(var, names),
                    );
                    ok = false;
                }
            }
            let due = match &n.due {
                Some(src) => Some(cx.compile_expr(&["nodes", id, "due"], src, names)?),
                None => None,
            };
            let send_back = match &n.send_back {
                Some(t) => Some(resolve(cx, t, &["nodes", id, "send_back"], "send_back")?),
                None => None,
            };
            let mut outcomes = Vec::new();
            for (name, t) in n.outcomes.iter().flatten() {
                if name == "next" || name == "send_back" {
                    cx.err(
                        "reserved-outcome",
                        cx.key_loc(&["nodes", id, "outcomes", name]),
                        format!("outcome name `{name}` is reserved"),
                        "pick another name, e.g. `approve` or `reject`",
                    );
                    ok = false;
                }
                outcomes.push((name.clone(), resolve(cx, t, &["nodes", id, "outcomes", name], "outcomes")?));
            }
            let next = next(cx)?;
            NodeKind::UserTask(UserTaskSpec {
                title: n.user_task.clone().unwrap_or_default(),
                form,
                due,
                send_back,
                outcomes,
                next,
            })
        }
        "service" => {
            let connector = n.service.clone().unwrap_or_default();
            if let Some(known) = &opts.connectors {
                if !known.contains(&connector) {
                    cx.err(
                        "unknown-connector",
                        cx.loc(&["nodes", id, "service"]),
                        format!("unknown connector `{connector}`"),
                        hint_for(&connector, known.iter().map(String::as_str)),
                    );
                    ok = false;
                }
            }
            let mut with = Vec::new();
            for (k, v) in n.with.iter().flatten() {
                match v {
                    serde_json::Value::String(src) => {
                        if let Some(e) = cx.compile_expr(&["nodes", id, "with", k], src, names) {
                            with.push((k.clone(), Input::Expr(e)));
                        } else {
                            ok = false;
                        }
                    }
                    other => with.push((k.clone(), Input::Literal(other.clone()))),
                }
            }
            let mut set = Vec::new();
            for (var, src) in n.set.iter().flatten() {
                if !vars.contains_key(var) {
                    cx.err(
                        "undeclared-variable",
                        cx.key_loc(&["nodes", id, "set", var]),
                        format!("`set` writes `{var}`, which is not a declared variable"),
                        undeclared_hint(var, names),
                    );
                    ok = false;
                } else if let Some(e) = cx.compile_expr(&["nodes", id, "set", var], src, names_with_result) {
                    set.push((var.clone(), e));
                } else {
                    ok = false;
                }
            }
            let mut retry = RetryPolicy::default();
            if let Some(r) = &n.retry {
                if let Some(a) = r.attempts {
                    if !(1..=100).contains(&a) {
                        cx.err(
                            "bad-retry",
                            cx.loc(&["nodes", id, "retry", "attempts"]),
                            format!("`attempts: {a}` is out of range"),
                            "use 1 to 100 (attempts in all, the first included)",
                        );
                        ok = false;
                    }
                    retry.attempts = a.clamp(1, 100);
                }
                if let Some(b) = &r.backoff {
                    let parsed = match b.split_once("..") {
                        Some((lo, hi)) => parse_duration(lo).and_then(|lo| Ok((lo, parse_duration(hi)?))),
                        None => parse_duration(b).map(|d| (d, d)),
                    };
                    match parsed {
                        Ok((lo, hi)) if lo <= hi => {
                            retry.min_backoff = lo;
                            retry.max_backoff = hi;
                        }
                        Ok(_) => {
                            cx.err(
                                "bad-retry",
                                cx.loc(&["nodes", id, "retry", "backoff"]),
                                format!("backoff `{b}` runs backwards"),
                                "write the shorter wait first: `2s..5m`",
                            );
                            ok = false;
                        }
                        Err(e) => {
                            cx.err(
                                "bad-retry",
                                cx.loc(&["nodes", id, "retry", "backoff"]),
                                e,
                                "write `2s..5m` (first wait .. longest wait)",
                            );
                            ok = false;
                        }
                    }
                }
            }
            let timeout = match &n.timeout {
                Some(t) => match parse_duration(t) {
                    Ok(d) => d,
                    Err(e) => {
                        cx.err("bad-duration", cx.loc(&["nodes", id, "timeout"]), e, "write e.g. `timeout: 30s`");
                        ok = false;
                        Duration::from_secs(30)
                    }
                },
                None => Duration::from_secs(30),
            };
            let next = next(cx)?;
            NodeKind::Service(ServiceSpec { connector, with, set, retry, timeout, next })
        }
        "exclusive" => {
            let list = n.exclusive.as_deref().unwrap_or_default();
            let mut branches = Vec::new();
            for (i, b) in list.iter().enumerate() {
                let i = i.to_string();
                let cond = cx.compile_expr(&["nodes", id, "exclusive", &i, "when"], &b.when, names);
                let target = resolve(cx, &b.next, &["nodes", id, "exclusive", &i, "next"], "next");
                match (cond, target) {
                    (Some(c), Some(t)) => branches.push((c, t)),
                    _ => ok = false,
                }
            }
            let default = match &n.default {
                Some(t) => Some(resolve(cx, t, &["nodes", id, "default"], "default")?),
                None => None,
            };
            if list.is_empty() && default.is_none() {
                cx.err(
                    "no-outgoing",
                    cx.key_loc(&here),
                    format!("exclusive gateway `{id}` has no way out"),
                    "add branches `- when: <condition>` / `next: <node>` and a `default`",
                );
                return None;
            }
            if default.is_none() {
                cx.diags.push(
                    Diagnostic::warning("no-default", cx.key_loc(&here), format!("exclusive gateway `{id}` has no `default`; when no condition holds the instance stops with an incident"))
                        .with_hint("add `default: <node>` for the case no condition matches"),
                );
            }
            NodeKind::Exclusive { branches, default }
        }
        "parallel" => {
            let list = n.parallel.as_deref().unwrap_or_default();
            if list.is_empty() {
                cx.err(
                    "no-outgoing",
                    cx.key_loc(&here),
                    format!("parallel fork `{id}` has no branches"),
                    "list the branches: `parallel: [a, b]`",
                );
                return None;
            }
            let mut branches = Vec::new();
            for (i, t) in list.iter().enumerate() {
                branches.push(resolve(cx, t, &["nodes", id, "parallel", &i.to_string()], "parallel")?);
            }
            NodeKind::Parallel { branches }
        }
        "join" => {
            let fork_id = n.join.as_deref().unwrap_or_default();
            let fork = resolve(cx, fork_id, &["nodes", id, "join"], "join")?;
            let next = next(cx)?;
            NodeKind::Join { fork, next }
        }
        _ => unreachable!("kind keys are listed above"),
    };
    ok.then_some(kind)
}

/// Graph properties: every node reachable, an end reachable from every node, no
/// loop without a wait state, and parallel forks and joins properly nested.
fn check_graph(cx: &mut Cx, nodes: &[Node]) {
    let mut g: DiGraph<NodeIx, ()> = DiGraph::with_capacity(nodes.len(), nodes.len() * 2);
    let ix: Vec<NodeIndex> = (0..nodes.len()).map(|i| g.add_node(i)).collect();
    for (i, n) in nodes.iter().enumerate() {
        for s in n.kind.successors() {
            g.update_edge(ix[i], ix[s], ());
        }
    }
    let node_path = |i: NodeIx| -> Vec<&str> {
        if i == 0 {
            vec!["start"]
        } else {
            vec!["nodes", nodes[i].id.as_str()]
        }
    };

    let mut reached = vec![false; nodes.len()];
    let mut bfs = Bfs::new(&g, ix[0]);
    while let Some(v) = bfs.next(&g) {
        reached[g[v]] = true;
    }
    for (i, n) in nodes.iter().enumerate() {
        if !reached[i] {
            cx.err(
                "unreachable",
                cx.key_loc(&node_path(i)),
                format!("node `{}` can never be reached: no flow leads to it", n.id),
                "add it as the `next` of an earlier step, or delete it",
            );
        }
    }

    let ends: Vec<NodeIx> = (0..nodes.len()).filter(|&i| matches!(nodes[i].kind, NodeKind::End { .. })).collect();
    if ends.is_empty() {
        cx.err(
            "no-end",
            cx.loc(&["nodes"]),
            "the process has no end node".into(),
            "add `done: { end: }` and lead the last step to it",
        );
        return;
    }
    let mut finishes = vec![false; nodes.len()];
    let rev = Reversed(&g);
    for &e in &ends {
        let mut bfs = Bfs::new(rev, ix[e]);
        while let Some(v) = bfs.next(rev) {
            finishes[g[v]] = true;
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        if reached[i] && !finishes[i] {
            cx.err(
                "no-way-to-end",
                cx.key_loc(&node_path(i)),
                format!("from node `{}` no end can be reached", n.id),
                "every path must eventually lead to an `end` node; add a way out of this loop",
            );
        }
    }

    for scc in petgraph::algo::tarjan_scc(&g) {
        let is_loop = scc.len() > 1 || g.contains_edge(scc[0], scc[0]);
        if !is_loop || scc.iter().any(|v| nodes[g[*v]].kind.is_wait_state()) {
            continue;
        }
        let mut members: Vec<NodeIx> = scc.iter().map(|v| g[*v]).collect();
        members.sort_unstable();
        let names: Vec<&str> = members.iter().map(|&i| nodes[i].id.as_str()).collect();
        cx.err(
            "loop-without-wait",
            cx.key_loc(&node_path(members[0])),
            format!("the loop {} has no wait state and would spin forever", names.join(" → ")),
            "a loop must pass a user_task or service step (e.g. a send-back for correction)",
        );
    }

    check_parallel_scopes(cx, nodes, &reached, &node_path);
}

/// Tokens carry a stack of the forks they are inside. Every node must be reached with
/// one stack only, a join must close the innermost fork, and no token may end inside
/// a fork. This is what makes "a join fires exactly once" hold at run time.
fn check_parallel_scopes<'n>(
    cx: &mut Cx,
    nodes: &'n [Node],
    reached: &[bool],
    node_path: &dyn Fn(NodeIx) -> Vec<&'n str>,
) {
    for n in nodes {
        if let NodeKind::Join { fork, .. } = n.kind {
            if !matches!(nodes[fork].kind, NodeKind::Parallel { .. }) {
                cx.err(
                    "join-mismatch",
                    cx.loc(&["nodes", &n.id, "join"]),
                    format!("join `{}` names `{}`, which is not a parallel fork", n.id, nodes[fork].id),
                    "write the id of the `parallel:` node whose branches this join waits for",
                );
                return;
            }
        }
    }
    let mut scope: Vec<Option<Vec<NodeIx>>> = vec![None; nodes.len()];
    let mut queue = std::collections::VecDeque::from([(0usize, Vec::<NodeIx>::new())]);
    let mut reported = vec![false; nodes.len()];
    while let Some((i, stack)) = queue.pop_front() {
        match &scope[i] {
            Some(seen) if *seen == stack => continue,
            Some(seen) => {
                if !reported[i] {
                    reported[i] = true;
                    let describe = |s: &Vec<NodeIx>| match s.last() {
                        Some(f) => format!("inside fork `{}`", nodes[*f].id),
                        None => "outside any fork".to_string(),
                    };
                    cx.err(
                        "join-mismatch",
                        cx.key_loc(&node_path(i)),
                        format!("node `{}` is reached both {} and {}", nodes[i].id, describe(seen), describe(&stack)),
                        "each parallel branch must end at the `join` of its own fork before flows merge",
                    );
                }
                continue;
            }
            None => scope[i] = Some(stack.clone()),
        }
        match &nodes[i].kind {
            NodeKind::Parallel { branches } => {
                let mut inner = stack.clone();
                inner.push(i);
                for &b in branches {
                    queue.push_back((b, inner.clone()));
                }
            }
            NodeKind::Join { fork, next } => {
                if stack.last() != Some(fork) {
                    if !reported[i] {
                        reported[i] = true;
                        let msg = match stack.last() {
                            Some(f) => format!(
                                "join `{}` closes fork `{}`, but tokens arrive from inside fork `{}`",
                                nodes[i].id, nodes[*fork].id, nodes[*f].id
                            ),
                            None => format!(
                                "join `{}` closes fork `{}`, but tokens arrive from outside it",
                                nodes[i].id, nodes[*fork].id
                            ),
                        };
                        cx.err(
                            "join-mismatch",
                            cx.key_loc(&node_path(i)),
                            msg,
                            "a join must name the fork whose branches lead into it; close inner forks first",
                        );
                    }
                    continue;
                }
                let mut outer = stack.clone();
                outer.pop();
                queue.push_back((*next, outer));
            }
            NodeKind::End { terminate: false } if !stack.is_empty() => {
                if !reported[i] {
                    reported[i] = true;
                    let f = stack.last().copied().unwrap_or_default();
                    cx.err(
                        "join-mismatch",
                        cx.key_loc(&node_path(i)),
                        format!(
                            "a branch of fork `{}` reaches end `{}` without passing its join",
                            nodes[f].id, nodes[i].id
                        ),
                        format!(
                            "lead the branch into the `join: {}` node; use `end: terminate` to stop everything",
                            nodes[f].id
                        ),
                    );
                }
            }
            kind => {
                for s in kind.successors() {
                    queue.push_back((s, stack.clone()));
                }
            }
        }
    }
    let _ = reached;
}
