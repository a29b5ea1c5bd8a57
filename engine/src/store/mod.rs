//! Persistence: the [`Store`] trait the engine talks to, and its implementations.
//!
//! The engine writes one [`Batch`] per event: the instance, its history lines, task
//! and job records, all or nothing, and durable before `commit` returns. Everything
//! lives in one ordered key space (`keys`) so that one atomic batch covers it and
//! range scans answer the queries (inbox by group sorted by due date, jobs by due
//! time, history by instance). [`KvStore`] maps records onto any ordered key-value
//! backend: [`SledKv`] on disk (the default) and [`MemKv`] in memory. With the
//! `postgres` feature, [`PgStore`] keeps the same records in PostgreSQL tables.

mod archived;
mod keys;
mod kv;
mod mem;
#[cfg(feature = "postgres")]
pub mod pg;
mod sled_kv;

pub use archived::{ArchiveIntent, ArchivedInstance};
/// A due date as the inbox sorts it: ms since the epoch, undated last.
pub use keys::due_ms as keys_due_ms;
pub use kv::{Kv, KvPair, KvStore, Op};
pub use mem::MemKv;
#[cfg(feature = "postgres")]
pub use pg::{PgOptions, PgStore};
pub use sled_kv::{Durability, SledKv};

use crate::runtime::{HistoryEntry, Instance, InstanceId, Job, Status, Task};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the on-disk layout; a store written by a newer version is refused,
/// an older one is upgraded when opened.
///
/// 1: the first layout. 2: the instance indexes by status, by process and by both
/// (`xs/`, `xp/`, `xsp/`), built for a version-1 store when it is opened.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
/// Why the store failed. Non-exhaustive: match with a wildcard arm.
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    /// The disk or database failed: what it said.
    Io(String),
    #[error("the data directory {path} is in use by another nagare process (or not writable): {reason}")]
    /// The data directory is held by another process (or not writable).
    Locked {
        /// The data directory.
        path: String,
        /// What the OS said.
        reason: String,
    },
    #[error("the store has format version {found}, this nagare reads version {supported}; use a matching nagare or a new data directory")]
    /// The store was written by a nagare with another on-disk format.
    UnknownFormat {
        /// The version found on disk.
        found: String,
        /// The version this nagare reads.
        supported: u32,
    },
    #[error("corrupt record at {key}: {reason}")]
    /// A record cannot be read back.
    Corrupt {
        /// Where.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process sharing the database wrote first (the instance moved on, the
    /// message was consumed, the business key was taken): nothing was written.
    #[error("a concurrent change won: {0}")]
    Conflict(String),
    /// Another process sharing the store runs this job now ([`Store::count_start`]):
    /// try again later (when it finished, the job is gone; when it died, its lease
    /// runs out).
    #[error("job {job} is being run by another nagare node (its lease has not run out)")]
    Leased {
        /// The job.
        job: String,
    },
}

/// One deployed version of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionRecord {
    /// The process id.
    pub id: String,
    /// Its version (from 1).
    pub version: u32,
    /// SHA-256 of the source: the same text deploys once.
    pub digest: String,
    /// The file name it was deployed as.
    pub file: String,
    /// The process file's text.
    pub source: String,
    /// When it was deployed.
    pub deployed_at: DateTime<Utc>,
}

/// What administrators changed of a process at run time, for every version of it:
/// setting values, and whether its timer start is paused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessConfig {
    /// The process id.
    pub process: String,
    /// Setting values that differ from the declared defaults.
    #[serde(default)]
    pub settings: crate::expr::Vars,
    /// The timer start fires but starts nothing (the schedule goes on).
    #[serde(default)]
    pub start_paused: bool,
    /// Who changed it last, and when.
    #[serde(default)]
    pub changed_by: Option<String>,
    #[serde(default)]
    /// When it was changed last.
    pub changed_at: Option<DateTime<Utc>>,
}

