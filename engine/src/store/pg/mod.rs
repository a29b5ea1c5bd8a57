//! The PostgreSQL store: the same [`Store`] as the sled one, on tables.
//!
//! One [`Batch`] is one transaction. Every instance write checks the revision it
//! was read at (`history_len` before the event's lines), and history lines have
//! the key (instance, seq): a concurrent event on the same instance from another
//! process fails with [`StoreError::Conflict`] instead of overwriting. Consuming a
//! buffered message deletes exactly one row or fails, and a business key is a
//! unique key: both hold across processes, not only under this process's locks.
//! Instance and message ids come from sequences. Blobs stay on the filesystem.
//!
//! Connection: `tokio-postgres` without TLS, for a Unix socket or loopback (see
//! `pool`). Queries filter coarsely in SQL (indexed columns, times to the
//! microsecond) and exactly in Rust with the same predicates as the sled store,
//! reading in chunks until a page is full.

mod archive;
pub mod migrate;
mod migrations;
pub mod options;
mod pool;
pub mod tls;

pub use migrations::SCHEMA_VERSION;

use super::*;
use crate::runtime::TaskStatus;
use pool::{Pool, Target};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// Connections per store unless configured: enough for the API's blocking pool
/// and the executor to overlap, few enough for many nodes on one database.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Most connections a store opens (a configuration above is refused).
pub const MAX_POOL_SIZE: usize = 256;
/// How long a job's start leases it to this process beyond the call's own timeout
/// (see [`Store::count_start`]): another process runs it only once this ran out.
pub const JOB_LEASE: std::time::Duration = std::time::Duration::from_secs(60);
/// Rows read per query while filling a page.
const CHUNK: i64 = 256;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// A libpq connection string or URL: `postgres://user@localhost/nagare`,
    /// `host=/run/postgresql dbname=nagare`.
    pub url: String,
    /// Tables in this schema (created if missing) instead of the search path's
    /// first; letters, digits and `_` only. Tests use one schema each.
    pub schema: Option<String>,
    /// Connections kept open.
    pub pool_size: usize,
    /// `SET statement_timeout` on every connection (none: PostgreSQL's setting).
    pub statement_timeout: Option<std::time::Duration>,
    /// How long a job's start leases it beyond the call's timeout ([`JOB_LEASE`]).
    pub job_lease: std::time::Duration,
    /// TLS (`sslmode=require`/`verify-full`), see [`tls`].
    pub tls: options::TlsMode,
    /// `sslrootcert`: trust these certificates (PEM) instead of the Mozilla roots.
    pub root_cert: Option<std::path::PathBuf>,
}

impl PgOptions {
    /// Options for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            statement_timeout: None,
            job_lease: JOB_LEASE,
            tls: options::TlsMode::Off,
            root_cert: None,
        }
    }

    /// The options of a `--store` string: libpq's connection string with nagare's
    /// own `pool_size`, `statement_timeout` and `job_lease` in it (see [`options`]).
    pub fn from_store(store: &str) -> Result<Self, StoreError> {
        let p = options::StoreParams::parse(store)?;
        let mut o = PgOptions::new(p.url);
        o.pool_size = p.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        o.statement_timeout = p.statement_timeout;
        o.job_lease = p.job_lease.unwrap_or(JOB_LEASE);
        o.tls = p.tls;
        o.root_cert = p.root_cert;
        Ok(o)
    }

    /// Keep the tables in `schema`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

/// The store in PostgreSQL: several nagare nodes may share it.
pub struct PgStore {
    pool: Pool,
    incarnation: String,
    job_lease: std::time::Duration,
}

fn enc<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records always serialize")
}

fn dec<T: DeserializeOwned>(what: impl std::fmt::Display, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { key: what.to_string(), reason: e.to_string() })
}

fn id64(id: InstanceId) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// The inbox order of a due date, as a bigint (undated last, like the sled keys).
fn due_col(due: Option<DateTime<Utc>>) -> i64 {
    i64::try_from(keys::due_ms(due)).unwrap_or(i64::MAX)
}

/// The due-queue order of a job, as the sled key has it (clamped at the epoch).
fn job_due_col(due: DateTime<Utc>) -> i64 {
    due.timestamp_millis().max(0)
}

/// A text key as stored: PostgreSQL text cannot hold NUL, which a user may put in
/// a business or message key, so NUL is written as U+FFFF `0` and U+FFFF itself
/// doubled. Every other string is stored as it is, in the same byte order.
fn key(s: &str) -> String {
    if !s.contains(['\0', '\u{FFFF}']) {
        return s.to_string();
    }
    s.replace('\u{FFFF}', "\u{FFFF}\u{FFFF}").replace('\0', "\u{FFFF}0")
}

