//! `/api/v1/instances`: start, list, read, history, cancel.
//!
//! Non-administrators see the instances they started or acted on, and those with an
//! open task in their inbox; any other instance is answered 404, exactly as one
//! that does not exist, so ids cannot be probed.

use super::auth::{Auth, Caller};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{is_multipart, limited_json, ApiJson, ApiPath, ApiQuery};
use super::views::{HistoryItem, InstancePage, InstanceSummary, InstanceView, VarsJson};
use super::{blocking, AppState, DEFAULT_PAGE, MAX_PAGE};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use nagare_engine::runtime::{Instance, Status, Task};
use nagare_engine::store::InstanceFilter;
use nagare_engine::{Engine, EngineError, StartOptions};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Longest business key, cancel reason, comment... accepted, in characters.
pub const MAX_KEY_CHARS: usize = 200;
pub const MAX_REASON_CHARS: usize = 1_000;

/// Refuse a too long or blank piece of text with a message naming it.
pub fn check_text(name: &str, text: &str, max: usize, required: bool) -> ApiResult<()> {
    let n = text.chars().count();
    if n > max {
        return Err(ApiError::unprocessable(
            "too-long",
            format!("`{name}` is too long: {n} characters, at most {max} allowed"),
        ));
    }
    if required && text.trim().is_empty() {
        return Err(ApiError::unprocessable("required", format!("`{name}` must not be empty")));
    }
    Ok(())
}

/// The open tasks of `inst`.
pub fn open_tasks(engine: &Engine, inst: &Instance) -> ApiResult<Vec<Task>> {
    let mut out = Vec::new();
    for id in inst.open_task_ids() {
        out.push(engine.task(id)?);
    }
    Ok(out)
}

/// The instance and its open tasks, if the caller may see it; else 404.
pub(super) fn visible(engine: &Engine, caller: &Caller, id: u64) -> ApiResult<(Instance, Vec<Task>)> {
    let inst = match engine.instance(id) {
        Err(nagare_engine::EngineError::UnknownInstance(_)) => return Err(super::archived::gone(engine, caller, id)?),
        other => other?,
    };
    let tasks = open_tasks(engine, &inst)?;
    if !caller.may_see_instance(&inst, &tasks) {
        return Err(ApiError::unknown_instance(id));
    }
    Ok((inst, tasks))
}

/// A start with files, as `multipart/form-data` (parts in this order).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StartForm {
    /// Process id.
    process: String,
    /// The variables as a JSON object (text part), without the files.
    variables: Option<String>,
    business_key: Option<String>,
    /// One part per file variable, named like the variable, with a file name.
    #[schema(value_type = Option<Vec<u8>>, format = Binary)]
    files: Option<Vec<u8>>,
}

/// Start an instance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Process id; the latest version starts.
    #[schema(min_length = 1, max_length = 200)]
    pub process: String,
    /// Initial variables, checked against their declared types.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: VarsJson,
    /// A start with a key that already has an instance returns that instance.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub business_key: Option<String>,
}

