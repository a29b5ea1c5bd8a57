//! Archived instances over the API: `410 archived` with the summary where an
//! instance is asked for by id, and `GET /api/v1/instances/by-key/{process}/{key}`,
//! which finds an instance by business key, live or archived.

use super::auth::{Auth, Caller};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::ApiPath;
use super::{blocking, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use nagare_engine::archive::Found;
use nagare_engine::store::ArchivedInstance;
use nagare_engine::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An instance found by business key: live (`archived: false`) or a summary of an
/// archived one (`archived: true`, with the archive `file`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FoundInstance {
    pub archived: bool,
    pub id: u64,
    pub process: String,
    pub version: u32,
    /// `running`, `incident`, `completed` or `cancelled`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// The archive file holding its history (archived only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl From<&ArchivedInstance> for FoundInstance {
    fn from(a: &ArchivedInstance) -> Self {
        FoundInstance {
            archived: true,
            id: a.id,
            process: a.process.clone(),
            version: a.version,
            status: a.status.as_str().to_string(),
            business_key: a.business_key.clone(),
            started_at: a.started_at,
            started_by: a.started_by.clone(),
            ended_at: a.ended_at,
            file: Some(a.file.clone()),
        }
    }
}

fn may_see(caller: &Caller, a: &ArchivedInstance) -> bool {
    caller.admin || a.started_by.as_deref() == Some(&caller.id) || a.participants.contains(&caller.id)
}

/// The error for instance `id` when it is not live: `410 archived` with its
/// summary when the caller may see it, else `404` as for any unknown id.
pub(super) fn gone(engine: &Engine, caller: &Caller, id: u64) -> ApiResult<ApiError> {
    match engine.archived(id)? {
        Some(a) if may_see(caller, &a) => {
            let details = serde_json::to_value(FoundInstance::from(&a)).unwrap_or_default();
            Ok(ApiError::new(StatusCode::GONE, "archived", format!("instance {id} was archived to {}", a.file))
                .with_details(details))
        }
        _ => Ok(ApiError::unknown_instance(id)),
    }
}

/// The instance holding a business key of a process, live or archived.
#[utoipa::path(get, path = "/api/v1/instances/by-key/{process}/{key}", operation_id = "find_by_key", tag = "instances",
    params(("process" = String, Path, description = "Process id"), ("key" = String, Path, description = "Business key")),
    responses(
        (status = 200, description = "The instance (live or archived)", body = FoundInstance),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No instance with this key, or not one the caller may see", body = ErrorBody),
    ))]
pub async fn by_key(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath((process, key)): ApiPath<(String, String)>,
) -> ApiResult<Json<FoundInstance>> {
    let engine = state.engine.clone();
    blocking(move || {
        let not_found = || {
            ApiError::new(StatusCode::NOT_FOUND, "unknown-instance", "no instance with this business key".to_string())
        };
        match engine.find_by_key(&process, &key)? {
            Some(Found::Live(i)) => {
                let tasks = super::instances::open_tasks(&engine, &i)?;
                if !caller.may_see_instance(&i, &tasks) {
                    return Err(not_found());
                }
                Ok(Json(FoundInstance {
                    archived: false,
                    id: i.id,
                    process: i.process.clone(),
                    version: i.version,
                    status: i.status.as_str().to_string(),
                    business_key: i.business_key.clone(),
                    started_at: i.started_at,
                    started_by: i.started_by.clone(),
                    ended_at: i.ended_at,
                    file: None,
                }))
            }
            Some(Found::Archived(a)) if may_see(&caller, &a) => Ok(Json(FoundInstance::from(&a))),
            _ => Err(not_found()),
        }
    })
    .await
}