/// The string [`key`] stored.
fn unkey(s: String) -> String {
    if !s.contains('\u{FFFF}') {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{FFFF}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push(c),
        }
    }
    out
}

fn task_status(s: TaskStatus) -> &'static str {
    s.as_str()
}

fn check_schema_name(s: &str) -> Result<(), StoreError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Io(format!(
            "PostgreSQL schema name `{s}`: use 1 to 63 letters, digits and `_`, not starting with a digit"
        )))
    }
}

impl PgStore {
    /// Connect, bring the schema up to date (or refuse a newer one), and open.
    pub fn open(opts: &PgOptions) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config =
            opts.url.parse().map_err(|e| StoreError::Io(format!("PostgreSQL connection string: {e}")))?;
        config.application_name("nagare");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        if let Some(s) = &opts.schema {
            check_schema_name(s)?;
        }
        if opts.pool_size == 0 || opts.pool_size > MAX_POOL_SIZE {
            return Err(StoreError::Io(format!(
                "PostgreSQL pool size {}: use 1 to {MAX_POOL_SIZE} connections",
                opts.pool_size
            )));
        }
        let tls = match opts.tls {
            options::TlsMode::Off => None,
            options::TlsMode::Verify => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(tls::client_config(opts.root_cert.as_deref())?)
            }
        };
        let target = Target { config, schema: opts.schema.clone(), statement_timeout: opts.statement_timeout, tls };
        let pool = Pool::new(target, opts.pool_size)?;
        let schema = opts.schema.clone();
        pool.run(move |c| Box::pin(async move { migrations::migrate(c, schema.as_deref()).await }))?;
        Ok(PgStore { pool, incarnation: super::kv::random_incarnation(), job_lease: opts.job_lease })
    }

    /// Drop schema `schema` and everything in it (tests clean up after themselves).
    pub fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        check_schema_name(schema)?;
        // The store string may carry nagare's own options; the driver refuses them.
        let params = options::StoreParams::parse(url)?;
        let mut config: tokio_postgres::Config =
            params.url.parse().map_err(|e| StoreError::Io(format!("PostgreSQL connection string: {e}")))?;
        let tls = match params.tls {
            options::TlsMode::Off => None,
            options::TlsMode::Verify => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(tls::client_config(params.root_cert.as_deref())?)
            }
        };
        let pool = Pool::new(Target { config, schema: None, statement_timeout: None, tls }, 1)?;
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        pool.run(move |c| Box::pin(async move { c.batch(&sql).await }))
    }

    /// Rows of one query with owned parameters, as records.
    fn records<T, P>(&self, sql: &'static str, params: P, what: &'static str) -> Result<Vec<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
        P: Params,
    {
        self.pool.run(move |c| {
            Box::pin(async move {
                let rows = c.query(sql, &params.refs()).await?;
                rows.iter().map(|r| dec(what, r.get::<_, &str>(0))).collect()
            })
        })
    }
}

/// Owned query parameters that can be lent as the driver wants them.
trait Params: Send + 'static {
    fn refs(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)>;
}

impl Params for () {
    fn refs(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        Vec::new()
    }
}

macro_rules! params_tuple {
    ($($t:ident $i:tt),+) => {
        impl<$($t: tokio_postgres::types::ToSql + Sync + Send + 'static),+> Params for ($($t,)+) {
            fn refs(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
                vec![$(&self.$i),+]
            }
        }
    };
}
params_tuple!(A 0);
params_tuple!(A 0, B 1);

/// The last record per key, in first-seen order: a batch may write one record twice
/// (sled keeps the later write; a multi-row upsert may not touch a row twice).
fn last_per_key<'a, T, K: std::hash::Hash + Eq>(items: impl Iterator<Item = &'a T>, key: impl Fn(&T) -> K) -> Vec<&'a T>
where
    T: 'a,
{
    let mut at: HashMap<K, usize> = HashMap::new();
    let mut out: Vec<&T> = Vec::new();
    for it in items {
        match at.get(&key(it)) {
            Some(&i) => out[i] = it,
            None => {
                at.insert(key(it), out.len());
                out.push(it);
            }
        }
    }
    out
}

