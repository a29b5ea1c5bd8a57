//! `/api/v1/jobs`: external workers serve connectors out of process, in any language.
//!
//! A worker long-polls `activate` for jobs of its connectors (declared `type:
//! external` in the config file), does the work, and reports `complete` (the output,
//! which the step's `set:` maps to variables) or `fail` (retried, a business error
//! for a boundary, or an incident). The engine leases each activated job to the
//! worker for a while; a lease that runs out, or a restart, hands the job out again,
//! so jobs run at least once: pass `idempotency_key` to the service.
//!
//! Only users with `worker: true` in the users file (and administrators) may serve
//! jobs. A lease belongs to the caller, and to the `worker` name it gave if any:
//! one user's workers cannot report each other's jobs.

use super::auth::{Auth, Caller};
use super::error::{echo, ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::instances::{check_text, open_tasks};
use super::messages::DurationArg;
use super::tasks::MAX_ERROR_CODE_CHARS;
use super::views::InstanceView;
use super::{blocking, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use nagare_engine::runtime::Failure;
use nagare_engine::{ActivatedJob, Engine, JobError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;
use utoipa::ToSchema;

/// Most jobs one activation hands out.
pub const MAX_JOBS: usize = 100;
/// Longest long poll, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;
/// Lease when the request gives none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);
/// Longest lease: a worker that needs longer should fail the job and let it retry.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// How often a long poll looks again without being woken: leases that run out
/// wake nobody, so their jobs are noticed within this.
const RECHECK: Duration = Duration::from_secs(1);
/// Longest connector or worker name, and job id, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Longest failure message, in characters.
const MAX_MESSAGE_CHARS: usize = 4000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// The connector to serve, `<instance>.<operation>` (`pdf.render`).
    #[schema(min_length = 1, max_length = 200)]
    pub connector: Option<String>,
    /// Several connectors at once (with or instead of `connector`).
    #[serde(default)]
    pub connectors: Vec<String>,
    /// A name for this worker process, when a user runs several (default: the
    /// caller's user id). `complete` and `fail` must give the same name.
    #[schema(min_length = 1, max_length = 200)]
    pub worker: Option<String>,
    /// At most this many jobs, 1 to 100 (default 1).
    #[schema(minimum = 1, maximum = 100)]
    pub max_jobs: Option<usize>,
    /// How long the jobs are the worker's: seconds (`30`) or a duration text
    /// (`"30s"`, `"5m"`), 1 s to 24 h (default 5 minutes). After that another worker
    /// may activate them.
    #[schema(value_type = Option<String>, example = "30s")]
    pub lease: Option<DurationArg>,
    /// Long poll: when no job is due, wait up to this many seconds (0 to 60, default
    /// 0) for one before answering an empty list.
    #[schema(maximum = 60)]
    pub wait: Option<u64>,
}

/// A job for a worker: call the service with `input`, then report.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// The job id, for `complete` and `fail`.
    pub id: String,
    /// Starts at 1; a retry after a reported failure has the next number.
    pub attempt: u32,
    pub instance: u64,
    /// The service task's node id.
    pub node: String,
    pub connector: String,
    /// The step's evaluated `with:` mapping.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Same for every attempt of this call: send it to the service so that a job
    /// run twice (lease ran out, engine restarted) has its effect once.
    pub idempotency_key: String,
    /// Report before this; afterwards another worker may activate the job.
    pub lease_until: DateTime<Utc>,
}

impl From<ActivatedJob> for JobView {
    fn from(j: ActivatedJob) -> Self {
        JobView {
            id: j.id,
            attempt: j.attempt,
            instance: j.instance,
            node: j.node,
            connector: j.connector,
            input: j.input,
            idempotency_key: j.idempotency_key,
            lease_until: j.lease_until,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobCompleteRequest {
    /// The service's result: the step's `set:` reads it as `result` (default `{}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub output: Option<Value>,
    /// The worker name given to `activate`, if one was.
    #[schema(min_length = 1, max_length = 200)]
    pub worker: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// What went wrong (kept in the history, shown in an incident). 1 to 4,000 characters.
    #[schema(min_length = 1, max_length = 4000)]
    pub message: String,
    /// Worth trying again (default true): retried after the step's backoff until its
    /// attempts run out, then an incident. False: an incident at once.
    pub retryable: Option<bool>,
    /// Retryable only: not before this many seconds (the service's `Retry-After`);
    /// the step's backoff still applies when longer.
    pub retry_after: Option<u64>,
    /// A business error instead (the service said no): an error boundary of the
    /// step with this code takes the token on; none is an incident.
    #[schema(min_length = 1, max_length = 100)]
    pub error_code: Option<String>,
    /// The worker name given to `activate`, if one was.
    #[schema(min_length = 1, max_length = 200)]
    pub worker: Option<String>,
}

/// 403 unless the caller may serve jobs.
fn require_worker(state: &AppState, caller: &Caller) -> ApiResult<()> {
    if state.users.current().may_serve_jobs(caller) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "only workers (`worker: true` in the users file) and administrators may serve jobs; `{}` is not one",
            caller.id
        )))
    }
}

