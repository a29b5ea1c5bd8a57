//! `nagare bench --case inbox`: the task-list API under a large inbox.
//!
//! Loads N open tasks (default 100,000) spread evenly over 20 groups, each with its
//! own due date, straight through the engine on a sled store with relaxed
//! durability (a bulk load); reopens the store with fsync on every commit, as
//! `nagare serve` runs, and starts the real HTTP server on 127.0.0.1. Then, over
//! HTTP with keep-alive connections:
//!
//! 1. inbox latency: one client asks for the first page (50) of one group's inbox,
//!    sequentially, and the latency of each request is recorded (p50/p99/max);
//! 2. complete + next task: C clients (default 32) each loop: fetch the inbox page of
//!    their group, complete one task from it (fsynced), and so on. Clients sharing a
//!    group take disjoint tasks (by a hash of the instance id), so every completion
//!    succeeds.
//!
//! Client and server share the machine's cores, so the figures include the client.

use super::measure::{temp_dir, Latencies, PeersLine};
use super::{BenchArgs, Ctx};
use crate::cli::explain;
use crate::output::{Out, Table};
use anyhow::{anyhow, bail, Context};
use nagare::server::auth::{Caller, Users};
use nagare::server::Server;
use nagare_engine::store::{Durability, TaskQuery};
use nagare_engine::{Engine, StartOptions, Vars};
use serde::Serialize;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GROUPS: usize = 20;
/// The group whose inbox latency is measured.
const MEASURED_GROUP: usize = 5;
const PAGE: usize = 50;

/// Process `bench-inbox-NN`: one user task in lane `gNN`, due `days` after the start.
fn process_yaml(g: usize) -> String {
    format!(
        "id: bench-inbox-{g:02}\nlanes:\n  g{g:02}: {{ groups: [g{g:02}] }}\nvariables:\n  days: {{ type: number, required: true }}\n  \
         ok: {{ type: bool }}\nstart: {{ next: work }}\nnodes:\n  work:\n    user_task: Work {g:02}\n    lane: g{g:02}\n    \
         due: add_minutes(now, days * 1440 + days)\n    form: {{ ok: required }}\n    next: done\n  done: {{ end: }}\n"
    )
}

#[derive(Serialize)]
struct InboxReport {
    engine: &'static str,
    case: &'static str,
    open_tasks: usize,
    groups: usize,
    load_seconds: f64,
    load_tasks_per_s: f64,
    reopen_ms: f64,
    inbox_requests: usize,
    inbox_page: usize,
    inbox_p50_ms: f64,
    inbox_p99_ms: f64,
    inbox_max_ms: f64,
    /// The web inbox page (`GET /`, HTML, signed in, the user's group), p50 / p99.
    web_inbox_p50_ms: f64,
    web_inbox_p99_ms: f64,
    engine_query_p50_ms: f64,
    engine_query_p99_ms: f64,
    clients: usize,
    round_trips: usize,
    round_trip_seconds: f64,
    round_trips_per_s: f64,
    round_trip_p50_ms: f64,
    round_trip_p99_ms: f64,
    conflicts: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The users: `cNN` (client NN) in group `g(NN % 20)`, `probe` in the measured group.
fn users(clients: usize) -> Users {
    let mut list: Vec<(Caller, Vec<String>)> = (0..clients)
        .map(|c| {
            let id = format!("c{c:02}");
            let caller = Caller {
                id: id.clone(),
                name: None,
                groups: vec![format!("g{:02}", c % GROUPS)],
                admin: false,
                acting_for: vec![],
            };
            (caller, vec![format!("bench-{id}")])
        })
        .collect();
    let probe = Caller {
        id: "probe".into(),
        name: None,
        groups: vec![format!("g{MEASURED_GROUP:02}")],
        admin: false,
        acting_for: vec![],
    };
    list.push((probe, vec!["bench-probe".into()]));
    Users::from_callers(list)
}

/// Start `n` instances over the 20 processes from 2 threads.
fn load(engine: &Engine, n: usize) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                // Due dates spread over ~3 months, in an order unrelated to the ids.
                let days = (i * 7919) % 97;
                let vars: Vars = [("days".to_string(), json!(days))].into();
                let process = format!("bench-inbox-{:02}", i % GROUPS);
                if let Err(e) = engine.start(&process, vars, StartOptions::default()) {
                    *failure.lock().expect("lock") = Some(e.to_string());
                    next.store(n, Ordering::Relaxed);
                    return;
                }
            });
        }
    });
    match failure.into_inner().expect("lock") {
        Some(e) => bail!("loading tasks: {e}"),
        None => Ok(()),
    }
}

