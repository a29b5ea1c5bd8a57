//! BPMN files saved the way Camunda Modeler (Camunda 7 and Camunda 8/Zeebe),
//! bpmn.io and Signavio save them import to the expected nagare YAML, which
//! loads and compiles; files nagare cannot run give precise diagnostics.
//!
//! The expected YAML lives in `tests/fixtures/bpmn/expected/`; after a
//! deliberate change, rewrite it with `NAGARE_UPDATE_EXPECT=1` and review the diff.

use nagare_core::bpmn;
use nagare_core::compile::CompileOptions;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bpmn")
}

fn read(name: &str) -> String {
    let p = dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Import `name`, compare with its expected YAML, and load it.
fn imports_as_expected(name: &str) -> bpmn::Imported {
    let xml = read(name);
    let imported = bpmn::import(&xml, name).unwrap_or_else(|d| panic!("{name} does not import:\n{d}"));
    let expected_path = dir().join("expected").join(name.replace(".bpmn", ".yaml"));
    if std::env::var_os("NAGARE_UPDATE_EXPECT").is_some() {
        std::fs::write(&expected_path, &imported.yaml).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    assert_eq!(imported.yaml, expected, "{name}: the imported YAML changed (see the module docs)");
    if let Err(d) = bpmn::load_bpmn(name, &xml, &CompileOptions::default()) {
        panic!("{name} imports but does not load:\n{d}");
    }
    imported
}

fn codes(d: &nagare_core::Diagnostics) -> Vec<(&'static str, usize, usize)> {
    d.errors().map(|d| (d.code, d.line, d.col)).collect()
}

#[test]
fn camunda7_modeler_file_with_lanes_forms_juel_and_an_external_task() {
    let i = imports_as_expected("camunda7-order.bpmn");
    let approve = &i.def.nodes["approve_order"];
    assert_eq!(approve.lane.as_deref(), Some("managers"));
    assert_eq!(i.def.lanes["managers"].groups, ["managers", "directors"]);
    assert_eq!(i.def.nodes["enter_order"].assignee.as_deref(), Some("started_by"), "camunda:initiator");
    assert_eq!(i.def.variables["priority"].options.as_deref(), Some(&["normal".to_string(), "urgent".into()][..]));
    let b = &approve.boundary.as_ref().unwrap()[0];
    assert_eq!((b.interrupting, b.next.as_str()), (Some(false), "remind"));
    assert!(i.yaml.contains("interrupting: false"), "{}", i.yaml);
}

#[test]
fn camunda8_zeebe_file_with_feel_io_mappings_multi_instance_and_events() {
    let i = imports_as_expected("zeebe-invoice.bpmn");
    let fetch = &i.def.nodes["fetch_invoice"];
    assert_eq!(fetch.service.as_deref(), Some("invoice.fetch"));
    assert_eq!(fetch.set.as_ref().unwrap()["amount"], "result.total");
    assert_eq!(i.def.nodes["Gateway_join"].join.as_deref(), Some("Gateway_fork"));
    let eb = i.def.nodes["Gateway_wait"].event_based.as_ref().unwrap();
    assert_eq!((eb[0].message.as_deref(), eb[0].key.as_deref()), (Some("payment-received"), Some("invoiceId")));
    assert!(i.warnings.0.iter().any(|w| w.code == "ignored-extension"), "the external form is reported");
}

#[test]
fn bpmn_io_file_with_japanese_names_inclusive_gateways_and_a_sub_process() {
    let i = imports_as_expected("bpmnio-leave.bpmn");
    assert_eq!(i.def.name.as_deref(), Some("休暇申請"), "the pool's name");
    assert_eq!(i.def.nodes["Gateway_1join"].join.as_deref(), Some("Gateway_0split"));
    assert!(i.def.nodes["Activity_cover"].sub_process.is_some());
}

#[test]
fn signavio_file_with_default_namespace_and_metadata() {
    let i = imports_as_expected("signavio-claim.bpmn");
    assert_eq!(i.def.nodes["sid-REVIEW"].user_task.as_deref(), Some("Review claim"), "line breaks in names");
    let x = i.def.nodes["sid-XOR"].exclusive.as_ref().unwrap();
    assert_eq!(x[0].when, "valid == true && amount <= 500000");
}

#[test]
fn unsupported_elements_are_reported_with_id_type_and_position() {
    let xml = read("unsupported.bpmn");
    let d = bpmn::import(&xml, "unsupported.bpmn").unwrap_err();
    let text = d.to_string();
    assert_eq!(
        codes(&d),
        [
            ("unsupported-element", 8, 5),
            ("unsupported-element", 11, 5),
            ("untranslatable-expression", 16, 5),
            ("unsupported-element", 21, 5),
            ("missing-task-type", 22, 5),
        ],
        "{text}"
    );
    assert!(text.contains("<bpmn:businessRuleTask> `decide` (businessRuleTask)"), "{text}");
    assert!(text.contains("function call `contains(...)`"), "{text}");
    assert!(text.contains("<bpmn:intermediateThrowEvent> `signal_out`"), "{text}");
}

#[test]
fn hostile_xml_is_refused_with_a_clear_error() {
    let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n]>\n<bpmn:definitions xmlns:bpmn=\"http://www.omg.org/spec/BPMN/20100524/MODEL\">&lol1;</bpmn:definitions>";
    let d = bpmn::import(laughs, "laughs.bpmn").unwrap_err();
    assert_eq!(codes(&d), [("xml-doctype", 2, 1)], "{d}");
    let deep = format!("<definitions>{}", "<a>".repeat(10_000));
    assert_eq!(bpmn::import(&deep, "deep.bpmn").unwrap_err().0[0].code, "too-deep");
    let huge = format!("<definitions>{}</definitions>", "<!-- x -->".repeat(500_000));
    assert_eq!(bpmn::import(&huge, "huge.bpmn").unwrap_err().0[0].code, "file-too-large");
    let external = "<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><definitions>&x;</definitions>";
    assert_eq!(bpmn::import(external, "xxe.bpmn").unwrap_err().0[0].code, "xml-doctype");
    assert_eq!(bpmn::import("<html/>", "x.bpmn").unwrap_err().0[0].code, "not-bpmn");
}

#[test]
fn nagare_extension_elements_carry_what_bpmn_cannot_and_flows_come_from_the_diagram() {
    let i = imports_as_expected("nagare-extension.bpmn");
    assert!(i.def.variables["amount"].required, "variables from <nagare:process>");
    assert_eq!(i.def.lanes["staff"].groups, ["staff"]);
    assert_eq!(i.def.start.rules.len(), 1, "start rules from <nagare:node>");
    assert_eq!(i.def.start.next, "approve", "the flow wins over a stale `next`");
    let approve = &i.def.nodes["approve"];
    assert_eq!(approve.user_task.as_deref(), Some("承認する"));
    assert_eq!(approve.next.as_deref(), Some("route"), "the flow wins over a stale `next`");
    assert!(approve.due.is_some() && approve.form.is_some());
    let route = i.def.nodes["route"].exclusive.as_ref().unwrap();
    assert_eq!(route[0].when, "ok && amount.to_string() != \"\"", "rhai is taken verbatim");
}

/// Regression guard for a server that must never panic on one input: every
/// prefix of every fixture, and each fixture with a slice cut out, imports or
/// fails with diagnostics.
#[test]
fn truncated_and_mangled_files_never_panic() {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".bpmn"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for name in files {
        let xml = read(&name);
        let cuts: Vec<usize> = xml.char_indices().map(|(i, _)| i).step_by(13).collect();
        for &cut in &cuts {
            let _ = bpmn::load_bpmn(&name, &xml[..cut], &CompileOptions::default());
        }
        for w in cuts.windows(2).step_by(5) {
            let mangled = format!("{}{}", &xml[..w[0]], &xml[w[1]..]);
            let _ = bpmn::load_bpmn(&name, &mangled, &CompileOptions::default());
        }
    }
}