/// Start an instance of the latest version of a process, as the caller. With
/// files, send `multipart/form-data`: text parts `process`, `variables` (the JSON
/// object) and `business_key`, first; then one part per file, named like its
/// variable, with a file name (checked against the variable's rules as it streams).
#[utoipa::path(post, path = "/api/v1/instances", operation_id = "start_instance", tag = "instances",
    request_body(content(
        (StartRequest = "application/json"),
        (StartForm = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "Started (or, with a known business key, the existing instance)", body = InstanceView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The process's `start: groups` name none of the caller's groups", body = ErrorBody),
        (status = 404, description = "No such process", body = ErrorBody),
        (status = 422, description = "Variables refused, or a start rule broken: `details.errors` lists every field with its problem (and expected type); or an empty or too long `process` or `business_key`", body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    Auth(caller): Auth,
    request: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    let req: StartRequest = if is_multipart(&request) {
        let engine = state.engine.clone();
        let rules = |text: &std::collections::BTreeMap<String, String>, var: &str| {
            let process = text.get("process").ok_or_else(|| {
                ApiError::unprocessable("process-first", "send the `process` part before any file part")
            })?;
            let p = engine
                .latest(process)
                .ok_or_else(|| ApiError::engine(EngineError::UnknownProcess(process.clone()), None))?;
            if !caller.may_start(&p) {
                return Err(ApiError::forbidden(format!("you may not start `{}`", super::error::echo(&p.id))));
            }
            super::files::rules_in(&p, var)
        };
        let form =
            super::files::read_form(&state, request, &["process", "variables", "business_key"], rules, &caller.id)
                .await?;
        StartRequest {
            process: form.text.get("process").cloned().unwrap_or_default(),
            variables: form.variables()?,
            business_key: form.text.get("business_key").cloned(),
        }
    } else {
        limited_json(request, &state).await?
    };
    start_with(state, caller, req).await
}

/// A start already read from its body (JSON or multipart; the web inbox's form).
pub(crate) async fn start_with(
    state: AppState,
    caller: Arc<Caller>,
    req: StartRequest,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    check_text("process", &req.process, MAX_KEY_CHARS, true)?;
    if let Some(k) = &req.business_key {
        check_text("business_key", k, MAX_KEY_CHARS, true)?;
    }
    let engine = state.engine.clone();
    let view = blocking(move || {
        let process = engine.latest(&req.process);
        if let Some(p) = &process {
            if !caller.may_start(p) {
                return Err(ApiError::forbidden(format!(
                    "only members of {} may start `{}`",
                    p.start_groups.join(", "),
                    super::error::echo(&p.id)
                )));
            }
        }
        let vars = req.variables.into_iter().collect();
        let opts = StartOptions { by: Some(caller.id.clone()), business_key: req.business_key };
        let inst = engine.start(&req.process, vars, opts).map_err(|e| ApiError::engine(e, process.as_deref()))?;
        let tasks = open_tasks(&engine, &inst)?;
        tracing::info!(instance = inst.id, process = %inst.process, by = %caller.id, "started");
        let p = engine.process(&inst.process, inst.version);
        Ok(InstanceView::new(&inst, tasks).masked(p.as_deref(), &caller.groups))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only instances of this process.
    pub process: Option<String>,
    /// running, incident, completed or cancelled.
    #[param(inline, value_type = Option<StatusParam>)]
    pub status: Option<String>,
    /// Only instances started by this user.
    pub started_by: Option<String>,
    /// Started at or after this time (RFC 3339).
    pub started_after: Option<DateTime<Utc>>,
    /// Started before this time (RFC 3339).
    pub started_before: Option<DateTime<Utc>>,
    /// The `next` cursor of the previous page.
    pub after: Option<u64>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// The `status` filter as the document lists it; the handler reads the text with
/// [`Status::parse`], and the API tests check both agree.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StatusParam {
    Running,
    Incident,
    Completed,
    Cancelled,
}

/// Page size from a query: default, at least 1, at most [`MAX_PAGE`].
pub fn page_size(limit: Option<usize>) -> ApiResult<usize> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request("bad-query", format!("limit {n} is out of range: 1 to {MAX_PAGE}"))),
    }
}

/// List instances in id order, paged. Non-administrators get the instances they
/// started or acted on.
#[utoipa::path(get, path = "/api/v1/instances", operation_id = "list_instances", tag = "instances",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of instances", body = InstancePage),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<InstancePage>> {
    let limit = page_size(q.limit)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "bad-query",
                format!("unknown status `{}`; use running, incident, completed or cancelled", super::error::echo(s)),
            )
        })?),
    };
    let filter = InstanceFilter {
        process: q.process,
        status,
        started_by: q.started_by,
        participant: if caller.admin { None } else { Some(caller.id.clone()) },
        started_after: q.started_after,
        started_before: q.started_before,
        after: q.after,
        limit: Some(limit),
    };
    let engine = state.engine.clone();
    let list = blocking(move || Ok(engine.instances(&filter)?)).await?;
    let next = if list.len() == limit { list.last().map(|i| i.id.to_string()) } else { None };
    Ok(Json(InstancePage { items: list.iter().map(InstanceSummary::from).collect(), next }))
}

/// An instance: state, variables, open tasks, incidents.
#[utoipa::path(get, path = "/api/v1/instances/{id}", operation_id = "get_instance", tag = "instances",
    params(("id" = u64, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The instance", body = InstanceView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such instance, or not one the caller may see", body = ErrorBody),
        (status = 410, description = "Archived (`code: archived`): `details` is its summary, with `archived: true`", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<InstanceView>> {
    let engine = state.engine.clone();
    blocking(move || {
        let (inst, tasks) = visible(&engine, &caller, id)?;
        let p = engine.process(&inst.process, inst.version);
        Ok(Json(InstanceView::new(&inst, tasks).linked(&inst, &engine).masked(p.as_deref(), &caller.groups)))
    })
    .await
}

/// The audit trail: every step, claim, completion, send-back, assignment and
/// cancellation, with who and when.
#[utoipa::path(get, path = "/api/v1/instances/{id}/history", operation_id = "instance_history", tag = "instances",
    params(("id" = u64, Path, description = "Instance id")),
    responses(
        (status = 200, description = "History, oldest first", body = Vec<HistoryItem>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such instance, or not one the caller may see", body = ErrorBody),
        (status = 410, description = "Archived: its history is in the archive file named in `details.file`", body = ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<Vec<HistoryItem>>> {
    let engine = state.engine.clone();
    blocking(move || {
        let (inst, _) = visible(&engine, &caller, id)?;
        let p = engine.process(&inst.process, inst.version);
        let masked = |h| HistoryItem::from(h).masked(p.as_deref(), &caller.groups);
        Ok(Json(engine.history(id)?.into_iter().map(masked).collect()))
    })
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why; kept in the history. 1 to 1,000 characters.
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

/// Cancel a running instance (administrators): its open tasks and pending calls
/// are withdrawn.
#[utoipa::path(post, path = "/api/v1/instances/{id}/cancel", operation_id = "cancel_instance", tag = "instances",
    params(("id" = u64, Path, description = "Instance id")),
    request_body = CancelRequest,
    responses(
        (status = 200, description = "Cancelled", body = InstanceView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 409, description = "The instance has finished already", body = ErrorBody),
        (status = 422, description = "Reason missing or too long", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
    ApiJson(req): ApiJson<CancelRequest>,
) -> ApiResult<Json<InstanceView>> {
    caller.require_admin("cancel instances")?;
    check_text("reason", &req.reason, MAX_REASON_CHARS, true)?;
    let engine = state.engine.clone();
    let caller: Arc<Caller> = caller;
    blocking(move || {
        let inst = engine.cancel(id, &caller.id, &req.reason)?;
        tracing::info!(instance = id, by = %caller.id, "cancelled");
        let p = engine.process(&inst.process, inst.version);
        Ok(Json(InstanceView::new(&inst, Vec::new()).masked(p.as_deref(), &caller.groups)))
    })
    .await
}
