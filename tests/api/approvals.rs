//! `processes/ringi.yaml` over HTTP: the 部長合議 (consensus) gives each head their
//! own task with an empty decision field; the 経理回覧 (circulation) appears in
//! accounting's inbox as a read-only task after the instance completed, refuses
//! data, and its acknowledgement is in the history with who and when. Who decides
//! comes from the org chart the server holds.

use crate::common::*;
use serde_json::{json, Value};

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().unwrap().clone()
}

async fn my_task(api: &Api, token: &str, instance: u64) -> Value {
    let user = token.trim_start_matches("demo-");
    let inbox = items(&api.get(token, &format!("/api/v1/tasks?assignee={user}")).await.expect(200));
    let mine: Vec<&Value> = inbox.iter().filter(|t| t["instance"] == instance).collect();
    assert_eq!(mine.len(), 1, "{user}: {inbox:?}");
    mine[0].clone()
}

/// A server holding the org chart `org` (relative to the workspace root) with
/// `processes/ringi.yaml` deployed.
async fn ringi_api(org: &str) -> Api {
    let api = Api::start(sample_users()).await;
    api.engine.set_org(nagare::server::org::load_file(&root().join(org), &sample_users()).unwrap());
    let source = std::fs::read_to_string(root().join("processes/ringi.yaml")).unwrap();
    api.engine.deploy("ringi.yaml", &source).unwrap();
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringi_consensus_then_circulation_over_http() {
    // sato's manager is tanaka, who also heads 管理部; yamada heads 営業部.
    let api = ringi_api("engine/tests/traces/ringi-heads-agree/org.yaml").await;
    let start = json!({ "process": "ringi", "variables": { "件名": "基幹システム更改", "金額": 12_000_000 } });
    let id = api.post(SATO, "/api/v1/instances", start).await.expect(201)["id"].as_u64().unwrap();

    let manager = my_task(&api, TANAKA, id).await["id"].as_str().unwrap().to_string();
    api.post(TANAKA, &format!("/api/v1/tasks/{manager}/complete"), json!({})).await.expect(200);

    // Each head has their own task; the decision field starts empty for each.
    let (yamada, tanaka) = (my_task(&api, YAMADA, id).await, my_task(&api, TANAKA, id).await);
    assert_eq!(yamada["item"], "yamada");
    let detail = api.get(YAMADA, &format!("/api/v1/tasks/{}", yamada["id"].as_str().unwrap())).await.expect(200);
    let decision = detail["form"].as_array().unwrap().iter().find(|f| f["name"] == "判断").unwrap().clone();
    assert_eq!((decision["mode"].as_str(), &decision["value"]), (Some("required"), &Value::Null), "{detail}");
    for (token, task) in [(YAMADA, &yamada), (TANAKA, &tanaka)] {
        let path = format!("/api/v1/tasks/{}/complete", task["id"].as_str().unwrap());
        api.post(token, &path, json!({ "variables": { "判断": "承認" } })).await.expect(200);
    }

    // The flow did not wait for accounting: the instance is complete, the read task open.
    let done = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["variables"]["結果"], "承認");
    let read = my_task(&api, SUZUKI, id).await;
    assert_eq!((read["read_only"].as_bool(), read["status"].as_str()), (Some(true), Some("open")), "{read}");
    let rid = read["id"].as_str().unwrap().to_string();
    let detail = api.get(SUZUKI, &format!("/api/v1/tasks/{rid}")).await.expect(200);
    assert!(detail["form"].as_array().unwrap().iter().all(|f| f["mode"] == "readonly"), "{detail}");
    assert_eq!(detail["form"][1]["value"], 12_000_000);

    // Only the reader acknowledges (others do not even see the task), with no data.
    let path = format!("/api/v1/tasks/{rid}/complete");
    api.post(TANAKA, &path, json!({})).await.expect(404);
    api.post(SUZUKI, &path, json!({ "variables": { "件名": "x" } })).await.expect(422);
    api.post(SUZUKI, &path, json!({})).await.expect(200);
    let closed = api.get(SUZUKI, &format!("/api/v1/tasks/{rid}")).await.expect(200);
    assert_eq!((closed["status"].as_str(), closed["completed_by"].as_str()), (Some("completed"), Some("suzuki")));
    api.post(SUZUKI, &path, json!({})).await.expect(409);

    let history = api.get(SUZUKI, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    let entries = history.as_array().cloned().unwrap_or_else(|| items(&history));
    let decided = entries.iter().find(|h| h["event"] == "consensus_decided").expect("consensus in the history");
    assert_eq!(decided["details"]["verdict"], "approved");
    let read = entries.iter().find(|h| h["event"] == "task_read").expect("the read is in the history");
    assert_eq!((read["user"].as_str(), read["details"]["task"].as_str()), (Some("suzuki"), Some(rid.as_str())));
    api.finish().await;
}

/// With the demo org (config/org.yaml) yamada is both 営業部 and 管理部 部長 (兼務):
/// the 合議 asks them once, and the 回覧 goes to everyone in 経理部 (suzuki).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringi_with_the_demo_org_asks_a_head_with_two_posts_once() {
    let api = ringi_api("config/org.yaml").await;
    let start = json!({ "process": "ringi", "variables": { "件名": "基幹システム更改", "金額": 12_000_000 } });
    let id = api.post(SATO, "/api/v1/instances", start).await.expect(201)["id"].as_u64().unwrap();
    let manager = my_task(&api, TANAKA, id).await["id"].as_str().unwrap().to_string();
    api.post(TANAKA, &format!("/api/v1/tasks/{manager}/complete"), json!({})).await.expect(200);

    let head = my_task(&api, YAMADA, id).await;
    let inbox = items(&api.get(TANAKA, "/api/v1/tasks?assignee=tanaka").await.expect(200));
    assert!(inbox.iter().all(|t| t["instance"] != id), "tanaka is no 部長: {inbox:?}");
    let path = format!("/api/v1/tasks/{}/complete", head["id"].as_str().unwrap());
    api.post(YAMADA, &path, json!({ "variables": { "判断": "承認" } })).await.expect(200);

    let done = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    assert_eq!(
        (done["status"].as_str(), done["variables"]["合議記録"].as_array().map(Vec::len)),
        (Some("completed"), Some(1))
    );
    assert_eq!(my_task(&api, SUZUKI, id).await["read_only"], true);
    api.finish().await;
}
