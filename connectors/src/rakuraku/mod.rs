//! Rakuraku Seisan (楽楽精算): the master-data CSV import (`rakuraku.import`), its
//! Shift_JIS CSV builder, parameter rules, rate limiter and a local emulator.
//!
//! A step gives the rows (a list of objects, or a query result with `records`),
//! the columns in order with their headers, and the API's parameters spelled as
//! the API spells them ([`params`]):
//!
//! ```yaml
//! 社員を取込:
//!   service: rakuraku.import
//!   with:
//!     masterId: 0
//!     duplicateKey: 1
//!     rows: employees
//!     columns: [社員コード, {header: 氏名, key: name}, {header: メールアドレス, key: mail}]
//!     csv: { unmappable: { map: { 髙: 高 } } }
//!   set: { report: result }
//! ```
//!
//! Every row is first checked against the CSV rules (characters outside
//! Shift_JIS, cells that are lists, rows over 5 MB): bad data is refused as a
//! whole, naming up to [`MAX_REPORTED`] rows, before anything is sent. The rows
//! are then turned into Shift_JIS CSV parts of at most 5 MB and 50,000 rows
//! ([`csv::Splitter`], one part in memory at a time) and imported one after the
//! other, in order, each with its own idempotency key (`<call key>/part-<n>`).
//! Result: `{masterId, parts, rows, inserted, updated, skipped, imports:
//! [{part, first_row, last_row, bytes, response}]}` (the counts are sums of the
//! service's answers where it gives them). A failure names the part and which
//! rows were already imported; retrying the step imports every part again, which
//! skips or updates the same rows by key (so the data ends the same; with
//! `sendPasswordEmail: 1` the password mails of re-sent rows may go out again).

pub mod client;
pub mod csv;
#[cfg(feature = "emulators")]
pub mod emulator;
pub mod limiter;
pub mod params;
pub mod source;

pub use params::{check_params, ParamIssue};

use crate::cloudsign::files::BlobSource;
use crate::config::Secret;
use crate::settings::Settings;
use limiter::Limiter;
use nagare_engine::connector::BoxFuture;
use nagare_engine::{Call, Connector, ConnectorError, Registry};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The service's limits per file and per minute.
pub const MAX_FILE_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_FILE_ROWS: usize = 50_000;
pub const MAX_REQUESTS_PER_MINUTE: usize = 20;
/// Most rows one call takes (bounds the parts and the time of one step).
pub const MAX_ROWS_PER_CALL: usize = 1_000_000;
/// Most bad rows named in one error.
pub const MAX_REPORTED: usize = 20;

/// Settings of a `rakuraku` connector instance.
///
/// ```yaml
/// connectors:
///   rakuraku:
///     type: rakuraku
///     base_url: https://example.rakurakuseisan.jp   # or http://127.0.0.1:8082 (emulator)
///     account: abc1234
///     token: { env: RAKURAKU_TOKEN }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RakurakuConfig {
    /// `https://{domain}`: the part of the login URL before the account.
    pub base_url: String,
    /// The account, the first path segment after the domain.
    pub account: String,
    /// The API token made by the admin user (sent as `X-RS-apitoken`).
    pub token: Secret,
    /// Per-request timeout (default 2m: a 5 MB import takes a while).
    #[serde(default, with = "crate::config::opt_duration")]
    pub timeout: Option<Duration>,
    /// Client-side rate limit, 1–20 (default 20, the service's limit).
    #[serde(default)]
    pub requests_per_minute: Option<usize>,
    /// Split files smaller than the service's 50,000 rows / 5 MB.
    #[serde(default)]
    pub max_rows_per_file: Option<usize>,
    #[serde(default)]
    pub max_bytes_per_file: Option<usize>,
}

impl RakurakuConfig {
    pub fn per_minute(&self) -> usize {
        self.requests_per_minute.unwrap_or(MAX_REQUESTS_PER_MINUTE)
    }

    pub fn limits(&self) -> csv::PartLimits {
        csv::PartLimits {
            max_bytes: self.max_bytes_per_file.unwrap_or(MAX_FILE_BYTES),
            max_rows: self.max_rows_per_file.unwrap_or(MAX_FILE_ROWS),
        }
    }

