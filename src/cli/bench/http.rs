//! `nagare bench --case http`: start + complete round trips through the HTTP API,
//! as a front end would drive `nagare serve`.
//!
//! A durable sled store (fsync on every commit, as `nagare serve` runs) and the
//! real server on 127.0.0.1; C clients (default 32, keep-alive connections) each
//! loop: `POST /api/v1/instances` (bench-usertask), take the open task from the
//! answer, `POST /api/v1/tasks/{id}/complete` with `approved: true`, check that the
//! task and the instance completed. One round trip = two fsynced commits and two requests.
//! Client and server share the machine's cores, so the figures include the client.

use super::measure::{reset_peak_rss, temp_dir, Latencies, PeersLine};
use super::{BenchArgs, Ctx};
use crate::cli::explain;
use crate::output::{Out, Table};
use anyhow::{anyhow, bail, Context};
use nagare::server::auth::{Caller, Users};
use nagare::server::Server;
use nagare_engine::store::Durability;
use nagare_engine::Engine;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const PROCESS: &str = include_str!("../../../processes/bench-usertask.yaml");

/// Clients `cNN` in group `staff` (the lane of bench-usertask), token `bench-cNN`.
fn users(clients: usize) -> Users {
    Users::from_callers((0..clients).map(|c| {
        let id = format!("c{c:02}");
        let caller =
            Caller { id: id.clone(), name: None, groups: vec!["staff".into()], admin: false, acting_for: vec![] };
        (caller, vec![format!("bench-{id}")])
    }))
}

pub fn run(out: &Out, ctx: &Ctx, a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let n = a.n.unwrap_or(20_000);
    let clients = a.concurrency.unwrap_or(32).max(1);
    if n < clients {
        bail!("--n ({n}) must be at least the number of clients ({clients})");
    }
    reset_peak_rss();
    let dir = temp_dir(ctx.temp_root(), "http")?;
    let engine =
        Engine::builder().data_dir_with(&dir.0, Durability::Flush).map_err(explain)?.build().map_err(explain)?;
    engine.deploy("processes/bench-usertask.yaml", PROCESS).map_err(explain)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    let (lat, secs) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = Server::start(listener, engine, users(clients), std::future::pending())?;
        let base = server.url();
        let http = reqwest::Client::builder().pool_max_idle_per_host(clients + 4).build()?;
        // Warm-up: connections, caches.
        drive(&http, &base, clients, clients * 10).await?;
        let measured = drive(&http, &base, clients, n).await?;
        server.shutdown().await?;
        Ok::<_, anyhow::Error>(measured)
    })?;
    let mut line = PeersLine::new("http", format!("durable-http-c{clients}"), clients, lat.len(), secs, &lat);
    line.warmup = clients * 10;
    line.steps_per_instance = 3.0;
    line.snapshots_per_instance = 2.0;
    if out.json {
        line.print()?;
        return Ok(ExitCode::SUCCESS);
    }
    line.say();
    let mut t = Table::new(&["measure", "value"]).right(&[1]);
    t.row(vec!["clients".into(), clients.to_string()]);
    t.row(vec!["start + complete round trips".into(), format!("{} in {:.2} s", lat.len(), secs)]);
    t.row(vec!["round trips/s".into(), format!("{:.0}", line.ips)]);
    t.row(vec!["p50 / p99 / max".into(), format!("{:.2} / {:.2} / {:.2} ms", line.p50_ms, line.p99_ms, lat.max_ms())]);
    println!();
    t.print();
    println!();
    line.print()?;
    Ok(ExitCode::SUCCESS)
}

/// `n` round trips from `clients` clients; their latencies and the wall time.
async fn drive(http: &reqwest::Client, base: &str, clients: usize, n: usize) -> anyhow::Result<(Latencies, f64)> {
    let remaining = Arc::new(AtomicUsize::new(n));
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let (http, base, remaining) = (http.clone(), base.to_string(), remaining.clone());
        handles.push(tokio::spawn(async move {
            let token = format!("bench-c{c:02}");
            let mut lat = Vec::new();
            while remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1)).is_ok() {
                let t = Instant::now();
                round_trip(&http, &base, &token).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.await.map_err(|e| anyhow!("client failed: {e}"))??);
    }
    Ok((Latencies::new(all), start.elapsed().as_secs_f64()))
}

/// Start an instance, complete its task, check it completed with `approved`.
async fn round_trip(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<()> {
    let started = http
        .post(format!("{base}/api/v1/instances"))
        .bearer_auth(token)
        .json(&json!({ "process": "bench-usertask" }))
        .send()
        .await?;
    if started.status().as_u16() != 201 {
        bail!("start answered {}: {}", started.status(), started.text().await.unwrap_or_default());
    }
    let inst: Value = started.json().await?;
    let task = inst["open_tasks"][0]["id"].as_str().ok_or_else(|| anyhow!("no open task in {inst}"))?.to_string();
    let done = http
        .post(format!("{base}/api/v1/tasks/{task}/complete"))
        .bearer_auth(token)
        .json(&json!({ "variables": { "approved": true } }))
        .send()
        .await?;
    if !done.status().is_success() {
        bail!("complete answered {}: {}", done.status(), done.text().await.unwrap_or_default());
    }
    let done: Value = done.json().await?;
    if done["instance"]["status"] != "completed" || done["task"]["status"] != "completed" {
        bail!("the instance did not complete: {done}");
    }
    Ok(())
}
