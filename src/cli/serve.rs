//! `nagare serve` (the task-list API with the executor and the kintone watcher) and
//! `nagare token`.

use super::{explain, open_on};
use crate::output::Out;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use nagare::server::auth::{self, UserDirectory, Users};
use nagare::server::conn::Limits;
use nagare::server::webhooks::Webhooks;
use nagare::server::{AppState, Server};
use nagare_connectors::kintone::trigger::Watcher;
use nagare_connectors::Connectors;
use nagare_engine::process::NodeKind;
use nagare_engine::{Engine, EngineError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The demo tokens of `config/users.yaml`, published in the README: a server that
/// accepts any of them must not be reachable by anyone else.
const DEMO_TOKENS: &[&str] = &[
    "demo-admin",
    "demo-sato",
    "demo-kato",
    "demo-tanaka",
    "demo-yamada",
    "demo-suzuki",
    "demo-ito",
    "demo-watanabe",
    "demo-kobayashi",
    "demo-worker",
    "demo-kimura",
];

/// How long events committed before a shutdown are still posted to webhooks.
const WEBHOOK_GRACE: Duration = Duration::from_secs(5);

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "NAGARE_ADDR", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Users, groups and token hashes (YAML; see README § Users).
    #[arg(long, env = "NAGARE_USERS", default_value = "config/users.yaml")]
    users: PathBuf,
    /// The org chart: departments, positions, posts, company days off (YAML; see
    /// README § Organisation). Default: `org.yaml` next to the users file, if it
    /// exists. Read at start and on SIGHUP.
    #[arg(long, env = "NAGARE_ORG")]
    org: Option<PathBuf>,
    /// Every *.yaml in this directory is deployed at start (a changed file becomes a
    /// new version; an unchanged one is left as it is).
    #[arg(long, env = "NAGARE_PROCESSES", default_value = "processes")]
    processes: PathBuf,
    /// Also deploy the benchmark processes (`bench-*.yaml`), which a plain `serve`
    /// leaves out: they are `nagare bench`'s, not paperwork anyone works.
    #[arg(long)]
    with_bench: bool,
    /// A request head must be complete within this (from its first byte); else 408
    /// and the connection is closed.
    #[arg(long, env = "NAGARE_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    header_timeout: Duration,
    /// A request body must arrive within this (from its head), plus a second per
    /// 64 KiB received; else 408 and the connection is closed.
    #[arg(long, env = "NAGARE_BODY_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    body_timeout: Duration,
    /// A kept-alive connection without a request, or a response the client does not
    /// read, is closed after this.
    #[arg(long, env = "NAGARE_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    idle_timeout: Duration,
    /// Connections served at once; beyond, a new connection is answered 503 and closed.
    #[arg(long, env = "NAGARE_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: u32,
    /// Mark the web inbox's session cookie `Secure`: set it when browsers reach the
    /// server over https (through a proxy that terminates TLS).
    #[arg(long, env = "NAGARE_SECURE_COOKIE")]
    secure_cookie: bool,
    /// Where instances, tasks and jobs live: `sled` (the default: in the data
    /// directory) or a PostgreSQL connection string (`postgres://user@host/db`, no
    /// TLS yet). Uploaded files stay in the data directory either way.
    #[arg(long, env = "NAGARE_STORE", value_name = "sled|postgres://...")]
    store: Option<String>,
    /// Archive finished instances past their process's `retention:` this often
    /// (`1h`, at most `24h`; default: never; `nagare archive` does it by hand).
    #[arg(long, env = "NAGARE_ARCHIVE_EVERY", value_parser = positive_duration)]
    archive_every: Option<Duration>,
    /// Where the archiver writes (default: `<data>/archive`).
    #[arg(long, env = "NAGARE_ARCHIVE_DIR")]
    archive_dir: Option<PathBuf>,
    /// With --archive-every: also keep running instances' history to about this
    /// many lines (at least 100), older lines compacted into one.
    #[arg(long, env = "NAGARE_HISTORY_MAX_LINES", value_parser = clap::value_parser!(u64).range(100..=10_000_000))]
    history_max_lines: Option<u64>,
}

impl ServeArgs {
    fn limits(&self) -> Limits {
        Limits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections as usize,
        }
    }
}

