//! `nagare bench --case query`: what an admin's filtered instance list and the
//! incident list cost as the store grows.
//!
//! Loads N instances (default 1,000,000) over 10 processes on a sled store with
//! relaxed durability (a bulk load; reads cost the same either way): each waits on
//! a user task, one in 100 stops (all in process 07) with an incident instead. At N/10 and at N it
//! measures, in process, 1000 pages of 50 each (after 100 not timed):
//!
//! * `status+process`: incidents of one process (`status=incident&process=…`);
//! * `process`: one process's instances, from a random place (`after`);
//! * `status`: running instances, from a random place;
//! * `incidents`: the first page of the incident list.
//!
//! With the indexes a page reads the same few keys at any size, so p99 at N is
//! about p99 at N/10. Also reports the store's bytes per instance on disk.

use super::measure::{dir_bytes, proc_status_mb, reset_peak_rss, round, temp_dir, Latencies, PeersLine};
use super::{BenchArgs, Ctx};
use crate::cli::explain;
use crate::output::{Out, Table};
use anyhow::bail;
use nagare_engine::runtime::Status;
use nagare_engine::store::{Durability, IncidentFilter, InstanceFilter};
use nagare_engine::{Engine, StartOptions, Vars};
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PROCESSES: usize = 10;
const PAGE: usize = 50;
/// One instance in this many stops with an incident.
const INCIDENT_EVERY: usize = 100;

fn process_yaml(p: usize) -> String {
    format!(
        "id: bench-query-{p:02}\nlanes:\n  staff: {{ groups: [staff] }}\nvariables:\n  fail: {{ type: bool, default: false }}\n\
         start: {{ next: check }}\nnodes:\n  check: {{ script: 'if fail {{ throw \"boom\" }}', next: wait }}\n  \
         wait: {{ user_task: Wait, lane: staff, next: done }}\n  done: {{ end: }}\n"
    )
}

/// Start instances `from..to` from 2 threads.
fn load(engine: &Engine, from: usize, to: usize) -> anyhow::Result<()> {
    let next = AtomicUsize::new(from);
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    return;
                }
                // i % 100 == 7: every incident is in process 07.
                let vars: Vars = [("fail".to_string(), json!(i % INCIDENT_EVERY == 7))].into();
                let p = format!("bench-query-{:02}", i % PROCESSES);
                if let Err(e) = engine.start(&p, vars, StartOptions::default()) {
                    *failure.lock().expect("lock") = Some(e.to_string());
                    next.store(to, Ordering::Relaxed);
                    return;
                }
            });
        }
    });
    match failure.into_inner().expect("lock") {
        Some(e) => bail!("loading instances: {e}"),
        None => Ok(()),
    }
}

