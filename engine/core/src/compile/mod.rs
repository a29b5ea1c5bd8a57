//! From a parsed [`ProcessDef`] to a runnable [`Process`], with every finding.
//!
//! Checks run in passes and collect diagnostics instead of stopping at the first:
//! names and kinds, references, expressions, then graph properties with petgraph
//! (reachability, a way to an end, loops without a wait state, parallel scopes).

use crate::diag::{hint_for, suggest, Diagnostic, Diagnostics, Loc};
use crate::expr::{self, Expr, ExprError};
use crate::load::tree::{SourceMap, Style, YKind, YNode};
use crate::model::{BoundaryDef, MultiDef, NodeDef, ProcessDef, RuleDef, TimerDef, TimerMap, VarDef, WatchDef};
use crate::process::*;
use crate::schedule::{self, Schedule};
use crate::types::{FileRules, VarType, DEFAULT_FILE_BYTES, MAX_FILE_BYTES, TYPE_NAMES};
use chrono_tz::Tz;
use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, Reversed};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

mod approvers;
mod events;
mod graph;
mod multi;
mod nodes;
mod priority;
mod scopes;
mod typecheck;

use events::*;
use graph::check_graph;
pub(crate) use graph::scoped_successors;
use nodes::compile_node;
use typecheck::{Ty, Want};

/// What the compile steps of the node kinds ([`crate::kinds`]) work with.
pub(crate) mod for_kinds {
    pub(crate) use super::approvers::compile_users;
    pub(crate) use super::events::{compile_message, compile_timer};
    pub(crate) use super::nodes::NodeCx;
    pub(crate) use super::priority::compile_priority;
    pub(crate) use super::typecheck::Ty;
    pub(crate) use super::{compile_rules, parse_duration, undeclared_hint, Callee};
    pub(crate) use crate::diag::{hint_for, Diagnostic};
    pub(crate) use crate::model::{EndDef, EndKind};
}

/// A problem with a service step's `with:` that its connector can tell before the
/// step runs (a parameter out of range, a combination the service refuses):
/// reported at deploy with the line of the offending input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputIssue {
    /// Path below `with:` (`["masterId"]`).
    pub path: Vec<String>,
    pub message: String,
    pub hint: String,
}

/// The connectors' deploy-time checks: `(connector name, with: as written) →
/// issues`. String values are expressions and are left to run time.
#[derive(Clone)]
pub struct InputCheck(pub std::sync::Arc<InputCheckFn>);

/// `(connector name, with: as written) → issues`.
pub type InputCheckFn = dyn Fn(&str, &serde_json::Value) -> Vec<InputIssue> + Send + Sync;

impl std::fmt::Debug for InputCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InputCheck")
    }
}

/// Which connectors exist, when the caller knows (deploy does; offline validate may not).
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    pub connectors: Option<Vec<String>>,
    /// The connectors' own checks of `with:` inputs, when the caller has them.
    pub input_check: Option<InputCheck>,
    /// The text was deployed before (reloading the store): checks added since it was
    /// deployed (the static types of expressions) only warn, so an upgrade never
    /// drops a deployed process that its running instances need.
    pub stored: bool,
    /// The processes deployed now, for the checks of `call:` nodes (deploy knows
    /// them; offline validate and a store reload do not, and skip those checks).
    pub callees: Option<std::sync::Arc<Callees>>,
}

/// What the compiler knows of the deployed processes a `call:` may name.
#[derive(Debug, Clone, Default)]
pub struct Callees {
    /// Process id → its versions, oldest first.
    pub processes: std::collections::BTreeMap<String, Vec<Callee>>,
}

/// One deployed version of a process, as a caller sees it.
#[derive(Debug, Clone)]
pub struct Callee {
    pub version: u32,
    /// Its declared variables.
    pub vars: IndexMap<String, VarSpec>,
    /// The processes its own call activities call.
    pub calls: Vec<String>,
}

