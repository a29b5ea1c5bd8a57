//! `/api/v1/proxies`: proxies (代理人). A user names someone to act for them
//! during a period; while it runs, the tasks assigned (or offered) to the
//! principal are in the proxy's inbox too, and the proxy completes them in the
//! principal's name: the history names both (`user: yamada, proxy: tanaka`).
//! With `filing: true` the proxy may also start requests on the principal's
//! behalf (代理申請): `started_by` is the principal, the `started` line names
//! the proxy.
//!
//! The relations live in `<data>/proxies.json` (temp file, fsync, rename), or
//! in memory for an embedded server. Bounds: [`MAX_RELATIONS`] in all,
//! [`MAX_PER_PRINCIPAL`] per principal, periods of at most [`MAX_PERIOD_DAYS`]
//! days; relations ended more than [`KEEP_ENDED_DAYS`] days ago are dropped.

use super::auth::{Auth, Caller};
use super::error::{echo, ApiError, ApiResult, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::instances::{check_text, open_tasks, MAX_KEY_CHARS};
use super::views::{InstanceView, VarsJson};
use super::{blocking, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use nagare_engine::{Engine, StartOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use utoipa::ToSchema;

/// Most proxy relations kept.
pub const MAX_RELATIONS: usize = 10_000;
/// Most relations one principal may have that have not ended.
pub const MAX_PER_PRINCIPAL: usize = 20;
/// Longest period of one relation.
pub const MAX_PERIOD_DAYS: i64 = 366;
/// Ended relations are kept this long (for `GET`), then dropped.
pub const KEEP_ENDED_DAYS: i64 = 30;

/// One proxy relation: `proxy` acts for `principal` from `from` until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProxyView {
    pub id: u64,
    /// Who is away.
    pub principal: String,
    /// Who acts for them.
    pub proxy: String,
    pub from: DateTime<Utc>,
    /// The first moment no longer covered.
    pub until: DateTime<Utc>,
    /// The proxy may also start requests on the principal's behalf (代理申請).
    pub filing: bool,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
}

impl ProxyView {
    fn active(&self, now: DateTime<Utc>) -> bool {
        self.from <= now && now < self.until
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    next_id: u64,
    proxies: Vec<ProxyView>,
}

type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The proxy relations, shared by the request handlers and the auth middleware.
pub struct ProxyBook {
    book: Mutex<Book>,
    file: Mutex<Option<PathBuf>>,
    now: RwLock<Now>,
}

impl std::fmt::Debug for ProxyBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.book.lock().unwrap_or_else(PoisonError::into_inner).proxies.len();
        f.debug_struct("ProxyBook").field("relations", &n).finish()
    }
}

impl ProxyBook {
    pub fn in_memory() -> Self {
        ProxyBook { book: Mutex::default(), file: Mutex::new(None), now: RwLock::new(Arc::new(Utc::now)) }
    }

    /// Keep the relations in `path` from now on, reading what it holds.
    pub fn open(&self, path: &Path) -> Result<(), String> {
        let book = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Book::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        *self.book.lock().unwrap_or_else(PoisonError::into_inner) = book;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = Some(path.to_path_buf());
        Ok(())
    }

    /// Read the time from the engine's clock (a virtual one in tests).
    pub fn use_clock_of(&self, engine: &Engine) {
        let engine = engine.clone();
        *self.now.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(move || engine.now());
    }

    fn now(&self) -> DateTime<Utc> {
        (self.now.read().unwrap_or_else(PoisonError::into_inner))()
    }

    /// `caller` with the principals they act for right now.
    pub fn with_principals(&self, caller: Arc<Caller>) -> Arc<Caller> {
        let now = self.now();
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        let mut principals: Vec<String> = book
            .proxies
            .iter()
            .filter(|p| p.proxy == caller.id && p.active(now))
            .map(|p| p.principal.clone())
            .collect();
        if principals.is_empty() {
            return caller;
        }
        principals.sort();
        principals.dedup();
        Arc::new(Caller { acting_for: principals, ..(*caller).clone() })
    }

    /// Whether `proxy` may file requests for `principal` right now.
    fn may_file(&self, proxy: &str, principal: &str) -> bool {
        let now = self.now();
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        book.proxies.iter().any(|p| p.proxy == proxy && p.principal == principal && p.filing && p.active(now))
    }

    fn list(&self, who: &Caller) -> Vec<ProxyView> {
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        book.proxies.iter().filter(|p| who.admin || p.principal == who.id || p.proxy == who.id).cloned().collect()
    }

    /// Apply `change` to the book and store it; nothing changes if storing fails.
    fn change<T>(&self, change: impl FnOnce(&mut Book, DateTime<Utc>) -> ApiResult<T>) -> ApiResult<T> {
        let now = self.now();
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Book { next_id: book.next_id, proxies: book.proxies.clone() };
        next.proxies.retain(|p| p.until + Duration::days(KEEP_ENDED_DAYS) > now);
        let out = change(&mut next, now)?;
        if let Some(path) = self.file.lock().unwrap_or_else(PoisonError::into_inner).as_deref() {
            write_atomically(path, &next).map_err(|e| ApiError::internal(format!("cannot store the proxies: {e}")))?;
        }
        *book = next;
        Ok(out)
    }
}

fn write_atomically(path: &Path, book: &Book) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(book).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A new proxy relation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetProxy {
    /// Who acts for the principal (a user of the users file, not the principal).
    pub proxy: String,
    /// Default: now.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// The first moment no longer covered; at most 366 days after `from`.
    pub until: DateTime<Utc>,
    /// Default: the caller. Only administrators set proxies for someone else.
    #[serde(default)]
    pub principal: Option<String>,
    /// The proxy may also start requests on the principal's behalf.
    #[serde(default)]
    pub filing: bool,
}

/// Proxy relations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProxyList {
    pub items: Vec<ProxyView>,
}

