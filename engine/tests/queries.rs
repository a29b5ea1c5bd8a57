//! Queries the task-list API is built on: inbox paging with cursors and filters,
//! instance filters, participants, and the engine's counters.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::runtime::{Outcome, Status, Task};
use nagare_engine::store::{InstanceFilter, TaskCursor, TaskQuery};
use nagare_engine::{Engine, StartOptions, Vars, VirtualClock};
use serde_json::json;
use std::sync::Arc;

mod common;
use common::TestStore;

/// Two lanes in one group `office` (lane `rare` also in `audit`); the task's due
/// date is `日数` days after the start, or none when `日数` is 0.
const INBOX: &str = r#"
id: inbox
lanes:
  common: { groups: [office] }
  rare: { groups: [office, audit] }
variables:
  日数: { type: number, required: true }
  rare: { type: bool, default: false }
  ok: { type: bool }
start: { next: route }
nodes:
  route:
    exclusive:
      - when: rare
        next: rare_task
      - when: 日数 == 0
        next: undated
    default: dated
  dated:
    user_task: Dated
    lane: common
    due: add_days(now, 日数)
    form: { ok: optional }
    next: done
  undated:
    user_task: Undated
    lane: common
    form: { ok: optional }
    next: done
  rare_task:
    user_task: Rare
    lane: rare
    due: add_days(now, 日数)
    form: { ok: optional }
    next: done
  done: { end: }
"#;

fn t0() -> DateTime<Utc> {
    "2026-11-23T00:00:00Z".parse().unwrap()
}

fn engine_with_clock(store: &TestStore) -> (Engine, Arc<VirtualClock>) {
    let clock = Arc::new(VirtualClock::new(t0()));
    let engine = store.builder().clock(clock.clone()).build().unwrap();
    engine.deploy("inbox.yaml", INBOX).unwrap();
    (engine, clock)
}

fn start(engine: &Engine, days: i64, rare: bool, by: &str) -> u64 {
    let vars: Vars = [("日数".to_string(), json!(days)), ("rare".to_string(), json!(rare))].into();
    engine.start("inbox", vars, StartOptions { by: Some(by.into()), ..Default::default() }).unwrap().id
}

/// Every page of `q` with page size `limit`, following the cursor.
fn all_pages(engine: &Engine, q: &TaskQuery, limit: usize) -> Vec<Task> {
    let mut out: Vec<Task> = Vec::new();
    loop {
        let page = engine
            .tasks(&TaskQuery { limit: Some(limit), after: out.last().map(TaskCursor::of), ..q.clone() })
            .unwrap();
        assert!(page.len() <= limit);
        let done = page.len() < limit;
        out.extend(page);
        if done {
            return out;
        }
    }
}

#[test]
fn inbox_pages_follow_the_cursor_in_due_order() {
    for store in TestStore::all("inbox_pages_follow_the_cursor_in_due_order") {
        inbox_pages_follow_the_cursor_in_due_order_on(&store);
    }
}

