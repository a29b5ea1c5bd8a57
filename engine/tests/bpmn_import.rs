//! BPMN import, end to end: the peers' benchmark processes (SpiffWorkflow
//! Python and bpmn-engine JavaScript flavours) import, deploy and run with the
//! results the peers' harness checks.

use nagare_engine::bpmn::{self, ImportOptions};
use nagare_engine::runtime::{Instance, Outcome, Status};
use nagare_engine::{Engine, StartOptions, Vars};
use serde_json::json;

fn fixture(name: &str) -> String {
    let path = format!("{}/../tests/fixtures/bpmn/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn engine() -> Engine {
    Engine::builder().in_memory().build().unwrap()
}

fn num(i: &Instance, name: &str) -> Option<f64> {
    i.vars.get(name).and_then(|v| v.as_f64())
}

#[test]
fn peers_straight_counts_to_ten_in_both_flavours() {
    for flavour in ["python", "js"] {
        let e = engine();
        // Deployed as BPMN directly: the engine imports it.
        let d =
            e.deploy(&format!("{flavour}-straight.bpmn"), &fixture(&format!("peers/{flavour}/straight.bpmn"))).unwrap();
        assert_eq!(d.id, "straight");
        let vars: Vars = [("count".to_string(), json!(0))].into();
        let inst = e.start("straight", vars, StartOptions::default()).unwrap();
        assert_eq!(inst.status, Status::Completed, "{flavour}");
        assert_eq!(num(&inst, "count"), Some(10.0), "{flavour}: {:?}", inst.vars);
    }
}

#[test]
fn peers_gateway_takes_branch_a_and_runs_the_three_parallel_scripts() {
    for flavour in ["python", "js"] {
        let e = engine();
        e.deploy("gateway.bpmn", &fixture(&format!("peers/{flavour}/gateway.bpmn"))).unwrap();
        let inst = e.start("gateway", Vars::new(), StartOptions::default()).unwrap();
        assert_eq!(inst.status, Status::Completed, "{flavour}");
        assert_eq!(num(&inst, "x"), Some(7.0));
        assert_eq!(inst.vars.get("branch"), Some(&json!("A")), "{flavour}");
        for (p, v) in [("p1", 1.0), ("p2", 2.0), ("p3", 3.0)] {
            assert_eq!(num(&inst, p), Some(v), "{flavour} {p}");
        }
    }
}

#[test]
fn peers_usertask_is_approved_with_a_declared_variable() {
    for flavour in ["python", "js"] {
        let opts = ImportOptions { declare: [("approved".to_string(), "bool".to_string())].into() };
        let imported = bpmn::import_with(&fixture(&format!("peers/{flavour}/usertask.bpmn")), "usertask.bpmn", &opts)
            .unwrap_or_else(|d| panic!("{d}"));
        assert!(imported.warnings.0.iter().any(|w| w.code == "default-lane"), "{}", imported.warnings);
        let e = engine();
        e.deploy("usertask.yaml", &imported.yaml).unwrap();
        let inst = e.start("usertask", Vars::new(), StartOptions::default()).unwrap();
        let task = inst.open_task_ids().next().expect("waits on the task").to_string();
        let data: Vars = [("approved".to_string(), json!(true))].into();
        let done = e.complete(&task, "bench", data, Outcome::Next).unwrap();
        assert_eq!(done.status, Status::Completed);
        assert_eq!(done.vars.get("approved"), Some(&json!(true)));
    }
}

#[test]
fn deployed_bpmn_is_stored_as_its_yaml_and_redeploys_as_a_no_op() {
    let e = engine();
    let xml = fixture("peers/python/gateway.bpmn");
    let first = e.deploy("gateway.bpmn", &xml).unwrap();
    let again = e.deploy("gateway.bpmn", &xml).unwrap();
    assert!(first.created && !again.created);
    let p = e.latest("gateway").unwrap();
    assert!(p.source.contains("exclusive:"), "{}", p.source);
    assert!(!p.source.contains("<bpmn:"));
}