pub fn run(out: &Out, ctx: &Ctx, a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let n = a.n.unwrap_or(100_000);
    let clients = a.concurrency.unwrap_or(32).max(1);
    let temp_root = ctx.temp_root();
    if n < GROUPS * PAGE {
        bail!("--n must be at least {} (a full first page in every group)", GROUPS * PAGE);
    }
    let cleanup = temp_dir(temp_root, "inbox")?;
    let dir = cleanup.0.clone();

    eprintln!("loading {n} open tasks over {GROUPS} groups...");
    let t = Instant::now();
    {
        let engine =
            Engine::builder().data_dir_with(&dir, Durability::Relaxed).map_err(explain)?.build().map_err(explain)?;
        for g in 0..GROUPS {
            engine.deploy(&format!("bench-inbox-{g:02}.yaml"), &process_yaml(g)).map_err(explain)?;
        }
        load(&engine, n)?;
        engine.flush().map_err(explain)?;
    }
    let load_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let engine = Engine::builder().data_dir_with(&dir, Durability::Flush).map_err(explain)?.build().map_err(explain)?;
    let reopen_ms = t.elapsed().as_secs_f64() * 1000.0;
    if engine.stats().tasks_open != n as i64 {
        bail!("expected {n} open tasks after the load, the store has {}", engine.stats().tasks_open);
    }

    // The engine query alone, for reference (what the HTTP figure adds to).
    let group = format!("g{MEASURED_GROUP:02}");
    let q = TaskQuery { groups: Some(vec![group.clone()]), limit: Some(PAGE), ..TaskQuery::default() };
    let mut engine_lat = Vec::with_capacity(2000);
    for i in 0..2200 {
        let t = Instant::now();
        let page = engine.tasks(&q).map_err(explain)?;
        if i >= 200 {
            engine_lat.push(t.elapsed());
        }
        if page.len() != PAGE {
            bail!("the engine query returned {} tasks, expected {PAGE}", page.len());
        }
    }
    engine_lat.sort();

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    let report = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = Server::start(listener, engine, users(clients), std::future::pending())?;
        let base = server.url();
        let http = reqwest::Client::builder().pool_max_idle_per_host(clients + 4).build()?;
        let (inbox_lat, requests) = measure_inbox(&http, &base, &group).await?;
        let web_lat = measure_web_inbox(&base).await?;
        let (rt_lat, trips, secs, conflicts) = round_trips(&http, &base, clients, n).await?;
        server.shutdown().await?;
        Ok::<_, anyhow::Error>(InboxReport {
            engine: "nagare",
            case: "inbox",
            open_tasks: n,
            groups: GROUPS,
            load_seconds: round3(load_secs),
            load_tasks_per_s: (n as f64 / load_secs).round(),
            reopen_ms: round3(reopen_ms),
            inbox_requests: requests,
            inbox_page: PAGE,
            inbox_p50_ms: round3(percentile(&inbox_lat, 0.50)),
            inbox_p99_ms: round3(percentile(&inbox_lat, 0.99)),
            inbox_max_ms: round3(inbox_lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)),
            web_inbox_p50_ms: round3(percentile(&web_lat, 0.50)),
            web_inbox_p99_ms: round3(percentile(&web_lat, 0.99)),
            engine_query_p50_ms: round3(percentile(&engine_lat, 0.50)),
            engine_query_p99_ms: round3(percentile(&engine_lat, 0.99)),
            clients,
            round_trips: trips,
            round_trip_seconds: round3(secs),
            round_trips_per_s: (trips as f64 / secs).round(),
            round_trip_p50_ms: round3(percentile(&rt_lat, 0.50)),
            round_trip_p99_ms: round3(percentile(&rt_lat, 0.99)),
            conflicts,
        })
    })?;

    let line = peers_line(&report);
    if out.json {
        println!("{}", serde_json::to_string(&report)?);
        line.print()?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = &report;
    let mut t = Table::new(&["measure", "value"]).right(&[1]);
    let rows: Vec<(String, String)> = vec![
        ("open tasks (groups)".into(), format!("{} ({})", r.open_tasks, r.groups)),
        ("bulk load".into(), format!("{:.1} s, {:.0} tasks/s", r.load_seconds, r.load_tasks_per_s)),
        ("reopen (durable)".into(), format!("{:.0} ms", r.reopen_ms)),
        (
            format!("inbox page of {PAGE}, HTTP p50 / p99 / max"),
            format!("{:.3} / {:.3} / {:.3} ms", r.inbox_p50_ms, r.inbox_p99_ms, r.inbox_max_ms),
        ),
        (
            format!("web inbox page (HTML, {PAGE} rows) p50 / p99"),
            format!("{:.3} / {:.3} ms", r.web_inbox_p50_ms, r.web_inbox_p99_ms),
        ),
        (
            "same query in-process p50 / p99".into(),
            format!("{:.3} / {:.3} ms", r.engine_query_p50_ms, r.engine_query_p99_ms),
        ),
        (format!("complete + next task, {} clients", r.clients), format!("{:.0} round trips/s", r.round_trips_per_s)),
        ("round trip p50 / p99".into(), format!("{:.2} / {:.2} ms", r.round_trip_p50_ms, r.round_trip_p99_ms)),
        ("conflicts (409)".into(), r.conflicts.to_string()),
    ];
    for (k, v) in rows {
        t.row(vec![k, v]);
    }
    println!();
    t.print();
    println!();
    println!("{}", serde_json::to_string(r)?);
    line.print()?;
    Ok(ExitCode::SUCCESS)
}

