//! Messages, incidents and task errors over HTTP (issue #6 through the API).

use crate::common::*;
use serde_json::{json, Value};

const ORDER: &str = r#"
id: order
lanes:
  担当: { groups: [staff] }
variables:
  注文番号: { type: string, required: true }
  出荷日: { type: date }
  追跡番号: { type: string }
start: { next: 準備 }
nodes:
  準備:
    user_task: 出荷準備
    lane: 担当
    next: 出荷通知
  出荷通知:
    message: 出荷完了
    key: 注文番号
    next: 完了
  完了: { end: }
"#;

const INCIDENT: &str = r#"
id: incident-demo
variables:
  区分: { type: choice, options: [A, B] }
  結果: { type: string }
start: { next: 振分 }
nodes:
  振分:
    exclusive:
      - when: 区分 == "A"
        next: 作成
  作成:
    script: 'throw "帳票システム停止中";'
    next: 完了
  完了: { end: }
"#;

const CHECK: &str = r#"
id: document-check
lanes:
  経理: { groups: [accounting] }
variables:
  理由: { type: string }
start: { next: 書類確認 }
nodes:
  書類確認:
    user_task: 書類確認
    lane: 経理
    next: 完了
    boundary:
      - error: 書類不備
        set: { 理由: error.message }
        next: 差戻し
  差戻し: { end: }
  完了: { end: }
"#;

async fn start(api: &Api, token: &str, process: &str, vars: Value) -> Value {
    api.post(token, "/api/v1/instances", json!({ "process": process, "variables": vars })).await.expect(201)
}

