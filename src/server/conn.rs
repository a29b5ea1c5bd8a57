//! The accept loop: HTTP/1.1 connections with the limits a slow or hostile client
//! must not get around.
//!
//! `axum::serve` has no timeouts and no connection cap, so a client that sends
//! `Content-Length: 1 GiB` and no body, or never finishes its headers, held a
//! connection (and its buffers) forever. Here each connection is driven by hyper
//! directly, with:
//!
//! - a **header timeout**: a request head must be complete this long after its first
//!   byte (and the first request of a new connection must be complete this long after
//!   the connection opened); else `408` and the connection is closed;
//! - a **body timeout**: the whole request body must arrive this long after its head,
//!   plus a second per 64 KiB received (a big upload that keeps moving is not cut);
//!   else `408 body-timeout` and the connection is closed;
//! - an **idle timeout**: a kept-alive connection with no request for this long is
//!   closed; a response the client does not read for this long is abandoned;
//! - a **connection cap**: beyond it a new connection is answered `503 busy` at once
//!   and closed (it neither waits nor takes buffers);
//! - bounded request heads: a URI longer than [`MAX_URI_BYTES`] is `414`, headers
//!   beyond [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`] are `431`, both as JSON.
//!
//! A request in flight (a long poll, a slow commit) is never cut by these timers:
//! only reading the request and writing the response are timed.

use super::error::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// Longest request target (path and query) answered, in bytes; longer is `414`.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest sum of header names and values, in bytes; more is `431`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header lines in one request; more is `431`.
pub const MAX_HEADERS: usize = 100;
/// The HTTP layer's own bound on a request head (its read buffer). Heads between
/// the limits above and this get the JSON `414`/`431`; beyond it (somewhat beyond:
/// hyper checks between reads) hyper closes the connection with a bare `431`, and a
/// target over 64 KiB gets hyper's bare `414` (no body: the head was never parsed).
const HEAD_BUFFER_BYTES: usize = 64 * 1024;

/// The limits of the accept loop; `nagare serve` flags set them (README § Reliability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a complete request head, from its first byte (or from the
    /// connection's opening for its first request).
    pub header_timeout: Duration,
    /// Time to send the whole request body, from the end of its head.
    pub body_timeout: Duration,
    /// A kept-alive connection without a new request, or a response the client does
    /// not read, is closed after this.
    pub idle_timeout: Duration,
    /// Connections served at once; more are answered `503` and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serve `router` on `listener` with `limits` until `shutdown` completes; then stop
/// accepting, let every connection finish its request in flight, and return.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // A cap of 0 would refuse everyone: at least one connection is served.
    let limits = Limits { max_connections: limits.max_connections.max(1), ..limits };
    let router = router.layer(axum::middleware::from_fn(super::panic::catch_panics));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let router = router.clone();
                let stop = stop_rx.clone();
                tokio::spawn(async move {
                    serve_connection(tcp, peer, router, limits, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many connections");
                tokio::spawn(refuse(tcp));
            }
        }
    }
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back means all done.
    let max = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(max).await;
    Ok(())
}

/// One connection: hyper over a timed socket, the router behind body and in-flight
/// bookkeeping.
/// Each request carries the peer's address as axum's `ConnectInfo` (a webhook's
/// allow-list reads it).
async fn serve_connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared::default());
    let io = TokioIo::new(TimedIo::new(tcp, limits, shared.clone()));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = InFlight::enter(&shared);
        let mut router = router.clone();
        let refused = check_head(&req);
        let (parts, incoming) = req.into_parts();
        let body = SharedBody::new(DeadlineBody::new(incoming, limits.body_timeout));
        let unread = body.clone();
        let mut req = Request::from_parts(parts, Body::new(body));
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
        async move {
            let resp = match refused {
                Some(e) => e.into_response(),
                None => router.call(req).await.unwrap_or_else(|never| match never {}),
            };
            linger(&unread).await;
            Ok::<_, std::convert::Infallible>(resp.map(|b| Body::new(GuardedBody { inner: b, _guard: guard })))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None).max_buf_size(HEAD_BUFFER_BYTES).max_headers(2 * MAX_HEADERS);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A request head over the limits: `414`/`431` as JSON, before routing.
