//! Task notifications: a lane's `notify:` turns task events (opened, sent back,
//! overdue) into connector jobs of `notify.task`, committed with the event itself.
//!
//! The engine only decides *that* something is announced and *when*; it knows no
//! addresses and no SMTP. The `notify.task` connector (connectors crate) finds the
//! recipients in the users file and sends through the lane's `via` instance
//! (`mail`). These jobs belong to no token: their id starts with
//! [`PREFIX`], their result goes to no instance, a retryable failure is retried with
//! backoff (at most [`MAX_ATTEMPTS`] times) and anything else is logged and dropped,
//! so a failing mail server never blocks or fails the process. An overdue notice is
//! a job due at the task's due time; when it comes due for a task no longer open it
//! is dropped unsent.

use crate::engine::{Engine, EngineError};
use crate::process::NotifyOn;
use crate::runtime::{Failure, Job, JobKind, Task, TaskStatus};
use crate::store::Batch;
use chrono::{DateTime, Utc};
use serde_json::json;

/// Id prefix of notification jobs: `notify:<task>:<event>`.
pub const PREFIX: &str = "notify:";
/// The connector that delivers notifications.
pub const CONNECTOR: &str = "notify.task";
/// Tries of one notification before it is given up (logged).
pub const MAX_ATTEMPTS: u32 = 10;
const TIMEOUT_MS: u64 = 60_000;

/// Is this job a notification (no token waits for it)?
pub fn is_notification(job_id: &str) -> bool {
    job_id.starts_with(PREFIX)
}

/// Backoff before try `attempt + 1`: 1, 2, 4 … minutes, at most an hour.
fn backoff(attempt: u32) -> chrono::Duration {
    chrono::Duration::minutes((1i64 << attempt.min(6).saturating_sub(1)).min(60))
}

impl Engine {
    /// The notification jobs for a task just opened (`sent_back`: opened by a send
    /// back), per its lane's `notify:`; none when the lane asks for none.
    pub(crate) fn notifications(&self, t: &Task, sent_back: bool, now: DateTime<Utc>) -> Vec<Job> {
        let Some(p) = self.process(&t.process, t.version) else { return Vec::new() };
        let Some(n) = p.lanes.get(&t.lane).and_then(|l| l.notify.as_ref()) else { return Vec::new() };
        let job = |event: NotifyOn, due: DateTime<Utc>| {
            let id = format!("{PREFIX}{}:{}", t.id, event.as_str());
            Job {
                id: id.clone(),
                instance: t.instance,
                token: 0,
                node: t.node.clone(),
                due,
                attempt: 1,
                kind: JobKind::Connector {
                    connector: CONNECTOR.into(),
                    input: json!({
                        "event": event.as_str(),
                        "due_local": t.due.map(|d| d.with_timezone(&p.time_zone).format("%Y-%m-%d %H:%M %Z").to_string()),
                        "via": n.via,
                        "task": {
                            "id": t.id, "title": t.title, "node": t.node, "lane": t.lane,
                            "process": t.process, "instance": t.instance,
                            "groups": t.groups, "assignee": t.assignee, "due": t.due,
                        },
                    }),
                    idempotency_key: id,
                    timeout_ms: TIMEOUT_MS,
                },
                priority: t.priority,
                process: t.process.clone(),
            }
        };
        let mut out = Vec::new();
        let first = if sent_back { NotifyOn::SendBack } else { NotifyOn::Open };
        if n.on.contains(&first) {
            out.push(job(first, now));
        }
        if let (true, Some(due)) = (n.on.contains(&NotifyOn::Overdue), t.due) {
            out.push(job(NotifyOn::Overdue, due.max(now)));
        }
        out
    }

    /// An overdue notice whose task is no longer open: nothing to say.
    pub fn notification_obsolete(&self, job: &Job) -> bool {
        let JobKind::Connector { input, .. } = &job.kind else { return true };
        if input["event"] != "overdue" {
            return false;
        }
        let task = input["task"]["id"].as_str().unwrap_or_default();
        !matches!(self.inner.store.task(task), Ok(Some(t)) if t.status == TaskStatus::Open)
    }

    /// Record the outcome of a notification job: retried with backoff when worth it,
    /// else removed (a failure is logged, the process is not touched).
    pub fn finish_notification(
        &self,
        job: &Job,
        result: Result<serde_json::Value, Failure>,
    ) -> Result<(), EngineError> {
        let Some(current) = self.inner.store.job(&job.id)?.filter(|c| c.attempt == job.attempt) else {
            return Err(EngineError::Conflict(crate::runtime::Rejection::StaleJob(job.id.clone())));
        };
        let now = self.now();
        let mut batch = Batch::default();
        let (mut enqueue, dequeue) = (Vec::new(), vec![(current.due, current.id.clone())]);
        match result {
            Ok(_) => {
                tracing::info!(job = %job.id, instance = job.instance, "task notification sent");
                batch.jobs_delete.push(current);
            }
            Err(Failure::Retryable { message, retry_after_ms }) if job.attempt < MAX_ATTEMPTS => {
                let after = retry_after_ms
                    .map(|ms| chrono::Duration::milliseconds(ms.min(3_600_000) as i64))
                    .unwrap_or_else(|| backoff(job.attempt));
                tracing::warn!(job = %job.id, attempt = job.attempt, error = %message, "task notification failed; will retry");
                let next = Job { due: now + after, attempt: job.attempt + 1, ..current.clone() };
                enqueue.push((next.due, next.id.clone()));
                batch.jobs_put.push((Some(current), next));
            }
            Err(f) => {
                tracing::error!(job = %job.id, instance = job.instance, attempt = job.attempt, error = %f.message(), "task notification given up");
                batch.jobs_delete.push(current);
            }
        }
        self.inner.store.commit(batch)?;
        self.enqueue(enqueue, dequeue);
        Ok(())
    }

    /// Drop a notification job without running it (its task is no longer open).
    pub fn drop_notification(&self, job: &Job) -> Result<(), EngineError> {
        let Some(current) = self.inner.store.job(&job.id)? else { return Ok(()) };
        let due = current.due;
        self.inner.store.commit(Batch { jobs_delete: vec![current], ..Batch::default() })?;
        self.enqueue(Vec::new(), vec![(due, job.id.clone())]);
        Ok(())
    }
}
