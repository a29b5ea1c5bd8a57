//! From a parsed [`ProcessDef`] to a runnable [`Process`], with every finding.
//!
//! Checks run in passes and collect diagnostics instead of stopping at the first:
//! names and kinds, references, expressions, then graph properties with petgraph
//! (reachability, a way to an end, loops without a wait state, parallel scopes).

use crate::diag::{hint_for, suggest, Diagnostic, Diagnostics, Loc};
use crate::expr::{self, Expr, ExprError};
use crate::load::tree::{SourceMap, Style, YKind};
use crate::model::{BoundaryDef, EndDef, EndKind, NodeDef, ProcessDef, TimerDef, TimerMap, WatchDef};
use crate::process::*;
use crate::schedule::{self, Schedule};
use crate::types::{VarType, TYPE_NAMES};
use chrono_tz::Tz;
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

const KIND_KEYS: &[&str] = &[
    "user_task",
    "service",
    "script",
    "exclusive",
    "inclusive",
    "parallel",
    "event_based",
    "join",
    "timer",
    "message",
    "end",
];

/// Marks, on a scope stack, the path of a non-interrupting boundary event: it runs
/// beside the flow and must end on its own.
const SIDE: NodeIx = usize::MAX;

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

    let time_zone = match &def.time_zone {
        None => schedule::DEFAULT_ZONE,
        Some(name) => match schedule::parse_zone(name) {
            Ok(tz) => tz,
            Err(e) => {
                cx.err(
                    "bad-time-zone",
                    cx.loc(&["time_zone"]),
                    e,
                    "use an IANA name such as `Asia/Tokyo` or `Europe/Berlin`",
                );
                schedule::DEFAULT_ZONE
            }
        },
    };

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
    let trigger = compile_start_trigger(&mut cx, def, &vars, &names, time_zone);
    nodes.push(Node {
        id: "start".into(),
        name: def.start.name.clone(),
        lane: None,
        kind: NodeKind::Start { next: start_next.unwrap_or(0), trigger: trigger.clone().unwrap_or(StartTrigger::None) },
    });

    let watch = def.start.watch.as_ref().and_then(|w| {
        if def.start.timer.is_some() || def.start.message.is_some() {
            cx.err(
                "several-kinds",
                cx.key_loc(&["start", "watch"]),
                "the start event has `watch` and also `timer` or `message`".into(),
                "a process has one start event: keep one kind",
            );
            return None;
        }
        compile_watch(&mut cx, w, &vars, &names, opts)
    });

    let mut broken = start_next.is_none() || trigger.is_none();
    let names_ctx = Names { vars: &vars, names: &names, with_result: &names_with_result, tz: time_zone };
    for (id, n) in &def.nodes {
        match compile_node(&mut cx, id, n, &lanes, &names_ctx, &resolve, opts) {
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
        time_zone,
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

/// What expressions in a node may read, and the process's zone.
struct Names<'a> {
    vars: &'a IndexMap<String, VarSpec>,
    names: &'a [&'a str],
    with_result: &'a [&'a str],
    tz: Tz,
}

