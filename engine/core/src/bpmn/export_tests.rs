//! The export's own rules: ids, timers, escaping, event-based branches, boundary
//! events, sub-process planes, lanes. The whole-repository checks (schema, layout
//! completeness, payloads) are in `tests/bpmn_export.rs`.

use super::export;
use crate::bpmn::xml::{self, Element};
use crate::bpmn::{BPMNDI_NS, BPMN_NS, NAGARE_NS};
use crate::compile::CompileOptions;
use crate::load::load_str;
use crate::model::ProcessDef;

/// Export `yaml` (which must load) and parse the result.
fn exported(yaml: &str) -> (String, Element) {
    load_str("t.yaml", yaml, &CompileOptions::default()).unwrap_or_else(|d| panic!("{d}"));
    let def: ProcessDef = serde_yaml::from_str(yaml).unwrap();
    let text = export(&def);
    let root = xml::parse(&text).unwrap_or_else(|d| panic!("{d}\n{text}"));
    (text, root)
}

fn all<'a>(root: &'a Element, name: &str) -> Vec<&'a Element> {
    root.descendants().into_iter().filter(|e| e.ns == BPMN_NS && e.name == name).collect()
}

fn by_id<'a>(root: &'a Element, id: &str) -> &'a Element {
    root.descendants().into_iter().find(|e| e.attr("id") == Some(id)).unwrap_or_else(|| panic!("no `{id}`"))
}

#[test]
fn keys_that_are_no_xml_id_are_escaped_and_kept_in_the_payload() {
    let (_, root) = exported(
        "id: p\nstart: { next: 1st }\nnodes:\n  1st: { script: 'let x = 1;', next: 'a:b' }\n  'a:b': { script: 'let y = 2;', next: a_b }\n  a_b: { end: }\n",
    );
    let tasks = all(&root, "scriptTask");
    let ids: Vec<&str> = tasks.iter().filter_map(|t| t.attr("id")).collect();
    assert_eq!(ids, ["_1st", "a_b_2"], "a leading digit gets `_`; an escaped key yields to a plain one");
    assert_eq!(by_id(&root, "a_b").name, "endEvent", "a key that is an id keeps it");
    let keys: Vec<&str> =
        root.descendants().into_iter().filter(|e| e.is(NAGARE_NS, "node")).filter_map(|e| e.attr("key")).collect();
    assert_eq!(keys, ["1st", "a:b", "a_b"]);
    let flow = all(&root, "sequenceFlow").into_iter().find(|f| f.attr("sourceRef") == Some("_1st")).unwrap();
    assert_eq!(flow.attr("targetRef"), Some("a_b_2"));
}

#[test]
fn timers_become_iso_durations_cycles_or_dates_and_keep_what_iso_cannot_say() {
    let (_, root) = exported(
        "id: p\nstart: { timer: { cron: '0 9 * * 1-5' }, next: w }\nnodes:\n  w: { timer: 90m, next: b }\n  b: { timer: 3bd, next: e }\n  e: { end: }\n",
    );
    let text_of = |tag: &str| -> Vec<String> {
        root.descendants().into_iter().filter(|e| e.is(BPMN_NS, tag)).map(|e| e.trimmed().to_string()).collect()
    };
    assert_eq!(text_of("timeCycle"), ["0 9 * * 1-5"]);
    assert_eq!(text_of("timeDuration"), ["PT1H30M", "3bd"], "business days have no ISO form");
}

#[test]
fn names_with_markup_and_line_breaks_survive_the_xml() {
    let (text, root) = exported(
        "id: p\nname: \"A & <B>\"\nstart: { next: t }\nnodes:\n  t: { script: \"let s = \\\"<&>\\\";\\nlet t = 1;\", name: \"line one\\nline \\\"two\\\"\", next: e }\n  e: { end: }\n",
    );
    let task = by_id(&root, "t");
    assert_eq!(task.attr("name"), Some("line one\nline \"two\""), "{text}");
    assert_eq!(task.child(BPMN_NS, "script").unwrap().text, "let s = \"<&>\";\nlet t = 1;");
    assert_eq!(all(&root, "process")[0].attr("name"), Some("A & <B>"));
}

#[test]
fn event_based_branches_are_catch_events_after_the_gateway_with_their_payloads() {
    let (_, root) = exported(
        "id: p\nvariables: { k: { type: string } }\nstart: { next: g }\nnodes:\n  g:\n    event_based:\n      - { message: 署名完了, key: k, next: ok }\n      - { timer: 7d, next: late }\n  ok: { end: }\n  late: { end: terminate }\n",
    );
    let gw = by_id(&root, "g");
    assert_eq!(gw.name, "eventBasedGateway");
    let out: Vec<&Element> =
        all(&root, "sequenceFlow").into_iter().filter(|f| f.attr("sourceRef") == Some("g")).collect();
    assert_eq!(out.len(), 2);
    let first = by_id(&root, out[0].attr("targetRef").unwrap());
    assert_eq!(first.name, "intermediateCatchEvent");
    assert!(first.child(BPMN_NS, "messageEventDefinition").is_some());
    let payload = first.child(BPMN_NS, "extensionElements").unwrap().child(NAGARE_NS, "node").unwrap();
    assert!(payload.text.contains("\"key\":\"k\""), "{}", payload.text);
    let after: Vec<&str> = all(&root, "sequenceFlow")
        .into_iter()
        .filter(|f| f.attr("sourceRef") == first.attr("id"))
        .filter_map(|f| f.attr("targetRef"))
        .collect();
    assert_eq!(after, ["ok"]);
    assert!(by_id(&root, "late").child(BPMN_NS, "terminateEventDefinition").is_some());
}

