//! `nagare bench`: throughput on the three processes of `shared/peers`, printed in
//! the peers' JSON-line shape so the results sit in the same table.
//!
//! Each run deploys one process on a fresh engine (in memory, or durable on a temp
//! directory with fsync and group commit), warms up, then runs N instances from C
//! threads, each looping: start an instance (for `usertask`, complete its task),
//! check the result.

use crate::cli::explain;
use crate::output::{Out, Table};
use crate::BenchArgs;
use anyhow::{anyhow, bail, Context};
use nagare_engine::runtime::{Instance, Outcome, Status};
use nagare_engine::store::Durability;
use nagare_engine::{Engine, StartOptions, Vars};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    id: &'static str,
    file: &'static str,
    yaml: &'static str,
    /// Flow nodes executed per instance, start and end events included.
    steps: u32,
    /// Store commits per instance.
    commits: u32,
}

const CASES: &[Case] = &[
    Case {
        name: "straight",
        id: "bench-straight",
        file: "processes/bench-straight.yaml",
        yaml: include_str!("../processes/bench-straight.yaml"),
        steps: 12,
        commits: 1,
    },
    Case {
        name: "gateway",
        id: "bench-gateway",
        file: "processes/bench-gateway.yaml",
        yaml: include_str!("../processes/bench-gateway.yaml"),
        steps: 10,
        commits: 1,
    },
    Case {
        name: "usertask",
        id: "bench-usertask",
        file: "processes/bench-usertask.yaml",
        yaml: include_str!("../processes/bench-usertask.yaml"),
        steps: 3,
        commits: 2,
    },
];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Mem,
    Durable,
}

