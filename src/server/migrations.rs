//! `/api/v1/migrations/{plan,apply}` (administrators): instance migration over the
//! API, the same engine calls as `nagare migrate plan|apply`.

use super::auth::Auth;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::ApiJson;
use super::{blocking, AppState};
use axum::extract::State;
use axum::Json;
use nagare_engine::migrate::{LaneChoice, MigrationSpec, TimerChoice};
use nagare_engine::runtime::{FieldError, Rejection};
use nagare_engine::{EngineError, MigrationPlan};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What to do with armed timers whose definition changed.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationTimers {
    /// Keep their due time (default).
    #[default]
    Keep,
    /// Withdraw them and arm the new definition from now.
    Rearm,
}

/// What to do with open tasks whose lane has other groups now.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationLanes {
    /// They keep their groups and assignee (default).
    #[default]
    Keep,
    /// They go to the new groups, unclaimed.
    Reassign,
}

/// A migration to plan: running instances of `process` version `from` to `to`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrationRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub process: String,
    pub from: u32,
    pub to: u32,
    /// Old node id → new node id (at most 1,000).
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Variable → expression over the old values giving its new value.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Variable → value used when the old one does not fit and no conversion works.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub defaults: BTreeMap<String, Value>,
    #[serde(default)]
    pub timers: MigrationTimers,
    #[serde(default)]
    pub lanes: MigrationLanes,
}

/// Plan a migration (a dry run, nothing changes): for every running instance of
/// the source version, where its tokens, tasks, timers, message waits, joins,
/// items and incidents land, and what makes it invalid (`problems`) or needs a
/// look (`warnings`). Send the answer to `/api/v1/migrations/apply` as it is.
#[utoipa::path(post, path = "/api/v1/migrations/plan", operation_id = "plan_migration", tag = "migrations",
    request_body = MigrationRequest,
    responses(
        (status = 200, description = "The plan: `spec`, `summary`, `instances`", body = Object),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such process version", body = ErrorBody),
        (status = 422, description = "A mistake in the request (`details.errors`: unknown nodes, bad expressions, defaults of the wrong type)", body = ErrorBody),
    ))]
pub async fn plan(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<MigrationRequest>,
) -> ApiResult<Json<Value>> {
    caller.require_admin("plan a migration")?;
    if req.process.trim().is_empty() {
        let problem = FieldError { field: "process".into(), problem: "required: the process id".into() };
        return Err(ApiError::engine(EngineError::Rejected(Rejection::InvalidData(vec![problem])), None));
    }
    let spec = MigrationSpec {
        process: req.process,
        from: req.from,
        to: req.to,
        map: req.map,
        set: req.set,
        defaults: req.defaults,
        timers: match req.timers {
            MigrationTimers::Keep => TimerChoice::Keep,
            MigrationTimers::Rearm => TimerChoice::Rearm,
        },
        lanes: match req.lanes {
            MigrationLanes::Keep => LaneChoice::Keep,
            MigrationLanes::Reassign => LaneChoice::Reassign,
        },
    };
    let engine = state.engine.clone();
    blocking(move || {
        let plan = engine.plan_migration(spec, &caller.id).map_err(|e| ApiError::engine(e, None))?;
        serde_json::to_value(plan).map(Json).map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
}

/// Apply a plan from `/api/v1/migrations/plan`: each valid instance in one commit,
/// re-checked first; an instance that moved since the plan (its revision changed),
/// became invalid or is already on the target version is skipped and reported.
/// Sending the same plan again is safe. The body is at most 1 MiB: a plan's
/// `moves` may be left out (empty) to send more instances.
#[utoipa::path(post, path = "/api/v1/migrations/apply", operation_id = "apply_migration", tag = "migrations",
    request_body(content = Object, description = "The plan as `/api/v1/migrations/plan` answered"),
    responses(
        (status = 200, description = "What happened to each instance: `counts`, `outcomes`", body = Object),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such process version", body = ErrorBody),
        (status = 422, description = "Not a plan, or its spec is wrong (`details.errors`)", body = ErrorBody),
    ))]
pub async fn apply(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<Json<Value>> {
    caller.require_admin("apply a migration")?;
    let plan: MigrationPlan = serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-plan",
            format!("not a migration plan: {e}; send what /api/v1/migrations/plan answered"),
        )
    })?;
    let engine = state.engine.clone();
    blocking(move || {
        let report = engine.apply_migration(&plan, &caller.id, |_| {}).map_err(|e| ApiError::engine(e, None))?;
        serde_json::to_value(report).map(Json).map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
}
