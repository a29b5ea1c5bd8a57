//! BPMN XML → nagare process model ([`ProcessDef`]) and its YAML text.
//!
//! One `<process>` per file (the one pool with flow nodes). The flow graph is
//! read per scope (the process, each sub-process): merging gateways and plain
//! throw events disappear (nagare nodes can share a successor), splitting
//! gateways become `exclusive`/`inclusive`/`parallel`/`event_based` nodes,
//! joining gateways become `join:` nodes naming the split they close (found by
//! walking back the graph), boundary events are attached to their task.
//! Variables are declared from what the model shows: form fields, the
//! assignments of scripts, and how conditions use them.

use super::expr::{self, Guess, Lang, Untranslatable};
use super::xml::{self, Element};
use super::{Imported, BPMN_NS, CAMUNDA_NS, FLOW_KEYS, NAGARE_NS, XSI_NS, ZEEBE_NS};
use crate::diag::{Diagnostic, Diagnostics, Loc};
use crate::model::*;
use indexmap::IndexMap;
use std::collections::{HashMap, HashSet, VecDeque};

/// Choices the BPMN file cannot express.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Variables to declare (name → nagare type): BPMN models do not declare
    /// their data. Each is also added, optional, to the form of every user task
    /// that has no form of its own.
    pub declare: IndexMap<String, String>,
}

/// Names the engine provides or binds itself: never declared as variables.
const PROVIDED: &[&str] =
    &["now", "instance_id", "started_by", "result", "error", "payload", "results", "done", "total"];

/// BPMN elements that only document the model: skipped without a word.
const DOCUMENTATION: &[&str] = &[
    "sequenceFlow",
    // A sub-process's own parts, read where they mean something.
    "incoming",
    "outgoing",
    "multiInstanceLoopCharacteristics",
    "standardLoopCharacteristics",
    "dataInputAssociation",
    "dataOutputAssociation",
    "laneSet",
    "textAnnotation",
    "association",
    "dataObject",
    "dataObjectReference",
    "dataStoreReference",
    "group",
    "documentation",
    "extensionElements",
    "ioSpecification",
    "property",
    "category",
];

/// The flow nodes nagare runs.
const FLOW_NODES: &[&str] = &[
    "startEvent",
    "endEvent",
    "userTask",
    "serviceTask",
    "sendTask",
    "receiveTask",
    "scriptTask",
    "manualTask",
    "task",
    "callActivity",
    "subProcess",
    "exclusiveGateway",
    "inclusiveGateway",
    "parallelGateway",
    "eventBasedGateway",
    "intermediateCatchEvent",
    "intermediateThrowEvent",
    "boundaryEvent",
];

pub fn import(xml: &str, file: &str) -> Result<Imported, Diagnostics> {
    import_with(xml, file, &ImportOptions::default())
}

pub fn import_with(xml: &str, file: &str, opts: &ImportOptions) -> Result<Imported, Diagnostics> {
    let root = xml::parse(xml).map_err(|d| d.finish(file))?;
    let mut imp = Imp::new(&root);
    let def = imp.definitions(&root, opts);
    let warnings = Diagnostics(imp.diags.0.iter().filter(|d| !d.is_error()).cloned().collect());
    if imp.diags.has_errors() || def.is_none() {
        return Err(imp.diags.finish(file));
    }
    let def = def.expect("checked above");
    let yaml = to_yaml(&def).map_err(|e| {
        let mut d = Diagnostics::default();
        d.push(Diagnostic::error("bad-extension", Loc::new(1, 1), e));
        d.finish(file)
    })?;
    Ok(Imported { def, yaml, warnings: warnings.finish(file), locs: imp.locs })
}

/// The YAML a designer reads: keys that are absent, empty or false are left out.
fn to_yaml(def: &ProcessDef) -> Result<String, String> {
    let mut v = serde_yaml::to_value(def).map_err(|e| e.to_string())?;
    prune(&mut v);
    tidy_nodes(&mut v, &def.nodes);
    let body = serde_yaml::to_string(&v).map_err(|e| e.to_string())?;
    // `end:` reads better than `end: null` (same value).
    let body: String = body
        .lines()
        .map(|l| if l.trim_start() == "end: null" { l.trim_end_matches(" null") } else { l })
        .flat_map(|l| [l, "\n"])
        .collect();
    // No file name here: the same model deploys to the same digest whatever
    // it was called.
    Ok(format!("# Imported from BPMN 2.0 by `nagare import`.\n{body}"))
}

/// Each node as a designer writes it: its kind key first, then name,
/// description and lane, the rest, and `next` last. `end:` with no value
/// serializes as null like an absent key, so it is put back here.
fn tidy_nodes(v: &mut serde_yaml::Value, nodes: &IndexMap<String, NodeDef>) {
    use serde_yaml::{Mapping, Value as V};
    let Some(map) = v.get_mut("nodes").and_then(|n| n.as_mapping_mut()) else { return };
    for (id, n) in nodes {
        let Some(V::Mapping(m)) = map.get_mut(id.as_str()) else { continue };
        if matches!(n.end, Some(None)) {
            m.insert("end".into(), V::Null);
        }
        let mut tidy = Mapping::new();
        let kinds = crate::kinds::KINDS.iter().map(|k| k.key);
        let first: Vec<&str> = kinds.chain(["name", "description", "lane"]).collect();
        for k in first {
            if let Some(x) = m.shift_remove(k) {
                tidy.insert(k.into(), x);
            }
        }
        let next = m.shift_remove("next");
        for (k, x) in std::mem::take(m) {
            tidy.insert(k, x);
        }
        if let Some(x) = next {
            tidy.insert("next".into(), x);
        }
        *m = tidy;
        if let Some(sp) = &n.sub_process {
            if let Some(inner) = m.get_mut("sub_process") {
                tidy_nodes(inner, &sp.nodes);
            }
        }
    }
}

fn prune(v: &mut serde_yaml::Value) {
    use serde_yaml::Value as V;
    match v {
        V::Mapping(m) => {
            let keys: Vec<V> = m.keys().cloned().collect();
            for k in keys {
                // Literal values (a default, a connector input) are kept as they
                // are: `[]`, `{}` and null there are values.
                let literal = matches!(k.as_str(), Some("default" | "with"));
                let drop = match m.get_mut(&k) {
                    Some(V::Null) => true,
                    Some(_) if literal => false,
                    // Only where false is the default: `interrupting: false` is meaning.
                    Some(V::Bool(false)) => matches!(k.as_str(), Some("required" | "sequential" | "sensitive")),
                    Some(V::Sequence(s)) => s.is_empty(),
                    Some(V::Mapping(inner)) if inner.is_empty() => true,
                    Some(child) => {
                        prune(child);
                        false
                    }
                    None => false,
                };
                if drop {
                    m.shift_remove(&k);
                } else if let (false, Some(V::Sequence(s))) = (literal, m.get_mut(&k)) {
                    s.iter_mut().for_each(prune);
                }
            }
        }
        V::Sequence(s) => s.iter_mut().for_each(prune),
        _ => {}
    }
}

/// A repeating boundary timer: every this long, this many times (absent: for ever).
type Repeat = (String, Option<u32>);

/// An output mapping not yet translated: target, source, language.
type Output = (String, String, Lang);

/// What the importer learns about one variable.
#[derive(Debug, Clone)]
struct VarSeen {
    ty: Option<&'static str>,
    loc: Loc,
    element: String,
}

struct Imp {
    diags: Diagnostics,
    lang: Lang,
    messages: HashMap<String, String>,
    /// Message id → correlation key source (Zeebe, on the message).
    message_keys: HashMap<String, String>,
    errors: HashMap<String, String>,
    seen: IndexMap<String, VarSeen>,
    declared: IndexMap<String, VarDef>,
    bound: HashSet<String>,
    lanes: IndexMap<String, LaneDef>,
    node_lane: HashMap<String, String>,
    locs: HashMap<String, Loc>,
    initiator: Option<String>,
    used_ids: HashSet<String>,
    /// BPMN id → nagare node id, where `<nagare:node key="...">` names it (an
    /// id that is not a valid XML id is changed by the export).
    keys: HashMap<String, String>,
    /// Lane ids declared in `<nagare:process>` (the export names BPMN lanes
    /// `lane_<id>`).
    ext_lanes: HashSet<String>,
}

/// A sequence flow inside one scope.
#[derive(Debug, Clone)]
struct Flow<'x> {
    id: String,
    source: String,
    target: String,
    el: &'x Element,
}

/// The flow graph of one scope (the process, or one sub-process).
struct Scope<'x> {
    els: IndexMap<String, &'x Element>,
    out: HashMap<String, Vec<Flow<'x>>>,
    inc: HashMap<String, Vec<String>>,
}

impl<'x> Scope<'x> {
    fn outs(&self, id: &str) -> &[Flow<'x>] {
        self.out.get(id).map_or(&[], Vec::as_slice)
    }

    fn incs(&self, id: &str) -> usize {
        self.inc.get(id).map_or(0, Vec::len)
    }
}

fn id_of(el: &Element) -> String {
    el.attr("id").unwrap_or_default().to_string()
}

