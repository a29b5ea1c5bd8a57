//! History archival: finished instances past their retention move to JSON Lines
//! files, summaries stay findable by id and business key; long histories compact.

use chrono::{DateTime, Duration, Utc};
use nagare_engine::archive::{ids_in_file, ArchiveOptions, Found};
use nagare_engine::runtime::{HistoryEvent, Outcome, Status};
use nagare_engine::store::{InstanceFilter, TaskQuery};
use nagare_engine::{Engine, EngineError, StartOptions, VirtualClock};
use std::path::Path;
use std::sync::Arc;

mod common;
use common::TestStore;

const DONE: &str = r#"
id: done
retention: 30d
start: { next: end }
nodes:
  end: { end: }
"#;

const WAITS: &str = r#"
id: waits
retention: 30d
lanes: { staff: { groups: [staff] } }
start: { next: check }
nodes:
  check: { user_task: 確認, lane: staff, next: end }
  end: { end: }
"#;

const KEPT: &str = r#"
id: kept
start: { next: end }
nodes:
  end: { end: }
"#;

fn t0() -> DateTime<Utc> {
    "2026-01-05T00:00:00Z".parse().unwrap()
}

fn keyed(k: String) -> StartOptions {
    StartOptions { business_key: Some(k), ..StartOptions::default() }
}

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn archived_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = files_in(dir).iter().flat_map(|p| ids_in_file(p).unwrap()).collect();
    ids.sort();
    ids
}

#[test]
fn finished_instances_past_retention_are_archived_and_still_found() {
    for store in TestStore::all("finished_instances_past_retention_are_archived_and_still_found") {
        let out = tempfile::tempdir().unwrap();
        let clock = Arc::new(VirtualClock::new(t0()));
        let e = store.builder().clock(clock.clone()).build().unwrap();
        for (f, y) in [("done.yaml", DONE), ("waits.yaml", WAITS), ("kept.yaml", KEPT)] {
            e.deploy(f, y).unwrap();
        }
        const N: u64 = 2_000;
        let done: Vec<u64> =
            (0..N).map(|i| e.start("done", Default::default(), keyed(format!("order-{i}"))).unwrap().id).collect();
        // One of the waiting ones completes (its task and history go too), one stays open.
        let w1 = e.start("waits", Default::default(), keyed("w1".into())).unwrap().id;
        let w2 = e.start("waits", Default::default(), keyed("w2".into())).unwrap().id;
        let task = e.tasks(&TaskQuery { instance: Some(w1), ..TaskQuery::default() }).unwrap().remove(0);
        e.complete(&task.id, "sato", Default::default(), Outcome::Next).unwrap();
        let kept = e.start("kept", Default::default(), StartOptions::default()).unwrap().id;

        // Not yet 30 days: nothing moves.
        clock.set(t0() + Duration::days(29));
        let opts = ArchiveOptions { chunk: 300, ..ArchiveOptions::new(out.path()) };
        assert_eq!(e.archive(&opts).unwrap().archived, 0);

        clock.set(t0() + Duration::days(31));
        let dry = e.archive(&ArchiveOptions { dry_run: true, ..opts.clone() }).unwrap();
        assert_eq!(dry.by_process.get("done"), Some(&(N as usize)));
        assert_eq!(dry.by_process.get("waits"), Some(&1));
        assert_eq!(dry.archived, 0);
        assert!(files_in(out.path()).is_empty(), "a dry run writes nothing");
        assert!(e.instance(done[0]).is_ok());

        let before = e.instances(&InstanceFilter::default()).unwrap().len();
        let r = e.archive(&opts).unwrap();
        assert_eq!(r.archived, N as usize + 1);
        assert_eq!(e.instances(&InstanceFilter::default()).unwrap().len(), before - r.archived, "the store shrank");
        // Exactly once each, in the files.
        let mut expected: Vec<u64> = done.clone();
        expected.push(w1);
        expected.sort();
        assert_eq!(archived_ids(out.path()), expected);

        // Gone from the live store (instance, history, tasks), found as summaries.
        assert!(matches!(e.instance(done[7]), Err(EngineError::UnknownInstance(_))));
        assert!(e.history(done[7]).unwrap().is_empty());
        assert!(e.history(w1).unwrap().is_empty());
        assert!(e.store().task(&task.id).unwrap().is_none());
        match e.find_by_key("done", "order-1234").unwrap() {
            Some(Found::Archived(a)) => {
                assert_eq!(
                    (a.id, a.status, a.business_key.as_deref()),
                    (done[1234], Status::Completed, Some("order-1234"))
                );
                assert!(a.file.starts_with("archive-20260205-"), "{}", a.file);
            }
            other => panic!("order-1234: {other:?}"),
        }
        assert!(matches!(e.find(w2).unwrap(), Some(Found::Live(i)) if i.status == Status::Running));
        assert!(matches!(e.find(kept).unwrap(), Some(Found::Live(_))), "no retention: kept");
        // The key stays taken: a start with it is refused as for a finished instance.
        let again = e.start("done", Default::default(), keyed("order-5".into()));
        assert!(matches!(again, Err(EngineError::Conflict(_))), "{again:?}");

        // Idempotent: a second run finds nothing more; `--before` takes the rest.
        assert_eq!(e.archive(&opts).unwrap().archived, 0);
        let all = e.archive(&ArchiveOptions { before: Some(t0() + Duration::days(31)), ..opts.clone() }).unwrap();
        assert_eq!(all.archived, 1, "the `kept` instance, by an explicit cut-off");
        drop(e);
        // Ids are never handed out again, even when the highest ones were archived.
        let e = store.builder().clock(clock.clone()).build().unwrap();
        let next = e.start("kept", Default::default(), StartOptions::default()).unwrap().id;
        assert!(next > kept, "{next} after {kept}");
    }
}

