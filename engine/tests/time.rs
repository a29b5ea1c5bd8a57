//! Time and messages through the whole engine: restarts (timers due during downtime
//! fire once, buffered messages survive), message races, cron starts across
//! daylight-saving changes, overdue tasks, the incident list, the bounded due window
//! and an executor that follows a virtual clock. No test sleeps in real time.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::runtime::{HistoryEvent, Status};
use nagare_engine::store::{IncidentFilter, InstanceFilter, TaskQuery};
use nagare_engine::{
    Clock, Correlation, Engine, EngineError, Executor, MessageOptions, StartOptions, Vars, VirtualClock,
};
use serde_json::json;
use std::sync::Arc;

mod common;
use common::TestStore;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

/// An engine on `store`, opened anew at every call (a restart).
fn engine_on(store: &TestStore, clock: &Arc<VirtualClock>) -> Engine {
    store.builder().clock(clock.clone()).build().expect("engine")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio")
}

fn count(engine: &Engine, id: u64, name: &str) -> usize {
    engine.history(id).expect("history").iter().filter(|h| h.event.name() == name).count()
}

const REMINDERS: &str = r#"
id: reminders
lanes: { staff: {} }
variables:
  n: { type: number, default: 0 }
start: { next: split }
nodes:
  split: { parallel: [wait, review] }
  wait: { timer: 2h, next: merge }
  review:
    user_task: Review
    lane: staff
    next: merge
    boundary:
      - { timer: 1h, interrupting: false, every: 1h, next: remind }
  remind: { script: 'n += 1;', next: reminded }
  reminded: { end: }
  merge: { join: split, next: done }
  done: { end: }
"#;

/// Timers that came due while the engine was down fire once when it runs again: the
/// catch timer once, the hourly reminder once (not once per missed hour), and the
/// reminder's next time is the first one after the restart.
#[test]
fn timers_due_during_downtime_fire_once_after_restart() {
    for store in TestStore::all("timers_due_during_downtime_fire_once_after_restart") {
        timers_due_during_downtime_fire_once_after_restart_on(&store);
    }
}

fn timers_due_during_downtime_fire_once_after_restart_on(store: &TestStore) {
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let id = {
        let engine = engine_on(store, &clock);
        engine.deploy("reminders.yaml", REMINDERS).unwrap();
        engine.start("reminders", Vars::new(), StartOptions::default()).unwrap().id
    };
    // Down for ten hours.
    clock.advance(Duration::hours(10));
    let engine = engine_on(store, &clock);
    let exec = Executor::new(engine.clone());
    let ran = rt().block_on(exec.run_until_idle());
    assert_eq!(ran, 2, "the catch timer and one reminder");
    assert_eq!(count(&engine, id, "timer_fired"), 2);
    let inst = engine.instance(id).unwrap();
    assert_eq!(inst.vars["n"], json!(1), "one reminder for ten missed hours");
    let review = inst.tokens.iter().find(|t| t.node == "review").expect("review still open");
    assert_eq!(review.timers[0].due, t("2026-11-23T11:00:00Z"), "next reminder after the restart time");
    // A second restart fires nothing again.
    drop(exec);
    drop(engine);
    let engine = engine_on(store, &clock);
    assert_eq!(rt().block_on(Executor::new(engine.clone()).run_until_idle()), 0);
    assert_eq!(count(&engine, id, "timer_fired"), 2);
}

const DAILY: &str = r#"
id: daily
start:
  timer: { cron: "0 9 * * *", catch_up: CATCH }
  next: done
nodes:
  done: { end: }
"#;

/// Missed cron starts: `once` starts one instance for the latest missed time, `skip`
/// starts none; both go on with the schedule, and no start happens twice.
#[test]
fn missed_cron_starts_follow_the_catch_up_policy() {
    let name = "missed_cron_starts_follow_the_catch_up_policy";
    let runs =
        [("once", 1), ("skip", 0)].into_iter().flat_map(|p| TestStore::all(name).into_iter().map(move |s| (p, s)));
    for ((policy, expected), store) in runs {
        let store = &store;
        let clock = Arc::new(VirtualClock::new(t("2026-11-23T12:00:00+09:00")));
        {
            let engine = engine_on(store, &clock);
            engine.deploy("daily.yaml", &DAILY.replace("CATCH", policy)).unwrap();
        }
        clock.advance(Duration::days(3)); // three 09:00 starts missed
        let engine = engine_on(store, &clock);
        rt().block_on(Executor::new(engine.clone()).run_until_idle());
        let all = engine.instances(&InstanceFilter::default()).unwrap();
        assert_eq!(all.len(), expected, "{policy}");
        if let Some(i) = all.first() {
            assert_eq!(i.business_key.as_deref(), Some("timer:daily:2026-11-26T00:00:00Z"), "the latest missed time");
        }
        let next = engine.store().job("start:daily").unwrap().expect("still scheduled");
        assert_eq!(next.due, t("2026-11-27T09:00:00+09:00"));
        // Running on for a day starts exactly one more.
        rt().block_on(Executor::new(engine.clone()).advance(Duration::days(1)));
        assert_eq!(engine.instances(&InstanceFilter::default()).unwrap().len(), expected + 1, "{policy}");
    }
}