fn event_defs(el: &Element) -> Vec<&Element> {
    el.children.iter().filter(|c| c.ns == BPMN_NS && c.name.ends_with("EventDefinition")).collect()
}

fn ext<'x>(el: &'x Element, ns: &'x str, name: &'x str) -> Option<&'x Element> {
    el.child(BPMN_NS, "extensionElements").and_then(|x| x.child(ns, name))
}

fn exts<'x>(el: &'x Element, ns: &'x str, name: &'x str) -> Vec<&'x Element> {
    el.child(BPMN_NS, "extensionElements").map_or_else(Vec::new, |x| x.children_named(ns, name).collect())
}

impl Imp {
    fn new(root: &Element) -> Self {
        let lang = root.attr("expressionLanguage").and_then(Lang::from_name).unwrap_or(Lang::Plain);
        let mut messages = HashMap::new();
        let mut message_keys = HashMap::new();
        let mut errors = HashMap::new();
        for c in &root.children {
            if c.is(BPMN_NS, "message") {
                messages.insert(id_of(c), c.attr("name").map_or_else(|| id_of(c), str::to_string));
                if let Some(k) = ext(c, ZEEBE_NS, "subscription").and_then(|s| s.attr("correlationKey")) {
                    message_keys.insert(id_of(c), k.to_string());
                }
            }
            if c.is(BPMN_NS, "error") {
                let code = c.attr("errorCode").or(c.attr("name")).map_or_else(|| id_of(c), str::to_string);
                errors.insert(id_of(c), code);
            }
        }
        Imp {
            diags: Diagnostics::default(),
            lang,
            messages,
            message_keys,
            errors,
            seen: IndexMap::new(),
            declared: IndexMap::new(),
            bound: PROVIDED.iter().map(|s| s.to_string()).collect(),
            lanes: IndexMap::new(),
            node_lane: HashMap::new(),
            locs: HashMap::new(),
            initiator: None,
            used_ids: HashSet::new(),
            keys: HashMap::new(),
            ext_lanes: HashSet::new(),
        }
    }

    fn error(&mut self, code: &'static str, loc: Loc, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, loc, msg).with_hint(hint));
    }

    fn warn(&mut self, code: &'static str, loc: Loc, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags.push(Diagnostic::warning(code, loc, msg).with_hint(hint));
    }

    fn unsupported(&mut self, el: &Element, why: &str, hint: &str) {
        let id = el.attr("id").unwrap_or("(no id)");
        self.error(
            "unsupported-element",
            el.loc,
            format!("<{}> `{id}` ({}): {why}", el.qname, el.name),
            hint.to_string(),
        );
    }

    fn untranslatable(&mut self, el: &Element, what: &str, src: &str, lang: Lang, e: Untranslatable) {
        let id = el.attr("id").unwrap_or("(no id)");
        let src = src.trim();
        self.diags.push(
            Diagnostic::error(
                "untranslatable-expression",
                el.loc,
                format!("{what} of `{id}` ({} `{src}`): {}", lang.name(), e.message),
            )
            .with_hint(e.hint),
        );
    }

    // ---- variables ------------------------------------------------------------

    fn note_var(&mut self, name: &str, g: Option<Guess>, el: &Element) {
        if self.bound.contains(name) {
            return;
        }
        let ty = g.map(|g| match g {
            Guess::Number => "number",
            Guess::String => "string",
            Guess::Bool => "bool",
        });
        self.note_ty(name, ty, el);
    }

    fn note_ty(&mut self, name: &str, ty: Option<&'static str>, el: &Element) {
        if self.bound.contains(name) {
            return;
        }
        let element = id_of(el);
        match self.seen.get_mut(name) {
            Some(v) if v.ty.is_none() => v.ty = ty,
            Some(v) => {
                if let Some(t) = ty.filter(|t| Some(*t) != v.ty) {
                    let (was, at) = (v.ty.unwrap_or_default(), v.element.clone());
                    self.warn(
                        "variable-type",
                        el.loc,
                        format!("`{name}` is used as {t} here but as {was} in `{at}`; declared {was}"),
                        "change the type under `variables:` in the imported YAML if it is wrong",
                    );
                }
            }
            None => {
                self.seen.insert(name.to_string(), VarSeen { ty, loc: el.loc, element });
            }
        }
    }

    fn note_reads(&mut self, reads: &[(String, Option<Guess>)], el: &Element) {
        for (n, g) in reads {
            self.note_var(n, *g, el);
        }
    }

    /// A condition (or value) translated, its variables noted; `None` after a
    /// diagnostic.
    fn cond(&mut self, el: &Element, what: &str, src: &str, lang: Lang) -> Option<String> {
        match expr::condition(src, lang) {
            Ok(t) => {
                self.note_reads(&t.reads, el);
                Some(t.rhai)
            }
            Err(e) => {
                self.untranslatable(el, what, src, lang, e);
                None
            }
        }
    }

    /// The language of an expression element (`language` attribute, else the
    /// file's `expressionLanguage`).
    fn lang_of(&self, el: &Element) -> Lang {
        el.attr("language").and_then(Lang::from_name).unwrap_or(self.lang)
    }

    // ---- definitions and process ----------------------------------------------

    fn definitions(&mut self, root: &Element, opts: &ImportOptions) -> Option<ProcessDef> {
        if !root.is(BPMN_NS, "definitions") {
            self.error(
                "not-bpmn",
                root.loc,
                format!("the root element is <{}> in namespace `{}`, not BPMN 2.0 <definitions>", root.qname, root.ns),
                format!("a BPMN file starts with <bpmn:definitions xmlns:bpmn=\"{BPMN_NS}\">"),
            );
            return None;
        }
        let mut participant_names = HashMap::new();
        for c in &root.children {
            if c.is(BPMN_NS, "collaboration") {
                for p in c.children_named(BPMN_NS, "participant") {
                    if let (Some(r), Some(n)) = (p.attr("processRef"), p.attr("name")) {
                        participant_names.insert(r.to_string(), n.to_string());
                    }
                }
                if let Some(mf) = c.child(BPMN_NS, "messageFlow") {
                    self.warn(
                        "ignored-element",
                        mf.loc,
                        "message flows between pools are not imported (one process per file)",
                        "messages reach a nagare process through the messages API; the catch events are imported",
                    );
                }
            } else if c.ns == BPMN_NS && matches!(c.name.as_str(), "choreography" | "conversation" | "globalTask") {
                self.unsupported(c, "nagare runs processes only", "remove it, or keep it in a separate file");
            }
        }
        let processes: Vec<&Element> = root
            .children_named(BPMN_NS, "process")
            .filter(|p| p.children.iter().any(|c| c.ns == BPMN_NS && FLOW_NODES.contains(&c.name.as_str())))
            .collect();
        let process = match processes.as_slice() {
            [] => {
                self.error(
                    "no-process",
                    root.loc,
                    "the file has no <process> with flow nodes",
                    "draw the process (a start event, tasks, an end event) and save again",
                );
                return None;
            }
            [one] => *one,
            many => {
                let executable: Vec<&&Element> =
                    many.iter().filter(|p| p.attr("isExecutable") == Some("true")).collect();
                if let [one] = executable.as_slice() {
                    **one
                } else {
                    let ids: Vec<String> = many.iter().map(|p| id_of(p)).collect();
                    self.error(
                        "multiple-processes",
                        many[1].loc,
                        format!("the file has {} processes with flow nodes ({})", many.len(), ids.join(", ")),
                        "nagare imports one process per file: keep one pool, or mark only one isExecutable=\"true\"",
                    );
                    return None;
                }
            }
        };
        self.process(process, participant_names.get(&id_of(process)).cloned(), opts)
    }

    fn process(&mut self, p: &Element, pool: Option<String>, opts: &ImportOptions) -> Option<ProcessDef> {
        let id = id_of(p);
        if let Some(x) = ext(p, NAGARE_NS, "process") {
            if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(x.trimmed()) {
                if let Some(lanes) = v.get("lanes").and_then(|l| l.as_mapping()) {
                    self.ext_lanes = lanes.keys().filter_map(|k| k.as_str().map(str::to_string)).collect();
                }
            }
        }
        self.lane_sets(p);
        for (name, _) in &opts.declare {
            self.bound.remove(name);
        }
        let (start, nodes) = self.scope(p, false);
        let start = start?;
        let mut variables = IndexMap::new();
        for (name, seen) in std::mem::take(&mut self.seen) {
            if self.declared.contains_key(&name) || opts.declare.contains_key(&name) {
                continue;
            }
            let ty = match seen.ty {
                Some(t) => t,
                None => {
                    self.warn(
                        "variable-type",
                        seen.loc,
                        format!("the type of `{name}` (read in `{}`) is not evident; declared as string", seen.element),
                        "change its type under `variables:` in the imported YAML, or import with --var NAME:TYPE",
                    );
                    "string"
                }
            };
            variables.insert(name, var(ty));
        }
        // A lane without candidate groups is worked by the group named like it.
        for lane in self.lanes.values_mut() {
            if lane.groups.is_empty() {
                lane.groups.extend(lane.name.clone());
            }
        }
        let declared = std::mem::take(&mut self.declared);
        for (name, v) in declared {
            variables.insert(name, v);
        }
        for (name, ty) in &opts.declare {
            variables.insert(name.clone(), var(ty));
        }
        let mut nodes = nodes;
        if !opts.declare.is_empty() {
            add_declared_to_forms(&mut nodes, &opts.declare);
        }
        let mut def = ProcessDef {
            id,
            name: p.attr("name").map(str::to_string).or(pool),
            version: None,
            description: p.child(BPMN_NS, "documentation").map(|d| d.trimmed().to_string()).filter(|d| !d.is_empty()),
            time_zone: None,
            lanes: std::mem::take(&mut self.lanes),
            variables,
            settings: IndexMap::new(),
            start,
            nodes,
            fallback: None,
            priority: None,
            retention: None,
        };
        if let Some(x) = ext(p, NAGARE_NS, "process") {
            self.merge_process_ext(&mut def, x);
        }
        Some(def)
    }

