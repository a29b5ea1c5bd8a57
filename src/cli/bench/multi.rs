//! `nagare bench --case multi`: one instance whose service task runs once per item
//! (multi-instance), durable (fsync, group commit), with an in-process connector that
//! answers at once; the executor runs the calls with its usual concurrency.
//!
//! Reports, for all-at-once and one-after-another items: items per second, store
//! commits (one for the start and one per finished item: a bounded number, no
//! per-item bookkeeping commits), the size of the instance's state when all items
//! are running (each commit writes it whole, which is what limits large lists), and
//! the peak RSS.

use super::measure::{proc_status_mb, reset_peak_rss, round, temp_dir, Latencies, PeersLine};
use super::{BenchArgs, Ctx};
use crate::cli::explain;
use crate::output::{Out, Table};
use anyhow::bail;
use nagare_engine::runtime::{HistoryEvent, Status};
use nagare_engine::store::Durability;
use nagare_engine::{Engine, Executor, FnConnector, StartOptions, Vars};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

fn process(sequential: bool) -> String {
    format!(
        r#"
id: bench-multi
variables:
  items: {{ type: list, required: true }}
  ids: {{ type: list }}
start: {{ next: each }}
nodes:
  each:
    service: bench.add
    with: {{ item: item }}
    multi_instance: {{ for_each: items, as: item, sequential: {sequential}, output: result.id, into: ids }}
    next: done
  done: {{ end: }}
"#
    )
}

#[derive(Serialize)]
struct MultiReport {
    case: &'static str,
    mode: &'static str,
    items: usize,
    seconds: f64,
    items_per_s: f64,
    commits: usize,
    state_bytes_running: usize,
    peak_rss_mb: f64,
    /// Time from the start to each item's result, p50 / p99.
    item_p50_ms: f64,
    item_p99_ms: f64,
}

fn one(items: usize, sequential: bool, root: &Path) -> anyhow::Result<MultiReport> {
    reset_peak_rss();
    let dir = temp_dir(root, "multi")?;
    let engine = Engine::builder()
        .data_dir_with(&dir.0, Durability::Flush)
        .map_err(explain)?
        .connector(
            "bench.add",
            FnConnector(|c: &nagare_engine::Call| Ok(json!({ "id": c.input["item"].as_u64().unwrap_or(0) + 1 }))),
        )
        .build()
        .map_err(explain)?;
    engine.deploy("bench-multi.yaml", &process(sequential)).map_err(explain)?;
    let list: Vec<u64> = (0..items as u64).collect();
    let vars: Vars = [("items".to_string(), json!(list))].into();
    let started = Instant::now();
    let inst = engine.start("bench-multi", vars, StartOptions::default()).map_err(explain)?;
    let state_bytes_running = serde_json::to_vec(&inst).map(|v| v.len()).unwrap_or(0);
    let exec = Executor::new(engine.clone()).concurrency(64);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = engine.clone();
    let id = inst.id;
    let done = rt.block_on(async move {
        let runner = tokio::spawn(async move {
            exec.run(async {
                stopped.await.ok();
            })
            .await
        });
        let deadline = Instant::now() + std::time::Duration::from_secs(600);
        let mut done = false;
        while Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            if watch.instance(id).map(|i| i.status == Status::Completed).unwrap_or(false) {
                done = true;
                break;
            }
        }
        let _ = stop.send(());
        let _ = runner.await;
        done
    });
    let seconds = started.elapsed().as_secs_f64();
    if !done {
        bail!("the items did not finish within 10 minutes");
    }
    let last = engine.instance(id).map_err(explain)?;
    let ids = last.vars.get("ids").and_then(|v| v.as_array()).map_or(0, Vec::len);
    if ids != items {
        bail!("{ids} results collected for {items} items");
    }
    let history = engine.history(id).map_err(explain)?;
    let finished = history.iter().filter(|h| matches!(h.event, HistoryEvent::JobSucceeded { .. })).count();
    let begun = history.first().map(|h| h.at).unwrap_or_else(|| engine.now());
    let item_lat = Latencies::new(
        history
            .iter()
            .filter(|h| matches!(h.event, HistoryEvent::JobSucceeded { .. }))
            .map(|h| (h.at - begun).to_std().unwrap_or_default())
            .collect(),
    );
    Ok(MultiReport {
        case: "multi",
        mode: if sequential { "sequential" } else { "parallel" },
        items,
        seconds: (seconds * 1000.0).round() / 1000.0,
        items_per_s: (items as f64 / seconds).round(),
        // The start, then one event per finished call.
        commits: 1 + finished,
        state_bytes_running,
        peak_rss_mb: proc_status_mb("VmHWM"),
        item_p50_ms: item_lat.ms(0.50),
        item_p99_ms: item_lat.ms(0.99),
    })
}

pub fn run(out: &Out, ctx: &Ctx, a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let temp_root = ctx.temp_root();
    let items = a.n.unwrap_or(1_000);
    if items == 0 || items > 10_000 {
        bail!("--n (items) must be 1 to 10000, the multi-instance limit");
    }
    let mut reports = Vec::new();
    for sequential in [false, true] {
        eprintln!("{} items {}…", items, if sequential { "one after another" } else { "at once" });
        reports.push(one(items, sequential, temp_root)?);
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
        "mode",
        "items",
        "seconds",
        "items/s",
        "item p50 ms",
        "item p99 ms",
        "commits",
        "state bytes",
        "peak RSS MiB",
    ])
    .right(&[1, 2, 3, 4, 5, 6, 7, 8]);
    for r in &reports {
        t.row(vec![
            r.mode.into(),
            r.items.to_string(),
            format!("{:.2}", r.seconds),
            format!("{:.0}", r.items_per_s),
            format!("{:.1}", r.item_p50_ms),
            format!("{:.1}", r.item_p99_ms),
            r.commits.to_string(),
            r.state_bytes_running.to_string(),
            format!("{:.1}", r.peak_rss_mb),
        ]);
    }
    t.print();
    println!();
    for l in &lines {
        l.print()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The peers-shaped line of a run: n = items, ips = items per second, p50/p99 = an
/// item's time from the start to its result.
fn peers_line(r: &MultiReport) -> PeersLine {
    let mut l = PeersLine::new("multi", format!("durable-{}", r.mode), 64, r.items, r.seconds, &Latencies::default());
    l.p50_ms = r.item_p50_ms;
    l.p99_ms = r.item_p99_ms;
    l.snapshots_per_instance = r.commits as f64 / r.items as f64;
    l.snapshot_avg_bytes = r.state_bytes_running as u64;
    l.peak_rss_mb = round(r.peak_rss_mb, 1);
    l
}
