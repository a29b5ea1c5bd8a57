//! A local Rakuraku Seisan CSV import API for development, demos and tests.
//!
//! `nagare emulate rakuraku --data DIR` serves it; tests mount [`Emulator::router`]
//! on `127.0.0.1:0`. One account ([`DEMO_ACCOUNT`], token [`DEMO_TOKEN`]); the
//! imported masters are kept in `DIR/rakuraku.json`, rewritten atomically after
//! every import.
//!
//! What it does as the service does (seed 003, saas-apis.md §3): the endpoint
//! `POST /{account}/api/v1/csvimport`, the `X-RS-apitoken` header, the multipart
//! parts `json` and `uploadFile`, Shift_JIS decoding, columns found from row 1,
//! `duplicateKey` (0 skip rows whose key exists, 1 update them; approver settings
//! only 1), `createCategory`, `sendPasswordEmail`, the limits (5 MB, 50,000 rows,
//! 20 requests a minute per account) and the maintenance answer (HTTP 200, body
//! `Status: 503 Maintenance mode`).
//!
//! **Invented, not verified against the service** (its documentation of these
//! was not readable): the column names and required columns of each master
//! ([`MASTER_DEFS`]), the JSON of answers and errors (`{status, code, message,
//! errors: [{row, column, message}]}`), the error codes (`E_*`), that an import
//! is synchronous and all-or-nothing (one bad row imports nothing), that a
//! `sendPasswordEmail`/`createCategory` given for a master it does not apply to
//! is ignored, and the 429 for the rate limit. The `Idempotency-Key` header (a
//! repeated key answers the first result) is the emulator's own.
//!
//! | endpoint | |
//! | --- | --- |
//! | `POST /{account}/api/v1/csvimport` | the import |
//! | `GET /emulator/masters` | counts per master |
//! | `GET /emulator/masters/{masterId}` | the rows of one master (JSON), categories, password mails |
//! | `GET`/`PUT /emulator/settings` | maintenance mode and limits (not part of the service) |

mod http;

use super::limiter::{Clock, SystemClock};
use super::params::{master_name, takes_category};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DEMO_ACCOUNT: &str = "demo";
pub const DEMO_TOKEN: &str = "rakuraku-demo-token";
/// The file the state lives in, inside the data directory.
pub const STATE_FILE: &str = "rakuraku.json";
/// Most row errors listed in one answer.
pub const MAX_ERRORS: usize = 100;
/// Idempotency keys remembered.
const MAX_KEYS: usize = 1000;

/// Columns of one master: (header, required). The first is the key.
pub struct MasterDef {
    pub id: u64,
    pub columns: &'static [(&'static str, bool)],
    pub seed_categories: &'static [&'static str],
}

const GENERIC: &[(&str, bool)] = &[("コード", true), ("名称", true), ("カテゴリ", false), ("備考", false)];
const GENERIC_CATS: &[&str] = &["一般"];

/// The masters (column names invented; see the module doc).
pub const MASTER_DEFS: &[MasterDef] = &[
    MasterDef {
        id: 0,
        columns: &[
            ("社員コード", true),
            ("氏名", true),
            ("フリガナ", false),
            ("メールアドレス", false),
            ("部門コード", false),
            ("役職コード", false),
            ("入社日", false),
            ("退職日", false),
        ],
        seed_categories: &[],
    },
    MasterDef {
        id: 1,
        columns: &[("部門コード", true), ("部門名", true), ("上位部門コード", false)],
        seed_categories: &[],
    },
    MasterDef { id: 2, columns: &[("役職コード", true), ("役職名", true)], seed_categories: &[] },
    MasterDef {
        id: 3,
        columns: &[
            ("支払先コード", true),
            ("支払先名", true),
            ("カテゴリ", false),
            ("銀行コード", false),
            ("支店コード", false),
            ("口座番号", false),
        ],
        seed_categories: &["取引先", "個人"],
    },
    MasterDef {
        id: 4,
        columns: &[
            ("プロジェクトコード", true),
            ("プロジェクト名", true),
            ("カテゴリ", false),
            ("開始日", false),
            ("終了日", false),
        ],
        seed_categories: &["社内", "受託"],
    },
    MasterDef {
        id: 18,
        columns: &[("社員コード", true), ("承認者社員コード", true), ("承認順", false)],
        seed_categories: &[],
    },
    MasterDef { id: 81, columns: GENERIC, seed_categories: GENERIC_CATS },
    MasterDef { id: 82, columns: GENERIC, seed_categories: GENERIC_CATS },
    MasterDef { id: 83, columns: GENERIC, seed_categories: GENERIC_CATS },
    MasterDef { id: 84, columns: GENERIC, seed_categories: GENERIC_CATS },
    MasterDef { id: 85, columns: GENERIC, seed_categories: GENERIC_CATS },
];

