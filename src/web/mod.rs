//! The web inbox: server-rendered HTML at `/` and `/web/…`, same origin as the API.
//!
//! No JavaScript and no build step: pages are plain HTML forms ([`html`] escapes
//! every value by construction), the stylesheet is embedded in the binary. Every
//! action calls the very API handler that `/api/v1` serves (claim, complete, send
//! back, start, download…), so the web inbox cannot drift from the API's rules:
//! the same visibility checks, the same validation, the same errors.
//!
//! Signing in: paste an API token once; the browser then holds an opaque session
//! cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` when configured) and
//! every form carries the session's CSRF token, checked on each POST together with
//! the `Origin` header when the browser sends one ([`session`]).

// Pages answer early with a finished page (a redirect to sign in, a refusal) as
// `Err(Response)`; one per request, so its size does not matter.
#![allow(clippy::result_large_err)]

mod console;
pub mod form;
pub mod html;
mod pages;
pub mod session;

use crate::server::auth::Caller;
use crate::server::error::ApiError;
use crate::server::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use html::{html, Markup};
use session::{Session, Sessions};
use std::sync::Arc;
use std::time::Duration;

/// Web inbox settings.
#[derive(Debug, Clone, Copy)]
pub struct WebConfig {
    /// Mark the session cookie `Secure` (serve behind https). Default: off, since
    /// `nagare serve` itself speaks plain http on loopback.
    pub secure_cookie: bool,
    /// A session ends this long after sign-in. Default 12 hours.
    pub session_ttl: Duration,
    /// Most sessions at once (memory bound). Default 10,000.
    pub max_sessions: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { secure_cookie: false, session_ttl: Duration::from_secs(12 * 3600), max_sessions: 10_000 }
    }
}

/// Paths the web inbox serves (signed in by cookie, not by bearer token).
pub fn is_web_path(path: &str) -> bool {
    path == "/" || path == "/web" || path.starts_with("/web/")
}

#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
}

/// Largest form body without files (text fields of a task form), like the API's.
pub const FORM_LIMIT: usize = crate::server::BODY_LIMIT;

/// The web routes, with their own state; merged in front of the API by
/// [`crate::server::app`].
pub fn router(app: AppState) -> Router {
    let sessions = Arc::new(Sessions::new(&app.web));
    let state = WebState { app, sessions };
    // Uploads stream into the blob store, which enforces each file variable's
    // `max_size`; text fields are bounded by [`form::read_form`].
    let with_files = Router::new()
        .route("/web/tasks/{id}/complete", post(pages::complete))
        .route("/web/start/{process}", get(pages::start_form).post(pages::start))
        .layer(DefaultBodyLimit::disable());
    // A process file may be larger than a task form: the API's deploy limit.
    let deploy = Router::new()
        .route("/web/admin/processes", get(console::processes).post(console::deploy))
        .layer(DefaultBodyLimit::max(crate::server::DEPLOY_BODY_LIMIT));
    Router::new()
        .route("/", get(pages::inbox))
        .route("/web", get(|| async { redirect("/") }))
        .route("/web/style.css", get(style))
        .route("/web/login", get(pages::login_form).post(pages::login))
        .route("/web/logout", post(pages::logout))
        .route("/web/tasks/{id}", get(pages::task))
        .route("/web/tasks/{id}/claim", post(pages::claim))
        .route("/web/tasks/{id}/unclaim", post(pages::unclaim))
        .route("/web/tasks/{id}/send-back", post(pages::send_back))
        .route("/web/start", get(pages::start_list))
        .route("/web/instances", get(pages::instances))
        .route("/web/instances/{id}", get(pages::instance))
        .route("/web/instances/{id}/files/{variable}", get(pages::download))
        .route("/web/admin", get(console::home))
        .route("/web/admin/processes/{id}", get(console::process))
        .route("/web/admin/processes/{id}/start-paused", post(console::start_paused))
        .route("/web/admin/instances", get(console::instances))
        .route("/web/admin/instances/{id}", get(console::instance))
        .route("/web/admin/instances/{id}/incidents/{incident}", post(console::fix_incident))
        .route("/web/admin/instances/{id}/cancel", post(console::cancel))
        .route("/web/admin/incidents", get(console::incidents))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .merge(with_files)
        .merge(deploy)
        // Requests are counted per route template in `/metrics`, like the API's.
        .layer(axum::middleware::from_fn(crate::server::metrics::expose_route))
        .with_state(state)
}

