//! Crash test of the archiver: the process dies mid-archive (aborted at each
//! point of a chunk: after the intent, with half the chunk's lines on disk, after
//! the fsync before the store write; then `kill -9` at random moments), and the
//! next run loses nothing and writes nothing twice: every instance is in the
//! archive files exactly once, none is live, each is found by its business key.
//!
//! The test binary re-executes itself as the archiving process
//! (`archive_crash_child`, which does nothing unless `NAGARE_ARCHIVE_CHILD_DIR` is set).
//! `NAGARE_CRASH_SEED` replays a sequence of kill delays.
#![cfg(unix)]

mod common;

use common::child::{self, Rng};
use nagare_engine::archive::{fault, ids_in_file, ArchiveOptions, Found};
use nagare_engine::store::{Durability, InstanceFilter};
use nagare_engine::{Engine, StartOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

const CHILD_ENV: &str = "NAGARE_ARCHIVE_CHILD_DIR";
const FAULT_ENV: &str = "NAGARE_ARCHIVE_FAULT";
const N: u64 = 1_000;
const CHUNK: usize = 50;

const DONE: &str = "id: done\nstart: { next: end }\nnodes:\n  end: { end: }\n";

fn engine(dir: &Path) -> Engine {
    Engine::builder().data_dir_with(dir.join("data"), Durability::Flush).unwrap().build().unwrap()
}

fn options(dir: &Path) -> ArchiveOptions {
    ArchiveOptions {
        before: Some("2100-01-01T00:00:00Z".parse().unwrap()),
        chunk: CHUNK,
        max_file_bytes: 60_000,
        ..ArchiveOptions::new(dir.join("archive"))
    }
}

#[test]
fn archive_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    if let Ok(f) = std::env::var(FAULT_ENV) {
        let (point, chunk) = f.split_once(':').unwrap();
        fault::arm(point.parse().unwrap(), chunk.parse().unwrap());
    }
    let e = engine(&dir);
    e.archive(&options(&dir)).unwrap();
}

fn spawn_child(dir: &Path, fault: Option<(u32, usize)>, run: usize) -> std::process::Child {
    let env: Vec<(&str, String)> =
        fault.map(|(point, chunk)| (FAULT_ENV, format!("{point}:{chunk}"))).into_iter().collect();
    child::spawn("archive_crash_child", CHILD_ENV, dir, run, &env)
}

fn archived(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir.join("archive")) else { return Vec::new() };
    let mut ids: Vec<u64> = entries.flat_map(|e| ids_in_file(&e.unwrap().path()).unwrap()).collect();
    ids.sort();
    ids
}

#[test]
fn a_crash_mid_archive_loses_nothing_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let e = engine(dir);
        e.deploy("done.yaml", DONE).unwrap();
        for i in 0..N {
            let opts = StartOptions { business_key: Some(format!("k-{i}")), ..StartOptions::default() };
            e.start("done", Default::default(), opts).unwrap();
        }
    }
    let mut run = 0;
    // Aborts at each point, a few chunks in (earlier chunks complete each time).
    for (point, chunk) in
        [(fault::AFTER_INTENT, 1), (fault::TORN_WRITE, 2), (fault::AFTER_FSYNC, 1), (fault::TORN_WRITE, 0)]
    {
        let status = spawn_child(dir, Some((point, chunk)), run).wait().unwrap();
        let log = std::fs::read_to_string(dir.join(format!("child-{run}.log"))).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(6), "run {run} should have aborted at point {point}: {status}\n{log}");
        if point == fault::TORN_WRITE {
            let mut files: Vec<_> =
                std::fs::read_dir(dir.join("archive")).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            let last = std::fs::read(files.last().unwrap()).unwrap();
            assert_ne!(last.last(), Some(&b'\n'), "run {run} left a torn line");
        }
        run += 1;
    }
    // Then kills at random moments.
    let mut rng = Rng::from_env("archive crash test");
    for _ in 0..6 {
        let mut c = spawn_child(dir, None, run);
        if let Some(status) = child::kill_after(&mut c, Duration::from_millis(rng.range(0, 119))) {
            child::assert_succeeded(status, dir, run);
        }
        run += 1;
    }
    // A last run to the end, in this process.
    let e = engine(dir);
    let r = e.archive(&options(dir)).unwrap();
    eprintln!("last run: {r:?}");
    let ids = archived(dir);
    assert_eq!(ids, (1..=N).collect::<Vec<u64>>(), "every instance exactly once");
    assert!(e.instances(&InstanceFilter::default()).unwrap().is_empty(), "none live");
    for i in [0, 499, 999] {
        match e.find_by_key("done", &format!("k-{i}")).unwrap() {
            Some(Found::Archived(a)) => assert_eq!(a.id, i + 1),
            other => panic!("k-{i}: {other:?}"),
        }
    }
    assert!(e.store().archive_intent().unwrap().is_none());
}
