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
//! Connections are accepted by [`conn::serve`] (timeouts, connection cap), and a
//! panic in one request is that request's `500` ([`panic`](mod@panic)).

mod archived;
pub mod auth;
mod cloudsign_hook;
pub(crate) mod config;
pub mod conn;
pub mod error;
pub mod events;
pub mod extract;
pub(crate) mod files;
mod health;
mod hooks;
pub(crate) mod incidents;
pub(crate) mod instances;
mod jobs;
mod messages;
pub mod metrics;
mod migrations;
pub mod openapi;
pub mod org;
pub mod panic;
pub(crate) mod processes;
pub mod proxies;
pub(crate) mod tasks;
pub mod views;
pub mod webhooks;

use crate::server::auth::{UserDirectory, Users};
use crate::server::error::{ApiError, ApiResult};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use nagare_connectors::kintone::trigger::Watcher;
use nagare_engine::{Engine, Executor};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
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
    /// Timeouts and the connection cap of the accept loop.
    pub limits: conn::Limits,
    /// The configured connectors: `/hooks/cloudsign` reads its secret and allow-list
    /// from them. `None`: that hook answers 404.
    pub connectors: Option<Arc<nagare_connectors::Connectors>>,
    /// The web inbox's cookie and session settings ([`crate::web`]).
    pub web: crate::web::WebConfig,
    /// The counters of the outgoing webhook endpoints, in the order of the
    /// `webhooks:` section (`/metrics` labels them by that index).
    pub webhooks: Arc<[Arc<webhooks::Stats>]>,
}

impl AppState {
    pub fn new(engine: Engine, users: Users) -> Self {
        let users = UserDirectory::new(users);
        users.proxies.use_clock_of(&engine);
        AppState {
            engine,
            users: Arc::new(users),
            http: Arc::new(metrics::HttpStats::default()),
            ready: Arc::new(AtomicBool::new(true)),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            watcher: None,
            limits: conn::Limits::default(),
            connectors: None,
            web: crate::web::WebConfig::default(),
            webhooks: Arc::new([]),
        }
    }

    /// With other web inbox settings (e.g. `Secure` cookies behind https).
    pub fn with_web(mut self, web: crate::web::WebConfig) -> Self {
        self.web = web;
        self
    }

    /// With other timeouts or connection cap than the defaults.
    pub fn with_limits(mut self, limits: conn::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// With the configured connectors (see [`AppState::connectors`]).
    pub fn with_connectors(mut self, connectors: Arc<nagare_connectors::Connectors>) -> Self {
        self.connectors = Some(connectors);
        self
    }

    /// With the counters of running webhook senders, for `/metrics` (see
    /// [`AppState::webhooks`]).
    pub fn with_webhooks(mut self, hooks: &webhooks::Webhooks) -> Self {
        self.webhooks = hooks.stats().iter().map(|(_, s)| s.clone()).collect();
        self
    }

    /// With a kintone watcher (see [`AppState::watcher`]).
    pub fn with_watcher(mut self, watcher: Arc<Watcher>) -> Self {
        self.watcher = Some(watcher);
        self
    }
}

/// Run engine work on the blocking pool. A panic there is this request's `500`
/// (see [`panic`](mod@panic)), not the server's end.
pub async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    F: FnOnce() -> ApiResult<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(panic::contained("an engine call", e.into_panic().as_ref())),
        Err(e) => Err(ApiError::internal(format!("the request's worker was stopped: {e}"))),
    }
}

