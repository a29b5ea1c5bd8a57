//! Liveness and readiness, the only routes that need no token.

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    /// `ok`, `ready`, `not-ready` or `shutting-down`.
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/health", operation_id = "health", tag = "health", security(()),
    responses((status = 200, description = "The server is running", body = HealthBody)))]
pub async fn health() -> Json<HealthBody> {
    Json(HealthBody { status: "ok".into() })
}

/// The server takes requests: not shutting down, and the store answers.
#[utoipa::path(get, path = "/ready", operation_id = "ready", tag = "health", security(()),
    responses(
        (status = 200, description = "Ready for requests", body = HealthBody),
        (status = 503, description = "Shutting down, or the store does not answer", body = HealthBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<HealthBody>) {
    if !state.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(HealthBody { status: "shutting-down".into() }));
    }
    let engine = state.engine.clone();
    let store_ok = tokio::task::spawn_blocking(move || nagare_engine::internals::store(&engine).instance(0).is_ok())
        .await
        .unwrap_or(false);
    if store_ok {
        (StatusCode::OK, Json(HealthBody { status: "ready".into() }))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(HealthBody { status: "not-ready".into() }))
    }
}