    fn merge_process_ext(&mut self, def: &mut ProcessDef, x: &Element) {
        use serde_yaml::Value as Y;
        // JSON read as YAML (a superset) keeps the order of maps.
        let Some(Y::Mapping(ext)) = self.ext_json(x, "process") else { return };
        let Ok(Y::Mapping(mut base)) = serde_yaml::to_value(&*def) else { return };
        for (k, v) in ext {
            if k.as_str() != Some("start") && k.as_str() != Some("nodes") {
                base.insert(k, v);
            }
        }
        strip_nulls(&mut base);
        match serde_yaml::from_value::<ProcessDef>(Y::Mapping(base)) {
            Ok(mut d) => {
                d.nodes = std::mem::take(&mut def.nodes);
                d.start = def.start.clone();
                *def = d;
            }
            Err(e) => self.error("bad-extension", x.loc, format!("<nagare:process>: {e}"), "fix the JSON"),
        }
    }

    /// The JSON object inside `<nagare:{what}>`, read order-preserving.
    fn ext_json(&mut self, x: &Element, what: &str) -> Option<serde_yaml::Value> {
        match serde_yaml::from_str::<serde_yaml::Value>(x.trimmed()) {
            Ok(v @ serde_yaml::Value::Mapping(_)) => Some(v),
            Ok(_) => {
                self.error("bad-extension", x.loc, format!("<nagare:{what}> is not a JSON object"), "fix the JSON");
                None
            }
            Err(e) => {
                self.error("bad-extension", x.loc, format!("<nagare:{what}> is not JSON: {e}"), "fix the JSON");
                None
            }
        }
    }

    /// Lanes (leaf lanes of nested lane sets) and which node sits in which.
    fn lane_sets(&mut self, p: &Element) {
        let mut stack: Vec<&Element> = p.children_named(BPMN_NS, "laneSet").collect();
        while let Some(set) = stack.pop() {
            for lane in set.children_named(BPMN_NS, "lane") {
                if let Some(child) = lane.child(BPMN_NS, "childLaneSet") {
                    stack.push(child);
                    continue;
                }
                let id = id_of(lane);
                for r in lane.children_named(BPMN_NS, "flowNodeRef") {
                    self.node_lane.insert(r.trimmed().to_string(), id.clone());
                }
                let name = lane.attr("name").map(|n| n.split_whitespace().collect::<Vec<_>>().join(" "));
                self.lanes.insert(id, LaneDef { name, groups: Vec::new(), notify: None });
            }
        }
    }

    // ---- scopes ---------------------------------------------------------------

    fn scope(&mut self, parent: &Element, sub: bool) -> (Option<StartDef>, IndexMap<String, NodeDef>) {
        let mut sc = Scope { els: IndexMap::new(), out: HashMap::new(), inc: HashMap::new() };
        let mut skip = HashSet::new();
        for c in &parent.children {
            if c.ns != BPMN_NS {
                continue;
            }
            let name = c.name.as_str();
            if name == "sequenceFlow" {
                let (s, t) = (c.attr("sourceRef").unwrap_or_default(), c.attr("targetRef").unwrap_or_default());
                let f = Flow { id: id_of(c), source: s.to_string(), target: t.to_string(), el: c };
                sc.out.entry(s.to_string()).or_default().push(f);
                sc.inc.entry(t.to_string()).or_default().push(s.to_string());
            } else if FLOW_NODES.contains(&name) {
                let id = id_of(c);
                if !self.used_ids.insert(id.clone()) {
                    self.error(
                        "duplicate-id",
                        c.loc,
                        format!("id `{id}` is used twice"),
                        "give each element its own id",
                    );
                }
                if let Some(key) = ext(c, NAGARE_NS, "node").and_then(|x| x.attr("key")) {
                    self.keys.insert(id.clone(), key.to_string());
                    self.locs.insert(key.to_string(), c.loc);
                }
                self.locs.insert(id.clone(), c.loc);
                sc.els.insert(id, c);
            } else if !DOCUMENTATION.contains(&name) && name != "lane" {
                let hint = match name {
                    "businessRuleTask" => "DMN decisions do not run in nagare: use an exclusive gateway, or a service task calling a connector",
                    "complexGateway" => "use exclusive, inclusive or parallel gateways",
                    "transaction" | "adHocSubProcess" => "use a plain sub-process",
                    _ => "remove it, or model it with the elements listed in README § BPMN import",
                };
                self.unsupported(c, "nagare does not run this element", hint);
                // Kept as a placeholder so that its flows are not reported again.
                if let Some(id) = c.attr("id") {
                    skip.insert(id.to_string());
                    sc.els.insert(id.to_string(), c);
                }
            }
        }
        for f in sc.out.values().flatten() {
            for end in [&f.source, &f.target] {
                if !sc.els.contains_key(end) {
                    self.error(
                        "bad-flow",
                        f.el.loc,
                        format!("sequence flow `{}` refers to `{end}`, which is not a flow node of this scope", f.id),
                        "connect flows to elements of the same process or sub-process",
                    );
                }
            }
        }

        // The start event(s).
        let starts: Vec<&Element> = sc.els.values().copied().filter(|e| e.name == "startEvent").collect();
        let mut start = None;
        match starts.as_slice() {
            [] => self.error(
                "no-start",
                parent.loc,
                format!("`{}` has no start event", id_of(parent)),
                "add a start event",
            ),
            [s] => start = self.start_event(s, &sc, sub),
            [_, second, ..] => self.unsupported(
                second,
                "a second start event; a nagare process (and sub-process) has one",
                "keep one start event; start variants can branch after it with an exclusive gateway",
            ),
        }

        // Event-based gateways consume the catch events they lead to.
        let mut consumed = HashSet::new();
        for el in sc.els.values() {
            if el.name == "eventBasedGateway" {
                for f in sc.outs(&id_of(el)) {
                    consumed.insert(f.target.clone());
                }
            }
        }

        let mut nodes = IndexMap::new();
        let mut boundaries = Vec::new();
        let ids: Vec<String> = sc.els.keys().cloned().collect();
        for id in ids {
            let el = sc.els[&id];
            if el.name == "startEvent" || consumed.contains(&id) || skip.contains(&id) || self.passthrough(el, &sc) {
                continue;
            }
            if el.name == "boundaryEvent" {
                boundaries.push(el);
                continue;
            }
            let made = match ext(el, NAGARE_NS, "node") {
                Some(x) if el.name != "boundaryEvent" => self.node_from_ext(el, &sc, &mut nodes, x),
                _ => self.node(el, &sc, &mut nodes),
            };
            if let Some(n) = made {
                nodes.insert(self.key(&id), n);
            }
        }
        for b in boundaries {
            let Some(on) = b.attr("attachedToRef") else {
                self.unsupported(b, "a boundary event attached to nothing", "attach it to a task");
                continue;
            };
            let def = self.boundary(b, &sc);
            match (nodes.get_mut(&self.key(on)), def) {
                (Some(n), Some(d)) => n.boundary.get_or_insert_with(Vec::new).push(d),
                (None, _) => self.error(
                    "bad-boundary",
                    b.loc,
                    format!("boundary event `{}` is attached to `{on}`, which is not an imported activity", id_of(b)),
                    "attach boundary events to tasks, sub-processes or call activities",
                ),
                _ => {}
            }
        }
        (start, nodes)
    }

    /// Gateways and events that only pass the token on: nagare nodes may share a
    /// successor, so merges need no node.
    fn passthrough(&self, el: &Element, sc: &Scope<'_>) -> bool {
        if ext(el, NAGARE_NS, "node").is_some() {
            return false;
        }
        let id = id_of(el);
        let (outs, incs) = (sc.outs(&id).len(), sc.incs(&id));
        match el.name.as_str() {
            "exclusiveGateway" => outs == 1,
            "parallelGateway" | "inclusiveGateway" => outs == 1 && incs <= 1,
            "intermediateThrowEvent" => outs == 1 && event_defs(el).is_empty(),
            _ => false,
        }
    }

    /// The nagare node id of the element `id`.
    fn key(&self, id: &str) -> String {
        self.keys.get(id).cloned().unwrap_or_else(|| id.to_string())
    }

