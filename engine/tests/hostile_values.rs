//! Issue 10, findings 2–5 and 14 through the whole engine: out-of-range dates and
//! durations give a deploy diagnostic with line:col, an incident on the one
//! instance, or a refused message, never a panic; a running script cannot hold the
//! instance lock for longer than the script time limit; due dates of a `date` are
//! on the process's time zone.

use chrono::{DateTime, Utc};
use nagare_engine::runtime::{Outcome, Status};
use nagare_engine::store::TaskQuery;
use nagare_engine::{
    Correlation, Engine, EngineError, Executor, FnConnector, MessageOptions, StartOptions, Vars, VirtualClock,
};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

fn engine() -> Engine {
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    Engine::builder()
        .in_memory()
        .clock(clock)
        .connector("test.days", FnConnector(|_: &nagare_engine::Call| Ok(json!({ "days": 100_000_000 }))))
        .connector("test.deep", FnConnector(|_: &nagare_engine::Call| Ok(nested(126))))
        .build()
        .expect("engine")
}

fn vars(pairs: &[(&str, serde_json::Value)]) -> Vars {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio")
}

/// The deploy error for `text`: (code, line, col, message) of the first error.
fn deploy_error(text: &str) -> (String, usize, usize, String) {
    match engine().deploy("p.yaml", text) {
        Err(EngineError::Invalid(d)) => {
            let e = d.errors().next().expect("an error");
            (e.code.to_string(), e.line, e.col, e.message.clone())
        }
        other => panic!("expected a deploy error, got {other:?}"),
    }
}

const DUE_FROM_FORM: &str = r#"
id: due
lanes: { staff: {} }
variables:
  日数: { type: number }
start: { next: review }
nodes:
  review:
    user_task: Review
    lane: staff
    due: add_days(now, 日数)
    next: done
  done: { end: }
"#;

/// Finding 2: a non-admin user starting with `日数 = 100000000` ended the server.
#[test]
fn a_due_date_out_of_range_is_an_incident() {
    let e = engine();
    e.deploy("due.yaml", DUE_FROM_FORM).unwrap();
    let inst = e.start("due", vars(&[("日数", json!(100_000_000))]), StartOptions::default()).unwrap();
    assert_eq!(inst.status, Status::Incident);
    let msg = &inst.incidents[0].message;
    assert!(msg.contains("add_days") && msg.contains("outside years 0000–9999"), "{msg}");
    // The engine goes on: a sane value works.
    let ok = e.start("due", vars(&[("日数", json!(3))]), StartOptions::default()).unwrap();
    assert_eq!(ok.status, Status::Running);
    let tasks = e.tasks(&TaskQuery::default()).unwrap();
    assert_eq!(tasks.iter().find(|t| t.instance == ok.id).unwrap().due, Some(t("2026-11-26T00:00:00Z")));
}

/// Finding 2 (the crash loop): the same expression in a service task's `set:` was
/// evaluated after the job was stored, so every restart crashed again.
#[test]
fn a_set_mapping_out_of_range_is_an_incident() {
    let e = engine();
    e.deploy(
        "svc.yaml",
        r#"
id: svc
variables:
  期限: { type: datetime }
start: { next: call }
nodes:
  call:
    service: test.days
    set: { 期限: 'add_days(now, result.days)' }
    next: done
  done: { end: }
"#,
    )
    .unwrap();
    let inst = e.start("svc", Vars::new(), StartOptions::default()).unwrap();
    assert_eq!(rt().block_on(Executor::new(e.clone()).run_until_idle()), 1);
    let inst = e.instance(inst.id).unwrap();
    assert_eq!(inst.status, Status::Incident);
    assert!(inst.incidents[0].message.contains("outside years 0000–9999"), "{:?}", inst.incidents);
    assert_eq!(rt().block_on(Executor::new(e.clone()).run_until_idle()), 0, "nothing left to run again");
}

/// Finding 2: a timer `at:` and a script, too.
#[test]
fn a_timer_at_or_script_out_of_range_is_an_incident() {
    let e = engine();
    e.deploy(
        "at.yaml",
        r#"
id: at
variables:
  n: { type: number }
  when: { type: datetime }
start: { next: calc }
nodes:
  calc: { script: 'when = add_hours(now, n / 1000);', next: wait }
  wait: { timer: { at: 'add_minutes(now, n)' }, next: done }
  done: { end: }
"#,
    )
    .unwrap();
    let inst = e.start("at", vars(&[("n", json!(i64::MAX))]), StartOptions::default()).unwrap();
    assert_eq!(inst.status, Status::Incident);
    assert_eq!(inst.incidents[0].node, "calc");
    let inst = e.start("at", vars(&[("n", json!(5_000_000_000_i64))]), StartOptions::default()).unwrap();
    assert_eq!(inst.status, Status::Incident, "{inst:#?}");
    assert_eq!(inst.incidents[0].node, "wait", "the script fits, the timer does not");
}

