//! `nagare bench timers`: what scheduled timers cost in memory and how late they fire.
//!
//! Two runs, each on a fresh sled store in a temp directory:
//!
//! * **virtual**: N timers (default 1,000,000) spread over one day, on a
//!   [`VirtualClock`]; the executor walks the clock through the day
//!   ([`Executor::advance`]). Reports RSS after scheduling and at the peak while
//!   firing (the in-memory due queue is a bounded window over the store's index),
//!   firing throughput, and lateness measured on the virtual clock.
//! * **real**: M timers (default 10,000) all due within one second, on the system
//!   clock with fsynced commits; the running executor fires them. Reports lateness
//!   (p50/p99/max of fire time minus due time), measured from the history.
//! * **baseline** (`--baseline`, run instead of the two above, in its own process):
//!   as many instances waiting on a user task, no timers: the memory the store itself
//!   takes for that many instances.

use super::measure::{proc_status_mb, reset_peak_rss, round, temp_dir, Latencies, PeersLine};
use super::{BenchArgs, Ctx};
use crate::cli::explain;
use crate::output::{Out, Table};
use anyhow::bail;
use chrono::{DateTime, Duration, Utc};
use nagare_engine::runtime::HistoryEvent;
use nagare_engine::store::Durability;
use nagare_engine::{Clock, Engine, Executor, StartOptions, SystemClock, Vars, VirtualClock};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// The same instances waiting on a person instead of a timer: what the store costs
/// without any timer (`--baseline`).
const BASELINE: &str = r#"
id: bench-timer
lanes: { staff: {} }
variables:
  at: { type: datetime, required: true }
start: { next: wait }
nodes:
  wait: { user_task: Wait, lane: staff, next: done }
  done: { end: }
"#;

const PROCESS: &str = r#"
id: bench-timer
variables:
  at: { type: datetime, required: true }
start: { next: wait }
nodes:
  wait: { timer: { at: at }, next: done }
  done: { end: }
"#;

#[derive(Serialize)]
struct TimerReport {
    case: &'static str,
    clock: &'static str,
    timers: usize,
    schedule_seconds: f64,
    schedule_per_s: f64,
    fire_seconds: f64,
    fire_per_s: f64,
    /// Fire time minus due time, on the clock the engine runs on.
    lateness_ms_p50: f64,
    lateness_ms_p99: f64,
    lateness_ms_max: f64,
    /// Timers whose lateness was measured (a sample of the virtual run).
    lateness_sampled: usize,
    rss_before_mb: f64,
    rss_scheduled_mb: f64,
    peak_rss_mb: f64,
    /// Due jobs held in memory right after scheduling.
    queue_loaded: usize,
}