fn compile_start_trigger(
    cx: &mut Cx,
    def: &ProcessDef,
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
    tz: Tz,
) -> Option<StartTrigger> {
    let st = &def.start;
    if st.timer.is_some() && st.message.is_some() {
        cx.err(
            "several-kinds",
            cx.key_loc(&["start", "timer"]),
            "the start event has both `timer` and `message`".into(),
            "a process has one start event: keep one, start the other way by hand or from another process",
        );
        return None;
    }
    if st.set.is_some() && st.message.is_none() {
        cx.err(
            "misplaced-key",
            cx.key_loc(&["start", "set"]),
            "`set` on the start event maps a message payload, but this start has no `message`".into(),
            "remove `set`, or add `message: <name>`",
        );
        return None;
    }
    if let Some(name) = &st.message {
        if name.trim().is_empty() {
            cx.err(
                "bad-message",
                cx.loc(&["start", "message"]),
                "the message name is empty".into(),
                "write `message: 注文受付`",
            );
            return None;
        }
        let set = compile_set(cx, &["start", "set"], st.set.as_ref(), vars, names, "payload")?;
        return Some(StartTrigger::Message { name: name.clone(), set });
    }
    let Some(timer) = &st.timer else { return Some(StartTrigger::None) };
    let path = ["start", "timer"];
    let map = match timer {
        TimerDef::Full(m) => m,
        TimerDef::Short(_) => {
            cx.err(
                "bad-timer",
                cx.loc(&path),
                "a timer start needs a schedule".into(),
                "write `timer: { cron: \"0 9 * * 1-5\" }` or `timer: { cycle: R/2026-12-01T09:00:00+09:00/P1D }`",
            );
            return None;
        }
    };
    for (key, set) in [("duration", map.duration.is_some()), ("date", map.date.is_some()), ("at", map.at.is_some())] {
        if set {
            cx.err(
                "bad-timer",
                cx.key_loc(&["start", "timer", key]),
                format!("`{key}` does not apply to a timer start"),
                "a timer start repeats: use `cron` or `cycle`",
            );
            return None;
        }
    }
    let schedule = match (&map.cron, &map.cycle) {
        (Some(c), None) => Schedule::cron(c).map_err(|e| (e, "cron")),
        (None, Some(c)) => Schedule::cycle(c, tz).map_err(|e| (e, "cycle")),
        _ => {
            cx.err(
                "bad-timer",
                cx.loc(&path),
                "a timer start needs exactly one of `cron` and `cycle`".into(),
                "write `cron: \"0 9 * * *\"` (five fields, in the process time zone) or `cycle: R/<start>/<duration>`",
            );
            return None;
        }
    };
    match schedule {
        Ok(schedule) => Some(StartTrigger::Timer { schedule, catch_up: map.catch_up.unwrap_or_default() }),
        Err((e, key)) => {
            cx.err("bad-timer", cx.loc(&["start", "timer", key]), e, "see the timer start format in README.md");
            None
        }
    }
}

/// `set:` mappings: declared variables ← expressions that may also read `extra`.
fn compile_set(
    cx: &mut Cx,
    path: &[&str],
    map: Option<&IndexMap<String, String>>,
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
    extra: &str,
) -> Option<Vec<(String, Expr)>> {
    let mut with_extra = names.to_vec();
    with_extra.push(extra);
    let mut out = Vec::new();
    let mut ok = true;
    for (var, src) in map.into_iter().flatten() {
        let mut here: Vec<&str> = path.to_vec();
        here.push(var);
        if !vars.contains_key(var) {
            cx.err(
                "undeclared-variable",
                cx.key_loc(&here),
                format!("`set` writes `{var}`, which is not a declared variable"),
                undeclared_hint(var, names),
            );
            ok = false;
        } else if let Some(e) = cx.compile_expr(&here, src, &with_extra) {
            out.push((var.clone(), e));
        } else {
            ok = false;
        }
    }
    ok.then_some(out)
}