pub fn master_def(id: u64) -> Option<&'static MasterDef> {
    MASTER_DEFS.iter().find(|d| d.id == id)
}

/// Switchable behaviour: maintenance mode and the limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub maintenance: bool,
    pub max_bytes: usize,
    pub max_rows: usize,
    pub per_minute: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            maintenance: false,
            max_bytes: super::MAX_FILE_BYTES,
            max_rows: super::MAX_FILE_ROWS,
            per_minute: super::MAX_REQUESTS_PER_MINUTE,
        }
    }
}

/// The rows of one master, in the order they were first imported.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Master {
    pub rows: Vec<IndexMap<String, String>>,
    pub categories: BTreeSet<String>,
    /// Addresses a password-setting mail was "sent" to (employees).
    #[serde(default)]
    pub password_mails: Vec<String>,
}

/// Everything the emulator keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub masters: BTreeMap<u64, Master>,
    pub imports: u64,
    /// Answers by idempotency key, oldest first.
    #[serde(default)]
    pub answered: VecDeque<(String, Value)>,
}

/// A refusal: HTTP status, code, message, row errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub errors: Vec<Value>,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { status, code, message: message.into(), errors: Vec::new() }
    }

    pub fn body(&self) -> Value {
        let mut b = json!({ "status": "error", "code": self.code, "message": self.message });
        if !self.errors.is_empty() {
            b["errors"] = Value::Array(self.errors.clone());
        }
        b
    }
}

/// The parameters of one import, as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub master_id: u64,
    pub duplicate_key: u64,
    pub send_password_email: u64,
    pub create_category: u64,
}

impl Params {
    /// Read the `json` part: the service's rules on values.
    pub fn parse(text: &str) -> Result<Params, Refusal> {
        let bad = |m: String| Refusal::new(400, "E_PARAM", m);
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("json パートが JSON ではありません: {e}")))?;
        let num = |k: &str| -> Result<Option<u64>, Refusal> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| bad(format!("{k} の値が不正です。"))),
                Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad(format!("{k} の値が不正です。"))),
                Some(_) => Err(bad(format!("{k} の値が不正です。"))),
            }
        };
        let master_id = num("masterId")?.ok_or_else(|| bad("masterId は必須です。".into()))?;
        if master_name(master_id).is_none() {
            return Err(bad(format!("masterId {master_id} は取込対象のマスタではありません。")));
        }
        let zero_one = |k: &str, default: u64| -> Result<u64, Refusal> {
            match num(k)? {
                None => Ok(default),
                Some(n) if n <= 1 => Ok(n),
                Some(_) => Err(bad(format!("{k} には 0 または 1 を指定してください。"))),
            }
        };
        let duplicate_key = zero_one("duplicateKey", if master_id == 18 { 1 } else { 0 })?;
        if master_id == 18 && duplicate_key == 0 {
            return Err(bad("承認者の設定の取込では duplicateKey に 1 (データを更新する) のみ指定できます。".into()));
        }
        Ok(Params {
            master_id,
            duplicate_key,
            // Only effective for the masters they apply to (seed 003); ignored elsewhere.
            send_password_email: if master_id == 0 { zero_one("sendPasswordEmail", 0)? } else { 0 },
            create_category: if takes_category(master_id) { zero_one("createCategory", 0)? } else { 0 },
        })
    }
}

