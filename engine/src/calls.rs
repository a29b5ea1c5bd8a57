//! Call activities at the edge: starting the called instance, telling the caller
//! that it ended, cancelling it when the caller stops waiting.
//!
//! All three are internal jobs in the store's due index, written in the commit that
//! decided them, so none is lost when the engine stops between two commits:
//!
//! - `call_start` (job of the caller, scheduled when its token arrives at the call):
//!   under the caller's lock, the child is started and the caller's token records
//!   the child's id (`Wait::Call { child }`) **in one commit** that also deletes the
//!   job. Run twice (a crash before the job's deletion was durable is impossible: it
//!   is the same commit), the second run finds the token no longer waiting for a
//!   start and drops the job: a child is started at most once per call.
//! - `call_end` (job of the caller, written by the child's final commit): loads the
//!   child's final variables and hands [`Event::CallEnded`] to the caller under its
//!   own lock; the commit that applies it deletes the job. Delivered twice, the
//!   second finds no token waiting for that child and is dropped: the caller goes
//!   on exactly once.
//! - `call_cancel` (job of the child, written when the caller's token stops
//!   waiting: cancel, an interrupting boundary, a fork ended by an error): cancels the
//!   child, whose own cancel writes `call_cancel` jobs for what it called in turn.
//!
//! The caller's lock is the only instance lock held while a child starts: the new
//! child's id is known to nobody else until the commit, so it needs no lock of its
//! own (taking a second instance lock could deadlock against another caller).

use crate::contain;
use crate::engine::{debug_assert_invariants, lock_index, Engine, EngineError};
use crate::expr::Vars;
use crate::process::Process;
use crate::runtime::{self, CallOutcome, Event, InstanceId, Job, JobKind, ParentLink, Rejection, Wait};
use crate::store::Batch;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The `call_cancel` job for called instance `child`.
pub(crate) fn cancel_job(child: InstanceId, now: DateTime<Utc>) -> Job {
    Job {
        id: format!("call-cancel:{child}"),
        instance: child,
        token: 0,
        node: String::new(),
        due: now,
        attempt: 1,
        kind: JobKind::CallCancel,
        priority: nagare_core::priority::DEFAULT,
        process: String::new(),
    }
}

/// Who the history names for a cancel that a caller asked for: nobody (the
/// engine), so that no user becomes a participant of the called instance by it.
pub const CALL_CANCEL_BY: &str = "";

impl Engine {
    /// What deploy-time checks of `call:` nodes know of the deployed processes.
    pub(crate) fn callees(&self) -> crate::compile::Callees {
        let mut out = crate::compile::Callees::default();
        for versions in self.processes() {
            let list = versions
                .iter()
                .map(|p| crate::compile::Callee {
                    version: p.version,
                    vars: p.vars.clone(),
                    calls: p.calls().into_iter().map(str::to_string).collect(),
                })
                .collect();
            out.processes.insert(versions[0].id.clone(), list);
        }
        out
    }

    /// Drop a job nobody waits for any more.
    fn drop_job(&self, job: &Job) -> Result<(), EngineError> {
        self.inner.store.commit(Batch { jobs_delete: vec![job.clone()], ..Batch::default() })?;
        Ok(())
    }

