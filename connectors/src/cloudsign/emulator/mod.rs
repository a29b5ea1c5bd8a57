//! A local CloudSign: the Web API subset the connector uses, with CloudSign's
//! paths, token flow, form and multipart bodies, status codes and `{error, message}`
//! bodies, for development, demos and tests.
//!
//! `nagare emulate cloudsign --data DIR` serves it; tests mount [`Emulator::router`]
//! on `127.0.0.1:0`. State (client ids, tokens, documents) is kept in
//! `DIR/cloudsign.json`, rewritten atomically after every change; file contents in
//! `DIR/cloudsign-files/<sha256>`, written before the state that names them. A
//! fresh directory knows the client ids of [`state::DEMO_CLIENTS`].
//!
//! Documents move draft → in progress (sent) → concluded or declined; the signer is
//! played through `POST /emulator/documents/{id}/agree|decline`. Each status change
//! is posted to the configured webhook URL as CloudSign does (`{documentID, status,
//! userID, email, text}`, `User-Agent: CloudSignWebHook`). Faults (latency, 429s,
//! 500s) are injected through [`Emulator::set_faults`] or `PUT /emulator/faults`.
//!
//! | endpoint | |
//! | --- | --- |
//! | `POST /token` | form `client_id` → `{access_token, expires_in, token_type}` |
//! | `GET /documents?status&page&from&to` | `{total, page, documents}`, 100 a page; `from`/`to` (RFC 3339) filter on the last-processed time |
//! | `POST /documents` | create a draft (form `title`, `note`, `message`) |
//! | `GET`/`POST`/`DELETE /documents/{id}` | read / send (remind) / delete a draft |
//! | `POST /documents/{id}/files` | multipart `name` + `uploadfile` (PDF) |
//! | `GET /documents/{id}/files/{fileID}` | the PDF |
//! | `POST /documents/{id}/participants` | form `email`, `name`, ... |
//! | `GET`/`PUT /documents/{id}/attribute` | contract attributes (JSON) |
//! | `POST /emulator/documents/{id}/agree`, `/decline` | the signer (not CloudSign) |
//! | `POST /emulator/documents` | put a concluded (or draft, declined) document with files in place (not CloudSign) |
//! | `GET`/`PUT /emulator/faults`, `PUT /emulator/webhook` | emulator settings (not CloudSign) |
//!
//! Differences that matter: no templates, widgets, reminders' mails or transfers;
//! files are checked for the PDF markers only; one webhook URL, sent once without retries.

mod http;
pub mod state;

pub use state::{ApiError, State, DEMO_CLIENTS};

use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The file the state lives in, inside the data directory.
pub const STATE_FILE: &str = "cloudsign.json";
/// The directory of file contents, inside the data directory.
pub const FILES_DIR: &str = "cloudsign-files";
/// Largest request body (CloudSign: about 20 MB).
pub const MAX_BODY_BYTES: usize = 20 * 1024 * 1024;

pub use crate::faults::Faults;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot use the emulator's data directory {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("the emulator's state file {path} is damaged: {reason} (move it away to start afresh)")]
    Damaged { path: String, reason: String },
}

/// A webhook post the emulator made (kept for tests and `GET /emulator/webhooks`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub url: String,
    pub body: serde_json::Value,
    /// The receiver's HTTP status, or `None` when it could not be reached.
    pub status: Option<u16>,
}

struct Inner {
    state: Mutex<State>,
    dir: Option<PathBuf>,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
    token_requests: AtomicU64,
    /// Seconds added to the real clock (tests move time forward).
    offset_secs: AtomicU64,
    deliveries: Mutex<Vec<Delivery>>,
    http: reqwest::Client,
}

