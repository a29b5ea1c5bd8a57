//! Prometheus metrics at `/metrics`, rendered by hand in the text format (a few
//! counters, one gauge, one histogram do not need a metrics crate).
//!
//! Engine figures come from [`nagare_engine::Engine::stats`]; HTTP figures are
//! counted here per method, route template and status, so `/api/v1/tasks/12-3`
//! and `/api/v1/tasks/12-4` are one series. Every label is bounded whatever the
//! client sends: the method is one of [`METHODS`] or `OTHER`, the route is a
//! template of the router or `unmatched`, the status one the server produced.
//! Webhook figures are per endpoint, labelled by its index in the `webhooks:`
//! section (at most [`MAX_WEBHOOKS`](super::webhooks::config::MAX_WEBHOOKS)),
//! never by its URL (which may carry a token).

use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

/// Requests served, by (method, route template, status).
#[derive(Debug, Default)]
pub struct HttpStats {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl HttpStats {
    /// Every (method, route, status) seen so far, with its count.
    pub fn snapshot(&self) -> Vec<((String, String, u16), u64)> {
        self.requests.lock().expect("stats lock").iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The methods counted by name; any other (a client may send any token) is `OTHER`.
pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The method as a metric label: one of [`METHODS`], else `OTHER`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    METHODS.iter().copied().find(|m| *m == method.as_str()).unwrap_or("OTHER")
}

/// Middleware inside the router: hand the matched route template out with the
/// response, for [`track`], which runs before routing.
pub async fn expose_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(route) = route {
        resp.extensions_mut().insert(route);
    }
    resp
}

/// Middleware around the router: count the request and log it. A request refused
/// before routing (no token) has the route `unmatched`.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = method_label(req.method()).to_string();
    let path = req.uri().path().to_string();
    let t = Instant::now();
    let resp = next.run(req).await;
    let route = resp.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let status = resp.status().as_u16();
    tracing::debug!(%method, path = %super::error::echo(&path), status, micros = t.elapsed().as_micros() as u64, "request");
    // Unmatched paths are one series, so a scanner cannot grow the map without bound.
    let route = route.unwrap_or_else(|| UNMATCHED.to_string());
    *state.http.requests.lock().expect("stats lock").entry((method, route, status)).or_insert(0) += 1;
    resp
}

/// Engine and HTTP metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let s = state.engine.stats();
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n");
    };
    counter("nagare_instances_started_total", "Instances started since the server started.", s.instances_started);
    counter("nagare_instances_completed_total", "Instances that reached their end.", s.instances_completed);
    counter("nagare_instances_cancelled_total", "Instances cancelled.", s.instances_cancelled);
    let _ = write!(
        out,
        "# HELP nagare_tasks_open User tasks waiting for someone.\n# TYPE nagare_tasks_open gauge\nnagare_tasks_open {}\n",
        s.tasks_open
    );
    let name = "nagare_commit_duration_seconds";
    let _ = write!(out, "# HELP {name} Time to make one event's changes durable.\n# TYPE {name} histogram\n");
    for (bound, n) in &s.commit_buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = write!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}\n",
        s.commits, s.commit_seconds_sum, s.commits
    );
    let name = "nagare_http_requests_total";
    let _ = write!(out, "# HELP {name} HTTP requests by method, route and status.\n# TYPE {name} counter\n");
    for ((method, route, status), n) in state.http.snapshot() {
        let route = route.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "{name}{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
    }
    let name = "nagare_http_panics_total";
    let _ = write!(
        out,
        "# HELP {name} Requests that panicked and were answered 500 (bugs: please report).\n# TYPE {name} counter\n{name} {}\n",
        super::panic::panics()
    );
    webhook_metrics(&mut out, &state.webhooks);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}

/// Each webhook endpoint's events by outcome, and its failed attempts.
fn webhook_metrics(out: &mut String, endpoints: &[std::sync::Arc<super::webhooks::Stats>]) {
    let name = "nagare_webhook_events_total";
    let _ = write!(
        out,
        "# HELP {name} Events for each webhook endpoint (its index in `webhooks:`) by outcome: delivered (2xx), \
         given_up (out of attempts, or left at shutdown), missed (dropped from a full queue).\n# TYPE {name} counter\n"
    );
    for (i, stats) in endpoints.iter().enumerate() {
        for (outcome, n) in stats.events() {
            let _ = writeln!(out, "{name}{{endpoint=\"{i}\",outcome=\"{outcome}\"}} {n}");
        }
    }
    let name = "nagare_webhook_failed_attempts_total";
    let _ = write!(
        out,
        "# HELP {name} Webhook attempts that failed (not 2xx, timeout, refused), each retry counted.\n# TYPE {name} counter\n"
    );
    for (i, stats) in endpoints.iter().enumerate() {
        let _ = writeln!(out, "{name}{{endpoint=\"{i}\"}} {}", stats.failed_attempts.load(Ordering::Relaxed));
    }
}
