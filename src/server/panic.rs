//! A panic while answering one request is that request's `500`, not the server's end.
//!
//! Panics are bugs, and the engine's own code does not panic on input; this is the
//! defence in depth behind that. A panic in a handler (or in the middleware under
//! this layer) is caught here; one on the blocking pool comes back to
//! [`super::blocking`] as a failed join. Both answer `500 {code: "internal"}`, log
//! the panic, and count it in `nagare_http_panics_total`; the server goes on.

use super::error::ApiError;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

/// Panics contained since the process started (every server in it).
static PANICS: AtomicU64 = AtomicU64::new(0);

/// How many request panics were contained so far.
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn payload_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

/// The `500` of a contained panic; the panic message goes to the log only.
pub fn contained(what: &str, payload: &(dyn Any + Send)) -> ApiError {
    PANICS.fetch_add(1, Ordering::Relaxed);
    tracing::error!(panic = %payload_text(payload), "{what} panicked; answered 500, the server goes on");
    ApiError::internal(
        "an internal error stopped this request (it is logged; the server goes on). Its outcome is \
         unknown: look at the instance or task before retrying",
    )
}

/// Middleware: run the rest of the request, turning a panic into a `500`.
pub async fn catch_panics(req: Request, next: Next) -> Response {
    let mut fut = std::pin::pin!(next.run(req));
    let caught =
        std::future::poll_fn(|cx| match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(resp)) => Poll::Ready(Ok(resp)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        })
        .await;
    caught.unwrap_or_else(|payload| contained("a request handler", payload.as_ref()).into_response())
}