    /// Where a flow into `id` really leads, past pass-through elements (as a
    /// nagare node id).
    fn resolve(&mut self, sc: &Scope<'_>, id: &str, from: &Element) -> String {
        let mut cur = id.to_string();
        for _ in 0..=sc.els.len() {
            match sc.els.get(&cur) {
                Some(el) if self.passthrough(el, sc) => cur = sc.outs(&cur)[0].target.clone(),
                _ => return self.key(&cur),
            }
        }
        self.error(
            "bad-flow",
            from.loc,
            format!("the flow from `{}` runs in a circle of merging gateways", id_of(from)),
            "put a task on the loop",
        );
        cur
    }

    /// The single successor of an activity or event; an activity with no flow out
    /// ends there (BPMN's implicit end), with a synthesized end node.
    fn next_of(&mut self, el: &Element, sc: &Scope<'_>, nodes: &mut IndexMap<String, NodeDef>) -> Option<String> {
        let id = id_of(el);
        let outs = sc.outs(&id);
        match outs {
            [] => {
                let end = format!("{}_end", self.key(&id));
                self.warn(
                    "implicit-end",
                    el.loc,
                    format!("`{id}` has no outgoing flow; it ends its path (node `{end}` added)"),
                    "draw an end event after it to make this explicit",
                );
                nodes.insert(end.clone(), NodeDef { end: Some(None), ..NodeDef::default() });
                Some(end)
            }
            [f] => {
                if f.el.child(BPMN_NS, "conditionExpression").is_some() {
                    self.unsupported(
                        f.el,
                        "a conditional flow out of an activity",
                        "put an exclusive gateway after the activity and the condition on its flow",
                    );
                }
                let t = f.target.clone();
                Some(self.resolve(sc, &t, el))
            }
            [_, second, ..] => {
                self.unsupported(
                    el,
                    "several flows out of an activity or event (an implicit split)",
                    "put a parallel or exclusive gateway after it",
                );
                let _ = second;
                None
            }
        }
    }

    // ---- events ---------------------------------------------------------------

    fn start_event(&mut self, el: &Element, sc: &Scope<'_>, sub: bool) -> Option<StartDef> {
        let id = id_of(el);
        let mut s = StartDef {
            name: el.attr("name").map(str::to_string),
            timer: None,
            message: None,
            set: None,
            watch: None,
            rules: Vec::new(),
            groups: Vec::new(),
            next: String::new(),
        };
        if let Some(i) = el.attr_ns(CAMUNDA_NS, "initiator") {
            self.initiator = Some(i.to_string());
        }
        for d in event_defs(el) {
            match (d.name.as_str(), sub) {
                ("timerEventDefinition", false) => s.timer = self.timer(d, true).map(|(t, _)| t),
                ("messageEventDefinition", false) => s.message = Some(self.message_name(d, el)),
                _ => self.unsupported(
                    el,
                    &format!("a start event with <{}>", d.qname),
                    "nagare starts by hand/API, on a timer or a message (process level only)",
                ),
            }
        }
        match sc.outs(&id) {
            [f] => {
                let t = f.target.clone();
                s.next = self.resolve(sc, &t, el);
            }
            [] => {
                self.error("bad-flow", el.loc, format!("start event `{id}` has no outgoing flow"), "connect it");
                return None;
            }
            _ => {
                self.unsupported(el, "several flows out of the start event", "put a parallel gateway after it");
                return None;
            }
        }
        if let Some(x) = ext(el, NAGARE_NS, "node") {
            return self.merge_node_ext(&s, x);
        }
        Some(s)
    }

    fn message_name(&mut self, d: &Element, el: &Element) -> String {
        match d.attr("messageRef") {
            Some(r) => self.messages.get(r).cloned().unwrap_or_else(|| r.to_string()),
            None => {
                let id = id_of(el);
                self.warn(
                    "message-name",
                    el.loc,
                    format!("`{id}` catches a message without a messageRef; it listens for the message `{id}`"),
                    "name the message in the modeler (Message → Name)",
                );
                id
            }
        }
    }

    /// A message's correlation key: Zeebe's `subscription correlationKey`, on
    /// the catching element (older Zeebe) or on the message it refers to.
    fn message_key(&mut self, el: &Element, msg_ref: Option<&str>) -> Option<String> {
        let own = ext(el, ZEEBE_NS, "subscription").and_then(|s| s.attr("correlationKey")).map(str::to_string);
        let key = own.or_else(|| msg_ref.and_then(|r| self.message_keys.get(r).cloned()))?;
        self.cond(el, "correlation key", &key, Lang::Feel)
    }

    /// A timer definition; the bool says whether it repeats (`R/…` on a boundary).
    fn timer(&mut self, d: &Element, start: bool) -> Option<(TimerDef, Option<Repeat>)> {
        let text = |n: &str| d.child(BPMN_NS, n).map(|c| c.trimmed().to_string());
        let literal = |s: &str| s.trim_start_matches('=').trim().trim_matches('"').to_string();
        let is_expr = |s: &str| s.starts_with("${") || s.starts_with("#{") || (s.starts_with('=') && s.contains('('));
        let (kind, value) = if let Some(v) = text("timeDuration") {
            ("duration", v)
        } else if let Some(v) = text("timeDate") {
            ("date", v)
        } else if let Some(v) = text("timeCycle") {
            ("cycle", v)
        } else {
            self.unsupported(d, "a timer with no time", "set a duration (PT1H), a date or a cycle in the modeler");
            return None;
        };
        if is_expr(&value) {
            self.unsupported(
                d,
                &format!("a timer computed by an expression (`{value}`)"),
                "write a literal ISO 8601 duration/date, or set `timer: { at: <rhai expression> }` in the imported YAML",
            );
            return None;
        }
        let v = literal(&value);
        let mut m = TimerMap::default();
        match kind {
            "duration" => m.duration = Some(v),
            "date" => m.date = Some(v),
            _ => {
                let parts: Vec<&str> = v.split('/').collect();
                if start {
                    if parts.len() == 1 && v.split_whitespace().count() >= 5 {
                        m.cron = Some(v);
                    } else {
                        m.cycle = Some(v);
                    }
                } else if parts.len() == 2 && parts[0].starts_with('R') {
                    // A repeating boundary timer: R3/PT1H → after PT1H, every PT1H, 3 times.
                    let times = parts[0][1..].parse::<u32>().ok();
                    let every = parts[1].to_string();
                    m.duration = Some(every.clone());
                    return Some((TimerDef::Full(m), Some((every, times))));
                } else {
                    self.unsupported(
                        d,
                        &format!("a cycle `{v}` on a timer that is not a start event"),
                        "write R<n>/<duration> (e.g. R3/PT1H) for a repeating reminder",
                    );
                    return None;
                }
            }
        }
        Some((TimerDef::Full(m), None))
    }

    fn end_event(&mut self, el: &Element) -> Option<EndDef> {
        let defs = event_defs(el);
        match defs.as_slice() {
            [] => Some(EndDef::Kind(EndKind::Normal)),
            [d] if d.name == "terminateEventDefinition" => Some(EndDef::Kind(EndKind::Terminate)),
            [d] if d.name == "errorEventDefinition" => {
                let code = d.attr("errorRef").map(|r| self.errors.get(r).cloned().unwrap_or_else(|| r.to_string()));
                match code {
                    Some(code) => Some(EndDef::Error(ErrorEndDef { error: code, message: None })),
                    None => {
                        self.unsupported(
                            el,
                            "an error end event without an error",
                            "pick an error (code) in the modeler",
                        );
                        None
                    }
                }
            }
            [d, ..] => {
                self.unsupported(
                    el,
                    &format!("an end event with <{}>", d.qname),
                    "nagare ends plainly, with terminate or with an error; send messages with a service task before the end",
                );
                None
            }
        }
    }

    fn boundary(&mut self, b: &Element, sc: &Scope<'_>) -> Option<BoundaryDef> {
        let id = id_of(b);
        let interrupting = b.attr("cancelActivity") != Some("false");
        let next = match sc.outs(&id) {
            [f] => {
                let t = f.target.clone();
                self.resolve(sc, &t, b)
            }
            _ => {
                self.error(
                    "bad-boundary",
                    b.loc,
                    format!("boundary event `{id}` needs exactly one outgoing flow"),
                    "connect it to the path it starts",
                );
                return None;
            }
        };
        let mut d = BoundaryDef {
            timer: None,
            error: None,
            message: None,
            key: None,
            interrupting: (!interrupting).then_some(false),
            every: None,
            times: None,
            set: None,
            next,
        };
        let defs = event_defs(b);
        match defs.as_slice() {
            [t] if t.name == "timerEventDefinition" => {
                let (timer, repeat) = self.timer(t, false)?;
                d.timer = Some(timer);
                if let Some((every, times)) = repeat {
                    if interrupting {
                        self.unsupported(
                            b,
                            "a repeating timer that interrupts",
                            "make it non-interrupting, or use a plain duration",
                        );
                        return None;
                    }
                    d.every = Some(every);
                    d.times = times;
                }
            }
            [m] if m.name == "messageEventDefinition" => {
                d.message = Some(self.message_name(m, b));
                d.key = self.message_key(b, m.attr("messageRef"));
            }
            [e] if e.name == "errorEventDefinition" => {
                d.error = Some(match e.attr("errorRef") {
                    Some(r) => self.errors.get(r).cloned().unwrap_or_else(|| r.to_string()),
                    None => "any".to_string(),
                });
                d.interrupting = None;
            }
            [] if ext(b, NAGARE_NS, "node").is_some() => {}
            [] => {
                self.unsupported(b, "a boundary event with no trigger", "make it a timer, message or error event");
                return None;
            }
            [x, ..] => {
                self.unsupported(
                    b,
                    &format!("a boundary event with <{}>", x.qname),
                    "nagare's boundary events are timers, messages and errors",
                );
                return None;
            }
        }
        if let Some(x) = ext(b, NAGARE_NS, "node") {
            return self.merge_node_ext(&d, x);
        }
        Some(d)
    }