fn inbox_pages_follow_the_cursor_in_due_order_on(store: &TestStore) {
    let (engine, _) = engine_with_clock(store);
    // 300 tasks: due in 1..=30 days (ten each, in scrambled order), every 7th undated,
    // every 10th in the rare lane.
    for n in 0..300i64 {
        let days = if n % 7 == 0 { 0 } else { (n * 13) % 30 + 1 };
        start(&engine, days, n % 10 == 3, "sato");
    }
    let office = TaskQuery { groups: Some(vec!["office".into()]), ..Default::default() };
    let full = engine.tasks(&office).unwrap();
    assert_eq!(full.len(), 300);
    for w in full.windows(2) {
        let (a, b) = (TaskCursor::of(&w[0]), TaskCursor::of(&w[1]));
        assert!(a.sort_key() < b.sort_key(), "sorted by due, undated last, then id: {a:?} {b:?}");
    }
    assert!(full.last().unwrap().due.is_none());
    for size in [1, 7, 50, 299, 300, 301] {
        let paged = all_pages(&engine, &office, size);
        let ids: Vec<&str> = paged.iter().map(|t| t.id.as_str()).collect();
        let want: Vec<&str> = full.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, want, "page size {size}");
    }

    // A filter that skips most of the index (reads it in chunks) and two groups whose
    // indexes overlap (the rare tasks are in both): same order, no duplicates.
    let rare = TaskQuery { lane: Some("rare".into()), ..office.clone() };
    let rare_all = engine.tasks(&rare).unwrap();
    assert_eq!(rare_all.len(), 30);
    assert!(rare_all.iter().all(|t| t.lane == "rare"));
    assert_eq!(all_pages(&engine, &rare, 4), rare_all);
    let both = TaskQuery { groups: Some(vec!["audit".into(), "office".into()]), ..Default::default() };
    assert_eq!(all_pages(&engine, &both, 9), full);

    // due_before keeps dated tasks due before the time only.
    let soon = t0() + Duration::days(3);
    let due_soon = engine.tasks(&TaskQuery { due_before: Some(soon), ..office.clone() }).unwrap();
    assert!(!due_soon.is_empty());
    assert!(due_soon.iter().all(|t| t.due.is_some_and(|d| d < soon)));
    assert_eq!(all_pages(&engine, &TaskQuery { due_before: Some(soon), ..office }, 3), due_soon);
}

#[test]
fn claimed_tasks_page_by_assignee_and_leave_when_completed() {
    for store in TestStore::all("claimed_tasks_page_by_assignee_and_leave_when_completed") {
        claimed_tasks_page_by_assignee_and_leave_when_completed_on(&store);
    }
}

fn claimed_tasks_page_by_assignee_and_leave_when_completed_on(store: &TestStore) {
    let (engine, _) = engine_with_clock(store);
    for n in 0..20 {
        start(&engine, n % 5 + 1, false, "sato");
    }
    let office = TaskQuery { groups: Some(vec!["office".into()]), ..Default::default() };
    let tasks = engine.tasks(&office).unwrap();
    for t in tasks.iter().step_by(2) {
        engine.claim(&t.id, "tanaka").unwrap();
    }
    let mine = TaskQuery { assignee: Some("tanaka".into()), ..Default::default() };
    let claimed = all_pages(&engine, &mine, 3);
    assert_eq!(claimed.len(), 10);
    assert!(claimed.iter().all(|t| t.assignee.as_deref() == Some("tanaka")));
    // Group and assignee together: the group's index, filtered.
    assert_eq!(all_pages(&engine, &TaskQuery { assignee: Some("tanaka".into()), ..office.clone() }, 4), claimed);
    engine.complete(&claimed[0].id, "tanaka", Vars::new(), Outcome::Next).unwrap();
    assert_eq!(engine.tasks(&mine).unwrap().len(), 9);
    assert_eq!(engine.tasks(&office).unwrap().len(), 19);
}

#[test]
fn instance_filters_and_participants() {
    for store in TestStore::all("instance_filters_and_participants") {
        instance_filters_and_participants_on(&store);
    }
}

