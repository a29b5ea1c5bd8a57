//! BPMN 2.0 export: a nagare process as BPMN XML with diagram interchange, so
//! Camunda Modeler and bpmn.io open it and show it, and so it comes back through
//! the importer as the same process.
//!
//! # The mapping
//!
//! | nagare | BPMN |
//! |---|---|
//! | `start:` (timer, message) | `startEvent` (+ `timerEventDefinition` / `messageEventDefinition`) |
//! | `user_task:` | `userTask`; `outcomes:` and `send_back:` are conditional flows out of it (`outcome == "<name>"`, `outcome == "send_back"`), `next:` its `default` flow |
//! | `service:` | `serviceTask` |
//! | `script:` | `scriptTask` (`scriptFormat="rhai"`, the script text) |
//! | `exclusive:` / `inclusive:` | `exclusiveGateway` / `inclusiveGateway`, each `when:` a `conditionExpression` (`language="rhai"`, the rhai text), `default:` the gateway's `default` flow |
//! | `parallel:` / `join:` | `parallelGateway` (a join of an inclusive fork: `inclusiveGateway`) |
//! | `event_based:` | `eventBasedGateway`, each branch an `intermediateCatchEvent` after it |
//! | `timer:` / `message:` | `intermediateCatchEvent` |
//! | `end:` (terminate, error) | `endEvent` (+ `terminateEventDefinition` / `errorEventDefinition`) |
//! | `boundary:` | `boundaryEvent` (`cancelActivity` from `interrupting:`) |
//! | `sub_process:` | `subProcess`, collapsed; its inside is drawn on a plane of its own (drill down in the modeler) |
//! | `call:` | `callActivity` (`calledElement`) |
//! | `multi_instance:` | `multiInstanceLoopCharacteristics` (`isSequential`, `completionCondition`) |
//! | `lanes:` | a `collaboration` with one `participant` (the pool) and a `laneSet` |
//! | `description:` | `documentation` |
//!
//! # The `nagare:` extension — what the importer reads
//!
//! The contract is the one in [`super`] (module docs, namespace [`NAGARE_NS`]):
//! BPMN cannot say everything a nagare process says (forms, connector inputs,
//! retries, due dates, variable types, multi-instance options ...), so the export
//! carries the definitions themselves as compact JSON (`export_json`) in
//! `extensionElements`:
//!
//! * `<nagare:process>` on the `bpmn:process`: the [`ProcessDef`] without `start`
//!   and `nodes`.
//! * `<nagare:node>` on every flow node: the start event's [`crate::model::StartDef`]
//!   (a sub-process's start: its `SubStartDef`), a node's whole [`NodeDef`]
//!   (`key="KEY"` names the node: the BPMN `id` is the key made a valid XML id, so
//!   it differs for a key such as `1st`), a boundary event's `BoundaryDef`, an
//!   event-based branch's `EventBranchDef` on the catch event after the gateway.
//!   The flow keys ([`super::FLOW_KEYS`], and a sub-process's `start`/`nodes`) are
//!   in the JSON too where the type has them, but the importer takes them from the
//!   structure, which the export writes to say the same thing: sequence flows in
//!   branch order, the default flow as the gateway's (and, for a user task with
//!   outcomes, the task's) `default`, boundary events in `boundary:` order.
//!
//! //! For modelers and importers that know Camunda 8, a service task also carries its
//! connector as `zeebe:taskDefinition type`, and a multi-instance node its list as
//! `zeebe:loopCharacteristics inputCollection`/`inputElement`.
//!
//! # Round trip
//!
//! `tests/bpmn_export.rs` imports every shipped process's export and compares the
//! compiled processes: all come back the same. What makes that work on the import
//! side: a user task's `outcomes:`/`send_back:` are conditional flows out of the
//! task (`outcome == "<name>"`, `outcome == "send_back"`) and `next:` its `default`
//! flow; a fork that a loop comes back to is a fork by its payload; boundary and
//! event-based branch events carry their own payloads; a join names its fork in
//! its payload.
//!
//! Deterministic: same definition, same bytes.

use super::export_json::{json, node_json, process_json};
use super::export_layout::{self, LaidOut, Plane};
use super::{BPMNDI_NS, BPMN_NS, DC_NS, DI_NS, NAGARE_NS, XSI_NS, ZEEBE_NS};
use crate::diagram::graph::{BoundaryMark, Edge, EdgeStyle, GatewayMark, Icon, Item, Shape, TaskType};
use crate::model::{EndDef, EndKind, NodeDef, ProcessDef, TimerDef, TimerMap};
use crate::schedule::{parse_span, Span};
use indexmap::IndexMap;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

/// The `language` of condition expressions and the `scriptFormat` of scripts.
pub const RHAI: &str = "rhai";

