//! The rules the API enforces (issue #4, section 4), one test per rule.

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_but_health_works_without_a_valid_token() {
    let api = Api::start(sample_users()).await;
    let inst = api.start_expense(SATO, 1_000).await;
    let task = inst["open_tasks"][0]["id"].as_str().unwrap().to_string();
    let id = inst["id"].as_u64().unwrap();
    let routes: Vec<(Method, String)> = vec![
        (Method::GET, "/api/v1/processes".into()),
        (Method::POST, "/api/v1/processes".into()),
        (Method::GET, "/api/v1/processes/expense-approval".into()),
        (Method::GET, "/api/v1/instances".into()),
        (Method::POST, "/api/v1/instances".into()),
        (Method::GET, format!("/api/v1/instances/{id}")),
        (Method::GET, format!("/api/v1/instances/{id}/history")),
        (Method::POST, format!("/api/v1/instances/{id}/cancel")),
        (Method::GET, "/api/v1/tasks".into()),
        (Method::GET, format!("/api/v1/tasks/{task}")),
        (Method::POST, format!("/api/v1/tasks/{task}/claim")),
        (Method::POST, format!("/api/v1/tasks/{task}/complete")),
        (Method::POST, format!("/api/v1/tasks/{task}/error")),
        (Method::POST, "/api/v1/messages".into()),
        (Method::GET, "/api/v1/incidents".into()),
        (Method::POST, format!("/api/v1/instances/{id}/incidents/1/retry")),
        (Method::POST, format!("/api/v1/instances/{id}/incidents/1/resolve")),
        (Method::POST, "/api/v1/jobs/activate".into()),
        (Method::POST, "/api/v1/jobs/1-1-1/complete".into()),
        (Method::POST, "/api/v1/jobs/1-1-1/fail".into()),
        (Method::GET, "/api/v1/openapi.json".into()),
        (Method::GET, "/metrics".into()),
        (Method::GET, "/api/v1/no-such-thing".into()),
        (Method::GET, "/no-such-page".into()),
    ];
    for (m, path) in &routes {
        for token in [None, Some("wrong-token"), Some("")] {
            let r = api.call(m.clone(), token, path, Some(json!({}))).await;
            r.error(401, "unauthorized");
        }
        // Not a bearer scheme.
        let r = api
            .http
            .request(m.clone(), format!("{}{path}", api.base))
            .header("authorization", "Basic ZGVtbzpkZW1v")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{m} {path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    // Nothing was changed by all that.
    assert_eq!(api.engine.instance(id).unwrap().history_len, 2);
    for path in ["/health", "/ready"] {
        let r = api.call(Method::GET, None, path, None).await.expect(200);
        assert!(r["status"].is_string());
    }
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_outside_your_groups_are_404_like_unknown_ones_and_admin_routes_are_403() {
    let api = Api::start(sample_users()).await;
    let inst = api.start_expense(SATO, 1_000).await;
    let id = inst["id"].as_u64().unwrap();
    let apply = api.task_at(id, "申請").await;
    api.post(SATO, &format!("/api/v1/tasks/{apply}/complete"), json!({})).await.expect(200);
    let approve = api.task_at(id, "上長承認").await;

    // suzuki (accounting) and sato (staff) are not managers.
    for token in [SUZUKI, KATO] {
        let hidden = api.get(token, &format!("/api/v1/tasks/{approve}")).await.error(404, "unknown-task");
        let unknown = api.get(token, "/api/v1/tasks/999-9").await.error(404, "unknown-task");
        assert_eq!(
            hidden["message"].as_str().unwrap().replace(&approve, "X"),
            unknown["message"].as_str().unwrap().replace("999-9", "X"),
            "a hidden task and a missing one look the same"
        );
        for action in ["claim", "unclaim", "complete"] {
            api.post(token, &format!("/api/v1/tasks/{approve}/{action}"), json!({})).await.error(404, "unknown-task");
        }
        api.post(token, &format!("/api/v1/tasks/{approve}/send-back"), json!({ "comment": "x" }))
            .await
            .error(404, "unknown-task");
        let inbox = api.get(token, "/api/v1/tasks").await.expect(200);
        assert!(inbox["items"].as_array().unwrap().iter().all(|t| t["id"] != approve.as_str()), "never listed");
        api.get(token, "/api/v1/tasks?group=managers").await.error(403, "forbidden");
    }
    // sato completed 申請: she still sees that task, and her instance.
    let done = api.get(SATO, &format!("/api/v1/tasks/{apply}")).await.expect(200);
    assert_eq!(done["status"], "completed");
    api.get(SATO, &format!("/api/v1/instances/{id}")).await.expect(200);
    // tanaka may see the instance: its open task is in his inbox.
    api.get(TANAKA, &format!("/api/v1/instances/{id}")).await.expect(200);
    // kato (staff, not involved) may not.
    api.get(KATO, &format!("/api/v1/instances/{id}")).await.error(404, "unknown-instance");

    // Admin-only routes: 403 for everyone else, whether or not the target exists.
    let yaml = std::fs::read_to_string(root().join("processes/bench-usertask.yaml")).unwrap();
    api.post(TANAKA, "/api/v1/processes", json!({ "source": yaml })).await.error(403, "forbidden");
    api.post(SATO, &format!("/api/v1/instances/{id}/cancel"), json!({ "reason": "x" })).await.error(403, "forbidden");
    api.post(SATO, "/api/v1/instances/424242/cancel", json!({ "reason": "x" })).await.error(403, "forbidden");
    api.post(TANAKA, &format!("/api/v1/tasks/{approve}/assign"), json!({ "user": "tanaka" }))
        .await
        .error(403, "forbidden");
    // Admin sees and deploys.
    api.get(ADMIN, &format!("/api/v1/tasks/{approve}")).await.expect(200);
    let d = api
        .post(ADMIN, "/api/v1/processes", json!({ "source": yaml, "file": "bench-usertask.yaml" }))
        .await
        .expect(200);
    assert_eq!(d["created"], false, "same text: unchanged");
    let changed = yaml.replace("Approve", "Approve it");
    let d = api.post(ADMIN, "/api/v1/processes", json!({ "source": changed })).await.expect(201);
    assert_eq!(d["version"], 2);
    let p = api.get(SATO, "/api/v1/processes/bench-usertask?version=1").await.expect(200);
    assert_eq!(p["versions"].as_array().unwrap().len(), 2);
    assert!(p["source"].as_str().unwrap().contains("user_task: Approve\n"));
    assert_eq!(p["lanes"][0]["groups"], json!(["staff"]));
    api.get(SATO, "/api/v1/processes/bench-usertask?version=9").await.error(404, "unknown-version");
    api.get(SATO, "/api/v1/processes/nope").await.error(404, "unknown-process");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_deploys_list_every_error_with_line_and_column() {
    let api = Api::start(sample_users()).await;
    let broken = "id: broken\nstart: { next: nowhere }\nnodes:\n  done: { end: }\n  x: { user_task: X, lane: nolane, next: done }\n";
    let e = api
        .post(ADMIN, "/api/v1/processes", json!({ "source": broken, "file": "broken.yaml" }))
        .await
        .error(422, "invalid-process");
    let diags = e["details"]["diagnostics"].as_array().unwrap();
    assert!(diags.len() >= 2, "every error, not just the first: {e}");
    for d in diags {
        assert!(d["line"].as_u64().unwrap() >= 1 && d["col"].as_u64().unwrap() >= 1, "{d}");
        assert_eq!(d["file"], "broken.yaml");
        assert!(d["code"].is_string() && d["message"].is_string());
    }
    assert!(diags.iter().any(|d| d["line"] == 2), "the unknown `nowhere` on line 2: {e}");
    let list = api.get(ADMIN, "/api/v1/processes").await.expect(200);
    assert!(list.as_array().unwrap().iter().all(|p| p["id"] != "broken"), "nothing deployed");
    api.finish().await;
}

/// Every variable of the instance, and its history length: to prove nothing changed.
async fn snapshot(api: &Api, id: u64) -> (Value, usize) {
    let i = api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200);
    let h = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    (i["variables"].clone(), h.as_array().unwrap().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_errors_come_back_all_at_once_and_nothing_is_written() {
    let api = Api::start(sample_users()).await;
    let inst = api.start_expense(SATO, 1_000).await;
    let id = inst["id"].as_u64().unwrap();
    let task = api.task_at(id, "申請").await;
    let before = snapshot(&api, id).await;
    let bad = json!({ "variables": {
        "金額": "千円",                 // not a number
        "費目": "飛行機",               // not an option
        "件名": "あ".repeat(101),       // longer than max_length 100
        "利用日": "2026/11/20",         // not a date
        "上長コメント": "自分で承認",    // readonly on this form
        "承認日時": "2026-11-20T00:00:00Z", // not on this form
        "件名X": 1                       // not a field at all
    }});
    let e = api.post(SATO, &format!("/api/v1/tasks/{task}/complete"), bad).await.error(422, "invalid-data");
    let errors = e["details"]["errors"].as_array().unwrap();
    let by_field =
        |f: &str| errors.iter().find(|x| x["field"] == f).unwrap_or_else(|| panic!("no error for {f}: {e}")).clone();
    assert_eq!(errors.len(), 7, "{e}");
    assert_eq!(by_field("金額")["expected"]["type"], "number");
    assert!(by_field("金額")["problem"].as_str().unwrap().contains("expected a number"));
    assert_eq!(by_field("費目")["expected"]["options"][0], "交通費");
    assert!(by_field("件名")["problem"].as_str().unwrap().contains("too long: 101 characters, at most 100"));
    assert_eq!(by_field("件名")["expected"]["max_length"], 100);
    assert_eq!(by_field("利用日")["expected"]["type"], "date");
    assert!(by_field("上長コメント")["problem"].as_str().unwrap().contains("read-only"));
    assert!(by_field("承認日時")["problem"].as_str().unwrap().contains("not a field of this form"));
    assert_eq!(snapshot(&api, id).await, before, "nothing written");
    assert_eq!(api.get(SATO, &format!("/api/v1/tasks/{task}")).await.expect(200)["status"], "open");

    // Required fields left blank are errors too (here: on the accounting check).
    api.post(SATO, &format!("/api/v1/tasks/{task}/complete"), json!({ "variables": { "件名": "" } }))
        .await
        .error(422, "invalid-data");

    // Starting: missing required variables and wrong types, all listed.
    let e = api
        .post(SATO, "/api/v1/instances", json!({ "process": "expense-approval", "variables": { "金額": "x" } }))
        .await
        .error(422, "invalid-data");
    let fields: Vec<&str> =
        e["details"]["errors"].as_array().unwrap().iter().map(|x| x["field"].as_str().unwrap()).collect();
    for f in ["金額", "件名", "費目", "利用日"] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    api.post(SATO, "/api/v1/instances", json!({ "process": "no-such-process" })).await.error(404, "unknown-process");
    let listed = api.get(ADMIN, "/api/v1/instances").await.expect(200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "refused starts created nothing");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_unknown_and_malformed_requests() {
    let api = Api::start(sample_users()).await;
    let inst = api.start_expense(SATO, 1_000).await;
    let id = inst["id"].as_u64().unwrap();
    let task = api.task_at(id, "申請").await;

    // Malformed JSON: 400 with the parse error and where it is.
    let r = api
        .post_raw(
            SATO,
            &format!("/api/v1/tasks/{task}/complete"),
            "application/json",
            b"{\"variables\": {\n  \"x\": }".to_vec(),
        )
        .await;
    let e = r.error(400, "malformed-json");
    assert_eq!(e["details"]["line"], 2, "{e}");
    assert!(e["details"]["column"].as_u64().is_some());
    assert!(e["message"].as_str().unwrap().contains("line 2"), "{e}");
    // Valid JSON of the wrong shape, and a misspelt key.
    api.post(SATO, &format!("/api/v1/tasks/{task}/complete"), json!({ "variables": 5 }))
        .await
        .error(400, "invalid-body");
    let e = api
        .post(SATO, &format!("/api/v1/tasks/{task}/complete"), json!({ "varaibles": {} }))
        .await
        .error(400, "invalid-body");
    assert!(e["message"].as_str().unwrap().contains("varaibles"), "{e}");
    api.post_raw(SATO, "/api/v1/instances", "application/json", b"{\"process\": ".to_vec())
        .await
        .error(400, "malformed-json");
    // Not JSON at all.
    api.post_raw(SATO, &format!("/api/v1/tasks/{task}/complete"), "text/plain", b"hello".to_vec())
        .await
        .error(415, "unsupported-media-type");
    // Bad query and path parameters.
    api.get(SATO, "/api/v1/tasks?limit=0").await.error(400, "bad-query");
    api.get(SATO, "/api/v1/tasks?limit=many").await.error(400, "bad-query");
    api.get(SATO, "/api/v1/tasks?after=garbage").await.error(400, "bad-query");
    api.get(SATO, "/api/v1/tasks?due_before=tomorrow").await.error(400, "bad-query");
    api.get(SATO, "/api/v1/instances?status=done").await.error(400, "bad-query");
    api.get(SATO, "/api/v1/tasks?colour=red").await.error(400, "bad-query");
    api.get(SATO, "/api/v1/instances/abc").await.error(400, "bad-path");
    // Unknown ids: 404.
    api.get(SATO, "/api/v1/tasks/1-999").await.error(404, "unknown-task");
    api.post(SATO, "/api/v1/tasks/nope/complete", json!({})).await.error(404, "unknown-task");
    api.get(ADMIN, "/api/v1/instances/77").await.error(404, "unknown-instance");
    // Unknown route and method: JSON too.
    api.get(SATO, "/api/v1/nothing").await.error(404, "no-route");
    api.call(Method::DELETE, Some(SATO), &format!("/api/v1/tasks/{task}"), None).await.error(405, "method-not-allowed");

    // Completing a finished task: 409, and the instance did not move twice.
    api.post(SATO, &format!("/api/v1/tasks/{task}/complete"), json!({})).await.expect(200);
    let again = api.post(SATO, &format!("/api/v1/tasks/{task}/complete"), json!({})).await.error(409, "task-not-open");
    assert!(again["message"].as_str().unwrap().contains(&task));
    api.post(SATO, &format!("/api/v1/tasks/{task}/claim"), json!({})).await.error(409, "task-not-open");
    let h = api.get(SATO, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    assert_eq!(h.as_array().unwrap().iter().filter(|x| x["event"] == "task_completed").count(), 1);
    // Sending back where the designer allows none (the applicant's step).
    let bench = api.post(SATO, "/api/v1/instances", json!({ "process": "bench-usertask" })).await.expect(201);
    let bt = bench["open_tasks"][0]["id"].as_str().unwrap().to_string();
    let e = api
        .post(SATO, &format!("/api/v1/tasks/{bt}/send-back"), json!({ "comment": "no" }))
        .await
        .error(422, "unknown-outcome");
    assert_eq!(e["details"]["allowed"], json!(["next"]));
    api.post(SATO, &format!("/api/v1/tasks/{bt}/complete"), json!({ "outcome": "send_back" }))
        .await
        .error(422, "use-send-back");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_and_long_strings_are_refused_clearly() {
    let api = Api::start(sample_users()).await;
    let inst = api.start_expense(SATO, 1_000).await;
    let id = inst["id"].as_u64().unwrap();
    let task = api.task_at(id, "申請").await;
    let before = snapshot(&api, id).await;

    // Over the 1 MiB body limit: 413 with a JSON body.
    let huge = json!({ "variables": { "内容": "x".repeat(1_200_000) } }).to_string().into_bytes();
    let e = api
        .post_raw(SATO, &format!("/api/v1/tasks/{task}/complete"), "application/json", huge)
        .await
        .error(413, "body-too-large");
    assert_eq!(e["details"]["limit_bytes"], 1 << 20);

    // Under the limit but longer than the type allows: 422 naming the field and the limit.
    let e = api
        .post(SATO, &format!("/api/v1/tasks/{task}/complete"), json!({ "variables": { "内容": "長".repeat(200_001) } }))
        .await
        .error(422, "invalid-data");
    assert!(
        e["message"].as_str().unwrap().contains("内容: too long: 200001 characters, at most 200000 allowed"),
        "{e}"
    );
    let e = api
        .post(SATO, "/api/v1/instances", json!({ "process": "bench-usertask", "business_key": "k".repeat(201) }))
        .await
        .error(422, "too-long");
    assert!(e["message"].as_str().unwrap().contains("business_key"));
    // A long unknown name is not echoed back whole.
    let e = api
        .post(SATO, &format!("/api/v1/tasks/{task}/complete"), json!({ "variables": { "n".repeat(10_000): 1 } }))
        .await
        .error(422, "invalid-data");
    assert!(e.to_string().len() < 2_000, "error bodies stay small");

    assert_eq!(snapshot(&api, id).await, before, "nothing written by any of it");

    // Send-back comments and cancel reasons have limits too.
    api.post(SATO, &format!("/api/v1/tasks/{task}/complete"), json!({})).await.expect(200);
    let before = snapshot(&api, id).await;
    let approve = api.task_at(id, "上長承認").await;
    let e = api
        .post(TANAKA, &format!("/api/v1/tasks/{approve}/send-back"), json!({ "comment": "。".repeat(4_001) }))
        .await
        .error(422, "too-long");
    assert!(e["message"].as_str().unwrap().contains("at most 4000"));
    api.post(TANAKA, &format!("/api/v1/tasks/{approve}/send-back"), json!({ "comment": "  " }))
        .await
        .error(422, "required");
    api.post(ADMIN, &format!("/api/v1/instances/{id}/cancel"), json!({ "reason": "r".repeat(1_001) }))
        .await
        .error(422, "too-long");
    assert_eq!(snapshot(&api, id).await, before, "nothing written by the refused requests");
    // A deploy may be larger (a process file is up to 1 MiB), but not without bound.
    let big = json!({ "source": format!("id: big\n#{}\n", "x".repeat(1_500_000)) }).to_string().into_bytes();
    let e = api.post_raw(ADMIN, "/api/v1/processes", "application/json", big).await.error(422, "invalid-process");
    assert_eq!(e["details"]["diagnostics"][0]["code"], "file-too-large", "{e}");
    let bigger = json!({ "source": "x".repeat(2_200_000) }).to_string().into_bytes();
    api.post_raw(ADMIN, "/api/v1/processes", "application/json", bigger).await.error(413, "body-too-large");
    api.finish().await;
}