/// The emulator. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl Emulator {
    /// Kept in memory only.
    pub fn in_memory() -> Emulator {
        Self::with_state(State::seed(), None)
    }

    /// Open (or create) the state in `dir`.
    pub fn open(dir: &Path) -> Result<Emulator, EmulatorError> {
        let io = |e: std::io::Error| EmulatorError::Io { path: dir.display().to_string(), reason: e.to_string() };
        std::fs::create_dir_all(dir.join(FILES_DIR)).map_err(io)?;
        let file = dir.join(STATE_FILE);
        let state = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<State>(&bytes)
                .map_err(|e| EmulatorError::Damaged { path: file.display().to_string(), reason: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::seed(),
            Err(e) => return Err(io(e)),
        };
        let emu = Self::with_state(state, Some(dir.to_path_buf()));
        let st = emu.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        emu.save(&st).map_err(io)?;
        drop(st);
        Ok(emu)
    }

    fn with_state(state: State, dir: Option<PathBuf>) -> Emulator {
        Emulator {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                dir,
                blobs: Mutex::new(HashMap::new()),
                faults: Mutex::new(Faults::default()),
                requests: AtomicU64::new(0),
                token_requests: AtomicU64::new(0),
                offset_secs: AtomicU64::new(0),
                deliveries: Mutex::new(Vec::new()),
                http: crate::http::client(),
            }),
        }
    }

    /// The emulator's clock: the real one plus [`Emulator::advance`]s.
    #[allow(clippy::disallowed_methods)]
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::seconds(self.inner.offset_secs.load(Ordering::Relaxed) as i64)
    }

    /// Move the emulator's clock forward (tokens expire, timestamps move).
    pub fn advance(&self, by: Duration) {
        self.inner.offset_secs.fetch_add(by.as_secs(), Ordering::Relaxed);
    }

    /// Lifetime of newly issued tokens (CloudSign: one hour).
    pub fn set_token_ttl(&self, ttl: Duration) {
        let _ = self.write(|st| {
            st.token_ttl_secs = ttl.as_secs().max(1);
            Ok(())
        });
    }

    /// Where status changes are posted (`None`: nowhere).
    pub fn set_webhook(&self, url: Option<String>) {
        let _ = self.write(|st| {
            st.webhook_url = url;
            Ok(())
        });
    }

    /// Register a client id for a CloudSign user.
    pub fn add_client(&self, client_id: &str, user_id: &str, email: &str, name: &str) {
        let _ = self.write(|st| {
            let a = state::Account { user_id: user_id.into(), email: email.into(), name: name.into(), web_api: true };
            st.clients.insert(client_id.into(), a);
            Ok(())
        });
    }

    /// Put a document with files straight into the state of `client_id`'s account
    /// (tests, demos, benches): `files` are `(name, PDF bytes)`; `processed_at`
    /// defaults to the emulator's now for anything but a draft. Returns its id.
    pub fn seed_document(
        &self,
        client_id: &str,
        title: &str,
        status: u32,
        files: Vec<(String, Vec<u8>)>,
        attribute: serde_json::Map<String, serde_json::Value>,
        processed_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<String, ApiError> {
        let mut stored = Vec::new();
        for (name, bytes) in files {
            let sha = crate::cloudsign::files::sha256_hex(&bytes);
            let size = bytes.len() as u64;
            self.put_blob(&sha, bytes)?;
            stored.push((name, sha, size));
        }
        let now = self.now();
        let processed_at = if status == 0 { None } else { Some(processed_at.unwrap_or(now)) };
        let d = state::SeedDocument { title: title.into(), status, files: stored, attribute, processed_at };
        self.write(|st| st.seed_document(client_id, d, now))
    }

    fn save(&self, state: &State) -> std::io::Result<()> {
        let Some(dir) = &self.inner.dir else { return Ok(()) };
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        write_durably(&dir.join(STATE_FILE), &bytes)
    }

    /// Read the state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.inner.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Change the state and persist it; a change that cannot be saved is undone.
    pub fn write<T>(&self, f: impl FnOnce(&mut State) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        // Only a state that is saved can fail to save: an in-memory one is not copied.
        let before = self.inner.dir.is_some().then(|| st.clone());
        let out = f(&mut st)?;
        if let (Err(e), Some(before)) = (self.save(&st), before) {
            *st = before;
            tracing::error!(error = %e, "cloudsign emulator cannot save its state");
            return Err(ApiError::new(
                500,
                "internal_server_error",
                format!("the emulator could not save its state: {e}"),
            ));
        }
        Ok(out)
    }

    /// Keep a file's content (on disk first, when the emulator has a directory).
    fn put_blob(&self, sha256: &str, bytes: Vec<u8>) -> Result<(), ApiError> {
        if let Some(dir) = &self.inner.dir {
            let path = dir.join(FILES_DIR).join(sha256);
            if !path.exists() {
                write_durably(&path, &bytes).map_err(|e| {
                    ApiError::new(500, "internal_server_error", format!("the emulator could not store the file: {e}"))
                })?;
            }
        }
        self.inner.blobs.lock().unwrap_or_else(|p| p.into_inner()).insert(sha256.into(), bytes);
        Ok(())
    }

    fn blob(&self, sha256: &str) -> Option<Vec<u8>> {
        if let Some(b) = self.inner.blobs.lock().unwrap_or_else(|p| p.into_inner()).get(sha256) {
            return Some(b.clone());
        }
        std::fs::read(self.inner.dir.as_ref()?.join(FILES_DIR).join(sha256)).ok()
    }

    /// Play the signer: the next participant agrees (`true`) or declines.
    pub async fn answer(&self, document: &str, agree: bool, comment: &str) -> Result<serde_json::Value, ApiError> {
        let now = self.now();
        let (model, change) = self.write(|st| st.answer(document, agree, comment, now))?;
        if let Some(c) = change {
            self.notify(c).await;
        }
        Ok(model)
    }

    /// Post a status change to the webhook URL, as CloudSign does.
    async fn notify(&self, c: state::Change) {
        let Some(url) = self.read(|st| st.webhook_url.clone()) else { return };
        let prefix = match c.status {
            1 => "SENT",
            2 => "COMPLETED",
            _ => "CANCELED",
        };
        let body = serde_json::json!({
            "documentID": c.document,
            "status": c.status,
            "userID": c.user_id,
            "email": c.email,
            "text": format!("{prefix} : {} sent by {}\nhttps://www.cloudsign.jp/document/{}/summary", c.title, c.name, c.document),
        });
        let res = self
            .inner
            .http
            .post(&url)
            .header(reqwest::header::USER_AGENT, "CloudSignWebHook")
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let status = match res {
            Ok(r) => Some(r.status().as_u16()),
            Err(e) => {
                tracing::warn!(error = %e, "cloudsign emulator: webhook not delivered");
                None
            }
        };
        self.inner.deliveries.lock().unwrap_or_else(|p| p.into_inner()).push(Delivery { url, body, status });
    }

    /// The webhook posts made so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.deliveries.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_faults(&self, f: Faults) {
        *self.inner.faults.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }

    pub fn faults(&self) -> Faults {
        self.inner.faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// API requests answered so far (faults and `/token` included).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// `POST /token` requests answered so far.
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::Relaxed)
    }

    /// The axum router serving the API.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Serve on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }

    fn take_fault(&self) -> (u64, Option<(u16, Option<u64>)>) {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let mut f = self.inner.faults.lock().unwrap_or_else(|p| p.into_inner());
        let hit = f.take();
        (f.latency_ms, hit)
    }
}

/// A temporary file, fsynced, renamed over `path`, and the directory fsynced.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A random access token (32 hex digits in UUID form, as CloudSign's).
fn fresh_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS has randomness");
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}
