//! BPMN export (`nagare export --format bpmn`) over every process the repository
//! ships: `processes/*.yaml`, the golden traces' processes and the processes they
//! call. Each one
//!
//! * validates against the OMG BPMN 2.0 schemas in `tests/fixtures/bpmn/xsd/`
//!   (`xmllint --schema`; CI installs `libxml2-utils`, elsewhere the test is skipped
//!   with a loud message when `xmllint` is missing);
//! * draws every flow node (a `BPMNShape`) and every sequence flow (a `BPMNEdge` with
//!   at least two waypoints), and every reference in it names an element that exists;
//! * comes back through the importer as the same compiled `Process`.

use nagare_engine::bpmn::{self, xml};
use nagare_engine::compile::CompileOptions;
use nagare_engine::load::load_str;
use nagare_engine::model::ProcessDef;
use nagare_engine::process::Process;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const BPMN: &str = "http://www.omg.org/spec/BPMN/20100524/MODEL";
const BPMNDI: &str = "http://www.omg.org/spec/BPMN/20100524/DI";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every shipped process file, in a stable order.
fn process_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let yaml = |dir: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> =
            std::fs::read_dir(dir).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
        v.sort();
        v
    };
    files.extend(yaml(&root().join("processes")));
    let traces = root().join("engine/tests/traces");
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(&traces).unwrap().filter_map(Result::ok).map(|e| e.path()).collect();
    cases.sort();
    for case in cases {
        let own = case.join("process.yaml");
        if own.exists() {
            files.push(own);
        }
        files.extend(yaml(&case.join("called")));
    }
    assert!(files.len() > 60, "the processes and the trace fixtures are found: {}", files.len());
    files
}

struct Exported {
    name: String,
    process: Process,
    xml: String,
}

fn export_all() -> Vec<Exported> {
    process_files()
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(root()).unwrap().display().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let loaded = load_str(&name, &text, &CompileOptions::default())
                .unwrap_or_else(|d| panic!("{name} does not load: {d}"));
            let def: ProcessDef = serde_yaml::from_str(&loaded.process.source).unwrap();
            let xml = bpmn::export(&def);
            Exported { name, process: loaded.process, xml }
        })
        .collect()
}

#[test]
fn every_shipped_process_exports_bpmn_that_validates_against_the_bpmn_20_schema() {
    let Some(xmllint) = which("xmllint") else {
        let msg = "xmllint not found: the BPMN 2.0 schema check did NOT run (Debian: apt-get install libxml2-utils)";
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        eprintln!("\n!!!!!!!! {msg} !!!!!!!!\n");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, e) in export_all().iter().enumerate() {
        let p = dir.path().join(format!("{i:03}.bpmn"));
        std::fs::write(&p, &e.xml).unwrap();
        paths.push((p, e.name.clone()));
    }
    let out = std::process::Command::new(xmllint)
        .arg("--noout")
        .arg("--schema")
        .arg(root().join("tests/fixtures/bpmn/xsd/BPMN20.xsd"))
        .args(paths.iter().map(|(p, _)| p))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut failed = Vec::new();
    for (p, name) in &paths {
        let shown = p.display().to_string();
        if !stderr.contains(&format!("{shown} validates")) {
            let why: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&shown)).take(3).collect();
            failed.push(format!("{name}: {}", why.join("\n  ")));
        }
    }
    assert!(failed.is_empty(), "{} exports do not validate:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn every_flow_node_has_a_shape_every_flow_an_edge_and_every_reference_resolves() {
    for e in export_all() {
        let root = xml::parse(&e.xml).unwrap_or_else(|d| panic!("{}: the export does not parse: {d}", e.name));
        let all = root.descendants();
        let ids: BTreeSet<&str> = all.iter().filter_map(|el| el.attr("id")).collect();
        let count = all.iter().filter(|el| el.attr("id").is_some()).count();
        assert_eq!(ids.len(), count, "{}: ids are unique", e.name);

        let mut flow_nodes = BTreeSet::new();
        let mut flows = BTreeSet::new();
        let mut refs: Vec<(&str, &str)> = Vec::new();
        for el in &all {
            if el.ns == BPMN {
                let id = el.attr("id").unwrap_or("");
                match el.name.as_str() {
                    "sequenceFlow" => {
                        flows.insert(id);
                        refs.push(("sourceRef", el.attr("sourceRef").unwrap()));
                        refs.push(("targetRef", el.attr("targetRef").unwrap()));
                    }
                    "startEvent"
                    | "endEvent"
                    | "intermediateCatchEvent"
                    | "boundaryEvent"
                    | "userTask"
                    | "serviceTask"
                    | "scriptTask"
                    | "task"
                    | "callActivity"
                    | "subProcess"
                    | "exclusiveGateway"
                    | "inclusiveGateway"
                    | "parallelGateway"
                    | "eventBasedGateway" => {
                        flow_nodes.insert(id);
                    }
                    "incoming" | "outgoing" | "flowNodeRef" => refs.push((el.name.as_str(), el.trimmed())),
                    _ => {}
                }
                for a in ["attachedToRef", "messageRef", "errorRef", "processRef", "default"] {
                    if let Some(v) = el.attr(a) {
                        refs.push((a, v));
                    }
                }
            }
        }
        for (what, r) in &refs {
            assert!(ids.contains(r), "{}: {what}=\"{r}\" names no element", e.name);
        }

        let mut shapes: BTreeMap<&str, usize> = BTreeMap::new();
        let mut edges: BTreeMap<&str, usize> = BTreeMap::new();
        for el in &all {
            if el.is(BPMNDI, "BPMNShape") {
                let of = el.attr("bpmnElement").unwrap();
                assert!(ids.contains(of), "{}: shape of unknown `{of}`", e.name);
                *shapes.entry(of).or_default() += 1;
            }
            if el.is(BPMNDI, "BPMNEdge") {
                let of = el.attr("bpmnElement").unwrap();
                let points = el.children.iter().filter(|c| c.name == "waypoint").count();
                assert!(points >= 2, "{}: edge of `{of}` has {points} waypoints", e.name);
                *edges.entry(of).or_default() += 1;
            }
        }
        for n in &flow_nodes {
            assert_eq!(shapes.get(n), Some(&1), "{}: flow node `{n}` has one shape", e.name);
        }
        for f in &flows {
            assert_eq!(edges.get(f), Some(&1), "{}: flow `{f}` has one edge", e.name);
        }
        // Every compiled node is an element: the export loses none of them.
        let keyed = all.iter().filter(|el| el.name == "node" && el.attr("key").is_some()).count();
        let starts = e.process.nodes.iter().filter(|n| n.id == "start" || n.id.ends_with("/start")).count();
        assert_eq!(keyed + starts, e.process.nodes.len(), "{}: one element per node", e.name);
    }
}