/// `def` as BPMN 2.0 XML with its diagram. `def` should be one that compiles (load
/// it first): a flow to a node that does not exist in its scope is left out.
pub fn export(def: &ProcessDef) -> String {
    let mut ids = Ids::default();
    // Node keys first, so nodes keep their key as their id whenever it is one.
    let mut node_ids = HashMap::new();
    alloc_nodes(&def.nodes, &mut ids, &mut node_ids, true);
    alloc_nodes(&def.nodes, &mut ids, &mut node_ids, false);
    let forks = fork_kinds(&def.nodes);
    let mut cx = Cx { ids, node_ids, forks, messages: IndexMap::new(), errors: IndexMap::new() };

    let process_id = cx.ids.alloc(&def.id);
    let first_lane = def.nodes.get(&def.start.next).and_then(|n| n.lane.clone());
    let start = StartEl {
        key: "start".to_string(),
        name: def.start.name.clone(),
        next: def.start.next.clone(),
        lane: first_lane,
        definition: start_definition(&mut cx, def),
        ext: node_ext(&json(&def.start)),
    };
    let scope = build_scope(&mut cx, start, &def.nodes);
    let lanes: Vec<(String, String)> =
        def.lanes.iter().map(|(k, l)| (k.clone(), l.name.clone().unwrap_or_default())).collect();
    let title = def.name.clone().unwrap_or_else(|| def.id.clone());
    let laid = export_layout::lay_out(&scope.plane(), &lanes, title.clone());
    let with_pool = !def.lanes.is_empty();
    let collab_id = with_pool.then(|| cx.ids.alloc("collaboration"));
    let participant_id = with_pool.then(|| cx.ids.alloc(&format!("pool_{}", def.id)));
    let lane_ids: Vec<String> = laid
        .bands
        .iter()
        .map(|b| cx.ids.alloc(&format!("lane_{}", b.key.as_deref().unwrap_or("unassigned"))))
        .collect();

    let mut x = String::with_capacity(32 * 1024);
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<bpmn:definitions xmlns:bpmn=\"{BPMN_NS}\" xmlns:bpmndi=\"{BPMNDI_NS}\" xmlns:dc=\"{DC_NS}\" xmlns:di=\"{DI_NS}\" xmlns:xsi=\"{XSI_NS}\" xmlns:nagare=\"{NAGARE_NS}\" xmlns:zeebe=\"{ZEEBE_NS}\" id=\"{}\" targetNamespace=\"https://nagare.dev/bpmn/processes\" exporter=\"nagare\" exporterVersion=\"{}\">\n",
        cx.ids.alloc("definitions"),
        env!("CARGO_PKG_VERSION")
    );
    for (name, id) in &cx.messages {
        let _ = writeln!(x, "  <bpmn:message id=\"{id}\" name=\"{}\"/>", attr(name));
    }
    for (code, id) in &cx.errors {
        let _ = writeln!(x, "  <bpmn:error id=\"{id}\" name=\"{c}\" errorCode=\"{c}\"/>", c = attr(code));
    }
    if let (Some(c), Some(p)) = (&collab_id, &participant_id) {
        let _ = writeln!(
            x,
            "  <bpmn:collaboration id=\"{c}\">\n    <bpmn:participant id=\"{p}\" name=\"{}\" processRef=\"{process_id}\"/>\n  </bpmn:collaboration>",
            attr(&title)
        );
    }
    let _ = writeln!(x, "  <bpmn:process id=\"{process_id}\" name=\"{}\" isExecutable=\"true\">", attr(&title));
    if let Some(d) = &def.description {
        let _ = writeln!(x, "    <bpmn:documentation>{}</bpmn:documentation>", text(d));
    }
    let _ = writeln!(
        x,
        "    <bpmn:extensionElements>\n      <nagare:process>{}</nagare:process>\n    </bpmn:extensionElements>",
        text(&process_json(def))
    );
    if with_pool {
        let _ = writeln!(x, "    <bpmn:laneSet id=\"{}\">", cx.ids.alloc("laneset"));
        for (b, band) in laid.bands.iter().enumerate() {
            let name = match &band.key {
                Some(_) => format!(" name=\"{}\"", attr(&band.title)),
                None => String::new(),
            };
            let _ = writeln!(x, "      <bpmn:lane id=\"{}\"{name}>", lane_ids[b]);
            for el in &scope.els {
                if laid.band_of(el.lane.as_deref()) == b {
                    let _ = writeln!(x, "        <bpmn:flowNodeRef>{}</bpmn:flowNodeRef>", el.id);
                }
            }
            let _ = writeln!(x, "      </bpmn:lane>");
        }
        let _ = writeln!(x, "    </bpmn:laneSet>");
    }
    scope.write(&mut x, 2);
    let _ = writeln!(x, "  </bpmn:process>");

    // Diagram interchange: the process (or its pool) first, then one plane per
    // sub-process, in document order.
    let main_plane = collab_id.clone().unwrap_or_else(|| process_id.clone());
    let mut di = Di { out: &mut x, ids: &mut cx.ids };
    di.open(&main_plane);
    if let Some(p) = &participant_id {
        di.pool(p, &laid, &lane_ids);
    }
    di.plane(&scope, &laid);
    di.close();
    let mut subs = Vec::new();
    scope.sub_scopes(&mut subs);
    for sub in subs {
        let laid = export_layout::lay_out(&sub.scope.plane(), &[], String::new());
        di.open(&sub.id);
        di.plane(sub.scope, &laid);
        di.close();
    }
    x.push_str("</bpmn:definitions>\n");
    x
}

