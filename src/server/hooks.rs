//! `/hooks/kintone/{process}`: kintone's webhook, without a bearer token.
//!
//! kintone cannot send our tokens, so this route is outside the token check; it is
//! authenticated by the `?secret=` the connector's `webhook_secret` sets, and the
//! body is only a hint: [`Watcher::webhook`] re-reads the record through kintone's
//! API and starts an instance only if it matches the watch now, at most one per
//! record ever. This is a thin wrapper so that the route is in the OpenAPI document
//! and the request metrics like every other.

use super::extract::{ApiBytes, ApiPath, ApiQuery};
use super::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nagare_connectors::kintone::trigger::HookError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HookQuery {
    /// The connector's `webhook_secret`, when it has one (then required).
    pub secret: Option<String>,
}

/// What a webhook did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HookResult {
    /// Whether an instance was started now.
    pub started: bool,
    /// The instance started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u64>,
    /// Why none was started (the record has its instance already, does not match
    /// the watch now, the event was a deletion...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// kintone's record webhook for a process with a kintone watch (`start: watch:`):
/// set this URL (with `?secret=`) as the app's webhook in kintone. The record is
/// re-read and starts at most one instance, however often it is posted.
#[utoipa::path(post, path = "/hooks/kintone/{process}", operation_id = "kintone_webhook", tag = "hooks",
    security(()),
    params(("process" = String, Path, description = "Id of the process that watches the app"), HookQuery),
    request_body(content = Object, description = "kintone's webhook body (`type`, `app.id`, `record.$id.value`...)"),
    responses(
        (status = 200, description = "Handled: `started` says whether an instance was started", body = HookResult),
        (status = 400, description = "Not a kintone webhook body, or for another app (`bad-webhook`)", body = super::error::ErrorBody),
        (status = 401, description = "The secret is missing or wrong (`bad-secret`)", body = super::error::ErrorBody),
        (status = 404, description = "No such process, it has no kintone watch, or this server runs no watcher", body = super::error::ErrorBody),
        (status = 422, description = "The record could not start an instance (`start-failed`)", body = super::error::ErrorBody),
        (status = 503, description = "kintone or the connector's settings are unavailable (`kintone-unavailable`)", body = super::error::ErrorBody),
    ))]
pub async fn kintone(
    State(state): State<AppState>,
    ApiPath(process): ApiPath<String>,
    ApiQuery(q): ApiQuery<HookQuery>,
    ApiBytes(body): ApiBytes,
) -> Response {
    let Some(watcher) = state.watcher.clone() else {
        return HookError {
            status: 404,
            code: "not-found",
            message: "this server runs no kintone watcher (start it with `nagare serve` and a kintone connector)"
                .into(),
        }
        .into_response();
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return HookError { status: 400, code: "bad-webhook", message: "the body is not JSON".into() }.into_response();
    };
    match watcher.webhook(&process, &body, q.secret.as_deref()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            tracing::warn!(process = %super::error::echo(&process), status = e.status, code = e.code, "kintone webhook refused");
            e.into_response()
        }
    }
}
