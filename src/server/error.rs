//! Every error the API returns: an HTTP status and a JSON body `{code, message, details}`.
//!
//! `code` is stable and meant for programs (`task-not-open`, `invalid-data`...),
//! `message` is for people, `details` carries the structured part (every field error,
//! every diagnostic with line and column). Engine errors map here in one place, so a
//! given engine outcome always gets the same status everywhere.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use nagare_engine::process::Process;
use nagare_engine::runtime::{FieldError, Rejection};
use nagare_engine::EngineError;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `task-not-open`.
    pub code: String,
    /// What went wrong and how to fix it, for a person.
    pub message: String,
    /// Structured details: `errors` (field errors), `diagnostics` (process file
    /// problems with line and column), `allowed`, `assignee`... Empty object if none.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// An error response. Build one with the constructors, or convert an [`EngineError`].
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

/// Longest piece of client input echoed back in an error message.
const ECHO_CHARS: usize = 100;

/// `s`, shortened for echoing in an error (a 1 MB variable name stays out of logs).
pub fn echo(s: &str) -> String {
    if s.chars().count() <= ECHO_CHARS {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(ECHO_CHARS).collect::<String>())
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: json!({}) }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn unknown_task(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown-task", format!("no task {}", echo(id)))
    }

    pub fn unknown_instance(id: u64) -> Self {
        Self::new(StatusCode::NOT_FOUND, "unknown-instance", format!("no instance {id}"))
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Field errors of a form or a start, each with what the field expects.
    pub fn invalid_data(errors: &[FieldError], process: Option<&Process>) -> Self {
        let list: Vec<Value> = errors
            .iter()
            .map(|e| {
                let mut v = json!({ "field": echo(&e.field), "problem": e.problem });
                if let Some(spec) = process.and_then(|p| p.var(&e.field)) {
                    let mut expected = json!({ "type": spec.ty.name() });
                    if let nagare_engine::types::VarType::Choice { options } = &spec.ty {
                        expected["options"] = json!(options);
                    }
                    if let Some(max) = super::views::effective_max_length(spec) {
                        expected["max_length"] = json!(max);
                    }
                    v["expected"] = expected;
                }
                v
            })
            .collect();
        let summary: Vec<String> = errors.iter().map(|e| format!("{}: {}", echo(&e.field), e.problem)).collect();
        Self::unprocessable(
            "invalid-data",
            format!("{} field error(s): {}; nothing was saved", errors.len(), summary.join("; ")),
        )
        .with_details(json!({ "errors": list }))
    }

    /// An engine error, with the process for field errors (to say what each expects).
    pub fn engine(e: EngineError, process: Option<&Process>) -> Self {
        match e {
            EngineError::Store(nagare_engine::store::StoreError::Conflict(why)) => Self::new(
                StatusCode::CONFLICT,
                "concurrent-change",
                format!("another nagare node changed this at the same time and won; nothing was saved, reload and retry: {why}"),
            ),
            EngineError::Store(err) => {
                tracing::error!(error = %err, "store failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store-failed",
                    format!("the store failed; the outcome of this request is unknown, check before retrying: {err}"),
                )
            }
            EngineError::Invalid(diags) => {
                let n = diags.errors().count();
                let first = diags.errors().next().map(|d| format!(": {d}")).unwrap_or_default();
                Self::unprocessable("invalid-process", format!("the process file has {n} error(s){first}"))
                    .with_details(json!({ "diagnostics": diags.0 }))
            }
            EngineError::UnknownProcess(id) => {
                Self::new(StatusCode::NOT_FOUND, "unknown-process", format!("no process `{}` is deployed", echo(&id)))
            }
            EngineError::Blob(nagare_engine::blobs::BlobError::TooLarge { limit }) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file-too-large",
                format!("the file is larger than {limit} bytes, the limit of this variable"),
            ),
            EngineError::Blob(nagare_engine::blobs::BlobError::NotPdf(why)) => {
                Self::unprocessable("not-a-pdf", format!("the file is not a PDF: {why}"))
            }
            EngineError::Blob(err) => {
                tracing::error!(error = %err, "blob store failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "file-store-failed",
                    format!("storing or reading a file failed: {err}"),
                )
            }
            EngineError::UnknownInstance(id) => Self::unknown_instance(id),
            EngineError::UnknownTask(id) => Self::unknown_task(&id),
            EngineError::NoReceiver { name, key } => Self::new(
                StatusCode::NOT_FOUND,
                "no-receiver",
                format!(
                    "no one waits for message `{}` with key `{}`, and it was not to be kept",
                    echo(&name),
                    echo(&key)
                ),
            ),
            EngineError::Internal(panic) => {
                tracing::error!(panic = %panic, "engine request panicked");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", EngineError::Internal(panic).to_string())
            }
            EngineError::Conflict(r) => {
                let message = r.to_string();
                let (code, details) = match r {
                    Rejection::TaskNotOpen(_) => ("task-not-open", json!({})),
                    Rejection::ClaimedByOther { assignee, .. } => ("task-claimed", json!({ "assignee": assignee })),
                    Rejection::Finished(status) => ("instance-finished", json!({ "status": status })),
                    _ => ("conflict", json!({})),
                };
                Self::new(StatusCode::CONFLICT, code, message).with_details(details)
            }
            EngineError::Rejected(Rejection::InvalidData(errors)) => Self::invalid_data(&errors, process),
            EngineError::Rejected(r) => {
                let message = r.to_string();
                match r {
                    Rejection::UnknownOutcome { allowed, .. } => {
                        let allowed: Vec<&str> = allowed.split(", ").collect();
                        Self::unprocessable("unknown-outcome", message).with_details(json!({ "allowed": allowed }))
                    }
                    Rejection::IncidentNotFound(_) => Self::new(StatusCode::NOT_FOUND, "unknown-incident", message),
                    Rejection::CannotSkip { .. } => Self::unprocessable("cannot-skip", message),
                    Rejection::UncaughtTaskError { code, .. } => {
                        Self::unprocessable("uncaught-error", message).with_details(json!({ "error_code": code }))
                    }
                    _ => Self::unprocessable("rejected", message),
                }
            }
            // EngineError is non-exhaustive: a newer kind is a 500 until mapped here.
            other => {
                tracing::error!(error = %other, "engine error without an HTTP mapping");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", other.to_string())
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::engine(e, None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let unauthorized = status == StatusCode::UNAUTHORIZED;
        let body = ErrorBody { code: self.code.to_string(), message: self.message, details: self.details };
        let mut resp = (status, Json(body)).into_response();
        if unauthorized {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is left unread, so the connection ends after this
            // response; say so, or a client would send its next request on it.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
