//! Crash test of the archiver: the process dies mid-archive (aborted at each
//! point of a chunk: after the intent, with half the chunk's lines on disk, after
//! the fsync before the store write; then `kill -9` at random moments), and the
//! next run loses nothing and writes nothing twice: every instance is in the
//! archive files exactly once, none is live, each is found by its business key.
//!
//! The test binary re-executes itself as the archiving process
//! (`archive_crash_child`, which does nothing unless `NAGARE_ARCHIVE_CHILD_DIR` is set).
#![cfg(unix)]

use nagare_engine::archive::{fault, ids_in_file, ArchiveOptions, Found};
use nagare_engine::store::{Durability, InstanceFilter};
use nagare_engine::{Engine, StartOptions};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

fn child(dir: &Path, fault: Option<(u32, usize)>, run: usize) -> std::process::Child {
    let log = File::create(dir.join(format!("child-{run}.log"))).unwrap();
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "archive_crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some((point, chunk)) = fault {
        c.env(FAULT_ENV, format!("{point}:{chunk}"));
    }
    c.spawn().unwrap()
}

fn archived(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir.join("archive")) else { return Vec::new() };
    let mut ids: Vec<u64> = entries.flat_map(|e| ids_in_file(&e.unwrap().path()).unwrap()).collect();
    ids.sort();
    ids
}

/// SplitMix64: kill delays from a seed, no RNG crate.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
        let status = child(dir, Some((point, chunk)), run).wait().unwrap();
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
    let mut seed = std::env::var("NAGARE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261201u64);
    for _ in 0..6 {
        let mut c = child(dir, None, run);
        std::thread::sleep(Duration::from_millis(next(&mut seed) % 120));
        let _ = c.kill(); // SIGKILL
        let _ = c.wait();
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