async fn complete(api: &Api, token: &str, task: &str) {
    api.post(token, &format!("/api/v1/tasks/{task}/complete"), json!({})).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_delivered_kept_until_a_token_waits_or_refused_with_ttl_zero() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("order.yaml", ORDER).unwrap();
    let payload = json!({ "出荷日": "2026-11-24", "追跡番号": "1234-5678", "余計": "x" });

    // A token waits: delivered at once (200), sent by a user who is no administrator.
    let a1 = start(&api, SATO, "order", json!({ "注文番号": "A-1" })).await;
    let a1_id = a1["id"].as_u64().unwrap();
    complete(&api, SATO, a1["open_tasks"][0]["id"].as_str().unwrap()).await;
    let msg = json!({ "name": "出荷完了", "key": "A-1", "payload": payload, "ttl": 0 });
    let r = api.post(KATO, "/api/v1/messages", msg).await.expect(200);
    assert_eq!(r, json!({ "result": "delivered", "instance": a1_id, "node": "出荷通知" }));
    let inst = api.get(ADMIN, &format!("/api/v1/instances/{a1_id}")).await.expect(200);
    assert_eq!(inst["status"], "completed", "{inst}");
    assert_eq!(inst["variables"]["追跡番号"], "1234-5678");
    assert!(inst["variables"].get("余計").is_none(), "undeclared payload fields are not copied: {inst}");

    // Nobody waits yet and ttl 0: refused, nothing kept.
    let a2 = start(&api, SATO, "order", json!({ "注文番号": "A-2" })).await;
    let a2_id = a2["id"].as_u64().unwrap();
    let zero = json!({ "name": "出荷完了", "key": "A-2", "payload": payload, "ttl": "0s" });
    api.post(KATO, "/api/v1/messages", zero).await.error(404, "no-receiver");

    // Kept for 7 days (202), then delivered when the token gets there.
    let keep = json!({ "name": "出荷完了", "key": "A-2", "payload": payload, "ttl": "7d" });
    let r = api.post(KATO, "/api/v1/messages", keep).await.expect(202);
    assert_eq!(r["result"], "buffered", "{r}");
    let expires: chrono::DateTime<chrono::Utc> = r["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours();
    assert!((167..=168).contains(&days), "kept about 7 days: {r}");
    assert_eq!(api.get(ADMIN, &format!("/api/v1/instances/{a2_id}")).await.expect(200)["status"], "running");
    complete(&api, SATO, a2["open_tasks"][0]["id"].as_str().unwrap()).await;
    let inst = api.wait_for(a2_id, |v| v["status"] == "completed").await;
    assert_eq!(inst["variables"]["出荷日"], "2026-11-24");

    // Seconds work as a ttl too; a bad ttl, an empty name, no token are refused.
    let secs = json!({ "name": "出荷完了", "key": "A-9", "ttl": 3600 });
    assert_eq!(api.post(KATO, "/api/v1/messages", secs).await.expect(202)["result"], "buffered");
    let bad = json!({ "name": "出荷完了", "key": "A-9", "ttl": "soon" });
    let e = api.post(KATO, "/api/v1/messages", bad).await.error(422, "bad-ttl");
    assert!(e["message"].as_str().unwrap().contains("7d"), "says how to write it: {e}");
    api.post(KATO, "/api/v1/messages", json!({ "name": " " })).await.error(422, "required");
    api.post(KATO, "/api/v1/messages", json!({ "name": "x", "extra": 1 })).await.error(400, "invalid-body");
    api.call(reqwest::Method::POST, None, "/api/v1/messages", Some(json!({ "name": "x" })))
        .await
        .error(401, "unauthorized");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_are_listed_retried_and_resolved_by_administrators() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("incident.yaml", INCIDENT).unwrap();
    let inst = start(&api, ADMIN, "incident-demo", json!({ "区分": "B" })).await;
    let id = inst["id"].as_u64().unwrap();
    assert_eq!(inst["status"], "incident", "no branch matches: {inst}");
    // The instance shows its incident.
    let shown = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    assert_eq!(shown["incidents"][0]["node"], "振分", "{shown}");

    // Only administrators list and fix incidents.
    api.get(SATO, "/api/v1/incidents").await.error(403, "forbidden");
    let list = api.get(ADMIN, "/api/v1/incidents?process=incident-demo").await.expect(200);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0]["instance"].as_u64(), list[0]["node"].as_str()), (Some(id), Some("振分")));
    let first = list[0]["incident"].as_u64().unwrap();
    assert!(api.get(ADMIN, "/api/v1/incidents?node=作成").await.expect(200).as_array().unwrap().is_empty());
    assert!(api.get(ADMIN, "/api/v1/incidents?process=order").await.expect(200).as_array().unwrap().is_empty());
    api.get(ADMIN, "/api/v1/incidents?limit=0").await.error(400, "bad-query");

    let retry = format!("/api/v1/instances/{id}/incidents/{first}/retry");
    let resolve = format!("/api/v1/instances/{id}/incidents/{first}/resolve");
    api.post(SATO, &retry, json!({ "vars": { "区分": "A" } })).await.error(403, "forbidden");
    api.post(SATO, &resolve, json!({})).await.error(403, "forbidden");
    // A gateway cannot be skipped; a wrong type is refused with what it expects; unknown ids are 404.
    api.post(ADMIN, &resolve, json!({})).await.error(422, "cannot-skip");
    let e = api.post(ADMIN, &retry, json!({ "vars": { "区分": 5 } })).await.error(422, "invalid-data");
    assert_eq!(e["details"]["errors"][0]["field"], "区分", "{e}");
    assert_eq!(e["details"]["errors"][0]["expected"]["options"], json!(["A", "B"]), "{e}");
    api.post(ADMIN, &format!("/api/v1/instances/{id}/incidents/99/retry"), json!({}))
        .await
        .error(404, "unknown-incident");
    api.post(ADMIN, "/api/v1/instances/9999/incidents/1/resolve", json!({})).await.error(404, "unknown-instance");
    api.post(ADMIN, &format!("/api/v1/instances/{id}/incidents/x/retry"), json!({})).await.error(400, "bad-path");
    let still = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    assert_eq!(still["variables"]["区分"], "B", "nothing saved by the refused calls");

    // Retry with the corrected choice: the gateway passes, the script step fails next.
    let after = api.post(ADMIN, &retry, json!({ "vars": { "区分": "A" } })).await.expect(200);
    assert_eq!(after["status"], "incident", "{after}");
    let incidents = after["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{after}");
    assert_eq!(incidents[0]["node"], "作成");
    assert!(incidents[0]["message"].as_str().unwrap().contains("帳票システム停止中"), "{after}");
    let second = incidents[0]["id"].as_u64().unwrap();

    // The operator made the document by hand: resolve with its result.
    let resolve = format!("/api/v1/instances/{id}/incidents/{second}/resolve");
    let done = api.post(ADMIN, &resolve, json!({ "vars": { "結果": "手作業で作成" } })).await.expect(200);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["variables"]["結果"], "手作業で作成");
    assert!(api.get(ADMIN, "/api/v1/incidents").await.expect(200).as_array().unwrap().is_empty());
    api.post(ADMIN, &resolve, json!({})).await.error(409, "instance-finished");
    let history = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    let by_admin: Vec<&Value> = history.as_array().unwrap().iter().filter(|h| h["user"] == "admin").collect();
    assert!(by_admin.len() >= 3, "start, retry and resolve are recorded with who: {history}");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_ends_a_task_with_a_business_error_that_a_boundary_catches() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("check.yaml", CHECK).unwrap();
    let inst = start(&api, ADMIN, "document-check", json!({})).await;
    let id = inst["id"].as_u64().unwrap();
    let task = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/tasks/{task}/error");

    // Only who may work the task; a code nothing catches leaves it open.
    api.post(SATO, &path, json!({ "code": "書類不備" })).await.error(404, "unknown-task");
    let e = api.post(SUZUKI, &path, json!({ "code": "不明なコード" })).await.error(422, "uncaught-error");
    assert_eq!(e["details"]["error_code"], "不明なコード", "{e}");
    api.post(SUZUKI, &path, json!({ "code": "" })).await.error(422, "required");
    assert_eq!(api.get(SUZUKI, &format!("/api/v1/tasks/{task}")).await.expect(200)["status"], "open");

    let r = api.post(SUZUKI, &path, json!({ "code": "書類不備", "message": "印鑑がありません" })).await.expect(200);
    assert_eq!(r["instance"]["status"], "completed", "{r}");
    let inst = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    assert_eq!(inst["variables"]["理由"], "印鑑がありません", "the boundary's set ran: {inst}");
    let history = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    assert!(
        history.as_array().unwrap().iter().any(|h| h["user"] == "suzuki" && h["node"] == "書類確認"),
        "the error is in the history with who: {history}"
    );
    api.post(SUZUKI, &path, json!({ "code": "書類不備" })).await.error(409, "task-not-open");
    api.finish().await;
}