/// A cron start honours its time zone across daylight-saving changes: in New York a
/// 02:30 start on the spring-forward day runs once at 03:00 EDT, and on the
/// fall-back day a 01:30 start runs once, at the first 01:30.
#[test]
fn cron_start_honours_the_time_zone_at_dst_changes() {
    let name = "cron_start_honours_the_time_zone_at_dst_changes";
    for (spring, fall) in TestStore::all(name).into_iter().zip(TestStore::all(name)) {
        cron_start_honours_the_time_zone_at_dst_changes_on(&spring, &fall);
    }
}

/// The spring and the fall runs each on a store of their own.
fn cron_start_honours_the_time_zone_at_dst_changes_on(store: &TestStore, fall_store: &TestStore) {
    let spring = r#"
id: ny
time_zone: America/New_York
start: { timer: { cron: "30 2 * * *" }, next: done }
nodes: { done: { end: } }
"#;
    let clock = Arc::new(VirtualClock::new(t("2027-03-13T12:00:00-05:00")));
    let engine = engine_on(store, &clock);
    engine.deploy("ny.yaml", spring).unwrap();
    rt().block_on(Executor::new(engine.clone()).advance(Duration::days(3)));
    let starts: Vec<DateTime<Utc>> =
        engine.instances(&InstanceFilter::default()).unwrap().iter().map(|i| i.started_at).collect();
    assert_eq!(
        starts,
        vec![t("2027-03-14T03:00:00-04:00"), t("2027-03-15T02:30:00-04:00"), t("2027-03-16T02:30:00-04:00")]
    );

    let fall = spring.replace("30 2 * * *", "30 1 * * *");
    let clock = Arc::new(VirtualClock::new(t("2026-10-31T12:00:00-04:00")));
    let engine = engine_on(fall_store, &clock);
    engine.deploy("ny.yaml", &fall).unwrap();
    rt().block_on(Executor::new(engine.clone()).advance(Duration::days(2)));
    let starts: Vec<DateTime<Utc>> =
        engine.instances(&InstanceFilter::default()).unwrap().iter().map(|i| i.started_at).collect();
    assert_eq!(starts, vec![t("2026-11-01T01:30:00-04:00"), t("2026-11-02T01:30:00-05:00")]);
}

const REPLY: &str = r#"
id: reply
lanes: { staff: {} }
variables:
  no: { type: string, required: true }
  text: { type: string }
start: { next: prepare }
nodes:
  prepare: { user_task: Prepare, lane: staff, next: wait }
  wait:
    message: reply
    key: no
    set: { text: payload.text }
    next: done
  done: { end: }
"#;

fn start_reply(engine: &Engine, no: &str) -> u64 {
    let vars: Vars = [("no".to_string(), json!(no))].into();
    engine.start("reply", vars, StartOptions::default()).unwrap().id
}

fn complete_open(engine: &Engine, id: u64) {
    let task = engine.instance(id).unwrap().open_task_ids().next().expect("open task").to_string();
    engine.complete(&task, "u", Vars::new(), nagare_engine::runtime::Outcome::Next).unwrap();
}

/// A message sent while its receiver was not waiting yet is kept across a restart
/// and delivered when the token arrives.
#[test]
fn a_message_sent_before_the_receiver_waits_survives_a_restart() {
    for store in TestStore::all("a_message_sent_before_the_receiver_waits_survives_a_restart") {
        a_message_sent_before_the_receiver_waits_survives_a_restart_on(&store);
    }
}

