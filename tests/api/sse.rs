//! `GET /api/v1/events`: engine events as server-sent events, filtered by what the
//! caller may see.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

const CHECK: &str = r#"
id: sse-check
lanes:
  経理: { groups: [accounting] }
start: { next: 書類確認 }
nodes:
  書類確認:
    user_task: 書類確認
    lane: 経理
    next: 完了
  完了: { end: }
"#;

/// An open event stream, read event by event.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(api: &Api, token: &str) -> Stream {
        let resp = api.http.get(format!("{}/api/v1/events", api.base)).bearer_auth(token).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Stream { resp, buf: String::new() }
    }

    /// The next event: (its `event:` name, its `data:` JSON); comments are skipped.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let field =
                    |name: &str| block.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start().to_string()));
                if let (Some(event), Some(data)) = (field("event:"), field("data:")) {
                    return (event, serde_json::from_str(&data).unwrap());
                }
                continue; // a keep-alive comment
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_what_each_caller_may_see() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("sse-check.yaml", CHECK).unwrap();
    let mut admin = Stream::open(&api, ADMIN).await;
    let mut suzuki = Stream::open(&api, SUZUKI).await; // accounting: works the task
    let mut kato = Stream::open(&api, KATO).await; // staff: not involved

    let started = api.post(SATO, "/api/v1/instances", json!({ "process": "sse-check" })).await.expect(201);
    let id = started["id"].as_u64().unwrap();
    let task = api.task_at(id, "書類確認").await;
    api.post(SUZUKI, &format!("/api/v1/tasks/{task}/complete"), json!({})).await.expect(200);
    // Kato's own instance: the first event kato's stream shows.
    let own = api.post(KATO, "/api/v1/instances", json!({ "process": "sse-check" })).await.expect(201);
    let own = own["id"].as_u64().unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        let (name, data) = admin.next().await;
        assert_eq!((data["type"].as_str(), data["instance"].as_u64()), (Some(name.as_str()), Some(id)));
        seen.push((name, data));
    }
    let names: Vec<_> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["instance_started", "task_opened", "task_completed", "instance_completed"]);
    assert_eq!(seen[0].1["started_by"], "sato");
    // Tasks in the inbox's form.
    assert_eq!((seen[1].1["task"]["id"].as_str(), seen[1].1["task"]["status"].as_str()), (Some(&*task), Some("open")));
    assert_eq!(seen[2].1["task"]["completed_by"], "suzuki");
    assert_eq!(seen[3].1["end_node"], "完了");
    let (name, data) = admin.next().await;
    assert_eq!((name.as_str(), data["instance"].as_u64()), ("instance_started", Some(own)));

    // The accounting user sees the instance whose task they work, to its end.
    for want in ["instance_started", "task_opened", "task_completed", "instance_completed"] {
        let (name, data) = suzuki.next().await;
        assert_eq!((name.as_str(), data["instance"].as_u64()), (want, Some(id)));
    }
    // Kato saw nothing of sato's instance: the first event is of kato's own.
    let (name, data) = kato.next().await;
    assert_eq!((name.as_str(), data["instance"].as_u64()), ("instance_started", Some(own)));
    drop((admin, suzuki, kato));
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_need_a_token() {
    let api = Api::start(sample_users()).await;
    let resp = api.http.get(format!("{}/api/v1/events", api.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    api.finish().await;
}
