//! Jobs the engine carries out itself: token timers, scheduled starts and the end of
//! a buffered message's time to live.
//!
//! All of them are ordinary jobs in the store's due index, so they survive restarts
//! and a job that came due during downtime fires once when the executor runs again.
//! A timer start keeps one job per process (`start:<process>`) holding its next fire
//! time; firing it starts the instance and moves the job to the following time in one
//! commit, and the instance's business key `timer:<process>:<time>` makes the start
//! happen once even if the same time were fired twice.

use crate::engine::{Engine, EngineError, StartOptions};
use crate::expr::{format_datetime, Vars};
use crate::model::CatchUp;
use crate::process::{Process, StartTrigger};
use crate::runtime::{Event, Job, JobKind, Rejection};
use crate::store::Batch;
use chrono::{DateTime, Duration, Utc};

/// A scheduled start fired later than this counts as missed (the engine was down).
pub const START_GRACE: Duration = Duration::minutes(1);

/// Queue changes that go with a batch: (due, job id) to add and to remove.
pub(crate) type QueueChange = (Vec<(DateTime<Utc>, String)>, Vec<(DateTime<Utc>, String)>);

/// The id of the job holding a process's next scheduled start.
pub fn start_job_id(process: &str) -> String {
    format!("start:{process}")
}