/// The peers-shaped line: n = complete + next-task round trips, with their p50/p99.
fn peers_line(r: &InboxReport) -> PeersLine {
    let mut l = PeersLine::new(
        "inbox",
        format!("http-c{}", r.clients),
        r.clients,
        r.round_trips,
        r.round_trip_seconds,
        &Latencies::default(),
    );
    l.p50_ms = r.round_trip_p50_ms;
    l.p99_ms = r.round_trip_p99_ms;
    l.snapshots_per_instance = 1.0;
    l
}

/// Sequential first-page requests for one group; latency of each.
async fn measure_inbox(http: &reqwest::Client, base: &str, group: &str) -> anyhow::Result<(Vec<Duration>, usize)> {
    const WARMUP: usize = 300;
    const REQUESTS: usize = 3000;
    let url = format!("{base}/api/v1/tasks?group={group}&limit={PAGE}");
    let mut lat = Vec::with_capacity(REQUESTS);
    for i in 0..WARMUP + REQUESTS {
        let t = Instant::now();
        let resp = http.get(&url).bearer_auth("bench-probe").send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        let took = t.elapsed();
        if !status.is_success() {
            bail!("inbox answered {status}: {}", String::from_utf8_lossy(&body));
        }
        if i == 0 {
            let v: Value = serde_json::from_slice(&body)?;
            let items = v["items"].as_array().ok_or_else(|| anyhow!("no items: {v}"))?;
            let dues: Vec<&str> = items.iter().filter_map(|t| t["due"].as_str()).collect();
            if items.len() != PAGE || dues.len() != PAGE || dues.windows(2).any(|w| w[0] > w[1]) {
                bail!("the inbox page is not {PAGE} tasks sorted by due date: {v}");
            }
        }
        if i >= WARMUP {
            lat.push(took);
        }
    }
    lat.sort();
    Ok((lat, REQUESTS))
}

/// The web inbox page, as a signed-in browser asks for it: sign in with the probe's
/// token (a session cookie), then `GET /` sequentially; the latency of each page.
async fn measure_web_inbox(base: &str) -> anyhow::Result<Vec<Duration>> {
    const WARMUP: usize = 100;
    const REQUESTS: usize = 1000;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let login = http.post(format!("{base}/web/login")).form(&[("token", "bench-probe")]).send().await?;
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the web sign-in gave no session cookie ({})", login.status()))?;
    let mut lat = Vec::with_capacity(REQUESTS);
    for i in 0..WARMUP + REQUESTS {
        let t = Instant::now();
        let resp = http.get(format!("{base}/")).header(reqwest::header::COOKIE, &cookie).send().await?;
        let status = resp.status();
        let body = resp.text().await?;
        let took = t.elapsed();
        if !status.is_success() {
            bail!("the web inbox answered {status}");
        }
        if i == 0 && body.matches("/web/tasks/").count() < PAGE {
            bail!("the web inbox page lists fewer than {PAGE} tasks");
        }
        if i >= WARMUP {
            lat.push(took);
        }
    }
    lat.sort();
    Ok(lat)
}

/// C clients completing tasks of their group's inbox; round trips, wall time, conflicts.
async fn round_trips(
    http: &reqwest::Client,
    base: &str,
    clients: usize,
    open: usize,
) -> anyhow::Result<(Vec<Duration>, usize, f64, usize)> {
    const DURATION: Duration = Duration::from_secs(10);
    let conflicts = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let group = c % GROUPS;
        // Clients sharing a group split its tasks by a hash of the instance id.
        let sharing = (0..clients).filter(|x| x % GROUPS == group).count() as u64;
        let slot = (c / GROUPS) as u64;
        // At most half of its share, so that a client never runs dry.
        let cap = open / GROUPS / sharing as usize / 2;
        let (http, base, conflicts) = (http.clone(), base.to_string(), conflicts.clone());
        handles.push(tokio::spawn(async move {
            let token = format!("bench-c{c:02}");
            let inbox = format!("{base}/api/v1/tasks?group=g{group:02}&limit={PAGE}");
            let mut lat = Vec::new();
            while start.elapsed() < DURATION && lat.len() < cap {
                let t = Instant::now();
                let page: Value = http.get(&inbox).bearer_auth(&token).send().await?.error_for_status()?.json().await?;
                let items = page["items"].as_array().cloned().unwrap_or_default();
                let mine = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % sharing == slot;
                let Some(task) = items.iter().find(|t| t["instance"].as_u64().is_some_and(mine)) else {
                    bail!("client {c}: no task of its share on the first page of g{group:02}");
                };
                let id = task["id"].as_str().unwrap_or_default();
                let resp = http
                    .post(format!("{base}/api/v1/tasks/{id}/complete"))
                    .bearer_auth(&token)
                    .json(&json!({ "variables": { "ok": true } }))
                    .send()
                    .await?;
                match resp.status().as_u16() {
                    200 => lat.push(t.elapsed()),
                    409 => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    s => bail!("complete answered {s}: {}", resp.text().await.unwrap_or_default()),
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.map_err(|e| anyhow!("client failed: {e}"))??);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let trips = all.len();
    Ok((all, trips, secs, conflicts.load(Ordering::Relaxed)))
}
