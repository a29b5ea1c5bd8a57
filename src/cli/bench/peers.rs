//! `nagare bench` on the peers' three processes (`shared/peers`) and the
//! one-service-task process, printed in the peers' JSON-line shape.
//!
//! Each run deploys one process on a fresh engine (in memory, or durable: sled on
//! a temp directory with fsync and group commit, or PostgreSQL with 1–16 nodes),
//! warms up, then runs N instances from C threads, each looping: start an instance
//! (for `usertask`, complete its task; for `service`, wait until the executor ran
//! its call and the instance ended), check the result.

use super::measure::{proc_status_mb, reset_peak_rss, round, Latencies, PeersLine};
use super::stores::{self, Held, PgNodes};
use super::{BenchArgs, Case, Ctx, ModeArg};
use crate::cli::explain;
use crate::output::{Out, Table};
use anyhow::{anyhow, bail};
use nagare_engine::runtime::{Instance, InstanceId, Outcome, Status};
use nagare_engine::{Engine, EngineBuilder, EventKind, Executor, FnConnector, StartOptions, Vars};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
pub struct PeerCase {
    pub case: Case,
    pub name: &'static str,
    pub id: &'static str,
    pub file: &'static str,
    pub yaml: &'static str,
    /// Flow nodes executed per instance, start and end events included.
    pub steps: u32,
    /// Store commits per instance.
    pub commits: u32,
}

pub const CASES: &[PeerCase] = &[
    PeerCase {
        case: Case::Straight,
        name: "straight",
        id: "bench-straight",
        file: "processes/bench-straight.yaml",
        yaml: include_str!("../../../processes/bench-straight.yaml"),
        steps: 12,
        commits: 1,
    },
    PeerCase {
        case: Case::Gateway,
        name: "gateway",
        id: "bench-gateway",
        file: "processes/bench-gateway.yaml",
        yaml: include_str!("../../../processes/bench-gateway.yaml"),
        steps: 10,
        commits: 1,
    },
    PeerCase {
        case: Case::Usertask,
        name: "usertask",
        id: "bench-usertask",
        file: "processes/bench-usertask.yaml",
        yaml: include_str!("../../../processes/bench-usertask.yaml"),
        steps: 3,
        commits: 2,
    },
    PeerCase {
        case: Case::Service,
        name: "service",
        id: "bench-service",
        file: "bench-service.yaml",
        yaml: include_str!("bench-service.yaml"),
        steps: 3,
        // The start (with its job), the job's start count, its result.
        commits: 3,
    },
];

/// The connector the `service` case calls: answers at once.
pub const SERVICE_CONNECTOR: &str = "bench.answer";

/// An engine builder with the built-in connectors and `bench.answer`.
pub fn bench_builder() -> EngineBuilder {
    Engine::builder().connectors(nagare_connectors::builtin()).connector(
        SERVICE_CONNECTOR,
        FnConnector(|c: &nagare_engine::Call| Ok(json!({ "answer": c.input["question"].as_i64().unwrap_or(0) * 7 }))),
    )
}

/// The case's process imported from the peers' BPMN file `<dir>/<case>.bpmn`
/// (`shared/peers/processes/python` or `.../js`) instead of its YAML. The
/// strings live for the rest of the command, as the built-in cases' do.
fn from_bpmn(case: &PeerCase, dir: &std::path::Path) -> anyhow::Result<PeerCase> {
    use anyhow::Context;
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
    Ok(PeerCase { id: leak(imported.def.id.clone()), file: leak(name), yaml: leak(imported.yaml), ..*case })
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Mem,
    Durable,
}