/// Finding 4: durations and dates past the caps are deploy errors with line:col.
#[test]
fn timer_durations_and_dates_are_bounded_at_deploy() {
    let base = |timer: &str| {
        format!(
            "id: tm\nstart: {{ next: wait }}\nnodes:\n  wait:\n    timer: {timer}\n    next: done\n  done: {{ end: }}\n"
        )
    };
    for timer in ["99999999999d", "P999999999Y", "P101Y", "PT4294967295H"] {
        let (code, line, col, msg) = deploy_error(&base(timer));
        assert_eq!((code.as_str(), line, col), ("bad-duration", 5, 12), "{timer}: {msg}");
        assert!(msg.contains("longer than 100 years"), "{timer}: {msg}");
    }
    let (code, line, _, msg) = deploy_error(&base("{ date: '+10000-01-01' }"));
    assert_eq!((code.as_str(), line), ("bad-timer", 5), "{msg}");
    assert!(engine().deploy("p.yaml", &base("P100Y")).is_ok());

    let (code, line, _, msg) =
        deploy_error("id: cr\nstart:\n  timer: { cron: '0 0 31 2 *' }\n  next: done\nnodes:\n  done: { end: }\n");
    assert_eq!((code.as_str(), line), ("bad-timer", 3), "{msg}");
    assert!(msg.contains("never matches"), "{msg}");

    let (code, line, _, msg) = deploy_error(
        "id: cy\nstart:\n  timer: { cycle: 'R/2026-12-01/P99999999999D' }\n  next: done\nnodes:\n  done: { end: }\n",
    );
    assert_eq!((code.as_str(), line), ("bad-timer", 3), "{msg}");

    let svc = |key: &str, value: &str| {
        format!("id: sv\nstart: {{ next: call }}\nnodes:\n  call:\n    service: test.days\n    {key}: {value}\n    next: done\n  done: {{ end: }}\n")
    };
    let (code, line, _, msg) = deploy_error(&svc("timeout", "99999999999d"));
    assert_eq!((code.as_str(), line), ("bad-duration", 6), "{msg}");
    let (code, line, _, msg) = deploy_error(&svc("retry", "{ attempts: 3, backoff: 1s..99999999999d }"));
    assert_eq!((code.as_str(), line), ("bad-retry", 6), "{msg}");

    let (code, _, _, msg) = deploy_error(
        "id: rm\nlanes: { s: {} }\nstart: { next: t }\nnodes:\n  t:\n    user_task: T\n    lane: s\n    next: done\n    boundary:\n      - { timer: 1d, interrupting: false, every: 99999999999d, next: done }\n  done: { end: }\n",
    );
    assert_eq!(code, "bad-duration", "{msg}");
}

/// Finding 14: a due `date` ends at 23:59:59 on the process's zone, not in JST.
#[test]
fn a_due_date_is_on_the_process_time_zone() {
    let e = engine();
    let text = |zone: &str| {
        format!(
            "id: z\ntime_zone: {zone}\nlanes: {{ staff: {{}} }}\nvariables:\n  期日: {{ type: date }}\nstart: {{ next: review }}\nnodes:\n  review:\n    user_task: Review\n    lane: staff\n    due: 期日\n    next: done\n  done: {{ end: }}\n"
        )
    };
    e.deploy("z.yaml", &text("Europe/Berlin")).unwrap();
    let inst = e.start("z", vars(&[("期日", json!("2026-12-01"))]), StartOptions::default()).unwrap();
    let tasks = e.tasks(&TaskQuery::default()).unwrap();
    let due = tasks.iter().find(|t| t.instance == inst.id).unwrap().due;
    assert_eq!(due, Some(t("2026-12-01T23:59:59+01:00")));
    e.deploy("z.yaml", &text("Asia/Tokyo")).unwrap();
    let inst = e.start("z", vars(&[("期日", json!("2026-12-01"))]), StartOptions::default()).unwrap();
    let tasks = e.tasks(&TaskQuery::default()).unwrap();
    let due = tasks.iter().find(|t| t.instance == inst.id).unwrap().due;
    assert_eq!(due, Some(t("2026-12-01T23:59:59+09:00")));
}