impl State {
    fn fresh() -> State {
        let mut masters = BTreeMap::new();
        for d in MASTER_DEFS {
            masters.insert(
                d.id,
                Master { categories: d.seed_categories.iter().map(|c| c.to_string()).collect(), ..Default::default() },
            );
        }
        State { masters, imports: 0, answered: VecDeque::new() }
    }

    /// Import a decoded CSV (all or nothing). The answer is the result JSON.
    pub fn import(&mut self, p: Params, csv_text: &str, max_rows: usize) -> Result<Value, Refusal> {
        let def = master_def(p.master_id).expect("params are checked");
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(csv_text.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| Refusal::new(400, "E_CSV", format!("1行目 (ヘッダ) を読めません: {e}")))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if headers.iter().all(String::is_empty) {
            return Err(Refusal::new(400, "E_CSV", "1行目にヘッダ (項目名) がありません。"));
        }
        let mut col_errors = Vec::new();
        for h in &headers {
            if !def.columns.iter().any(|(c, _)| c == h) {
                col_errors
                    .push(json!({"row": 1, "column": h, "message": format!("項目「{h}」はこのマスタにありません。")}));
            }
        }
        for (c, required) in def.columns {
            if *required && !headers.iter().any(|h| h == c) {
                col_errors.push(json!({"row": 1, "column": c, "message": format!("必須項目「{c}」がありません。")}));
            }
        }
        if !col_errors.is_empty() {
            let mut r = Refusal::new(400, "E_COLUMN", "ヘッダの項目が正しくありません。");
            r.errors = col_errors;
            return Err(r);
        }
        let key_col = def.columns[0].0;
        let mut rows: Vec<(usize, IndexMap<String, String>)> = Vec::new();
        let mut errors = Vec::new();
        let master = self.masters.entry(p.master_id).or_default();
        let mut new_cats = BTreeSet::new();
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            if rows.len() >= max_rows {
                return Err(Refusal::new(400, "E_ROW_LIMIT", format!("1ファイルの行数は{max_rows}行までです。")));
            }
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    errors.push(json!({"row": line, "message": format!("CSV の形式が正しくありません: {e}")}));
                    continue;
                }
            };
            let row: IndexMap<String, String> =
                headers.iter().cloned().zip(rec.iter().map(|v| v.to_string())).collect();
            for (c, required) in def.columns {
                if *required && row.get(*c).is_none_or(|v| v.trim().is_empty()) {
                    errors.push(json!({"row": line, "column": c, "message": format!("「{c}」は必須です。")}));
                }
            }
            if let Some(cat) = row.get("カテゴリ").filter(|c| !c.is_empty()) {
                if !master.categories.contains(cat) && !new_cats.contains(cat) {
                    if p.create_category == 1 {
                        new_cats.insert(cat.clone());
                    } else {
                        errors.push(json!({"row": line, "column": "カテゴリ", "message": format!("カテゴリ「{cat}」は存在しません。")}));
                    }
                }
            }
            rows.push((line, row));
        }
        if !errors.is_empty() {
            let n = errors.len();
            errors.truncate(MAX_ERRORS);
            let mut r = Refusal::new(400, "E_ROW", format!("{n}件のエラーがあるため取り込みませんでした。"));
            r.errors = errors;
            return Err(r);
        }
        let (mut inserted, mut updated, mut skipped) = (0, 0, 0);
        let mut index: std::collections::HashMap<String, usize> =
            master.rows.iter().enumerate().filter_map(|(i, r)| Some((r.get(key_col)?.clone(), i))).collect();
        let mut mails = Vec::new();
        for (_, row) in rows {
            let key = row[key_col].clone();
            match index.get(&key) {
                Some(&at) if p.duplicate_key == 1 => {
                    master.rows[at].extend(row);
                    updated += 1;
                }
                Some(_) => skipped += 1,
                None => {
                    if p.send_password_email == 1 {
                        if let Some(m) = row.get("メールアドレス").filter(|m| !m.is_empty()) {
                            mails.push(m.clone());
                        }
                    }
                    index.insert(key, master.rows.len());
                    master.rows.push(row);
                    inserted += 1;
                }
            }
        }
        let created: Vec<String> = new_cats.iter().cloned().collect();
        master.categories.extend(new_cats);
        master.password_mails.extend(mails.iter().cloned());
        self.imports += 1;
        Ok(json!({
            "status": "success",
            "importId": self.imports,
            "masterId": p.master_id,
            "total": inserted + updated + skipped,
            "inserted": inserted,
            "updated": updated,
            "skipped": skipped,
            "categoriesCreated": created,
            "passwordMails": mails.len(),
        }))
    }

    fn remember(&mut self, key: String, answer: Value) {
        if self.answered.len() >= MAX_KEYS {
            self.answered.pop_front();
        }
        self.answered.push_back((key, answer));
    }

    fn answered(&self, key: &str) -> Option<Value> {
        self.answered.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot use the emulator's data directory {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("the emulator's state file {path} is damaged: {reason} (move it away to start empty)")]
    Damaged { path: String, reason: String },
}