fn check_head<B>(req: &Request<B>) -> Option<ApiError> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return Some(
            ApiError::new(
                StatusCode::URI_TOO_LONG,
                "uri-too-long",
                format!("the request target is {uri} bytes; at most {MAX_URI_BYTES} are accepted"),
            )
            .with_details(json!({ "limit_bytes": MAX_URI_BYTES })),
        );
    }
    let count = req.headers().len();
    let bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if count > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                format!(
                    "the request has {count} header(s), {bytes} bytes; at most {MAX_HEADERS} headers and \
                     {MAX_HEADER_BYTES} bytes are accepted"
                ),
            )
            .with_details(json!({ "limit_headers": MAX_HEADERS, "limit_bytes": MAX_HEADER_BYTES })),
        );
    }
    None
}

/// A whole JSON response for a connection that never reached the router.
fn canned(status: StatusCode, code: &str, message: &str) -> Vec<u8> {
    let body = json!({ "code": code, "message": message, "details": {} }).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// Beyond the connection cap: say so and close, within a second.
async fn refuse(mut tcp: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let mut resp = canned(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the server has as many connections as it serves at once; try again shortly",
    );
    // A Retry-After header: the last header line is followed by the blank line.
    let at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
    resp.splice(at..at, b"\r\nretry-after: 1".iter().copied());
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        tcp.write_all(&resp).await?;
        tcp.shutdown().await
    })
    .await;
}

/// What a connection's socket and its requests share: how many requests are
/// between their head and the end of their response (the socket's timers sleep
/// meanwhile), and the socket's reader to wake when the last one ends (so that its
/// idle timer starts even if hyper is not reading).
#[derive(Default)]
struct Shared {
    in_flight: AtomicUsize,
    reader: std::sync::Mutex<Option<std::task::Waker>>,
}

/// One request in flight, from its head until its response is sent or dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Some(w) = self.0.reader.lock().unwrap_or_else(|e| e.into_inner()).take() {
                w.wake();
            }
        }
    }
}

