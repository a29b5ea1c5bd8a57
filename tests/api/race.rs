//! Two people acting on one task at once: exactly one wins, the rest get 409, and
//! the instance moves on once.

use crate::common::*;
use serde_json::json;

const USERS: usize = 20;

async fn race(api: &Api, action: &str, task: &str) -> Vec<u16> {
    let mut handles = Vec::new();
    for i in 0..USERS {
        let (http, url) = (api.http.clone(), format!("{}/api/v1/tasks/{task}/{action}", api.base));
        let body = json!({ "variables": { "approved": true } });
        let complete = action == "complete";
        handles.push(tokio::spawn(async move {
            let mut req = http.post(url).bearer_auth(format!("token-u{i:02}"));
            if complete {
                req = req.json(&body);
            }
            let r = req.send().await.expect("answer");
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.expect("JSON body");
            if status == 409 {
                assert!(body["code"] == "task-not-open" || body["code"] == "task-claimed", "{body}");
            }
            status
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_completes_one_wins_nineteen_conflict() {
    let api = Api::start(many_users(USERS, &["staff"])).await;
    for _ in 0..3 {
        let inst = api.post("token-u00", "/api/v1/instances", json!({ "process": "bench-usertask" })).await.expect(201);
        let id = inst["id"].as_u64().unwrap();
        let task = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();
        let statuses = race(&api, "complete", &task).await;
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == 409).count(), USERS - 1, "{statuses:?}");
        let h = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
        let names: Vec<&str> = h.as_array().unwrap().iter().map(|x| x["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["started", "task_opened", "task_completed", "ended", "completed"], "advanced once");
        let done = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
        assert_eq!(done["status"], "completed");
    }
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_claims_one_wins_nineteen_conflict() {
    let api = Api::start(many_users(USERS, &["staff"])).await;
    let inst = api.post("token-u00", "/api/v1/instances", json!({ "process": "bench-usertask" })).await.expect(201);
    let id = inst["id"].as_u64().unwrap();
    let task = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();
    let statuses = race(&api, "claim", &task).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), USERS - 1, "{statuses:?}");
    let h = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    let claims: Vec<_> = h.as_array().unwrap().iter().filter(|x| x["event"] == "task_claimed").collect();
    assert_eq!(claims.len(), 1);
    let t = api.get(ADMIN, &format!("/api/v1/tasks/{task}")).await.expect(200);
    assert_eq!(t["assignee"], claims[0]["user"], "the task belongs to the one winner");
    api.finish().await;
}