pub fn run(out: &Out, ctx: &Ctx, case: Case, a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let cases: Vec<PeerCase> = CASES.iter().filter(|c| case == Case::All || case == c.case).copied().collect();
    let cases: Vec<PeerCase> = match &a.from_bpmn {
        // The peers ship BPMN files of their three processes only: `all` runs those.
        Some(_) if case == Case::Service => {
            bail!("--from-bpmn runs the peers' straight, gateway and usertask; service has no BPMN file")
        }
        Some(dir) => cases
            .iter()
            .filter(|c| c.case != Case::Service)
            .map(|c| from_bpmn(c, dir))
            .collect::<anyhow::Result<_>>()?,
        None => cases,
    };
    let modes: Vec<Mode> = match a.mode {
        ModeArg::Mem => vec![Mode::Mem],
        ModeArg::Durable => vec![Mode::Durable],
        ModeArg::All => vec![Mode::Mem, Mode::Durable],
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
            let mut r = run_one(case, *mode, n, c.max(1), ctx, a.store.as_deref(), usize::from(a.nodes))?;
            if a.from_bpmn.is_some() {
                r.runtime.push_str(", imported from BPMN");
            }
            if out.json {
                r.print()?;
            } else {
                r.say();
            }
            reports.push(r);
        }
    }
    if !out.json {
        print_table(&reports)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(reports: &[PeersLine]) -> anyhow::Result<()> {
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
    for r in reports {
        t.row(vec![
            r.case.clone(),
            r.mode.clone(),
            r.n.to_string(),
            format!("{:.3}", r.seconds),
            format!("{:.0}", r.ips),
            format!("{:.1}", r.us_per_instance),
            format!("{:.3}", r.p50_ms),
            format!("{:.3}", r.p99_ms),
            format!("{:.2}", r.deploy_ms),
            format!("{:.1}", r.rss_start_mb),
            format!("{:.1}", r.peak_rss_mb),
        ]);
    }
    println!();
    t.print();
    println!();
    for r in reports {
        r.print()?;
    }
    Ok(())
}

fn run_one(
    case: &PeerCase,
    mode: Mode,
    n: usize,
    c: usize,
    ctx: &Ctx,
    store: Option<&str>,
    nodes: usize,
) -> anyhow::Result<PeersLine> {
    reset_peak_rss();
    let rss_start = proc_status_mb("VmRSS");
    let mut _held: Option<Held> = None;
    let mut more_nodes: Option<PgNodes> = None;
    let builder = match mode {
        Mode::Mem => bench_builder().in_memory(),
        Mode::Durable => {
            let (b, held, more) = stores::durable(bench_builder(), ctx.temp_root(), store, case.name, c)?;
            _held = Some(held);
            more_nodes = more;
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
        engines.push(more_nodes.as_ref().ok_or_else(|| anyhow!("--nodes needs --store"))?.engine(bench_builder())?);
    }
    // The service case: each node runs its executor, as `nagare serve` does.
    let runner = if case.case == Case::Service { Some(ServiceRunner::start(&engines)?) } else { None };
    let waiters = runner.as_ref().map(|r| r.waiters.clone());
    let ctx1 = One { case, waiters: waiters.as_deref() };

    // Warm-up (not timed); also measures the size of the stored instance records.
    let warmup = (n / 10).clamp(1, 500);
    let mut snap_bytes = 0u64;
    let mut snaps = 0u64;
    for _ in 0..warmup {
        for inst in ctx1.one(&engine, &engine, true).map_err(|e| anyhow!("{} ({}): {e}", case.name, case.id))? {
            snap_bytes += serde_json::to_vec(&inst)?.len() as u64;
            snaps += 1;
        }
    }

    let remaining = AtomicUsize::new(n);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let latencies: Mutex<Vec<Duration>> = Mutex::new(Vec::with_capacity(n));
    let t = Instant::now();
    std::thread::scope(|s| {
        for thread in 0..c {
            let (first, second) = (&engines[thread % nodes], &engines[(thread + 1) % nodes]);
            let (remaining, failure, latencies, ctx1) = (&remaining, &failure, &latencies, &ctx1);
            s.spawn(move || {
                let mut mine = Vec::new();
                let mut k = 0usize;
                while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1)).is_ok() {
                    let began = Instant::now();
                    k += 1;
                    if let Err(e) = ctx1.one(first, second, k % 64 == 0) {
                        *failure.lock().expect("failure lock") = Some(e);
                        remaining.store(0, Ordering::Relaxed);
                        return;
                    }
                    mine.push(began.elapsed());
                }
                latencies.lock().expect("latency lock").extend(mine);
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    if let Some(r) = runner {
        r.stop();
    }
    let lat = Latencies::new(latencies.into_inner().expect("latency lock"));
    if let Some(e) = failure.into_inner().expect("failure lock") {
        bail!("{}: {e}", case.name);
    }
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
    let mut line = PeersLine::new(case.name, mode_name, c, n, secs, &lat);
    line.warmup = warmup;
    line.steps_per_instance = case.steps as f64;
    line.snapshots_per_instance = if durable { case.commits as f64 } else { 0.0 };
    line.snapshot_avg_bytes = if durable && snaps > 0 { snap_bytes / snaps } else { 0 };
    line.deploy_ms = round(deploy_ms, 2);
    line.rss_start_mb = round(rss_start, 1);
    Ok(line)
}

fn num(inst: &Instance, name: &str) -> Option<f64> {
    inst.vars.get(name).and_then(Value::as_f64)
}

/// How one instance is run for a case.
struct One<'a> {
    case: &'a PeerCase,
    /// For `service`: where the executor's completions are told.
    waiters: Option<&'a Waiters>,
}

impl One<'_> {
    /// Run one instance to its end and check it (`check`: also read back and check
    /// the variables of an instance that ends in the background); returns the states
    /// committed. A user task is completed through `then` (another node, when there
    /// are several).
    fn one(&self, engine: &Engine, then: &Engine, check: bool) -> Result<Vec<Instance>, String> {
        let case = self.case;
        let vars: Vars = match case.case {
            Case::Straight => [("count".to_string(), json!(0))].into(),
            _ => Vars::new(),
        };
        let inst = engine.start(case.id, vars, StartOptions::default()).map_err(|e| e.to_string())?;
        let mut states = Vec::with_capacity(2);
        let last = match case.case {
            Case::Usertask => {
                let task = inst.open_task_ids().next().ok_or("the instance does not wait on a task")?.to_string();
                states.push(inst);
                let data: Vars = [("approved".to_string(), json!(true))].into();
                then.complete(&task, "bench", data, Outcome::Next).map_err(|e| e.to_string())?
            }
            Case::Service => {
                let id = inst.id;
                states.push(inst);
                let waiters = self.waiters.ok_or("no executor runs the service calls")?;
                let status = waiters.wait(id, engine)?;
                if status != Status::Completed {
                    return Err(format!("instance {id} is {}, not completed", status.as_str()));
                }
                if !check {
                    return Ok(states);
                }
                engine.instance(id).map_err(|e| e.to_string())?
            }
            _ => inst,
        };
        if last.status != Status::Completed {
            return Err(format!("instance {} is {}, not completed", last.id, last.status.as_str()));
        }
        let ok = match case.case {
            Case::Straight => num(&last, "count") == Some(10.0),
            Case::Gateway => {
                num(&last, "x") == Some(7.0)
                    && last.vars.get("branch") == Some(&json!("A"))
                    && num(&last, "p1") == Some(1.0)
                    && num(&last, "p2") == Some(2.0)
                    && num(&last, "p3") == Some(3.0)
            }
            Case::Service => num(&last, "answer") == Some(42.0),
            _ => last.vars.get("approved") == Some(&json!(true)),
        };
        if !ok {
            return Err(format!("wrong result: {:?}", last.vars));
        }
        states.push(last);
        Ok(states)
    }
}

/// Instances that ended, told by the engines' event streams, and the bench threads
/// waiting for them. An end may be told before its thread waits.
#[derive(Default)]
pub struct Waiters(Mutex<HashMap<InstanceId, Slot>>);

enum Slot {
    Ended(Status),
    Waiting(mpsc::SyncSender<Status>),
}

impl Waiters {
    pub fn ended(&self, id: InstanceId, status: Status) {
        let mut map = self.0.lock().expect("waiters lock");
        match map.remove(&id) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(status);
            }
            _ => {
                map.insert(id, Slot::Ended(status));
            }
        }
    }

    /// Wait until instance `id` ended; its status. Looks at the store now and then,
    /// in case the event stream lagged and the end was never told.
    pub fn wait(&self, id: InstanceId, engine: &Engine) -> Result<Status, String> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut map = self.0.lock().expect("waiters lock");
            if let Some(Slot::Ended(status)) = map.remove(&id) {
                return Ok(status);
            }
            map.insert(id, Slot::Waiting(tx));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(status) => return Ok(status),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the waiter was dropped".into()),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let inst = engine.instance(id).map_err(|e| e.to_string())?;
                    if inst.status != Status::Running {
                        self.0.lock().expect("waiters lock").remove(&id);
                        return Ok(inst.status);
                    }
                    if Instant::now() > deadline {
                        return Err(format!("instance {id} did not end within 60 s"));
                    }
                }
            }
        }
    }
}