    /// The settings' own rules (called by the config loader).
    pub fn check(&self) -> Result<(), String> {
        crate::config::check_url(&self.base_url)?;
        if self.account.is_empty() || !self.account.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!(
                "`account` `{}` must be the account name of the URL (letters, digits, - _ .)",
                self.account
            ));
        }
        let within = |v: Option<usize>, max: usize, what: &str| match v {
            Some(n) if n == 0 || n > max => Err(format!("`{what}` must be 1 to {max}")),
            _ => Ok(()),
        };
        within(self.requests_per_minute, MAX_REQUESTS_PER_MINUTE, "requests_per_minute")?;
        within(self.max_rows_per_file, MAX_FILE_ROWS, "max_rows_per_file")?;
        within(self.max_bytes_per_file, MAX_FILE_BYTES, "max_bytes_per_file")
    }
}

/// `rakuraku.import` of one connector instance.
pub struct ImportConnector {
    instance: String,
    settings: Settings<Option<RakurakuConfig>>,
    http: reqwest::Client,
    limiter: Arc<Limiter>,
    /// Where `file:` inputs are read from.
    blobs: Arc<dyn BlobSource>,
}

/// Register `<name>.import` (settings `None`: not configured; a call says how to configure it).
pub fn register(
    registry: &mut Registry,
    name: &str,
    settings: Settings<Option<RakurakuConfig>>,
    blobs: Arc<dyn BlobSource>,
) {
    registry
        .register(format!("{name}.import"), ImportConnector::new(name, settings, Limiter::global()).with_blobs(blobs));
}

fn fatal(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::Fatal(msg.into())
}

impl ImportConnector {
    /// A connector with its own limiter (tests give one on a virtual clock).
    pub fn new(name: &str, settings: Settings<Option<RakurakuConfig>>, limiter: Arc<Limiter>) -> Self {
        ImportConnector {
            instance: name.to_string(),
            settings,
            http: crate::http::client(),
            limiter,
            blobs: Arc::new(crate::cloudsign::files::NoBlobs),
        }
    }

    /// Read `file:` inputs (CSV file variables) through `blobs`.
    pub fn with_blobs(mut self, blobs: Arc<dyn BlobSource>) -> Self {
        self.blobs = blobs;
        self
    }

    async fn run(&self, call: &Call) -> Result<Value, ConnectorError> {
        let cfg = self.settings.get();
        let cfg = cfg.as_ref().as_ref().ok_or_else(|| {
            fatal(format!(
                "the Rakuraku connector `{0}` is not configured: add `connectors: {0}: {{type: rakuraku, base_url, account, token}}` to the config file (see README, Connectors)",
                self.instance
            ))
        })?;
        // Borrowed, not cloned: `rows` may be 100,000 objects.
        let params = params::import_params(&call.input).map_err(|issues| {
            let lines: Vec<String> =
                issues.iter().map(|(p, m, h)| format!("with.{}: {m} ({h})", p.join("."))).collect();
            fatal(lines.join("; "))
        })?;
        let input = call.input.as_object().expect("import_params accepted a map");
        if let Some(file) = input.get("file") {
            let rows = source::FileRows::open(file, self.blobs.as_ref())?;
            return self.import(call, cfg, params, input, rows.len(), || rows.iter()).await;
        }
        let rows = params::rows_of(&input["rows"]).ok_or_else(|| fatal("`rows` must be a list of objects"))?;
        self.import(call, cfg, params, input, rows.len(), || rows.iter()).await
    }

