//! What the live store keeps of an archived instance, and the archiver's intent
//! record (see [`crate::archive`]).

use crate::runtime::{Instance, InstanceId, Status};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An instance moved out of the live store: enough to find it again (by id and by
/// business key) and to say where its history went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedInstance {
    /// Its id (never handed out again).
    pub id: InstanceId,
    /// Its process id.
    pub process: String,
    /// The process version it ran on.
    pub version: u32,
    /// How it ended (completed or cancelled).
    pub status: Status,
    /// Its business key, still taken: a start with it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_key: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Who started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Who started or acted on it (who may still find it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
    /// The archive file holding its record (name within the archive directory).
    pub file: String,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
}

impl ArchivedInstance {
    /// The summary of finished instance `i`, archived into `file` at `now`.
    pub fn of(i: &Instance, file: &str, now: DateTime<Utc>) -> Self {
        ArchivedInstance {
            id: i.id,
            process: i.process.clone(),
            version: i.version,
            status: i.status,
            business_key: i.business_key.clone(),
            started_at: i.started_at,
            started_by: i.started_by.clone(),
            ended_at: i.ended_at,
            participants: i.participants.clone(),
            file: file.to_string(),
            archived_at: now,
        }
    }
}

/// Written (durably) before the archiver appends a chunk to a file, removed in
/// the commit that deletes the chunk's instances: found at the next run, it means
/// a crash came between the two, and the file is cut back to `offset` (the chunk's
/// lines, whole or torn, go; the instances are still live and are archived again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveIntent {
    /// Absolute path of the file being appended to.
    pub path: String,
    /// Its length before the chunk.
    pub offset: u64,
    /// The chunk's instances.
    pub ids: Vec<InstanceId>,
}
