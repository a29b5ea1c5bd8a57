//! Issue 10, findings 2–4 through the real server: values any signed-in user can
//! send that used to end `nagare serve` (a message TTL of `99999999999d`, a form
//! value of 100000000 days reaching `add_days`) now get a 422 or an incident on the
//! one instance, and the server goes on answering.

use crate::common::{sample_users, Api, ADMIN, SATO};
use chrono::DateTime;
use serde_json::json;

/// Finding 3: `"ttl":"99999999999d"` and `"300000y"` exited the server; `"10000000d"`
/// was stored with `expires_at` `+29405-12-26`, not an RFC 3339 date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_ttl_past_ten_years_is_422() {
    let api = Api::start(sample_users()).await;
    for ttl in [json!("99999999999d"), json!("300000y"), json!("10000000d"), json!("3651d"), json!(u64::MAX)] {
        let body = json!({ "name": "返信", "key": "K-1", "ttl": ttl });
        let e = api.post(SATO, "/api/v1/messages", body).await.error(422, "bad-ttl");
        assert!(e["message"].as_str().unwrap().contains("10 years"), "{ttl}: {e}");
    }
    let kept = api.post(SATO, "/api/v1/messages", json!({ "name": "返信", "key": "K-1", "ttl": "3650d" })).await;
    let kept = kept.expect(202);
    let expires = kept["expires_at"].as_str().unwrap();
    assert!(DateTime::parse_from_rfc3339(expires).is_ok(), "RFC 3339: {expires}");
    api.get(SATO, "/api/v1/tasks").await.expect(200);
    api.finish().await;
}

/// Finding 2: a non-admin starting a process whose `due:` is `add_days(now, 日数)`
/// with 日数 = 100000000 ended the server; now the instance stops with an incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_value_past_year_9999_is_an_incident_not_a_crash() {
    let api = Api::start(sample_users()).await;
    let source = r#"
id: 期限
lanes: { 申請者: { groups: [staff] } }
variables:
  日数: { type: number, required: true }
start: { next: 確認 }
nodes:
  確認:
    user_task: 確認
    lane: 申請者
    due: add_days(now, 日数)
    next: 完了
  完了: { end: }
"#;
    api.post(ADMIN, "/api/v1/processes", json!({ "source": source, "file": "期限.yaml" })).await.expect(201);
    let inst = api
        .post(SATO, "/api/v1/instances", json!({ "process": "期限", "variables": { "日数": 100_000_000 } }))
        .await
        .expect(201);
    assert_eq!(inst["status"], "incident", "{inst}");
    let again = api
        .post(SATO, "/api/v1/instances", json!({ "process": "期限", "variables": { "日数": i64::MAX } }))
        .await
        .expect(201);
    assert_eq!(again["status"], "incident", "{again}");
    let incidents = api.get(ADMIN, "/api/v1/incidents").await.expect(200);
    let text = incidents.to_string();
    assert!(text.contains("outside years 0000–9999"), "{text}");
    // The server is still there, and a sane value works.
    let ok =
        api.post(SATO, "/api/v1/instances", json!({ "process": "期限", "variables": { "日数": 3 } })).await.expect(201);
    assert_eq!(ok["status"], "running", "{ok}");
    api.finish().await;
}

/// Finding 4: `timer: 99999999999d` validated and ended the server when a token
/// reached it; now the deploy is refused with line and column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_past_a_century_is_refused_at_deploy() {
    let api = Api::start(sample_users()).await;
    for timer in ["99999999999d", "P999999999Y"] {
        let source = format!("id: 待ち\nstart: {{ next: 待つ }}\nnodes:\n  待つ:\n    timer: {timer}\n    next: 完了\n  完了: {{ end: }}\n");
        let e = api
            .post(ADMIN, "/api/v1/processes", json!({ "source": source, "file": "待ち.yaml" }))
            .await
            .error(422, "invalid-process");
        let d = &e["details"]["diagnostics"][0];
        assert_eq!((d["line"].as_u64(), d["col"].as_u64()), (Some(5), Some(12)), "{e}");
        assert!(d["message"].as_str().unwrap().contains("longer than 100 years"), "{e}");
    }
    api.finish().await;
}

fn nested(depth: usize) -> serde_json::Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!({ "a": v });
    }
    v
}

/// A value 120 levels deep parsed, was stored, and made its instance unreadable
/// (the store's JSON reader stops at 128 levels): now it is a 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_nested_too_deeply_are_422() {
    let api = Api::start(sample_users()).await;
    let source = "id: 深い\nlanes: { s: { groups: [staff] } }\nvariables:\n  o: { type: object }\nstart: { next: t }\nnodes:\n  t: { user_task: T, lane: s, next: done }\n  done: { end: }\n";
    api.post(ADMIN, "/api/v1/processes", json!({ "source": source, "file": "深い.yaml" })).await.expect(201);
    let e = api
        .post(SATO, "/api/v1/instances", json!({ "process": "深い", "variables": { "o": nested(120) } }))
        .await
        .error(422, "invalid-data");
    assert!(e.to_string().contains("at most 64"), "{e}");
    let e = api
        .post(SATO, "/api/v1/messages", json!({ "name": "m", "payload": nested(120) }))
        .await
        .error(422, "invalid-data");
    assert!(e.to_string().contains("at most 64"), "{e}");
    api.get(ADMIN, "/api/v1/instances").await.expect(200);
    api.finish().await;
}