impl CompileOptions {
    /// Options for reloading a definition that an earlier version accepted.
    pub fn stored() -> Self {
        CompileOptions { stored: true, ..CompileOptions::default() }
    }
}

/// Marks, on a scope stack, the path of a non-interrupting boundary event: it runs
/// beside the flow and must end on its own.
pub(crate) const SIDE: NodeIx = usize::MAX;

pub(crate) struct Cx<'a> {
    /// The id of the process being compiled.
    pub(crate) process: String,
    map: &'a SourceMap,
    pub(crate) diags: Diagnostics,
    /// Declared variables' run-time types, for the static checks of expressions.
    types: HashMap<String, Ty>,
    /// See [`CompileOptions::stored`].
    stored: bool,
    /// Where paths written as `[nodes, <id>, ..]` really are for the nodes of
    /// sub-processes (and `[~<sub>, <var>, ..]` for their local variables), so every
    /// check can name a node by its id and still point at its line.
    aliases: HashMap<(String, String), Vec<String>>,
}

/// Names some expressions read besides the variables (`result` of a service task,
/// a message's `payload`, a watched `record`, a caught `error`). They shadow a
/// variable of the same name at run time, so their type is unknown.
const CONTEXT_NAMES: &[&str] = &["result", "payload", "record", "error"];