#[test]
fn gateways_conditions_defaults_outcomes_and_boundaries() {
    let (_, root) = exported(
        "id: p\nlanes: { staff: {} }\nvariables: { n: { type: number } }\nstart: { next: x }\nnodes:\n  x:\n    exclusive:\n      - { when: n > 10, next: r }\n    default: d\n  r:\n    user_task: Review\n    lane: staff\n    outcomes: { reject: d }\n    send_back: x\n    boundary:\n      - { timer: 2d, interrupting: false, next: remind }\n      - { error: any, next: d }\n    next: d\n  remind: { end: }\n  d: { end: }\n",
    );
    let x = by_id(&root, "x");
    let default = x.attr("default").unwrap();
    assert_eq!(by_id(&root, default).attr("targetRef"), Some("d"));
    let cond: Vec<(String, Option<&str>)> =
        all(&root, "conditionExpression").into_iter().map(|c| (c.trimmed().to_string(), c.attr("language"))).collect();
    assert_eq!(
        cond,
        [
            ("n > 10".to_string(), Some("rhai")),
            ("outcome == \"reject\"".to_string(), Some("rhai")),
            ("outcome == \"send_back\"".to_string(), Some("rhai")),
        ]
    );
    let r = by_id(&root, "r");
    assert_eq!(by_id(&root, r.attr("default").unwrap()).attr("targetRef"), Some("d"), "next is the task's default");
    let boundaries = all(&root, "boundaryEvent");
    assert_eq!(boundaries.len(), 2);
    assert_eq!(boundaries[0].attr("cancelActivity"), Some("false"));
    assert_eq!(boundaries[1].attr("cancelActivity"), Some("true"));
    assert!(boundaries.iter().all(|b| b.attr("attachedToRef") == Some("r")));
    assert!(boundaries[1].child(BPMN_NS, "errorEventDefinition").unwrap().attr("errorRef").is_none(), "any");
    // Lanes: the start goes where its first node is; `x` has no lane, so an unnamed
    // lane holds both, then the declared lane holds the task and its boundary events.
    let lanes = all(&root, "lane");
    assert_eq!(lanes.len(), 2);
    assert_eq!(lanes[1].attr("name"), Some("staff"));
    let in_staff: Vec<&str> = lanes[1].children.iter().map(|c| c.trimmed()).collect();
    assert_eq!(in_staff, ["r", boundaries[0].attr("id").unwrap(), boundaries[1].attr("id").unwrap()]);
}

#[test]
fn a_sub_process_is_collapsed_with_its_inside_on_a_plane_of_its_own() {
    let (_, root) = exported(
        "id: p\nvariables: { xs: { type: list, default: [] } }\nstart: { next: s }\nnodes:\n  s:\n    multi_instance: { for_each: xs, as: x, sequential: true }\n    sub_process:\n      start: { next: t }\n      nodes:\n        t: { script: 'let a = x;', next: e2 }\n        e2: { end: }\n    next: e\n  e: { end: }\n",
    );
    let sub = by_id(&root, "s");
    assert_eq!(sub.name, "subProcess");
    let mi = sub.child(BPMN_NS, "multiInstanceLoopCharacteristics").unwrap();
    assert_eq!(mi.attr("isSequential"), Some("true"));
    let inner: Vec<&str> =
        sub.children.iter().filter(|c| c.name != "extensionElements").filter_map(|c| c.attr("id")).collect();
    assert!(inner.contains(&"t") && inner.contains(&"e2"), "{inner:?}");
    let planes: Vec<&Element> = root.descendants().into_iter().filter(|e| e.is(BPMNDI_NS, "BPMNPlane")).collect();
    assert_eq!(planes.len(), 2);
    assert_eq!(planes[1].attr("bpmnElement"), Some("s"));
    let shape_of = |plane: &Element, id: &str| plane.children.iter().any(|c| c.attr("bpmnElement") == Some(id));
    assert!(shape_of(planes[0], "s") && !shape_of(planes[0], "t"));
    assert!(shape_of(planes[1], "t") && shape_of(planes[1], "e2"));
    let s_shape = planes[0].children.iter().find(|c| c.attr("bpmnElement") == Some("s")).unwrap();
    assert_eq!(s_shape.attr("isExpanded"), Some("false"));
}