/// An executor per engine on a tokio runtime of its own, and a listener per
/// engine telling [`Waiters`] which instances ended.
pub struct ServiceRunner {
    pub waiters: Arc<Waiters>,
    stop: tokio::sync::watch::Sender<bool>,
    rt: tokio::runtime::Runtime,
    executors: Vec<tokio::task::JoinHandle<()>>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl ServiceRunner {
    pub fn start(engines: &[Engine]) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let waiters = Arc::new(Waiters::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (mut executors, mut listeners) = (Vec::new(), Vec::new());
        for engine in engines {
            let mut events = engine.subscribe();
            let w = waiters.clone();
            listeners.push(rt.spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(e) => {
                            if let EventKind::InstanceCompleted { status, .. } = e.kind {
                                w.ended(e.instance, status);
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
            let exec = Executor::new(engine.clone()).concurrency(64);
            let mut stopped = stopped.clone();
            executors.push(rt.spawn(async move {
                exec.run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
            }));
        }
        Ok(ServiceRunner { waiters, stop, rt, executors, listeners })
    }

    /// Stop the executors (letting calls in flight report) and the listeners.
    pub fn stop(self) {
        let _ = self.stop.send(true);
        let ServiceRunner { rt, executors, listeners, .. } = self;
        for l in &listeners {
            l.abort();
        }
        rt.block_on(async {
            for t in executors {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        });
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}