impl Cx<'_> {
    pub(crate) fn loc(&self, path: &[&str]) -> Loc {
        self.real(path, |p| self.map.loc(p))
    }
    pub(crate) fn key_loc(&self, path: &[&str]) -> Loc {
        self.real(path, |p| self.map.key_loc(p))
    }
    pub(crate) fn node_at(&self, path: &[&str]) -> Option<&YNode> {
        self.real(path, |p| self.map.node(p))
    }

    /// Run `f` on the real path of `path` ([`Cx::aliases`]).
    fn real<R>(&self, path: &[&str], f: impl FnOnce(&[&str]) -> R) -> R {
        if let [first, second, rest @ ..] = path {
            if let Some(real) = self.aliases.get(&(first.to_string(), second.to_string())) {
                let mut full: Vec<&str> = real.iter().map(String::as_str).collect();
                full.extend_from_slice(rest);
                return f(&full);
            }
        }
        f(path)
    }
    pub(crate) fn err(&mut self, code: &'static str, loc: Loc, msg: String, hint: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, loc, msg).with_hint(hint));
    }
    pub(crate) fn warn(&mut self, code: &'static str, loc: Loc, msg: String, hint: impl Into<String>) {
        self.diags.push(Diagnostic::warning(code, loc, msg).with_hint(hint));
    }

    /// Where inside the YAML value at `path` an expression error points.
    fn expr_loc(&self, path: &[&str], e: &ExprError) -> Loc {
        let Some(node) = self.node_at(path) else { return self.loc(path) };
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

    /// Compile an expression that must give true or false (a branch's `when:`).
    pub(crate) fn compile_condition(&mut self, path: &[&str], source: &str, names: &[&str]) -> Option<Expr> {
        self.compile_checked(path, source, names, Want::Bool)
    }

    /// Compile the value a `set:` writes to the declared variable `var`.
    pub(crate) fn compile_value_for(&mut self, path: &[&str], source: &str, names: &[&str], var: &str) -> Option<Expr> {
        match self.types.get(var).copied() {
            Some(ty) => self.compile_checked(path, source, names, Want::Var(var, ty)),
            None => self.compile_expr(path, source, names),
        }
    }

    pub(crate) fn compile_expr(&mut self, path: &[&str], source: &str, names: &[&str]) -> Option<Expr> {
        self.compile_checked(path, source, names, Want::Any)
    }

    /// Report what the static types show to be wrong in `e`; true when nothing is.
    fn check_types(&mut self, path: &[&str], source: &str, names: &[&str], e: &Expr, want: Want) -> bool {
        let lookup = |name: &str| -> Ty {
            if CONTEXT_NAMES.contains(&name) || !names.contains(&name) {
                return Ty::Any;
            }
            self.types.get(name).copied().unwrap_or(Ty::Any)
        };
        let findings = typecheck::check(e.ast(), &lookup, want);
        for f in &findings {
            let at = ExprError { message: f.message.clone(), line: f.line, col: f.col };
            let loc = self.expr_loc(path, &at);
            let message = format!("in expression `{}`: {}", excerpt(source, f.line), f.message);
            let d = if self.stored {
                Diagnostic::warning(f.code, loc, message)
            } else {
                Diagnostic::error(f.code, loc, message)
            };
            self.diags.push(d.with_hint(f.hint.clone()));
        }
        self.stored || findings.is_empty()
    }

    fn compile_checked(&mut self, path: &[&str], source: &str, names: &[&str], want: Want) -> Option<Expr> {
        match expr::compile(source, names.iter().copied()) {
            Ok(e) => self.check_types(path, source, names, &e, want).then_some(e),
            Err(e) => {
                let loc = self.expr_loc(path, &e);
                let (code, hint) = if e.message.contains("Undefined variable")
                    || e.message.contains("Variable not found")
                {
                    let name = e.message.rsplit(':').next().map(str::trim).unwrap_or("").to_string();
                    let candidates: Vec<&str> =
                        names.iter().copied().chain(expr::BUILTIN_NAMES.iter().copied()).collect();
                    let close = suggest(&name, candidates.iter().copied());
                    // `method: POST`: a whole value that is one bare word, where values are
                    // passed on (`with:`, `set:`), was most likely meant as text.
                    let bare_word = source.trim() == name && !matches!(path.last(), Some(&"when" | &"script"));
                    let passes_value = path.iter().any(|p| matches!(*p, "with" | "set"));
                    let hint = match close {
                        Some(s) if bare_word => format!("did you mean `{s}`? to pass the text {name}, write '\"{name}\"'"),
                        None if bare_word && passes_value => format!("write '\"{name}\"' to pass the text {name} (a bare word is read as a variable), or declare `{name}` under `variables:`"),
                        None if bare_word => format!("declare `{name}` under `variables:`, or write '\"{name}\"' for the text {name}"),
                        Some(s) => format!("declare `{name}` under `variables:`, or did you mean `{s}`?"),
                        None => format!("declare `{name}` under `variables:`"),
                    };
                    ("undeclared-variable", hint)
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
pub(crate) fn undeclared_hint(var: &str, names: &[&str]) -> String {
    match suggest(var, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`? otherwise declare `{var}` under `variables:`"),
        None if names.is_empty() => format!("declare `{var}` under `variables:`"),
        None => format!("declare `{var}` under `variables:` (declared: {})", names.join(", ")),
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '/')
}

/// A timeout, backoff or polling interval: at most 100 years, like timers (so no
/// `now + d` computed from it can overflow).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. `30s`, `5m`, `2h`"))?;
    schedule::bounded(d, &format!("`{s}`"))?;
    Ok(d)
}

/// Form rules: each `when` a condition over the variables and settings, each
/// `field` a declared variable.
pub(crate) fn compile_rules(
    cx: &mut Cx,
    path: &[&str],
    defs: &[RuleDef],
    vars: &IndexMap<String, VarSpec>,
    names: &[&str],
) -> Option<Vec<Rule>> {
    let mut out = Vec::with_capacity(defs.len());
    let mut ok = true;
    for (i, r) in defs.iter().enumerate() {
        let i = i.to_string();
        let here: Vec<&str> = path.iter().copied().chain([i.as_str()]).collect();
        if let Some(field) = &r.field {
            if !vars.contains_key(field) {
                let at: Vec<&str> = here.iter().copied().chain(["field"]).collect();
                cx.err(
                    "unknown-variable",
                    cx.loc(&at),
                    format!("rule names unknown variable `{field}`"),
                    hint_for(field, vars.keys().map(String::as_str)),
                );
                ok = false;
            }
        }
        if r.message.trim().is_empty() {
            let at: Vec<&str> = here.iter().copied().chain(["message"]).collect();
            cx.err(
                "empty-message",
                cx.loc(&at),
                "a rule needs a message saying what to fix".into(),
                "write e.g. `message: 契約書を添付してください`",
            );
            ok = false;
        }
        let at: Vec<&str> = here.iter().copied().chain(["when"]).collect();
        match cx.compile_condition(&at, &r.when, names) {
            Some(when) => out.push(Rule { when, field: r.field.clone(), message: r.message.clone() }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// One declared variable or setting (`section` is `variables` or `settings`).
fn compile_var(cx: &mut Cx, section: &str, name: &str, v: &VarDef) -> Option<VarSpec> {
    let path = [section, name];
    if expr::compile(name, [name]).is_err() || expr::BUILTIN_NAMES.contains(&name) || name == "result" {
        cx.err("bad-variable-name", cx.key_loc(&path), format!("`{name}` cannot be used as a variable name"), "start with a letter or `_` and use letters, digits and `_` (Japanese letters are fine); avoid rhai keywords and the reserved names `now`, `instance_id` and `result`");
        return None;
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
        "file" => {
            let max_size = v.max_size.unwrap_or(DEFAULT_FILE_BYTES);
            if max_size == 0 || max_size > MAX_FILE_BYTES {
                cx.err(
                    "bad-max-size",
                    cx.loc(&[section, name, "max_size"]),
                    format!("`max_size` of `{name}` must be 1 to {MAX_FILE_BYTES} bytes, not {max_size}"),
                    format!("write e.g. `max_size: {DEFAULT_FILE_BYTES}` (10 MiB)"),
                );
                return None;
            }
            let content_types = v.content_types.clone().unwrap_or_default();
            if let Some(bad) = content_types.iter().find(|t| !t.contains('/') || t.contains(';') || t.len() > 255) {
                cx.err(
                    "bad-content-type",
                    cx.loc(&[section, name, "content_types"]),
                    format!("`{bad}` is not a content type"),
                    "write types like `application/pdf` or `image/png`, without parameters",
                );
                return None;
            }
            VarType::File(FileRules { max_size, content_types })
        }
        "choice" => match &v.options {
            Some(o) if !o.is_empty() => VarType::Choice { options: o.clone() },
            _ => {
                cx.err(
                    "choice-without-options",
                    cx.key_loc(&path),
                    format!("choice variable `{name}` has no options"),
                    "add `options: [はい, いいえ]`",
                );
                return None;
            }
        },
        other => {
            cx.err(
                "unknown-type",
                cx.loc(&[section, name, "type"]),
                format!("unknown type `{other}` for variable `{name}`"),
                hint_for(other, TYPE_NAMES.iter().copied()),
            );
            return None;
        }
    };
    for (key, set) in [("max_size", v.max_size.is_some()), ("content_types", v.content_types.is_some())] {
        if set && !matches!(ty, VarType::File(_)) {
            cx.err(
                "misplaced-key",
                cx.key_loc(&[section, name, key]),
                format!("`{key}` only applies to `type: file`, and `{name}` is a {}", ty.name()),
                format!("write `type: file`, or remove `{key}`"),
            );
        }
    }
    if v.options.is_some() && !matches!(ty, VarType::Choice { .. }) {
        cx.err(
            "options-without-choice",
            cx.key_loc(&[section, name, "options"]),
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
        sensitive: v.sensitive,
    };
    if let Some(d) = &v.default {
        if let Err(e) = spec.check(d) {
            cx.err(
                "bad-default",
                cx.loc(&[section, name, "default"]),
                format!("default of `{name}`: {e}"),
                format!("write a {} value", spec.ty.name()),
            );
        }
    }
    Some(spec)
}

/// Compile a definition. On success the process may still carry warnings.
pub fn compile(
    def: &ProcessDef,
    map: &SourceMap,
    opts: &CompileOptions,
) -> Result<(Process, Diagnostics), Diagnostics> {
    let mut cx = Cx {
        process: def.id.clone(),
        map,
        diags: Diagnostics::default(),
        types: HashMap::new(),
        stored: opts.stored,
        aliases: HashMap::new(),
    };

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

    let process_priority = match &def.priority {
        Some(v) => match priority::compile_priority(&mut cx, &["priority"], v, &[], false) {
            Some(crate::priority::Priority::Fixed(p)) => p,
            _ => crate::priority::DEFAULT,
        },
        None => crate::priority::DEFAULT,
    };
    let retention = def.retention.as_deref().and_then(|text| compile_retention(&mut cx, text));

    // Lanes: a lane with no groups is worked by the group of the same name.
    let mut lanes = IndexMap::new();
    for (id, l) in &def.lanes {
        let groups = if l.groups.is_empty() { vec![id.clone()] } else { l.groups.clone() };
        let notify = l.notify.as_ref().map(|n| compile_notify(&mut cx, id, n));
        lanes.insert(id.clone(), Lane { name: l.name.clone().unwrap_or_else(|| id.clone()), groups, notify });
    }
    if let Some(f) = def.fallback.as_ref().filter(|f| !lanes.contains_key(*f)) {
        let lanes_list = lanes.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        cx.err(
            "unknown-lane",
            cx.key_loc(&["fallback"]),
            format!("fallback lane `{f}` is not a lane of this process"),
            format!("name one of the lanes: {lanes_list}"),
        );
    }

    // Variables and settings: the same declarations; settings are read-only in
    // expressions and the same for every instance.
    let mut vars = IndexMap::new();
    for (name, v) in &def.variables {
        if let Some(spec) = compile_var(&mut cx, "variables", name, v) {
            vars.insert(name.clone(), spec);
        }
    }
    let mut settings = IndexMap::new();
    for (name, v) in &def.settings {
        if def.variables.contains_key(name) {
            cx.err(
                "duplicate-name",
                cx.key_loc(&["settings", name]),
                format!("`{name}` is both a variable and a setting"),
                "rename one of them",
            );
            continue;
        }
        if let Some(spec) = compile_var(&mut cx, "settings", name, v) {
            settings.insert(name.clone(), spec);
        }
    }
    // Settings are read like variables (and never share a name with one).
    cx.types = vars.iter().chain(&settings).map(|(name, spec)| (name.clone(), Ty::of_var(&spec.ty))).collect();
    let var_names: Vec<String> = def.variables.keys().cloned().collect();
    let names: Vec<&str> = var_names.iter().map(String::as_str).chain(settings.keys().map(String::as_str)).collect();
    let mut names_with_result = names.clone();
    names_with_result.push("result");

    // Node table: start first, then nodes in file order, each sub-process followed
    // by its own start and its nodes.
    let mut entries = Vec::new();
    if def.nodes.contains_key("start") {
        cx.err(
            "duplicate-id",
            cx.key_loc(&["nodes", "start"]),
            "node id `start` is taken by the start event".into(),
            "rename this node",
        );
    }
    scopes::flatten(&mut cx, &def.nodes, None, &["nodes".to_string()], &mut entries);
    for e in entries.iter().filter(|e| e.def.is_some()) {
        if !valid_id(&e.id) {
            cx.err(
                "bad-id",
                cx.key_loc(&["nodes", &e.id]),
                format!("node id `{}` is not usable", e.id),
                "use letters, digits, `-` or `_`, with no spaces or `/`",
            );
        }
    }
    let ids: Vec<&str> = std::iter::once("start").chain(entries.iter().map(|e| e.id.as_str())).collect();
    let index: HashMap<String, NodeIx> = ids.iter().enumerate().map(|(i, id)| (id.to_string(), i)).collect();
    let container_of: HashMap<&str, Option<&str>> =
        entries.iter().map(|e| (e.id.as_str(), e.container.as_deref())).collect();
    let node_ids: Vec<&str> = entries.iter().filter(|e| e.def.is_some()).map(|e| e.id.as_str()).collect();

    // Local variables of sub-processes: typed like the process's, unique names.
    let mut local_vars: IndexMap<String, VarSpec> = IndexMap::new();
    let taken: Vec<&str> = names.clone();
    for e in &entries {
        if let Some(sub) = e.def.and_then(|n| n.sub_process.as_ref()) {
            scopes::compile_locals(&mut cx, &e.id, sub, &taken, &mut local_vars);
        }
    }
    cx.types.extend(local_vars.iter().map(|(name, spec)| (name.clone(), Ty::of_var(&spec.ty))));

    let resolve = |cx: &mut Cx, target: &str, path: &[&str], what: &str| -> Option<NodeIx> {
        // Who asks: a sub-process about its own start, or a node about its flows.
        let asker = match path {
            ["nodes", sub, "sub_process", ..] => Some(*sub),
            ["nodes", id, ..] => container_of.get(id).copied().flatten(),
            _ => None,
        };
        match index.get(target) {
            Some(&ix) if ix != 0 => {
                let there = container_of.get(target).copied().flatten();
                if there != asker {
                    let side = |c: Option<&str>| match c {
                        Some(c) => format!("inside sub-process `{c}`"),
                        None => "outside every sub-process".to_string(),
                    };
                    cx.err(
                        "crosses-scope",
                        cx.loc(path),
                        format!("`{what}` leads from {} to `{target}` {}", side(asker), side(there)),
                        "a sub-process is entered through its `start` and left through its ends; lead flows to nodes of the same level",
                    );
                    return None;
                }
                Some(ix)
            }
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
        multi: None,
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

    let start_rules = compile_rules(&mut cx, &["start", "rules"], &def.start.rules, &vars, &names);
    let setting_values: Vec<(String, serde_json::Value)> = settings
        .iter()
        .map(|(k, s): (&String, &VarSpec)| (k.clone(), s.default.clone().unwrap_or(serde_json::Value::Null)))
        .collect();
    let mut broken = start_next.is_none() || trigger.is_none() || start_rules.is_none();
    for e in &entries {
        // What the node may read: the process's names and the locals of every
        // sub-process it is in.
        let chain = scopes::chain(&entries, e.container.as_deref());
        let mut scoped_vars = vars.clone();
        let mut scoped_names = names.clone();
        for c in &chain {
            let def = entries.iter().find(|x| x.id == *c).and_then(|x| x.def);
            // The item (and index) of a multi-instance sub-process are read inside it.
            if let Some(m) = def.and_then(|n| n.multi_instance.as_ref()) {
                scoped_names.push(m.item.as_str());
                scoped_names.extend(m.index.as_deref());
            }
            let sub = def.and_then(|n| n.sub_process.as_ref());
            for local in sub.into_iter().flat_map(|s| s.variables.keys()) {
                if let Some(spec) = local_vars.get(local) {
                    scoped_vars.insert(local.clone(), spec.clone());
                    scoped_names.push(local.as_str());
                }
            }
        }
        let mut scoped_with_result = scoped_names.clone();
        scoped_with_result.push("result");
        let names_ctx =
            Names { vars: &scoped_vars, names: &scoped_names, with_result: &scoped_with_result, tz: time_zone };
        let Some(n) = e.def else {
            // A sub-process's own start.
            let sub = e.container.as_deref().unwrap_or_default();
            let def = entries.iter().find(|x| x.id == sub).and_then(|x| x.def).and_then(|n| n.sub_process.as_ref());
            let start = def.and_then(|d| d.start.as_ref());
            let next = match start {
                Some(st) => resolve(&mut cx, &st.next, &["nodes", sub, "sub_process", "start", "next"], "next"),
                None => {
                    cx.err(
                        "missing-next",
                        cx.key_loc(&["nodes", sub, "sub_process"]),
                        format!("sub-process `{sub}` has no `start`"),
                        "add `start: { next: <first node inside> }`",
                    );
                    None
                }
            };
            broken |= next.is_none();
            let kind = NodeKind::Start { next: next.unwrap_or(0), trigger: StartTrigger::None };
            let name = start.and_then(|st| st.name.clone());
            nodes.push(Node { id: e.id.clone(), name, lane: None, kind, multi: None });
            continue;
        };
        match compile_node(&mut cx, &e.id, n, &lanes, &names_ctx, &resolve, opts) {
            Some((kind, multi)) => {
                nodes.push(Node { id: e.id.clone(), name: n.name.clone(), lane: n.lane.clone(), kind, multi })
            }
            None => {
                broken = true;
                let kind = NodeKind::End { terminate: false };
                nodes.push(Node { id: e.id.clone(), name: None, lane: None, kind, multi: None });
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
        local_vars,
        nodes,
        index,
        start: 0,
        watch,
        time_zone,
        settings,
        setting_values,
        start_rules: start_rules.unwrap_or_default(),
        start_groups: def.start.groups.clone(),
        start_paused: false,
        fallback: def.fallback.clone(),
        priority: process_priority,
        retention,
    };
    Ok((process, cx.diags))
}

/// `retention:`: an exact length (`90d`, `12w`, `P90D`), at least one day; calendar
/// months and business days are refused (an archive cut-off must not move with
/// the calendar).
fn compile_retention(cx: &mut Cx, text: &str) -> Option<chrono::Duration> {
    let hint = "write how long completed instances stay, e.g. `90d`, `26w` or `P365D` (at least 1d)";
    match schedule::parse_span(text) {
        Ok(span) if span.months == 0 && span.business_days == 0 => {
            let d = chrono::Duration::days(i64::from(span.days)) + span.exact;
            if d < chrono::Duration::days(1) {
                cx.err(
                    "bad-retention",
                    cx.loc(&["retention"]),
                    format!("retention `{text}` is shorter than a day"),
                    hint,
                );
                return None;
            }
            Some(d)
        }
        Ok(_) => {
            cx.err(
                "bad-retention",
                cx.loc(&["retention"]),
                format!("retention `{text}` counts months or business days"),
                hint,
            );
            None
        }
        Err(e) => {
            cx.err("bad-retention", cx.loc(&["retention"]), e, hint);
            None
        }
    }
}

/// A lane's `notify:`: known events, each once, and a plain connector instance name.
fn compile_notify(cx: &mut Cx, lane: &str, n: &crate::model::NotifyDef) -> crate::process::Notify {
    use crate::process::NotifyOn;
    let mut on = Vec::new();
    for (i, e) in n.on.iter().enumerate() {
        match NotifyOn::ALL.iter().find(|(s, _)| s == e) {
            Some((_, ev)) if !on.contains(ev) => on.push(*ev),
            Some(_) => {}
            None => {
                let loc = cx.loc(&["lanes", lane, "notify", "on", &i.to_string()]);
                cx.err(
                    "E_NOTIFY",
                    loc,
                    format!("`{e}` is not a task event that can be notified"),
                    "use `open`, `overdue` or `send_back`",
                )
            }
        }
    }
    if on.is_empty() && n.on.is_empty() {
        let loc = cx.loc(&["lanes", lane, "notify", "on"]);
        cx.err(
            "E_NOTIFY",
            loc,
            "`notify: on:` lists no event".into(),
            "write e.g. `on: [open, overdue, send_back]`, or remove `notify:`",
        );
    }
    let via = n.via.clone().unwrap_or_else(|| "mail".to_string());
    if via.is_empty() || via.len() > 64 || !via.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
        let loc = cx.loc(&["lanes", lane, "notify", "via"]);
        cx.err(
            "E_NOTIFY",
            loc,
            format!("`via: {via}` is not a connector instance name"),
            "name a mail connector instance of the config, e.g. `via: mail`",
        );
    }
    crate::process::Notify { on, via }
}