/// The statements of one batch, with owned parameters (built before the
/// transaction, so a record that fails to encode never leaves one open).
#[derive(Default)]
struct Prepared {
    definitions: Vec<(String, i64, String)>,
    configs: Vec<(String, String)>,
    instances: Vec<InstanceRow>,
    history: (Vec<i64>, Vec<i64>, Vec<String>),
    participants: (Vec<i64>, Vec<String>),
    tasks: TaskRows,
    /// Tasks whose group rows are replaced.
    regroup: (Vec<i64>, Vec<String>),
    groups: (Vec<i64>, Vec<String>, Vec<String>, Vec<i64>),
    jobs_delete: Vec<String>,
    jobs: (Vec<i64>, Vec<String>, Vec<i64>, Vec<String>),
    subs_delete: (Vec<i64>, Vec<i64>, Vec<String>, Vec<String>),
    subs: SubscriptionRows,
    messages_delete: Vec<i64>,
    messages: (Vec<i64>, Vec<String>, Vec<String>, Vec<String>),
}

/// Subscriptions as columns: instance, token, name, key, record.
type SubscriptionRows = (Vec<i64>, Vec<i64>, Vec<String>, Vec<String>, Vec<String>);

struct InstanceRow {
    id: i64,
    process: String,
    status: &'static str,
    history_len: i64,
    started_at: DateTime<Utc>,
    started_by: Option<String>,
    record: String,
    expected: i64,
    business_key: Option<String>,
}

#[derive(Default)]
struct TaskRows {
    instance: Vec<i64>,
    id: Vec<String>,
    status: Vec<&'static str>,
    assignee: Vec<Option<String>>,
    due: Vec<i64>,
    record: Vec<String>,
}

impl Prepared {
    fn of(b: &Batch) -> Prepared {
        let mut p = Prepared::default();
        for d in last_per_key(b.definitions.iter(), |d| (d.id.clone(), d.version)) {
            p.definitions.push((key(&d.id), i64::from(d.version), enc(d)));
        }
        for c in last_per_key(b.configs.iter(), |c| c.process.clone()) {
            p.configs.push((key(&c.process), enc(c)));
        }
        for i in last_per_key(b.instances.iter(), |i| i.id) {
            let lines = b.history.iter().filter(|(id, _)| *id == i.id).count() as i64;
            p.instances.push(InstanceRow {
                id: id64(i.id),
                process: key(&i.process),
                status: i.status.as_str(),
                history_len: i64::from(i.history_len),
                started_at: i.started_at,
                started_by: i.started_by.as_deref().map(key),
                record: enc(i),
                expected: i64::from(i.history_len) - lines,
                business_key: i.business_key.as_deref().map(key),
            });
        }
        for (id, h) in &b.history {
            p.history.0.push(id64(*id));
            p.history.1.push(i64::from(h.seq));
            p.history.2.push(enc(h));
            if let Some(u) = &h.user {
                p.participants.0.push(id64(*id));
                p.participants.1.push(key(u));
            }
        }
        for (old, t) in last_per_key(b.tasks.iter(), |(_, t)| t.id.clone()) {
            let r = &mut p.tasks;
            r.instance.push(id64(t.instance));
            r.id.push(key(&t.id));
            r.status.push(task_status(t.status));
            r.assignee.push(t.assignee.as_deref().map(key));
            r.due.push(due_col(t.due));
            r.record.push(enc(t));
            if old.is_some() || b.tasks.iter().filter(|(_, x)| x.id == t.id).count() > 1 {
                p.regroup.0.push(id64(t.instance));
                p.regroup.1.push(key(&t.id));
            }
            if t.status == TaskStatus::Open {
                for g in &t.groups {
                    p.groups.0.push(id64(t.instance));
                    p.groups.1.push(key(&t.id));
                    p.groups.2.push(key(g));
                    p.groups.3.push(due_col(t.due));
                }
            }
        }
        p.jobs_delete = b.jobs_delete.iter().map(|j| key(&j.id)).collect();
        for (_, j) in last_per_key(b.jobs_put.iter(), |(_, j)| j.id.clone()) {
            p.jobs.0.push(id64(j.instance));
            p.jobs.1.push(key(&j.id));
            p.jobs.2.push(job_due_col(j.due));
            p.jobs.3.push(enc(j));
        }
        for s in &b.subscriptions_delete {
            p.subs_delete.0.push(id64(s.instance));
            p.subs_delete.1.push(i64::from(s.token));
            p.subs_delete.2.push(key(&s.name));
            p.subs_delete.3.push(key(&s.key));
        }
        for s in last_per_key(b.subscriptions_put.iter(), |s| (s.instance, s.token, s.name.clone(), s.key.clone())) {
            p.subs.0.push(id64(s.instance));
            p.subs.1.push(i64::from(s.token));
            p.subs.2.push(key(&s.name));
            p.subs.3.push(key(&s.key));
            p.subs.4.push(enc(s));
        }
        let mut deleted: Vec<i64> = b.messages_delete.iter().map(|m| id64(m.id)).collect();
        deleted.sort_unstable();
        deleted.dedup();
        p.messages_delete = deleted;
        for m in last_per_key(b.messages_put.iter(), |m| m.id) {
            p.messages.0.push(id64(m.id));
            p.messages.1.push(key(&m.name));
            p.messages.2.push(key(&m.key));
            p.messages.3.push(enc(m));
        }
        p
    }