/// The routes that need a token, registered once for both router and document.
fn protected(names: &mut SchemaNames) -> OpenApiRouter<AppState> {
    let (schemas, paths, processes) = names.check(routes!(processes::list, processes::deploy));
    OpenApiRouter::new()
        .routes((schemas, paths, processes.layer(DefaultBodyLimit::max(DEPLOY_BODY_LIMIT))))
        .routes(names.check(routes!(processes::get)))
        .routes(names.check(routes!(config::get, config::change)))
        // Starts and completions may carry files (multipart): their route limit is
        // the largest file; JSON bodies keep BODY_LIMIT (`extract::limited_json`).
        .routes(with_form_limit(names.check(routes!(instances::list, instances::start))))
        .routes(names.check(routes!(instances::get)))
        .routes(names.check(routes!(archived::by_key)))
        .routes(names.check(routes!(instances::history)))
        .routes(names.check(routes!(instances::cancel)))
        .routes(names.check(routes!(files::upload)))
        .routes(names.check(routes!(files::download)))
        .routes(names.check(routes!(tasks::inbox)))
        .routes(names.check(routes!(tasks::get)))
        .routes(names.check(routes!(tasks::claim)))
        .routes(names.check(routes!(tasks::unclaim)))
        .routes(names.check(routes!(tasks::assign)))
        .routes(with_form_limit(names.check(routes!(tasks::complete))))
        .routes(names.check(routes!(tasks::send_back)))
        .routes(names.check(routes!(tasks::fail)))
        .routes(names.check(routes!(proxies::list, proxies::set)))
        .routes(names.check(routes!(proxies::remove)))
        .routes(names.check(routes!(proxies::file)))
        .routes(names.check(routes!(org::get, org::put)))
        .routes(names.check(routes!(messages::send)))
        .routes(names.check(routes!(incidents::list)))
        .routes(names.check(routes!(incidents::retry)))
        .routes(names.check(routes!(incidents::resolve)))
        .routes(names.check(routes!(migrations::plan)))
        .routes(names.check(routes!(migrations::apply)))
        .routes(names.check(routes!(jobs::activate)))
        .routes(names.check(routes!(jobs::complete)))
        .routes(names.check(routes!(jobs::fail)))
        .routes(names.check(routes!(events::events)))
        .routes(names.check(routes!(metrics::metrics)))
        .routes(names.check(routes!(openapi::document)))
}

/// A route registration whose body limit is that of a multipart form with files.
fn with_form_limit(
    r: utoipa_axum::router::UtoipaMethodRouter<AppState>,
) -> utoipa_axum::router::UtoipaMethodRouter<AppState> {
    let (schemas, paths, router) = r;
    (schemas, paths, router.layer(DefaultBodyLimit::max(files::FORM_BODY_LIMIT)))
}

/// The routes that need no token: health, and webhooks (which carry their own secret).
fn public(names: &mut SchemaNames) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(names.check(routes!(health::health)))
        .routes(names.check(routes!(health::ready)))
        .routes(names.check(routes!(hooks::kintone)))
        .routes(names.check(routes!(cloudsign_hook::with_secret)))
        .routes(names.check(routes!(cloudsign_hook::with_token)))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

/// Schema names met while registering routes, with their definitions. The document
/// keeps one schema per name and silently drops any other: two types called
/// `CompleteRequest` once documented the task's complete with the job worker's body.
#[derive(Default)]
struct SchemaNames {
    seen: BTreeMap<String, String>,
    clashes: BTreeSet<String>,
}

impl SchemaNames {
    fn check(&mut self, r: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
        for (name, schema) in &r.0 {
            let json = serde_json::to_string(schema).unwrap_or_default();
            match self.seen.get(name) {
                Some(prev) if *prev != json => {
                    self.clashes.insert(name.clone());
                }
                Some(_) => {}
                None => {
                    self.seen.insert(name.clone(), json);
                }
            }
        }
        r
    }
}

/// Names given to two different schemas among the routes (must be none).
pub fn schema_name_clashes() -> Vec<String> {
    let mut names = SchemaNames::default();
    let _ = (protected(&mut names), public(&mut names));
    names.clashes.into_iter().collect()
}

/// The router with its state, and the OpenAPI document of exactly its routes.
pub fn app(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let mut names = SchemaNames::default();
    let protected = protected(&mut names).layer(DefaultBodyLimit::max(BODY_LIMIT));
    let public = public(&mut names);
    debug_assert!(names.clashes.is_empty(), "schema names used for two types: {:?}", names.clashes);
    let (router, mut doc) =
        OpenApiRouter::with_openapi(openapi::base()).merge(protected).merge(public).split_for_parts();
    openapi::finish(&mut doc);
    let doc_json = Arc::new(serde_json::to_string(&doc).expect("the OpenAPI document serializes"));
    let routes = router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::Extension(openapi::Document(doc_json)))
        .layer(axum::middleware::from_fn(metrics::expose_route))
        .with_state(state.clone());
    // The token check and the request counter wrap the whole router, not each
    // route (`Router::layer` runs after routing: a 405 would come first): no token,
    // 401, before any 404 or 405. The web inbox (`/`, `/web/…`) signs in with its
    // own session cookie instead ([`auth::is_public`] lets it through).
    let router = Router::new()
        .merge(crate::web::router(state.clone()))
        .fallback_service(routes)
        .layer(axum::middleware::from_fn_with_state(state.users.clone(), auth::require_token))
        .layer(axum::middleware::from_fn_with_state(state, metrics::track));
    (router, doc)
}