    /// Carry out a `call_start` job: start the child and record it on the caller, in
    /// one commit; or an incident on the caller when the child cannot start.
    pub(crate) fn fire_call_start(&self, job: &Job) -> Result<(), EngineError> {
        let JobKind::CallStart { process, version, vars, business_key } = &job.kind else {
            return Err(EngineError::Conflict(Rejection::StaleJob(job.id.clone())));
        };
        let guard = self.inner.locks[lock_index(job.instance)].lock().expect("lock");
        let Some(mut parent) = self.inner.store.instance(job.instance)? else {
            drop(guard);
            return self.drop_job(job);
        };
        let waiting = parent
            .call_token_index(&job.id)
            .filter(|&i| matches!(parent.tokens[i].wait, Wait::Call { child: None, .. }));
        let Some(tok) = waiting.filter(|_| !parent.status.is_finished()) else {
            // Started already (this is a second run), or the caller moved on.
            drop(guard);
            return self.drop_job(job);
        };
        let pp = self
            .process(&parent.process, parent.version)
            .ok_or_else(|| EngineError::UnknownProcess(format!("{} version {}", parent.process, parent.version)))?;
        let now = self.now();
        let callee = match version {
            Some(v) => self.process(process, *v),
            None => self.latest(process),
        };
        let mut child = None;
        let event = match callee {
            None => {
                let which = version.map(|v| format!(" version {v}")).unwrap_or_default();
                let message = format!("no process `{process}`{which} is deployed; deploy it, then retry");
                Event::CallRefused { job: job.id.clone(), message }
            }
            Some(cp) => {
                let link = ParentLink {
                    instance: parent.id,
                    token: parent.tokens[tok].id,
                    node: parent.tokens[tok].node.clone(),
                    depth: parent.parent.as_ref().map_or(0, |l| l.depth) + 1,
                };
                let id = self.inner.store.next_instance_id()?;
                let key = business_key.clone().or_else(|| parent.business_key.clone());
                let who = (parent.started_by.clone(), key);
                match self.start_child(&cp, id, vars.clone(), who, link, now) {
                    Ok(started) => {
                        let version = cp.version;
                        child = Some(started);
                        Event::CallStarted { job: job.id.clone(), child: id, process: process.clone(), version }
                    }
                    Err(message) => Event::CallRefused { job: job.id.clone(), message },
                }
            }
        };
        let ambient = self.ambient_for(&pp, now);
        let stepped =
            contain::catch(|| crate::ambient::within(ambient, || runtime::step(&pp, &mut parent, event, now)));
        let mut tr = match stepped {
            Ok(Ok(tr)) => tr,
            Ok(Err(r)) => return Err(EngineError::Conflict(r)),
            // The job is run again, up to the start limit, then becomes an incident.
            Err(panic) => return Err(EngineError::Internal(panic)),
        };
        if pp.has_sensitive() {
            pp.scrub_texts(&mut parent, &mut tr.history);
        }
        parent.note_participants(&tr.history);
        debug_assert_invariants(&pp, &parent);
        let mut parts = vec![self.prepare(&parent, tr, Some(job.id.clone()))?];
        let mut started = None;
        if let Some((inst, tr, cp)) = child {
            parts.push(self.prepare(&inst, tr, None)?);
            started = Some((inst.status, cp));
        }
        let waits = self.commit_parts(parts, Batch::default())?;
        if let Some((status, cp)) = started {
            self.count_start(&cp, status);
        }
        drop(guard);
        self.settle(waits);
        Ok(())
    }

    /// The child, started and ready to commit, or why it was refused (its field
    /// errors, for the caller's incident). `who`: its starter and business key.
    fn start_child(
        &self,
        cp: &Arc<Process>,
        id: InstanceId,
        vars: Vars,
        (by, key): (Option<String>, Option<String>),
        link: ParentLink,
        now: DateTime<Utc>,
    ) -> Result<(runtime::Instance, runtime::Transition, Arc<Process>), String> {
        let ambient = self.ambient_for(cp, now);
        let started = contain::catch(|| {
            crate::ambient::within(ambient, || runtime::start_called(cp, id, vars, by, key, Some(link), now))
        });
        let (mut inst, mut tr) = match started {
            Ok(Ok(r)) => r,
            Ok(Err(Rejection::InvalidData(errors))) => {
                let list: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.problem)).collect();
                return Err(format!("`{}` refused the start: {}", cp.id, list.join("; ")));
            }
            Ok(Err(r)) => return Err(format!("`{}` refused the start: {r}", cp.id)),
            Err(panic) => return Err(format!("internal error while starting `{}`: {panic}", cp.id)),
        };
        if cp.has_sensitive() {
            cp.scrub_texts(&mut inst, &mut tr.history);
        }
        inst.note_participants(&tr.history);
        debug_assert_invariants(cp, &inst);
        Ok((inst, tr, cp.clone()))
    }

    /// Carry out a `call_end` job: the caller takes the child's outcome.
    pub(crate) fn fire_call_end(&self, job: &Job, child: InstanceId, outcome: &CallOutcome) -> Result<(), EngineError> {
        let vars = match outcome {
            CallOutcome::Completed => self.inner.store.instance(child)?.map(|c| c.vars).unwrap_or_default(),
            _ => Vars::new(),
        };
        let event = Event::CallEnded { job: job.id.clone(), child, outcome: outcome.clone(), vars };
        match self.handle(job.instance, event) {
            Ok(_) => Ok(()),
            Err(EngineError::Conflict(_)) | Err(EngineError::UnknownInstance(_)) => {
                // Delivered before, or the caller stopped waiting (cancelled, interrupted).
                tracing::debug!(job = %job.id, instance = job.instance, "call end nobody waits for; dropped");
                self.drop_job(job)
            }
            Err(e) => Err(e),
        }
    }

    /// Carry out a `call_cancel` job: cancel the child (which cancels what it calls).
    pub(crate) fn fire_call_cancel(&self, job: &Job) -> Result<(), EngineError> {
        let reason = "its caller stopped waiting for it".to_string();
        let event = Event::Cancel { by: CALL_CANCEL_BY.into(), reason };
        let extra = Batch { jobs_delete: vec![job.clone()], ..Batch::default() };
        match self.handle_with(job.instance, event, extra) {
            Ok((_, waits)) => {
                self.settle(waits);
                Ok(())
            }
            Err(EngineError::Conflict(_)) | Err(EngineError::UnknownInstance(_)) => self.drop_job(job),
            Err(e) => Err(e),
        }
    }
}