    /// The batch's statements in order, each with what its result must show.
    fn statements(&self) -> Vec<Stmt<'_>> {
        let mut out: Vec<Stmt<'_>> = Vec::new();
        for (id, version, record) in &self.definitions {
            out.push(Stmt::new(
                "INSERT INTO definitions (process, version, record) VALUES ($1, $2, $3::text::json)
                 ON CONFLICT (process, version) DO UPDATE SET record = EXCLUDED.record",
                vec![id, version, record],
                Check::None,
            ));
        }
        for (process, record) in &self.configs {
            out.push(Stmt::new(
                "INSERT INTO process_configs (process, record) VALUES ($1, $2::text::json)
                 ON CONFLICT (process) DO UPDATE SET record = EXCLUDED.record",
                vec![process, record],
                Check::None,
            ));
        }
        for i in &self.instances {
            // The revision check: the row is written only where it is still at the
            // revision this event read (or does not exist yet).
            out.push(Stmt::new(
                "INSERT INTO instances (id, process, status, history_len, started_at, started_by, record)
                 VALUES ($1, $2, $3, $4, $5, $6, $7::text::json)
                 ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, history_len = EXCLUDED.history_len,
                     record = EXCLUDED.record
                 WHERE instances.history_len = $8
                 RETURNING id",
                vec![
                    &i.id,
                    &i.process,
                    &i.status,
                    &i.history_len,
                    &i.started_at,
                    &i.started_by,
                    &i.record,
                    &i.expected,
                ],
                Check::Instance(i.id),
            ));
            // A key is given at the start (the batch that writes the first lines).
            if let (0, Some(key)) = (i.expected, &i.business_key) {
                out.push(Stmt::new(
                    "INSERT INTO business_keys (process, key, instance) VALUES ($1, $2, $3)
                     ON CONFLICT (process, key) DO UPDATE SET instance = business_keys.instance
                     RETURNING instance",
                    vec![&i.process, key, &i.id],
                    Check::BusinessKey(i.id),
                ));
            }
        }
        if !self.history.0.is_empty() {
            let (i, s, r) = &self.history;
            out.push(Stmt::new(
                "INSERT INTO history (instance, seq, record)
                 SELECT i, s, r::json FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(i, s, r)",
                vec![i, s, r],
                Check::None,
            ));
        }
        if !self.participants.0.is_empty() {
            let (i, u) = &self.participants;
            out.push(Stmt::new(
                "INSERT INTO participants (instance, user_name)
                 SELECT * FROM unnest($1::bigint[], $2::text[]) ON CONFLICT DO NOTHING",
                vec![i, u],
                Check::None,
            ));
        }
        if !self.tasks.id.is_empty() {
            let t = &self.tasks;
            out.push(Stmt::new(
                "INSERT INTO tasks (instance, id, status, assignee, due_ms, record)
                 SELECT i, t, s, a, d, r::json
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
                     AS u(i, t, s, a, d, r)
                 ON CONFLICT (instance, id) DO UPDATE SET status = EXCLUDED.status, assignee = EXCLUDED.assignee,
                     due_ms = EXCLUDED.due_ms, record = EXCLUDED.record",
                vec![&t.instance, &t.id, &t.status, &t.assignee, &t.due, &t.record],
                Check::None,
            ));
        }
        if !self.regroup.0.is_empty() {
            let (i, t) = &self.regroup;
            out.push(Stmt::new(
                "DELETE FROM task_groups WHERE (instance, task) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))",
                vec![i, t],
                Check::None,
            ));
        }
        if !self.groups.0.is_empty() {
            let (i, t, g, d) = &self.groups;
            out.push(Stmt::new(
                "INSERT INTO task_groups (instance, task, grp, due_ms)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
                 ON CONFLICT (instance, task, grp) DO UPDATE SET due_ms = EXCLUDED.due_ms",
                vec![i, t, g, d],
                Check::None,
            ));
        }
        if !self.jobs_delete.is_empty() {
            out.push(Stmt::new("DELETE FROM jobs WHERE id = ANY($1::text[])", vec![&self.jobs_delete], Check::None));
        }
        if !self.jobs.0.is_empty() {
            let (i, j, d, r) = &self.jobs;
            // A written job starts its count of starts again (see Store::count_start).
            out.push(Stmt::new(
                "INSERT INTO jobs (instance, id, due_ms, starts, record)
                 SELECT i, j, d, 0, r::json FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[]) AS u(i, j, d, r)
                 ON CONFLICT (instance, id) DO UPDATE SET due_ms = EXCLUDED.due_ms, starts = 0,
                     lease_owner = NULL, lease_until = NULL, record = EXCLUDED.record",
                vec![i, j, d, r],
                Check::None,
            ));
        }
        if !self.subs_delete.0.is_empty() {
            let (i, t, n, k) = &self.subs_delete;
            out.push(Stmt::new(
                "DELETE FROM subscriptions WHERE (instance, token, name, key) IN
                     (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]))",
                vec![i, t, n, k],
                Check::None,
            ));
        }
        if !self.subs.0.is_empty() {
            let (i, t, n, k, r) = &self.subs;
            out.push(Stmt::new(
                "INSERT INTO subscriptions (instance, token, name, key, record)
                 SELECT i, t, n, k, r::json
                 FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[]) AS u(i, t, n, k, r)
                 ON CONFLICT (instance, token, name, key) DO UPDATE SET record = EXCLUDED.record",
                vec![i, t, n, k, r],
                Check::None,
            ));
        }
        if !self.messages_delete.is_empty() {
            // Consuming a buffered message: exactly once, whoever else tries.
            out.push(Stmt::new(
                "DELETE FROM messages WHERE id = ANY($1::bigint[]) RETURNING id",
                vec![&self.messages_delete],
                Check::Rows(self.messages_delete.len()),
            ));
        }
        if !self.messages.0.is_empty() {
            let (i, n, k, r) = &self.messages;
            out.push(Stmt::new(
                "INSERT INTO messages (id, name, key, record)
                 SELECT i, n, k, r::json FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(i, n, k, r)
                 ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
                vec![i, n, k, r],
                Check::None,
            ));
        }
        out
    }
}