fn instance_filters_and_participants_on(store: &TestStore) {
    let (engine, clock) = engine_with_clock(store);
    let a = start(&engine, 1, false, "sato");
    clock.advance(Duration::hours(1));
    let b = start(&engine, 1, false, "kato");
    clock.advance(Duration::hours(1));
    let c = start(&engine, 1, false, "sato");
    let task_b = engine.instance(b).unwrap().open_task_ids().next().unwrap().to_string();
    engine.claim(&task_b, "tanaka").unwrap();
    let task_c = engine.instance(c).unwrap().open_task_ids().next().unwrap().to_string();
    engine.assign(&task_c, Some("suzuki"), "admin").unwrap();
    engine.cancel(a, "admin", "duplicate").unwrap();

    let ids = |f: InstanceFilter| engine.instances(&f).unwrap().iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(InstanceFilter { started_by: Some("sato".into()), ..Default::default() }), [a, c]);
    assert_eq!(ids(InstanceFilter { participant: Some("tanaka".into()), ..Default::default() }), [b]);
    assert_eq!(ids(InstanceFilter { participant: Some("sato".into()), ..Default::default() }), [a, c]);
    assert_eq!(ids(InstanceFilter { participant: Some("admin".into()), ..Default::default() }), [a, c]);
    assert!(ids(InstanceFilter { participant: Some("suzuki".into()), ..Default::default() }).is_empty());
    assert_eq!(ids(InstanceFilter { status: Some(Status::Cancelled), ..Default::default() }), [a]);
    let after_first = t0() + Duration::minutes(30);
    assert_eq!(ids(InstanceFilter { started_after: Some(after_first), ..Default::default() }), [b, c]);
    assert_eq!(
        ids(InstanceFilter {
            started_after: Some(after_first),
            started_before: Some(t0() + Duration::minutes(90)),
            ..Default::default()
        }),
        [b]
    );
    assert_eq!(ids(InstanceFilter { after: Some(a), limit: Some(1), ..Default::default() }), [b]);
    assert_eq!(ids(InstanceFilter { after: Some(c), ..Default::default() }), Vec::<u64>::new());

    let hist = engine.history(c).unwrap();
    let assigned = hist.iter().find(|h| h.event.name() == "task_assigned").expect("assignment in history");
    assert_eq!(assigned.user.as_deref(), Some("admin"));
    assert_eq!(engine.task(&task_c).unwrap().assignee.as_deref(), Some("suzuki"));
}

#[test]
fn stats_count_instances_tasks_and_commits_and_survive_reopen() {
    for store in TestStore::all("stats_count_instances_tasks_and_commits_and_survive_reopen") {
        stats_count_instances_tasks_and_commits_and_survive_reopen_on(&store);
    }
}