    // ---- nodes ----------------------------------------------------------------

    /// A node nagare exported: its definition from `<nagare:node>`, its flow
    /// (next, branch targets, joins, boundaries, a sub-process's inside) from the
    /// structure, so that a flow re-wired in a modeler wins.
    fn node_from_ext(
        &mut self,
        el: &Element,
        sc: &Scope<'_>,
        nodes: &mut IndexMap<String, NodeDef>,
        x: &Element,
    ) -> Option<NodeDef> {
        let mut n: NodeDef = match serde_yaml::from_str(x.trimmed()) {
            Ok(n) => n,
            Err(e) => {
                self.error("bad-extension", x.loc, format!("<nagare:node>: {e}"), "fix the JSON");
                return None;
            }
        };
        n.boundary = None;
        // A task moved to another lane in the modeler is in that lane now.
        if let Some(lane) = self.node_lane.get(&id_of(el)) {
            let lane = lane.strip_prefix("lane_").filter(|l| self.ext_lanes.contains(*l)).unwrap_or(lane);
            if self.ext_lanes.contains(lane) && (n.lane.is_some() || n.user_task.is_some()) {
                n.lane = Some(lane.to_string());
            }
        }
        match el.name.as_str() {
            // A join names its fork itself: a nagare fork may be reached from
            // several paths and a join closes its fork whatever the drawing says.
            _ if n.join.is_some() => n.next = Some(self.next_of(el, sc, nodes)?),
            "parallelGateway" | "inclusiveGateway" if n.parallel.is_some() || n.inclusive.is_some() => {
                if n.parallel.is_some() {
                    let outs = sc.outs(&id_of(el)).to_vec();
                    n.parallel = Some(outs.iter().map(|f| self.resolve(sc, &f.target, el)).collect());
                } else {
                    let d = self.choice_split(el, sc, NodeDef::default())?;
                    n.inclusive = d.inclusive;
                    n.default = d.default;
                }
            }
            "exclusiveGateway" | "inclusiveGateway" | "parallelGateway" | "eventBasedGateway" => {
                let d = match el.name.as_str() {
                    "parallelGateway" => self.parallel(el, sc, NodeDef::default()),
                    "eventBasedGateway" => self.event_based(el, sc, NodeDef::default()),
                    _ => self.choice(el, sc, NodeDef::default()),
                }?;
                n.next = d.next;
                n.exclusive = d.exclusive;
                n.inclusive = d.inclusive;
                n.parallel = d.parallel;
                n.event_based = d.event_based;
                n.join = d.join;
                n.default = d.default;
            }
            "endEvent" => n.next = None,
            "userTask" if sc.outs(&id_of(el)).len() > 1 => self.outcome_flows(el, sc, &mut n)?,
            _ => {
                if el.name == "subProcess" {
                    let (start, inner) = self.scope(el, true);
                    let sp = n.sub_process.get_or_insert_with(SubProcessDef::default);
                    sp.start = start.map(|s| SubStartDef { name: s.name, next: s.next });
                    sp.nodes = inner;
                }
                n.next = Some(self.next_of(el, sc, nodes)?);
            }
        }
        Some(n)
    }

    /// A user task's flows out: the task's `default` flow is `next`, each flow
    /// whose condition is `outcome == "NAME"` an outcome (`send_back` the
    /// send-back), as the export writes them.
    fn outcome_flows(&mut self, el: &Element, sc: &Scope<'_>, n: &mut NodeDef) -> Option<()> {
        let default = el.attr("default");
        let mut outcomes = IndexMap::new();
        for f in sc.outs(&id_of(el)).to_vec() {
            let target = self.resolve(sc, &f.target, el);
            if Some(f.id.as_str()) == default {
                n.next = Some(target);
                continue;
            }
            let cond = f.el.child(BPMN_NS, "conditionExpression").map(|c| c.trimmed().to_string()).unwrap_or_default();
            let name = cond
                .strip_prefix("outcome")
                .map(str::trim_start)
                .and_then(|r| r.strip_prefix("=="))
                .map(str::trim)
                .and_then(|q| {
                    q.strip_prefix('"')
                        .and_then(|q| q.strip_suffix('"'))
                        .or(q.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')))
                });
            match name {
                Some("send_back") => n.send_back = Some(target),
                Some(name) => {
                    outcomes.insert(name.to_string(), target);
                }
                None => {
                    self.unsupported(
                        f.el,
                        "a flow out of a user task that is neither its default nor `outcome == \"NAME\"`",
                        "make one flow the task's default, and give the others conditions `outcome == \"NAME\"` (named outcomes)",
                    );
                    return None;
                }
            }
        }
        if n.next.is_none() {
            self.error(
                "bad-flow",
                el.loc,
                format!("user task `{}` has several flows out but no default flow", id_of(el)),
                "mark the flow taken on plain completion as the default flow",
            );
            return None;
        }
        if !outcomes.is_empty() {
            n.outcomes = Some(outcomes);
        }
        Some(())
    }

    fn node(&mut self, el: &Element, sc: &Scope<'_>, nodes: &mut IndexMap<String, NodeDef>) -> Option<NodeDef> {
        let id = id_of(el);
        let mut n = NodeDef {
            name: el.attr("name").map(|n| n.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|n| !n.is_empty()),
            description: el.child(BPMN_NS, "documentation").map(|d| d.trimmed().to_string()).filter(|d| !d.is_empty()),
            ..NodeDef::default()
        };
        let is_activity = matches!(
            el.name.as_str(),
            "userTask"
                | "serviceTask"
                | "sendTask"
                | "receiveTask"
                | "scriptTask"
                | "manualTask"
                | "task"
                | "callActivity"
                | "subProcess"
        );
        if !is_activity {
            if let Some(lc) = el.children.iter().find(|c| c.ns == BPMN_NS && c.name.ends_with("LoopCharacteristics")) {
                self.unsupported(lc, "loop characteristics outside an activity", "remove them");
            }
        }
        match el.name.as_str() {
            "endEvent" => {
                n.end = Some(Some(self.end_event(el)?));
                if matches!(n.end, Some(Some(EndDef::Kind(EndKind::Normal)))) {
                    n.end = Some(None);
                }
                if !sc.outs(&id).is_empty() {
                    self.error("bad-flow", el.loc, format!("end event `{id}` has an outgoing flow"), "remove the flow");
                }
                n.name = None.or(n.name);
            }
            "userTask" => self.user_task(el, &mut n),
            "serviceTask" | "sendTask" => self.service_task(el, &mut n),
            "scriptTask" => self.script_task(el, &mut n),
            "manualTask" | "task" => {
                // Work done outside the engine (or an abstract task): passes on.
                n.script = Some("()".to_string());
                let what = if el.name == "task" { "an untyped task" } else { "a manual task" };
                n.description.get_or_insert_with(|| format!("{what}: done outside nagare, the token passes on"));
            }
            "receiveTask" => {
                let name = match el.attr("messageRef") {
                    Some(r) => self.messages.get(r).cloned().unwrap_or_else(|| r.to_string()),
                    None => self.message_name(el, el),
                };
                n.message = Some(name);
                n.key = self.message_key(el, el.attr("messageRef"));
            }
            "callActivity" => self.call_activity(el, &mut n),
            "subProcess" => {
                if el.attr("triggeredByEvent") == Some("true") {
                    self.unsupported(
                        el,
                        "an event sub-process",
                        "use boundary events on a sub-process around the work it should interrupt",
                    );
                    return None;
                }
                let (start, inner) = self.scope(el, true);
                n.sub_process = Some(SubProcessDef {
                    start: start.map(|s| SubStartDef { name: s.name, next: s.next }),
                    nodes: inner,
                    ..SubProcessDef::default()
                });
            }
            "exclusiveGateway" | "inclusiveGateway" => return self.choice(el, sc, n),
            "parallelGateway" => return self.parallel(el, sc, n),
            "eventBasedGateway" => return self.event_based(el, sc, n),
            "intermediateCatchEvent" => {
                let defs = event_defs(el);
                match defs.as_slice() {
                    [t] if t.name == "timerEventDefinition" => n.timer = Some(self.timer(t, false)?.0),
                    [m] if m.name == "messageEventDefinition" => {
                        n.message = Some(self.message_name(m, el));
                        n.key = self.message_key(el, m.attr("messageRef"));
                    }
                    _ => {
                        let what = defs.first().map_or("no trigger".to_string(), |d| format!("<{}>", d.qname));
                        self.unsupported(
                            el,
                            &format!("an intermediate catch event with {what}"),
                            "nagare waits for timers and messages",
                        );
                        return None;
                    }
                }
            }
            "intermediateThrowEvent" => {
                self.unsupported(
                    el,
                    "a throwing intermediate event (message, signal, escalation, link, compensation)",
                    "send messages with a service task (a connector); plain throw events are dropped on import",
                );
                return None;
            }
            _ => {
                self.unsupported(el, "not run by nagare", "remove it");
                return None;
            }
        }
        if el.name == "userTask" && sc.outs(&id).len() > 1 {
            self.outcome_flows(el, sc, &mut n)?;
        } else if el.name != "endEvent" {
            n.next = Some(self.next_of(el, sc, nodes)?);
        }
        if is_activity {
            self.loop_characteristics(el, &mut n);
        }
        Some(n)
    }

    /// `<nagare:node>` over what the structure gave (`T` a [`NodeDef`] or the
    /// start's [`StartDef`]): flow keys from the structure, everything else from
    /// the extension.
    fn merge_node_ext<T>(&mut self, derived: &T, x: &Element) -> Option<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        use serde_yaml::Value as Y;
        let Y::Mapping(ext) = self.ext_json(x, "node")? else { return None };
        let Ok(Y::Mapping(mut base)) = serde_yaml::to_value(derived) else { return None };
        strip_nulls(&mut base);
        let has_next = base.contains_key("next");
        for (k, v) in ext {
            let key = k.as_str().unwrap_or_default().to_string();
            if FLOW_KEYS.contains(&key.as_str()) && (key != "next" || has_next) {
                continue;
            }
            match (key.as_str(), base.get_mut(&k), v) {
                ("sub_process", Some(Y::Mapping(sp)), Y::Mapping(x)) => {
                    for (sk, sv) in x {
                        if sk.as_str() != Some("start") && sk.as_str() != Some("nodes") {
                            sp.insert(sk, sv);
                        }
                    }
                }
                (_, _, v) => {
                    base.insert(k, v);
                }
            }
        }
        serde_yaml::from_value(Y::Mapping(base))
            .map_err(|e| self.error("bad-extension", x.loc, format!("<nagare:node>: {e}"), "fix the JSON"))
            .ok()
    }

