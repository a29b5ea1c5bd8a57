//! `nagare bench --case priority`: the executor's fair share under a flood.
//!
//! Process `flood` (priority 10) queues N connector jobs (default 10,000) at once;
//! then, while the executor works through them, process `other` (priority 50)
//! starts one instance every 5 ms (200 in all). The connector answers after 2 ms;
//! the executor runs C calls at once (default 8). Reported: the latency of
//! `other`'s jobs from its instance's start to its call (p50/p99/max), the flood's
//! throughput, and the flood's backlog when `other` began: in due order (FIFO)
//! `other`'s first job would have waited about backlog / throughput.
//!
//! In memory, so that the figures are the executor's, not the disk's.

use crate::cli::explain;
use crate::output::{Out, Table};
use anyhow::anyhow;
use nagare_engine::{AsyncFnConnector, Engine, Executor, StartOptions};
use serde::Serialize;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CALL: Duration = Duration::from_millis(2);
const OTHERS: usize = 200;
const OTHER_EVERY: Duration = Duration::from_millis(5);

fn yaml(id: &str, priority: u8) -> String {
    format!("id: {id}\npriority: {priority}\nstart: {{ next: work }}\nnodes:\n  work: {{ service: bench.work, next: done }}\n  done: {{ end: }}\n")
}

#[derive(Serialize)]
struct Report {
    case: &'static str,
    flood_jobs: usize,
    flood_priority: u8,
    other_jobs: usize,
    other_priority: u8,
    concurrency: usize,
    call_ms: f64,
    flood_backlog_at_first_other: usize,
    flood_jobs_per_s: f64,
    fifo_wait_estimate_ms: f64,
    other_p50_ms: f64,
    other_p99_ms: f64,
    other_max_ms: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn run(out: &Out, a: &super::BenchArgs) -> anyhow::Result<ExitCode> {
    let n = a.n.unwrap_or(10_000);
    let concurrency = a.concurrency.unwrap_or(8).max(1);
    // instance id → when its call began.
    let called: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let seen = called.clone();
    let engine = Engine::builder()
        .in_memory()
        .connector(
            "bench.work",
            AsyncFnConnector(move |c: nagare_engine::Call| {
                seen.lock().expect("lock").insert(c.instance, Instant::now());
                async move {
                    tokio::time::sleep(CALL).await;
                    Ok(serde_json::json!({}))
                }
            }),
        )
        .build()
        .map_err(explain)?;
    engine.deploy("flood.yaml", &yaml("flood", 10)).map_err(explain)?;
    engine.deploy("other.yaml", &yaml("other", 50)).map_err(explain)?;
    for _ in 0..n {
        engine.start("flood", Default::default(), StartOptions::default()).map_err(explain)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let exec = Executor::new(engine.clone()).concurrency(concurrency);
    let runner = rt.spawn(async move {
        exec.run(async {
            let _ = stop_rx.await;
        })
        .await
    });
    let flood_began = Instant::now();
    // Let the flood get going, then measure how much of it is left.
    std::thread::sleep(Duration::from_millis(50));
    let flood_done_at_first = called.lock().expect("lock").len();
    let backlog = n.saturating_sub(flood_done_at_first);
    let mut started: Vec<(u64, Instant)> = Vec::with_capacity(OTHERS);
    for _ in 0..OTHERS {
        let at = Instant::now();
        let inst = engine.start("other", Default::default(), StartOptions::default()).map_err(explain)?;
        started.push((inst.id, at));
        std::thread::sleep(OTHER_EVERY);
    }
    // Wait for every call (flood and others).
    let deadline = Instant::now() + Duration::from_secs(600);
    while called.lock().expect("lock").len() < n + OTHERS {
        if Instant::now() > deadline {
            return Err(anyhow!("the executor did not run every job within 10 minutes"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let flood_secs = flood_began.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    rt.block_on(runner)?;
    let calls = called.lock().expect("lock");
    let mut lat: Vec<f64> =
        started.iter().map(|(id, at)| calls[id].saturating_duration_since(*at).as_secs_f64() * 1000.0).collect();
    lat.sort_by(f64::total_cmp);
    let per_s = (n + OTHERS) as f64 / flood_secs;
    let round3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let report = Report {
        case: "priority",
        flood_jobs: n,
        flood_priority: 10,
        other_jobs: OTHERS,
        other_priority: 50,
        concurrency,
        call_ms: CALL.as_secs_f64() * 1000.0,
        flood_backlog_at_first_other: backlog,
        flood_jobs_per_s: per_s.round(),
        fifo_wait_estimate_ms: (backlog as f64 / per_s * 1000.0).round(),
        other_p50_ms: round3(percentile(&lat, 0.50)),
        other_p99_ms: round3(percentile(&lat, 0.99)),
        other_max_ms: round3(lat.last().copied().unwrap_or(0.0)),
    };
    if out.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let r = &report;
    let mut t = Table::new(&["measure", "value"]).right(&[1]);
    for (k, v) in [
        ("flood: jobs (priority)".to_string(), format!("{} ({})", r.flood_jobs, r.flood_priority)),
        ("other: jobs (priority), one per 5 ms".into(), format!("{} ({})", r.other_jobs, r.other_priority)),
        ("calls in flight / call time".into(), format!("{} / {} ms", r.concurrency, r.call_ms)),
        ("flood backlog when other began".into(), r.flood_backlog_at_first_other.to_string()),
        ("jobs/s".into(), format!("{:.0}", r.flood_jobs_per_s)),
        ("FIFO wait estimate (backlog / throughput)".into(), format!("{:.0} ms", r.fifo_wait_estimate_ms)),
        (
            "other: start → call p50 / p99 / max".into(),
            format!("{:.2} / {:.2} / {:.2} ms", r.other_p50_ms, r.other_p99_ms, r.other_max_ms),
        ),
    ] {
        t.row(vec![k, v]);
    }
    t.print();
    Ok(ExitCode::SUCCESS)
}