#[test]
fn export_is_deterministic() {
    let a: Vec<String> = export_all().into_iter().map(|e| e.xml).collect();
    let b: Vec<String> = export_all().into_iter().map(|e| e.xml).collect();
    assert!(a == b, "the same process exports the same bytes");
}

fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| p.is_file())
}

#[test]
fn nagare_export_writes_the_bpmn_file_and_refuses_an_invalid_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("expense.bpmn");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_nagare"))
        .args(["export", "processes/expense-approval.yaml", "--format", "bpmn", "-o"])
        .arg(&out)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("<?xml") && text.contains("<bpmn:collaboration"), "{}", &text[..200.min(text.len())]);

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "id: p\nstart: { next: nowhere }\nnodes:\n  done: { end: }\n").unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_nagare")).arg("export").arg(&bad).output().unwrap();
    assert!(!status.status.success());
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(err.contains("nowhere") && err.contains("fix them to export it"), "{err}");
}

/// A process as text that two equal processes share: the `Debug` form without the
/// source text and its digest (YAML here, XML there), without the expressions'
/// word sets and the id index (hash sets and maps, whose order is random); the index
/// is compared sorted.
fn canonical(p: &Process) -> String {
    let mut p = p.clone();
    p.source.clear();
    p.digest.clear();
    let index: BTreeMap<String, usize> = p.index.drain().collect();
    let text = format!("{p:#?}");
    let mut out = String::with_capacity(text.len());
    let mut skip_until: Option<String> = None;
    for line in text.lines() {
        if let Some(end) = &skip_until {
            if line == end || line.trim_end_matches(',') == end.trim_end_matches(',') {
                skip_until = None;
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed == "words: {" || trimmed == "index: {}," || trimmed == "index: {" {
            if trimmed.ends_with('{') {
                let indent = &line[..line.len() - trimmed.len()];
                skip_until = Some(format!("{indent}}},"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    format!("{out}index: {index:?}\n")
}

#[test]
fn canonical_form_is_stable_and_sees_a_changed_expression() {
    let text = std::fs::read_to_string(root().join("processes/expense-approval.yaml")).unwrap();
    let a = load_str("a.yaml", &text, &CompileOptions::default()).unwrap().process;
    let b = load_str("b.yaml", &text, &CompileOptions::default()).unwrap().process;
    assert_eq!(canonical(&a), canonical(&b), "two loads of one file are equal");
    assert!(!canonical(&a).contains("words"), "word sets are left out");
    let changed = text.replacen("金額 >= 50000", "金額 >= 50001", 1);
    assert_ne!(changed, text, "the fixture still has the condition this test edits");
    let c = load_str("c.yaml", &changed, &CompileOptions::default()).unwrap().process;
    assert_ne!(canonical(&a), canonical(&c), "a changed condition is a different process");
}

/// The definition back from the export's `nagare:` payloads alone (what the
/// importer prefers), as YAML text: proves the export carries every key.
fn from_payloads(xml_text: &str) -> String {
    use serde_yaml::{Mapping, Value};
    const NAGARE: &str = "https://nagare.dev/schema/bpmn/1.0";
    fn json(el: &xml::Element) -> Value {
        serde_yaml::from_str(&el.text).expect("payload is JSON")
    }
    fn payload(el: &xml::Element) -> Option<&xml::Element> {
        el.child(BPMN, "extensionElements").and_then(|x| x.child(NAGARE, "node"))
    }
    fn nodes(scope: &xml::Element) -> (Option<Value>, Mapping) {
        let mut start = None;
        let mut out = Mapping::new();
        for el in &scope.children {
            let Some(p) = payload(el) else { continue };
            if el.is(BPMN, "startEvent") {
                start = Some(json(p));
                continue;
            }
            let Some(key) = p.attr("key") else { continue };
            let mut node = json(p);
            if el.is(BPMN, "subProcess") {
                let (sub_start, sub_nodes) = nodes(el);
                let sub = node.get_mut("sub_process").and_then(Value::as_mapping_mut).expect("a sub-process");
                if let Some(s) = sub_start {
                    sub.insert("start".into(), s);
                }
                sub.insert("nodes".into(), Value::Mapping(sub_nodes));
            }
            out.insert(key.into(), node);
        }
        (start, out)
    }
    let root = xml::parse(xml_text).unwrap();
    let process = root.child(BPMN, "process").unwrap();
    let mut def = json(process.child(BPMN, "extensionElements").unwrap().child(NAGARE, "process").unwrap());
    let (start, top) = nodes(process);
    let m = def.as_mapping_mut().unwrap();
    m.insert("start".into(), start.expect("the start event carries its definition"));
    m.insert("nodes".into(), Value::Mapping(top));
    serde_yaml::to_string(&def).unwrap()
}

#[test]
fn the_nagare_payloads_of_every_export_compile_to_the_same_process() {
    for e in export_all() {
        let yaml = from_payloads(&e.xml);
        let back = load_str(&e.name, &yaml, &CompileOptions::default())
            .unwrap_or_else(|d| panic!("{}: the payloads do not load: {d}\n{yaml}", e.name));
        assert_eq!(canonical(&back.process), canonical(&e.process), "{}: payloads → a different process", e.name);
    }
}

#[test]
fn every_export_imports_back_to_the_same_process() {
    let mut failed = Vec::new();
    let all = export_all();
    for e in &all {
        let problem = match bpmn::load_bpmn(&e.name, &e.xml, &CompileOptions::default()) {
            Ok(back) => {
                let (a, b) = (canonical(&e.process), canonical(&back.process));
                (a != b).then(|| {
                    let at = a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or(0);
                    let show = |t: &str| t.lines().skip(at.saturating_sub(3)).take(8).collect::<Vec<_>>().join("\n");
                    format!("differs at line {at}:\n--- yaml\n{}\n--- bpmn\n{}", show(&a), show(&b))
                })
            }
            Err(d) => Some(format!("does not import: {d}")),
        };
        if let Some(p) = problem {
            failed.push(format!("{}: {p}", e.name));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} exports do not come back the same:\n\n{}",
        failed.len(),
        all.len(),
        failed.join("\n\n")
    );
}

#[test]
fn moving_shapes_in_a_modeler_does_not_change_the_imported_process() {
    for name in ["processes/expense-approval.yaml", "processes/contract-approval.yaml"] {
        let e = export_all().into_iter().find(|e| e.name == name).unwrap();
        // Every shape and waypoint moved right (x="72" → x="172"), as a drag would.
        let moved = e.xml.replace(" x=\"", " x=\"1");
        assert_ne!(moved, e.xml);
        let back = bpmn::load_bpmn(name, &moved, &CompileOptions::default()).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(canonical(&back.process), canonical(&e.process), "{name}: layout is not part of the process");
    }
}
