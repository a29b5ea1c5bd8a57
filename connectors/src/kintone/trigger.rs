//! Record-change start: one instance per kintone record that matches a query.
//!
//! A process declares it in its start event:
//!
//! ```yaml
//! start:
//!   watch:
//!     source: kintone                       # the kintone connector instance
//!     settings: { query: 'k_ステータス in ("対応要")' }   # a condition; `app` optional
//!     every: 30s
//!     set: { q_kintoneId: 'record["$id"]' } # start variables from the record
//!   next: fetch
//! ```
//!
//! The [`Watcher`] polls that condition (paging by `$id`, so any number of
//! records) and starts an instance per record with the business key
//! `kintone:<app>:<record id>` ([`Engine::start_record`]). A record has **at most
//! one running** instance however often it is seen, by polling or by webhook,
//! before or after a restart. When it matches again after its instance ended (a
//! re-opened order) and has changed since (its `$revision` is higher), it starts
//! its next generation, key `kintone:<app>:<id>#<n>`, unless the watch says
//! `on_retrigger: ignore`. The `started` history line says which trigger
//! (`poll`, `webhook`, `manual`) started which generation. The webhook
//! ([`webhook_router`], `POST /hooks/kintone/{process}`) takes kintone's webhook
//! body only as a hint: it re-reads the record through the API and starts only if
//! the record matches the condition now, so a forged or stale webhook cannot start
//! anything the poll would not.

use super::client::{self, Client};
use super::{fields, query};
use crate::config::KintoneConfig;
use crate::Connectors;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use nagare_engine::expr::Env;
use nagare_engine::process::Process;
use nagare_engine::{ConnectorError, Engine, RecordStart, RecordStartOptions, Vars};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most records one poll starts instances for.
pub const MAX_PER_POLL: usize = 10_000;

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollReport {
    pub process: String,
    /// Records matching the condition.
    pub matched: usize,
    /// Instances started now.
    pub started: Vec<u64>,
    /// Records that did not start one: their instance runs, or it ended and the
    /// record does not start again (unchanged since, or `on_retrigger: ignore`).
    pub existing: usize,
    /// Records whose instance could not be started, with the reason.
    pub failed: Vec<(u64, String)>,
}

/// Watches deployed processes' kintone starts.
pub struct Watcher {
    engine: Engine,
    connectors: Arc<Connectors>,
    http: reqwest::Client,
}

/// A process's kintone watch, resolved against the connector settings.
struct Watch {
    process: Arc<Process>,
    instance: String,
    app: u64,
    cond: String,
}

/// Why a watch could not run (said once per poll in the log).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WatchError {
    #[error("process `{0}` has no kintone watch (`start: watch:` with a kintone source)")]
    NoWatch(String),
    #[error("process `{process}`: {reason}")]
    Settings { process: String, reason: String },
    #[error("process `{process}`: {error}")]
    Kintone { process: String, error: ConnectorError },
}

/// The app a watch reads: its `settings: app`, else the connector instance's.
pub fn watch_app(settings: &Map<String, Value>, cfg: Option<&KintoneConfig>, source: &str) -> Result<u64, String> {
    match settings.get("app") {
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| format!("`settings: app: {v}` is not an app id")),
        None => cfg
            .and_then(|c| c.app)
            .ok_or_else(|| format!("no app: set `app` in the watch settings or in connectors.{source}")),
    }
}

/// Whether `text` is what was said last for `process` (then it need not be said
/// again); remembers it otherwise.
fn repeated(said: &mut HashMap<String, String>, process: &str, text: &str) -> bool {
    if said.get(process).is_some_and(|t| t == text) {
        return true;
    }
    said.insert(process.to_string(), text.to_string());
    false
}

/// The business key of a kintone record (without generation, see
/// [`nagare_engine::records`]).
pub fn record_key(app: u64, id: u64) -> String {
    format!("kintone:{app}:{id}")
}

impl Watcher {
    pub fn new(engine: Engine, connectors: Arc<Connectors>) -> Watcher {
        Watcher { engine, connectors, http: crate::http::client() }
    }

    /// Latest versions of the deployed processes whose watch names a kintone instance.
    fn watched_processes(&self) -> Vec<Arc<Process>> {
        let names = self.connectors.kintone_names();
        self.engine
            .processes()
            .into_iter()
            .filter_map(|versions| versions.last().cloned())
            .filter(|p| p.watch.as_ref().is_some_and(|w| names.contains(&w.source)))
            .collect()
    }

    /// Ids of the processes this watcher polls.
    pub fn watched(&self) -> Vec<String> {
        self.watched_processes().iter().map(|p| p.id.clone()).collect()
    }

