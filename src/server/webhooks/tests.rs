//! Webhook deliveries against a local receiver (axum on 127.0.0.1).

use super::config::Webhook;
use super::{sign, Webhooks};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use nagare_engine::runtime::Outcome;
use nagare_engine::store::TaskQuery;
use nagare_engine::{Engine, Vars};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, Semaphore};

const ONE_TASK: &str = "id: s\nlanes:\n  l: { groups: [g] }\nstart: { next: t }\nnodes:\n  t: { user_task: T, lane: l, next: e }\n  e: { end: }\n";
const SECRET: &[u8] = b"0123456789abcdef-test";

/// What the receiver saw: per request its headers, body and the status it answered.
#[derive(Default)]
struct Seen {
    calls: Mutex<Vec<(HeaderMap, Bytes, u16)>>,
    arrived: Notify,
    /// Answer 500 to this many requests first.
    fail_first: AtomicUsize,
    /// Requests wait for a permit here when set (a slow endpoint).
    gate: Option<Semaphore>,
}

impl Seen {
    fn bodies(&self) -> Vec<(String, Value, u16)> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .map(|(h, b, s)| {
                let id = h[sign::DELIVERY_HEADER].to_str().unwrap().to_string();
                (id, serde_json::from_slice(b).unwrap(), *s)
            })
            .collect()
    }

    async fn wait_for(&self, n: usize) {
        let wait = async {
            loop {
                let arrived = self.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if self.calls.lock().unwrap().len() >= n {
                    break;
                }
                arrived.await;
            }
        };
        let seen = self.calls.lock().unwrap().len();
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or_else(|_| panic!("waited for {n} requests; {seen} or more arrived"));
    }
}

