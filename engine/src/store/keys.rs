//! The key layout. Every key starts with a short tag; numbers are big-endian so
//! that byte order is numeric order.

use crate::runtime::InstanceId;
use chrono::{DateTime, Utc};

pub const FORMAT: &[u8] = b"m/format";
pub const DEF: &[u8] = b"d/";
/// `c/<process>`: what administrators changed at run time (settings, paused timer start).
pub const CONFIG: &[u8] = b"c/";
pub const INSTANCE: &[u8] = b"i/";
pub const BUSINESS_KEY: &[u8] = b"k/";
pub const HISTORY: &[u8] = b"h/";
pub const TASK: &[u8] = b"t/";
pub const TASK_BY_GROUP: &[u8] = b"tg/";
pub const TASK_BY_ASSIGNEE: &[u8] = b"ta/";
pub const JOB: &[u8] = b"j/";
pub const JOB_DUE: &[u8] = b"q/";
pub const SUBSCRIPTION: &[u8] = b"s/";
pub const MESSAGE: &[u8] = b"b/";
/// `ip/<user>\0<instance>`: the instances a user started or acted on, so that a
/// user's instance list reads their instances only.
pub const INSTANCE_BY_PARTICIPANT: &[u8] = b"ip/";
/// Present once the participant index covers every instance (stores written before
/// the index get it built once, when opened).
pub const PARTICIPANT_INDEX_READY: &[u8] = b"m/participant-index";
/// `a/<instance>`: the summary of an archived instance.
pub const ARCHIVED: &[u8] = b"a/";
/// The archiver's pending intent.
pub const ARCHIVE_INTENT: &[u8] = b"m/archive-intent";

pub fn archived(id: InstanceId) -> Vec<u8> {
    cat(&[ARCHIVED, &id.to_be_bytes()])
}

/// The records of the tasks of instance `id` (task ids are `<instance>-<seq>`).
pub fn tasks_of(id: InstanceId) -> Vec<u8> {
    cat(&[TASK, id.to_string().as_bytes(), b"-"])
}

/// `xs/<status>\0<instance>`: instances by status, in id order (an admin's
/// status filter and the incident list read one status only).
pub const INSTANCE_BY_STATUS: &[u8] = b"xs/";
/// `xsp/<status>\0<process>\0<instance>`: instances by status and process.
pub const INSTANCE_BY_STATUS_PROCESS: &[u8] = b"xsp/";
/// `xp/<process>\0<instance>`: instances by process (never changes).
pub const INSTANCE_BY_PROCESS: &[u8] = b"xp/";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub fn def(id: &str, version: u32) -> Vec<u8> {
    cat(&[DEF, id.as_bytes(), b"\0", &version.to_be_bytes()])
}

pub fn config(process: &str) -> Vec<u8> {
    cat(&[CONFIG, process.as_bytes()])
}

pub fn instance(id: InstanceId) -> Vec<u8> {
    cat(&[INSTANCE, &id.to_be_bytes()])
}

pub fn participant_prefix(user: &str) -> Vec<u8> {
    cat(&[INSTANCE_BY_PARTICIPANT, user.as_bytes(), b"\0"])
}

pub fn instance_by_participant(user: &str, id: InstanceId) -> Vec<u8> {
    cat(&[&participant_prefix(user), &id.to_be_bytes()])
}

pub fn status_prefix(status: &str) -> Vec<u8> {
    cat(&[INSTANCE_BY_STATUS, status.as_bytes(), b"\0"])
}

pub fn status_process_prefix(status: &str, process: &str) -> Vec<u8> {
    cat(&[INSTANCE_BY_STATUS_PROCESS, status.as_bytes(), b"\0", process.as_bytes(), b"\0"])
}

pub fn process_prefix(process: &str) -> Vec<u8> {
    cat(&[INSTANCE_BY_PROCESS, process.as_bytes(), b"\0"])
}

/// `prefix` followed by an instance id: a key of one of the instance indexes.
pub fn indexed_instance(prefix: &[u8], id: InstanceId) -> Vec<u8> {
    cat(&[prefix, &id.to_be_bytes()])
}