/// One result line, keys as in `shared/peers/py/bench.py`.
#[derive(Serialize)]
struct Report {
    engine: &'static str,
    version: &'static str,
    runtime: String,
    case: &'static str,
    mode: String,
    n: usize,
    warmup: usize,
    seconds: f64,
    ips: f64,
    us_per_instance: f64,
    steps_per_instance: f64,
    snapshots_per_instance: f64,
    snapshot_avg_bytes: u64,
    deploy_ms: f64,
    rss_start_mb: f64,
    peak_rss_mb: f64,
    /// Time of one instance from start to its end (two commits for `usertask`).
    p50_ms: f64,
    p99_ms: f64,
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// A field of /proc/self/status in MiB (VmRSS, VmHWM); 0 where there is none.
pub(crate) fn proc_status_mb(field: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else { return 0.0 };
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Reset VmHWM so that each run reports its own peak (Linux; best effort).
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn run(out: &Out, data: &Path, a: BenchArgs, data_given: bool) -> anyhow::Result<ExitCode> {
    let cases: Vec<&Case> = CASES.iter().filter(|c| a.case == "all" || a.case == c.name).collect();
    let modes: Vec<Mode> = match a.mode.as_str() {
        "mem" => vec![Mode::Mem],
        "durable" => vec![Mode::Durable],
        _ => vec![Mode::Mem, Mode::Durable],
    };
    let temp_root = if data_given { data.to_path_buf() } else { std::env::temp_dir() };
    if a.case == "timers" || a.suite.as_deref() == Some("timers") {
        return crate::bench_timers::run(out, &temp_root, &a);
    }
    if a.case == "multi" {
        return crate::bench_multi::run(out, &temp_root, a.n);
    }
    if a.case == "archive" {
        return crate::bench_archive::run(out, &temp_root, a.n);
    }
    if a.case == "priority" {
        return crate::bench_priority::run(out, a.n, a.concurrency);
    }
    if a.case == "inbox" {
        return crate::inbox_bench::run(out, &temp_root, a.n, a.concurrency);
    }
    let cases: Vec<Case> = match &a.from_bpmn {
        Some(dir) => cases.iter().map(|c| from_bpmn(c, dir)).collect::<anyhow::Result<_>>()?,
        None => cases.into_iter().copied().collect(),
    };
    let mut reports = Vec::new();
    for mode in &modes {
        for case in &cases {
            let (n, c) = match mode {
                Mode::Mem => (a.n.unwrap_or(20_000), a.concurrency.unwrap_or(1)),
                Mode::Durable => (a.n.unwrap_or(5_000), a.concurrency.unwrap_or(64)),
            };
            if n == 0 {
                bail!("--n must be at least 1");
            }
            if a.nodes > 1 && (a.store.is_none() || *mode == Mode::Mem) {
                bail!("--nodes {} needs --mode durable and --store postgres://…", a.nodes);
            }
            let mut r = run_one(case, *mode, n, c.max(1), &temp_root, a.store.as_deref(), usize::from(a.nodes))?;
            if a.from_bpmn.is_some() {
                r.runtime.push_str(", imported from BPMN");
            }
            if out.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                eprintln!(
                    "{:<9} {:<12} {:>9.0} inst/s  p50 {:.2} ms  p99 {:.2} ms",
                    r.case, r.mode, r.ips, r.p50_ms, r.p99_ms
                );
            }
            reports.push(r);
        }
    }
    if !out.json {
        let mut t = Table::new(&[
            "case",
            "mode",
            "n",
            "seconds",
            "inst/s",
            "us/inst",
            "p50 ms",
            "p99 ms",
            "deploy ms",
            "start RSS MiB",
            "peak RSS MiB",
        ])
        .right(&[2, 3, 4, 5, 6, 7, 8, 9, 10]);
        for r in &reports {
            t.row(vec![
                r.case.into(),
                r.mode.clone(),
                r.n.to_string(),
                format!("{:.3}", r.seconds),
                format!("{:.0}", r.ips),
                format!("{:.1}", r.us_per_instance),
                format!("{:.2}", r.p50_ms),
                format!("{:.2}", r.p99_ms),
                format!("{:.2}", r.deploy_ms),
                format!("{:.1}", r.rss_start_mb),
                format!("{:.1}", r.peak_rss_mb),
            ]);
        }
        println!();
        t.print();
        println!();
        for r in &reports {
            println!("{}", serde_json::to_string(r)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Drops a PostgreSQL bench run's schema when the run ends, also on error.
pub(crate) struct PgSchema {
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    url: String,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    name: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        if let Err(e) = nagare_engine::store::PgStore::drop_schema(&self.url, &self.name) {
            eprintln!("warning: could not drop bench schema {}: {e}", self.name);
        }
    }
}

/// A fresh PostgreSQL store for one durable run: a schema of its own, a connection
/// per thread in flight (at most the pool's limit).
#[cfg(feature = "postgres")]
fn pg_bench_store(
    builder: nagare_engine::EngineBuilder,
    url: &str,
    case: &str,
    c: usize,
) -> anyhow::Result<(nagare_engine::EngineBuilder, PgSchema, PgNodes)> {
    use nagare_engine::store::pg::MAX_POOL_SIZE;
    use nagare_engine::store::{PgOptions, PgStore};
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let name = format!("bench_{}_{case}_{}", std::process::id(), stamp.as_millis());
    let schema = PgSchema { url: url.to_string(), name: name.clone() };
    let given = PgOptions::from_store(url).map_err(|e| anyhow!("--store: {e}"))?;
    let pool_size = if url.contains("pool_size=") { given.pool_size } else { c.clamp(1, MAX_POOL_SIZE) };
    let opts = PgOptions { pool_size, ..given.schema(name) };
    let store = PgStore::open(&opts).map_err(|e| anyhow!("{e}"))?;
    Ok((builder.store(store), schema, PgNodes(opts)))
}

/// How to open more nodes on a bench run's schema.
#[cfg(feature = "postgres")]
pub(crate) struct PgNodes(nagare_engine::store::PgOptions);

#[cfg(feature = "postgres")]
impl PgNodes {
    fn engine(&self) -> anyhow::Result<Engine> {
        let store = nagare_engine::store::PgStore::open(&self.0).map_err(|e| anyhow!("{e}"))?;
        Engine::builder().connectors(nagare_connectors::builtin()).store(store).build().map_err(explain)
    }
}

#[cfg(not(feature = "postgres"))]
pub(crate) struct PgNodes;

#[cfg(not(feature = "postgres"))]
impl PgNodes {
    fn engine(&self) -> anyhow::Result<Engine> {
        bail!("--nodes: this nagare was built without the `postgres` feature")
    }
}

#[cfg(not(feature = "postgres"))]
fn pg_bench_store(
    _: nagare_engine::EngineBuilder,
    _: &str,
    _: &str,
    _: usize,
) -> anyhow::Result<(nagare_engine::EngineBuilder, PgSchema, PgNodes)> {
    bail!("--store: this nagare was built without the `postgres` feature")
}

/// Removes the durable run's directory when the run ends, also on error.
pub(crate) struct TempDir(pub(crate) PathBuf);

/// A fresh directory `nagare-bench-<pid>-<name>-<nanos>` under `root`, removed on drop.
pub(crate) fn temp_dir(root: &Path, name: &str) -> anyhow::Result<TempDir> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let dir = root.join(format!("nagare-bench-{}-{name}-{}", std::process::id(), stamp.as_nanos()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(TempDir(dir))
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_one(
    case: &Case,
    mode: Mode,
    n: usize,
    c: usize,
    temp_root: &Path,
    store: Option<&str>,
    nodes: usize,
) -> anyhow::Result<Report> {
    reset_peak_rss();
    let rss_start = proc_status_mb("VmRSS");
    let builder = Engine::builder().connectors(nagare_connectors::builtin());
    let mut _dir = None;
    let mut _schema = None;
    let mut more_nodes = None;
    let builder = match mode {
        Mode::Mem => builder.in_memory(),
        Mode::Durable if store.is_some() => {
            let (b, schema, more) = pg_bench_store(builder, store.unwrap_or_default(), case.name, c)?;
            _schema = Some(schema);
            more_nodes = Some(more);
            b
        }
        Mode::Durable => {
            let dir = temp_dir(temp_root, case.name)?;
            let b = builder.data_dir_with(&dir.0, Durability::Flush).map_err(explain)?;
            _dir = Some(dir);
            b
        }
    };
    let engine = builder.build().map_err(explain)?;

    let t = Instant::now();
    engine.deploy(case.file, case.yaml).map_err(explain)?;
    let deploy_ms = t.elapsed().as_secs_f64() * 1000.0;
    // Other nodes open the store after the deploy and load the definition from it.
    let mut engines = vec![engine.clone()];
    for _ in 1..nodes {
        engines.push(more_nodes.as_ref().ok_or_else(|| anyhow!("--nodes needs --store"))?.engine()?);
    }

    // Warm-up (not timed); also measures the size of the stored instance records.
    let warmup = (n / 10).clamp(1, 500);
    let mut snap_bytes = 0u64;
    let mut snaps = 0u64;
    for _ in 0..warmup {
        for inst in one(&engine, &engine, case).map_err(|e| anyhow!("{} ({}): {e}", case.name, case.id))? {
            snap_bytes += serde_json::to_vec(&inst)?.len() as u64;
            snaps += 1;
        }
    }

    let remaining = AtomicUsize::new(n);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let latencies: Mutex<Vec<f64>> = Mutex::new(Vec::with_capacity(n));
    let t = Instant::now();
    std::thread::scope(|s| {
        for thread in 0..c {
            let (first, second) = (&engines[thread % nodes], &engines[(thread + 1) % nodes]);
            let (remaining, failure, latencies) = (&remaining, &failure, &latencies);
            s.spawn(move || {
                let mut mine = Vec::new();
                while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1)).is_ok() {
                    let began = Instant::now();
                    if let Err(e) = one(first, second, case) {
                        *failure.lock().expect("failure lock") = Some(e);
                        remaining.store(0, Ordering::Relaxed);
                        return;
                    }
                    mine.push(began.elapsed().as_secs_f64() * 1000.0);
                }
                latencies.lock().expect("latency lock").extend(mine);
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    let mut latencies = latencies.into_inner().expect("latency lock");
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    if let Some(e) = failure.into_inner().expect("failure lock") {
        bail!("{}: {e}", case.name);
    }
    let peak = proc_status_mb("VmHWM");
    drop(engines);
    drop(engine);

    let mode_name = match mode {
        Mode::Mem if c == 1 => "mem".to_string(),
        Mode::Mem => format!("mem-c{c}"),
        Mode::Durable if store.is_some() && nodes > 1 => format!("durable-pg-{nodes}nodes-c{c}"),
        Mode::Durable if store.is_some() => format!("durable-pg-c{c}"),
        Mode::Durable => format!("durable-c{c}"),
    };
    let durable = mode == Mode::Durable;
    Ok(Report {
        engine: "nagare",
        version: env!("CARGO_PKG_VERSION"),
        runtime: format!("rust ({c} thread{})", if c == 1 { "" } else { "s" }),
        case: case.name,
        mode: mode_name,
        n,
        warmup,
        seconds: round(secs, 4),
        ips: round(n as f64 / secs, 1),
        us_per_instance: round(secs / n as f64 * 1e6, 1),
        steps_per_instance: case.steps as f64,
        snapshots_per_instance: if durable { case.commits as f64 } else { 0.0 },
        snapshot_avg_bytes: if durable && snaps > 0 { snap_bytes / snaps } else { 0 },
        deploy_ms: round(deploy_ms, 2),
        rss_start_mb: round(rss_start, 1),
        peak_rss_mb: round(peak, 1),
        p50_ms: round(pct(0.50).copied().unwrap_or(0.0), 3),
        p99_ms: round(pct(0.99).copied().unwrap_or(0.0), 3),
    })
}

/// The case's process imported from the peers' BPMN file `<dir>/<case>.bpmn`
/// (`shared/peers/processes/python` or `.../js`) instead of its YAML. The
/// strings live for the rest of the command, as the built-in cases' do.
fn from_bpmn(case: &Case, dir: &Path) -> anyhow::Result<Case> {
    let path = dir.join(format!("{}.bpmn", case.name));
    let bytes =
        crate::cli::files::read_process_file(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.display().to_string();
    let text = nagare_engine::bpmn::decode(&bytes).map_err(|d| anyhow!("{}", d.finish(&name)))?;
    // The peers' harness completes the user task with `approved`, which the
    // model does not declare (BPMN has no variable declarations).
    let mut opts = nagare_engine::bpmn::ImportOptions::default();
    if case.name == "usertask" {
        opts.declare.insert("approved".into(), "bool".into());
    }
    let imported = nagare_engine::bpmn::import_with(text, &name, &opts).map_err(|d| anyhow!("{d}"))?;
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    Ok(Case { id: leak(imported.def.id.clone()), file: leak(name), yaml: leak(imported.yaml), ..*case })
}

fn num(inst: &Instance, name: &str) -> Option<f64> {
    inst.vars.get(name).and_then(Value::as_f64)
}

/// Run one instance to its end and check it; returns the states committed. A user
/// task is completed through `then` (another node, when there are several).
fn one(engine: &Engine, then: &Engine, case: &Case) -> Result<Vec<Instance>, String> {
    let vars: Vars = match case.name {
        "straight" => [("count".to_string(), json!(0))].into(),
        _ => Vars::new(),
    };
    let inst = engine.start(case.id, vars, StartOptions::default()).map_err(|e| e.to_string())?;
    let mut states = Vec::with_capacity(2);
    let last = if case.name == "usertask" {
        let task = inst.open_task_ids().next().ok_or("the instance does not wait on a task")?.to_string();
        states.push(inst);
        let data: Vars = [("approved".to_string(), json!(true))].into();
        then.complete(&task, "bench", data, Outcome::Next).map_err(|e| e.to_string())?
    } else {
        inst
    };
    if last.status != Status::Completed {
        return Err(format!("instance {} is {}, not completed", last.id, last.status.as_str()));
    }
    let ok = match case.name {
        "straight" => num(&last, "count") == Some(10.0),
        "gateway" => {
            num(&last, "x") == Some(7.0)
                && last.vars.get("branch") == Some(&json!("A"))
                && num(&last, "p1") == Some(1.0)
                && num(&last, "p2") == Some(2.0)
                && num(&last, "p3") == Some(3.0)
        }
        _ => last.vars.get("approved") == Some(&json!(true)),
    };
    if !ok {
        return Err(format!("wrong result: {:?}", last.vars));
    }
    states.push(last);
    Ok(states)
}