impl Engine {
    /// Carry out an internal job (a timer, a scheduled start, a message expiry).
    /// A job that is no longer current (fired, cancelled) is a conflict.
    /// Internal: see [`crate::internals::fire`].
    #[doc(hidden)]
    pub fn fire(&self, job: &Job) -> Result<(), EngineError> {
        let span = crate::spans::call("fire");
        span.record("node", job.node.as_str());
        let _span = span.entered();
        let current = self.inner.store.job(&job.id)?;
        if current.as_ref().is_none_or(|c| c.attempt != job.attempt || c.due != job.due) {
            return Err(EngineError::Conflict(Rejection::StaleJob(job.id.clone())));
        }
        match &job.kind {
            JobKind::Timer => match self.handle(job.instance, Event::TimerFired { job: job.id.clone() }) {
                Ok(_) => Ok(()),
                Err(EngineError::Conflict(_)) | Err(EngineError::UnknownInstance(_)) => {
                    // Its token is gone: the job is an orphan.
                    tracing::warn!(job = %job.id, instance = job.instance, "timer of a token that no longer waits; dropped");
                    self.inner.store.commit(Batch { jobs_delete: vec![job.clone()], ..Batch::default() })?;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            JobKind::StartTimer { process } => self.fire_start_timer(job, process),
            JobKind::MessageExpiry { .. } => self.expire_message(job),
            JobKind::CallStart { .. } => self.fire_call_start(job),
            JobKind::CallEnd { child, outcome } => self.fire_call_end(job, *child, outcome),
            JobKind::CallCancel => self.fire_call_cancel(job),
            JobKind::Connector { .. } => Err(EngineError::Conflict(Rejection::StaleJob(job.id.clone()))),
        }
    }

    /// The start-timer job for the version of `p` being deployed: created, moved to
    /// the new schedule, or removed when the new version has no timer start. A start
    /// that is already due (missed while down) keeps its time so it still fires.
    pub(crate) fn schedule_start_timer(&self, p: &Process) -> Result<(Batch, QueueChange), EngineError> {
        let id = start_job_id(&p.id);
        let old = self.inner.store.job(&id)?;
        let now = self.now();
        let mut batch = Batch::default();
        let (mut enq, mut deq) = (Vec::new(), Vec::new());
        let due = match p.start_trigger() {
            StartTrigger::Timer { schedule, .. } => match &old {
                Some(o) if o.due <= now => Some(o.due),
                _ => schedule.next_after(now, p.time_zone),
            },
            _ => None,
        };
        if let Some(o) = &old {
            deq.push((o.due, o.id.clone()));
        }
        match due {
            Some(due) => {
                let job = Job {
                    id: id.clone(),
                    instance: 0,
                    token: 0,
                    node: "start".into(),
                    due,
                    attempt: 1,
                    kind: JobKind::StartTimer { process: p.id.clone() },
                    priority: p.priority,
                    process: p.id.clone(),
                };
                enq.push((due, id));
                batch.jobs_put.push((old, job));
                tracing::info!(process = %p.id, next = %due, "timer start scheduled");
            }
            None => batch.jobs_delete.extend(old),
        }
        Ok((batch, (enq, deq)))
    }

    fn fire_start_timer(&self, job: &Job, process: &str) -> Result<(), EngineError> {
        let Some(p) = self.latest(process) else {
            self.inner.store.commit(Batch { jobs_delete: vec![job.clone()], ..Batch::default() })?;
            return Ok(());
        };
        let StartTrigger::Timer { schedule, catch_up } = p.start_trigger() else {
            self.inner.store.commit(Batch { jobs_delete: vec![job.clone()], ..Batch::default() })?;
            return Ok(());
        };
        let now = self.now();
        let tz = p.time_zone;
        // The latest scheduled time that has come: after downtime, the missed ones
        // collapse into it (no storm of starts).
        let slot = schedule.latest_between(job.due, now, tz).unwrap_or(job.due);
        let missed = now - slot > START_GRACE;
        let next = schedule.next_after(now.max(slot), tz);
        let mut moved = Batch::default();
        match next {
            Some(due) => moved.jobs_put.push((Some(job.clone()), Job { due, ..job.clone() })),
            None => moved.jobs_delete.push(job.clone()),
        }
        if p.start_paused {
            tracing::info!(process, scheduled = %slot, "timer start paused by an administrator; nothing started, the schedule goes on");
            return self.commit_jobs_only(moved);
        }
        let start = match catch_up {
            CatchUp::Once => true,
            CatchUp::Skip => !missed,
        };
        if !start {
            tracing::warn!(process, scheduled = %slot, "scheduled start missed while the engine was down; skipped (catch_up: skip)");
            return self.commit_jobs_only(moved);
        }
        let key = format!("timer:{}:{}", p.id, format_datetime(slot));
        let opts = StartOptions { by: Some("timer".into()), business_key: Some(key) };
        match self.start_with(&p, Vars::new(), opts, moved.clone()) {
            Ok((inst, waits)) => {
                tracing::info!(process, instance = inst.id, scheduled = %slot, late_ms = (now - slot).num_milliseconds(), "scheduled start");
                self.settle(waits);
                Ok(())
            }
            Err(e @ (EngineError::Rejected(_) | EngineError::Internal(_))) => {
                tracing::error!(process, scheduled = %slot, error = %e, "scheduled start refused; the schedule goes on");
                self.commit_jobs_only(moved)
            }
            Err(e) => Err(e),
        }
    }

    /// Move a scheduled start that keeps stopping the engine on to its next time,
    /// without starting the instance of this slot.
    pub(crate) fn skip_start(&self, job: &Job, process: &str) -> Result<(), EngineError> {
        let next = self.latest(process).and_then(|p| match p.start_trigger() {
            StartTrigger::Timer { schedule, .. } => schedule.next_after(self.now().max(job.due), p.time_zone),
            _ => None,
        });
        tracing::error!(process, scheduled = %job.due, next = ?next, "scheduled start skipped: it stopped the engine every time");
        let mut moved = Batch::default();
        match next {
            Some(due) => moved.jobs_put.push((Some(job.clone()), Job { due, ..job.clone() })),
            None => moved.jobs_delete.push(job.clone()),
        }
        self.commit_jobs_only(moved)
    }

    fn commit_jobs_only(&self, batch: Batch) -> Result<(), EngineError> {
        let enq = batch.jobs_put.iter().map(|(_, j)| (j.due, j.id.clone())).collect();
        self.inner.store.commit(batch)?;
        self.enqueue(enq, Vec::new());
        Ok(())
    }
}