    fn user_task(&mut self, el: &Element, n: &mut NodeDef) {
        let id = id_of(el);
        // The title in the inbox; the name stays for diagrams (they label by name).
        n.user_task = Some(n.name.clone().unwrap_or_else(|| id.clone()));
        // Candidate groups: Camunda 7 attribute, Zeebe assignment definition.
        let mut groups: Vec<String> = Vec::new();
        let zeebe_assign = ext(el, ZEEBE_NS, "assignmentDefinition");
        for src in [el.attr_ns(CAMUNDA_NS, "candidateGroups"), zeebe_assign.and_then(|a| a.attr("candidateGroups"))]
            .into_iter()
            .flatten()
        {
            let s = src.trim().trim_start_matches('=').trim_matches(['[', ']']);
            if s.starts_with("${") || s.contains('(') {
                self.unsupported(el, "candidate groups computed by an expression", "list the group names");
                continue;
            }
            groups.extend(s.split(',').map(|g| g.trim().trim_matches('"').to_string()).filter(|g| !g.is_empty()));
        }
        let lane = match self.node_lane.get(&id).cloned() {
            Some(l) => {
                let lane = self.lanes.get_mut(&l).expect("lanes read before nodes");
                for g in &groups {
                    if !lane.groups.contains(g) {
                        lane.groups.push(g.clone());
                    }
                }
                l
            }
            None if !groups.is_empty() => {
                let l = groups.join("_").chars().map(|c| if c.is_whitespace() || c == '/' { '_' } else { c }).collect();
                self.lanes.entry(l).or_insert_with(|| LaneDef { name: None, groups: groups.clone(), notify: None });
                groups.join("_").chars().map(|c| if c.is_whitespace() || c == '/' { '_' } else { c }).collect()
            }
            None => {
                self.warn(
                    "default-lane",
                    el.loc,
                    format!("user task `{id}` is in no lane and names no candidate group; it goes to lane `users`"),
                    "draw lanes (one per role), or set candidate groups on the task",
                );
                self.lanes.entry("users".to_string()).or_insert_with(|| LaneDef {
                    name: None,
                    groups: Vec::new(),
                    notify: None,
                });
                "users".to_string()
            }
        };
        n.lane = Some(lane);
        // Assignee.
        let assignee = el.attr_ns(CAMUNDA_NS, "assignee").or(zeebe_assign.and_then(|a| a.attr("assignee")));
        if let Some(a) = assignee.map(str::trim).filter(|a| !a.is_empty()) {
            let is_expr = a.starts_with("${") || a.starts_with("#{") || a.starts_with('=');
            if is_expr {
                let lang = if a.starts_with('=') { Lang::Feel } else { Lang::Juel };
                let initiator = self.initiator.clone();
                if let Some(r) = self.cond(el, "assignee", a, lang) {
                    let r = if initiator.as_deref() == Some(r.as_str()) { "started_by".to_string() } else { r };
                    if let Some(i) = &initiator {
                        self.seen.shift_remove(i);
                    }
                    n.assignee = Some(r);
                }
            } else {
                n.assignee = Some(format!("{a:?}"));
            }
        }
        // Forms: Camunda 7 generated task forms.
        if let Some(fd) = ext(el, CAMUNDA_NS, "formData") {
            let mut form = IndexMap::new();
            for f in fd.children_named(CAMUNDA_NS, "formField") {
                let Some(name) = f.attr("id") else { continue };
                let ty = match f.attr("type").unwrap_or("string") {
                    "long" | "double" | "integer" | "number" => "number",
                    "boolean" => "bool",
                    "date" => "date",
                    "enum" => "choice",
                    _ => "string",
                };
                let mut v = var(ty);
                v.label = f.attr("label").map(str::to_string);
                if ty == "choice" {
                    v.options = Some(
                        f.children_named(CAMUNDA_NS, "value")
                            .filter_map(|o| o.attr("id").map(str::to_string))
                            .collect(),
                    );
                }
                let required = f.child(CAMUNDA_NS, "validation").is_some_and(|vs| {
                    vs.children_named(CAMUNDA_NS, "constraint").any(|c| c.attr("name") == Some("required"))
                });
                let readonly = f.child(CAMUNDA_NS, "validation").is_some_and(|vs| {
                    vs.children_named(CAMUNDA_NS, "constraint").any(|c| c.attr("name") == Some("readonly"))
                });
                if let Some(d) = f.attr("defaultValue") {
                    if !d.contains("${") {
                        v.default = Some(match ty {
                            "number" => {
                                d.parse::<f64>().map(serde_json::Value::from).unwrap_or(serde_json::Value::from(d))
                            }
                            "bool" => serde_json::Value::Bool(d == "true"),
                            _ => serde_json::Value::from(d),
                        });
                    }
                }
                let mode = if readonly {
                    FieldMode::Readonly
                } else if required {
                    FieldMode::Required
                } else {
                    FieldMode::Optional
                };
                form.insert(name.to_string(), mode);
                self.bound.remove(name);
                self.seen.shift_remove(name);
                self.declared.entry(name.to_string()).or_insert(v);
            }
            n.form = Some(form);
        }
        let form_key = el.attr_ns(CAMUNDA_NS, "formKey").map(str::to_string).or_else(|| {
            ext(el, ZEEBE_NS, "formDefinition").and_then(|f| f.attr("formKey").or(f.attr("formId")).map(str::to_string))
        });
        if let Some(k) = form_key {
            self.warn(
                "ignored-extension",
                el.loc,
                format!("user task `{id}` uses the external form `{k}`; its fields are not in the BPMN file"),
                "list the fields under `form:` in the imported YAML (or import with --var NAME:TYPE)",
            );
        }
        if let Some(d) = el.attr_ns(CAMUNDA_NS, "dueDate") {
            self.warn(
                "ignored-extension",
                el.loc,
                format!("due date `{d}` of `{id}` is not imported"),
                "write `due:` in the YAML",
            );
        }
    }

