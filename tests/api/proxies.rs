//! Proxies (代理人) and the org chart over HTTP: a proxy sees the principal's
//! tasks, completes them in their name (the history names both), files requests
//! on their behalf; the org chart is replaced by administrators only, with
//! line:col errors.

use crate::common::*;
use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{json, Value};

const KIMURA: &str = "demo-kimura";

const PROCESS: &str = r#"
id: proxy-approval
lanes: { 承認: { groups: [managers] }, 法務: { groups: [legal] } }
start: { next: 上長承認 }
nodes:
  上長承認: { user_task: 上長承認, lane: 承認, assignee: manager_of(started_by), next: 法務確認 }
  法務確認: { user_task: 法務確認, lane: 法務, candidates: 'users_in("法務部")', next: 完了 }
  完了: { end: }
"#;

async fn api_with_org() -> Api {
    let users = sample_users();
    let api = Api::start(sample_users()).await;
    api.engine.set_org(nagare::server::org::load_file(&root().join("config/org.yaml"), &users).unwrap());
    api.engine.deploy("proxy-approval.yaml", PROCESS).unwrap();
    api
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect()
}

fn line<'a>(history: &'a Value, event: &str) -> &'a Value {
    history
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|h| h["event"] == event)
        .unwrap_or_else(|| panic!("no {event}: {history}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_completes_a_task_in_the_principals_name_and_the_history_names_both() {
    let api = api_with_org().await;
    let inst = api.post(SATO, "/api/v1/instances", json!({ "process": "proxy-approval" })).await.expect(201);
    let id = inst["id"].as_u64().unwrap();
    let task = api.task_at(id, "上長承認").await;
    assert_eq!(inst["open_tasks"][0]["assignee"], json!("tanaka"), "sato's manager from config/org.yaml");

    // kato (staff) is nobody's proxy yet: the task is neither listed nor workable.
    assert!(!ids(&api.get(KATO, "/api/v1/tasks").await.expect(200)).contains(&task));
    api.post(KATO, &format!("/api/v1/tasks/{task}/complete"), json!({})).await.error(404, "unknown-task");

    // tanaka names kato for a week.
    let until = Utc::now() + Duration::days(7);
    let rel = api.post(TANAKA, "/api/v1/proxies", json!({ "proxy": "kato", "until": until })).await.expect(201);
    assert_eq!((rel["principal"].as_str(), rel["proxy"].as_str()), (Some("tanaka"), Some("kato")));
    let mine = api.get(KATO, "/api/v1/proxies").await.expect(200);
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);

    // Now tanaka's task is in kato's inbox, and kato completes it as tanaka.
    assert!(ids(&api.get(KATO, "/api/v1/tasks").await.expect(200)).contains(&task));
    let done = api.post(KATO, &format!("/api/v1/tasks/{task}/complete"), json!({})).await.expect(200);
    assert_eq!(done["task"]["status"], json!("completed"));
    let history = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    let completed = line(&history, "task_completed");
    assert_eq!(
        (completed["user"].as_str(), completed["proxy"].as_str()),
        (Some("tanaka"), Some("kato")),
        "{completed}"
    );
    // kato took part: the instance is in their list now.
    api.get(KATO, &format!("/api/v1/instances/{id}")).await.expect(200);

    // Legal is offered to everyone in 法務部 (kimura); kimura's proxy suzuki works it.
    let legal = api.task_at(id, "法務確認").await;
    assert!(ids(&api.get(KIMURA, "/api/v1/tasks").await.expect(200)).contains(&legal), "a candidate's inbox");
    assert!(!ids(&api.get(SUZUKI, "/api/v1/tasks").await.expect(200)).contains(&legal));
    api.post(KIMURA, "/api/v1/proxies", json!({ "proxy": "suzuki", "until": until })).await.expect(201);
    assert!(ids(&api.get(SUZUKI, "/api/v1/tasks").await.expect(200)).contains(&legal));
    // A proxy claims it for the principal, then completes it.
    let claimed = api.post(SUZUKI, &format!("/api/v1/tasks/{legal}/claim"), json!({})).await.expect(200);
    assert_eq!(claimed["assignee"], json!("kimura"), "claimed in the principal's name: {claimed}");
    api.post(SUZUKI, &format!("/api/v1/tasks/{legal}/complete"), json!({})).await.expect(200);
    let history = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    let completed = line(&history, "task_completed");
    assert_eq!((completed["user"].as_str(), completed["proxy"].as_str()), (Some("kimura"), Some("suzuki")));
    assert_eq!(api.get(ADMIN, &format!("/api/v1/instances/{id}")).await.expect(200)["status"], json!("completed"));

    // Ended by the principal: the inbox is kato's own again.
    let again = api.post(SATO, "/api/v1/instances", json!({ "process": "proxy-approval" })).await.expect(201);
    let next = api.task_at(again["id"].as_u64().unwrap(), "上長承認").await;
    assert!(ids(&api.get(KATO, "/api/v1/tasks").await.expect(200)).contains(&next));
    let rel_id = rel["id"].as_u64().unwrap();
    api.call(Method::DELETE, Some(SATO), &format!("/api/v1/proxies/{rel_id}"), None).await.error(404, "unknown-proxy");
    api.call(Method::DELETE, Some(TANAKA), &format!("/api/v1/proxies/{rel_id}"), None).await.expect_text(204);
    assert!(!ids(&api.get(KATO, "/api/v1/tasks").await.expect(200)).contains(&next));
    api.post(KATO, &format!("/api/v1/tasks/{next}/complete"), json!({})).await.error(404, "unknown-task");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_filing_starts_in_the_principals_name_only_with_filing_allowed() {
    let api = api_with_org().await;
    let until = Utc::now() + Duration::days(3);
    let file = json!({ "principal": "tanaka", "process": "proxy-approval" });
    api.post(KATO, "/api/v1/proxies/file", file.clone()).await.error(403, "forbidden");
    // A proxy without `filing` may work tasks but not file requests.
    api.post(TANAKA, "/api/v1/proxies", json!({ "proxy": "kato", "until": until })).await.expect(201);
    api.post(KATO, "/api/v1/proxies/file", file.clone()).await.error(403, "forbidden");
    api.post(TANAKA, "/api/v1/proxies", json!({ "proxy": "kato", "until": until, "filing": true })).await.expect(201);
    let inst = api.post(KATO, "/api/v1/proxies/file", file).await.expect(201);
    let id = inst["id"].as_u64().unwrap();
    assert_eq!(inst["started_by"], json!("tanaka"), "{inst}");
    assert_eq!(inst["open_tasks"][0]["assignee"], json!("yamada"), "the principal's manager, not the proxy's");
    let history = api.get(ADMIN, &format!("/api/v1/instances/{id}/history")).await.expect(200);
    let started = line(&history, "started");
    assert_eq!((started["user"].as_str(), started["proxy"].as_str()), (Some("tanaka"), Some("kato")));
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proxies_are_refused_with_the_reason() {
    let api = api_with_org().await;
    let until = Utc::now() + Duration::days(3);
    api.post(TANAKA, "/api/v1/proxies", json!({ "proxy": "tanaka", "until": until })).await.error(422, "own-proxy");
    api.post(TANAKA, "/api/v1/proxies", json!({ "proxy": "nobody", "until": until })).await.error(422, "unknown-user");
    let past = Utc::now() - Duration::days(1);
    api.post(TANAKA, "/api/v1/proxies", json!({ "proxy": "kato", "until": past })).await.error(422, "bad-period");
    let far = Utc::now() + Duration::days(400);
    api.post(TANAKA, "/api/v1/proxies", json!({ "proxy": "kato", "until": far })).await.error(422, "bad-period");
    let for_other = json!({ "proxy": "kato", "until": until, "principal": "yamada" });
    api.post(TANAKA, "/api/v1/proxies", for_other.clone()).await.error(403, "forbidden");
    api.post(ADMIN, "/api/v1/proxies", for_other).await.expect(201);
    for _ in 0..nagare::server::proxies::MAX_PER_PRINCIPAL {
        api.post(TANAKA, "/api/v1/proxies", json!({ "proxy": "kato", "until": until })).await.expect(201);
    }
    api.post(TANAKA, "/api/v1/proxies", json!({ "proxy": "kato", "until": until })).await.error(422, "too-many");
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_chart_is_replaced_by_administrators_with_line_and_column_errors() {
    let api = api_with_org().await;
    let cycle = "departments:\n  A: { parent: B }\n  B: { parent: A }\n";
    api.call(Method::PUT, Some(SATO), "/api/v1/org", Some(json!({ "source": cycle }))).await.error(403, "forbidden");
    let e = api
        .call(Method::PUT, Some(ADMIN), "/api/v1/org", Some(json!({ "source": cycle })))
        .await
        .error(422, "invalid-org");
    let d = &e["details"]["diagnostics"][0];
    assert_eq!(
        (d["code"].as_str(), d["line"].as_u64(), d["col"].as_u64()),
        (Some("department-cycle"), Some(2), Some(3)),
        "{e}"
    );
    let ghost = "departments: { A: {} }\nusers:\n  ghost: { department: A }\n";
    let e = api
        .call(Method::PUT, Some(ADMIN), "/api/v1/org", Some(json!({ "source": ghost })))
        .await
        .error(422, "invalid-org");
    assert_eq!(e["details"]["diagnostics"][0]["code"], json!("unknown-user"), "members must be users: {e}");
    // The org in force did not change: sato's manager is still tanaka.
    let before = api.get(ADMIN, "/api/v1/org").await.expect(200);
    assert_eq!(before["users"], json!(9));
    // A new org: sato now reports to yamada directly; open tasks keep theirs.
    let open = api.post(SATO, "/api/v1/instances", json!({ "process": "proxy-approval" })).await.expect(201);
    let org = "positions: { 部長: 2 }\ndepartments: { 営業部: {}, 法務部: {} }\nusers:\n  sato: { department: 営業部 }\n  yamada: { department: 営業部, position: 部長 }\n  kimura: { department: 法務部 }\n";
    let now = api.call(Method::PUT, Some(ADMIN), "/api/v1/org", Some(json!({ "source": org }))).await.expect(200);
    assert_eq!((now["departments"].as_u64(), now["users"].as_u64()), (Some(2), Some(3)));
    let after = api.post(SATO, "/api/v1/instances", json!({ "process": "proxy-approval" })).await.expect(201);
    assert_eq!(after["open_tasks"][0]["assignee"], json!("yamada"));
    let still = api.get(ADMIN, &format!("/api/v1/instances/{}", open["id"])).await.expect(200);
    assert_eq!(still["open_tasks"][0]["assignee"], json!("tanaka"), "an open task keeps its assignee");
    api.finish().await;
}

/// `nagare serve --org`: a broken org file stops the start with line:col; SIGHUP
/// reads it again, and a broken one leaves the org in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_the_org_file_at_start_and_on_sighup() {
    use crate::served::{nagare, Served};
    use nagare::server::auth::hash_line;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    let org = dir.path().join("org.yaml");
    std::fs::write(
        &users,
        format!("users:\n  boss: {{ admin: true, tokens: [\"{}\"] }}\n  ann: {{}}\n", hash_line("token-boss")),
    )
    .unwrap();
    let serve = || {
        let mut c = nagare(&dir.path().join("data"));
        c.args(["serve", "--addr", "127.0.0.1:0", "--users"]).arg(&users);
        c
    };
    // Broken at start: refused with the file, line and column.
    std::fs::write(&org, "departments:\n  A: {}\nusers:\n  ann: { department: B }\n").unwrap();
    let out = serve().output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("org.yaml:4:22: error[unknown-department]"), "{err}");

    // Valid (found next to the users file without --org): served.
    std::fs::write(&org, "departments: { A: {} }\nusers:\n  ann: { department: A }\n").unwrap();
    let served = Served::start(serve()).await;
    let url = served.url.clone();
    let http = reqwest::Client::new();
    let departments = || {
        let req = http.get(format!("{url}/api/v1/org")).bearer_auth("token-boss");
        async move { req.send().await.unwrap().json::<Value>().await.unwrap()["departments"].as_u64() }
    };
    assert_eq!(departments().await, Some(1));
    let hup = || served.signal("HUP");
    std::fs::write(&org, "departments: { A: {}, B: { parent: A } }\nusers:\n  ann: { department: B }\n").unwrap();
    hup();
    served.wait_log("org file reloaded").await;
    assert_eq!(departments().await, Some(2), "no restart needed");
    std::fs::write(&org, "departments: { A: { parent: A } }\n").unwrap();
    hup();
    served.wait_log("org file not reloaded").await;
    assert_eq!(departments().await, Some(2), "a broken file leaves the org in force");
    let (exit, log) = served.stop().await;
    assert!(exit.success(), "{log}");
}
