//! `/api/v1/processes/{id}/config`: what administrators change of a process while
//! it runs, without a redeploy: setting values and pausing its timer start.

use super::auth::Auth;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::processes::{variable_view, VariableView};
use super::{blocking, AppState};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use nagare_engine::process::Process;
use nagare_engine::store::ProcessConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A setting: its declaration and the value in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingView {
    #[serde(flatten)]
    pub declared: VariableView,
    /// The value in force (the default until an administrator changed it).
    pub value: Value,
}

/// A process's run-time configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigView {
    pub process: String,
    pub settings: Vec<SettingView>,
    /// Whether the process has a timer start at all.
    pub has_timer_start: bool,
    /// The timer start fires but starts nothing while paused.
    pub start_paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<DateTime<Utc>>,
}

fn view(p: &Process, cfg: &ProcessConfig) -> ConfigView {
    ConfigView {
        process: p.id.clone(),
        settings: p
            .settings
            .iter()
            .map(|(name, spec)| SettingView {
                declared: variable_view(name, spec),
                value: p.setting_values.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or(Value::Null),
            })
            .collect(),
        has_timer_start: matches!(p.start_trigger(), nagare_engine::process::StartTrigger::Timer { .. }),
        start_paused: p.start_paused,
        changed_by: cfg.changed_by.clone(),
        changed_at: cfg.changed_at,
    }
}

/// A change of configuration; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    /// New setting values by name; `null` restores the declared default.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Option<serde_json::Map<String, Value>>,
    /// Pause (`true`) or resume (`false`) the timer start.
    #[serde(default)]
    pub start_paused: Option<bool>,
}

/// The settings in force and the state of the timer start.
#[utoipa::path(get, path = "/api/v1/processes/{id}/config", operation_id = "get_process_config", tag = "processes",
    params(("id" = String, Path, description = "Process id")),
    responses(
        (status = 200, description = "The configuration in force", body = ConfigView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such process", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Auth(_): Auth,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ConfigView>> {
    let engine = state.engine.clone();
    blocking(move || {
        let cfg = engine.process_config(&id).map_err(|e| ApiError::engine(e, None))?;
        let p =
            engine.latest(&id).ok_or_else(|| ApiError::engine(nagare_engine::EngineError::UnknownProcess(id), None))?;
        Ok(Json(view(&p, &cfg)))
    })
    .await
}

/// Change settings and pause or resume the timer start (administrators). Every
/// setting is checked against its declaration; all problems come back at once and
/// nothing changes. Running instances see new values from their next step on.
#[utoipa::path(put, path = "/api/v1/processes/{id}/config", operation_id = "change_process_config", tag = "processes",
    params(("id" = String, Path, description = "Process id")),
    request_body = ConfigChange,
    responses(
        (status = 200, description = "Changed; the configuration now in force", body = ConfigView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an administrator", body = ErrorBody),
        (status = 404, description = "No such process", body = ErrorBody),
        (status = 422, description = "Unknown settings or values of the wrong type (`details.errors`); nothing changed", body = ErrorBody),
    ))]
pub async fn change(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<ConfigChange>,
) -> ApiResult<Json<ConfigView>> {
    caller.require_admin("change process settings")?;
    let engine = state.engine.clone();
    blocking(move || {
        let mut p = None;
        if let Some(settings) = req.settings {
            let changes = settings.into_iter().collect();
            p = Some(engine.change_settings(&id, changes, &caller.id).map_err(|e| ApiError::engine(e, None))?);
        }
        if let Some(paused) = req.start_paused {
            p = Some(engine.pause_start(&id, paused, &caller.id).map_err(|e| ApiError::engine(e, None))?);
        }
        let p = match p {
            Some(p) => p,
            None => engine
                .latest(&id)
                .ok_or_else(|| ApiError::engine(nagare_engine::EngineError::UnknownProcess(id.clone()), None))?,
        };
        let cfg = engine.process_config(&id).map_err(|e| ApiError::engine(e, None))?;
        Ok(Json(view(&p, &cfg)))
    })
    .await
}
