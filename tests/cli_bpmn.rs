//! `nagare import`, `nagare deploy FILE.bpmn` and `nagare bench --from-bpmn`
//! end to end, on the binary.

use std::path::Path;
use std::process::{Command, Output};

fn nagare(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nagare"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NAGARE_DATA")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("nagare runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn import_writes_yaml_that_validates_and_bpmn_deploys_directly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("order.yaml");
    let o = nagare(dir.path(), &["import", "tests/fixtures/bpmn/camunda7-order.bpmn", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let yaml = std::fs::read_to_string(&out).unwrap();
    assert!(yaml.starts_with("# Imported from BPMN 2.0"), "{yaml}");
    let v = nagare(dir.path(), &["validate", out.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));

    let m = nagare(dir.path(), &["diagram", "tests/fixtures/bpmn/bpmnio-leave.bpmn", "--format", "mermaid"]);
    assert!(m.status.success() && text(&m).contains("申請する"), "{}", text(&m));

    let d = nagare(dir.path(), &["deploy", "tests/fixtures/bpmn/peers/python/straight.bpmn"]);
    assert!(d.status.success(), "{}", text(&d));
    assert!(text(&d).contains("deployed straight version 1"), "{}", text(&d));
}

#[test]
fn import_of_an_unsupported_model_lists_each_element_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let o = nagare(dir.path(), &["import", "tests/fixtures/bpmn/unsupported.bpmn"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("tests/fixtures/bpmn/unsupported.bpmn:8:5: error[unsupported-element]"), "{t}");
    assert!(t.contains("error[untranslatable-expression]"), "{t}");
    assert!(t.contains("not imported (5 errors)"), "{t}");
}

#[test]
fn bench_runs_the_peers_bpmn_files_through_import() {
    let dir = tempfile::tempdir().unwrap();
    let o = nagare(
        dir.path(),
        &["--json", "bench", "--mode", "mem", "--n", "50", "--from-bpmn", "tests/fixtures/bpmn/peers/python"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let cases: Vec<&str> = lines.iter().filter_map(|l| l["case"].as_str()).collect();
    assert_eq!(cases, ["straight", "gateway", "usertask"]);
    assert!(lines.iter().all(|l| l["runtime"].as_str().unwrap().contains("imported from BPMN")));
}