/// Changes that are committed together. Its fields are internal (a [`Store`]
/// implementation reads them; see [`crate::internals`]): apps never build one.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    #[doc(hidden)]
    pub definitions: Vec<DefinitionRecord>,
    #[doc(hidden)]
    pub configs: Vec<ProcessConfig>,
    #[doc(hidden)]
    pub instances: Vec<Instance>,
    #[doc(hidden)]
    pub history: Vec<(InstanceId, HistoryEntry)>,
    /// New or changed tasks, each with the record it replaces (for the indexes).
    #[doc(hidden)]
    pub tasks: Vec<(Option<Task>, Task)>,
    #[doc(hidden)]
    pub jobs_put: Vec<(Option<Job>, Job)>,
    #[doc(hidden)]
    pub jobs_delete: Vec<Job>,
    #[doc(hidden)]
    pub subscriptions_put: Vec<Subscription>,
    #[doc(hidden)]
    pub subscriptions_delete: Vec<Subscription>,
    #[doc(hidden)]
    pub messages_put: Vec<BufferedMessage>,
    #[doc(hidden)]
    pub messages_delete: Vec<BufferedMessage>,
}

impl Batch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
            && self.configs.is_empty()
            && self.instances.is_empty()
            && self.history.is_empty()
            && self.tasks.is_empty()
            && self.jobs_put.is_empty()
            && self.jobs_delete.is_empty()
            && self.subscriptions_put.is_empty()
            && self.subscriptions_delete.is_empty()
            && self.messages_put.is_empty()
            && self.messages_delete.is_empty()
    }

    /// Add everything in `other` to this batch.
    pub fn extend(&mut self, other: Batch) {
        self.definitions.extend(other.definitions);
        self.configs.extend(other.configs);
        self.instances.extend(other.instances);
        self.history.extend(other.history);
        self.tasks.extend(other.tasks);
        self.jobs_put.extend(other.jobs_put);
        self.jobs_delete.extend(other.jobs_delete);
        self.subscriptions_put.extend(other.subscriptions_put);
        self.subscriptions_delete.extend(other.subscriptions_delete);
        self.messages_put.extend(other.messages_put);
        self.messages_delete.extend(other.messages_delete);
    }
}

/// A token waiting for a message: the index entry correlation looks up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// The message name.
    pub name: String,
    /// The correlation key.
    pub key: String,
    /// The waiting instance.
    pub instance: InstanceId,
    /// The waiting token.
    pub token: u32,
    /// The instance's process.
    pub process: String,
    /// The node that waits.
    pub node: String,
}

/// A message nobody waited for yet, kept until `expires_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BufferedMessage {
    /// Its id.
    pub id: u64,
    /// The message name.
    pub name: String,
    /// The correlation key.
    pub key: String,
    /// What it carries.
    pub payload: serde_json::Value,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// When it is dropped if nobody takes it.
    pub expires_at: DateTime<Utc>,
}

/// Which instances to list, in id order.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Only instances of this process.
    pub process: Option<String>,
    /// Only instances with this status.
    pub status: Option<Status>,
    /// Only instances started by this user.
    pub started_by: Option<String>,
    /// Only instances this user started or acted on (see `Instance::participants`).
    pub participant: Option<String>,
    /// Started at or after this time.
    pub started_after: Option<DateTime<Utc>>,
    /// Started before this time.
    pub started_before: Option<DateTime<Utc>>,
    /// Only ids greater than this (paging).
    pub after: Option<InstanceId>,
    /// At most this many.
    pub limit: Option<usize>,
}

impl InstanceFilter {
    /// Whether `i` passes every filter but paging.
    pub fn matches(&self, i: &Instance) -> bool {
        self.process.as_ref().is_none_or(|p| *p == i.process)
            && self.status.is_none_or(|s| s == i.status)
            && self.started_by.as_ref().is_none_or(|u| i.started_by.as_ref() == Some(u))
            && self.participant.as_ref().is_none_or(|u| i.participants.contains(u))
            && self.started_after.is_none_or(|t| i.started_at >= t)
            && self.started_before.is_none_or(|t| i.started_at < t)
    }
}

/// Where a page of open tasks ends: the due date and id of its last task. The
/// next page starts after it, in the same order the inbox is sorted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCursor {
    /// The task's due date.
    pub due: Option<DateTime<Utc>>,
    /// The task's id.
    pub id: String,
    /// Set in the cursor of a page sorted by priority ([`TaskSort::Priority`]).
    pub priority: Option<u8>,
}