/// Start `n` instances, each waiting for the time `due(i)`, from `threads` threads.
fn schedule(
    engine: &Engine,
    n: usize,
    threads: usize,
    due: impl Fn(usize) -> DateTime<Utc> + Sync,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let due = &due;
                s.spawn(move || -> anyhow::Result<()> {
                    for i in (k..n).step_by(threads) {
                        let at = nagare_engine::expr::format_datetime(due(i));
                        let vars: Vars = [("at".to_string(), json!(at))].into();
                        engine.start("bench-timer", vars, StartOptions::default()).map_err(explain)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a scheduling thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(t.elapsed().as_secs_f64())
}

/// Lateness in ms of the instances `ids`: fire time minus due time from the history.
fn lateness(engine: &Engine, ids: impl Iterator<Item = u64>) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for id in ids {
        let h = engine.history(id).map_err(explain)?;
        let due = h.iter().find_map(|e| match &e.event {
            HistoryEvent::TimerSet { due, .. } => Some(*due),
            _ => None,
        });
        let fired = h.iter().find(|e| matches!(e.event, HistoryEvent::TimerFired { .. })).map(|e| e.at);
        match (due, fired) {
            (Some(d), Some(f)) => out.push((f - d).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0),
            _ => bail!("instance {id}: its timer did not fire"),
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i] * 1000.0).round() / 1000.0
}

/// N instances waiting on a user task on the same kind of store: RSS only.
fn baseline_run(n: usize, root: &Path) -> anyhow::Result<TimerReport> {
    reset_peak_rss();
    let rss_before = proc_status_mb("VmRSS");
    let dir = temp_dir(root, "timers-baseline")?;
    let t0: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().expect("valid time");
    let clock = Arc::new(VirtualClock::new(t0));
    let engine = Engine::builder()
        .data_dir_with(&dir.0, Durability::Relaxed)
        .map_err(explain)?
        .clock(clock)
        .build()
        .map_err(explain)?;
    engine.deploy("bench-timer.yaml", BASELINE).map_err(explain)?;
    let schedule_s = schedule(&engine, n, 2, |_| t0)?;
    let rss_scheduled = proc_status_mb("VmRSS");
    Ok(TimerReport {
        case: "timers",
        clock: "baseline",
        timers: 0,
        schedule_seconds: (schedule_s * 1000.0).round() / 1000.0,
        schedule_per_s: (n as f64 / schedule_s).round(),
        fire_seconds: 0.0,
        fire_per_s: 0.0,
        lateness_ms_p50: 0.0,
        lateness_ms_p99: 0.0,
        lateness_ms_max: 0.0,
        lateness_sampled: 0,
        rss_before_mb: rss_before,
        rss_scheduled_mb: rss_scheduled,
        peak_rss_mb: proc_status_mb("VmHWM"),
        queue_loaded: 0,
    })
}

fn virtual_run(n: usize, root: &Path) -> anyhow::Result<TimerReport> {
    reset_peak_rss();
    let rss_before = proc_status_mb("VmRSS");
    let dir = temp_dir(root, "timers-virtual")?;
    let t0: DateTime<Utc> = "2026-11-23T00:00:00Z".parse().expect("valid time");
    let clock = Arc::new(VirtualClock::new(t0));
    let engine = Engine::builder()
        .data_dir_with(&dir.0, Durability::Relaxed)
        .map_err(explain)?
        .clock(clock.clone())
        .build()
        .map_err(explain)?;
    engine.deploy("bench-timer.yaml", PROCESS).map_err(explain)?;
    // Spread over one day in a scrambled order (a multiplicative hash of i).
    let day_ms = 86_400_000u64;
    let due = |i: usize| t0 + Duration::milliseconds(1 + ((i as u64).wrapping_mul(2_654_435_761) % day_ms) as i64);
    let schedule_s = schedule(&engine, n, 2, due)?;
    let exec = Executor::new(engine.clone()).concurrency(64);
    let queue_loaded = exec.queued();
    let rss_scheduled = proc_status_mb("VmRSS");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let t = Instant::now();
    let fired = rt.block_on(exec.advance(Duration::days(1) + Duration::seconds(1)));
    let fire_s = t.elapsed().as_secs_f64();
    if fired != n {
        bail!("{fired} of {n} timers fired");
    }
    let peak = proc_status_mb("VmHWM");
    let step = (n / 10_000).max(1);
    let sample = lateness(&engine, (1..=n as u64).step_by(step))?;
    Ok(TimerReport {
        case: "timers",
        clock: "virtual",
        timers: n,
        schedule_seconds: (schedule_s * 1000.0).round() / 1000.0,
        schedule_per_s: (n as f64 / schedule_s).round(),
        fire_seconds: (fire_s * 1000.0).round() / 1000.0,
        fire_per_s: (n as f64 / fire_s).round(),
        lateness_ms_p50: pct(&sample, 0.5),
        lateness_ms_p99: pct(&sample, 0.99),
        lateness_ms_max: pct(&sample, 1.0),
        lateness_sampled: sample.len(),
        rss_before_mb: rss_before,
        rss_scheduled_mb: rss_scheduled,
        peak_rss_mb: peak,
        queue_loaded,
    })
}

fn real_run(n: usize, root: &Path) -> anyhow::Result<TimerReport> {
    reset_peak_rss();
    let rss_before = proc_status_mb("VmRSS");
    let dir = temp_dir(root, "timers-real")?;
    let engine =
        Engine::builder().data_dir_with(&dir.0, Durability::Flush).map_err(explain)?.build().map_err(explain)?;
    engine.deploy("bench-timer.yaml", PROCESS).map_err(explain)?;
    let clock = SystemClock;
    // All due within one second, far enough ahead for scheduling to finish first.
    let estimate = Duration::milliseconds((n as i64).max(2_000));
    let second = clock.now() + estimate + Duration::seconds(2);
    let second = second - Duration::milliseconds(second.timestamp_subsec_millis() as i64);
    let schedule_s = schedule(&engine, n, 32, |i| second + Duration::milliseconds((i % 1000) as i64))?;
    if clock.now() >= second {
        bail!("scheduling took {schedule_s:.1}s, past the due second; use a smaller --timers-real");
    }
    let exec = Executor::new(engine.clone()).concurrency(64);
    let queue_loaded = exec.queued();
    let rss_scheduled = proc_status_mb("VmRSS");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let store_engine = engine.clone();
    let (fire_s, ok) = rt.block_on(async move {
        let runner = tokio::spawn(async move {
            exec.run(async {
                stopped.await.ok();
            })
            .await
        });
        // Wait until the due index is empty: every timer fired and committed.
        let deadline = Instant::now() + std::time::Duration::from_secs(600);
        let mut first_due_seen = None;
        let mut ok = false;
        while Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if first_due_seen.is_none() && SystemClock.now() >= second {
                first_due_seen = Some(Instant::now());
            }
            if nagare_engine::internals::store(&store_engine).due_after(None, 1).map(|v| v.is_empty()).unwrap_or(false)
            {
                ok = true;
                break;
            }
        }
        let _ = stop.send(());
        let _ = runner.await;
        (first_due_seen.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0), ok)
    });
    if !ok {
        bail!("the timers did not all fire within 10 minutes");
    }
    let peak = proc_status_mb("VmHWM");
    let all = lateness(&engine, 1..=n as u64)?;
    Ok(TimerReport {
        case: "timers",
        clock: "real",
        timers: n,
        schedule_seconds: (schedule_s * 1000.0).round() / 1000.0,
        schedule_per_s: (n as f64 / schedule_s).round(),
        fire_seconds: (fire_s * 1000.0).round() / 1000.0,
        fire_per_s: if fire_s > 0.0 { (n as f64 / fire_s).round() } else { 0.0 },
        lateness_ms_p50: pct(&all, 0.5),
        lateness_ms_p99: pct(&all, 0.99),
        lateness_ms_max: pct(&all, 1.0),
        lateness_sampled: all.len(),
        rss_before_mb: rss_before,
        rss_scheduled_mb: rss_scheduled,
        peak_rss_mb: peak,
        queue_loaded,
    })
}