#[test]
fn archive_files_rotate_by_size() {
    let out = tempfile::tempdir().unwrap();
    let clock = Arc::new(VirtualClock::new(t0()));
    let e = Engine::builder().in_memory().clock(clock.clone()).build().unwrap();
    e.deploy("done.yaml", DONE).unwrap();
    for _ in 0..300 {
        e.start("done", Default::default(), StartOptions::default()).unwrap();
    }
    clock.set(t0() + Duration::days(40));
    let r =
        e.archive(&ArchiveOptions { chunk: 50, max_file_bytes: 40_000, ..ArchiveOptions::new(out.path()) }).unwrap();
    assert_eq!(r.archived, 300);
    let files = files_in(out.path());
    assert!(files.len() > 1, "rotated: {files:?}");
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 40_000, "{}: {len} bytes", f.display());
    }
    assert_eq!(archived_ids(out.path()), (1..=300).collect::<Vec<u64>>());
}

const LOOP: &str = r#"
id: loop
variables:
  n: { type: number, default: 0 }
lanes: { staff: { groups: [staff] } }
start: { next: check }
nodes:
  check: { user_task: 毎日の確認, lane: staff, next: count }
  count: { script: 'n = n + 1;', next: again }
  again:
    exclusive:
      - { when: 'n < 1000', next: check }
    default: end
  end: { end: }
"#;

#[test]
fn a_long_running_instance_keeps_a_bounded_history() {
    for store in TestStore::all("a_long_running_instance_keeps_a_bounded_history") {
        let out = tempfile::tempdir().unwrap();
        let e = store.builder().build().unwrap();
        e.deploy("loop.yaml", LOOP).unwrap();
        let id = e.start("loop", Default::default(), StartOptions::default()).unwrap().id;
        for _ in 0..80 {
            let t = e.tasks(&TaskQuery { instance: Some(id), ..TaskQuery::default() }).unwrap().remove(0);
            e.complete(&t.id, "sato", Default::default(), Outcome::Next).unwrap();
        }
        let full = e.history(id).unwrap();
        assert!(full.len() > 300, "{}", full.len());
        let opts = ArchiveOptions { compact_over: Some(100), ..ArchiveOptions::new(out.path()) };
        let r = e.archive(&opts).unwrap();
        assert_eq!(r.compacted, 1);
        let h = e.history(id).unwrap();
        assert_eq!(h.len(), 51, "bounded: the newest 50 and one summary");
        let HistoryEvent::Compacted { lines, events, .. } = &h[0].event else { panic!("{:?}", h[0]) };
        assert_eq!(*lines as usize + h.len() - 1, full.len(), "every line accounted for");
        assert_eq!(
            events.get("task_completed").copied().unwrap_or(0) as usize
                + h.iter().filter(|l| matches!(l.event, HistoryEvent::TaskCompleted { .. })).count(),
            80
        );
        // The newest lines are kept as they were, and the instance goes on.
        assert_eq!(h.last(), full.last());
        let t = e.tasks(&TaskQuery { instance: Some(id), ..TaskQuery::default() }).unwrap().remove(0);
        e.complete(&t.id, "sato", Default::default(), Outcome::Next).unwrap();
        // Compacting again folds the earlier summary in.
        for _ in 0..40 {
            let t = e.tasks(&TaskQuery { instance: Some(id), ..TaskQuery::default() }).unwrap().remove(0);
            e.complete(&t.id, "sato", Default::default(), Outcome::Next).unwrap();
        }
        e.archive(&opts).unwrap();
        let h2 = e.history(id).unwrap();
        let HistoryEvent::Compacted { lines, .. } = &h2[0].event else { panic!("{:?}", h2[0]) };
        let total = e.instance(id).unwrap().history_len as usize;
        assert_eq!(*lines as usize + h2.len() - 1, total);
        assert!(e.archive(&ArchiveOptions { compact_over: Some(5), ..opts }).is_err(), "too small a bound");
    }
}