/// One statement of a batch.
pub(crate) struct Stmt<'a> {
    sql: &'static str,
    params: Vec<&'a (dyn ToSql + Sync)>,
    check: Check,
}

impl<'a> Stmt<'a> {
    fn new(sql: &'static str, params: Vec<&'a (dyn ToSql + Sync)>, check: Check) -> Self {
        Stmt { sql, params, check }
    }
}

/// What a statement's rows must show for the batch to commit.
#[derive(Clone, Copy)]
enum Check {
    None,
    /// The instance row was written (the revision check passed).
    Instance(i64),
    /// The business key belongs to this instance.
    BusinessKey(i64),
    /// Exactly this many rows were deleted.
    Rows(usize),
}

impl Check {
    fn verify(self, rows: &[Row]) -> Result<(), StoreError> {
        match self {
            Check::None => Ok(()),
            Check::Instance(id) if rows.is_empty() => {
                Err(StoreError::Conflict(format!("instance {id} was changed by another writer since it was read")))
            }
            Check::BusinessKey(id) if rows.first().map(|r| r.get::<_, i64>(0)) != Some(id) => {
                Err(StoreError::Conflict(format!("the business key of instance {id} belongs to another instance")))
            }
            Check::Rows(n) if rows.len() != n => {
                Err(StoreError::Conflict("a buffered message was consumed by another writer".into()))
            }
            _ => Ok(()),
        }
    }
}

/// The cursor of a chunked read of the inbox: (due column, task id).
type TaskAt = (i64, String);