async fn style() -> Response {
    let mut r = include_str!("style.css").into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    r
}

/// A signed-in request: who, and their session.
pub struct Ctx {
    pub caller: Arc<Caller>,
    pub session: Session,
}

impl WebState {
    /// The signed-in user, or a redirect to the sign-in page. The session's token
    /// is looked up in the users file as it is now: a revoked token signs out.
    pub fn ctx(&self, headers: &HeaderMap) -> Result<Ctx, Response> {
        let session = session::session_id(headers).and_then(|id| self.sessions.get(&id));
        let Some(session) = session else { return Err(redirect("/web/login")) };
        match self.app.users.current().authenticate_digest(&session.token_digest) {
            // The proxy relations in force now, as for API calls.
            Some(caller) => Ok(Ctx { caller: self.app.users.proxies.with_principals(caller), session }),
            None => {
                if let Some(id) = session::session_id(headers) {
                    self.sessions.remove(&id);
                }
                Err(redirect("/web/login"))
            }
        }
    }
}

/// Refuse a POST from another site: an `Origin` (when sent) that is not this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// Check a POST: same origin, and the session's form token.
pub fn check_post(ctx: &Ctx, headers: &HeaderMap, csrf: &str) -> Result<(), Response> {
    if !same_origin(headers) || !ctx.session.csrf_ok(csrf) {
        return Err(message_page(
            StatusCode::FORBIDDEN,
            Some(ctx),
            "フォームの確認に失敗しました / Form check failed",
            "このフォームは古いか、別のサイトから送信されました。ページを読み込み直してください。 The form is stale or came from another site; reload the page and try again.",
        ));
    }
    Ok(())
}

pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// An HTML response with the headers every page gets: no caching (pages show
/// personal data), no framing, no scripts, forms to this origin only.
pub fn respond(status: StatusCode, body: Markup) -> Response {
    let mut r = (status, body.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    r
}

/// The page frame: header with navigation and the sign-out button.
pub fn layout(title: &str, ctx: Option<&Ctx>, body: Markup) -> Markup {
    let mut m = html!(
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{} – nagare</title><link rel=\"stylesheet\" href=\"/web/style.css\"></head><body><header><a class=\"brand\" href=\"/\">nagare</a>",
        title
    );
    if let Some(ctx) = ctx {
        let who = ctx.caller.name.clone().unwrap_or_else(|| ctx.caller.id.clone());
        html!(
            m,
            "<nav><a href=\"/\">受信箱 Inbox</a><a href=\"/web/start\">申請する Start</a><a href=\"/web/instances\">案件 Instances</a>{}</nav><span class=\"who\">{}</span><form method=\"post\" action=\"/web/logout\" class=\"inline\">{}<button>ログアウト Sign out</button></form>",
            if ctx.caller.admin {
                Markup::raw("<a href=\"/web/admin/processes\">管理 Console</a>")
            } else {
                Markup::new()
            },
            who,
            csrf_field(ctx)
        );
    }
    html!(m, "</header><main><h1>{}</h1>{}</main></body></html>", title, body);
    m
}

/// The hidden form token.
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html!("<input type=\"hidden\" name=\"_csrf\" value=\"{}\">", ctx.session.csrf)
}

/// A page with just a message.
pub fn message_page(status: StatusCode, ctx: Option<&Ctx>, title: &str, text: &str) -> Response {
    respond(
        status,
        layout(
            title,
            ctx,
            html!("<p class=\"error\">{}</p><p><a href=\"/\">受信箱へ戻る Back to the inbox</a></p>", text),
        ),
    )
}

/// An API error as a page (404 for what the user may not see, 409 for a task
/// done already…), with the API's own message.
pub fn error_page(ctx: &Ctx, e: &ApiError) -> Response {
    let title = match e.status {
        StatusCode::NOT_FOUND => "見つかりません / Not found",
        StatusCode::FORBIDDEN => "権限がありません / Not allowed",
        StatusCode::CONFLICT => "処理できません / Conflict",
        s if s.is_server_error() => "サーバーエラー / Server error",
        _ => "エラー / Error",
    };
    message_page(e.status, Some(ctx), title, &e.message)
}