/// A small deterministic sequence of "random" ids below `n` (no RNG crate).
fn scatter(k: usize, n: usize) -> u64 {
    ((k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % n.max(1) as u64
}

/// 1000 timed pages (after 100 not timed) of what `page(k)` asks; each must be full.
fn measure(name: &str, size: usize, page: impl Fn(usize) -> anyhow::Result<usize>) -> anyhow::Result<PeersLine> {
    const WARMUP: usize = 100;
    const PAGES: usize = 1000;
    let mut lat = Vec::with_capacity(PAGES);
    let t = Instant::now();
    for k in 0..WARMUP + PAGES {
        let began = Instant::now();
        let got = page(k)?;
        let took = began.elapsed();
        if got != PAGE {
            bail!("{name}: a page of {got}, expected {PAGE}");
        }
        if k >= WARMUP {
            lat.push(took);
        }
    }
    let secs = t.elapsed().as_secs_f64() * PAGES as f64 / (WARMUP + PAGES) as f64;
    let lat = Latencies::new(lat);
    let mut line = PeersLine::new("query", format!("{name}@{size}"), 1, PAGES, secs, &lat);
    line.warmup = WARMUP;
    Ok(line)
}

fn queries(engine: &Engine, size: usize) -> anyhow::Result<Vec<PeersLine>> {
    let instances = |f: InstanceFilter| -> anyhow::Result<usize> { Ok(engine.instances(&f).map_err(explain)?.len()) };
    let page = Some(PAGE);
    let mut out = Vec::new();
    out.push(measure("status+process", size, |_| {
        instances(InstanceFilter {
            status: Some(Status::Incident),
            process: Some("bench-query-07".to_string()),
            limit: page,
            ..Default::default()
        })
    })?);
    out.push(measure("process", size, |k| {
        instances(InstanceFilter {
            process: Some(format!("bench-query-{:02}", k % PROCESSES)),
            after: Some(scatter(k, size * 9 / 10)),
            limit: page,
            ..Default::default()
        })
    })?);
    out.push(measure("status", size, |k| {
        instances(InstanceFilter {
            status: Some(Status::Running),
            after: Some(scatter(k, size * 9 / 10)),
            limit: page,
            ..Default::default()
        })
    })?);
    out.push(measure("incidents", size, |_| {
        Ok(engine.incidents(&IncidentFilter { limit: page, ..Default::default() }).map_err(explain)?.len())
    })?);
    for l in &mut out {
        l.peak_rss_mb = round(proc_status_mb("VmHWM"), 1);
    }
    Ok(out)
}

pub fn run(out: &Out, ctx: &Ctx, a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let n = a.n.unwrap_or(1_000_000);
    // A full page of incidents at N/10.
    if n < 10 * INCIDENT_EVERY * PAGE {
        bail!("--n must be at least {} (a full page of incidents at N/10)", 10 * INCIDENT_EVERY * PAGE);
    }
    reset_peak_rss();
    let rss_start = proc_status_mb("VmRSS");
    let dir = temp_dir(ctx.temp_root(), "query")?;
    let engine =
        Engine::builder().data_dir_with(&dir.0, Durability::Relaxed).map_err(explain)?.build().map_err(explain)?;
    for p in 0..PROCESSES {
        engine.deploy(&format!("bench-query-{p:02}.yaml"), &process_yaml(p)).map_err(explain)?;
    }
    let mut lines = Vec::new();
    let mut loaded = 0;
    let mut load_secs = 0.0;
    for size in [n / 10, n] {
        eprintln!("loading instances {loaded}..{size}…");
        let t = Instant::now();
        load(&engine, loaded, size)?;
        load_secs += t.elapsed().as_secs_f64();
        loaded = size;
        engine.flush().map_err(explain)?;
        eprintln!("measuring pages at {size} instances…");
        for mut l in queries(&engine, size)? {
            l.rss_start_mb = round(rss_start, 1);
            lines.push(l);
        }
    }
    engine.flush().map_err(explain)?;
    // sled writes its log in segments: the directory after a flush is what it takes.
    std::thread::sleep(Duration::from_millis(200));
    let bytes = dir_bytes(&dir.0);
    let mut load_line = PeersLine::new("query", "load-relaxed", 2, n, load_secs, &Latencies::default());
    load_line.snapshot_avg_bytes = bytes / n as u64;
    load_line.rss_start_mb = round(rss_start, 1);
    if out.json {
        load_line.print()?;
        for l in &lines {
            l.print()?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&["query (page of 50)", "instances", "pages/s", "p50 ms", "p99 ms"]).right(&[1, 2, 3, 4]);
    for l in &lines {
        let (name, size) = l.mode.split_once('@').unwrap_or((&l.mode, ""));
        t.row(vec![
            name.into(),
            size.into(),
            format!("{:.0}", l.ips),
            format!("{:.3}", l.p50_ms),
            format!("{:.3}", l.p99_ms),
        ]);
    }
    println!();
    t.print();
    println!();
    println!(
        "load: {n} instances in {load_secs:.1} s ({:.0}/s); on disk {} bytes per instance; peak RSS {:.0} MiB",
        n as f64 / load_secs,
        bytes / n as u64,
        proc_status_mb("VmHWM")
    );
    println!();
    load_line.print()?;
    for l in &lines {
        l.print()?;
    }
    Ok(ExitCode::SUCCESS)
}
