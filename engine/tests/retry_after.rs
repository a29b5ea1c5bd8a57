//! A service's `Retry-After` delays the next attempt beyond the step's backoff.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::runtime::HistoryEvent;
use nagare_engine::{ConnectorError, Engine, Executor, FnConnector, VirtualClock};
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const YAML: &str = r#"
id: throttled
start: { next: call }
nodes:
  call:
    service: test.throttled
    retry: { attempts: 3, backoff: 1s..2s }
    next: done
  done: { end: }
"#;

fn retry_waits(after: Option<std::time::Duration>) -> Vec<i64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let t0: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().unwrap();
    let clock = Arc::new(VirtualClock::new(t0));
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let engine = Engine::builder()
        .in_memory()
        .clock(clock.clone())
        .connector(
            "test.throttled",
            FnConnector(move |_call: &nagare_engine::Call| {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(match after {
                        Some(after) => ConnectorError::RetryAfter { message: "HTTP 429".into(), after },
                        None => ConnectorError::Retryable("HTTP 503".into()),
                    })
                } else {
                    Ok(json!({}))
                }
            }),
        )
        .build()
        .unwrap();
    engine.deploy("t.yaml", YAML).unwrap();
    let inst = engine.start("throttled", Default::default(), Default::default()).unwrap();
    let exec = Executor::new(engine.clone());
    rt.block_on(async {
        for _ in 0..200 {
            exec.run_until_idle().await;
            clock.advance(Duration::seconds(1));
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    engine
        .history(inst.id)
        .unwrap()
        .into_iter()
        .filter_map(|h| match h.event {
            HistoryEvent::JobFailed { retry_at: Some(at), .. } => Some((at - h.at).num_seconds()),
            _ => None,
        })
        .collect()
}

#[test]
fn retry_after_is_honoured_when_longer_than_the_backoff() {
    assert_eq!(retry_waits(Some(std::time::Duration::from_secs(90))), [90]);
    let plain = retry_waits(None);
    assert_eq!(plain.len(), 1);
    assert!((1..=2).contains(&plain[0]), "the step's backoff: {plain:?}");
    // Shorter than the backoff: the backoff stands.
    let short = retry_waits(Some(std::time::Duration::from_millis(10)));
    assert!((1..=2).contains(&short[0]), "{short:?}");
}
