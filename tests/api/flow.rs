//! A full 経費精算 (processes/expense-approval.yaml) over HTTP: three lanes, a
//! send-back, a second approval, the accounting check, the service call run by the
//! server's executor; then the audit trail and who may see what.

use crate::common::*;
use serde_json::{json, Value};

fn events(history: &Value) -> Vec<(String, Option<String>, Value)> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["event"].as_str().unwrap().to_string(), h["user"].as_str().map(String::from), h["details"].clone()))
        .collect()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expense_approval_end_to_end_with_a_send_back() {
    let api = Api::start(sample_users()).await;

    // sato (staff) starts a claim of 55,000 yen: over 50,000, so 部長承認 follows 上長承認.
    let inst = api.start_expense(SATO, 55_000).await;
    let id = inst["id"].as_u64().unwrap();
    assert_eq!(inst["status"], "running");
    assert_eq!(inst["started_by"], "sato");
    assert_eq!(inst["variables"]["領収書あり"], true, "defaults applied");

    // sato's inbox holds the 申請 task; its form lists every field with type and mode.
    let inbox = api.get(SATO, "/api/v1/tasks").await.expect(200);
    let apply = ids(&inbox)[0].clone();
    let task = api.get(SATO, &format!("/api/v1/tasks/{apply}")).await.expect(200);
    assert_eq!((task["node"].as_str(), task["lane"].as_str()), (Some("申請"), Some("申請者")));
    let field = |name: &str| task["form"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap().clone();
    assert_eq!(field("費目")["type"], "choice");
    assert_eq!(field("費目")["mode"], "required");
    assert_eq!(field("費目")["options"][0], "交通費");
    assert_eq!(field("費目")["value"], "交通費");
    assert_eq!(field("件名")["max_length"], 100);
    assert_eq!(field("金額")["value"], 55_000);
    assert_eq!(field("上長コメント")["mode"], "readonly");
    assert_eq!(field("上長コメント")["value"], Value::Null);
    assert_eq!(task["outcomes"], json!(["next"]));

    // Claim and complete: the next step belongs to the managers, not to sato.
    let claimed = api.post(SATO, &format!("/api/v1/tasks/{apply}/claim"), json!({})).await.expect(200);
    assert_eq!(claimed["assignee"], "sato");
    let done = api.post(SATO, &format!("/api/v1/tasks/{apply}/complete"), json!({})).await.expect(200);
    assert_eq!(done["task"]["status"], "completed");
    assert_eq!(done["task"]["completed_by"], "sato");
    assert_eq!(done["next_tasks"], json!([]));

    // tanaka (managers) finds 上長承認 in his inbox and sends it back with a comment.
    let inbox = api.get(TANAKA, "/api/v1/tasks?group=managers").await.expect(200);
    let approve = ids(&inbox)[0].clone();
    let detail = api.get(TANAKA, &format!("/api/v1/tasks/{approve}")).await.expect(200);
    assert_eq!(detail["send_back_to"], "申請");
    assert_eq!(detail["outcomes"], json!(["next", "reject"]));
    assert!(detail["due"].is_string(), "due in 3 days");
    api.post(TANAKA, &format!("/api/v1/tasks/{approve}/claim"), json!({})).await.expect(200);
    let back = api
        .post(
            TANAKA,
            &format!("/api/v1/tasks/{approve}/send-back"),
            json!({ "comment": "領収書を添付してください", "variables": { "上長コメント": "領収書がありません" } }),
        )
        .await
        .expect(200);
    assert_eq!(back["task"]["outcome"], "send_back");

    // The applicant's step is open again, with the manager's comment on the form.
    let reopened = api.task_at(id, "申請").await;
    assert_ne!(reopened, apply);
    let form = api.get(SATO, &format!("/api/v1/tasks/{reopened}")).await.expect(200);
    let comment = form["form"].as_array().unwrap().iter().find(|f| f["name"] == "上長コメント").unwrap().clone();
    assert_eq!(comment["value"], "領収書がありません");
    api.post(
        SATO,
        &format!("/api/v1/tasks/{reopened}/complete"),
        json!({ "variables": { "添付ファイル": ["receipt.pdf"] } }),
    )
    .await
    .expect(200);

    // Approvals: tanaka, then yamada (部長承認, also managers).
    let approve2 = api.task_at(id, "上長承認").await;
    api.post(
        TANAKA,
        &format!("/api/v1/tasks/{approve2}/complete"),
        json!({ "variables": { "上長コメント": "確認しました" } }),
    )
    .await
    .expect(200);
    let head = api.task_at(id, "部長承認").await;
    let done = api.post(YAMADA, &format!("/api/v1/tasks/{head}/complete"), json!({})).await.expect(200);
    assert_eq!(done["next_tasks"], json!([]), "accounting is not yamada's lane");

    // Accounting (suzuki) checks the receipt; the join then runs the echo service
    // through the server's executor, and the instance completes.
    let inbox = api.get(SUZUKI, "/api/v1/tasks").await.expect(200);
    let check = ids(&inbox)[0].clone();
    let form = api.get(SUZUKI, &format!("/api/v1/tasks/{check}")).await.expect(200);
    assert_eq!(form["node"], "領収書確認");
    api.post(SUZUKI, &format!("/api/v1/tasks/{check}/complete"), json!({ "variables": { "領収書確認済": true } }))
        .await
        .expect(200);
    let finished = api.wait_for(id, |v| v["status"] == "completed").await;
    assert!(finished["variables"]["仕訳番号"].as_str().is_some_and(|s| s.starts_with("JE-")));
    assert_eq!(finished["variables"]["消費税"], 5000);

    // The audit trail: every claim, completion and send-back with who and when.
    let history = api.get(SATO, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    let ev = events(&history);
    let by =
        |name: &str| ev.iter().filter(|e| e.0 == name).map(|e| e.1.clone().unwrap_or_default()).collect::<Vec<_>>();
    assert_eq!(by("started"), ["sato"]);
    assert_eq!(by("task_claimed"), ["sato", "tanaka"]);
    assert_eq!(by("task_completed"), ["sato", "tanaka", "sato", "tanaka", "yamada", "suzuki"]);
    let sent = ev.iter().find(|e| e.0 == "sent_back").expect("send-back recorded");
    assert_eq!(sent.1.as_deref(), Some("tanaka"));
    assert_eq!(sent.2["comment"], "領収書を添付してください");
    assert_eq!(sent.2["to"], "申請");
    assert!(history.as_array().unwrap().iter().all(|h| h["at"].is_string()));
    assert_eq!(ev.last().unwrap().0, "completed");

    // Who may see the instance: its participants and admins; kato (staff, not
    // involved) gets the same 404 as for an instance that does not exist.
    for token in [SATO, TANAKA, YAMADA, SUZUKI, ADMIN] {
        api.get(token, &format!("/api/v1/instances/{id}")).await.expect(200);
    }
    let hidden = api.get(KATO, &format!("/api/v1/instances/{id}")).await.error(404, "unknown-instance");
    let missing = api.get(KATO, "/api/v1/instances/999999").await.error(404, "unknown-instance");
    assert_eq!(
        hidden["message"].as_str().unwrap().replace(&id.to_string(), "N"),
        missing["message"].as_str().unwrap().replace("999999", "N")
    );
    api.get(KATO, &format!("/api/v1/instances/{id}/history")).await.error(404, "unknown-instance");

    // Lists: sato sees hers; kato sees none; admin filters by status and process.
    let mine = api.get(SATO, "/api/v1/instances").await.expect(200);
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let kato = api.get(KATO, "/api/v1/instances").await.expect(200);
    assert_eq!(kato["items"], json!([]));
    let done =
        api.get(ADMIN, "/api/v1/instances?status=completed&process=expense-approval&started_by=sato").await.expect(200);
    assert_eq!(done["items"][0]["id"], id);

    // Metrics saw it.
    let metrics = api.get(ADMIN, "/metrics").await.expect_text(200);
    assert!(metrics.contains("nagare_instances_started_total 1"), "{metrics}");
    assert!(metrics.contains("nagare_instances_completed_total 1"), "{metrics}");
    assert!(metrics.contains("nagare_tasks_open 0"), "{metrics}");
    assert!(metrics.contains("nagare_commit_duration_seconds_count"), "{metrics}");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_outcome_cancel_assign_and_paging() {
    let api = Api::start(sample_users()).await;
    // Three claims; tanaka rejects the first (named outcome), admin cancels the second.
    let mut ids_ = Vec::new();
    for amount in [10_000, 20_000, 30_000] {
        let inst = api.start_expense(KATO, amount).await;
        let id = inst["id"].as_u64().unwrap();
        let t = api.task_at(id, "申請").await;
        api.post(KATO, &format!("/api/v1/tasks/{t}/complete"), json!({})).await.expect(200);
        ids_.push(id);
    }
    let t = api.task_at(ids_[0], "上長承認").await;
    let r = api.post(TANAKA, &format!("/api/v1/tasks/{t}/complete"), json!({ "outcome": "reject" })).await.expect(200);
    assert_eq!(r["instance"]["status"], "completed");
    assert_eq!(r["task"]["outcome"], "reject");
    let bad = api
        .post(
            TANAKA,
            &format!("/api/v1/tasks/{}/complete", api.task_at(ids_[1], "上長承認").await),
            json!({ "outcome": "approve" }),
        )
        .await
        .error(422, "unknown-outcome");
    assert_eq!(bad["details"]["allowed"], json!(["next", "send_back", "reject"]));

    let c = api
        .post(ADMIN, &format!("/api/v1/instances/{}/cancel", ids_[1]), json!({ "reason": "重複申請" }))
        .await
        .expect(200);
    assert_eq!(c["status"], "cancelled");
    api.post(ADMIN, &format!("/api/v1/instances/{}/cancel", ids_[1]), json!({ "reason": "again" }))
        .await
        .error(409, "instance-finished");
    let h = api.get(ADMIN, &format!("/api/v1/instances/{}/history", ids_[1])).await.expect(200);
    let last = h.as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["event"].as_str(), last["user"].as_str()), (Some("cancelled"), Some("admin")));
    assert_eq!(last["details"]["reason"], "重複申請");

    // Admin assigns the third to yamada: the history says admin did; tanaka can no
    // longer complete it (409), yamada can; an unknown user is refused.
    let t3 = api.task_at(ids_[2], "上長承認").await;
    api.post(ADMIN, &format!("/api/v1/tasks/{t3}/assign"), json!({ "user": "nobody" }))
        .await
        .error(422, "unknown-user");
    let a = api.post(ADMIN, &format!("/api/v1/tasks/{t3}/assign"), json!({ "user": "yamada" })).await.expect(200);
    assert_eq!(a["assignee"], "yamada");
    let mine = api.get(YAMADA, "/api/v1/tasks?assignee=yamada").await.expect(200);
    assert_eq!(ids(&mine), vec![t3.clone()]);
    let e = api.post(TANAKA, &format!("/api/v1/tasks/{t3}/complete"), json!({})).await.error(409, "task-claimed");
    assert_eq!(e["details"]["assignee"], "yamada");
    api.post(YAMADA, &format!("/api/v1/tasks/{t3}/complete"), json!({})).await.expect(200);
    let h = api.get(ADMIN, &format!("/api/v1/instances/{}/history", ids_[2])).await.expect(200);
    let assigned = h.as_array().unwrap().iter().find(|x| x["event"] == "task_assigned").unwrap().clone();
    assert_eq!((assigned["user"].as_str(), assigned["details"]["to"].as_str()), (Some("admin"), Some("yamada")));

    // Unclaim: yours, yes; someone else's, only as admin.
    let more = api.start_expense(SATO, 1_000).await["id"].as_u64().unwrap();
    let t = api.task_at(more, "申請").await;
    api.post(SATO, &format!("/api/v1/tasks/{t}/claim"), json!({})).await.expect(200);
    api.post(KATO, &format!("/api/v1/tasks/{t}/claim"), json!({})).await.error(409, "task-claimed");
    api.post(KATO, &format!("/api/v1/tasks/{t}/unclaim"), json!({})).await.error(409, "task-claimed");
    let u = api.post(SATO, &format!("/api/v1/tasks/{t}/unclaim"), json!({})).await.expect(200);
    assert!(u.get("assignee").is_none());
    api.post(KATO, &format!("/api/v1/tasks/{t}/claim"), json!({})).await.expect(200);
    api.post(ADMIN, &format!("/api/v1/tasks/{t}/unclaim"), json!({})).await.expect(200);

    // Paging: 7 open 申請 tasks for staff, pages of 3 follow the cursor without gaps.
    for n in 0..6 {
        api.start_expense(SATO, 100 + n).await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/tasks?limit=3".to_string();
    loop {
        let page = api.get(SATO, &path).await.expect(200);
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/tasks?limit=3&after={next}"),
            None => break,
        }
    }
    let all = api.get(SATO, "/api/v1/tasks?limit=500").await.expect(200);
    assert_eq!(seen, ids(&all));
    assert_eq!(seen.len(), 7);
    // Filters: lane, process, due date (the applications have none, so a due_before
    // leaves them out).
    let count = |v: Value| v["items"].as_array().unwrap().len();
    let q = |query: &str| format!("/api/v1/tasks?{query}");
    assert_eq!(count(api.get(SATO, &q("lane=申請者&process=expense-approval")).await.expect(200)), 7);
    assert_eq!(count(api.get(SATO, &q("lane=上長")).await.expect(200)), 0);
    assert_eq!(count(api.get(SATO, &q("process=bench-usertask")).await.expect(200)), 0);
    assert_eq!(count(api.get(SATO, &q("due_before=2100-01-01T00:00:00Z")).await.expect(200)), 0);
    assert_eq!(count(api.get(SATO, &q("group=staff&assignee=sato")).await.expect(200)), 0);

    // The admin's inbox without a group: every open task, of every group, by due date.
    let everything = ids(&api.get(ADMIN, "/api/v1/tasks").await.expect(200));
    let mut union = Vec::new();
    for g in ["staff", "managers", "accounting"] {
        union.extend(ids(&api.get(ADMIN, &format!("/api/v1/tasks?group={g}")).await.expect(200)));
    }
    assert_eq!(everything.len(), 8, "7 applications and one receipt check: {everything:?}");
    union.sort();
    let mut sorted = everything.clone();
    sorted.sort();
    assert_eq!(sorted, union);
    let page = api.get(ADMIN, "/api/v1/instances?limit=2").await.expect(200);
    let next = page["next"].as_str().unwrap().to_string();
    let page2 = api.get(ADMIN, &format!("/api/v1/instances?limit=2&after={next}")).await.expect(200);
    assert!(page2["items"][0]["id"].as_u64().unwrap() > next.parse::<u64>().unwrap());
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_serves_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let api = Api::start_durable(sample_users(), dir).await;
    let id = api.start_expense(SATO, 1_000).await["id"].as_u64().unwrap();
    let t = api.task_at(id, "申請").await;
    api.post(SATO, &format!("/api/v1/tasks/{t}/claim"), json!({})).await.expect(200);
    let Api { server, _dir, engine, .. } = api;
    drop(engine); // the test's handle; the server drops its own when it stops
    server.unwrap().shutdown().await.unwrap();

    // Same directory, new engine and server.
    let engine = nagare_engine::Engine::builder().data_dir(&path).unwrap().build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = nagare::server::Server::start(listener, engine, sample_users(), std::future::pending()).unwrap();
    let http = reqwest::Client::new();
    let task: Value = http
        .get(format!("{}/api/v1/tasks/{t}", server.url()))
        .bearer_auth(SATO)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(task["assignee"], "sato");
    let metrics =
        http.get(format!("{}/metrics", server.url())).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("nagare_tasks_open 1"), "gauge counted from the store at start:\n{metrics}");
    server.shutdown().await.unwrap();
    drop(_dir);
}