impl PgStore {
    /// One chunk of open tasks after `at` in inbox order, from the index the query
    /// names: (due column, id, record).
    fn task_chunk(&self, q: &TaskQuery, at: &TaskAt) -> Result<Vec<(i64, String, String)>, StoreError> {
        let (due, id) = at.clone();
        let groups = q.groups.as_ref().map(|g| g.iter().map(|g| key(g)).collect::<Vec<_>>());
        let assignee = q.assignee.as_deref().map(key);
        self.pool.run(move |c| {
            Box::pin(async move {
                let rows: Vec<Row> = match (groups, assignee) {
                    (Some(g), _) => {
                        c.query(
                            "SELECT g.due_ms, t.id, t.record::text FROM task_groups g
                             JOIN tasks t ON t.instance = g.instance AND t.id = g.task
                             WHERE g.grp = ANY($1::text[]) AND (g.due_ms, g.task) > ($2, $3) AND t.status = 'open'
                             ORDER BY g.due_ms, g.task LIMIT $4",
                            &[&g, &due, &id, &CHUNK],
                        )
                        .await?
                    }
                    (None, Some(a)) => {
                        c.query(
                            "SELECT due_ms, id, record::text FROM tasks
                             WHERE assignee = $1 AND status = 'open' AND (due_ms, id) > ($2, $3)
                             ORDER BY due_ms, id LIMIT $4",
                            &[&a, &due, &id, &CHUNK],
                        )
                        .await?
                    }
                    (None, None) => {
                        c.query(
                            "SELECT due_ms, id, record::text FROM tasks
                             WHERE status = 'open' AND (due_ms, id) > ($1, $2)
                             ORDER BY due_ms, id LIMIT $3",
                            &[&due, &id, &CHUNK],
                        )
                        .await?
                    }
                };
                Ok(rows.iter().map(|r| (r.get(0), unkey(r.get(1)), r.get(2))).collect())
            })
        })
    }

    /// One chunk of instances with ids above `after`, coarsely filtered in SQL.
    fn instance_chunk(&self, f: &InstanceFilter, after: i64) -> Result<Vec<Instance>, StoreError> {
        let process = f.process.as_deref().map(key);
        let status = f.status.map(|s| s.as_str());
        let started_by = f.started_by.as_deref().map(key);
        let participant = f.participant.as_deref().map(key);
        // Microseconds in the database, nanoseconds in the record: widen by one
        // microsecond and let `InstanceFilter::matches` decide exactly.
        let slack = chrono::Duration::microseconds(1);
        let from = f.started_after.map(|t| t - slack);
        let to = f.started_before.map(|t| t + slack);
        self.pool.run(move |c| {
            Box::pin(async move {
                let rows = match participant {
                    Some(u) => {
                        c.query(
                            "SELECT i.record::text FROM participants p JOIN instances i ON i.id = p.instance
                             WHERE p.user_name = $1 AND p.instance > $2
                               AND ($3::text IS NULL OR i.process = $3) AND ($4::text IS NULL OR i.status = $4)
                               AND ($5::text IS NULL OR i.started_by = $5)
                               AND ($6::timestamptz IS NULL OR i.started_at >= $6)
                               AND ($7::timestamptz IS NULL OR i.started_at <= $7)
                             ORDER BY p.instance LIMIT $8",
                            &[&u, &after, &process, &status, &started_by, &from, &to, &CHUNK],
                        )
                        .await?
                    }
                    None => {
                        c.query(
                            "SELECT record::text FROM instances
                             WHERE id > $1
                               AND ($2::text IS NULL OR process = $2) AND ($3::text IS NULL OR status = $3)
                               AND ($4::text IS NULL OR started_by = $4)
                               AND ($5::timestamptz IS NULL OR started_at >= $5)
                               AND ($6::timestamptz IS NULL OR started_at <= $6)
                             ORDER BY id LIMIT $7",
                            &[&after, &process, &status, &started_by, &from, &to, &CHUNK],
                        )
                        .await?
                    }
                };
                rows.iter().map(|r| dec("instances", r.get::<_, &str>(0))).collect()
            })
        })
    }
}

impl Store for PgStore {
    fn archive(&self, summaries: &[ArchivedInstance]) -> Result<(), StoreError> {
        self.archive_summaries(summaries)
    }

    fn archived(&self, id: InstanceId) -> Result<Option<ArchivedInstance>, StoreError> {
        self.archived_summary(id)
    }

    fn archive_intent(&self) -> Result<Option<ArchiveIntent>, StoreError> {
        self.intent()
    }

    fn set_archive_intent(&self, intent: Option<&ArchiveIntent>) -> Result<(), StoreError> {
        self.write_intent(intent)
    }

    fn compact_history(&self, id: InstanceId, before: u32, summary: HistoryEntry) -> Result<(), StoreError> {
        self.compact(id, before, summary)
    }

    fn commit(&self, b: Batch) -> Result<(), StoreError> {
        if b.is_empty() {
            return Ok(());
        }
        let p = Prepared::of(&b);
        self.pool.run(move |c| {
            Box::pin(async move {
                let stmts = p.statements();
                match c.pipelined(&stmts).await {
                    Ok(()) => c.batch("COMMIT").await,
                    Err(e) => {
                        c.batch("ROLLBACK").await?;
                        Err(e)
                    }
                }
            })
        })
    }

