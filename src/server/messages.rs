//! `/api/v1/messages`: send a message to the tokens waiting for it.
//!
//! Messages are how outside systems report back ("the contract was signed", "the
//! parcel left"), so any authenticated user may send one; no administrator role is
//! needed. Give an outside system its own user in the users file.

use super::auth::Auth;
use super::error::{echo, ApiError, ApiResult, ErrorBody};
use super::extract::ApiJson;
use super::instances::{check_text, MAX_KEY_CHARS};
use super::{blocking, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use nagare_engine::{Correlation, MessageOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use utoipa::ToSchema;

/// Longest message name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A duration in a request body: a humantime text or a number of seconds (a
/// message's `ttl`, a job's `lease`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum DurationArg {
    /// Seconds.
    Seconds(u64),
    /// E.g. `7d`, `1h 30m`, `0s`.
    Text(String),
}

impl DurationArg {
    /// The duration; a bad text is 422 `code`, naming `field`.
    pub fn parse(&self, field: &str, code: &'static str) -> ApiResult<Duration> {
        match self {
            DurationArg::Seconds(s) => Ok(Duration::from_secs(*s)),
            DurationArg::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
                ApiError::unprocessable(
                    code,
                    format!("`{field}` `{}`: {e}; write e.g. \"7d\", \"1h\" or 3600", echo(t)),
                )
            }),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// Message name, as in the process (`message: 署名完了`).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Correlation key: the value the waiting node's `key:` expression has. Empty
    /// (or left out) for messages without a key.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub key: String,
    /// Data for the receiver: the receiving node's `set:` reads it as `payload`;
    /// without one, fields named like declared variables are copied.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Option<Value>,
    /// If nobody waits yet, keep the message this long for a token that starts
    /// waiting: seconds (`3600`) or a duration text (`"7d"`, `"1h 30m"`). Default one
    /// day; `0` refuses the message (404 `no-receiver`) when nobody waits now. At most
    /// 10 years (3650 days); longer is 422 `bad-ttl`.
    #[schema(value_type = Option<String>, example = "7d")]
    pub ttl: Option<DurationArg>,
}

/// What became of a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct CorrelationView {
    /// `delivered` (to a waiting token), `started` (a message start) or `buffered`.
    pub result: &'static str,
    /// The instance it was delivered to or started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<u64>,
    /// Delivered: the node that received it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Started: the process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// Buffered: the kept message's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<u64>,
    /// Buffered: when it is dropped if still nobody waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<Correlation> for CorrelationView {
    fn from(c: Correlation) -> Self {
        let none =
            CorrelationView { result: "", instance: None, node: None, process: None, message: None, expires_at: None };
        match c {
            Correlation::Delivered { instance, node } => {
                CorrelationView { result: "delivered", instance: Some(instance), node: Some(node), ..none }
            }
            Correlation::Started { instance, process } => {
                CorrelationView { result: "started", instance: Some(instance), process: Some(process), ..none }
            }
            Correlation::Buffered { message, expires_at } => {
                CorrelationView { result: "buffered", message: Some(message), expires_at: Some(expires_at), ..none }
            }
        }
    }
}

/// Send a message. Delivered to the oldest token waiting for this name and key, or
/// it starts an instance of a process with this message start (200); otherwise it is
/// kept until a token waits or its time to live ends (202).
#[utoipa::path(post, path = "/api/v1/messages", operation_id = "send_message", tag = "messages",
    request_body = MessageRequest,
    responses(
        (status = 200, description = "Delivered to a waiting token, or started an instance", body = CorrelationView),
        (status = 202, description = "Nobody waits yet: kept until `expires_at`", body = CorrelationView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "Nobody waits and `ttl` was 0 (`no-receiver`)", body = ErrorBody),
        (status = 422, description = "Empty or too long name or key, a bad `ttl`, or a payload the receiver's `set:` or variable types refuse", body = ErrorBody),
    ))]
pub async fn send(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<MessageRequest>,
) -> ApiResult<(StatusCode, Json<CorrelationView>)> {
    check_text("name", &req.name, MAX_NAME_CHARS, true)?;
    check_text("key", &req.key, MAX_KEY_CHARS, false)?;
    let ttl = req.ttl.as_ref().map(|t| t.parse("ttl", "bad-ttl")).transpose()?;
    if let Some(t) = ttl {
        nagare_engine::messages::check_ttl(t).map_err(|m| ApiError::unprocessable("bad-ttl", format!("`ttl`: {m}")))?;
    }
    let payload = req.payload.unwrap_or_else(|| Value::Object(Default::default()));
    let engine = state.engine.clone();
    let result = blocking(move || Ok(engine.correlate(&req.name, &req.key, payload, &MessageOptions { ttl })?)).await?;
    tracing::info!(by = %caller.id, result = ?result, "message sent");
    let status = match result {
        Correlation::Buffered { .. } => StatusCode::ACCEPTED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(result.into())))
}
