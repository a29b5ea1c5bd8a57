//! Instance migration over HTTP: administrators only; a plan, then its apply, twice.

use crate::common::*;
use serde_json::json;

const V1: &str = r#"
id: mig
lanes: { staff: { groups: [staff] } }
variables:
  n: { type: number }
start: { next: check }
nodes:
  check: { user_task: Check, lane: staff, next: done }
  done: { end: }
"#;

const V2: &str = r#"
id: mig
lanes: { staff: { groups: [staff] } }
variables:
  n: { type: string }
start: { next: review }
nodes:
  review: { user_task: Review, lane: staff, next: done }
  done: { end: }
"#;

#[tokio::test]
async fn administrators_plan_and_apply_a_migration() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("mig.yaml", V1).unwrap();
    let id =
        api.post(ADMIN, "/api/v1/instances", json!({ "process": "mig", "variables": { "n": 5 } })).await.expect(201)
            ["id"]
            .as_u64()
            .unwrap();
    api.engine.deploy("mig.yaml", V2).unwrap();
    let req = json!({ "process": "mig", "from": 1, "to": 2, "map": { "check": "review" }, "set": { "n": "`${n}`" } });
    api.post(SATO, "/api/v1/migrations/plan", req.clone()).await.error(403, "forbidden");
    let bad = json!({ "process": "mig", "from": 1, "to": 2, "map": { "check": "nowhere" } });
    let err = api.post(ADMIN, "/api/v1/migrations/plan", bad).await.error(422, "invalid-data");
    assert_eq!(err["details"]["errors"][0]["field"], "map.check", "{err}");
    let plan = api.post(ADMIN, "/api/v1/migrations/plan", req).await.expect(200);
    assert_eq!(plan["summary"]["valid"], 1, "{plan}");
    assert_eq!(plan["instances"][0]["instance"], id);

    api.post(SATO, "/api/v1/migrations/apply", plan.clone()).await.error(403, "forbidden");
    api.post(ADMIN, "/api/v1/migrations/apply", json!({ "nope": 1 })).await.error(422, "invalid-plan");
    let report = api.post(ADMIN, "/api/v1/migrations/apply", plan.clone()).await.expect(200);
    assert_eq!(report["counts"]["migrated"], 1, "{report}");
    let again = api.post(ADMIN, "/api/v1/migrations/apply", plan).await.expect(200);
    assert_eq!(again["counts"]["already_migrated"], 1, "{again}");

    let inst = api.engine.instance(id).unwrap();
    assert_eq!((inst.version, inst.vars["n"].clone()), (2, json!("5")));
    assert_eq!(inst.tokens[0].node, "review");
    api.finish().await;
}