    fn next_instance_id(&self) -> Result<InstanceId, StoreError> {
        self.pool.run(|c| {
            Box::pin(async move {
                let rows = c.query("SELECT nextval('instance_ids')", &[]).await?;
                Ok(rows[0].get::<_, i64>(0) as u64)
            })
        })
    }

    fn definitions(&self) -> Result<Vec<DefinitionRecord>, StoreError> {
        self.records("SELECT record::text FROM definitions ORDER BY process, version", (), "definitions")
    }

    fn configs(&self) -> Result<Vec<ProcessConfig>, StoreError> {
        self.records("SELECT record::text FROM process_configs ORDER BY process", (), "process_configs")
    }

    fn instance(&self, id: InstanceId) -> Result<Option<Instance>, StoreError> {
        let mut v: Vec<Instance> =
            self.records("SELECT record::text FROM instances WHERE id = $1", (id64(id),), "instances")?;
        Ok(v.pop())
    }

    fn instance_by_key(&self, process: &str, bk: &str) -> Result<Option<InstanceId>, StoreError> {
        let (process, bkey) = (key(process), key(bk));
        self.pool.run(move |c| {
            Box::pin(async move {
                let rows = c
                    .query("SELECT instance FROM business_keys WHERE process = $1 AND key = $2", &[&process, &bkey])
                    .await?;
                Ok(rows.first().map(|r| r.get::<_, i64>(0) as u64))
            })
        })
    }