pub fn run(out: &Out, ctx: &Ctx, a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let temp_root = ctx.temp_root();
    let n_virtual = a.timers.unwrap_or(1_000_000);
    let n_real = a.timers_real.unwrap_or(10_000);
    let mut reports = Vec::new();
    if a.baseline {
        eprintln!("baseline: {n_virtual} instances waiting on a user task, no timers…");
        reports.push(baseline_run(n_virtual, temp_root)?);
    } else if n_real > 0 {
        eprintln!("scheduling {n_real} timers due within one second on the real clock…");
        reports.push(real_run(n_real, temp_root)?);
    }
    if n_virtual > 0 && !a.baseline {
        eprintln!("scheduling {n_virtual} timers on a virtual clock…");
        reports.push(virtual_run(n_virtual, temp_root)?);
    }
    let lines: Vec<PeersLine> = reports.iter().map(peers_line).collect();
    if out.json {
        for (r, l) in reports.iter().zip(&lines) {
            println!("{}", serde_json::to_string(r)?);
            l.print()?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(&[
        "clock",
        "timers",
        "schedule/s",
        "fire/s",
        "late p50 ms",
        "late p99 ms",
        "late max ms",
        "RSS before",
        "RSS scheduled",
        "peak RSS",
        "queue loaded",
    ])
    .right(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for r in &reports {
        t.row(vec![
            r.clock.into(),
            r.timers.to_string(),
            format!("{:.0}", r.schedule_per_s),
            format!("{:.0}", r.fire_per_s),
            format!("{:.1}", r.lateness_ms_p50),
            format!("{:.1}", r.lateness_ms_p99),
            format!("{:.1}", r.lateness_ms_max),
            format!("{:.0} MiB", r.rss_before_mb),
            format!("{:.0} MiB", r.rss_scheduled_mb),
            format!("{:.0} MiB", r.peak_rss_mb),
            r.queue_loaded.to_string(),
        ]);
    }
    println!();
    t.print();
    println!();
    for r in &reports {
        println!("{}", serde_json::to_string(r)?);
    }
    for l in &lines {
        l.print()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The peers-shaped line of a run: n = timers (instances for the baseline), ips =
/// timers fired per second (scheduled per second for the baseline), p50/p99 = lateness.
fn peers_line(r: &TimerReport) -> PeersLine {
    let baseline = r.clock == "baseline";
    let (n, secs) = if baseline { (r.schedule_per_s as usize, 1.0) } else { (r.timers, r.fire_seconds) };
    let mut l = PeersLine::new("timers", r.clock, 2, n, secs, &Latencies::default());
    if baseline {
        l.n = (r.schedule_seconds * r.schedule_per_s).round() as usize;
        l.seconds = r.schedule_seconds;
    }
    l.p50_ms = r.lateness_ms_p50;
    l.p99_ms = r.lateness_ms_p99;
    l.rss_start_mb = round(r.rss_before_mb, 1);
    l.peak_rss_mb = round(r.peak_rss_mb, 1);
    l
}