fn a_message_sent_before_the_receiver_waits_survives_a_restart_on(store: &TestStore) {
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let id = {
        let engine = engine_on(store, &clock);
        engine.deploy("reply.yaml", REPLY).unwrap();
        let id = start_reply(&engine, "Q-1");
        let c = engine.correlate("reply", "Q-1", json!({ "text": "hello" }), &MessageOptions::default()).unwrap();
        assert!(matches!(c, Correlation::Buffered { .. }), "{c:?}");
        id
    };
    clock.advance(Duration::hours(1));
    let engine = engine_on(store, &clock);
    complete_open(&engine, id);
    let inst = engine.instance(id).unwrap();
    assert_eq!(inst.status, Status::Completed, "{inst:#?}");
    assert_eq!(inst.vars["text"], json!("hello"));
    assert!(engine.buffered_messages().unwrap().is_empty());
}

/// A buffered message whose receiver started waiting just before a crash (the
/// subscription committed, the hand-over not done) is delivered on restart.
#[test]
fn restart_delivers_buffered_messages_to_tokens_already_waiting() {
    for store in TestStore::all("restart_delivers_buffered_messages_to_tokens_already_waiting") {
        restart_delivers_buffered_messages_to_tokens_already_waiting_on(&store);
    }
}

fn restart_delivers_buffered_messages_to_tokens_already_waiting_on(store: &TestStore) {
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let id = {
        let engine = engine_on(store, &clock);
        engine.deploy("reply.yaml", REPLY).unwrap();
        let id = start_reply(&engine, "Q-2");
        complete_open(&engine, id);
        // Write the message straight into the buffer, as if the crash came between.
        engine
            .store()
            .commit(nagare_engine::store::Batch {
                messages_put: vec![nagare_engine::store::BufferedMessage {
                    id: 99,
                    name: "reply".into(),
                    key: "Q-2".into(),
                    payload: json!({ "text": "late" }),
                    received_at: clock.now(),
                    expires_at: clock.now() + Duration::days(1),
                }],
                ..Default::default()
            })
            .unwrap();
        id
    };
    let engine = engine_on(store, &clock);
    let inst = engine.instance(id).unwrap();
    assert_eq!(inst.status, Status::Completed, "{inst:#?}");
    assert_eq!(inst.vars["text"], json!("late"));
}

