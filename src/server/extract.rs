//! Request extractors whose failures are [`ApiError`]s (JSON bodies), not axum's
//! plain-text rejections: a malformed body says where it is malformed.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

/// A JSON body. Content-Type must be JSON when given; an empty body reads as `{}`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or("").trim();
            if !(essence == "application/json" || essence.ends_with("+json")) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    format!(
                        "the body must be JSON; send `Content-Type: application/json` (got `{}`)",
                        super::error::echo(&ct)
                    ),
                ));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    format!(
                        "the request body is too large: at most {} KiB ({} KiB for a deploy)",
                        super::BODY_LIMIT / 1024,
                        super::DEPLOY_BODY_LIMIT / 1024
                    ),
                )
                .with_details(
                    json!({ "limit_bytes": super::BODY_LIMIT, "deploy_limit_bytes": super::DEPLOY_BODY_LIMIT }),
                )
            } else {
                ApiError::bad_request("unreadable-body", format!("the request body could not be read: {e}"))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = T::deserialize(&mut de).and_then(|v| de.end().map(|_| v));
        match value {
            Ok(v) => Ok(ApiJson(v)),
            Err(e) => {
                let (code, what) = match e.classify() {
                    serde_json::error::Category::Data => ("invalid-body", "does not have the expected shape"),
                    _ => ("malformed-json", "is not valid JSON"),
                };
                Err(ApiError::bad_request(code, format!("the request body {what}: {e}"))
                    .with_details(json!({ "line": e.line(), "column": e.column(), "error": e.to_string() })))
            }
        }
    }
}

/// Query parameters; a bad one is a 400 naming it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::bad_request("bad-query", format!("bad query parameter: {}", e.body_text())))
            }
            Err(e) => Err(ApiError::bad_request("bad-query", e.body_text())),
        }
    }
}

/// Path parameters; a bad one (an instance id that is not a number) is a 400.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::bad_request("bad-path", format!("bad path parameter: {}", e.body_text())))
            }
            Err(e) => Err(ApiError::internal(e.body_text())),
        }
    }
}