    fn resolve(&self, p: &Arc<Process>) -> Result<(Watch, Client), WatchError> {
        let w = p.watch.as_ref().ok_or_else(|| WatchError::NoWatch(p.id.clone()))?;
        let bad = |reason: String| WatchError::Settings { process: p.id.clone(), reason };
        let settings = self
            .connectors
            .kintone(&w.source)
            .ok_or_else(|| bad(format!("no kintone connector instance `{}`", w.source)))?;
        let cfg = settings.as_ref().as_ref().ok_or_else(|| {
            bad(format!("the kintone connector `{}` is not configured (see README, Connectors)", w.source))
        })?;
        let app = watch_app(&w.settings, Some(cfg), &w.source).map_err(bad)?;
        let cond = w.settings.get("query").and_then(Value::as_str).unwrap_or("").to_string();
        query::parse_condition(&cond).map_err(|e| bad(format!("`settings: query`: {e}")))?;
        let client = Client::new(cfg, &w.source, self.http.clone())
            .map_err(|e| WatchError::Kintone { process: p.id.clone(), error: e })?;
        Ok((Watch { process: p.clone(), instance: w.source.clone(), app, cond }, client))
    }

    /// Poll one process's watch now.
    pub async fn poll(&self, process: &str) -> Result<PollReport, WatchError> {
        let p = self.engine.latest(process).ok_or_else(|| WatchError::NoWatch(process.to_string()))?;
        let (w, client) = self.resolve(&p)?;
        let records = client
            .query_all(w.app, &w.cond, &[], MAX_PER_POLL)
            .await
            .map_err(|e| WatchError::Kintone { process: process.to_string(), error: e.into() })?;
        let mut report = PollReport { process: process.to_string(), matched: records.len(), ..Default::default() };
        for r in &records {
            let Some(id) = client::record_id(r) else { continue };
            match self.start_for(&w, id, r, "poll").await {
                Ok(RecordStart::Started(inst)) => report.started.push(inst.id),
                Ok(_) => report.existing += 1,
                Err(e) => {
                    tracing::warn!(process, record = id, error = %e, "kintone record could not start an instance");
                    report.failed.push((id, e));
                }
            }
        }
        if !report.started.is_empty() {
            tracing::info!(process, instance = %w.instance, app = w.app, started = ?report.started, "kintone watch started instances");
        }
        Ok(report)
    }

    /// Poll every watched process once.
    pub async fn poll_all(&self) -> Vec<Result<PollReport, WatchError>> {
        let mut out = Vec::new();
        for p in self.watched_processes() {
            out.push(self.poll(&p.id).await);
        }
        out
    }