    fn service_task(&mut self, el: &Element, n: &mut NodeDef) {
        let id = id_of(el);
        let zeebe = ext(el, ZEEBE_NS, "taskDefinition");
        let ty = zeebe
            .and_then(|t| t.attr("type"))
            .map(|t| t.trim_start_matches('=').trim().trim_matches('"').to_string())
            .or_else(|| el.attr_ns(CAMUNDA_NS, "topic").map(str::to_string))
            .or_else(|| {
                ext(el, CAMUNDA_NS, "connector")
                    .and_then(|c| c.child(CAMUNDA_NS, "connectorId"))
                    .map(|c| c.trimmed().to_string())
            });
        let java = ["class", "delegateExpression", "expression"].iter().find_map(|a| el.attr_ns(CAMUNDA_NS, a));
        match (ty, java) {
            (Some(t), _) => n.service = Some(t),
            (None, Some(j)) => {
                self.unsupported(
                    el,
                    &format!("a Java delegate (`{j}`) does not run in nagare"),
                    "make it an external task (camunda:type=\"external\" camunda:topic=\"<connector>\") or set zeebe:taskDefinition type to a nagare connector, e.g. mail.send",
                );
                return;
            }
            (None, None) => {
                self.error(
                    "missing-task-type",
                    el.loc,
                    format!("service task `{id}` names no connector"),
                    "set the task type (Zeebe: Task definition → Type; Camunda 7: External → Topic) to a nagare connector, e.g. mail.send",
                );
                return;
            }
        }
        if let Some(r) = zeebe.and_then(|t| t.attr("retries")).and_then(|r| r.trim().parse::<u32>().ok()) {
            n.retry = Some(RetryDef { attempts: Some(r), backoff: None });
        }
        let (inputs, outputs) = self.io_mappings(el);
        if !inputs.is_empty() {
            n.with = Some(inputs.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect());
        }
        let mut set = IndexMap::new();
        for (target, src, lang) in outputs {
            match expr::condition_over(&src, lang, "result") {
                Ok(t) => {
                    self.note_var(&target, None, el);
                    set.insert(target, t.rhai);
                }
                Err(e) => self.untranslatable(el, "output mapping", &src, lang, e),
            }
        }
        if let Some(rv) = el.attr_ns(CAMUNDA_NS, "resultVariable") {
            self.note_var(rv, None, el);
            set.insert(rv.to_string(), "result".to_string());
        }
        if !set.is_empty() {
            n.set = Some(set);
        }
    }

    /// Input mappings translated (target → rhai over process variables) and output
    /// mappings raw (target, source, language), from Zeebe or Camunda 7.
    fn io_mappings(&mut self, el: &Element) -> (IndexMap<String, String>, Vec<Output>) {
        let mut inputs = IndexMap::new();
        let mut outputs = Vec::new();
        if let Some(io) = ext(el, ZEEBE_NS, "ioMapping") {
            for i in io.children_named(ZEEBE_NS, "input") {
                let (Some(src), Some(t)) = (i.attr("source"), i.attr("target")) else { continue };
                if let Some(r) = self.value(el, "input mapping", src, Lang::Feel) {
                    inputs.insert(t.to_string(), r);
                }
            }
            for o in io.children_named(ZEEBE_NS, "output") {
                let (Some(src), Some(t)) = (o.attr("source"), o.attr("target")) else { continue };
                outputs.push((t.to_string(), src.to_string(), Lang::Feel));
            }
        }
        if let Some(io) = ext(el, CAMUNDA_NS, "inputOutput") {
            for i in io.children_named(CAMUNDA_NS, "inputParameter") {
                let Some(name) = i.attr("name") else { continue };
                if !i.children.is_empty() {
                    self.unsupported(i, "a list, map or script input parameter", "use a plain value or ${expression}");
                    continue;
                }
                if let Some(r) = self.value(el, "input parameter", i.trimmed(), Lang::Juel) {
                    inputs.insert(name.to_string(), r);
                }
            }
            for o in io.children_named(CAMUNDA_NS, "outputParameter") {
                let Some(name) = o.attr("name") else { continue };
                outputs.push((name.to_string(), o.trimmed().to_string(), Lang::Juel));
            }
        }
        (inputs, outputs)
    }

    /// An input value: an expression (`=…`, `${…}`) translated, else a string literal.
    fn value(&mut self, el: &Element, what: &str, src: &str, lang: Lang) -> Option<String> {
        let s = src.trim();
        let is_expr = s.starts_with('=') || s.starts_with("${") || s.starts_with("#{");
        if is_expr || lang == Lang::Feel {
            self.cond(el, what, s, lang)
        } else {
            Some(format!("{s:?}"))
        }
    }

    fn script_task(&mut self, el: &Element, n: &mut NodeDef) {
        let zeebe = ext(el, ZEEBE_NS, "script");
        if let Some(z) = zeebe {
            // Zeebe: a FEEL expression whose value goes into resultVariable.
            let (Some(e), Some(rv)) = (z.attr("expression"), z.attr("resultVariable")) else {
                self.unsupported(el, "a Zeebe script without expression and resultVariable", "set both");
                return;
            };
            if let Some(r) = self.cond(el, "script", e, Lang::Feel) {
                let g = expr::condition(e, Lang::Feel).ok().and_then(|t| t.guess);
                self.note_var(rv, g, el);
                n.script = Some(format!("{rv} = {r};"));
            }
            return;
        }
        let body = el.child(BPMN_NS, "script").map(|s| s.text.clone()).unwrap_or_default();
        let fmt = el.attr("scriptFormat").unwrap_or_default();
        let lang = Lang::from_name(fmt).unwrap_or(if fmt.is_empty() { Lang::Python } else { Lang::Plain });
        if !fmt.is_empty() && Lang::from_name(fmt).is_none() {
            if matches!(fmt.to_ascii_lowercase().as_str(), "groovy" | "juel") {
                // Groovy shares the assignment subset.
            } else {
                self.unsupported(
                    el,
                    &format!("a script in `{fmt}`"),
                    "write it in Python, JavaScript, Groovy or FEEL assignments",
                );
                return;
            }
        }
        if let Some(rv) = el.attr_ns(CAMUNDA_NS, "resultVariable") {
            if let Some(r) = self.cond(el, "script", &body, lang) {
                let g = expr::condition(&body, lang).ok().and_then(|t| t.guess);
                self.note_var(rv, g, el);
                n.script = Some(format!("{rv} = {r};"));
            }
            return;
        }
        match expr::script(&body, lang) {
            Ok(s) => {
                // Reads first: a variable written here is typed by what is assigned.
                for (name, g) in &s.writes {
                    self.note_var(name, *g, el);
                }
                self.note_reads(&s.reads, el);
                n.script = Some(s.rhai);
            }
            Err(e) => self.untranslatable(el, "script", &body, lang, e),
        }
    }

    fn call_activity(&mut self, el: &Element, n: &mut NodeDef) {
        let called = ext(el, ZEEBE_NS, "calledElement")
            .and_then(|c| c.attr("processId"))
            .or(el.attr("calledElement"))
            .map(|c| c.trim_start_matches('=').trim().trim_matches('"').to_string());
        match called {
            Some(c) if !c.is_empty() => n.call = Some(c),
            _ => {
                self.error(
                    "missing-called-process",
                    el.loc,
                    format!("call activity `{}` names no process", id_of(el)),
                    "set Called element (the id of the deployed process)",
                );
                return;
            }
        }
        let mut ins = IndexMap::new();
        let mut outs = IndexMap::new();
        for i in exts(el, CAMUNDA_NS, "in") {
            if i.attr("variables").is_some() || i.attr("businessKey").is_some() {
                self.unsupported(
                    i,
                    "passing all variables (or the business key)",
                    "list each variable: <camunda:in source=\"x\" target=\"x\"/>",
                );
                continue;
            }
            let (Some(t), src) = (i.attr("target"), i.attr("source").or(i.attr("sourceExpression"))) else { continue };
            if let Some(r) = src.and_then(|s| self.cond(el, "in mapping", s, Lang::Juel)) {
                ins.insert(t.to_string(), r);
            }
        }
        for o in exts(el, CAMUNDA_NS, "out") {
            if o.attr("variables").is_some() {
                self.unsupported(
                    o,
                    "passing all variables back",
                    "list each variable: <camunda:out source=\"x\" target=\"x\"/>",
                );
                continue;
            }
            let (Some(t), Some(src)) = (o.attr("target"), o.attr("source").or(o.attr("sourceExpression"))) else {
                continue;
            };
            match expr::condition(src, Lang::Juel) {
                Ok(tr) => {
                    self.note_var(t, None, el);
                    outs.insert(t.to_string(), tr.rhai);
                }
                Err(e) => self.untranslatable(el, "out mapping", src, Lang::Juel, e),
            }
        }
        let (inputs, outputs) = self.io_mappings(el);
        ins.extend(inputs);
        for (t, src, lang) in outputs {
            match expr::condition(&src, lang) {
                Ok(tr) => {
                    self.note_var(&t, None, el);
                    outs.insert(t, tr.rhai);
                }
                Err(e) => self.untranslatable(el, "output mapping", &src, lang, e),
            }
        }
        if !ins.is_empty() {
            n.call_in = Some(ins);
        }
        if !outs.is_empty() {
            n.out = Some(outs);
        }
    }