fn stats_count_instances_tasks_and_commits_and_survive_reopen_on(store: &TestStore) {
    {
        let engine = store.engine();
        engine.deploy("inbox.yaml", INBOX).unwrap();
        let ids: Vec<u64> = (0..5).map(|n| start(&engine, n + 1, false, "sato")).collect();
        let task = engine.instance(ids[0]).unwrap().open_task_ids().next().unwrap().to_string();
        engine.complete(&task, "tanaka", Vars::new(), Outcome::Next).unwrap();
        engine.cancel(ids[1], "admin", "no longer needed").unwrap();
        // Refused events change no counter.
        assert!(engine.complete(&task, "tanaka", Vars::new(), Outcome::Next).is_err());
        assert!(engine.cancel(ids[1], "admin", "again").is_err());
        let s = engine.stats();
        assert_eq!((s.instances_started, s.instances_completed, s.instances_cancelled), (5, 1, 1));
        assert_eq!(s.tasks_open, 3);
        assert_eq!(s.commits, 7, "5 starts, 1 completion, 1 cancel");
        assert!(s.commit_buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative buckets");
        assert!(s.commit_buckets.last().unwrap().1 <= s.commits);
        assert!(s.commit_seconds_sum > 0.0);
        engine.flush().unwrap();
    }
    let engine = store.engine();
    let s = engine.stats();
    assert_eq!(s.tasks_open, 3, "open tasks are counted from the store at open");
    assert_eq!((s.instances_started, s.commits), (0, 0));
}

#[test]
fn instance_pages_cross_scan_chunks() {
    for store in TestStore::all("instance_pages_cross_scan_chunks") {
        instance_pages_cross_scan_chunks_on(&store);
    }
}

fn instance_pages_cross_scan_chunks_on(store: &TestStore) {
    let (engine, _) = engine_with_clock(store);
    for n in 0..600 {
        start(&engine, 1, false, if n % 7 == 0 { "kato" } else { "sato" });
    }
    let mut seen = Vec::new();
    let filter = InstanceFilter { started_by: Some("kato".into()), limit: Some(10), ..Default::default() };
    loop {
        let page = engine.instances(&InstanceFilter { after: seen.last().copied(), ..filter.clone() }).unwrap();
        seen.extend(page.iter().map(|i| i.id));
        if page.len() < 10 {
            break;
        }
    }
    let want: Vec<u64> = (0..600u64).filter(|n| n % 7 == 0).map(|n| n + 1).collect();
    assert_eq!(seen, want);
    let all = engine.instances(&InstanceFilter::default()).unwrap();
    assert_eq!(all.len(), 600);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
}

/// A user's instance list reads that user's index: started and acted-on instances,
/// paged across scan chunks, in id order.
#[test]
fn participant_lists_page_through_their_own_index() {
    for store in TestStore::all("participant_lists_page_through_their_own_index") {
        participant_lists_page_through_their_own_index_on(&store);
    }
}

fn participant_lists_page_through_their_own_index_on(store: &TestStore) {
    let (engine, _) = engine_with_clock(store);
    for n in 0..600 {
        start(&engine, 1, false, if n % 5 == 0 { "kato" } else { "sato" });
    }
    // kato works the task of instance 2 (started by sato): now a participant of it.
    let task = engine.tasks(&TaskQuery { instance: Some(2), ..Default::default() }).unwrap().remove(0);
    engine.complete(&task.id, "kato", Vars::new(), Outcome::Next).unwrap();
    let mut seen = Vec::new();
    let filter = InstanceFilter { participant: Some("kato".into()), limit: Some(7), ..Default::default() };
    loop {
        let page = engine.instances(&InstanceFilter { after: seen.last().copied(), ..filter.clone() }).unwrap();
        seen.extend(page.iter().map(|i| i.id));
        if page.len() < 7 {
            break;
        }
    }
    let mut want: Vec<u64> = (0..600u64).filter(|n| n % 5 == 0).map(|n| n + 1).collect();
    want.insert(1, 2);
    assert_eq!(seen, want);
    // Other filters still apply on top of the index.
    let done =
        InstanceFilter { participant: Some("kato".into()), status: Some(Status::Completed), ..Default::default() };
    assert_eq!(engine.instances(&done).unwrap().iter().map(|i| i.id).collect::<Vec<_>>(), [2]);
    let nobody = InstanceFilter { participant: Some("nobody".into()), ..Default::default() };
    assert!(engine.instances(&nobody).unwrap().is_empty());
}

/// A store written before the participant index gets it built when opened.
#[test]
fn the_participant_index_is_built_for_an_older_store() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let e = Engine::builder().data_dir(dir.path()).unwrap().clock(Arc::new(VirtualClock::new(t0()))).build();
        e.unwrap()
    };
    {
        let engine = open();
        engine.deploy("inbox.yaml", INBOX).unwrap();
        for by in ["sato", "kato", "sato"] {
            start(&engine, 1, false, by);
        }
    }
    // Take the index away, as in a store from before it.
    {
        // sled releases its directory lock from a background thread after the
        // engine is dropped: wait for it rather than race it.
        let db = (0..100)
            .find_map(|_| {
                sled::open(dir.path()).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    None
                })
            })
            .expect("sled opens once the engine has let go of it");
        let tree = db.open_tree("nagare").unwrap();
        let index: Vec<_> = tree.scan_prefix(b"ip/").keys().map(Result::unwrap).collect();
        assert_eq!(index.len(), 3, "written with every commit");
        for k in index {
            tree.remove(k).unwrap();
        }
        tree.remove(b"m/participant-index").unwrap();
        db.flush().unwrap();
    }
    let engine = open();
    let of = |user: &str| {
        let f = InstanceFilter { participant: Some(user.into()), ..Default::default() };
        engine.instances(&f).unwrap().iter().map(|i| i.id).collect::<Vec<_>>()
    };
    assert_eq!((of("sato"), of("kato")), (vec![1, 3], vec![2]));
}