/// The proxy relations the caller is in (administrators: all).
#[utoipa::path(get, path = "/api/v1/proxies", operation_id = "list_proxies", tag = "proxies",
    responses(
        (status = 200, description = "Relations where the caller is principal or proxy", body = ProxyList),
        (status = 401, description = "No valid token", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Json<ProxyList>> {
    Ok(Json(ProxyList { items: state.users.proxies.list(&caller) }))
}

/// Name a proxy for a period: the caller's own, or (administrators) anyone's.
#[utoipa::path(post, path = "/api/v1/proxies", operation_id = "set_proxy", tag = "proxies",
    request_body = SetProxy,
    responses(
        (status = 201, description = "Set", body = ProxyView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "A proxy for someone else, and the caller is not an administrator", body = ErrorBody),
        (status = 422, description = "Unknown user, the principal as their own proxy, a bad period, or too many relations", body = ErrorBody),
    ))]
pub async fn set(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<SetProxy>,
) -> ApiResult<(StatusCode, Json<ProxyView>)> {
    let principal = req.principal.clone().unwrap_or_else(|| caller.id.clone());
    if principal != caller.id {
        caller.require_admin("set a proxy for someone else")?;
    }
    let users = state.users.current();
    for (what, u) in [("proxy", &req.proxy), ("principal", &principal)] {
        check_text(what, u, 100, true)?;
        if users.get(u).is_none() {
            return Err(ApiError::unprocessable("unknown-user", format!("{what} `{}` is not a user", echo(u))));
        }
    }
    if req.proxy == principal {
        return Err(ApiError::unprocessable("own-proxy", "a user cannot be their own proxy"));
    }
    let view = state.users.proxies.change(|book, now| {
        let from = req.from.unwrap_or(now);
        if req.until <= from || req.until <= now {
            return Err(ApiError::unprocessable("bad-period", "`until` must be after `from` and in the future"));
        }
        if req.until - from > Duration::days(MAX_PERIOD_DAYS) {
            return Err(ApiError::unprocessable(
                "bad-period",
                format!("a proxy covers at most {MAX_PERIOD_DAYS} days; set another one after"),
            ));
        }
        let open = book.proxies.iter().filter(|p| p.principal == principal && p.until > now).count();
        if open >= MAX_PER_PRINCIPAL || book.proxies.len() >= MAX_RELATIONS {
            return Err(ApiError::unprocessable(
                "too-many",
                format!("at most {MAX_PER_PRINCIPAL} proxies per user and {MAX_RELATIONS} in all; remove old ones"),
            ));
        }
        book.next_id += 1;
        let view = ProxyView {
            id: book.next_id,
            principal: principal.clone(),
            proxy: req.proxy.clone(),
            from,
            until: req.until,
            filing: req.filing,
            set_by: caller.id.clone(),
            set_at: now,
        };
        book.proxies.push(view.clone());
        Ok(view)
    })?;
    tracing::info!(principal = %view.principal, proxy = %view.proxy, until = %view.until, by = %caller.id, "proxy set");
    Ok((StatusCode::CREATED, Json(view)))
}

