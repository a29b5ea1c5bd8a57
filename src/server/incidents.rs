//! `/api/v1/incidents` and the fixes of one incident (administrators).
//!
//! An incident is a token the engine stopped: a service call whose retries ran
//! out, a gateway no branch of which matched, an uncaught business error. It waits
//! for an operator, who either retries the step (after fixing the cause, perhaps
//! with corrected variables) or resolves it: the step was done by hand, its
//! results are written and the token moves on past it.

use super::auth::Auth;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::instances::{open_tasks, page_size};
use super::views::{InstanceView, VarsJson};
use super::{blocking, AppState};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use nagare_engine::store::IncidentFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncidentQuery {
    /// Only incidents of this process.
    pub process: Option<String>,
    /// Only incidents at this node.
    pub node: Option<String>,
    /// At most this many, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// An open incident with its instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentItem {
    pub instance: u64,
    pub process: String,
    pub version: u32,
    /// The incident's id within its instance.
    pub incident: u32,
    pub node: String,
    /// What went wrong (a connector's error text, an expression error...).
    pub message: String,
    pub at: DateTime<Utc>,
}

/// Open incidents, oldest instance first (administrators).
#[utoipa::path(get, path = "/api/v1/incidents", operation_id = "list_incidents", tag = "incidents",
    params(IncidentQuery),
    responses(
        (status = 200, description = "Open incidents, oldest instance first", body = Vec<IncidentItem>),
        (status = 400, description = "A bad query parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<IncidentQuery>,
) -> ApiResult<Json<Vec<IncidentItem>>> {
    caller.require_admin("list incidents")?;
    let filter = IncidentFilter { process: q.process, node: q.node, limit: Some(page_size(q.limit)?) };
    let engine = state.engine.clone();
    let list = blocking(move || Ok(engine.incidents(&filter)?)).await?;
    Ok(Json(
        list.into_iter()
            .map(|i| IncidentItem {
                instance: i.instance,
                process: i.process,
                version: i.version,
                incident: i.incident.id,
                node: i.incident.node,
                message: i.incident.message,
                at: i.incident.at,
            })
            .collect(),
    ))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixRequest {
    /// Variables to write first, checked against their declared types (e.g. a
    /// corrected amount, or the result of a step done by hand).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub vars: VarsJson,
}

/// Retry or resolve, as the caller; the instance afterwards.
async fn fix(
    state: AppState,
    by: String,
    id: u64,
    incident: u32,
    vars: VarsJson,
    retry: bool,
) -> ApiResult<Json<InstanceView>> {
    let engine = state.engine.clone();
    blocking(move || {
        let inst = engine.instance(id)?;
        let process = engine.process(&inst.process, inst.version);
        let vars = vars.into_iter().collect();
        let result = if retry {
            engine.retry_incident(id, incident, vars, &by)
        } else {
            engine.resolve_incident(id, incident, vars, &by)
        };
        let inst = result.map_err(|e| ApiError::engine(e, process.as_deref()))?;
        tracing::info!(instance = id, incident, by = %by, action = if retry { "retry" } else { "resolve" }, "incident handled");
        let tasks = open_tasks(&engine, &inst)?;
        Ok(Json(InstanceView::new(&inst, tasks).masked(process.as_deref(), &[])))
    })
    .await
}

/// Run the failed step again (administrators), optionally after writing corrected
/// variables. A step that fails again makes a new incident.
#[utoipa::path(post, path = "/api/v1/instances/{id}/incidents/{incident}/retry", operation_id = "retry_incident",
    tag = "incidents",
    params(
        ("id" = u64, Path, description = "Instance id"),
        ("incident" = u32, Path, description = "Incident id (see `GET /api/v1/incidents` or the instance)"),
    ),
    request_body = FixRequest,
    responses(
        (status = 200, description = "Retried; the instance as it is now", body = InstanceView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such instance (`unknown-instance`) or incident (`unknown-incident`)", body = ErrorBody),
        (status = 409, description = "The instance has finished", body = ErrorBody),
        (status = 422, description = "Variables of the wrong type (`invalid-data`, every field at once); nothing saved", body = ErrorBody),
    ))]
pub async fn retry(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, incident)): ApiPath<(u64, u32)>,
    ApiJson(req): ApiJson<FixRequest>,
) -> ApiResult<Json<InstanceView>> {
    caller.require_admin("retry incidents")?;
    fix(state, caller.id.clone(), id, incident, req.vars, true).await
}

/// Resolve by hand (administrators): the operator did the step outside the engine;
/// `vars` (its results) are written and the token moves on past the step.
/// Gateways and joins cannot be skipped: retry them instead (422 `cannot-skip`).
#[utoipa::path(post, path = "/api/v1/instances/{id}/incidents/{incident}/resolve", operation_id = "resolve_incident",
    tag = "incidents",
    params(
        ("id" = u64, Path, description = "Instance id"),
        ("incident" = u32, Path, description = "Incident id"),
    ),
    request_body = FixRequest,
    responses(
        (status = 200, description = "Resolved; the instance as it is now", body = InstanceView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such instance (`unknown-instance`) or incident (`unknown-incident`)", body = ErrorBody),
        (status = 409, description = "The instance has finished", body = ErrorBody),
        (status = 422, description = "Variables of the wrong type (`invalid-data`), or a step that cannot be skipped (`cannot-skip`); nothing saved", body = ErrorBody),
    ))]
pub async fn resolve(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, incident)): ApiPath<(u64, u32)>,
    ApiJson(req): ApiJson<FixRequest>,
) -> ApiResult<Json<InstanceView>> {
    caller.require_admin("resolve incidents")?;
    fix(state, caller.id.clone(), id, incident, req.vars, false).await
}
