//! A parallel multi-instance approval over HTTP: one task per approver, each in
//! its approver's inbox with the item it is for; two approvals of three end it
//! (the third task is withdrawn and refuses completion), the decisions in
//! approver order.

use crate::common::*;
use serde_json::{json, Value};

const APPROVAL: &str = r#"
id: three-approvers
lanes: { 承認者: { groups: [managers, accounting] } }
variables:
  承認者: { type: list, default: [tanaka, yamada, suzuki] }
  判断: { type: choice, options: [承認, 否認] }
  判断一覧: { type: list }
start: { next: 承認 }
nodes:
  承認:
    user_task: 稟議を承認する
    lane: 承認者
    assignee: approver
    form: { 判断: required }
    multi_instance:
      for_each: 承認者
      as: approver
      output: 判断
      into: 判断一覧
      complete_when: 'results.filter(|r| r == "承認").len() >= 2'
    next: 完了
  完了: { end: }
"#;

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_approvals_complete_a_parallel_approval() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("three-approvers.yaml", APPROVAL).unwrap();
    let inst = api.post(SATO, "/api/v1/instances", json!({ "process": "three-approvers" })).await.expect(201);
    let id = inst["id"].as_u64().unwrap();

    // Each approver finds exactly their own task, showing the item it is for.
    let mut task_of = std::collections::HashMap::new();
    for (token, user) in [(TANAKA, "tanaka"), (YAMADA, "yamada"), (SUZUKI, "suzuki")] {
        let inbox = items(&api.get(token, &format!("/api/v1/tasks?assignee={user}")).await.expect(200));
        let mine: Vec<&Value> = inbox.iter().filter(|t| t["instance"] == id).collect();
        assert_eq!(mine.len(), 1, "{user}: {inbox:?}");
        assert_eq!(mine[0]["assignee"], user);
        assert_eq!(mine[0]["item"], user, "the task shows the approver it is for");
        task_of.insert(user, mine[0]["id"].as_str().unwrap().to_string());
    }

    // A rejection first: not yet enough approvals, the instance runs on.
    let complete = |task: &str, decision: &str| {
        (format!("/api/v1/tasks/{task}/complete"), json!({ "variables": { "判断": decision } }))
    };
    let (path, body) = complete(&task_of["yamada"], "否認");
    api.post(YAMADA, &path, body).await.expect(200);
    let (path, body) = complete(&task_of["suzuki"], "承認");
    api.post(SUZUKI, &path, body).await.expect(200);
    let running = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    assert_eq!(running["status"], "running");

    // The second approval ends it: tanaka's task is withdrawn.
    let (path, body) = complete(&task_of["tanaka"], "承認");
    api.post(TANAKA, &path, body).await.expect(200);
    let done = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["variables"]["判断一覧"], json!(["承認", "否認", "承認"]), "outputs in approver order");

    // Forms are checked per item, and a withdrawn or finished task refuses completion.
    let again = api.post(TANAKA, &path, json!({ "variables": { "判断": "承認" } })).await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_end_withdraws_the_unfinished_tasks() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("three-approvers.yaml", APPROVAL).unwrap();
    let inst = api.post(SATO, "/api/v1/instances", json!({ "process": "three-approvers" })).await.expect(201);
    let id = inst["id"].as_u64().unwrap();
    let task = |token: &'static str| {
        let api = &api;
        async move {
            let user = token.trim_start_matches("demo-");
            let inbox = items(&api.get(token, &format!("/api/v1/tasks?assignee={user}")).await.expect(200));
            inbox.iter().find(|t| t["instance"] == id).unwrap()["id"].as_str().unwrap().to_string()
        }
    };
    let (t1, t2, t3) = (task(TANAKA).await, task(YAMADA).await, task(SUZUKI).await);
    for (token, t) in [(TANAKA, &t1), (YAMADA, &t2)] {
        api.post(token, &format!("/api/v1/tasks/{t}/complete"), json!({ "variables": { "判断": "承認" } }))
            .await
            .expect(200);
    }
    let withdrawn = api.get(ADMIN, &format!("/api/v1/tasks/{t3}")).await.expect(200);
    assert_eq!(withdrawn["status"], "cancelled");
    let inbox = items(&api.get(SUZUKI, "/api/v1/tasks?assignee=suzuki").await.expect(200));
    assert!(inbox.iter().all(|t| t["instance"] != id), "no task left in suzuki's inbox: {inbox:?}");
    let late =
        api.post(SUZUKI, &format!("/api/v1/tasks/{t3}/complete"), json!({ "variables": { "判断": "否認" } })).await;
    assert_eq!(late.status, 409);
    let done = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    assert_eq!(done["variables"]["判断一覧"], json!(["承認", "承認", null]));
    api.finish().await;
}