/// A duration like `10s`, `500ms`, `2m`: more than zero, at most a day.
fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. `10s`, `500ms`, `2m`)"))?;
    if d.is_zero() || d > Duration::from_secs(24 * 3600) {
        return Err(format!("`{s}` is out of range: more than 0 and at most 24h"));
    }
    Ok(d)
}

/// Whether a file of the process directory is deployed at start: `*.yaml` or
/// `*.yml`, and `bench-*` only when asked.
fn deployable(path: &Path, with_bench: bool) -> bool {
    let yaml = path.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "bpmn");
    let bench = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("bench-"));
    yaml && (with_bench || !bench)
}

/// Deploy every process file in `dir`; any file with errors stops the start.
fn deploy_dir(engine: &Engine, dir: &Path, with_bench: bool) -> anyhow::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "no process directory; nothing deployed at start");
            eprintln!("warning: cannot read process directory {}: {e}; nothing deployed", dir.display());
            return Ok(0);
        }
    };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| deployable(p, with_bench)).collect();
    files.sort();
    let mut broken = 0;
    for path in &files {
        let name = path.display().to_string();
        let bytes = super::files::read_process_file(path).with_context(|| format!("cannot read {name}"))?;
        let text = match super::files::decode(path, &bytes) {
            Ok(t) => t,
            Err(diags) => {
                eprint!("{}", diags.finish(&name));
                broken += 1;
                continue;
            }
        };
        match engine.deploy(&name, text) {
            Ok(d) => {
                tracing::info!(process = %d.id, version = d.version, created = d.created, file = %name, "process file")
            }
            Err(EngineError::Invalid(diags)) => {
                eprint!("{diags}");
                broken += 1;
            }
            Err(e) => return Err(explain(e)),
        }
    }
    if broken > 0 {
        bail!("{broken} process file(s) in {} have errors; fix them or pass --processes DIR", dir.display());
    }
    Ok(files.len())
}

/// Warn about lanes nobody can work: they have user tasks, but their groups have no
/// member in the users file. (A lane of automated steps needs nobody.)
fn check_lanes(engine: &Engine, users: &Users) {
    let groups = users.groups();
    for versions in engine.processes() {
        let Some(p) = versions.last() else { continue };
        for (lane, l) in &p.lanes {
            let has_user_tasks = p
                .nodes
                .iter()
                .any(|n| n.lane.as_deref() == Some(lane.as_str()) && matches!(n.kind, NodeKind::UserTask(_)));
            if has_user_tasks && !l.groups.iter().any(|g| groups.contains(g.as_str())) {
                eprintln!(
                    "warning: lane `{lane}` of process `{}` is worked by group(s) {} but no user is in them",
                    p.id,
                    l.groups.join(", ")
                );
            }
        }
    }
}