impl TaskCursor {
    /// The cursor just after task `t`.
    pub fn of(t: &Task) -> Self {
        TaskCursor { due: t.due, id: t.id.clone(), priority: None }
    }

    /// Where a page sorted by priority ends.
    pub fn by_priority(t: &Task) -> Self {
        TaskCursor { priority: Some(t.priority), ..Self::of(t) }
    }

    /// The sort key of the inbox: due date in milliseconds (undated last), then id.
    pub fn sort_key(&self) -> (u64, &str) {
        (keys::due_ms(self.due), &self.id)
    }
}

/// Which incidents to list (across instances).
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only incidents of this process.
    pub process: Option<String>,
    /// Only incidents at this node.
    pub node: Option<String>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// Which open tasks to list. Results are sorted by due date (to the millisecond),
/// undated last, then by task id.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Tasks any of these groups may work.
    pub groups: Option<Vec<String>>,
    /// Only tasks held by this user.
    pub assignee: Option<String>,
    /// Only tasks of this lane.
    pub lane: Option<String>,
    /// Only tasks of this process.
    pub process: Option<String>,
    /// Only tasks of this instance.
    pub instance: Option<InstanceId>,
    /// Only tasks due before this time.
    pub due_before: Option<DateTime<Utc>>,
    /// Only tasks after this one in the sort order (paging).
    pub after: Option<TaskCursor>,
    /// Only tasks past their due date (`Some(true)`), or not (`Some(false)`).
    pub overdue: Option<bool>,
    /// At most this many.
    pub limit: Option<usize>,
    /// Only tasks of at least this priority. Filtered by the engine, not the store.
    pub min_priority: Option<u8>,
    /// The order of the results. The store always answers in due order; the
    /// engine re-sorts ([`TaskSort::Priority`]).
    pub sort: TaskSort,
}

/// How a task list is sorted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskSort {
    /// Due date (undated last), then id: the store's index order.
    #[default]
    Due,
    /// Priority (highest first), then due date (undated last), then id.
    Priority,
}