/// A timer of a catch event, event-based branch or boundary: `3d`, or one of
/// `duration`, `date`, `at`. `due` is allowed where `allow_due` says so.
fn compile_timer(cx: &mut Cx, path: &[&str], def: &TimerDef, nm: &Names, allow_due: bool) -> Option<TimerWhen> {
    let bad_hint = "write `timer: 3d`, `timer: { date: 2026-12-01T09:00:00+09:00 }` or `timer: { at: '<expression>' }`";
    let map = match def {
        TimerDef::Short(s) if s.trim() == "due" => {
            if allow_due {
                return Some(TimerWhen::Due);
            }
            cx.err(
                "bad-timer",
                cx.loc(path),
                "`timer: due` only applies to a boundary timer of a user task that has a `due`".into(),
                "give the user task a `due:` expression, or write a duration",
            );
            return None;
        }
        TimerDef::Short(s) => TimerMap { duration: Some(s.clone()), ..TimerMap::default() },
        TimerDef::Full(m) => m.clone(),
    };
    let is_short = matches!(def, TimerDef::Short(_));
    let sub = |key: &'static str| -> Vec<&str> {
        let mut v = path.to_vec();
        if !is_short {
            v.push(key);
        }
        v
    };
    for key in ["cron", "cycle", "catch_up"] {
        let set = match key {
            "cron" => map.cron.is_some(),
            "cycle" => map.cycle.is_some(),
            _ => map.catch_up.is_some(),
        };
        if set {
            let mut p = path.to_vec();
            p.push(key);
            cx.err(
                "bad-timer",
                cx.key_loc(&p),
                format!("`{key}` only applies to a timer start event"),
                "a timer here fires once: use `duration`, `date` or `at`",
            );
            return None;
        }
    }
    match (&map.duration, &map.date, &map.at) {
        (Some(d), None, None) => match schedule::parse_span(d) {
            Ok(span) => Some(TimerWhen::After(span)),
            Err(e) => {
                cx.err("bad-duration", cx.loc(&sub("duration")), e, bad_hint);
                None
            }
        },
        (None, Some(d), None) => match schedule::parse_instant(d, nm.tz) {
            Ok(t) => Some(TimerWhen::Date(t)),
            Err(e) => {
                cx.err("bad-timer", cx.loc(&sub("date")), e, bad_hint);
                None
            }
        },
        (None, None, Some(src)) => cx.compile_expr(&sub("at"), src, nm.names).map(TimerWhen::At),
        _ => {
            cx.err(
                "bad-timer",
                cx.loc(path),
                "a timer needs exactly one of `duration`, `date` and `at`".into(),
                bad_hint,
            );
            None
        }
    }
}

/// A message catch: name, correlation key expression and payload mapping.
fn compile_message(
    cx: &mut Cx,
    path: &[&str],
    name: &str,
    key: Option<&String>,
    set: Option<&IndexMap<String, String>>,
    nm: &Names,
) -> Option<MessageSpec> {
    let mut ok = true;
    if name.trim().is_empty() {
        cx.err("bad-message", cx.loc(path), "the message name is empty".into(), "write `message: 署名完了`");
        ok = false;
    }
    let mut key_path = path[..path.len() - 1].to_vec();
    key_path.push("key");
    let key = match key {
        Some(src) => Some(cx.compile_expr(&key_path, src, nm.names)?),
        None => None,
    };
    let mut set_path = path[..path.len() - 1].to_vec();
    set_path.push("set");
    let set = compile_set(cx, &set_path, set, nm.vars, nm.names, "payload")?;
    ok.then_some(MessageSpec { name: name.to_string(), key, set })
}

