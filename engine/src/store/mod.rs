//! Persistence: the [`Store`] trait the engine talks to, and its implementations.
//!
//! The engine writes one [`Batch`] per event: the instance, its history lines, task
//! and job records, all or nothing, and durable before `commit` returns. Everything
//! lives in one ordered key space ([`keys`]) so that one atomic batch covers it and
//! range scans answer the queries (inbox by group sorted by due date, jobs by due
//! time, history by instance). [`KvStore`] maps records onto any ordered key-value
//! backend: [`SledKv`] on disk (the default) and [`MemKv`] in memory.

mod keys;
mod kv;
mod mem;
mod sled_kv;

pub use kv::{Kv, KvStore};
pub use mem::MemKv;
pub use sled_kv::{Durability, SledKv};

use crate::runtime::{HistoryEntry, Instance, InstanceId, Job, Status, Task};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the on-disk layout; a store written by another version is refused.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("the data directory {path} is in use by another nagare process (or not writable): {reason}")]
    Locked { path: String, reason: String },
    #[error("the store has format version {found}, this nagare reads version {supported}; use a matching nagare or a new data directory")]
    UnknownFormat { found: String, supported: u32 },
    #[error("corrupt record at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// One deployed version of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinitionRecord {
    pub id: String,
    pub version: u32,
    pub digest: String,
    pub file: String,
    pub source: String,
    pub deployed_at: DateTime<Utc>,
}

/// Changes that are committed together.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub definitions: Vec<DefinitionRecord>,
    pub instances: Vec<Instance>,
    pub history: Vec<(InstanceId, HistoryEntry)>,
    /// New or changed tasks, each with the record it replaces (for the indexes).
    pub tasks: Vec<(Option<Task>, Task)>,
    pub jobs_put: Vec<(Option<Job>, Job)>,
    pub jobs_delete: Vec<Job>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
            && self.instances.is_empty()
            && self.history.is_empty()
            && self.tasks.is_empty()
            && self.jobs_put.is_empty()
            && self.jobs_delete.is_empty()
    }
}

/// Which instances to list.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub process: Option<String>,
    pub status: Option<Status>,
    /// Only ids greater than this (paging).
    pub after: Option<InstanceId>,
    pub limit: Option<usize>,
}

/// Which open tasks to list. Results are sorted by due date, undated last.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Tasks any of these groups may work.
    pub groups: Option<Vec<String>>,
    pub assignee: Option<String>,
    pub lane: Option<String>,
    pub process: Option<String>,
    pub instance: Option<InstanceId>,
    pub due_before: Option<DateTime<Utc>>,
    pub limit: Option<usize>,
}

/// What the engine needs from storage.
pub trait Store: Send + Sync {
    /// Apply the batch atomically; when this returns `Ok` the batch is durable.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;
    /// A fresh instance id, never handed out before (also across restarts).
    fn next_instance_id(&self) -> Result<InstanceId, StoreError>;
    fn definitions(&self) -> Result<Vec<DefinitionRecord>, StoreError>;
    fn instance(&self, id: InstanceId) -> Result<Option<Instance>, StoreError>;
    fn instance_by_key(&self, process: &str, key: &str) -> Result<Option<InstanceId>, StoreError>;
    fn instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>, StoreError>;
    fn task(&self, id: &str) -> Result<Option<Task>, StoreError>;
    fn open_tasks(&self, q: &TaskQuery) -> Result<Vec<Task>, StoreError>;
    fn job(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// Every pending job, earliest due first.
    fn jobs(&self) -> Result<Vec<Job>, StoreError>;
    fn history(&self, id: InstanceId) -> Result<Vec<HistoryEntry>, StoreError>;
}
