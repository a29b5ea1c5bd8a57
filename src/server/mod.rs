//! The task-list HTTP API: axum routes over an [`Engine`], with users and tokens.
//!
//! [`app`] builds the router and its OpenAPI document from one list of route
//! registrations (utoipa-axum), so the document cannot miss a route. [`Server`]
//! runs it on a bound listener together with the engine's [`Executor`] and shuts
//! both down in order: stop accepting, finish requests in flight (their commits
//! included), let the executor finish its calls, flush the store.
//!
//! Engine calls block (sled, fsync), so handlers run them on tokio's blocking pool
//! ([`blocking`]); a client that hangs up mid-request does not cancel a commit.

pub mod auth;
mod cloudsign_hook;
mod config;
pub mod error;
pub mod extract;
mod files;
mod health;
mod hooks;
mod incidents;
mod instances;
mod jobs;
mod messages;
pub mod metrics;
pub mod openapi;
mod processes;
mod tasks;
pub mod views;

use crate::server::auth::{UserDirectory, Users};
use crate::server::error::{ApiError, ApiResult};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use nagare_connectors::kintone::trigger::Watcher;
use nagare_engine::{Engine, Executor};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body in general: variables may hold long texts and lists.
pub const BODY_LIMIT: usize = 1 << 20;
/// Largest deploy body: a process file (at most 1 MiB) inside JSON.
pub const DEPLOY_BODY_LIMIT: usize = 2 << 20;
/// Default and largest page size of lists.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 500;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    /// Replaceable while the server runs ([`UserDirectory::replace`]).
    pub users: Arc<UserDirectory>,
    pub http: Arc<metrics::HttpStats>,
    /// False once shutdown has begun: `/ready` then says 503.
    pub ready: Arc<AtomicBool>,
    /// Becomes true once shutdown has begun: long polls answer at once, so that they
    /// do not hold the graceful shutdown up.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// The kintone watcher: serves `/hooks/kintone/{process}` and, while the server
    /// runs, polls every watched process. `None`: the hook answers 404.
    pub watcher: Option<Arc<Watcher>>,
    /// The configured connectors: `/hooks/cloudsign` reads its secret and allow-list
    /// from them. `None`: that hook answers 404.
    pub connectors: Option<Arc<nagare_connectors::Connectors>>,
}

impl AppState {
    pub fn new(engine: Engine, users: Users) -> Self {
        AppState {
            engine,
            users: Arc::new(UserDirectory::new(users)),
            http: Arc::new(metrics::HttpStats::default()),
            ready: Arc::new(AtomicBool::new(true)),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            watcher: None,
            connectors: None,
        }
    }

    /// With the configured connectors (see [`AppState::connectors`]).
    pub fn with_connectors(mut self, connectors: Arc<nagare_connectors::Connectors>) -> Self {
        self.connectors = Some(connectors);
        self
    }

    /// With a kintone watcher (see [`AppState::watcher`]).
    pub fn with_watcher(mut self, watcher: Arc<Watcher>) -> Self {
        self.watcher = Some(watcher);
        self
    }
}

/// Run engine work on the blocking pool.
pub async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    F: FnOnce() -> ApiResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("request worker failed: {e}")))?
}

/// The routes that need a token, registered once for both router and document.
fn protected() -> OpenApiRouter<AppState> {
    let (schemas, paths, processes) = routes!(processes::list, processes::deploy);
    OpenApiRouter::new()
        .routes((schemas, paths, processes.layer(DefaultBodyLimit::max(DEPLOY_BODY_LIMIT))))
        .routes(routes!(processes::get))
        .routes(routes!(config::get, config::change))
        .routes(routes!(instances::list, instances::start))
        .routes(routes!(instances::get))
        .routes(routes!(instances::history))
        .routes(routes!(instances::cancel))
        .routes(routes!(files::upload))
        .routes(routes!(files::download))
        .routes(routes!(tasks::inbox))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::claim))
        .routes(routes!(tasks::unclaim))
        .routes(routes!(tasks::assign))
        .routes(routes!(tasks::complete))
        .routes(routes!(tasks::send_back))
        .routes(routes!(tasks::fail))
        .routes(routes!(messages::send))
        .routes(routes!(incidents::list))
        .routes(routes!(incidents::retry))
        .routes(routes!(incidents::resolve))
        .routes(routes!(jobs::activate))
        .routes(routes!(jobs::complete))
        .routes(routes!(jobs::fail))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::document))
}

