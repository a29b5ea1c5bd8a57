//! Unit tests of the pure rewrite (engine-level tests: `engine/tests/migrate*.rs`).

use super::*;
use crate::compile::CompileOptions;
use crate::runtime::{start, Wait};
use crate::Vars;

fn process(yaml: &str, version: u32) -> Process {
    let mut p =
        crate::load::load_str("p.yaml", yaml, &CompileOptions::default()).unwrap_or_else(|d| panic!("{d}")).process;
    p.version = version;
    p
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

const FORK: &str = r#"
id: p
lanes: { a: {} }
start: { next: f }
nodes:
  f: { parallel: [x, y] }
  x: { user_task: X, lane: a, next: j }
  y: { user_task: Y, lane: a, next: j }
  j: { join: f, next: after }
  after: { user_task: After, lane: a, next: e }
  e: { end: }
"#;

fn spec() -> MigrationSpec {
    MigrationSpec { process: "p".into(), from: 1, to: 2, ..Default::default() }
}

#[test]
fn the_same_process_moves_everything_to_the_same_place() {
    let (v, w) = (process(FORK, 1), process(FORK, 2));
    let (inst, _) = start(&v, 7, Vars::new(), None, None, now()).unwrap();
    let spec = spec();
    let m = Migration::new(&spec, &v, &w).unwrap();
    let (plan, out) = m.instance(&inst, &BTreeMap::new(), "admin", now());
    assert!(plan.is_valid() && plan.warnings.is_empty(), "{plan:?}");
    let out = out.unwrap();
    assert_eq!(out.instance.version, 2);
    assert_eq!(out.instance.tokens.iter().map(|t| &t.node).collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(out.transition.history.len(), 1, "only the migrated line");
    assert!(out.transition.commands.is_empty(), "nothing re-armed: {:?}", out.transition.commands);
}

#[test]
fn a_token_mapped_out_of_its_fork_is_refused() {
    let v = process(FORK, 1);
    let w = process(FORK, 2);
    let (inst, _) = start(&v, 7, Vars::new(), None, None, now()).unwrap();
    let mut spec = spec();
    spec.map.insert("x".into(), "after".into());
    let m = Migration::new(&spec, &v, &w).unwrap();
    let (plan, out) = m.instance(&inst, &BTreeMap::new(), "admin", now());
    assert!(out.is_none());
    assert_eq!(plan.problems[0].code, "scope-changed", "{plan:?}");
}

#[test]
fn a_removed_branch_is_a_join_that_would_wait_forever() {
    let v = process(FORK, 1);
    let w = process(
        &FORK.replace("parallel: [x, y]", "parallel: [x]").replace("  y: { user_task: Y, lane: a, next: j }\n", ""),
        2,
    );
    let (inst, _) = start(&v, 7, Vars::new(), None, None, now()).unwrap();
    let spec = spec();
    let m = Migration::new(&spec, &v, &w).unwrap();
    let (plan, _) = m.instance(&inst, &BTreeMap::new(), "admin", now());
    let codes: Vec<&str> = plan.problems.iter().map(|f| f.code.as_str()).collect();
    assert!(codes.contains(&"node-gone") && codes.contains(&"branch-gone"), "{plan:?}");
}

#[test]
fn a_wait_the_new_node_cannot_hold_is_refused() {
    let v = process(FORK, 1);
    let w = process(&FORK.replace("x: { user_task: X, lane: a, next: j }", "x: { timer: 1h, next: j }"), 2);
    let (inst, _) = start(&v, 7, Vars::new(), None, None, now()).unwrap();
    let spec = spec();
    let m = Migration::new(&spec, &v, &w).unwrap();
    let (plan, _) = m.instance(&inst, &BTreeMap::new(), "admin", now());
    assert_eq!(plan.problems[0].code, "wait-mismatch", "{plan:?}");
    assert!(matches!(inst.tokens[0].wait, Wait::Task { .. }));
}

#[test]
fn a_sensitive_value_is_masked_in_the_plan_and_the_history() {
    let v1 = "id: p\nlanes: { a: {} }\nvariables:\n  pin: { type: number, sensitive: true }\nstart: { next: t }\nnodes:\n  t: { user_task: T, lane: a, form: { pin: optional }, next: e }\n  e: { end: }\n";
    let v2 = v1.replace("type: number", "type: string");
    let (v, w) = (process(v1, 1), process(&v2, 2));
    let vars: Vars = [("pin".to_string(), serde_json::json!(4711))].into();
    let (inst, _) = start(&v, 7, vars, None, None, now()).unwrap();
    let mut spec = spec();
    spec.set.insert("pin".into(), "`${pin}`".into());
    let m = Migration::new(&spec, &v, &w).unwrap();
    let (plan, out) = m.instance(&inst, &BTreeMap::new(), "admin", now());
    let text = format!("{plan:?} {:?}", out.as_ref().map(|o| &o.transition.history));
    assert!(!text.contains("4711"), "{text}");
    assert_eq!(out.unwrap().instance.vars["pin"], serde_json::json!("4711"));
}