    /// Check every row, then split and import the parts in order. `rows` gives the
    /// rows afresh for each pass (borrowed from a list, or read again from a file).
    async fn import<I, R>(
        &self,
        call: &Call,
        cfg: &RakurakuConfig,
        params: params::ImportParams,
        input: &serde_json::Map<String, Value>,
        count: usize,
        rows: impl Fn() -> I,
    ) -> Result<Value, ConnectorError>
    where
        I: Iterator<Item = R>,
        R: std::borrow::Borrow<Value>,
    {
        if count > MAX_ROWS_PER_CALL {
            return Err(fatal(format!("{count} rows; one import takes at most {MAX_ROWS_PER_CALL}")));
        }
        let mut spec = csv::CsvSpec {
            columns: params::columns(&input["columns"]).map_err(|(_, m)| fatal(m))?,
            charset: csv::Charset::default(),
            unmappable: csv::Unmappable::default(),
        };
        if let Some(o) = input.get("csv") {
            params::csv_options(o, &mut spec).map_err(|(_, m)| fatal(format!("`csv`: {m}")))?;
        }
        // Bad data is refused as a whole before the first part goes out.
        let (problems, bad_rows) = csv::check_rows(&spec, cfg.limits(), rows(), MAX_REPORTED);
        if bad_rows > 0 {
            let mut message = format!("{bad_rows} row(s) cannot be written as the CSV; nothing was imported: ");
            message.push_str(&problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
            if bad_rows > problems.len() {
                message.push_str(&format!("; and {} more", bad_rows - problems.len()));
            }
            return Err(ConnectorError::Business { code: "RAKURAKU_CSV".into(), message });
        }
        let client = client::Client::new(cfg, &self.instance, self.http.clone(), self.limiter.clone())?;
        let mut parts = csv::Splitter::new(spec, cfg.limits(), rows()).map_err(|e| fatal(e.to_string()))?;
        let params_json = params.to_json();
        let mut imports = Vec::new();
        let (mut inserted, mut updated, mut skipped, mut counted) = (0u64, 0u64, 0u64, true);
        while let Some(part) = parts.next_part() {
            // Checked above; kept for safety: the parts before it are already
            // imported (the message says so).
            let part = part.map_err(|e| ConnectorError::Business {
                code: "RAKURAKU_CSV".into(),
                message: format!("{e}{}", already(&imports)),
            })?;
            let key = format!("{}/part-{}", call.idempotency_key, part.index);
            let (index, first, last, bytes) = (part.index, part.first_row, part.last_row, part.bytes.len());
            tracing::info!(connector = %call.connector, instance = call.instance, part = index, first, last, of_rows = count, bytes, "rakuraku: importing part");
            let file = format!("master{}-part{index}.csv", params.master_id);
            let resp = client
                .import(&params_json, part.bytes, &file, &key)
                .await
                .map_err(|e| with_part(e, index, first, last, &imports))?;
            for (k, sum) in [("inserted", &mut inserted), ("updated", &mut updated), ("skipped", &mut skipped)] {
                match resp.get(k).and_then(Value::as_u64) {
                    Some(n) => *sum += n,
                    None => counted = false,
                }
            }
            imports
                .push(json!({ "part": index, "first_row": first, "last_row": last, "bytes": bytes, "response": resp }));
        }
        let sum = |n: u64| if counted { json!(n) } else { Value::Null };
        Ok(json!({
            "masterId": params.master_id,
            "parts": imports.len(),
            "rows": count,
            "inserted": sum(inserted),
            "updated": sum(updated),
            "skipped": sum(skipped),
            "imports": imports,
        }))
    }
}

/// ` (parts 1–2, rows 1–100000, were imported)` when some parts went in.
fn already(imports: &[Value]) -> String {
    match imports.last() {
        None => " (nothing was imported)".into(),
        Some(last) => format!(" (parts 1–{}, rows 1–{}, were imported before it)", last["part"], last["last_row"]),
    }
}

/// Put the part into the message, keeping the class of the error.
fn with_part(e: ConnectorError, part: usize, first: usize, last: usize, imports: &[Value]) -> ConnectorError {
    let ctx = |m: String| format!("part {part} (rows {first}–{last}): {m}{}", already(imports));
    match e {
        ConnectorError::Retryable(m) => ConnectorError::Retryable(ctx(m)),
        ConnectorError::RetryAfter { message, after } => ConnectorError::RetryAfter { message: ctx(message), after },
        ConnectorError::Business { code, message } => ConnectorError::Business { code, message: ctx(message) },
        ConnectorError::Fatal(m) => ConnectorError::Fatal(ctx(m)),
        other => other,
    }
}

impl Connector for ImportConnector {
    fn call<'a>(&'a self, call: &'a Call) -> BoxFuture<'a, Result<Value, ConnectorError>> {
        Box::pin(self.run(call))
    }

    /// The import's parameter rules, at deploy (seed 003: `duplicateKey: 0` with
    /// `masterId: 18` is refused with its line, not when the schedule runs).
    fn check_input(&self, with: &Value) -> Vec<nagare_engine::compile::InputIssue> {
        check_params(with)
            .into_iter()
            .map(|(path, message, hint)| nagare_engine::compile::InputIssue { path, message, hint })
            .collect()
    }
}
