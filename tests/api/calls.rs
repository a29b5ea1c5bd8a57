//! Call activities over HTTP: the parent's instance view shows the child it waits
//! for (id, status, business key, open incidents), the child's view its parent,
//! and both histories say so.

use crate::common::*;
use serde_json::json;

const CHILD: &str = r#"
id: api-child
variables:
  amount: { type: number, required: true }
  ratio: { type: number }
start: { next: divide }
nodes:
  divide: { script: 'ratio = 1 / (amount - amount);', next: done }
  done: { end: }
"#;

const PARENT: &str = r#"
id: api-parent
variables:
  total: { type: number, required: true }
  ratio: { type: number }
start: { next: approve }
nodes:
  approve:
    call: api-child
    in: { amount: total }
    out: { ratio: ratio }
    next: done
  done: { end: }
"#;

#[tokio::test]
async fn instance_views_show_the_parent_and_the_child_with_its_incident() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("child.yaml", CHILD).unwrap();
    api.engine.deploy("parent.yaml", PARENT).unwrap();
    let body = json!({ "process": "api-parent", "variables": { "total": 3 }, "business_key": "ORD-7" });
    let parent = api.post(ADMIN, "/api/v1/instances", body).await.expect(201);
    let id = parent["id"].as_u64().unwrap();

    // The executor starts the child; the child's script fails: an incident there.
    let view = api.wait_for(id, |v| v["children"][0]["status"] == "incident").await;
    assert_eq!(view["status"], "running", "the parent waits; the incident is the child's: {view}");
    let child = &view["children"][0];
    assert_eq!(child["process"], "api-child");
    assert_eq!(child["business_key"], "ORD-7");
    assert_eq!(child["node"], "approve");
    assert_eq!(child["incidents"], 1);
    assert_eq!(view["waiting"][0]["wait"]["on"], "call");

    let child_id = child["id"].as_u64().unwrap();
    let cview = api.get(ADMIN, &format!("/api/v1/instances/{child_id}")).await.expect(200);
    assert_eq!(cview["parent"]["id"], id);
    assert_eq!(cview["parent"]["process"], "api-parent");
    assert_eq!(cview["parent"]["node"], "approve");
    assert_eq!(cview["incidents"][0]["node"], "divide");
    assert!(cview.get("children").is_none(), "{cview}");

    let history = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    let started = history.as_array().unwrap().iter().find(|h| h["event"] == "call_started").expect("call_started");
    assert_eq!(started["details"]["child"], child_id);
    let chistory = api.get(ADMIN, &format!("/api/v1/instances/{child_id}/history")).await.expect(200);
    assert_eq!(chistory[0]["details"]["parent"], id, "{chistory}");
    api.finish().await;
}