/// The routes that need no token: health, and webhooks (which carry their own secret).
fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(hooks::kintone))
        .routes(routes!(cloudsign_hook::with_secret))
        .routes(routes!(cloudsign_hook::with_token))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// The router with its state, and the OpenAPI document of exactly its routes.
pub fn app(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let protected = protected()
        .layer(axum::middleware::from_fn_with_state(state.users.clone(), auth::require_token))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    let (router, mut doc) =
        OpenApiRouter::with_openapi(openapi::base()).merge(protected).merge(public()).split_for_parts();
    openapi::finish(&mut doc);
    let doc_json = Arc::new(serde_json::to_string(&doc).expect("the OpenAPI document serializes"));
    let router = router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(openapi::Document(doc_json)))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state);
    (router, doc)
}

/// Unknown paths: 401 without a valid token (nothing but health answers strangers),
/// else 404, both as JSON.
async fn no_route(State(state): State<AppState>, headers: HeaderMap, uri: axum::http::Uri) -> ApiError {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .map(|(_, t)| t.trim());
    if token.and_then(|t| state.users.current().authenticate(t)).is_none() {
        return ApiError::unauthorized("this endpoint needs `Authorization: Bearer <token>`");
    }
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-route",
        format!("no endpoint {}; see /api/v1/openapi.json", error::echo(uri.path())),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{method} is not allowed on {}; see /api/v1/openapi.json", error::echo(uri.path())),
    )
}

/// A running server: its address, and the handle to stop it.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Serve `engine` on `listener` (bound already; port 0 for tests) with its
    /// executor, until [`Server::shutdown`] or the `signal` future completes.
    pub fn start(
        listener: TcpListener,
        engine: Engine,
        users: Users,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<Server> {
        Self::start_with(listener, AppState::new(engine, users), signal)
    }

    /// Like [`Server::start`], with a prepared state (e.g. [`AppState::with_watcher`]:
    /// then the kintone watcher polls alongside and stops with the server).
    pub fn start_with(
        listener: TcpListener,
        state: AppState,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(run(listener, state, async move {
            tokio::select! {
                _ = signal => {}
                _ = stopped => {}
            }
        }));
        Ok(Server { addr, stop: Some(stop), done })
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop gracefully and wait until the store is flushed.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.wait().await
    }

    /// Wait until the server stops by itself (its signal fired).
    pub async fn wait(self) -> std::io::Result<()> {
        self.done.await.map_err(std::io::Error::other)?
    }
}

/// Serve until `shutdown` completes, then stop in order: no new connections, requests
/// in flight finish, the kintone watcher and the executor finish, the store is flushed.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let engine = state.engine.clone();
    let ready = state.ready.clone();
    let stopping = state.stopping.clone();
    let watcher = state.watcher.clone();
    let (router, _) = app(state);
    let (exec_stop, exec_stopped) = tokio::sync::watch::channel(false);
    let polling = watcher.map(|w| {
        let mut rx = exec_stop.subscribe();
        tokio::spawn(async move {
            tracing::info!(processes = ?w.watched(), "kintone watcher running");
            w.run(async move { while rx.changed().await.is_ok() && !*rx.borrow() {} }).await
        })
    });
    let executor = tokio::spawn({
        let engine = engine.clone();
        async move {
            let mut rx = exec_stopped;
            Executor::new(engine).run(async move { while rx.changed().await.is_ok() && !*rx.borrow() {} }).await
        }
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "nagare API listening");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            ready.store(false, Ordering::SeqCst);
            stopping.send_replace(true);
            tracing::info!("shutting down: finishing requests in flight");
        })
        .await;
    let _ = exec_stop.send(true);
    if let Some(polling) = polling {
        if let Err(e) = polling.await {
            tracing::error!(error = %e, "kintone watcher task failed");
        }
    }
    if let Err(e) = executor.await {
        tracing::error!(error = %e, "executor task failed");
    }
    let flushed = tokio::task::spawn_blocking(move || engine.flush()).await.map_err(std::io::Error::other)?;
    if let Err(e) = flushed {
        tracing::error!(error = %e, "final flush failed");
        return Err(std::io::Error::other(e.to_string()));
    }
    tracing::info!("stopped");
    served
}