/// Unique XML ids (`xsd:ID`, an NCName) from any text.
#[derive(Default)]
struct Ids {
    used: BTreeSet<String>,
}

impl Ids {
    /// `want` made a valid NCName (characters outside it become `_`, a leading
    /// character that cannot start a name gets `_` before it), numbered `_2`, `_3`
    /// ... when already taken.
    fn alloc(&mut self, want: &str) -> String {
        let mut base: String = want.chars().map(|c| if is_name_char(c) { c } else { '_' }).collect();
        if !base.chars().next().is_some_and(is_name_start) {
            base.insert(0, '_');
        }
        let mut id = base.clone();
        let mut n = 2;
        while self.used.contains(&id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        self.used.insert(id.clone());
        id
    }
}

/// XML 1.0 (5th edition) NameStartChar without `:` (an NCName).
fn is_name_start(c: char) -> bool {
    matches!(c, 'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}'
        | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 NameChar without `:`.
fn is_name_char(c: char) -> bool {
    is_name_start(c) || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Whether `s` can be an `xsd:QName` without a prefix (an NCName).
fn is_ncname(s: &str) -> bool {
    s.chars().next().is_some_and(is_name_start) && s.chars().all(is_name_char)
}

/// Every node's BPMN id, sub-processes' nodes included, in file order: first the
/// keys that are ids already (`plain`), so they keep them, then the others, made ids.
fn alloc_nodes(nodes: &IndexMap<String, NodeDef>, ids: &mut Ids, out: &mut HashMap<String, String>, plain: bool) {
    for (key, n) in nodes {
        if is_ncname(key) == plain {
            out.insert(key.clone(), ids.alloc(key));
        }
        if let Some(sub) = &n.sub_process {
            alloc_nodes(&sub.nodes, ids, out, plain);
        }
    }
}

/// Which keys are inclusive forks (a `join:` of one is drawn as an inclusive gateway).
fn fork_kinds(nodes: &IndexMap<String, NodeDef>) -> HashMap<String, bool> {
    let mut out = HashMap::new();
    for (key, n) in nodes {
        if n.parallel.is_some() || n.inclusive.is_some() {
            out.insert(key.clone(), n.inclusive.is_some());
        }
        if let Some(sub) = &n.sub_process {
            out.extend(fork_kinds(&sub.nodes));
        }
    }
    out
}

struct Cx {
    ids: Ids,
    node_ids: HashMap<String, String>,
    /// Fork key → whether it is inclusive.
    forks: HashMap<String, bool>,
    /// Message name → `bpmn:message` id, in order of first use.
    messages: IndexMap<String, String>,
    /// Error code → `bpmn:error` id.
    errors: IndexMap<String, String>,
}

impl Cx {
    fn message(&mut self, name: &str) -> String {
        if let Some(id) = self.messages.get(name) {
            return id.clone();
        }
        let id = self.ids.alloc(&format!("message_{name}"));
        self.messages.insert(name.to_string(), id.clone());
        id
    }

    fn error(&mut self, code: &str) -> String {
        if let Some(id) = self.errors.get(code) {
            return id.clone();
        }
        let id = self.ids.alloc(&format!("error_{code}"));
        self.errors.insert(code.to_string(), id.clone());
        id
    }

    fn message_def(&mut self, name: &str) -> String {
        format!("<bpmn:messageEventDefinition id=\"{}\" messageRef=\"{}\"/>", self.ids.alloc("med"), self.message(name))
    }

    fn timer_def(&mut self, t: &TimerDef) -> String {
        let id = self.ids.alloc("ted");
        let (tag, body) = timer_body(t);
        format!(
            "<bpmn:timerEventDefinition id=\"{id}\"><bpmn:{tag} xsi:type=\"bpmn:tFormalExpression\">{}</bpmn:{tag}></bpmn:timerEventDefinition>",
            text(&body)
        )
    }
}

/// The BPMN timer element and its text: spans as ISO 8601 durations where they
/// are exact (`3d` → `P3D`), cron and cycles as `timeCycle`, dates and
/// expressions as `timeDate`. Anything else keeps nagare's text (the JSON is what
/// counts on import).
fn timer_body(t: &TimerDef) -> (&'static str, String) {
    let map = match t {
        TimerDef::Short(s) => TimerMap { duration: Some(s.clone()), ..TimerMap::default() },
        TimerDef::Full(m) => m.clone(),
    };
    if let Some(d) = &map.duration {
        return ("timeDuration", parse_span(d).ok().and_then(iso_duration).unwrap_or_else(|| d.clone()));
    }
    if let Some(c) = map.cron.as_ref().or(map.cycle.as_ref()) {
        return ("timeCycle", c.clone());
    }
    ("timeDate", map.date.or(map.at).unwrap_or_default())
}

/// `span` as ISO 8601 (`P1M3DT2H`); `None` for business days, which ISO cannot say.
fn iso_duration(span: Span) -> Option<String> {
    if span.business_days > 0 {
        return None;
    }
    let mut s = String::from("P");
    if span.months > 0 {
        let _ = write!(s, "{}M", span.months);
    }
    if span.days > 0 {
        let _ = write!(s, "{}D", span.days);
    }
    let ms = span.exact.num_milliseconds();
    if ms > 0 || s == "P" {
        s.push('T');
        let (h, m, sec, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
        if h > 0 {
            let _ = write!(s, "{h}H");
        }
        if m > 0 {
            let _ = write!(s, "{m}M");
        }
        if frac > 0 {
            let _ = write!(s, "{sec}.{frac:03}S");
        } else if sec > 0 || (h == 0 && m == 0) {
            let _ = write!(s, "{sec}S");
        }
    }
    Some(s)
}

fn start_definition(cx: &mut Cx, def: &ProcessDef) -> (Option<Icon>, String) {
    if let Some(t) = &def.start.timer {
        (Some(Icon::Timer), cx.timer_def(t))
    } else if let Some(m) = &def.start.message {
        (Some(Icon::Message), cx.message_def(m))
    } else {
        (None, String::new())
    }
}

/// A scope's start event, before it is an element.
struct StartEl {
    key: String,
    name: Option<String>,
    next: String,
    lane: Option<String>,
    definition: (Option<Icon>, String),
    /// Its `nagare:node` element.
    ext: String,
}

/// One flow node element of a scope.
pub(super) struct El {
    pub id: String,
    tag: &'static str,
    name: Option<String>,
    pub lane: Option<String>,
    attrs: String,
    doc: Option<String>,
    ext: String,
    /// After `outgoing`: loop characteristics, event definitions, the script.
    tail: String,
    pub incoming: Vec<String>,
    pub outgoing: Vec<String>,
    /// What the layout draws: an item of its own, or a boundary mark on an item.
    pub drawn: Drawn,
    /// A sub-process's inside.
    inner: Option<Box<Scope>>,
}

#[derive(Clone, Copy)]
pub(super) enum Drawn {
    Item(usize),
    Boundary { item: usize, index: usize },
}

/// A sequence flow.
pub(super) struct Flow {
    pub id: String,
    pub from: usize,
    pub to: usize,
    name: Option<String>,
    condition: Option<String>,
}

/// The elements and flows of the process or of one sub-process, with what the
/// layout needs.
pub(super) struct Scope {
    pub els: Vec<El>,
    pub flows: Vec<Flow>,
    items: Vec<Item>,
    edges: Vec<Edge>,
    start_item: usize,
}

/// A sub-process and its inside, for its own diagram plane.
struct SubPlane<'a> {
    id: String,
    scope: &'a Scope,
}

impl Scope {
    fn plane(&self) -> Plane {
        Plane { items: self.items.clone(), edges: self.edges.clone(), start: self.start_item }
    }

    fn sub_scopes<'a>(&'a self, out: &mut Vec<SubPlane<'a>>) {
        for el in &self.els {
            if let Some(inner) = &el.inner {
                out.push(SubPlane { id: el.id.clone(), scope: inner });
                inner.sub_scopes(out);
            }
        }
    }

    /// The flow elements, then the sequence flows, indented `depth` levels.
    fn write(&self, x: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        for el in &self.els {
            let name = el.name.as_deref().map(|n| format!(" name=\"{}\"", attr(n))).unwrap_or_default();
            let _ = writeln!(x, "{pad}<bpmn:{} id=\"{}\"{name}{}>", el.tag, el.id, el.attrs);
            if let Some(d) = &el.doc {
                let _ = writeln!(x, "{pad}  <bpmn:documentation>{}</bpmn:documentation>", text(d));
            }
            let _ = writeln!(x, "{pad}  <bpmn:extensionElements>{}</bpmn:extensionElements>", el.ext);
            for f in &el.incoming {
                let _ = writeln!(x, "{pad}  <bpmn:incoming>{f}</bpmn:incoming>");
            }
            for f in &el.outgoing {
                let _ = writeln!(x, "{pad}  <bpmn:outgoing>{f}</bpmn:outgoing>");
            }
            if !el.tail.is_empty() {
                let _ = writeln!(x, "{pad}  {}", el.tail);
            }
            if let Some(inner) = &el.inner {
                inner.write(x, depth + 1);
            }
            let _ = writeln!(x, "{pad}</bpmn:{}>", el.tag);
        }
        for f in &self.flows {
            let name = f.name.as_deref().map(|n| format!(" name=\"{}\"", attr(n))).unwrap_or_default();
            let open = format!(
                "{pad}<bpmn:sequenceFlow id=\"{}\"{name} sourceRef=\"{}\" targetRef=\"{}\"",
                f.id, self.els[f.from].id, self.els[f.to].id
            );
            match &f.condition {
                Some(c) => {
                    let _ = writeln!(
                        x,
                        "{open}>\n{pad}  <bpmn:conditionExpression xsi:type=\"bpmn:tFormalExpression\" language=\"{RHAI}\">{}</bpmn:conditionExpression>\n{pad}</bpmn:sequenceFlow>",
                        text(c)
                    );
                }
                None => {
                    let _ = writeln!(x, "{open}/>");
                }
            }
        }
    }
}

/// Where a pending flow goes.
enum Target {
    /// A node, by key.
    Key(String),
    /// An element of the scope without a key (an event-based branch's event).
    El(usize),
}

/// A flow to add once every element of the scope exists: from element `from`
/// (an index) to `to`.
struct Pending {
    from: usize,
    to: Target,
    name: Option<String>,
    condition: Option<String>,
    /// The source's `default` flow.
    default: bool,
    style: EdgeStyle,
    /// A boundary event's flow: the host's item and the mark's index.
    boundary: Option<(usize, usize)>,
}

fn build_scope(cx: &mut Cx, start: StartEl, nodes: &IndexMap<String, NodeDef>) -> Scope {
    let mut s = Scope { els: Vec::new(), flows: Vec::new(), items: Vec::new(), edges: Vec::new(), start_item: 0 };
    let mut pending: Vec<Pending> = Vec::new();
    let mut by_key: HashMap<&str, usize> = HashMap::new();

    // The start event.
    let (icon, definition) = start.definition;
    let start_id = cx.ids.alloc(&start.key);
    s.start_item = push_el(
        &mut s,
        El {
            id: start_id,
            tag: "startEvent",
            name: start.name.clone(),
            lane: start.lane.clone(),
            attrs: String::new(),
            doc: None,
            ext: start.ext,
            tail: definition,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            drawn: Drawn::Item(0),
            inner: None,
        },
        Shape::Start { icon },
        start.name.clone().unwrap_or_default(),
    );
    pending.push(Pending {
        from: 0,
        to: Target::Key(start.next.clone()),
        name: None,
        condition: None,
        default: false,
        style: EdgeStyle::Normal,
        boundary: None,
    });

    for (key, n) in nodes {
        let id = cx.node_ids[key].clone();
        let (tag, shape, mut tail, mut attrs) = kind_of(cx, n);
        let mut inner = None;
        if let Some(mi) = &n.multi_instance {
            let cond = mi.complete_when.as_deref().map(|c| {
                format!(
                    "<bpmn:completionCondition xsi:type=\"bpmn:tFormalExpression\" language=\"{RHAI}\">{}</bpmn:completionCondition>",
                    text(c)
                )
            });
            // The list as Camunda 8's input collection and element, so the modeler
            // shows them (FEEL `= <expression>`: nagare's lists are plain names).
            let zeebe = format!(
                "<bpmn:extensionElements><zeebe:loopCharacteristics inputCollection=\"= {}\" inputElement=\"{}\"/></bpmn:extensionElements>",
                attr(mi.for_each.trim()),
                attr(&mi.item)
            );
            // The loop characteristics come before a script's text.
            tail.insert_str(
                0,
                &format!(
                    "<bpmn:multiInstanceLoopCharacteristics id=\"{}\" isSequential=\"{}\">{zeebe}{}</bpmn:multiInstanceLoopCharacteristics>",
                    cx.ids.alloc(&format!("{key}_multi")),
                    mi.sequential,
                    cond.unwrap_or_default()
                ),
            );
        }
        if let Some(sub) = &n.sub_process {
            attrs.push_str(" triggeredByEvent=\"false\"");
            if let Some(st) = &sub.start {
                let start = StartEl {
                    key: format!("{key}_start"),
                    name: st.name.clone(),
                    next: st.next.clone(),
                    lane: None,
                    definition: (None, String::new()),
                    ext: node_ext(&json(st)),
                };
                inner = Some(Box::new(build_scope(cx, start, &sub.nodes)));
            }
        }
        let marks: Vec<BoundaryMark> = n.boundary.iter().flatten().map(boundary_mark).collect();
        let ix = s.els.len();
        let item = push_el(
            &mut s,
            El {
                id: id.clone(),
                tag,
                // An unnamed gateway stays unlabelled (the BPMN habit; its
                // flows carry the conditions); everything else shows its key.
                name: match (&n.name, tag.ends_with("Gateway")) {
                    (Some(name), _) => Some(name.clone()),
                    (None, true) => None,
                    (None, false) => Some(key.clone()),
                },
                lane: n.lane.clone(),
                attrs,
                doc: n.description.clone(),
                ext: format!(
                    "{}<nagare:node key=\"{}\">{}</nagare:node>",
                    task_type(n),
                    attr(key),
                    text(&node_json(n))
                ),
                tail,
                incoming: Vec::new(),
                outgoing: Vec::new(),
                drawn: Drawn::Item(0),
                inner,
            },
            shape,
            n.name.clone().unwrap_or_else(|| key.clone()),
        );
        s.items[item].boundaries = marks;
        s.items[item].multi = n.multi_instance.as_ref().map(|m| m.sequential);
        by_key.insert(key.as_str(), ix);
        node_flows(cx, &mut s, &mut pending, key, n, ix, item);
    }

    for p in pending {
        let to = match &p.to {
            Target::El(ix) => *ix,
            Target::Key(k) => match by_key.get(k.as_str()) {
                Some(&ix) => ix,
                // Not in a compiled process: every target is in the flow's own scope.
                None => continue,
            },
        };
        let fid = cx.ids.alloc(&format!("flow_{}_{}", s.els[p.from].id, s.els[to].id));
        s.els[p.from].outgoing.push(fid.clone());
        s.els[to].incoming.push(fid.clone());
        if p.default {
            let _ = write!(s.els[p.from].attrs, " default=\"{fid}\"");
        }
        let to_item = match s.els[to].drawn {
            Drawn::Item(i) => i,
            Drawn::Boundary { item, .. } => item,
        };
        let (from_item, boundary) = match (p.boundary, s.els[p.from].drawn) {
            (Some((item, index)), _) => (item, Some(index)),
            (None, Drawn::Item(i)) => (i, None),
            (None, Drawn::Boundary { item, index }) => (item, Some(index)),
        };
        let label = p.name.clone().or_else(|| p.condition.clone());
        s.edges.push(Edge { from: from_item, to: to_item, boundary, label, style: p.style });
        s.flows.push(Flow { id: fid, from: p.from, to, name: p.name, condition: p.condition });
    }
    s
}

/// Add `el` as an item of the layout; its item index.
fn push_el(s: &mut Scope, mut el: El, shape: Shape, label: String) -> usize {
    let item = s.items.len();
    el.drawn = Drawn::Item(item);
    s.items.push(Item { id: el.id.clone(), label, lane: el.lane.clone(), shape, boundaries: Vec::new(), multi: None });
    s.els.push(el);
    item
}

/// A service task's connector as Camunda 8's task type (`zeebe:taskDefinition`),
/// so Camunda Modeler shows it and importers that know Zeebe read it.
fn task_type(n: &NodeDef) -> String {
    match &n.service {
        Some(c) => format!("<zeebe:taskDefinition type=\"{}\"/>", attr(c)),
        None => String::new(),
    }
}

/// A `nagare:node` element around `json`.
fn node_ext(json: &str) -> String {
    format!("<nagare:node>{}</nagare:node>", text(json))
}

fn boundary_mark(b: &crate::model::BoundaryDef) -> BoundaryMark {
    let icon = if b.timer.is_some() {
        Icon::Timer
    } else if b.error.is_some() {
        Icon::Error
    } else {
        Icon::Message
    };
    BoundaryMark { icon, interrupting: b.interrupting.unwrap_or(true) }
}

/// The element name, the shape, the tail (event definitions, script) and extra
/// attributes of node `n`.
fn kind_of(cx: &mut Cx, n: &NodeDef) -> (&'static str, Shape, String, String) {
    let mut attrs = String::new();
    let r = if n.user_task.is_some() {
        ("userTask", Shape::Task(TaskType::User), String::new())
    } else if n.service.is_some() {
        ("serviceTask", Shape::Task(TaskType::Service), String::new())
    } else if let Some(script) = &n.script {
        attrs = format!(" scriptFormat=\"{RHAI}\"");
        ("scriptTask", Shape::Task(TaskType::Script), format!("<bpmn:script>{}</bpmn:script>", text(script)))
    } else if n.exclusive.is_some() {
        ("exclusiveGateway", Shape::Gateway(GatewayMark::Exclusive), String::new())
    } else if n.inclusive.is_some() {
        ("inclusiveGateway", Shape::Gateway(GatewayMark::Inclusive), String::new())
    } else if n.parallel.is_some() {
        ("parallelGateway", Shape::Gateway(GatewayMark::Parallel), String::new())
    } else if n.event_based.is_some() {
        attrs = " eventGatewayType=\"Exclusive\"".to_string();
        ("eventBasedGateway", Shape::Gateway(GatewayMark::EventBased), String::new())
    } else if let Some(fork) = &n.join {
        if cx.forks.get(fork).copied().unwrap_or(false) {
            ("inclusiveGateway", Shape::Gateway(GatewayMark::Inclusive), String::new())
        } else {
            ("parallelGateway", Shape::Gateway(GatewayMark::Parallel), String::new())
        }
    } else if let Some(t) = &n.timer {
        ("intermediateCatchEvent", Shape::Catch(Icon::Timer), cx.timer_def(t))
    } else if let Some(m) = &n.message {
        ("intermediateCatchEvent", Shape::Catch(Icon::Message), cx.message_def(m))
    } else if let Some(end) = &n.end {
        let (terminate, error, tail) = match end {
            Some(EndDef::Kind(EndKind::Terminate)) => {
                (true, false, format!("<bpmn:terminateEventDefinition id=\"{}\"/>", cx.ids.alloc("ted")))
            }
            Some(EndDef::Error(e)) => (
                false,
                true,
                format!(
                    "<bpmn:errorEventDefinition id=\"{}\" errorRef=\"{}\"/>",
                    cx.ids.alloc("eed"),
                    cx.error(&e.error)
                ),
            ),
            _ => (false, false, String::new()),
        };
        ("endEvent", Shape::End { terminate, error }, tail)
    } else if let Some(called) = &n.call {
        if is_ncname(called) {
            attrs = format!(" calledElement=\"{called}\"");
        }
        ("callActivity", Shape::Other("call"), String::new())
    } else if n.sub_process.is_some() {
        ("subProcess", Shape::Other("sub_process"), String::new())
    } else {
        // Not in a compiled process: a plain task with its JSON, so nothing is lost.
        ("task", Shape::Other("task"), String::new())
    };
    (r.0, r.1, r.2, attrs)
}

/// The flows out of node `n` (element `ix`, layout item `item`), and its boundary
/// events and event-based branch events as elements.
fn node_flows(cx: &mut Cx, s: &mut Scope, pending: &mut Vec<Pending>, key: &str, n: &NodeDef, ix: usize, item: usize) {
    let plain = |to: &str| Pending {
        from: ix,
        to: Target::Key(to.to_string()),
        name: None,
        condition: None,
        default: false,
        style: EdgeStyle::Normal,
        boundary: None,
    };
    if n.user_task.is_some() {
        let branches = n.outcomes.as_ref().is_some_and(|o| !o.is_empty()) || n.send_back.is_some();
        if let Some(next) = &n.next {
            pending.push(Pending { default: branches, ..plain(next) });
        }
        for (outcome, to) in n.outcomes.iter().flatten() {
            pending.push(Pending {
                name: Some(outcome.clone()),
                condition: Some(format!("outcome == {}", rhai_string(outcome))),
                ..plain(to)
            });
        }
        if let Some(to) = &n.send_back {
            pending.push(Pending {
                name: Some("差し戻し send back".to_string()),
                condition: Some("outcome == \"send_back\"".to_string()),
                style: EdgeStyle::SendBack,
                ..plain(to)
            });
        }
    } else if let Some(branches) = n.exclusive.as_ref().or(n.inclusive.as_ref()) {
        for b in branches {
            pending.push(Pending { condition: Some(b.when.clone()), ..plain(&b.next) });
        }
        if let Some(to) = &n.default {
            pending.push(Pending { default: true, style: EdgeStyle::Default, ..plain(to) });
        }
    } else if let Some(branches) = &n.parallel {
        for to in branches {
            pending.push(plain(to));
        }
    } else if let Some(branches) = &n.event_based {
        for (i, b) in branches.iter().enumerate() {
            let (icon, tail, label) = match (&b.message, &b.timer) {
                (Some(m), _) => (Icon::Message, cx.message_def(m), m.clone()),
                (None, Some(t)) => (Icon::Timer, cx.timer_def(t), timer_body(t).1),
                (None, None) => (Icon::Message, String::new(), String::new()),
            };
            let id = cx.ids.alloc(&format!("{key}_branch_{}", i + 1));
            let catch = s.els.len();
            push_el(
                s,
                El {
                    id,
                    tag: "intermediateCatchEvent",
                    name: Some(label.clone()),
                    lane: n.lane.clone(),
                    attrs: String::new(),
                    doc: None,
                    ext: node_ext(&json(b)),
                    tail,
                    incoming: Vec::new(),
                    outgoing: Vec::new(),
                    drawn: Drawn::Item(0),
                    inner: None,
                },
                Shape::Catch(icon),
                label,
            );
            pending.push(Pending { to: Target::El(catch), ..plain("") });
            pending.push(Pending { from: catch, ..plain(&b.next) });
        }
    } else if let Some(next) = &n.next {
        pending.push(plain(next));
    }

    for (i, b) in n.boundary.iter().flatten().enumerate() {
        let tail = if let Some(t) = &b.timer {
            cx.timer_def(t)
        } else if let Some(code) = &b.error {
            if code == "any" {
                format!("<bpmn:errorEventDefinition id=\"{}\"/>", cx.ids.alloc("eed"))
            } else {
                format!("<bpmn:errorEventDefinition id=\"{}\" errorRef=\"{}\"/>", cx.ids.alloc("eed"), cx.error(code))
            }
        } else if let Some(m) = &b.message {
            cx.message_def(m)
        } else {
            String::new()
        };
        let interrupting = b.interrupting.unwrap_or(true) || b.error.is_some();
        let id = cx.ids.alloc(&format!("{key}_boundary_{}", i + 1));
        let host = s.els[ix].id.clone();
        let bix = s.els.len();
        s.els.push(El {
            id,
            tag: "boundaryEvent",
            name: None,
            lane: n.lane.clone(),
            attrs: format!(" cancelActivity=\"{interrupting}\" attachedToRef=\"{host}\""),
            doc: None,
            ext: node_ext(&json(b)),
            tail,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            drawn: Drawn::Boundary { item, index: i },
            inner: None,
        });
        pending.push(Pending {
            from: bix,
            style: EdgeStyle::Boundary,
            boundary: Some((item, i)),
            name: Some(boundary_label(b)),
            ..plain(&b.next)
        });
    }
}

fn boundary_label(b: &crate::model::BoundaryDef) -> String {
    if let Some(t) = &b.timer {
        format!("timer {}", timer_body(t).1)
    } else if let Some(e) = &b.error {
        format!("error {e}")
    } else {
        format!("message {}", b.message.as_deref().unwrap_or(""))
    }
}

/// `s` as a rhai string literal.
fn rhai_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string is JSON")
}

/// Text content: `&`, `<`, `>` escaped, a carriage return kept as a reference (a
/// parser would turn it into a line feed), control characters XML 1.0 cannot hold
/// replaced (the JSON payload keeps them, escaped).
pub(super) fn text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\r' => o.push_str("&#13;"),
            '\t' | '\n' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// An attribute value in double quotes: like [`text`], with `"` and white space
/// other than spaces as references (attribute values are normalised otherwise).
pub(super) fn attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("&quot;"),
            '\n' => o.push_str("&#10;"),
            '\t' => o.push_str("&#9;"),
            c => o.push_str(&text(&c.to_string())),
        }
    }
    o
}