/// Finding 3: a TTL of `99999999999d` ended the server; `10000000d` was stored with
/// `expires_at` in year 29405.
#[test]
fn a_message_ttl_over_ten_years_is_refused() {
    let e = engine();
    for days in [99_999_999_999u64, 10_000_000, 3_651] {
        let ttl = Some(Duration::from_secs(days * 86_400));
        match e.correlate("返信", "K", json!({}), &MessageOptions { ttl }) {
            Err(EngineError::Rejected(r)) => assert!(r.to_string().contains("longer than 10 years"), "{r}"),
            other => panic!("{days}d: expected a refusal, got {other:?}"),
        }
    }
    assert!(e.buffered_messages().unwrap().is_empty());
    let ttl = Some(Duration::from_secs(3_650 * 86_400));
    match e.correlate("返信", "K", json!({}), &MessageOptions { ttl }).unwrap() {
        Correlation::Buffered { expires_at, .. } => assert_eq!(expires_at, t("2036-11-20T00:00:00Z")),
        other => panic!("{other:?}"),
    }
}

/// Finding 5: the instance lock is held while a script runs, so `cancel` waited
/// behind `loop { if m == m {} }` for hours. Now it waits at most about the
/// script time limit, and the script ends in an incident that says why.
#[test]
fn cancel_does_not_wait_behind_a_running_script_for_longer_than_the_limit() {
    let e = engine();
    e.deploy(
        "slow.yaml",
        r#"
id: slow
lanes: { staff: {} }
variables:
  ok: { type: bool }
start: { next: review }
nodes:
  review: { user_task: Review, lane: staff, next: spin }
  spin:
    script: 'let m = #{}; for i in 0..10000 { m["k" + i] = i; } loop { if m == m {} }'
    next: done
  done: { end: }
"#,
    )
    .unwrap();
    let inst = e.start("slow", Vars::new(), StartOptions::default()).unwrap();
    let task = e.tasks(&TaskQuery::default()).unwrap().remove(0);
    let limit = nagare_engine::expr::time_limit();
    let completer = {
        let e = e.clone();
        std::thread::spawn(move || e.complete(&task.id, "sato", Vars::new(), Outcome::Next))
    };
    // Let the completion take the lock and start the script.
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let cancelled = e.cancel(inst.id, "admin", "stuck").unwrap();
    let waited = t0.elapsed();
    let completed = completer.join().unwrap().unwrap();
    assert_eq!(completed.status, Status::Incident, "the script was stopped: {completed:#?}");
    assert!(completed.incidents[0].message.contains("ran longer than"), "{:?}", completed.incidents);
    assert_eq!(cancelled.status, Status::Cancelled);
    assert!(waited < limit + Duration::from_secs(2), "cancel waited {waited:?} (limit {limit:?})");
}

fn nested(depth: usize) -> serde_json::Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!({ "a": v });
    }
    v
}

/// Instances are stored as JSON and read back by a parser that stops at 128
/// levels: a variable 126 levels deep was accepted and made its instance
/// unreadable. Values deeper than 64 levels are refused where they come in.
#[test]
fn values_nested_too_deeply_are_refused_before_they_are_stored() {
    let e = engine();
    e.deploy(
        "deep.yaml",
        "id: deep\nvariables:\n  o: { type: object }\nstart: { next: wait }\nnodes:\n  wait: { message: m, next: call }\n  call: { service: test.deep, next: done }\n  done: { end: }\n",
    )
    .unwrap();
    match e.start("deep", vars(&[("o", nested(126))]), StartOptions::default()) {
        Err(EngineError::Rejected(r)) => assert!(r.to_string().contains("at most 64"), "{r}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let inst = e.start("deep", vars(&[("o", nested(60))]), StartOptions::default()).unwrap();
    match e.correlate("m", "", nested(126), &MessageOptions::default()) {
        Err(EngineError::Rejected(r)) => assert!(r.to_string().contains("payload"), "{r}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    e.correlate("m", "", json!({}), &MessageOptions::default()).unwrap();
    assert_eq!(rt().block_on(Executor::new(e.clone()).run_until_idle()), 1);
    let inst = e.instance(inst.id).expect("the instance stays readable");
    assert_eq!(inst.status, Status::Incident);
    assert!(inst.incidents[0].message.contains("at most 64"), "{:?}", inst.incidents);
    assert!(e.history(inst.id).is_ok());
}

/// A `date` variable outside years 0000–9999 (`+10000-01-01` parses) is refused.
#[test]
fn a_date_variable_past_year_9999_is_refused() {
    let e = engine();
    e.deploy("dd.yaml", "id: dd\nvariables:\n  d: { type: date }\nstart: { next: done }\nnodes:\n  done: { end: }\n")
        .unwrap();
    match e.start("dd", vars(&[("d", json!("+10000-01-01"))]), StartOptions::default()) {
        Err(EngineError::Rejected(r)) => assert!(r.to_string().contains("outside years 0000–9999"), "{r}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(e.start("dd", vars(&[("d", json!("9999-12-31"))]), StartOptions::default()).is_ok());
}