/// End a proxy relation (its principal, its proxy, or an administrator).
#[utoipa::path(delete, path = "/api/v1/proxies/{id}", operation_id = "remove_proxy", tag = "proxies",
    params(("id" = u64, Path, description = "Relation id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such relation, or not one the caller is in", body = ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<StatusCode> {
    state.users.proxies.change(|book, _| {
        let pos = book
            .proxies
            .iter()
            .position(|p| p.id == id && (caller.admin || p.principal == caller.id || p.proxy == caller.id))
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown-proxy", format!("no proxy relation {id}")))?;
        book.proxies.remove(pos);
        Ok(())
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// A request filed on someone's behalf.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyFiling {
    /// In whose name: the instance's `started_by`.
    pub principal: String,
    pub process: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: VarsJson,
    #[serde(default)]
    pub business_key: Option<String>,
}

/// 代理申請: start a process in the principal's name, as their proxy with
/// `filing: true`. The principal must be allowed to start it.
#[utoipa::path(post, path = "/api/v1/proxies/file", operation_id = "file_for", tag = "proxies",
    request_body = ProxyFiling,
    responses(
        (status = 201, description = "Started in the principal's name", body = InstanceView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "No proxy relation with `filing` in force, or the principal may not start the process", body = ErrorBody),
        (status = 404, description = "No such process", body = ErrorBody),
        (status = 422, description = "Variables refused (`details.errors`)", body = ErrorBody),
    ))]
pub async fn file(
    State(state): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<ProxyFiling>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    check_text("process", &req.process, MAX_KEY_CHARS, true)?;
    if let Some(k) = &req.business_key {
        check_text("business_key", k, MAX_KEY_CHARS, true)?;
    }
    if !state.users.proxies.may_file(&caller.id, &req.principal) {
        return Err(ApiError::forbidden(format!(
            "`{}` may not file requests for `{}`: no proxy with `filing: true` in force",
            caller.id,
            echo(&req.principal)
        )));
    }
    let principal =
        state.users.current().get(&req.principal).cloned().ok_or_else(|| {
            ApiError::unprocessable("unknown-user", format!("`{}` is not a user", echo(&req.principal)))
        })?;
    let engine = state.engine.clone();
    let view = blocking(move || {
        let process = engine.latest(&req.process);
        if let Some(p) = &process {
            if !principal.may_start(p) {
                return Err(ApiError::forbidden(format!("`{}` may not start `{}`", principal.id, echo(&p.id))));
            }
        }
        let vars = req.variables.into_iter().collect();
        let opts = StartOptions { by: Some(principal.id.clone()), business_key: req.business_key };
        let inst = engine
            .start_for(&req.process, vars, opts, &caller.id)
            .map_err(|e| ApiError::engine(e, process.as_deref()))?;
        tracing::info!(instance = inst.id, process = %inst.process, principal = %principal.id, proxy = %caller.id, "filed by proxy");
        let tasks = open_tasks(&engine, &inst)?;
        let p = engine.process(&inst.process, inst.version);
        Ok(InstanceView::new(&inst, tasks).masked(p.as_deref(), &caller.groups))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}