/// Writes the BPMNDI part.
struct Di<'a> {
    out: &'a mut String,
    ids: &'a mut Ids,
}

impl Di<'_> {
    fn open(&mut self, element: &str) {
        let d = self.ids.alloc(&format!("{element}_diagram"));
        let p = self.ids.alloc(&format!("{element}_plane"));
        let _ = writeln!(
            self.out,
            "  <bpmndi:BPMNDiagram id=\"{d}\">\n    <bpmndi:BPMNPlane id=\"{p}\" bpmnElement=\"{element}\">"
        );
    }

    fn close(&mut self) {
        self.out.push_str("    </bpmndi:BPMNPlane>\n  </bpmndi:BPMNDiagram>\n");
    }

    fn shape(&mut self, element: &str, extra: &str, (x, y, w, h): (i32, i32, i32, i32)) {
        let id = self.ids.alloc(&format!("{element}_di"));
        let _ = writeln!(
            self.out,
            "      <bpmndi:BPMNShape id=\"{id}\" bpmnElement=\"{element}\"{extra}>\n        <dc:Bounds x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\"/>\n      </bpmndi:BPMNShape>"
        );
    }

    fn pool(&mut self, participant: &str, laid: &LaidOut, lane_ids: &[String]) {
        self.shape(participant, " isHorizontal=\"true\"", laid.pool);
        for (b, id) in lane_ids.iter().enumerate() {
            self.shape(id, " isHorizontal=\"true\"", laid.lane(b));
        }
    }

    fn plane(&mut self, scope: &Scope, laid: &LaidOut) {
        for el in &scope.els {
            let bounds = match el.drawn {
                Drawn::Item(i) => laid.bounds(i),
                Drawn::Boundary { item, index } => laid.boundary_bounds(item, index),
            };
            let extra = if el.tag == "subProcess" { " isExpanded=\"false\"" } else { "" };
            self.shape(&el.id, extra, bounds);
        }
        for (e, f) in scope.flows.iter().enumerate() {
            let id = self.ids.alloc(&format!("{}_di", f.id));
            let _ = writeln!(self.out, "      <bpmndi:BPMNEdge id=\"{id}\" bpmnElement=\"{}\">", f.id);
            for (x, y) in laid.waypoints(e) {
                let _ = writeln!(self.out, "        <di:waypoint x=\"{x}\" y=\"{y}\"/>");
            }
            self.out.push_str("      </bpmndi:BPMNEdge>\n");
        }
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
