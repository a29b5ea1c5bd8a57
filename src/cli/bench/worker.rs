//! `nagare bench --case worker`: the one-service-task process served by an
//! external worker over HTTP, as a worker in another language would serve it.
//!
//! A durable sled store (fsync on every commit) and the real server (with its
//! executor) on 127.0.0.1; `bench.answer` is declared external. C threads (default
//! 64) start instances in process and wait for their end; W worker clients
//! (default 4) each loop: `POST /api/v1/jobs/activate` (up to 32 jobs, long poll
//! 1 s), then `POST /api/v1/jobs/{id}/complete` for each job, concurrently. One
//! instance = two fsynced commits (the start with its job, the result; the
//! executor does not count starts of external jobs) and two HTTP requests (an
//! activation shared by its batch, a completion). The answer is checked on a
//! sample of instances.

use super::measure::{proc_status_mb, reset_peak_rss, round, temp_dir, Latencies, PeersLine};
use super::peers::{Waiters, SERVICE_CONNECTOR};
use super::{BenchArgs, Ctx};
use crate::cli::explain;
use crate::output::Out;
use anyhow::{anyhow, bail, Context};
use nagare::server::auth::{Caller, Users};
use nagare::server::Server;
use nagare_engine::runtime::Status;
use nagare_engine::store::Durability;
use nagare_engine::{Engine, EventKind, StartOptions, Vars};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROCESS: &str = include_str!("bench-service.yaml");
/// Worker clients.
const WORKERS: usize = 4;
/// Most jobs one activation asks for.
const BATCH: usize = 32;

fn users() -> Users {
    let mut users = Users::from_callers((0..WORKERS).map(|w| {
        let id = format!("w{w}");
        let caller = Caller { id: id.clone(), name: None, groups: Vec::new(), admin: false, acting_for: vec![] };
        (caller, vec![format!("bench-{id}")])
    }));
    for w in 0..WORKERS {
        users.allow_worker(&format!("w{w}"));
    }
    users
}

pub fn run(out: &Out, ctx: &Ctx, a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let n = a.n.unwrap_or(5_000);
    let c = a.concurrency.unwrap_or(64).max(1);
    reset_peak_rss();
    let rss_start = proc_status_mb("VmRSS");
    let dir = temp_dir(ctx.temp_root(), "worker")?;
    let engine = Engine::builder()
        .data_dir_with(&dir.0, Durability::Flush)
        .map_err(explain)?
        .external(SERVICE_CONNECTOR)
        .build()
        .map_err(explain)?;
    engine.deploy("bench-service.yaml", PROCESS).map_err(explain)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    let waiters = Arc::new(Waiters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (server, workers, listener) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = Server::start(listener, engine.clone(), users(), std::future::pending())?;
        let base = server.url();
        let http = reqwest::Client::builder().pool_max_idle_per_host(BATCH * WORKERS).build()?;
        let workers: Vec<_> =
            (0..WORKERS).map(|w| tokio::spawn(serve(http.clone(), base.clone(), w, stop.clone()))).collect();
        let mut events = engine.subscribe();
        let w = waiters.clone();
        let listener = tokio::spawn(async move {
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
        });
        Ok::<_, anyhow::Error>((server, workers, listener))
    })?;

    let warmup = (n / 10).clamp(1, 500);
    let measured = (|| {
        drive(&engine, &waiters, c, warmup)?;
        drive(&engine, &waiters, c, n)
    })();
    stop.store(true, Ordering::Relaxed);
    let served: usize = rt.block_on(async {
        listener.abort();
        let mut served = 0;
        for w in workers {
            served += w.await.map_err(|e| anyhow!("worker failed: {e}"))??;
        }
        server.shutdown().await?;
        Ok::<_, anyhow::Error>(served)
    })?;
    let (lat, secs) = measured?;
    if served != n + warmup {
        bail!("the workers completed {served} jobs for {} instances", n + warmup);
    }
    let mut line = PeersLine::new("worker", format!("durable-http-worker-c{c}"), c, n, secs, &lat);
    line.warmup = warmup;
    line.steps_per_instance = 3.0;
    line.snapshots_per_instance = 2.0;
    line.rss_start_mb = round(rss_start, 1);
    if out.json {
        line.print()?;
    } else {
        line.say();
        println!();
        line.print()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `n` instances from `c` threads, each started and awaited; latencies and wall time.
fn drive(engine: &Engine, waiters: &Waiters, c: usize, n: usize) -> anyhow::Result<(Latencies, f64)> {
    let remaining = AtomicUsize::new(n);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let all: Mutex<Vec<Duration>> = Mutex::new(Vec::with_capacity(n));
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..c {
            let (remaining, failure, all) = (&remaining, &failure, &all);
            s.spawn(move || {
                let mut mine = Vec::new();
                let mut k = 0usize;
                while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1)).is_ok() {
                    let began = Instant::now();
                    let result = engine
                        .start("bench-service", Vars::new(), StartOptions::default())
                        .map_err(|e| e.to_string())
                        .and_then(|i| {
                            k += 1;
                            let status = waiters.wait(i.id, engine)?;
                            if k % 64 == 1 {
                                let last = engine.instance(i.id).map_err(|e| e.to_string())?;
                                if last.vars.get("answer").and_then(Value::as_f64) != Some(42.0) {
                                    return Err(format!("wrong result: {:?}", last.vars));
                                }
                            }
                            Ok(status)
                        });
                    match result {
                        Ok(Status::Completed) => mine.push(began.elapsed()),
                        Ok(other) => {
                            *failure.lock().expect("lock") = Some(format!("an instance ended {}", other.as_str()));
                            remaining.store(0, Ordering::Relaxed);
                        }
                        Err(e) => {
                            *failure.lock().expect("lock") = Some(e);
                            remaining.store(0, Ordering::Relaxed);
                        }
                    }
                }
                all.lock().expect("lock").extend(mine);
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    if let Some(e) = failure.into_inner().expect("lock") {
        bail!("worker: {e}");
    }
    Ok((Latencies::new(all.into_inner().expect("lock")), secs))
}

/// One worker: activate in batches with a long poll, complete each job (the batch
/// concurrently), until told to stop; how many jobs it completed.
async fn serve(http: reqwest::Client, base: String, w: usize, stop: Arc<AtomicBool>) -> anyhow::Result<usize> {
    let token = format!("bench-w{w}");
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        let resp = http
            .post(format!("{base}/api/v1/jobs/activate"))
            .bearer_auth(&token)
            .json(&json!({ "connector": SERVICE_CONNECTOR, "max_jobs": BATCH, "wait": 1, "lease": "60s" }))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("activate answered {}: {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        let jobs: Vec<Value> = resp.json().await?;
        let mut calls = tokio::task::JoinSet::new();
        for job in jobs {
            let id = job["id"].as_str().ok_or_else(|| anyhow!("a job without id: {job}"))?.to_string();
            let answer = job["input"]["question"].as_i64().unwrap_or(0) * 7;
            let (http, base, token) = (http.clone(), base.clone(), token.clone());
            calls.spawn(async move {
                let r = http
                    .post(format!("{base}/api/v1/jobs/{id}/complete"))
                    .bearer_auth(&token)
                    .json(&json!({ "output": { "answer": answer } }))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("complete {id} answered {}: {}", r.status(), r.text().await.unwrap_or_default());
                }
                Ok::<_, anyhow::Error>(())
            });
        }
        while let Some(r) = calls.join_next().await {
            r.map_err(|e| anyhow!("a completion failed: {e}"))??;
            done += 1;
        }
    }
    Ok(done)
}