async fn receive(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if let Some(gate) = &seen.gate {
        seen.arrived.notify_waiters();
        gate.acquire().await.unwrap().forget();
    }
    let fail = seen.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let status = if fail { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    seen.calls.lock().unwrap().push((headers, body, status.as_u16()));
    seen.arrived.notify_waiters();
    status
}

async fn receiver(seen: Arc<Seen>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?token=x", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn engine() -> Engine {
    let engine = Engine::in_memory();
    engine.deploy("s.yaml", ONE_TASK).unwrap();
    engine
}

fn hook(url: String) -> Webhook {
    Webhook { backoff: Duration::from_millis(10), ..Webhook::new(url, SECRET) }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_are_signed_retried_after_a_500_and_in_order_per_instance() {
    let seen = Arc::new(Seen { fail_first: AtomicUsize::new(1), ..Default::default() });
    let url = receiver(seen.clone()).await;
    let engine = engine();
    let hooks = Webhooks::start(&engine, vec![hook(url)]);
    for _ in 0..3 {
        engine.start("s", Vars::new(), Default::default()).unwrap();
    }
    for task in engine.tasks(&TaskQuery::default()).unwrap() {
        engine.complete(&task.id, "sato", Vars::new(), Outcome::Next).unwrap();
    }
    // 3 instances x (started, task opened, task completed, completed), plus the refused first attempt.
    seen.wait_for(13).await;

    for (headers, body, _) in seen.calls.lock().unwrap().iter() {
        let ts: u64 = headers[sign::TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
        let sig = headers[sign::SIGNATURE_HEADER].to_str().unwrap();
        assert!(sign::verify(SECRET, ts, body, sig, unix_now(), 60), "signature of {body:?}");
        assert!(!sign::verify(b"another secret, same length", ts, body, sig, unix_now(), 60));
        assert_eq!(headers["content-type"], "application/json");
    }
    let calls = seen.bodies();
    assert_eq!(calls[0].2, 500);
    assert_eq!(calls[1].2, 200);
    assert_eq!(calls[0].0, calls[1].0, "a retry has the same delivery id");
    assert_eq!(calls[0].1, calls[1].1, "and the same body");
    let mut per_instance: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (_, body, _) in calls.iter().filter(|c| c.2 == 200) {
        let types = per_instance.entry(body["instance"].as_u64().unwrap()).or_default();
        types.push(body["type"].as_str().unwrap().to_string());
    }
    assert_eq!(per_instance.len(), 3);
    for types in per_instance.values() {
        assert_eq!(types, &["instance_started", "task_opened", "task_completed", "instance_completed"]);
    }
    let stats = hooks.stats()[0].1.clone();
    // Nothing is queued: the shutdown returns without waiting out its grace time.
    tokio::time::timeout(Duration::from_secs(4), hooks.shutdown(Duration::from_secs(5))).await.unwrap();
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 12);
    assert_eq!(stats.failed_attempts.load(Ordering::Relaxed), 1);
    assert_eq!(stats.given_up.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_webhook_endpoint_blocks_neither_the_engine_nor_other_subscribers_and_is_told_it_lagged() {
    let seen = Arc::new(Seen { gate: Some(Semaphore::new(0)), ..Default::default() });
    let url = receiver(seen.clone()).await;
    let engine = engine();
    let mut other = engine.subscribe();
    let hooks = Webhooks::start(&engine, vec![Webhook { queue: 2, ..hook(url) }]);
    let arrived = seen.arrived.notified();
    engine.start("s", Vars::new(), Default::default()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), arrived).await.expect("the first delivery arrives and waits");
    for _ in 0..4 {
        engine.start("s", Vars::new(), Default::default()).unwrap();
    }
    // The engine went on and the other subscriber heard everything while the endpoint hangs.
    for _ in 0..10 {
        other.try_recv().expect("the other subscriber is not held up");
    }
    assert!(seen.calls.lock().unwrap().is_empty());
    // 9 events after the first in flight, 2 kept: 7 missed.
    let stats = hooks.stats()[0].1.clone();
    tokio::time::timeout(Duration::from_secs(20), async {
        while stats.missed.load(Ordering::Relaxed) < 7 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the follower queues the events");
    seen.gate.as_ref().unwrap().add_permits(100);
    seen.wait_for(4).await;
    let calls = seen.bodies();
    let types: Vec<&str> = calls.iter().map(|c| c.1["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["instance_started", "lagged", "instance_started", "task_opened"]);
    assert_eq!(calls[1].1["missed"], 7);
    assert_eq!(calls[2].1["instance"], calls[3].1["instance"], "the newest events are kept");
    assert_eq!(stats.missed.load(Ordering::Relaxed), 7);
    hooks.shutdown(Duration::from_secs(5)).await;
}

/// `/metrics` shows each endpoint's events by outcome and its failed attempts,
/// labelled by the endpoint's index, never its URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_endpoints_deliveries_failed_attempts_and_give_ups_by_its_index() {
    let seen = Arc::new(Seen { fail_first: AtomicUsize::new(1), ..Default::default() });
    let url = receiver(seen.clone()).await;
    // Nothing listens here: every attempt is refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook?token=secret-in-url", l.local_addr().unwrap())
    };
    let engine = engine();
    let hooks = Webhooks::start(&engine, vec![hook(url), Webhook { attempts: 2, ..hook(dead) }]);
    let state = crate::server::AppState::new(engine.clone(), Default::default()).with_webhooks(&hooks);
    engine.start("s", Vars::new(), Default::default()).unwrap(); // instance_started, task_opened
                                                                 // The counters move once the answer is in, after the receiver has seen the request.
    let (good, refused) = (hooks.stats()[0].1.clone(), hooks.stats()[1].1.clone());
    tokio::time::timeout(Duration::from_secs(20), async {
        while good.delivered.load(Ordering::Relaxed) < 2 || refused.given_up.load(Ordering::Relaxed) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first endpoint acknowledges both events, the dead one gives both up");
    assert_eq!(seen.calls.lock().unwrap().len(), 3, "the refused first attempt, then both events");

    let resp = crate::server::metrics::metrics(axum::extract::State(state)).await;
    let text = String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    let series: Vec<&str> = text.lines().filter(|l| l.starts_with("nagare_webhook_")).collect();
    assert_eq!(
        series,
        [
            r#"nagare_webhook_events_total{endpoint="0",outcome="delivered"} 2"#,
            r#"nagare_webhook_events_total{endpoint="0",outcome="given_up"} 0"#,
            r#"nagare_webhook_events_total{endpoint="0",outcome="missed"} 0"#,
            r#"nagare_webhook_events_total{endpoint="1",outcome="delivered"} 0"#,
            r#"nagare_webhook_events_total{endpoint="1",outcome="given_up"} 2"#,
            r#"nagare_webhook_events_total{endpoint="1",outcome="missed"} 0"#,
            r#"nagare_webhook_failed_attempts_total{endpoint="0"} 1"#,
            r#"nagare_webhook_failed_attempts_total{endpoint="1"} 4"#,
        ],
        "{text}"
    );
    assert!(!text.contains("secret-in-url") && !text.contains("127.0.0.1"), "no URL in the labels:\n{text}");
    hooks.shutdown(Duration::from_secs(5)).await;
}