/// A response body that keeps its request counted until hyper has sent it (or
/// dropped it).
struct GuardedBody {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Most unread request body read and thrown away after the response is ready, so
/// that a client that sends its whole body before reading (most do) reads the
/// answer (a `413`, a `401`) instead of a reset connection: a server that closes
/// with unread bytes makes the kernel send a reset, and the client's write fails
/// with a broken pipe before it reads anything. Beyond this (or past the body's own
/// deadline) the connection is closed unread, as before: discarding is bounded
/// like reading (nginx's lingering close does the same).
pub const LINGER_BYTES: u64 = 8 << 20;

/// The request body, shared between the handler (which may drop it half read) and
/// the connection, which reads the rest away afterwards ([`linger`]).
#[derive(Clone)]
struct SharedBody(Arc<std::sync::Mutex<DeadlineBody>>);

impl SharedBody {
    fn new(body: DeadlineBody) -> Self {
        SharedBody(Arc::new(std::sync::Mutex::new(body)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeadlineBody> {
        // A handler that panicked mid-read leaves a body that is still just a body.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut *self.lock()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.lock().is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.lock().size_hint()
    }
}

/// Read away what the handler left of the request body, up to [`LINGER_BYTES`] and
/// within the body's deadline; a declared rest beyond that is not read at all.
async fn linger(body: &SharedBody) {
    use http_body::Body as _;
    let declared_rest = body.size_hint().lower();
    if body.is_end_stream() || declared_rest > LINGER_BYTES {
        return;
    }
    let mut read = 0u64;
    let drained = std::future::poll_fn(|cx| loop {
        let mut b = body.lock();
        match Pin::new(&mut *b).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > LINGER_BYTES {
                    return Poll::Ready(false);
                }
            }
            Poll::Ready(Some(Err(_))) => return Poll::Ready(false),
            Poll::Ready(None) => return Poll::Ready(true),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    tracing::debug!(bytes = read, drained, "unread request body read away after the response");
}

/// The error a request body gives when its time is up; [`super::extract`] answers
/// it with `408`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimeout(pub Duration);

/// Bytes of request body that buy one more second past the body timeout: a large
/// upload on a slow line goes on as long as it moves at this rate, a trickle (a
/// byte now and then) does not.
pub const BODY_BYTES_PER_EXTRA_SECOND: u64 = 64 * 1024;

/// A request body that fails with [`BodyTimeout`] once its deadline has passed: the
/// body timeout after the head, plus a second per [`BODY_BYTES_PER_EXTRA_SECOND`]
/// received.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
    /// Bytes received that have not bought their extra time yet.
    credit: u64,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        DeadlineBody { inner, deadline: Box::pin(tokio::time::sleep(limit)), limit, credit: 0 }
    }

    fn received(&mut self, bytes: usize) {
        self.credit += bytes as u64;
        let seconds = self.credit / BODY_BYTES_PER_EXTRA_SECOND;
        if seconds > 0 {
            self.credit %= BODY_BYTES_PER_EXTRA_SECOND;
            let later = self.deadline.deadline() + Duration::from_secs(seconds);
            self.deadline.as_mut().reset(later);
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received(data.len());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(r) => Poll::Ready(r.map(|r| r.map_err(axum::Error::new))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(this.limit))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a connection is between requests, for its read timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of the next request (timer: idle timeout).
    Idle,
    /// A head has begun and is not complete (timer: header timeout).
    Head,
    /// A request is in flight: reads belong to its body (its own deadline).
    Busy,
}

/// The socket, with the read timer of [`Phase`] and a timer on writes that make no
/// progress (a client that does not read its response).
struct TimedIo {
    tcp: TcpStream,
    limits: Limits,
    shared: Arc<Shared>,
    phase: Phase,
    read_timer: Pin<Box<Sleep>>,
    write_stall: Option<Pin<Box<Sleep>>>,
}

impl TimedIo {
    fn new(tcp: TcpStream, limits: Limits, shared: Arc<Shared>) -> Self {
        // A new connection is opened to send a request: its head gets the header timeout.
        let read_timer = Box::pin(tokio::time::sleep(limits.header_timeout));
        TimedIo { tcp, limits, shared, phase: Phase::Head, read_timer, write_stall: None }
    }

    /// Follow the requests of the connection: busy while one is in flight, idle
    /// (timer restarted) once its response is gone.
    fn track(&mut self) {
        let busy = self.shared.in_flight.load(Ordering::SeqCst) > 0;
        match (self.phase, busy) {
            (_, true) => self.phase = Phase::Busy,
            (Phase::Busy, false) => {
                self.phase = Phase::Idle;
                self.read_timer.as_mut().reset(Instant::now() + self.limits.idle_timeout);
            }
            _ => {}
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        this.track();
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.phase = Phase::Head;
                    this.read_timer.as_mut().reset(Instant::now() + this.limits.header_timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase == Phase::Busy {
                    *this.shared.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
                    // The last request may have ended just now: look again.
                    this.track();
                    if this.phase == Phase::Busy {
                        return Poll::Pending;
                    }
                }
                if this.read_timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if this.phase == Phase::Idle {
                    // A quiet keep-alive connection: end it as if the client had.
                    return Poll::Ready(Ok(()));
                }
                // The head never completed: tell the client (best effort, nothing of
                // a response has been written yet), then drop the connection.
                let _ = this.tcp.try_write(&canned(
                    StatusCode::REQUEST_TIMEOUT,
                    "header-timeout",
                    &format!("the request head was not complete within {} s", this.limits.header_timeout.as_secs_f64()),
                ));
                Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "request head timed out")))
            }
        }
    }
}

impl TimedIo {
    /// Time a write: no progress for the idle timeout is an error.
    fn timed_write<T>(&mut self, cx: &mut Context<'_>, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => {
                let limit = self.limits.idle_timeout;
                let timer = self.write_stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client did not read its response",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.write_stall = None;
                ready
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.timed_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.timed_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.tcp).poll_flush(cx);
        this.timed_write(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A client that does not read its response: the write is abandoned after the
    /// idle timeout instead of holding the connection and its buffers forever.
    #[tokio::test]
    async fn a_response_nobody_reads_is_abandoned_after_the_idle_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let limits = Limits { idle_timeout: Duration::from_millis(200), ..Limits::default() };
        let mut io = TimedIo::new(server, limits, Arc::new(Shared::default()));
        let t = std::time::Instant::now();
        // More than every socket buffer on the way can hold.
        let big = vec![b'x'; 64 << 20];
        let e = io.write_all(&big).await.expect_err("the write stalls");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        drop(client);
    }
}