struct Inner {
    state: Mutex<State>,
    file: Option<PathBuf>,
    settings: Mutex<Settings>,
    clock: Arc<dyn Clock>,
    /// Times of the requests accepted in the last minute.
    recent: Mutex<VecDeque<Duration>>,
    /// Requests answered (all kinds).
    requests: std::sync::atomic::AtomicU64,
}

/// The emulator. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

impl Emulator {
    /// An emulator whose state lives only in memory (tests).
    pub fn in_memory() -> Emulator {
        Self::with(State::fresh(), None, SystemClock::shared())
    }

    /// In memory, with the rate limit counted on `clock` (tests on virtual time).
    pub fn in_memory_with_clock(clock: Arc<dyn Clock>) -> Emulator {
        Self::with(State::fresh(), None, clock)
    }

    /// Open (or start) the state in `dir`.
    pub fn open(dir: &Path) -> Result<Emulator, EmulatorError> {
        let io = |e: std::io::Error| EmulatorError::Io { path: dir.display().to_string(), reason: e.to_string() };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = dir.join(STATE_FILE);
        let state = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| EmulatorError::Damaged { path: file.display().to_string(), reason: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::fresh(),
            Err(e) => return Err(io(e)),
        };
        Ok(Self::with(state, Some(file), SystemClock::shared()))
    }