    /// Start the instance of record `id` unless it has a running one; a record
    /// whose last instance ended starts its next generation (by the watch's
    /// `on_retrigger`). `via`: `poll` or `webhook`, said in the history.
    async fn start_for(
        &self,
        w: &Watch,
        id: u64,
        record: &Map<String, Value>,
        via: &str,
    ) -> Result<RecordStart, String> {
        let p = &w.process;
        let watch = p.watch.as_ref().expect("resolved watches have one");
        let plain = Value::Object(fields::record_to_plain(record));
        let mut vars = Vars::new();
        let empty = Vars::new();
        for (var, e) in &watch.set {
            let extra = [("record", &plain)];
            let env = Env {
                vars: &empty,
                declared: &p.var_names,
                now: self.engine.now(),
                instance: 0,
                started_by: None,
                extra: &extra,
            };
            let v = e.eval(&env).map_err(|err| format!("`set: {var}` (`{}`): {err}", e.source.trim()))?;
            vars.insert(var.clone(), v);
        }
        let engine = self.engine.clone();
        let process = p.id.clone();
        let key = record_key(w.app, id);
        let opts = RecordStartOptions {
            by: Some(format!("kintone:{}", w.instance)),
            via: via.to_string(),
            on_retrigger: watch.on_retrigger,
            revision: client::record_revision(record).and_then(|r| u64::try_from(r).ok()),
        };
        tokio::task::spawn_blocking(move || engine.start_record(&process, &key, vars, opts))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Poll every watch at its interval until `shutdown` completes. New deploys
    /// are picked up at the next round.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last: HashMap<String, Instant> = HashMap::new();
        // The last failure said per process: the same one again (kintone not
        // configured, say) is logged at debug, not every `every`.
        let mut said: HashMap<String, String> = HashMap::new();
        loop {
            for p in self.watched_processes() {
                let every = p.watch.as_ref().map(|w| w.every).unwrap_or(Duration::from_secs(60));
                if last.get(&p.id).is_some_and(|t| t.elapsed() < every) {
                    continue;
                }
                last.insert(p.id.clone(), Instant::now());
                match self.poll(&p.id).await {
                    Ok(_) => {
                        said.remove(&p.id);
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if repeated(&mut said, &p.id, &text) {
                            tracing::debug!(error = %text, "kintone watch failed again; will poll again");
                        } else {
                            tracing::warn!(error = %text, "kintone watch failed; will poll again (said once until it changes)");
                        }
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Handle a kintone webhook for `process`: re-read the record, start if it
    /// matches. `secret` is the `?secret=` of the request.
    pub async fn webhook(&self, process: &str, body: &Value, secret: Option<&str>) -> Result<Value, HookError> {
        let p = self.engine.latest(process).ok_or_else(|| HookError::not_found(format!("no process `{process}`")))?;
        let (w, client) = self.resolve(&p).map_err(|e| match e {
            WatchError::NoWatch(_) => HookError::not_found(e.to_string()),
            other => HookError::unavailable(other.to_string()),
        })?;
        let settings = self.connectors.kintone(&w.instance).and_then(|s| s.as_ref().clone());
        if let Some(expected) = settings.as_ref().and_then(|s| s.webhook_secret.as_ref()) {
            let expected = expected
                .reveal(&format!("connectors.{}.webhook_secret", w.instance))
                .map_err(|e| HookError::unavailable(e.to_string()))?;
            if secret != Some(expected.as_str()) {
                return Err(HookError {
                    status: 401,
                    code: "bad-secret",
                    message: "the webhook secret is missing or wrong".into(),
                });
            }
        }
        let kind = body.get("type").and_then(Value::as_str).unwrap_or("");
        if kind.starts_with("DELETE") || kind.contains("COMMENT") {
            return Ok(json!({ "started": false, "reason": format!("{kind} does not start instances") }));
        }
        let app = body
            .pointer("/app/id")
            .and_then(|v| v.as_str().and_then(|s| s.parse::<u64>().ok()).or_else(|| v.as_u64()))
            .ok_or_else(|| HookError::bad("the body has no `app.id` (send kintone's webhook body)"))?;
        if app != w.app {
            return Err(HookError::bad(format!("app {app} is not the app {} this process watches", w.app)));
        }
        let id = body
            .pointer("/record/$id/value")
            .and_then(|v| v.as_str().and_then(|s| s.parse::<u64>().ok()).or_else(|| v.as_u64()))
            .ok_or_else(|| HookError::bad("the body has no `record.$id.value`"))?;
        let cond =
            if w.cond.trim().is_empty() { format!("$id = {id}") } else { format!("({}) and $id = {id}", w.cond) };
        let found = client
            .query_all(w.app, &cond, &[], 1)
            .await
            .map_err(|e| HookError::unavailable(ConnectorError::from(e).to_string()))?;
        let Some(r) = found.first() else {
            return Ok(json!({ "started": false, "reason": "the record does not match the watch condition now" }));
        };
        match self.start_for(&w, id, r, "webhook").await {
            Ok(RecordStart::Started(inst)) => Ok(json!({ "started": true, "instance": inst.id })),
            Ok(RecordStart::Running(inst)) => Ok(json!({
                "started": false,
                "instance": inst.id,
                "reason": format!("the record's instance {} is still running", inst.id),
            })),
            Ok(RecordStart::Ended { last, reason }) => {
                Ok(json!({ "started": false, "instance": last.id, "reason": reason }))
            }
            Err(e) => Err(HookError { status: 422, code: "start-failed", message: e }),
        }
    }
}

/// A webhook request that was refused: HTTP status and a JSON `{code, message}`.
#[derive(Debug, Clone, PartialEq)]
pub struct HookError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl HookError {
    fn not_found(m: String) -> Self {
        HookError { status: 404, code: "not-found", message: m }
    }
    fn bad(m: impl Into<String>) -> Self {
        HookError { status: 400, code: "bad-webhook", message: m.into() }
    }
    fn unavailable(m: String) -> Self {
        HookError { status: 503, code: "kintone-unavailable", message: m }
    }
}

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "code": self.code, "message": self.message, "details": {} }))).into_response()
    }
}

#[derive(serde::Deserialize)]
struct HookQuery {
    secret: Option<String>,
}

async fn hook(
    State(w): State<Arc<Watcher>>,
    Path(process): Path<String>,
    Query(q): Query<HookQuery>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return HookError::bad("the body is not JSON").into_response();
    };
    match w.webhook(&process, &body, q.secret.as_deref()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /hooks/kintone/{process}`: kintone's webhook, for a server to mount.
pub fn webhook_router(watcher: Arc<Watcher>) -> Router {
    Router::new().route("/hooks/kintone/{process}", post(hook)).with_state(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: an unconfigured kintone logged the same warning every 30 s.
    #[test]
    fn a_watch_failure_is_warned_once_until_it_changes() {
        let mut said = HashMap::new();
        assert!(!repeated(&mut said, "order-delivery", "not configured"));
        assert!(repeated(&mut said, "order-delivery", "not configured"));
        assert!(repeated(&mut said, "order-delivery", "not configured"));
        assert!(!repeated(&mut said, "other", "not configured"), "per process");
        assert!(!repeated(&mut said, "order-delivery", "401"), "a new failure is said");
        said.remove("order-delivery");
        assert!(!repeated(&mut said, "order-delivery", "401"), "said again after a success");
    }
}