/// Whom a lease belongs to: the caller, and its worker name if it gave one.
fn holder(caller: &Caller, worker: Option<&str>) -> ApiResult<String> {
    match worker {
        None => Ok(caller.id.clone()),
        Some(w) => {
            check_text("worker", w, MAX_NAME_CHARS, true)?;
            Ok(format!("{}/{w}", caller.id))
        }
    }
}

fn job_error(e: JobError) -> ApiError {
    let message = e.to_string();
    match e {
        JobError::NotExternal(name) => {
            ApiError::unprocessable("not-external", message).with_details(json!({ "connector": echo(&name) }))
        }
        JobError::Stale(_) => ApiError::new(StatusCode::CONFLICT, "job-not-awaited", message),
        JobError::NotLeased { holder, .. } => {
            ApiError::new(StatusCode::CONFLICT, "not-leased", message).with_details(json!({ "holder": holder }))
        }
        JobError::Engine(e) => ApiError::engine(e, None),
        _ => ApiError::unprocessable("job-refused", message),
    }
}

/// Activate up to `max` jobs of `connectors` for `worker`, on the blocking pool.
async fn activate_now(
    engine: &Engine,
    connectors: &[String],
    worker: &str,
    max: usize,
    lease: Duration,
) -> ApiResult<Vec<ActivatedJob>> {
    let (engine, connectors, worker) = (engine.clone(), connectors.to_vec(), worker.to_string());
    blocking(move || {
        let mut out = Vec::new();
        for c in &connectors {
            if out.len() >= max {
                break;
            }
            out.extend(engine.activate_jobs(c, &worker, max - out.len(), lease).map_err(job_error)?);
        }
        Ok(out)
    })
    .await
}

/// Activate jobs of external connectors: lease up to `max_jobs` due jobs to the
/// caller. With `wait`, a long poll: answers as soon as a job is due, or an empty
/// list after `wait` seconds (or at once when the server shuts down).
#[utoipa::path(post, path = "/api/v1/jobs/activate", operation_id = "activate_jobs", tag = "jobs",
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "The jobs now leased to the caller, oldest due first; empty if none came due in time", body = Vec<JobView>),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a worker or administrator", body = ErrorBody),
        (status = 422, description = "No connector, one not served by external workers (`not-external`), or `max_jobs`, `lease` or `wait` out of range", body = ErrorBody),
    ))]
pub async fn activate(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<ActivateRequest>,
) -> ApiResult<Json<Vec<JobView>>> {
    require_worker(&state, &caller)?;
    let worker = holder(&caller, req.worker.as_deref())?;
    let connectors: Vec<String> = req.connector.into_iter().chain(req.connectors).collect();
    if connectors.is_empty() {
        return Err(ApiError::unprocessable(
            "required",
            "name the connector to serve: `connector: \"pdf.render\"` (or `connectors: [...]`)",
        ));
    }
    for c in &connectors {
        check_text("connector", c, MAX_NAME_CHARS, true)?;
        if !state.engine.connectors().is_external(c) {
            return Err(job_error(JobError::NotExternal(c.clone())));
        }
    }
    let max = req.max_jobs.unwrap_or(1);
    if !(1..=MAX_JOBS).contains(&max) {
        return Err(ApiError::unprocessable("bad-max-jobs", format!("`max_jobs` must be 1 to {MAX_JOBS}, not {max}")));
    }
    let lease = req.lease.as_ref().map(|l| l.parse("lease", "bad-lease")).transpose()?.unwrap_or(DEFAULT_LEASE);
    if lease < Duration::from_secs(1) || lease > MAX_LEASE {
        return Err(ApiError::unprocessable("bad-lease", "`lease` must be 1 second to 24 hours"));
    }
    let wait = req.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::unprocessable(
            "bad-wait",
            format!("`wait` must be 0 to {MAX_WAIT_SECS} seconds, not {wait}; poll again after an empty answer"),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut stopping = state.stopping.subscribe();
    let engine = state.engine.clone();
    loop {
        // Taken before looking, so that a job arriving meanwhile still wakes us.
        let ready = engine.jobs_ready();
        let jobs = activate_now(&engine, &connectors, &worker, max, lease).await?;
        if !jobs.is_empty() || Instant::now() >= deadline || *stopping.borrow() {
            return Ok(Json(jobs.into_iter().map(JobView::from).collect()));
        }
        tokio::select! {
            _ = ready => {}
            _ = tokio::time::sleep_until(deadline.min(Instant::now() + RECHECK)) => {}
            _ = stopping.wait_for(|s| *s) => return Ok(Json(Vec::new())),
        }
    }
}

/// Report a job done: `output` goes through the step's `set:` into variables and the
/// token moves on. Only the worker holding the job's lease may report it.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/complete", operation_id = "complete_job", tag = "jobs",
    params(("id" = String, Path, description = "Job id (from `activate`)")),
    request_body = JobCompleteRequest,
    responses(
        (status = 200, description = "Recorded; the instance as it is now", body = InstanceView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a worker or administrator", body = ErrorBody),
        (status = 409, description = "Reported already, cancelled or unknown (`job-not-awaited`), or leased to another worker or not activated (`not-leased`)", body = ErrorBody),
        (status = 422, description = "An empty or too long worker name", body = ErrorBody),
    ))]