/// Many senders race for one waiting token: exactly one message is delivered, the
/// others are buffered (or refused with a time to live of zero), never two delivered.
#[test]
fn racing_messages_deliver_exactly_one() {
    let name = "racing_messages_deliver_exactly_one";
    let runs = [None, Some(std::time::Duration::ZERO)]
        .into_iter()
        .flat_map(|ttl| TestStore::all(name).into_iter().map(move |s| (ttl, s)));
    for (ttl, store) in runs {
        let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
        let engine = engine_on(&store, &clock);
        engine.deploy("reply.yaml", REPLY).unwrap();
        let id = start_reply(&engine, "R");
        complete_open(&engine, id);
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let engine = engine.clone();
                std::thread::spawn(move || {
                    engine.correlate("reply", "R", json!({ "text": format!("m{i}") }), &MessageOptions { ttl })
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("no panic")).collect();
        let delivered = results.iter().filter(|r| matches!(r, Ok(Correlation::Delivered { .. }))).count();
        let buffered = results.iter().filter(|r| matches!(r, Ok(Correlation::Buffered { .. }))).count();
        let refused = results.iter().filter(|r| matches!(r, Err(EngineError::NoReceiver { .. }))).count();
        assert_eq!(delivered, 1, "{results:?}");
        match ttl {
            None => assert_eq!(buffered, 7),
            Some(_) => assert_eq!(refused, 7),
        }
        assert_eq!(count(&engine, id, "message_received"), 1);
        assert_eq!(engine.instance(id).unwrap().status, Status::Completed);
    }
}

/// A token starting to wait and a message arriving at the same moment: the message
/// is delivered in every interleaving, never left in the buffer beside a waiting token.
#[test]
fn a_message_and_a_token_arriving_together_always_meet() {
    for store in TestStore::all("a_message_and_a_token_arriving_together_always_meet") {
        a_message_and_a_token_arriving_together_always_meet_on(&store);
    }
}

fn a_message_and_a_token_arriving_together_always_meet_on(store: &TestStore) {
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let engine = engine_on(store, &clock);
    engine.deploy("reply.yaml", REPLY).unwrap();
    for round in 0..50 {
        let key = format!("K{round}");
        let id = start_reply(&engine, &key);
        let sender = {
            let engine = engine.clone();
            let key = key.clone();
            std::thread::spawn(move || {
                engine.correlate("reply", &key, json!({ "text": "x" }), &MessageOptions::default()).unwrap()
            })
        };
        complete_open(&engine, id);
        sender.join().expect("no panic");
        let inst = engine.instance(id).unwrap();
        assert_eq!(inst.status, Status::Completed, "round {round}: {inst:#?}");
    }
    assert!(engine.buffered_messages().unwrap().is_empty());
}

/// A user task past its due date is `overdue` in the inbox, and the filter finds it.
#[test]
fn overdue_tasks_are_marked_and_filtered() {
    for store in TestStore::all("overdue_tasks_are_marked_and_filtered") {
        overdue_tasks_are_marked_and_filtered_on(&store);
    }
}

fn overdue_tasks_are_marked_and_filtered_on(store: &TestStore) {
    let yaml = r#"
id: due
lanes: { staff: {} }
start: { next: a }
nodes:
  a: { user_task: A, lane: staff, due: 'add_days(now, 1)', next: b }
  b: { user_task: B, lane: staff, next: done }
  done: { end: }
"#;
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let engine = engine_on(store, &clock);
    engine.deploy("due.yaml", yaml).unwrap();
    let id = engine.start("due", Vars::new(), StartOptions::default()).unwrap().id;
    let overdue = |o| engine.tasks(&TaskQuery { overdue: Some(o), ..Default::default() }).unwrap();
    assert!(overdue(true).is_empty());
    clock.advance(Duration::days(2));
    let late = overdue(true);
    assert_eq!(late.len(), 1);
    assert!(late[0].overdue);
    assert!(engine.task(&late[0].id).unwrap().overdue);
    complete_open(&engine, id);
    let open = engine.tasks(&TaskQuery::default()).unwrap();
    assert_eq!(open.len(), 1);
    assert!(!open[0].overdue, "an undated task is never overdue");
}

/// Incidents are listed across instances; one is retried after fixing data, one
/// resolved by hand (the step skipped), and a gateway cannot be skipped.
#[test]
fn incidents_are_listed_retried_and_resolved() {
    for store in TestStore::all("incidents_are_listed_retried_and_resolved") {
        incidents_are_listed_retried_and_resolved_on(&store);
    }
}

fn incidents_are_listed_retried_and_resolved_on(store: &TestStore) {
    let yaml = r#"
id: inc
variables:
  x: { type: number, required: true }
  y: { type: number }
start: { next: calc }
nodes:
  calc: { script: 'y = 100 / x;', next: route }
  route:
    exclusive:
      - when: y > 1000
        next: done
  done: { end: }
"#;
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let engine = engine_on(store, &clock);
    engine.deploy("inc.yaml", yaml).unwrap();
    let start = |x: i64| engine.start("inc", [("x".to_string(), json!(x))].into(), StartOptions::default()).unwrap();
    let a = start(0);
    let b = start(0);
    let c = start(1);
    let all = engine.incidents(&IncidentFilter::default()).unwrap();
    assert_eq!(
        all.iter().map(|i| (i.instance, i.incident.node.as_str())).collect::<Vec<_>>(),
        vec![(a.id, "calc"), (b.id, "calc"), (c.id, "route")]
    );
    let at_route = engine.incidents(&IncidentFilter { node: Some("route".into()), ..Default::default() }).unwrap();
    assert_eq!(at_route.len(), 1);

    let inc = all[0].incident.id;
    let fixed = engine.retry_incident(a.id, inc, [("x".to_string(), json!(0.05))].into(), "ops").unwrap();
    assert_eq!(fixed.status, Status::Completed, "{fixed:#?}");

    let inc = all[1].incident.id;
    let skipped = engine.resolve_incident(b.id, inc, [("y".to_string(), json!(5000))].into(), "ops").unwrap();
    assert_eq!(skipped.status, Status::Completed, "{skipped:#?}");
    assert!(engine
        .history(b.id)
        .unwrap()
        .iter()
        .any(|h| matches!(&h.event, HistoryEvent::IncidentSkipped { to, .. } if to == "route")));

    let inc = all[2].incident.id;
    let err = engine.resolve_incident(c.id, inc, Vars::new(), "ops").unwrap_err();
    assert!(matches!(err, EngineError::Rejected(_)), "{err}");
    assert!(err.to_string().contains("retry"), "{err}");
    assert_eq!(engine.incidents(&IncidentFilter::default()).unwrap().len(), 1);
}

/// With a window of 8 jobs in memory, 200 timers still fire, each once and in order.
#[test]
fn a_small_due_window_refills_from_the_store() {
    for store in TestStore::all("a_small_due_window_refills_from_the_store") {
        a_small_due_window_refills_from_the_store_on(&store);
    }
}

fn a_small_due_window_refills_from_the_store_on(store: &TestStore) {
    let yaml = "id: t\nvariables: { at: { type: datetime } }\nstart: { next: w }\nnodes:\n  w: { timer: { at: at }, next: done }\n  done: { end: }\n";
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let engine = store.builder().clock(clock.clone()).queue_window(8).build().unwrap();
    engine.deploy("t.yaml", yaml).unwrap();
    for i in 0..200i64 {
        // Out of order on purpose.
        let at = t("2026-11-23T00:00:00Z") + Duration::minutes((i * 37) % 200 + 1);
        let vars: Vars = [("at".to_string(), json!(nagare_engine::expr::format_datetime(at)))].into();
        engine.start("t", vars, StartOptions::default()).unwrap();
    }
    let exec = Executor::new(engine.clone());
    assert!(exec.queued() <= 8, "{} loaded", exec.queued());
    let ran = rt().block_on(exec.advance(Duration::hours(4)));
    assert_eq!(ran, 200);
    let mut fired: Vec<(DateTime<Utc>, u64)> = Vec::new();
    for i in engine.instances(&InstanceFilter::default()).unwrap() {
        assert_eq!(i.status, Status::Completed);
        let h = engine.history(i.id).unwrap();
        let at = h.iter().find(|h| h.event.name() == "timer_fired").expect("fired").at;
        let due = h
            .iter()
            .find_map(|h| match &h.event {
                HistoryEvent::TimerSet { due, .. } => Some(*due),
                _ => None,
            })
            .unwrap();
        assert_eq!(at, due, "fired at its own time");
        fired.push((at, i.id));
    }
    fired.sort();
    fired.dedup_by_key(|f| f.1);
    assert_eq!(fired.len(), 200);
}

/// `Executor::run` follows a virtual clock: moving the clock fires what came due.
#[tokio::test(start_paused = true)]
async fn the_running_executor_follows_the_virtual_clock() {
    for store in TestStore::all("the_running_executor_follows_the_virtual_clock") {
        the_running_executor_follows_the_virtual_clock_on(&store).await;
    }
}

async fn the_running_executor_follows_the_virtual_clock_on(store: &TestStore) {
    let yaml = "id: w\nstart: { next: w }\nnodes:\n  w: { timer: 3d, next: done }\n  done: { end: }\n";
    let clock = Arc::new(VirtualClock::new(t("2026-11-23T00:00:00Z")));
    let engine = engine_on(store, &clock);
    engine.deploy("w.yaml", yaml).unwrap();
    let id = engine.start("w", Vars::new(), StartOptions::default()).unwrap().id;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let exec = Executor::new(engine.clone());
    let runner = tokio::spawn(async move {
        exec.run(async {
            stopped.await.ok();
        })
        .await
    });
    tokio::task::yield_now().await;
    assert_eq!(engine.instance(id).unwrap().status, Status::Running);
    clock.advance(Duration::days(3));
    let mut done = false;
    for _ in 0..100 {
        // Paused tokio time: these waits take no real time.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        if engine.instance(id).unwrap().status == Status::Completed {
            done = true;
            break;
        }
    }
    assert!(done, "the timer fired after the clock moved");
    stop.send(()).unwrap();
    runner.await.unwrap();
}

/// `due: 3bd` counts business days from when the task opens: opened on Friday
/// 2026-04-24, the three business days skip the weekend and Shōwa Day (4/29 is a
/// Wednesday, so Mon 27, Tue 28, Thu 30): due at the end of Thursday 2026-04-30 in
/// the process's zone.
#[test]
fn a_due_of_three_business_days_skips_weekends_and_holidays() {
    let clock = Arc::new(VirtualClock::new(t("2026-04-24T10:00:00+09:00")));
    let engine = Engine::builder().in_memory().clock(clock.clone()).build().expect("engine");
    let yaml = "id: bd\ntime_zone: Asia/Tokyo\nlanes:\n  l: { groups: [g] }\nstart: { next: t }\nnodes:\n  t: { user_task: T, lane: l, due: 3bd, next: e }\n  e: { end: }\n";
    engine.deploy("bd.yaml", yaml).expect("deploy");
    engine.start("bd", Default::default(), StartOptions::default()).expect("start");
    let tasks = engine.tasks(&TaskQuery::default()).expect("tasks");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].due, Some(t("2026-04-30T23:59:59+09:00")));
}