/// `boundary:` of a task (`on_task`) or a fork (errors only).
fn compile_boundary(
    cx: &mut Cx,
    id: &str,
    list: &[BoundaryDef],
    on_task: bool,
    has_due: bool,
    nm: &Names,
    resolve: &impl Fn(&mut Cx, &str, &[&str], &str) -> Option<NodeIx>,
) -> Option<Vec<Boundary>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, b) in list.iter().enumerate() {
        let i = i.to_string();
        let here = ["nodes", id, "boundary", i.as_str()];
        let at = |k: &'static str| -> [&str; 5] { ["nodes", id, "boundary", i.as_str(), k] };
        let next = resolve(cx, &b.next, &at("next"), "next");
        let trigger = match (&b.timer, &b.error) {
            (Some(t), None) => {
                if !on_task {
                    cx.err(
                        "bad-boundary",
                        cx.key_loc(&at("timer")),
                        format!("a fork (`{id}`) takes error boundaries only"),
                        "attach timers to the tasks inside the fork",
                    );
                    ok = false;
                    continue;
                }
                if b.set.is_some() {
                    cx.err(
                        "misplaced-key",
                        cx.key_loc(&at("set")),
                        "`set` on a boundary maps an error; timers carry no data".into(),
                        "remove `set`, or set variables with a script on the timer's path",
                    );
                    ok = false;
                }
                let interrupting = b.interrupting.unwrap_or(true);
                let every = match &b.every {
                    Some(e) if interrupting => {
                        let _ = e;
                        cx.err(
                            "bad-boundary",
                            cx.key_loc(&at("every")),
                            "an interrupting timer ends the task, so it cannot repeat".into(),
                            "add `interrupting: false` for a repeating reminder",
                        );
                        ok = false;
                        None
                    }
                    Some(e) => match schedule::parse_span(e) {
                        Ok(s) if !s.is_zero() => Some(s),
                        Ok(_) => {
                            cx.err(
                                "bad-duration",
                                cx.loc(&at("every")),
                                "`every` is zero".into(),
                                "write e.g. `every: 1d`",
                            );
                            ok = false;
                            None
                        }
                        Err(e) => {
                            cx.err("bad-duration", cx.loc(&at("every")), e, "write e.g. `every: 1d`");
                            ok = false;
                            None
                        }
                    },
                    None => None,
                };
                if b.times.is_some() && every.is_none() && b.every.is_none() {
                    cx.err(
                        "bad-boundary",
                        cx.key_loc(&at("times")),
                        "`times` counts repeats, but this timer has no `every`".into(),
                        "add `every: 1d`, or remove `times`",
                    );
                    ok = false;
                }
                if b.times == Some(0) {
                    cx.err("bad-boundary", cx.loc(&at("times")), "`times: 0` never fires".into(), "use 1 or more");
                    ok = false;
                }
                let Some(when) = compile_timer(cx, &at("timer"), t, nm, has_due) else {
                    ok = false;
                    continue;
                };
                BoundaryTrigger::Timer { when, interrupting, every, times: b.times }
            }
            (None, Some(code)) => {
                for (key, set) in [
                    ("interrupting", b.interrupting.is_some()),
                    ("every", b.every.is_some()),
                    ("times", b.times.is_some()),
                ] {
                    if set {
                        cx.err(
                            "misplaced-key",
                            cx.key_loc(&["nodes", id, "boundary", i.as_str(), key]),
                            format!("`{key}` applies to boundary timers, not errors"),
                            "an error boundary always ends the step; remove this key",
                        );
                        ok = false;
                    }
                }
                let code = code.trim();
                if code.is_empty() {
                    cx.err(
                        "bad-boundary",
                        cx.loc(&at("error")),
                        "the error code is empty".into(),
                        "write the code to catch, or `error: any`",
                    );
                    ok = false;
                }
                BoundaryTrigger::Error { code: (code != "any").then(|| code.to_string()) }
            }
            _ => {
                cx.err(
                    "bad-boundary",
                    cx.key_loc(&here),
                    "a boundary event needs exactly one of `timer` and `error`".into(),
                    "write `- { timer: 3d, next: escalate }` or `- { error: CODE, next: handle }`",
                );
                ok = false;
                continue;
            }
        };
        let set = match compile_set(cx, &at("set"), b.set.as_ref(), nm.vars, nm.names, "error") {
            Some(s) => s,
            None => {
                ok = false;
                continue;
            }
        };
        match next {
            Some(next) => out.push(Boundary { trigger, next, set }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

#[allow(clippy::too_many_arguments)]
fn compile_node(
    cx: &mut Cx,
    id: &str,
    n: &NodeDef,
    lanes: &IndexMap<String, Lane>,
    nm: &Names,
    resolve: &impl Fn(&mut Cx, &str, &[&str], &str) -> Option<NodeIx>,
    opts: &CompileOptions,
) -> Option<NodeKind> {
    let (vars, names, names_with_result) = (nm.vars, nm.names, nm.with_result);
    let here = ["nodes", id];
    let present: Vec<&str> = KIND_KEYS
        .iter()
        .copied()
        .filter(|k| match *k {
            "user_task" => n.user_task.is_some(),
            "service" => n.service.is_some(),
            "script" => n.script.is_some(),
            "exclusive" => n.exclusive.is_some(),
            "inclusive" => n.inclusive.is_some(),
            "parallel" => n.parallel.is_some(),
            "event_based" => n.event_based.is_some(),
            "join" => n.join.is_some(),
            "timer" => n.timer.is_some(),
            "message" => n.message.is_some(),
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
                "add one of: user_task, service, script, exclusive, inclusive, parallel, event_based, join, timer, message, end",
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
        ("set", n.set.is_some(), &["service", "message"]),
        ("retry", n.retry.is_some(), &["service"]),
        ("timeout", n.timeout.is_some(), &["service"]),
        ("default", n.default.is_some(), &["exclusive", "inclusive"]),
        ("key", n.key.is_some(), &["message"]),
        ("boundary", n.boundary.is_some(), &["user_task", "service", "parallel", "inclusive"]),
        ("lane", n.lane.is_some(), &["user_task", "service", "script"]),
        ("next", n.next.is_some(), &["user_task", "service", "script", "join", "timer", "message"]),
    ];
    let mut ok = true;
    for (field, set, kinds) in fields {
        if *set && !kinds.contains(&kind) {
            let hint = if *field == "next" && kind == "exclusive" {
                "an exclusive gateway routes with its branches and `default`".to_string()
            } else if *field == "next" && kind == "parallel" {
                "a parallel fork lists its branches: `parallel: [a, b]`".to_string()
            } else if *field == "next" && (kind == "inclusive" || kind == "event_based") {
                format!("an {kind} gateway routes with its branches")
            } else if *field == "next" && kind == "end" {
                "an end has no `next`".to_string()
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
        "end" => match &n.end {
            Some(Some(EndDef::Error(e))) => {
                if e.error.trim().is_empty() || e.error == "any" {
                    cx.err(
                        "bad-error",
                        cx.loc(&["nodes", id, "end", "error"]),
                        format!("`{}` cannot be thrown as an error code", e.error),
                        "write the code a boundary catches, e.g. `end: { error: 書類不備 }`",
                    );
                    return None;
                }
                NodeKind::ErrorEnd { code: e.error.clone(), message: e.message.clone() }
            }
            other => NodeKind::End { terminate: matches!(other, Some(Some(EndDef::Kind(EndKind::Terminate)))) },
        },
        "timer" => {
            let when = compile_timer(cx, &["nodes", id, "timer"], n.timer.as_ref()?, nm, false);
            let next = next(cx);
            NodeKind::TimerCatch { when: when?, next: next? }
        }
        "message" => {
            let name = n.message.as_deref().unwrap_or_default();
            let message = compile_message(cx, &["nodes", id, "message"], name, n.key.as_ref(), n.set.as_ref(), nm);
            let next = next(cx);
            NodeKind::MessageCatch { message: message?, next: next? }
        }
        "event_based" => {
            let list = n.event_based.as_deref().unwrap_or_default();
            if list.is_empty() {
                cx.err(
                    "no-outgoing",
                    cx.key_loc(&here),
                    format!("event-based gateway `{id}` has no branches"),
                    "list the events: `- { message: 返信, next: a }` and `- { timer: 7d, next: b }`",
                );
                return None;
            }
            let mut branches = Vec::new();
            for (i, b) in list.iter().enumerate() {
                let i = i.to_string();
                let at = |k: &'static str| -> [&str; 5] { ["nodes", id, "event_based", i.as_str(), k] };
                let target = resolve(cx, &b.next, &at("next"), "next");
                let trigger = match (&b.message, &b.timer) {
                    (Some(name), None) => compile_message(cx, &at("message"), name, b.key.as_ref(), b.set.as_ref(), nm)
                        .map(EventTrigger::Message),
                    (None, Some(t)) => {
                        for (key, set) in [("key", b.key.is_some()), ("set", b.set.is_some())] {
                            if set {
                                cx.err(
                                    "misplaced-key",
                                    cx.key_loc(&at(key)),
                                    format!("`{key}` applies to message branches, not timers"),
                                    "remove it",
                                );
                                ok = false;
                            }
                        }
                        compile_timer(cx, &at("timer"), t, nm, false).map(EventTrigger::Timer)
                    }
                    _ => {
                        cx.err(
                            "bad-event",
                            cx.key_loc(&["nodes", id, "event_based", i.as_str()]),
                            "an event-based branch needs exactly one of `message` and `timer`".into(),
                            "write `- { message: 返信, key: 番号, next: a }` or `- { timer: 7d, next: b }`",
                        );
                        None
                    }
                };
                match (trigger, target) {
                    (Some(t), Some(n)) => branches.push((t, n)),
                    _ => ok = false,
                }
            }
            NodeKind::EventBased { branches }
        }
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
            let boundary =
                compile_boundary(cx, id, n.boundary.as_deref().unwrap_or_default(), true, due.is_some(), nm, resolve);
            let next = next(cx)?;
            NodeKind::UserTask(UserTaskSpec {
                title: n.user_task.clone().unwrap_or_default(),
                form,
                due,
                send_back,
                outcomes,
                next,
                boundary: boundary?,
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
            let boundary =
                compile_boundary(cx, id, n.boundary.as_deref().unwrap_or_default(), true, false, nm, resolve);
            let next = next(cx)?;
            NodeKind::Service(ServiceSpec { connector, with, set, retry, timeout, next, boundary: boundary? })
        }
        "exclusive" | "inclusive" => {
            let list = if kind == "exclusive" { n.exclusive.as_deref() } else { n.inclusive.as_deref() };
            let list = list.unwrap_or_default();
            let mut branches = Vec::new();
            for (i, b) in list.iter().enumerate() {
                let i = i.to_string();
                let cond = cx.compile_expr(&["nodes", id, kind, &i, "when"], &b.when, names);
                let target = resolve(cx, &b.next, &["nodes", id, kind, &i, "next"], "next");
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
                    format!("{kind} gateway `{id}` has no way out"),
                    "add branches `- when: <condition>` / `next: <node>` and a `default`",
                );
                return None;
            }
            if default.is_none() {
                cx.diags.push(
                    Diagnostic::warning("no-default", cx.key_loc(&here), format!("{kind} gateway `{id}` has no `default`; when no condition holds the instance stops with an incident"))
                        .with_hint("add `default: <node>` for the case no condition matches"),
                );
            }
            if kind == "exclusive" {
                NodeKind::Exclusive { branches, default }
            } else {
                let boundary =
                    compile_boundary(cx, id, n.boundary.as_deref().unwrap_or_default(), false, false, nm, resolve)?;
                NodeKind::Inclusive { branches, default, boundary }
            }
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
            let boundary =
                compile_boundary(cx, id, n.boundary.as_deref().unwrap_or_default(), false, false, nm, resolve)?;
            NodeKind::Parallel { branches, boundary }
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

    let ends: Vec<NodeIx> = (0..nodes.len())
        .filter(|&i| matches!(nodes[i].kind, NodeKind::End { .. } | NodeKind::ErrorEnd { .. }))
        .collect();
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
            "a loop must pass a wait state: a user_task, service, timer or message step (e.g. a send-back for correction)",
        );
    }

    check_parallel_scopes(cx, nodes, &reached, &node_path);
}

/// Tokens carry a stack of the forks they are inside. Every node must be reached with
/// one stack only, a join must close the innermost fork, and no token may end inside
/// a fork. This is what makes "a join fires exactly once" hold at run time.
///
/// Paths of non-interrupting boundary events run beside the flow: they are marked
/// with [`SIDE`] on the stack and must end on their own, without reaching a join.
/// Error ends are checked against the boundaries that could catch them.
fn check_parallel_scopes<'n>(
    cx: &mut Cx,
    nodes: &'n [Node],
    reached: &[bool],
    node_path: &dyn Fn(NodeIx) -> Vec<&'n str>,
) {
    for n in nodes {
        if let NodeKind::Join { fork, .. } = n.kind {
            if !nodes[fork].kind.is_fork() {
                cx.err(
                    "join-mismatch",
                    cx.loc(&["nodes", &n.id, "join"]),
                    format!("join `{}` names `{}`, which is not a parallel or inclusive fork", n.id, nodes[fork].id),
                    "write the id of the `parallel:` or `inclusive:` node whose branches this join waits for",
                );
                return;
            }
        }
    }
    let mut scope: Vec<Option<Vec<NodeIx>>> = vec![None; nodes.len()];
    let mut queue = std::collections::VecDeque::from([(0usize, Vec::<NodeIx>::new())]);
    let mut reported = vec![false; nodes.len()];
    let describe = |s: &Vec<NodeIx>| match s.last() {
        Some(&SIDE) => "on the path of a non-interrupting boundary event".to_string(),
        Some(f) => format!("inside fork `{}`", nodes[*f].id),
        None => "outside any fork".to_string(),
    };
    while let Some((i, stack)) = queue.pop_front() {
        match &scope[i] {
            Some(seen) if *seen == stack => continue,
            Some(seen) => {
                if !reported[i] {
                    reported[i] = true;
                    cx.err(
                        "join-mismatch",
                        cx.key_loc(&node_path(i)),
                        format!("node `{}` is reached both {} and {}", nodes[i].id, describe(seen), describe(&stack)),
                        "each parallel branch must end at the `join` of its own fork before flows merge, and the path of a non-interrupting boundary event must end at its own `end`",
                    );
                }
                continue;
            }
            None => scope[i] = Some(stack.clone()),
        }
        // Boundary events: on a task, the same scope (interrupting) or a side path;
        // on a fork, the scope outside the fork.
        for b in nodes[i].kind.boundary() {
            let target_stack = if nodes[i].kind.is_fork() {
                stack.clone()
            } else if matches!(b.trigger, BoundaryTrigger::Timer { interrupting: false, .. }) {
                let mut side = stack.clone();
                side.push(SIDE);
                side
            } else {
                stack.clone()
            };
            queue.push_back((b.next, target_stack));
        }
        match &nodes[i].kind {
            NodeKind::Parallel { .. } | NodeKind::Inclusive { .. } => {
                let mut inner = stack.clone();
                inner.push(i);
                for b in nodes[i].kind.flow_successors() {
                    queue.push_back((b, inner.clone()));
                }
            }
            NodeKind::Join { fork, next } => {
                if stack.last() != Some(fork) {
                    if !reported[i] {
                        reported[i] = true;
                        let msg = match stack.last() {
                            Some(&SIDE) => format!(
                                "join `{}` is reached from the path of a non-interrupting boundary event",
                                nodes[i].id
                            ),
                            Some(f) => format!(
                                "join `{}` closes fork `{}`, but tokens arrive from inside fork `{}`",
                                nodes[i].id, nodes[*fork].id, nodes[*f].id
                            ),
                            None => format!(
                                "join `{}` closes fork `{}`, but tokens arrive from outside it",
                                nodes[i].id, nodes[*fork].id
                            ),
                        };
                        let hint = if stack.last() == Some(&SIDE) {
                            "a reminder path runs beside the task: end it with its own `end:`"
                        } else {
                            "a join must name the fork whose branches lead into it; close inner forks first"
                        };
                        cx.err("join-mismatch", cx.key_loc(&node_path(i)), msg, hint);
                    }
                    continue;
                }
                let mut outer = stack.clone();
                outer.pop();
                queue.push_back((*next, outer));
            }
            NodeKind::End { terminate: false } if !stack.is_empty() && stack.last() != Some(&SIDE) => {
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
            NodeKind::ErrorEnd { code, .. } => {
                let caught = stack
                    .iter()
                    .rev()
                    .filter(|&&f| f != SIDE)
                    .any(|&f| nodes[f].kind.boundary().iter().any(|b| b.catches(Some(code))));
                if !caught && !reported[i] {
                    reported[i] = true;
                    cx.diags.push(
                        Diagnostic::warning(
                            "uncaught-error",
                            cx.key_loc(&node_path(i)),
                            format!("no boundary catches error `{code}` thrown by `{}`; reaching it raises an incident", nodes[i].id),
                        )
                        .with_hint(format!(
                            "put the error end inside a fork with `boundary: [{{ error: {code}, next: <node> }}]`, or use a plain `end:`"
                        )),
                    );
                }
            }
            kind => {
                for s in kind.flow_successors() {
                    queue.push_back((s, stack.clone()));
                }
            }
        }
    }
    let _ = reached;
}