pub fn business_key(process: &str, key: &str) -> Vec<u8> {
    cat(&[BUSINESS_KEY, process.as_bytes(), b"\0", key.as_bytes()])
}

pub fn history_prefix(id: InstanceId) -> Vec<u8> {
    cat(&[HISTORY, &id.to_be_bytes()])
}

/// History lines of one commit, keyed by the sequence number of the first.
pub fn history(id: InstanceId, seq: u32) -> Vec<u8> {
    cat(&[HISTORY, &id.to_be_bytes(), &seq.to_be_bytes()])
}

pub fn task(id: &str) -> Vec<u8> {
    cat(&[TASK, id.as_bytes()])
}

/// A due date in milliseconds as the indexes order it: undated sorts last.
pub fn due_ms(due: Option<DateTime<Utc>>) -> u64 {
    due.map(|d| d.timestamp_millis().max(0) as u64).unwrap_or(u64::MAX)
}

/// Sort key for due dates: undated tasks sort last.
fn due_key(due: Option<DateTime<Utc>>) -> [u8; 8] {
    due_ms(due).to_be_bytes()
}

pub fn group_prefix(group: &str) -> Vec<u8> {
    cat(&[TASK_BY_GROUP, group.as_bytes(), b"\0"])
}

pub fn task_by_group(group: &str, due: Option<DateTime<Utc>>, task: &str) -> Vec<u8> {
    index_key(&group_prefix(group), due, task)
}

/// A task's key in the group or assignee index that starts with `prefix`.
pub fn index_key(prefix: &[u8], due: Option<DateTime<Utc>>, task: &str) -> Vec<u8> {
    cat(&[prefix, &due_key(due), task.as_bytes()])
}

pub fn assignee_prefix(user: &str) -> Vec<u8> {
    cat(&[TASK_BY_ASSIGNEE, user.as_bytes(), b"\0"])
}

pub fn task_by_assignee(user: &str, due: Option<DateTime<Utc>>, task: &str) -> Vec<u8> {
    index_key(&assignee_prefix(user), due, task)
}

/// The task id at the end of an index key.
pub fn task_of_index(key: &[u8], prefix_len: usize) -> &[u8] {
    &key[prefix_len + 8..]
}

pub fn job(id: &str) -> Vec<u8> {
    cat(&[JOB, id.as_bytes()])
}

pub fn job_due(due: DateTime<Utc>, id: &str) -> Vec<u8> {
    job_due_ms(due.timestamp_millis(), id)
}

/// Sort key of the due queue: milliseconds since the epoch and the job id.
pub fn job_due_ms(due_ms: i64, id: &str) -> Vec<u8> {
    cat(&[JOB_DUE, &(due_ms.max(0) as u64).to_be_bytes(), id.as_bytes()])
}

/// (due in ms, job id) of a due-queue key.
pub fn parse_job_due(key: &[u8]) -> Option<(i64, String)> {
    let rest = key.strip_prefix(JOB_DUE)?;
    let ms = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let id = std::str::from_utf8(&rest[8..]).ok()?.to_string();
    Some((ms as i64, id))
}

pub fn subscription_prefix(name: &str, key: &str) -> Vec<u8> {
    cat(&[SUBSCRIPTION, name.as_bytes(), b"\0", key.as_bytes(), b"\0"])
}

/// Waiting tokens by message name and correlation key, oldest instance first.
pub fn subscription(name: &str, key: &str, instance: InstanceId, token: u32) -> Vec<u8> {
    cat(&[&subscription_prefix(name, key), &instance.to_be_bytes(), &token.to_be_bytes()])
}

pub fn message_prefix(name: &str, key: &str) -> Vec<u8> {
    cat(&[MESSAGE, name.as_bytes(), b"\0", key.as_bytes(), b"\0"])
}

/// Buffered messages by name and correlation key, in arrival order.
pub fn message(name: &str, key: &str, id: u64) -> Vec<u8> {
    cat(&[&message_prefix(name, key), &id.to_be_bytes()])
}

/// The message id at the end of a message key.
pub fn message_id_of(key: &[u8]) -> Option<u64> {
    key.len().checked_sub(8).and_then(|at| key[at..].try_into().ok()).map(u64::from_be_bytes)
}
