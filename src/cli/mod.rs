//! The command groups and what they share: opening the engine, typed `--var`
//! parsing, running service jobs inline, and turning engine errors into messages.

pub mod archive;
pub mod archiver;
pub mod bench;
pub mod config;
pub mod demo;
pub mod draw;
pub mod emulate;
pub mod export;
pub mod files;
pub mod import;
pub mod incidents;
pub mod instances;
pub mod messages;
pub mod migrate;
pub mod migrate_instances;
pub mod processes;
pub mod proxy;
pub mod remote;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod tasks;

use anyhow::{anyhow, bail, Context};
use nagare_connectors::{Connectors, ConnectorsConfig};
use nagare_engine::process::Process;
use nagare_engine::runtime::Rejection;
use nagare_engine::{Engine, EngineError, Executor, Vars};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The config file given with `--config` (or `$NAGARE_CONFIG`), set once by main.
static CONFIG: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Remember the config file for [`connectors`]. Without one, `./nagare.yaml` is
/// read when it exists.
pub fn set_config(path: Option<PathBuf>) {
    let _ = CONFIG.set(path);
}

/// The connectors, configured from the config file's `connectors:` section.
pub fn connectors() -> anyhow::Result<Arc<Connectors>> {
    connectors_with(Arc::new(nagare_connectors::cloudsign::files::NoBlobs))
}

/// The config file in force: `--config`, else `./nagare.yaml` when it exists.
pub fn config_path() -> Option<PathBuf> {
    match CONFIG.get().cloned().flatten() {
        Some(p) => Some(p),
        None => Some(PathBuf::from("nagare.yaml")).filter(|p| p.exists()),
    }
}

/// The connectors, reading file references through `blobs` (the data directory's).
fn connectors_with(blobs: Arc<dyn nagare_connectors::cloudsign::files::BlobSource>) -> anyhow::Result<Arc<Connectors>> {
    let cfg = match config_path() {
        Some(p) => ConnectorsConfig::from_file(&p)?,
        None => ConnectorsConfig::default(),
    };
    Ok(Arc::new(Connectors::with_blobs(&cfg, blobs)))
}

/// Open the durable engine on `data` with the configured connectors.
pub fn open(data: &Path) -> anyhow::Result<Engine> {
    Ok(open_with(data)?.0)
}

/// Open the engine and also hand back its connectors (for the kintone watcher).
pub fn open_with(data: &Path) -> anyhow::Result<(Engine, Arc<Connectors>)> {
    open_on(data, None)
}

/// Open the engine on `store` (`sled` or none: the sled store in `data`; a
/// `postgres://` URL or libpq string: PostgreSQL, with files still in `data/blobs`).
pub fn open_on(data: &Path, store: Option<&str>) -> anyhow::Result<(Engine, Arc<Connectors>)> {
    let connectors = connectors_with(Arc::new(nagare_connectors::cloudsign::files::FsBlobs::new(data)))?;
    let builder = match store.map(str::trim) {
        None | Some("") | Some("sled") => Engine::builder().data_dir(data).map_err(explain)?,
        Some(url) => postgres_builder(url, data)?,
    };
    let engine = builder.connectors(connectors.registry()).build().map_err(explain)?;
    Ok((engine, connectors))
}

#[cfg(feature = "postgres")]
fn postgres_builder(url: &str, data: &Path) -> anyhow::Result<nagare_engine::EngineBuilder> {
    use nagare_engine::store::{PgOptions, PgStore};
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains('=')) {
        bail!("--store `{url}`: use `sled` or a PostgreSQL connection string (postgres://user@host/db)");
    }
    let store = PgOptions::from_store(url).and_then(|o| PgStore::open(&o)).map_err(|e| {
        anyhow!(
            "{e}\n  hint: --store (or NAGARE_STORE) takes a libpq connection string; README § Running on PostgreSQL"
        )
    })?;
    let blobs = nagare_engine::blobs::Blobs::in_dir(&data.join("blobs")).map_err(|e| anyhow!("{e}"))?;
    Ok(Engine::builder().store(store).blobs(blobs))
}

#[cfg(not(feature = "postgres"))]
fn postgres_builder(url: &str, _: &Path) -> anyhow::Result<nagare_engine::EngineBuilder> {
    bail!("--store `{url}`: this nagare was built without the `postgres` feature; only `sled` is available")
}

/// Open the engine only if the data directory exists (read-only commands should
/// not create one by accident).
pub fn open_existing(data: &Path) -> anyhow::Result<Engine> {
    if !data.exists() {
        bail!("no data directory at {} (deploy a process first, or pass --data DIR)", data.display());
    }
    open(data)
}

/// What to do when the data directory is held by another process: most often a
/// `nagare serve` started in another terminal.
pub const LOCKED_HINT: &str =
    "hint: if `nagare serve` is running on this data directory, stop it (Ctrl-C), or let the \
     command go through the server: --server http://127.0.0.1:8080 --token demo-admin (or NAGARE_SERVER, NAGARE_TOKEN)";

/// An engine error as a message for a person, field errors one per line.
pub fn explain(e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Rejected(Rejection::InvalidData(fields)) => {
            let lines: Vec<String> = fields.iter().map(|f| format!("  {}: {}", f.field, f.problem)).collect();
            anyhow!("the data was refused:\n{}", lines.join("\n"))
        }
        EngineError::Conflict(r) => anyhow!("conflict: {r}"),
        // sled's reason is a raw `Os { code: 11, kind: WouldBlock… }`: say it in words.
        EngineError::Store(nagare_engine::store::StoreError::Locked { path, reason })
            if reason.contains("WouldBlock") || reason.contains("temporarily unavailable") =>
        {
            anyhow!(
                "the data directory {path} is in use by another nagare process (it holds the lock)\n  {LOCKED_HINT}"
            )
        }
        EngineError::Store(e @ nagare_engine::store::StoreError::Locked { .. }) => anyhow!("{e}\n  {LOCKED_HINT}"),
        // Display already includes the cause; `{:#}` would repeat it.
        other => anyhow!(other.to_string()),
    }
}

/// Parse `name=text` pairs using the declared types of `process`'s variables,
/// on top of an optional JSON object file.
pub fn parse_vars(process: &Process, pairs: &[String], file: Option<&Path>) -> anyhow::Result<Vars> {
    let mut vars = Vars::new();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", f.display()))?;
        let serde_json::Value::Object(map) = v else {
            bail!("{} must hold a JSON object of variables", f.display());
        };
        vars.extend(map);
    }
    for pair in pairs {
        let Some((name, text)) = pair.split_once('=') else {
            bail!("--var `{pair}` must look like name=value");
        };
        let name = name.trim();
        let Some(spec) = process.vars.get(name) else {
            let declared: Vec<&str> = process.vars.keys().map(String::as_str).collect();
            bail!(
                "process `{}` has no variable `{name}`; declared: {}",
                process.id,
                if declared.is_empty() { "(none)".to_string() } else { declared.join(", ") }
            );
        };
        let v = spec.ty.parse_text(text).map_err(|e| anyhow!("--var {name}: {e}"))?;
        vars.insert(name.to_string(), v);
    }
    Ok(vars)
}

/// Run the service jobs that are due, and those they lead to, until none is due.
pub fn run_jobs(engine: &Engine) -> anyhow::Result<usize> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let exec = Executor::new(engine.clone());
    let mut total = 0;
    rt.block_on(async {
        loop {
            let n = exec.run_until_idle().await;
            if n == 0 {
                break;
            }
            total += n;
        }
    });
    Ok(total)
}
