//! The inbox sorted and filtered by task priority (`?sort=priority`, `?min_priority=`).

use crate::common::*;
use serde_json::{json, Value};

const PROCESS: &str = r#"
id: prioritized
variables:
  score: { type: number }
  days: { type: number }
lanes: { staff: { groups: [staff] } }
start: { next: check }
nodes:
  check:
    user_task: 確認する
    lane: staff
    priority: score
    due: add_days(now, days)
    next: done
  done: { end: }
"#;

fn pairs(page: &Value) -> Vec<(u64, u64)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["priority"].as_u64().unwrap(), t["instance"].as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_sorts_by_priority_then_due_date_and_pages_in_that_order() {
    let api = Api::start(sample_users()).await;
    api.engine.deploy("prioritized.yaml", PROCESS).unwrap();
    // (priority, days until due): ties on priority are broken by the earlier due date.
    let specs = [(10, 1), (90, 5), (50, 2), (90, 1), (50, 9), (10, 0), (70, 3)];
    let mut ids = Vec::new();
    for (score, days) in specs {
        let body = json!({ "process": "prioritized", "variables": { "score": score, "days": days } });
        let inst = api.post(SATO, "/api/v1/instances", body).await.expect(201);
        ids.push(inst["id"].as_u64().unwrap());
    }
    let mut expected: Vec<(u64, u64, u64)> =
        specs.iter().zip(&ids).map(|(&(p, d), &id)| (p as u64, d as u64, id)).collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let expected: Vec<(u64, u64)> = expected.into_iter().map(|(p, _, id)| (p, id)).collect();

    let all = api.get(SATO, "/api/v1/tasks?process=prioritized&sort=priority").await.expect(200);
    assert_eq!(pairs(&all), expected);

    // Pages of 2 follow the priority cursor without gaps or repeats.
    let mut seen = Vec::new();
    let mut path = "/api/v1/tasks?process=prioritized&sort=priority&limit=2".to_string();
    loop {
        let page = api.get(SATO, &path).await.expect(200);
        seen.extend(pairs(&page));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/tasks?process=prioritized&sort=priority&limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, expected);

    // The default order is still by due date; a filter by least priority.
    let by_due = api.get(SATO, "/api/v1/tasks?process=prioritized").await.expect(200);
    assert_eq!(pairs(&by_due)[0].1, ids[5], "due today first");
    let urgent = api.get(SATO, "/api/v1/tasks?process=prioritized&sort=priority&min_priority=70").await.expect(200);
    assert_eq!(pairs(&urgent), expected[..3].to_vec());

    // Bad values are 400s that say what is allowed.
    api.get(SATO, "/api/v1/tasks?sort=urgency").await.error(400, "bad-query");
    api.get(SATO, "/api/v1/tasks?min_priority=101").await.error(400, "bad-query");
    let due_cursor = by_due["items"][0]["id"].as_str().unwrap().to_string();
    api.get(SATO, &format!("/api/v1/tasks?sort=priority&after=-~{due_cursor}")).await.error(400, "bad-query");
    api.finish().await;
}