/// What the engine needs from storage.
pub trait Store: Send + Sync {
    /// Apply the batch atomically; when this returns `Ok` the batch is durable.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;
    /// A fresh instance id, never handed out before (also across restarts).
    fn next_instance_id(&self) -> Result<InstanceId, StoreError>;
    /// Every deployed version of every process.
    fn definitions(&self) -> Result<Vec<DefinitionRecord>, StoreError>;
    /// What administrators changed of each process at run time.
    fn configs(&self) -> Result<Vec<ProcessConfig>, StoreError>;
    /// Instance `id`.
    fn instance(&self, id: InstanceId) -> Result<Option<Instance>, StoreError>;
    /// The instance of `process` with business key `key`.
    fn instance_by_key(&self, process: &str, key: &str) -> Result<Option<InstanceId>, StoreError>;
    /// Instances passing `filter`, in id order.
    fn instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>, StoreError>;
    /// Task `id`, open or closed.
    fn task(&self, id: &str) -> Result<Option<Task>, StoreError>;
    /// Open tasks matching `q`, in inbox order.
    fn open_tasks(&self, q: &TaskQuery) -> Result<Vec<Task>, StoreError>;
    /// Pending job `id`.
    fn job(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// Every pending job, earliest due first.
    fn jobs(&self) -> Result<Vec<Job>, StoreError>;
    /// Due-queue entries (due in ms since the epoch, job id) strictly after `after`,
    /// earliest first, at most `limit`: how the engine refills its bounded window.
    fn due_after(&self, after: Option<(i64, &str)>, limit: usize) -> Result<Vec<(i64, String)>, StoreError>;
    /// Tokens waiting for message (`name`, `key`), oldest instance first.
    fn subscriptions(&self, name: &str, key: &str) -> Result<Vec<Subscription>, StoreError>;
    /// Buffered messages (`name`, `key`), oldest first.
    fn buffered(&self, name: &str, key: &str) -> Result<Vec<BufferedMessage>, StoreError>;
    /// Every buffered message.
    fn all_buffered(&self) -> Result<Vec<BufferedMessage>, StoreError>;
    /// A fresh message id, never handed out before (also across restarts).
    fn next_message_id(&self) -> Result<u64, StoreError>;
    /// The history of instance `id`, oldest first.
    fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>, StoreError>;
    /// How many tasks are open (for the metrics gauge, counted once at open).
    fn open_task_count(&self) -> Result<u64, StoreError> {
        Ok(self.open_tasks(&TaskQuery::default())?.len() as u64)
    }
    /// Whether other processes write to this store too (several nodes on one
    /// database): the engine then also looks for jobs it did not schedule itself.
    fn shared(&self) -> bool {
        false
    }
    /// Make everything committed so far durable (for shutdown of a relaxed store).
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Count one more start of job `id` in its record, durably, before the executor
    /// runs it: the job and the starts counted now (this one included), `None` when
    /// no such job is stored. Any other write of the job (a retry, a new due time,
    /// its removal) records an outcome and starts the count again. This is how a job
    /// that stops the whole process every time it runs is noticed after a restart.
    ///
    /// A store shared by several processes also leases the job to this opening of
    /// the store for the run, and answers [`StoreError::Leased`] while a lease
    /// holds it (another's, or this one's own earlier start: the same job never
    /// runs twice at once), until the job is written again or the lease runs out.
    fn count_start(&self, id: &str) -> Result<Option<(Job, u32)>, StoreError>;
    /// A random name of this opening of the store, different every time it is
    /// opened. It qualifies idempotency keys, so no two calls ever share a key: not
    /// across stores, and not when a crash lost an unflushed start and its instance
    /// id is handed out again.
    fn incarnation(&self) -> &str;
    /// A store shared by several processes keeps external workers' leases, so a
    /// worker may talk to any node: lease job `id` at `attempt` to `worker` until
    /// `until` if nobody holds it (no lease, another attempt's, or one that ran out
    /// by `now`). `Ok(None)`: this store keeps no worker leases (the engine's memory
    /// does, as with one process); `Ok(Some(false))`: another worker holds it.
    fn lease_to_worker(
        &self,
        _id: &str,
        _worker: &str,
        _attempt: u32,
        _now: DateTime<Utc>,
        _until: DateTime<Utc>,
    ) -> Result<Option<bool>, StoreError> {
        Ok(None)
    }
    /// Move finished instances out of the live store, in one atomic write: each
    /// one's instance record, tasks (and their index entries), history and
    /// participant entries are deleted and `summaries` kept (the business key stays
    /// taken, pointing at the archived id); the archive intent is cleared.
    fn archive(&self, summaries: &[ArchivedInstance]) -> Result<(), StoreError>;
    /// The summary of an archived instance.
    fn archived(&self, id: InstanceId) -> Result<Option<ArchivedInstance>, StoreError>;
    /// The archiver's pending intent ([`ArchiveIntent`]), if a run was cut short.
    fn archive_intent(&self) -> Result<Option<ArchiveIntent>, StoreError>;
    /// Record (durably) or clear the archiver's intent.
    fn set_archive_intent(&self, intent: Option<&ArchiveIntent>) -> Result<(), StoreError>;
    /// Replace the history lines of instance `id` with sequence numbers below
    /// `before` by `summary` (one line, its `seq` the first one replaced), in one
    /// atomic write: a long-running instance's history stays bounded.
    fn compact_history(&self, id: InstanceId, before: u32, summary: HistoryEntry) -> Result<(), StoreError>;
    /// The worker lease stored for job `id`: `(worker, attempt, until)`; `Ok(None)`
    /// when this store keeps none (see [`Store::lease_to_worker`]).
    fn worker_lease(&self, _id: &str) -> Result<Option<Option<WorkerLease>>, StoreError> {
        Ok(None)
    }
}

/// A job leased to an external worker, as a shared store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLease {
    /// The worker holding it.
    pub worker: String,
    /// The attempt it holds.
    pub attempt: u32,
    /// When the lease runs out.
    pub until: DateTime<Utc>,
}
