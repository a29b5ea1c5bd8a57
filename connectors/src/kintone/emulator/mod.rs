//! A local kintone: the REST endpoints the connector uses, with kintone's paths,
//! headers, status codes and error bodies, for development, demos and tests.
//!
//! `nagare emulate kintone --data DIR` serves it; tests mount [`Emulator::router`]
//! on `127.0.0.1:0`. State (apps, fields, tokens, records with `$id`/`$revision`)
//! is kept in `DIR/kintone.json`, rewritten atomically after every change; a fresh
//! directory starts with the sample contract ledger (app 1, token
//! [`DEMO_TOKEN`]). Faults (latency, a number of 500s or 429s) are injected
//! through [`Emulator::set_faults`] or `PUT /emulator/faults`.
//!
//! Differences from kintone that matter to a user of the emulator: `like` matches
//! substrings, not words; only the endpoints below exist; messages are Japanese
//! only (no `Accept-Language`); the code of the 429 and injected-500 bodies is
//! the emulator's own (`EMU_TOO_MANY_REQUESTS`, `EMU_FAULT`).
//!
//! | endpoint | |
//! | --- | --- |
//! | `GET /k/v1/record.json?app&id` | one record |
//! | `GET /k/v1/records.json?app&query&fields[i]&totalCount` | a query |
//! | `POST /k/v1/record.json` | add |
//! | `PUT /k/v1/record.json` | update by id (revision checked) |
//! | `PUT /k/v1/record/status.json` | run a process-management action |
//! | `GET /k/v1/app/form/fields.json?app` | field definitions |
//! | `GET`/`PUT /emulator/faults` | faults to inject (not part of kintone) |

pub mod bulk;
mod http;
pub mod state;

pub use state::{ApiError, State, CONTRACT_LEDGER_APP, DEMO_CONTRACT_TOKEN, DEMO_INQUIRY_TOKEN, DEMO_TOKEN};

use serde_json::{Map, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The password of the seeded user `demo` (password authentication).
pub const DEMO_PASSWORD: &str = "demo-password";
/// The file the state lives in, inside the data directory.
pub const STATE_FILE: &str = "kintone.json";

pub use crate::faults::Faults;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot use the emulator's data directory {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("the emulator's state file {path} is damaged: {reason} (move it away to start from the sample data)")]
    Damaged { path: String, reason: String },
}

struct Inner {
    state: Mutex<State>,
    file: Option<PathBuf>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
}

/// The emulator. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

#[allow(clippy::disallowed_methods)]
fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

impl Emulator {
    /// Seeded, kept in memory only.
    pub fn in_memory() -> Emulator {
        Self::with_state(State::seed(now()), None)
    }

    /// Open (or create, seeded) the state in `dir`.
    pub fn open(dir: &Path) -> Result<Emulator, EmulatorError> {
        let io = |e: std::io::Error| EmulatorError::Io { path: dir.display().to_string(), reason: e.to_string() };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = dir.join(STATE_FILE);
        let state = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<State>(&bytes)
                .map_err(|e| EmulatorError::Damaged { path: file.display().to_string(), reason: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::seed(now()),
            Err(e) => return Err(io(e)),
        };
        let emu = Self::with_state(state, Some(file));
        let st = emu.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        emu.save(&st).map_err(io)?;
        drop(st);
        Ok(emu)
    }

    fn with_state(state: State, file: Option<PathBuf>) -> Emulator {
        Emulator {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                file,
                faults: Mutex::new(Faults::default()),
                requests: AtomicU64::new(0),
            }),
        }
    }

    /// Write the state: a temporary file, fsynced, renamed over the old one.
    fn save(&self, state: &State) -> std::io::Result<()> {
        let Some(file) = &self.inner.file else { return Ok(()) };
        let tmp = file.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, file)?;
        if let Some(dir) = file.parent() {
            // The rename itself must reach the disk too.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Read the state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.inner.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Change the state and persist it. A change that cannot be saved is undone and
    /// answered as a server error.
    pub fn write<T>(&self, f: impl FnOnce(&mut State) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        // Only a state that is saved can fail to save: an in-memory one is not copied.
        let before = self.inner.file.is_some().then(|| st.clone());
        let out = f(&mut st)?;
        if let (Err(e), Some(before)) = (self.save(&st), before) {
            *st = before;
            tracing::error!(error = %e, "kintone emulator cannot save its state");
            return Err(ApiError::new(500, "EMU_STORAGE", format!("the emulator could not save its state: {e}")));
        }
        Ok(out)
    }

    /// A person editing a record in kintone's screen (user `demo`): plain values
    /// per field code. Returns the new revision.
    pub fn edit(&self, app: u64, id: u64, values: &[(&str, Value)]) -> Result<u64, ApiError> {
        let mut record = Map::new();
        for (code, v) in values {
            record.insert(code.to_string(), serde_json::json!({ "value": v }));
        }
        self.write(|st| st.update_record(app, id, &record, None, "demo", now()))
    }

    /// One record as the API returns it.
    pub fn record(&self, app: u64, id: u64) -> Result<Map<String, Value>, ApiError> {
        self.read(|st| st.get_record(app, id))
    }

    /// Put `app` in guest space `space` (or take it out): it then answers only
    /// under `/k/guest/{space}/v1/`, as in kintone.
    pub fn set_guest_space(&self, app: u64, space: Option<u64>) -> Result<(), ApiError> {
        self.write(|st| {
            let a = st.apps.get_mut(&app).ok_or_else(|| ApiError::new(404, "GAIA_AP01", "app not found"))?;
            a.guest_space = space;
            Ok(())
        })
    }

    /// Turn on the domain's Basic authentication (or off with `None`).
    pub fn set_basic_auth(&self, login_password: Option<(&str, &str)>) -> Result<(), ApiError> {
        self.write(|st| {
            st.basic_auth = login_password.map(|(l, p)| (l.to_string(), p.to_string()));
            Ok(())
        })
    }

    pub fn set_faults(&self, f: Faults) {
        *self.inner.faults.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }

    pub fn faults(&self) -> Faults {
        self.inner.faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests answered on `/k/` so far (faults included).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
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

    /// Take the next fault to inject, if any: (status, Retry-After seconds).
    fn take_fault(&self) -> (u64, Option<(u16, Option<u64>)>) {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let mut f = self.inner.faults.lock().unwrap_or_else(|p| p.into_inner());
        let hit = f.take();
        (f.latency_ms, hit)
    }

    /// A request id in kintone's style (20 letters), random for every request (so
    /// ids do not repeat after a restart).
    fn request_id(&self) -> String {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut b = [0u8; 20];
        getrandom::fill(&mut b).expect("the OS has randomness");
        b.iter().map(|x| alphabet[*x as usize % alphabet.len()] as char).collect()
    }
}
