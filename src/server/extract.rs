//! Request extractors whose failures are [`ApiError`]s (JSON bodies), not axum's
//! plain-text rejections: a malformed body says where it is malformed.

use super::conn::BodyTimeout;
use super::error::{echo, ApiError};
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashSet;

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
                    format!("the body must be JSON; send `Content-Type: application/json` (got `{}`)", echo(&ct)),
                ));
            }
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parse JSON text as [`ApiJson`] does: an empty text reads as `{}`, a key twice in
/// one object is refused, errors say where (also for a multipart form's JSON part).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    refuse_duplicate_keys(bytes)?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(&mut de).and_then(|v| de.end().map(|_| v));
    value.map_err(|e| {
        let (code, what) = match e.classify() {
            serde_json::error::Category::Data => ("invalid-body", "does not have the expected shape"),
            _ => ("malformed-json", "is not valid JSON"),
        };
        ApiError::bad_request(code, format!("the request body {what}: {e}"))
            .with_details(json!({ "line": e.line(), "column": e.column(), "error": e.to_string() }))
    })
}

/// Whether the body is `multipart/form-data` (a form with files).
pub fn is_multipart(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// The JSON body of a route that also takes multipart forms (and so has a large
/// route limit for files): JSON stays within [`super::BODY_LIMIT`].
pub async fn limited_json<T: DeserializeOwned, S: Send + Sync>(req: Request, state: &S) -> Result<T, ApiError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, super::BODY_LIMIT));
    ApiJson::<T>::from_request(Request::from_parts(parts, body), state).await.map(|j| j.0)
}

/// A raw body (a webhook's), with the same limits and errors as [`ApiJson`].
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_body(req, state).await.map(ApiBytes)
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        format!(
            "the request body is too large: at most {} KiB ({} KiB for a deploy)",
            super::BODY_LIMIT / 1024,
            super::DEPLOY_BODY_LIMIT / 1024
        ),
    )
    .with_details(json!({ "limit_bytes": super::BODY_LIMIT, "deploy_limit_bytes": super::DEPLOY_BODY_LIMIT }))
}

/// The whole body, within the route's size limit and the body timeout. A
/// `Content-Length` beyond every limit is refused before reading a byte.
async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > super::DEPLOY_BODY_LIMIT as u64) {
        return Err(too_large());
    }
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return too_large();
        }
        if let Some(timeout) = body_timeout(&e) {
            return timeout;
        }
        ApiError::bad_request("unreadable-body", format!("the request body could not be read: {e}"))
    })
}

/// The `408 body-timeout` answer, if reading a body failed because its time was up
/// (for handlers that stream a body themselves).
pub fn body_timeout(e: &(dyn std::error::Error + 'static)) -> Option<ApiError> {
    let t = find_source::<BodyTimeout>(e)?;
    Some(
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!(
                "the request body did not arrive in time ({} s, and a second more per 64 KiB received)",
                t.0.as_secs_f64()
            ),
        )
        .with_details(json!({ "limit_seconds": t.0.as_secs_f64() })),
    )
}

/// An error of type `E` in the source chain of `e`.
fn find_source<'a, E: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// Refuse a body in which some object has the same key twice: serde keeps the last
/// silently, so `{"金額": 1, "金額": 1000000}` would mean what the client may not
/// have meant. `422 duplicate-key` naming the key and where it is.
fn refuse_duplicate_keys(bytes: &[u8]) -> Result<(), ApiError> {
    let found = RefCell::new(None::<Vec<String>>);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Err(e) = DupScan { found: &found }.deserialize(&mut de) else { return Ok(()) };
    // Malformed JSON is left to the typed parse, which says what it expected.
    let Some(mut path) = found.into_inner() else { return Ok(()) };
    path.reverse();
    let key = echo(path.last().map(String::as_str).unwrap_or(""));
    let mut at = String::new();
    for step in &path {
        if !at.is_empty() && !step.starts_with('[') {
            at.push('.');
        }
        at.push_str(&echo(step));
    }
    Err(ApiError::unprocessable(
        "duplicate-key",
        format!("the key `{key}` appears twice in the same object (at `{at}`); send each key once"),
    )
    .with_details(json!({ "key": key, "path": at, "line": e.line(), "column": e.column() })))
}

/// A pass over any JSON value that fails at the first key seen twice in one object,
/// leaving the key's path (innermost first) in `found`. serde_json bounds the depth.
#[derive(Clone, Copy)]
struct DupScan<'a> {
    found: &'a RefCell<Option<Vec<String>>>,
}

impl DupScan<'_> {
    /// On the way out of an error, add this level's key or index to the path.
    fn trail<E>(&self, r: Result<(), E>, step: impl FnOnce() -> String) -> Result<(), E> {
        if r.is_err() {
            if let Some(path) = self.found.borrow_mut().as_mut() {
                path.push(step());
            }
        }
        r
    }
}

impl<'de> DeserializeSeed<'de> for DupScan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DupScan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(())) => i += 1,
                Ok(None) => return Ok(()),
                Err(e) => return self.trail(Err(e), || format!("[{i}]")),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.found.borrow_mut() = Some(vec![key]);
                return Err(A::Error::custom("duplicate key"));
            }
            let r = map.next_value_seed(self);
            let r = self.trail(r, || key.clone());
            r?;
            seen.insert(key);
        }
        Ok(())
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