pub async fn complete(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<JobCompleteRequest>,
) -> ApiResult<Json<InstanceView>> {
    require_worker(&state, &caller)?;
    let worker = holder(&caller, req.worker.as_deref())?;
    let output = req.output.unwrap_or_else(|| json!({}));
    report(state.engine.clone(), id, worker, Ok(output)).await
}

/// Report a job failed: retried after the step's backoff (`retryable`, the default),
/// an incident (`retryable: false`, or retries run out), or a business error for the
/// step's error boundary (`error_code`).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/fail", operation_id = "fail_job", tag = "jobs",
    params(("id" = String, Path, description = "Job id (from `activate`)")),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Recorded; the instance as it is now (a retry is a new job with the next attempt)", body = InstanceView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a worker or administrator", body = ErrorBody),
        (status = 409, description = "Reported already, cancelled or unknown (`job-not-awaited`), or leased to another worker or not activated (`not-leased`)", body = ErrorBody),
        (status = 422, description = "An empty or too long message, code or worker name, or `error_code` with `retryable: true` or `retry_after` (`bad-failure`)", body = ErrorBody),
    ))]
pub async fn fail(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<FailRequest>,
) -> ApiResult<Json<InstanceView>> {
    require_worker(&state, &caller)?;
    let worker = holder(&caller, req.worker.as_deref())?;
    check_text("message", &req.message, MAX_MESSAGE_CHARS, true)?;
    let failure = match (req.error_code, req.retryable.unwrap_or(true)) {
        (Some(code), _) => {
            check_text("error_code", &code, MAX_ERROR_CODE_CHARS, true)?;
            if req.retryable == Some(true) || req.retry_after.is_some() {
                return Err(ApiError::unprocessable(
                    "bad-failure",
                    "a business error (`error_code`) is not retried: leave out `retryable` and `retry_after`",
                ));
            }
            Failure::Business { code, message: req.message }
        }
        (None, true) => {
            Failure::Retryable { message: req.message, retry_after_ms: req.retry_after.map(|s| s.saturating_mul(1000)) }
        }
        (None, false) => {
            if req.retry_after.is_some() {
                return Err(ApiError::unprocessable(
                    "bad-failure",
                    "`retry_after` is for retryable failures; leave it out with `retryable: false`",
                ));
            }
            Failure::Fatal { message: req.message }
        }
    };
    report(state.engine.clone(), id, worker, Err(failure)).await
}

async fn report(
    engine: Engine,
    id: String,
    worker: String,
    result: Result<Value, Failure>,
) -> ApiResult<Json<InstanceView>> {
    check_text("id", &id, MAX_NAME_CHARS, true)?;
    blocking(move || {
        let inst = match result {
            Ok(output) => engine.complete_job(&id, &worker, output),
            Err(failure) => engine.fail_job(&id, &worker, failure),
        }
        .map_err(job_error)?;
        let tasks = open_tasks(&engine, &inst)?;
        let p = engine.process(&inst.process, inst.version);
        Ok(Json(InstanceView::new(&inst, tasks).masked(p.as_deref(), &[])))
    })
    .await
}