    fn loop_characteristics(&mut self, el: &Element, n: &mut NodeDef) {
        let Some(lc) = el.children.iter().find(|c| c.ns == BPMN_NS && c.name.ends_with("LoopCharacteristics")) else {
            return;
        };
        if lc.name != "multiInstanceLoopCharacteristics" {
            self.unsupported(
                lc,
                "a standard (while) loop",
                "draw the loop with an exclusive gateway, or use multi-instance over a list",
            );
            return;
        }
        let sequential = lc.attr("isSequential") == Some("true");
        let zeebe = ext(lc, ZEEBE_NS, "loopCharacteristics");
        let collection = zeebe
            .and_then(|z| z.attr("inputCollection"))
            .map(|c| (c.to_string(), Lang::Feel))
            .or_else(|| lc.attr_ns(CAMUNDA_NS, "collection").map(|c| (c.to_string(), Lang::Juel)));
        let item = zeebe.and_then(|z| z.attr("inputElement")).or(lc.attr_ns(CAMUNDA_NS, "elementVariable"));
        let Some((coll, lang)) = collection else {
            self.unsupported(
                lc,
                "multi-instance without an input collection (loop cardinality or data input refs)",
                "set the input collection (Zeebe) or camunda:collection to a list variable",
            );
            return;
        };
        let item = item.unwrap_or("item").to_string();
        self.bound.insert(item.clone());
        self.seen.shift_remove(&item);
        let Some(for_each) = self.cond(el, "multi-instance collection", &coll, lang) else { return };
        if let Ok(t) = expr::condition(&coll, lang) {
            if let [(root, _)] = t.reads.as_slice() {
                if t.rhai == *root {
                    self.note_ty(root, Some("list"), el);
                }
            }
        }
        let mut m = MultiDef { for_each, item, sequential, ..MultiDef::default() };
        if let Some(z) = zeebe {
            if let Some(into) = z.attr("outputCollection") {
                self.note_ty(into, Some("list"), el);
                m.into = Some(into.to_string());
                m.output = z.attr("outputElement").and_then(|o| self.cond(el, "output element", o, Lang::Feel));
            }
        }
        if let Some(cc) = lc.child(BPMN_NS, "completionCondition") {
            let src = cc.trimmed().replace("nrOfCompletedInstances", "done").replace("nrOfInstances", "total");
            let src = src.replace("numberOfCompletedInstances", "done").replace("numberOfInstances", "total");
            let lang = self.lang_of(cc);
            m.complete_when = self.cond(el, "completion condition", &src, lang);
        }
        n.multi_instance = Some(m);
    }

    // ---- gateways -------------------------------------------------------------

    fn choice(&mut self, el: &Element, sc: &Scope<'_>, n: NodeDef) -> Option<NodeDef> {
        let id = id_of(el);
        let inclusive = el.name == "inclusiveGateway";
        let outs = sc.outs(&id).to_vec();
        if inclusive && sc.incs(&id) > 1 {
            if outs.len() > 1 {
                self.unsupported(
                    el,
                    "an inclusive gateway that both joins and splits",
                    "draw two gateways: a join, then a split",
                );
                return None;
            }
            return self.join(el, sc, n);
        }
        self.choice_split(el, sc, n)
    }

    /// The branches of a splitting exclusive or inclusive gateway.
    fn choice_split(&mut self, el: &Element, sc: &Scope<'_>, mut n: NodeDef) -> Option<NodeDef> {
        let id = id_of(el);
        let inclusive = el.name == "inclusiveGateway";
        let outs = sc.outs(&id).to_vec();
        if outs.is_empty() {
            self.error("bad-flow", el.loc, format!("gateway `{id}` has no outgoing flow"), "connect it");
            return None;
        }
        let default = el.attr("default");
        let mut branches = Vec::new();
        for f in &outs {
            let target = self.resolve(sc, &f.target, el);
            if Some(f.id.as_str()) == default {
                n.default = Some(target);
                continue;
            }
            let Some(c) = f.el.child(BPMN_NS, "conditionExpression") else {
                self.error(
                    "missing-condition",
                    f.el.loc,
                    format!("flow `{}` out of gateway `{id}` has no condition and is not the default", f.id),
                    "give it a condition, or make it the gateway's default flow",
                );
                continue;
            };
            let src = c.text.clone();
            let lang = self.lang_of(c);
            if c.attr_ns(XSI_NS, "type").is_some_and(|t| !t.ends_with("tFormalExpression")) {
                self.unsupported(c, "an informal (natural language) condition", "write a formal expression");
                continue;
            }
            if let Some(when) = self.cond(f.el, "condition", &src, lang) {
                branches.push(BranchDef { when, next: target });
            }
        }
        if inclusive {
            n.inclusive = Some(branches);
        } else {
            n.exclusive = Some(branches);
        }
        Some(n)
    }

    fn parallel(&mut self, el: &Element, sc: &Scope<'_>, mut n: NodeDef) -> Option<NodeDef> {
        let id = id_of(el);
        let (outs, incs) = (sc.outs(&id).to_vec(), sc.incs(&id));
        if incs > 1 && outs.len() > 1 {
            self.unsupported(
                el,
                "a parallel gateway that both joins and splits",
                "draw two gateways: a join, then a split",
            );
            return None;
        }
        if incs > 1 {
            return self.join(el, sc, n);
        }
        let targets = outs.iter().map(|f| self.resolve(sc, &f.target, el)).collect();
        n.parallel = Some(targets);
        Some(n)
    }

    /// A joining gateway closes the nearest split of its kind that every path
    /// into it passes through.
    fn join(&mut self, el: &Element, sc: &Scope<'_>, mut n: NodeDef) -> Option<NodeDef> {
        let id = id_of(el);
        let kind = el.name.as_str();
        let ancestors = |from: &str| -> HashSet<String> {
            let mut seen = HashSet::new();
            let mut q = VecDeque::from([from.to_string()]);
            while let Some(x) = q.pop_front() {
                if x == id || !seen.insert(x.clone()) {
                    continue;
                }
                for p in sc.inc.get(&x).into_iter().flatten() {
                    q.push_back(p.clone());
                }
            }
            seen
        };
        let is_split = |x: &str| sc.els.get(x).is_some_and(|e| e.name == kind && sc.outs(x).len() > 1);
        let sets: Vec<HashSet<String>> = sc.inc.get(&id).into_iter().flatten().map(|s| ancestors(s)).collect();
        let mut common: Vec<String> =
            sets[0].iter().filter(|x| is_split(x) && sets.iter().all(|s| s.contains(*x))).cloned().collect();
        common.sort();
        let nearest = common.iter().find(|c| {
            let a = ancestors(c);
            common.iter().all(|o| o == *c || a.contains(o))
        });
        let Some(fork) = nearest.cloned() else {
            self.unsupported(
                el,
                &format!("a joining {kind} that closes no {kind} split on every path into it"),
                "join the branches of one splitting gateway of the same kind",
            );
            return None;
        };
        n.join = Some(self.key(&fork));
        n.next = Some(self.next_of(el, sc, &mut IndexMap::new())?);
        Some(n)
    }

    fn event_based(&mut self, el: &Element, sc: &Scope<'_>, mut n: NodeDef) -> Option<NodeDef> {
        let id = id_of(el);
        let mut branches = Vec::new();
        for f in sc.outs(&id).to_vec() {
            let Some(t) = sc.els.get(&f.target).copied() else { continue };
            if sc.incs(&f.target) > 1 {
                self.unsupported(
                    t,
                    "an event after an event-based gateway that other flows also reach",
                    "give it one incoming flow",
                );
                continue;
            }
            let mut b = EventBranchDef { message: None, key: None, set: None, timer: None, next: String::new() };
            let defs = event_defs(t);
            match (t.name.as_str(), defs.as_slice()) {
                ("intermediateCatchEvent", [d]) if d.name == "timerEventDefinition" => {
                    b.timer = Some(self.timer(d, false)?.0)
                }
                ("intermediateCatchEvent", [d]) if d.name == "messageEventDefinition" => {
                    b.message = Some(self.message_name(d, t));
                    b.key = self.message_key(t, d.attr("messageRef"));
                }
                ("receiveTask", _) => {
                    b.message = Some(match t.attr("messageRef") {
                        Some(r) => self.messages.get(r).cloned().unwrap_or_else(|| r.to_string()),
                        None => id_of(t),
                    });
                    b.key = self.message_key(t, t.attr("messageRef"));
                }
                _ => {
                    self.unsupported(
                        t,
                        "an event-based gateway leads here, but nagare waits only for timers and messages",
                        "use a timer or message catch event",
                    );
                    continue;
                }
            }
            let mut scratch = IndexMap::new();
            b.next = self.next_of(t, sc, &mut scratch)?;
            if let Some(x) = ext(t, NAGARE_NS, "node") {
                b = self.merge_node_ext(&b, x)?;
            }
            branches.push(b);
        }
        n.event_based = Some(branches);
        Some(n)
    }
}

/// A variable declaration of type `ty`.
fn var(ty: &str) -> VarDef {
    VarDef {
        ty: ty.to_string(),
        label: None,
        required: false,
        options: None,
        default: None,
        max_length: None,
        max_size: None,
        content_types: None,
        sensitive: false,
    }
}

/// Remove null values (absent options) so that deserializing sees them absent.
fn strip_nulls(m: &mut serde_yaml::Mapping) {
    m.retain(|_, v| !v.is_null());
    for v in m.values_mut() {
        if let serde_yaml::Value::Mapping(inner) = v {
            strip_nulls(inner);
        }
    }
}

/// `--var`s go, optional, on the form of every user task without one.
fn add_declared_to_forms(nodes: &mut IndexMap<String, NodeDef>, declare: &IndexMap<String, String>) {
    for n in nodes.values_mut() {
        if n.user_task.is_some() && n.form.is_none() {
            n.form = Some(declare.keys().map(|k| (k.clone(), FieldMode::Optional)).collect());
        }
        if let Some(sp) = n.sub_process.as_mut() {
            add_declared_to_forms(&mut sp.nodes, declare);
        }
    }
}
