//! Process configuration over HTTP: settings and a paused timer start changed by
//! administrators only, start rules answered as 422 with every reason, and
//! `start: groups` limiting who may start by hand.

use crate::common::*;
use serde_json::json;

const FORM: &str = r#"
id: form-rules
lanes: { 上長: { groups: [managers] } }
settings:
  cloudsign: { type: choice, options: ["off", optional, required], default: optional, label: CloudSign連携 }
variables:
  件名: { type: string, required: true }
  送付先: { type: list }
start:
  groups: [staff]
  rules:
    - when: 'cloudsign == "required" && (送付先 == () || 送付先.len() == 0)'
      field: 送付先
      message: CloudSign連携が必須のため、送付先を1人以上入力してください
  next: 承認
nodes:
  承認: { user_task: 承認する, lane: 上長, next: done }
  done: { end: }
"#;

#[tokio::test]
async fn administrators_change_settings_and_rules_follow_them() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("form.yaml", FORM).unwrap();
    let start = |vars: serde_json::Value| json!({ "process": "form-rules", "variables": vars });
    api.post(SATO, "/api/v1/instances", start(json!({ "件名": "a" }))).await.expect(201);

    let cfg = api.get(SATO, "/api/v1/processes/form-rules/config").await.expect(200);
    assert_eq!(cfg["settings"][0]["name"], "cloudsign");
    assert_eq!(cfg["settings"][0]["value"], "optional");
    assert_eq!(cfg["has_timer_start"], false);

    let put = |body: serde_json::Value, token: &'static str| {
        let api = &api;
        async move { api.call(reqwest::Method::PUT, Some(token), "/api/v1/processes/form-rules/config", Some(body)).await }
    };
    put(json!({ "settings": { "cloudsign": "required" } }), SATO).await.error(403, "forbidden");
    let bad = put(json!({ "settings": { "cloudsign": "maybe", "nosuch": 1 } }), ADMIN).await.error(422, "invalid-data");
    assert_eq!(bad["details"]["errors"].as_array().unwrap().len(), 2, "{bad}");
    let cfg = put(json!({ "settings": { "cloudsign": "required" } }), ADMIN).await.expect(200);
    assert_eq!(cfg["settings"][0]["value"], "required");
    assert_eq!(cfg["changed_by"], "admin");

    let err = api.post(SATO, "/api/v1/instances", start(json!({ "件名": "b" }))).await.error(422, "invalid-data");
    assert_eq!(err["details"]["errors"][0]["field"], "送付先", "{err}");
    assert!(err["message"].as_str().unwrap().contains("送付先を1人以上"), "{err}");
    api.post(SATO, "/api/v1/instances", start(json!({ "件名": "b", "送付先": ["鈴木"] }))).await.expect(201);
    api.finish().await;
}

#[tokio::test]
async fn only_the_start_groups_may_start_by_hand() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("form.yaml", FORM).unwrap();
    let body = json!({ "process": "form-rules", "variables": { "件名": "a" } });
    api.post(TANAKA, "/api/v1/instances", body.clone()).await.error(403, "forbidden");
    api.post(SATO, "/api/v1/instances", body.clone()).await.expect(201);
    api.post(ADMIN, "/api/v1/instances", body).await.expect(201);
    api.finish().await;
}