pub fn serve(data: &Path, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let users = Users::load(&a.users).map_err(|e| {
        anyhow!("{e}\n  hint: pass --users FILE (or NAGARE_USERS); README § Users shows the format, `nagare token` makes tokens")
    })?;
    let webhooks = match super::config_path() {
        Some(path) => nagare::server::webhooks::config::from_file(&path)?,
        None => Vec::new(),
    };
    let (engine, connectors) = open_on(data, a.store.as_deref())?;
    if a.store.as_deref().is_some_and(|s| !matches!(s.trim(), "" | "sled")) {
        eprintln!("store: PostgreSQL (files in {})", data.join("blobs").display());
    }
    connectors.set_users(users.contacts());
    let org_file = a.org.clone().unwrap_or_else(|| a.users.with_file_name("org.yaml"));
    if a.org.is_some() || org_file.exists() {
        let org = nagare::server::org::load_file(&org_file, &users).map_err(|e| {
            anyhow!("{e}\n  hint: pass --org FILE (or NAGARE_ORG); README § Organisation shows the format")
        })?;
        engine.set_org(org);
    }
    let deployed = deploy_dir(&engine, &a.processes, a.with_bench)?;
    if let Some(every) = a.archive_every {
        let dir = a.archive_dir.clone().unwrap_or_else(|| data.join("archive"));
        super::archiver::spawn(engine.clone(), dir, every, a.history_max_lines.map(|n| n as usize));
    }
    check_lanes(&engine, &users);
    let demo = DEMO_TOKENS.iter().any(|t| users.authenticate(t).is_some());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.addr)
            .await
            .with_context(|| format!("cannot listen on {} (in use? pass --addr HOST:PORT)", a.addr))?;
        // The watcher polls the kintone watches and serves /hooks/kintone/{process}.
        let watcher = Arc::new(Watcher::new(engine.clone(), connectors.clone()));
        let webhooks = Webhooks::start(&engine, webhooks);
        let connectors_for_reload = connectors.clone();
        let connectors_for_links = connectors.clone();
        let watched = watcher.watched();
        let limits = a.limits();
        let state = AppState::new(engine, users).with_watcher(watcher).with_connectors(connectors).with_limits(limits);
        let state = state.with_webhooks(&webhooks);
        let state = state.with_web(nagare::web::WebConfig { secure_cookie: a.secure_cookie, ..Default::default() });
        reload_users_on_sighup(a.users.clone(), state.users.clone(), connectors_for_reload);
        nagare::server::org::serve_file(&state, &org_file, &data.join("proxies.json")).map_err(|e| anyhow!("{e}"))?;
        let server = Server::start_with(listener, state, super::run::shutdown_signal())?;
        connectors_for_links.set_public_url(Some(std::env::var("NAGARE_PUBLIC_URL").unwrap_or_else(|_| server.url())));
        eprintln!(
            "nagare API and web inbox on {} — data {}, {deployed} process file(s) from {}, users from {} (SIGHUP reloads it; Ctrl-C to stop)",
            server.url(),
            data.display(),
            a.processes.display(),
            a.users.display()
        );
        if !watched.is_empty() {
            eprintln!(
                "kintone watch: {} (polled; webhook POST {}/hooks/kintone/<process>)",
                watched.join(", "),
                server.url()
            );
        }
        if demo {
            eprintln!(
                "warning: {} accepts the public DEMO tokens (demo-admin, demo-sato...). Fine on your own machine; \
                 never expose this server. Make real tokens with `nagare token`.",
                a.users.display()
            );
        }
        let stopped = server.wait().await;
        webhooks.shutdown(WEBHOOK_GRACE).await;
        stopped.context("the server stopped with an error")?;
        eprintln!("nagare API stopped; every acknowledged change is on disk");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Read the users file again on SIGHUP (`kill -HUP <pid>`), so that adding a user
/// or revoking a token needs no restart. A file with errors is refused whole and
/// the users in force stay: a typo never locks everyone out.
fn reload_users_on_sighup(path: PathBuf, directory: Arc<UserDirectory>, connectors: Arc<Connectors>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                return tracing::warn!(error = %e, "cannot listen for SIGHUP; the users file is read at start only")
            }
        };
        while hup.recv().await.is_some() {
            match Users::load(&path) {
                Ok(users) => {
                    let count = users.all().count();
                    connectors.set_users(users.contacts());
                    directory.replace(users);
                    tracing::info!(file = %path.display(), users = count, "users file reloaded");
                }
                Err(e) => tracing::error!(
                    file = %path.display(), error = %e,
                    "users file not reloaded; the users read before stay in force"
                ),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (path, directory, connectors);
}

pub fn token(out: &Out) -> anyhow::Result<ExitCode> {
    let (token, hash) = auth::new_token().map_err(|e| anyhow!("no randomness from the OS: {e}"))?;
    if out.json {
        out.json(&serde_json::json!({ "token": token, "hash": hash }))?;
    } else {
        println!("token: {token}");
        println!("hash:  {hash}");
        println!();
        println!("Give the token to its user; it is stored nowhere and cannot be shown again.");
        println!("Put the hash in the users file under the user's tokens, e.g.:");
        println!("  sato:");
        println!("    groups: [staff]");
        println!("    tokens: [\"{hash}\"]");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every demo token of the shipped users file is known, so that `serve` warns about it.
    #[test]
    fn every_demo_token_of_the_users_file_is_listed() {
        let file = include_str!("../../config/users.yaml");
        for token in file.split("# ").filter_map(|s| s.split_whitespace().next()).filter(|w| w.starts_with("demo-")) {
            assert!(DEMO_TOKENS.contains(&token), "{token} missing from DEMO_TOKENS");
        }
    }

    #[test]
    fn bench_processes_are_deployed_only_when_asked() {
        assert!(deployable(Path::new("processes/expense-approval.yaml"), false));
        assert!(deployable(Path::new("processes/x.yml"), false));
        assert!(!deployable(Path::new("processes/README.md"), true));
        assert!(!deployable(Path::new("processes/bench-straight.yaml"), false));
        assert!(deployable(Path::new("processes/bench-straight.yaml"), true));
    }
}