/// Unknown paths (the caller has a valid token: [`auth::require_token`] runs first).
async fn no_route(uri: axum::http::Uri) -> ApiError {
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
        format!(
            "{} is not allowed on {}; see /api/v1/openapi.json",
            error::echo(method.as_str()),
            error::echo(uri.path())
        ),
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
    let engine = state.engine.clone();
    let ready = state.ready.clone();
    let stopping = state.stopping.clone();
    let watcher = state.watcher.clone();
    let limits = state.limits;
    let (router, _) = app(state);
    let (exec_stop, exec_stopped) = tokio::sync::watch::channel(false);
    let polling = watcher.map(|w| {
        let mut rx = exec_stop.subscribe();
        tokio::spawn(async move {
            tracing::info!(processes = ?w.watched(), "kintone watcher running");
            w.run(async move { while rx.changed().await.is_ok() && !*rx.borrow() {} }).await
        })
    });
    let executor = tokio::spawn(supervise_executor(engine.clone(), exec_stopped.clone()));
    let collector = tokio::spawn(collect_files(engine.clone(), exec_stopped));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "nagare API listening");
    let served = conn::serve(listener, router, limits, async move {
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
    collector.abort();
    let flushed = tokio::task::spawn_blocking(move || engine.flush()).await.map_err(std::io::Error::other)?;
    if let Err(e) = flushed {
        tracing::error!(error = %e, "final flush failed");
        return Err(std::io::Error::other(e.to_string()));
    }
    tracing::info!("stopped");
    served
}

/// How often uploads that no instance took up are collected.
const FILE_COLLECTION_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Remove uploaded content that no instance references and that is older than
/// [`nagare_engine::files::UPLOAD_GRACE`]: at start, then every few hours, until `stop`.
async fn collect_files(engine: Engine, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.collect_files(nagare_engine::files::UPLOAD_GRACE)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(removed = n, "unreferenced uploads collected"),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "collecting unreferenced uploads failed; trying again later"),
            Err(err) => tracing::warn!(error = %err, "collecting unreferenced uploads failed; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(FILE_COLLECTION_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Run the executor until `stop` says true. A panic in its loop (a bug: a job's
/// own panic stays in that job's task) is logged and the executor starts again a
/// second later, instead of leaving the server without service calls and timers.
async fn supervise_executor(engine: Engine, stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let mut rx = stop.clone();
        let run = tokio::spawn({
            let engine = engine.clone();
            async move {
                Executor::new(engine)
                    .run(async move { while !*rx.borrow_and_update() && rx.changed().await.is_ok() {} })
                    .await
            }
        });
        match run.await {
            Err(e) if e.is_panic() && !*stop.borrow() => {
                let text = panic::payload_text(e.into_panic().as_ref()).to_string();
                tracing::error!(panic = %text, "the executor panicked (a bug); it starts again in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod first {
        #[derive(serde::Deserialize, utoipa::ToSchema)]
        #[allow(dead_code)]
        pub struct Same {
            pub output: u32,
        }
        #[utoipa::path(post, path = "/a", request_body = Same, responses((status = 200)))]
        pub async fn a(_: axum::Json<Same>) {}
    }

    mod second {
        #[derive(serde::Deserialize, utoipa::ToSchema)]
        #[allow(dead_code)]
        pub struct Same {
            pub variables: String,
        }
        #[utoipa::path(post, path = "/b", request_body = Same, responses((status = 200)))]
        pub async fn b(_: axum::Json<Same>) {}
    }

    #[test]
    fn two_types_with_one_schema_name_are_found() {
        let mut names = SchemaNames::default();
        let _ = names.check(routes!(first::a));
        let _ = names.check(routes!(first::a));
        assert!(names.clashes.is_empty(), "the same type twice is fine");
        let _ = names.check(routes!(second::b));
        assert_eq!(names.clashes.into_iter().collect::<Vec<_>>(), ["Same"]);
        assert_eq!(schema_name_clashes(), Vec::<String>::new(), "the server's own routes");
    }

    #[tokio::test]
    async fn a_panic_on_the_blocking_pool_is_a_500_internal() {
        let before = panic::panics();
        let e = blocking(|| -> ApiResult<()> { panic!("bug") }).await.unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::INTERNAL_SERVER_ERROR, "internal"));
        assert!(panic::panics() > before);
    }
}
