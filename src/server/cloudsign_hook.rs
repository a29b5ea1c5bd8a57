//! `/hooks/cloudsign[/{secret}]`: CloudSign's webhook, without a bearer token.
//!
//! CloudSign posts `{documentID, status, userID, email, text}` when a document's
//! status changes and signs nothing, so the route is outside the token check and
//! is authenticated by the `webhook_secret` of a CloudSign connector in the URL
//! (`/hooks/cloudsign/{secret}` or `?token=`) or by the sender's address being in
//! its `webhook_allow` list. A conclusion (2) or decline (3) becomes the message
//! [`MESSAGE`] with the document id as its key, so the instance waiting for that
//! document continues; a "sent" notice (1) is acknowledged and dropped.

use super::error::{echo, ApiError, ApiResult, ErrorBody};
use super::extract::{ApiBytes, ApiPath, ApiQuery};
use super::messages::CorrelationView;
use super::{blocking, AppState};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Extension;
use axum::Json;
use nagare_engine::MessageOptions;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use utoipa::IntoParams;

/// The message a document's outcome becomes (key: the document id).
pub const MESSAGE: &str = "cloudsign.status";
/// Longest document id accepted.
const MAX_ID_CHARS: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HookQuery {
    /// The connector's `webhook_secret` (instead of putting it in the path).
    pub token: Option<String>,
}

/// Equal secrets, compared without leaking how much of them matched.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// Whether the request is from CloudSign as configured: a matching secret, or an
/// allowed source address. No CloudSign connector with either: refused.
fn authenticate(state: &AppState, given: Option<&str>, peer: Option<SocketAddr>) -> ApiResult<()> {
    let Some(connectors) = &state.connectors else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not-found", "this server has no CloudSign connector"));
    };
    let mut configured = false;
    for name in connectors.cloudsign_names() {
        let Some(cfg) = connectors.cloudsign(&name) else { continue };
        let Some(cfg) = cfg.as_ref() else { continue };
        if let (Some(secret), Some(given)) = (&cfg.webhook_secret, given) {
            match secret.reveal(&format!("connectors.{name}.webhook_secret")) {
                Ok(s) if same_secret(&s, given) => return Ok(()),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cloudsign webhook secret unavailable"),
            }
        }
        if peer.is_some_and(|p| cfg.webhook_allow.iter().any(|a| a.to_canonical() == p.ip().to_canonical())) {
            return Ok(());
        }
        configured |= cfg.webhook_secret.is_some() || !cfg.webhook_allow.is_empty();
    }
    if !configured {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "no CloudSign connector has `webhook_secret` or `webhook_allow`; set one to receive CloudSign's webhook",
        ));
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "bad-secret",
        "the webhook secret is missing or wrong, and the sender is not in `webhook_allow`",
    ))
}

async fn handle(
    state: AppState,
    given: Option<String>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    if let Err(e) = authenticate(&state, given.as_deref(), peer) {
        tracing::warn!(peer = ?peer, code = e.code, "cloudsign webhook refused");
        return Err(e);
    }
    let bad = |m: &str| ApiError::bad_request("bad-webhook", format!("not a CloudSign webhook body: {m}"));
    let v: Value = serde_json::from_slice(&body).map_err(|_| bad("the body is not JSON"))?;
    let id = v.get("documentID").and_then(Value::as_str).ok_or_else(|| bad("`documentID` is missing"))?;
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Err(bad("`documentID` is empty or too long"));
    }
    let status = v
        .get("status")
        .and_then(|s| s.as_u64().or_else(|| s.as_str().and_then(|t| t.trim().parse().ok())))
        .ok_or_else(|| bad("`status` is missing or not a number"))?;
    let agent = headers.get(axum::http::header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or("");
    tracing::info!(document = %echo(id), status, agent = %echo(agent), "cloudsign webhook");
    if !matches!(status, 2 | 3) {
        return Ok(Json(
            json!({ "result": "ignored", "reason": format!("status {status} is not an outcome (2 concluded, 3 declined)") }),
        ));
    }
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(echo).unwrap_or_default();
    let payload = json!({
        "document": id,
        "status": status,
        "status_name": nagare_connectors::cloudsign::status_name(status),
        "user_id": s("userID"),
        "email": s("email"),
        "text": s("text"),
    });
    let engine = state.engine.clone();
    let key = id.to_string();
    let result = blocking(move || Ok(engine.correlate(MESSAGE, &key, payload, &MessageOptions { ttl: None })?)).await?;
    Ok(Json(serde_json::to_value(CorrelationView::from(result)).unwrap_or(Value::Null)))
}

/// CloudSign's webhook with the shared secret in the path: set
/// `https://<server>/hooks/cloudsign/<secret>` as the team's webhook URL.
#[utoipa::path(post, path = "/hooks/cloudsign/{secret}", operation_id = "cloudsign_webhook_secret", tag = "hooks",
    security(()),
    params(("secret" = String, Path, description = "The CloudSign connector's `webhook_secret`")),
    request_body(content = Object, description = "CloudSign's webhook body `{documentID, status, userID, email, text}`"),
    responses(
        (status = 200, description = "Delivered, kept for a waiting instance, or ignored (not an outcome)", body = Object),
        (status = 400, description = "Not a CloudSign webhook body (`bad-webhook`)", body = ErrorBody),
        (status = 401, description = "Wrong secret and the sender is not allowed (`bad-secret`)", body = ErrorBody),
        (status = 404, description = "No CloudSign connector with a webhook secret or allow-list", body = ErrorBody),
    ))]
pub async fn with_secret(
    State(state): State<AppState>,
    ApiPath(secret): ApiPath<String>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Json<Value>> {
    handle(state, Some(secret), peer.map(|p| (p.0).0), &headers, body).await
}

/// CloudSign's webhook with the secret as `?token=`, or from an allowed address.
#[utoipa::path(post, path = "/hooks/cloudsign", operation_id = "cloudsign_webhook", tag = "hooks",
    security(()),
    params(HookQuery),
    request_body(content = Object, description = "CloudSign's webhook body `{documentID, status, userID, email, text}`"),
    responses(
        (status = 200, description = "Delivered, kept for a waiting instance, or ignored (not an outcome)", body = Object),
        (status = 400, description = "Not a CloudSign webhook body (`bad-webhook`)", body = ErrorBody),
        (status = 401, description = "Wrong secret and the sender is not allowed (`bad-secret`)", body = ErrorBody),
        (status = 404, description = "No CloudSign connector with a webhook secret or allow-list", body = ErrorBody),
    ))]
pub async fn with_token(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<HookQuery>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> ApiResult<Json<Value>> {
    handle(state, q.token, peer.map(|p| (p.0).0), &headers, body).await
}
