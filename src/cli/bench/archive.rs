//! `nagare bench --case archive`: archive N completed instances (default 100,000)
//! of the 12-step straight process from a sled store, and measure the store's size
//! on disk before, right after, and after a reopen (sled reclaims freed space
//! segment by segment), the archive files' size, and the time taken. Also checks
//! that every instance is in the files once and still found by business key.

use crate::cli::explain;
use crate::output::{Out, Table};
use anyhow::{anyhow, bail};
use nagare_engine::archive::{ids_in_file, ArchiveOptions, Found};
use nagare_engine::store::{Durability, InstanceFilter};
use nagare_engine::{Engine, StartOptions};
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

const YAML: &str = include_str!("../../../processes/bench-straight.yaml");

#[derive(Serialize)]
struct Report {
    case: &'static str,
    instances: usize,
    load_seconds: f64,
    store_mib_before: f64,
    store_mib_after: f64,
    store_mib_after_reopen: f64,
    live_records_mib_before: f64,
    live_records_mib_after: f64,
    archive_mib: f64,
    archive_files: usize,
    archive_seconds: f64,
    instances_per_s: f64,
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes of every key and value in the store (what it holds, not what its files take).
fn live_bytes(data: &Path) -> anyhow::Result<u64> {
    use nagare_engine::store::{Kv, SledKv};
    let kv = SledKv::open(data, Durability::Flush).map_err(|e| anyhow!("{e}"))?;
    let pairs = kv.scan(b"", usize::MAX).map_err(|e| anyhow!("{e}"))?;
    Ok(pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum())
}

fn mib(b: u64) -> f64 {
    (b as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0
}

fn open(data: &Path, durability: Durability) -> anyhow::Result<Engine> {
    Engine::builder().data_dir_with(data, durability).map_err(explain)?.build().map_err(explain)
}

pub fn run(out: &Out, ctx: &super::Ctx, a: &super::BenchArgs) -> anyhow::Result<ExitCode> {
    let n = a.n.unwrap_or(100_000);
    let tmp = super::measure::temp_dir(ctx.temp_root(), "archive")?;
    let data = tmp.0.join("data");
    let dir = tmp.0.join("archive");
    let t = Instant::now();
    {
        let e = open(&data, Durability::Relaxed)?;
        e.deploy("bench-straight.yaml", YAML).map_err(explain)?;
        for i in 0..n {
            let opts = StartOptions { business_key: Some(format!("order-{i}")), ..StartOptions::default() };
            e.start("bench-straight", Default::default(), opts).map_err(explain)?;
        }
        e.store().flush().map_err(|e| anyhow!("{e}"))?;
    }
    let load_seconds = t.elapsed().as_secs_f64();
    let before = dir_bytes(&data);
    let live_before = live_bytes(&data)?;
    let e = open(&data, Durability::Flush)?;
    let t = Instant::now();
    let r = e
        .archive(&ArchiveOptions { before: Some("2999-01-01T00:00:00Z".parse()?), ..ArchiveOptions::new(&dir) })
        .map_err(|e| anyhow!("{e}"))?;
    let archive_seconds = t.elapsed().as_secs_f64();
    if r.archived != n {
        bail!("archived {} of {n} instances", r.archived);
    }
    if !e.instances(&InstanceFilter { limit: Some(1), ..InstanceFilter::default() }).map_err(explain)?.is_empty() {
        bail!("instances left in the live store");
    }
    match e.find_by_key("bench-straight", &format!("order-{}", n / 2)).map_err(explain)? {
        Some(Found::Archived(_)) => {}
        other => bail!("order-{}: not found as archived: {other:?}", n / 2),
    }
    e.store().flush().map_err(|e| anyhow!("{e}"))?;
    let after = dir_bytes(&data);
    drop(e);
    // sled frees space as it rewrites segments; a reopen shows what stays.
    drop(open(&data, Durability::Flush)?);
    let after_reopen = dir_bytes(&data);
    let live_after = live_bytes(&data)?;
    let mut ids: Vec<u64> = Vec::with_capacity(n);
    for f in std::fs::read_dir(&dir)?.flatten() {
        ids.extend(ids_in_file(&f.path()).map_err(|e| anyhow!("{e}"))?);
    }
    ids.sort();
    ids.dedup();
    if ids.len() != n {
        bail!("{} distinct instances in the archive files, expected {n}", ids.len());
    }
    let report = Report {
        case: "archive",
        instances: n,
        load_seconds: (load_seconds * 10.0).round() / 10.0,
        store_mib_before: mib(before),
        store_mib_after: mib(after),
        store_mib_after_reopen: mib(after_reopen),
        live_records_mib_before: mib(live_before),
        live_records_mib_after: mib(live_after),
        archive_mib: mib(dir_bytes(&dir)),
        archive_files: r.files.len(),
        archive_seconds: (archive_seconds * 10.0).round() / 10.0,
        instances_per_s: (n as f64 / archive_seconds).round(),
    };
    if out.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let r = &report;
    let mut t = Table::new(&["measure", "value"]).right(&[1]);
    for (k, v) in [
        ("completed instances (12 steps each)".to_string(), r.instances.to_string()),
        ("load".into(), format!("{:.1} s", r.load_seconds)),
        ("store before".into(), format!("{:.1} MiB", r.store_mib_before)),
        ("store after archive".into(), format!("{:.1} MiB", r.store_mib_after)),
        ("store after reopen".into(), format!("{:.1} MiB", r.store_mib_after_reopen)),
        (
            "records held (keys + values), before → after".into(),
            format!("{:.1} → {:.1} MiB", r.live_records_mib_before, r.live_records_mib_after),
        ),
        ("archive files".into(), format!("{} ({:.1} MiB)", r.archive_files, r.archive_mib)),
        ("archive run".into(), format!("{:.1} s, {:.0} instances/s", r.archive_seconds, r.instances_per_s)),
    ] {
        t.row(vec![k, v]);
    }
    t.print();
    Ok(ExitCode::SUCCESS)
}