    fn instances(&self, f: &InstanceFilter) -> Result<Vec<Instance>, StoreError> {
        let limit = f.limit.unwrap_or(usize::MAX);
        let mut after = f.after.map_or(0, id64);
        let mut out = Vec::new();
        loop {
            let chunk = self.instance_chunk(f, after)?;
            let full = chunk.len() as i64 == CHUNK;
            for i in chunk {
                after = id64(i.id);
                if f.matches(&i) {
                    out.push(i);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let mut v: Vec<Task> = self.records("SELECT record::text FROM tasks WHERE id = $1", (key(id),), "tasks")?;
        Ok(v.pop())
    }

    fn open_tasks(&self, q: &TaskQuery) -> Result<Vec<Task>, StoreError> {
        let limit = q.limit.unwrap_or(usize::MAX);
        // The same predicate as the sled store, applied exactly to what SQL found.
        let keep = |t: &Task| {
            t.status == TaskStatus::Open
                && q.assignee.as_ref().is_none_or(|a| t.assignee.as_ref() == Some(a))
                && q.lane.as_ref().is_none_or(|l| *l == t.lane)
                && q.process.as_ref().is_none_or(|p| *p == t.process)
                && q.instance.is_none_or(|i| i == t.instance)
                && q.due_before.is_none_or(|d| t.due.is_some_and(|td| td < d))
                && q.overdue.is_none_or(|o| o == t.overdue)
        };
        let mut at: TaskAt = match &q.after {
            Some(c) => (due_col(c.due), key(&c.id)),
            None => (i64::MIN, String::new()),
        };
        let mut out: Vec<Task> = Vec::new();
        loop {
            let chunk = self.task_chunk(q, &at)?;
            let full = chunk.len() as i64 == CHUNK;
            for (due, id, record) in chunk {
                if out.last().is_some_and(|t| t.id == id) {
                    continue; // the same task through a second of the queried groups
                }
                let t: Task = dec(format_args!("tasks/{id}"), &record)?;
                at = (due, id);
                if keep(&t) {
                    out.push(t);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    fn open_task_count(&self) -> Result<u64, StoreError> {
        self.pool.run(|c| {
            Box::pin(async move {
                let rows = c.query("SELECT count(*) FROM tasks WHERE status = 'open'", &[]).await?;
                Ok(rows[0].get::<_, i64>(0) as u64)
            })
        })
    }

    fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let mut v: Vec<Job> = self.records("SELECT record::text FROM jobs WHERE id = $1", (key(id),), "jobs")?;
        Ok(v.pop())
    }

    fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        self.records("SELECT record::text FROM jobs ORDER BY due_ms, id", (), "jobs")
    }

    fn due_after(&self, after: Option<(i64, &str)>, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let (ms, id) = after.map_or((i64::MIN, String::new()), |(ms, id)| (ms, key(id)));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool.run(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT due_ms, id FROM jobs WHERE (due_ms, id) > ($1, $2) ORDER BY due_ms, id LIMIT $3",
                        &[&ms, &id, &limit],
                    )
                    .await?;
                Ok(rows.iter().map(|r| (r.get(0), unkey(r.get(1)))).collect())
            })
        })
    }

    fn subscriptions(&self, name: &str, k: &str) -> Result<Vec<Subscription>, StoreError> {
        self.records(
            "SELECT record::text FROM subscriptions WHERE name = $1 AND key = $2 ORDER BY instance, token",
            (key(name), key(k)),
            "subscriptions",
        )
    }

    fn buffered(&self, name: &str, k: &str) -> Result<Vec<BufferedMessage>, StoreError> {
        self.records(
            "SELECT record::text FROM messages WHERE name = $1 AND key = $2 ORDER BY id",
            (key(name), key(k)),
            "messages",
        )
    }

    fn all_buffered(&self) -> Result<Vec<BufferedMessage>, StoreError> {
        self.records("SELECT record::text FROM messages ORDER BY name, key, id", (), "messages")
    }

    fn next_message_id(&self) -> Result<u64, StoreError> {
        self.pool.run(|c| {
            Box::pin(async move {
                let rows = c.query("SELECT nextval('message_ids')", &[]).await?;
                Ok(rows[0].get::<_, i64>(0) as u64)
            })
        })
    }

    fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>, StoreError> {
        self.records("SELECT record::text FROM history WHERE instance = $1 ORDER BY seq", (id64(id),), "history")
    }

    fn count_start(&self, id: &str) -> Result<Option<(Job, u32)>, StoreError> {
        let (id, owner) = (key(id), self.incarnation.clone());
        let lease = i64::try_from(self.job_lease.as_secs().max(1)).unwrap_or(i64::MAX);
        self.pool.run(move |c| {
            Box::pin(async move {
                // Claim it: free (never started, or written since), or its holder's
                // lease ran out (that process died or lost the database). Not when
                // this store holds it already: a rescan may queue a job this node
                // runs now. The lease covers the call's own timeout too.
                let rows = c
                    .query(
                        "UPDATE jobs SET starts = starts + 1, lease_owner = $2,
                             lease_until = now() + make_interval(secs =>
                                 $3 + coalesce((record->'kind'->>'timeout_ms')::bigint, 0) / 1000)
                         WHERE id = $1 AND (lease_owner IS NULL OR lease_until < now())
                         RETURNING record::text, starts",
                        &[&id, &owner, &lease],
                    )
                    .await?;
                if let Some(r) = rows.first() {
                    let job: Job = dec(format_args!("jobs/{id}"), r.get::<_, &str>(0))?;
                    return Ok(Some((job, r.get::<_, i32>(1).max(0) as u32)));
                }
                let held = c.query("SELECT 1 FROM jobs WHERE id = $1", &[&id]).await?;
                match held.is_empty() {
                    true => Ok(None),
                    false => Err(StoreError::Leased { job: unkey(id) }),
                }
            })
        })
    }

    fn incarnation(&self) -> &str {
        &self.incarnation
    }

    fn shared(&self) -> bool {
        true
    }

    fn lease_to_worker(
        &self,
        id: &str,
        worker: &str,
        attempt: u32,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<bool>, StoreError> {
        let (id, worker, attempt) = (key(id), worker.to_string(), i32::try_from(attempt).unwrap_or(i32::MAX));
        self.pool.run(move |c| {
            Box::pin(async move {
                // One statement: two nodes activating at once cannot both get it.
                let n = c
                    .execute(
                        "UPDATE jobs SET worker = $2, worker_attempt = $3, worker_until = $5
                         WHERE id = $1 AND (worker IS NULL OR worker_attempt IS DISTINCT FROM $3
                                            OR worker_until <= $4)",
                        &[&id, &worker, &attempt, &now, &until],
                    )
                    .await?;
                Ok(Some(n == 1))
            })
        })
    }

    fn worker_lease(&self, id: &str) -> Result<Option<Option<WorkerLease>>, StoreError> {
        let id = key(id);
        self.pool.run(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT worker, worker_attempt, worker_until FROM jobs WHERE id = $1 AND worker IS NOT NULL",
                        &[&id],
                    )
                    .await?;
                Ok(Some(rows.first().map(|r| WorkerLease {
                    worker: r.get(0),
                    attempt: r.get::<_, i32>(1).max(0) as u32,
                    until: r.get(2),
                })))
            })
        })
    }
}

#[cfg(test)]
mod tests;