    fn with(state: State, file: Option<PathBuf>, clock: Arc<dyn Clock>) -> Emulator {
        Emulator {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                file,
                settings: Mutex::new(Settings::default()),
                clock,
                recent: Mutex::new(VecDeque::new()),
                requests: Default::default(),
            }),
        }
    }

    pub fn settings(&self) -> Settings {
        self.inner.settings.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_settings(&self, s: Settings) {
        *self.inner.settings.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Switch maintenance mode on or off.
    pub fn set_maintenance(&self, on: bool) {
        self.inner.settings.lock().unwrap_or_else(|p| p.into_inner()).maintenance = on;
    }

    /// Requests to the import endpoint so far (refused ones too).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Read the state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.inner.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The rows of a master as the read endpoint lists them.
    pub fn rows(&self, master_id: u64) -> Vec<IndexMap<String, String>> {
        self.read(|s| s.masters.get(&master_id).map(|m| m.rows.clone()).unwrap_or_default())
    }

    /// Take a rate-limit slot: `Err(seconds to wait)` when the minute is full.
    fn admit(&self) -> Result<(), u64> {
        let per_minute = self.settings().per_minute.max(1);
        let now = self.inner.clock.now();
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        while recent.front().is_some_and(|t| *t + Duration::from_secs(60) <= now) {
            recent.pop_front();
        }
        if recent.len() >= per_minute {
            let free_at = recent[0] + Duration::from_secs(60);
            return Err((free_at - now).as_secs().max(1));
        }
        recent.push_back(now);
        Ok(())
    }

    /// Run one import under the state lock, with its idempotency key; persists.
    fn import(&self, key: Option<&str>, p: Params, text: &str, max_rows: usize) -> Result<Value, Refusal> {
        let mut st = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prev) = key.and_then(|k| st.answered(k)) {
            let mut prev = prev;
            prev["replayed"] = json!(true);
            return Ok(prev);
        }
        // Only this master and the bookkeeping change: keep them to undo a failed save.
        let before = (st.masters.get(&p.master_id).cloned(), st.imports, st.answered.clone());
        let answer = st.import(p, text, max_rows)?;
        if let Some(k) = key {
            st.remember(k.to_string(), answer.clone());
        }
        if let Err(e) = self.save(&st) {
            let (master, imports, answered) = before;
            if let Some(m) = master {
                st.masters.insert(p.master_id, m);
            }
            (st.imports, st.answered) = (imports, answered);
            tracing::error!(error = %e, "rakuraku emulator cannot save its state");
            return Err(Refusal::new(500, "E_STORAGE", format!("the emulator could not save its state: {e}")));
        }
        Ok(answer)
    }

    /// Write the state: a temporary file, fsynced, renamed over the old one.
    fn save(&self, state: &State) -> std::io::Result<()> {
        let Some(file) = &self.inner.file else { return Ok(()) };
        let tmp = file.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            serde_json::to_writer(&mut f, state).map_err(std::io::Error::other)?;
            f.flush()?;
            f.get_ref().sync_all()?;
        }
        std::fs::rename(&tmp, file)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(master_id: u64, duplicate_key: u64) -> Params {
        Params { master_id, duplicate_key, send_password_email: 0, create_category: 0 }
    }

    #[test]
    fn params_follow_the_seed() {
        assert_eq!(Params::parse(r#"{"masterId":18}"#).unwrap().duplicate_key, 1);
        assert_eq!(Params::parse(r#"{"masterId":18,"duplicateKey":0}"#).unwrap_err().code, "E_PARAM");
        assert_eq!(Params::parse(r#"{"masterId":7}"#).unwrap_err().code, "E_PARAM");
        assert_eq!(Params::parse(r#"{"masterId":"0","duplicateKey":"1"}"#).unwrap().duplicate_key, 1);
        assert_eq!(Params::parse(r#"{"masterId":1,"sendPasswordEmail":1}"#).unwrap().send_password_email, 0);
    }

    #[test]
    fn skip_or_update_by_key() {
        let mut st = State::fresh();
        st.import(p(1, 0), "部門コード,部門名\r\nD1,総務\r\nD2,経理\r\n", 10).unwrap();
        let r = st.import(p(1, 0), "部門コード,部門名\r\nD1,総務部\r\nD3,営業\r\n", 10).unwrap();
        assert_eq!((r["inserted"].as_u64(), r["skipped"].as_u64()), (Some(1), Some(1)));
        assert_eq!(st.masters[&1].rows[0]["部門名"], "総務");
        let r = st.import(p(1, 1), "部門コード,部門名\r\nD1,総務部\r\n", 10).unwrap();
        assert_eq!(r["updated"], 1);
        assert_eq!(st.masters[&1].rows[0]["部門名"], "総務部");
    }

    #[test]
    fn columns_rows_and_categories_are_checked() {
        let mut st = State::fresh();
        let e = st.import(p(0, 0), "社員コード,名前\r\nE1,佐藤\r\n", 10).unwrap_err();
        assert_eq!(e.code, "E_COLUMN");
        assert_eq!(e.errors.len(), 2, "unknown 名前 and missing 氏名: {:?}", e.errors);
        let e = st.import(p(0, 0), "社員コード,氏名\r\nE1,\r\n", 10).unwrap_err();
        assert_eq!((e.code, e.errors[0]["row"].as_u64()), ("E_ROW", Some(2)));
        let e = st.import(p(3, 0), "支払先コード,支払先名,カテゴリ\r\nP1,A社,海外\r\n", 10).unwrap_err();
        assert_eq!(e.errors[0]["column"], "カテゴリ");
        let mut pc = p(3, 0);
        pc.create_category = 1;
        let r = st.import(pc, "支払先コード,支払先名,カテゴリ\r\nP1,A社,海外\r\n", 10).unwrap();
        assert_eq!(r["categoriesCreated"], json!(["海外"]));
        let e = st.import(p(2, 0), "役職コード,役職名\r\nA,a\r\nB,b\r\n", 1).unwrap_err();
        assert_eq!(e.code, "E_ROW_LIMIT");
        assert!(st.masters[&2].rows.is_empty(), "all or nothing");
    }
}
