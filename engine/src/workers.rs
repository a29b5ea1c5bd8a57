//! External job workers: connectors served out of process, by any language.
//!
//! A connector registered as external ([`crate::Registry::register_external`],
//! [`crate::EngineBuilder::external`]) has no code in the engine. When one of its
//! jobs comes due, the executor does not run it but moves it to the workers' pool.
//! A worker *activates* jobs of its connector ([`Engine::activate_jobs`]), which
//! leases them to it for a while, does the work, and reports the result
//! ([`Engine::complete_job`], [`Engine::fail_job`]). The runtime then handles the
//! result exactly like an in-process connector's: output mapping, retries with
//! backoff, business errors, incidents.
//!
//! Leases live in memory, and with a store shared by several nodes (PostgreSQL)
//! also in the job's row, so a worker may activate on one node and report to
//! another, and two nodes never lease one job at once. A lease that runs out, or a
//! restart (with the in-memory leases of one node), makes the job available again; so a job may run more than once (at-least-once), and a worker
//! should pass the job's idempotency key to the service it calls. A result is
//! accepted only from the worker holding the lease of the current attempt; any other
//! is refused, so a slow worker whose lease went to another cannot overwrite it.
//!
//! The pool holds one small entry per due external job in memory (not bounded by the
//! due window): a connector with no worker for a long time accumulates them.

use crate::due::Entry;
use crate::engine::{Engine, EngineError};
use crate::runtime::{Failure, Instance, InstanceId, Job, JobKind, Rejection};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A job handed to a worker: what to call with, and until when it is the worker's.
/// It carries the evaluated input only; connector settings and secrets stay with
/// whoever runs the worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivatedJob {
    /// The job's id, to report its result with.
    pub id: String,
    /// Starts at 1; a retry after a reported failure has the next number.
    pub attempt: u32,
    /// The instance whose step this is.
    pub instance: InstanceId,
    /// The service task's node id.
    pub node: String,
    /// The connector the step calls.
    pub connector: String,
    /// The step's `with:`, evaluated.
    pub input: Value,
    /// Same for every attempt of this call: send it to the service so that a job run
    /// twice (lease ran out, engine restarted) has its effect once.
    pub idempotency_key: String,
    /// After this the job may be activated by another worker.
    pub lease_until: DateTime<Utc>,
}

/// Why a worker request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    #[error(
        "connector `{0}` is not served by external workers; declare its instance in the config file \
         (`connectors: {{ pdf: {{ type: external, operations: [render] }} }}` serves `pdf.render`), \
         or embed with EngineBuilder::external"
    )]
    /// The connector is not served by external workers.
    NotExternal(String),
    /// HTTP 409: already reported, cancelled, or never existed.
    #[error("job {0} is not awaited (already reported, cancelled, or unknown)")]
    Stale(String),
    /// HTTP 409: the caller does not hold the lease of the job's current attempt.
    #[error("job {job} is not leased to worker `{worker}`{}", holder.as_ref().map(|h| format!(" (worker `{h}` holds it)")).unwrap_or_default())]
    NotLeased {
        /// The job.
        job: String,
        /// The worker that asked.
        worker: String,
        /// The worker holding the lease, if any.
        holder: Option<String>,
    },
    #[error(transparent)]
    /// The engine failed.
    Engine(#[from] EngineError),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Engine(e.into())
    }
}

/// Due jobs of external connectors, in due order, each maybe leased.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    ready: BTreeMap<Entry, Pooled>,
    /// Job id → its due time in `ready`.
    by_id: HashMap<String, i64>,
}

#[derive(Debug)]
struct Pooled {
    connector: String,
    lease: Option<Lease>,
}

#[derive(Debug, Clone)]
struct Lease {
    worker: String,
    attempt: u32,
    until: DateTime<Utc>,
}

impl Pool {
    fn insert(&mut self, entry: Entry, connector: String) {
        if self.by_id.get(&entry.1) == Some(&entry.0) {
            // Offered again as it is (a node sharing its store rescans the due
            // index): keep the lease a worker may hold on it.
            return;
        }
        self.remove(&entry.1);
        self.by_id.insert(entry.1.clone(), entry.0);
        self.ready.insert(entry, Pooled { connector, lease: None });
    }

    fn remove(&mut self, id: &str) -> Option<Pooled> {
        let due = self.by_id.remove(id)?;
        self.ready.remove(&(due, id.to_string()))
    }

    fn lease_of(&self, id: &str) -> Option<&Lease> {
        let due = self.by_id.get(id)?;
        self.ready.get(&(*due, id.to_string()))?.lease.as_ref()
    }

    /// Jobs waiting in the pool (leased or not).
    pub(crate) fn len(&self) -> usize {
        self.ready.len()
    }
}

impl Engine {
    /// A due job taken off the queue: when its connector is external, put it in the
    /// workers' pool and say so (the executor then leaves it alone).
    pub(crate) fn offer_job_to_workers(&self, entry: &Entry, job: &Job) -> bool {
        if !self.connectors().has_external() {
            return false;
        }
        let JobKind::Connector { connector, .. } = &job.kind else { return false };
        if !self.connectors().is_external(connector) {
            return false;
        }
        self.inner.workers.lock().expect("workers lock").insert(entry.clone(), connector.clone());
        self.inner.jobs_ready.notify_waiters();
        tracing::debug!(job = %job.id, connector = %connector, "job waits for an external worker");
        true
    }

    /// Lease up to `max` due jobs of `connector` to `worker` for `lease`: jobs not
    /// leased, or whose lease ran out. Empty when none is due; long-polling callers
    /// wait on [`Engine::jobs_ready`] between calls.
    ///
    /// Jobs reach the pool through the [`crate::Executor`], which must be running (or
    /// be driven with `run_until_idle`/`advance`).
    pub fn activate_jobs(
        &self,
        connector: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ActivatedJob>, JobError> {
        let _span = tracing::info_span!("engine", op = "activate_jobs", connector, worker).entered();
        if !self.connectors().is_external(connector) {
            return Err(JobError::NotExternal(connector.to_string()));
        }
        let now = self.now();
        // The API caps leases; the clamp keeps any caller from overflowing the clock.
        let until = chrono::Duration::from_std(lease)
            .ok()
            .and_then(|d| crate::schedule::checked_add(now, d).ok())
            .unwrap_or_else(crate::schedule::latest);
        let mut pool = self.inner.workers.lock().expect("workers lock");
        let free: Vec<Entry> = pool
            .ready
            .iter()
            .filter(|(_, p)| p.connector == connector && p.lease.as_ref().is_none_or(|l| l.until <= now))
            .map(|(e, _)| e.clone())
            .collect();
        let mut out = Vec::new();
        for entry in free {
            if out.len() >= max {
                break;
            }
            let job = match self.store().job(&entry.1)? {
                Some(job) if job.due.timestamp_millis() == entry.0 => job,
                // Cancelled, or rescheduled (the due queue has it again).
                _ => {
                    pool.remove(&entry.1);
                    continue;
                }
            };
            let JobKind::Connector { connector, input, idempotency_key, .. } = &job.kind else {
                pool.remove(&entry.1);
                continue;
            };
            // A shared store keeps the lease for every node: another node's worker
            // may hold it already (this node's pool does not know).
            if self.store().lease_to_worker(&job.id, worker, job.attempt, now, until)? == Some(false) {
                continue;
            }
            let pooled = pool.ready.get_mut(&entry).expect("listed above");
            if let Some(old) = &pooled.lease {
                tracing::info!(job = %job.id, previous = %old.worker, worker, "lease ran out; job activated again");
            }
            pooled.lease = Some(Lease { worker: worker.to_string(), attempt: job.attempt, until });
            tracing::info!(job = %job.id, instance = job.instance, connector = %connector, worker, attempt = job.attempt, "job activated");
            out.push(ActivatedJob {
                id: job.id.clone(),
                attempt: job.attempt,
                instance: job.instance,
                node: job.node.clone(),
                connector: connector.clone(),
                input: input.clone(),
                idempotency_key: idempotency_key.clone(),
                lease_until: until,
            });
        }
        Ok(out)
    }

    /// Resolves when a job may have joined the workers' pool (for long polls; wakes
    /// every waiter, which then try [`Engine::activate_jobs`] again). Take it *before*
    /// calling [`Engine::activate_jobs`] and await it after an empty answer: a job
    /// arriving in between still wakes it.
    pub fn jobs_ready(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        self.inner.jobs_ready.notified()
    }

    /// A worker's result: the job's output, written to variables by the step's
    /// output mapping. Refused unless `worker` holds the lease of its current attempt.
    pub fn complete_job(&self, id: &str, worker: &str, output: Value) -> Result<Instance, JobError> {
        self.report(id, worker, Ok(output))
    }

    /// A worker's failure, handled like a connector's: a retryable one is tried again
    /// after the step's backoff (or `retry_after_ms`, when longer), a business error
    /// may be caught by an error boundary, a fatal one or retries running out raise
    /// an incident.
    pub fn fail_job(&self, id: &str, worker: &str, failure: Failure) -> Result<Instance, JobError> {
        self.report(id, worker, Err(failure))
    }

    /// Jobs of external connectors waiting for a worker or leased to one.
    pub fn worker_pool_len(&self) -> usize {
        self.inner.workers.lock().expect("workers lock").len()
    }

    fn report(&self, id: &str, worker: &str, result: Result<Value, Failure>) -> Result<Instance, JobError> {
        let job = self.store().job(id)?.ok_or_else(|| JobError::Stale(id.to_string()))?;
        let _span = crate::spans::job(&job).entered();
        let stored = self.store().worker_lease(id)?;
        let taken = {
            let mut pool = self.inner.workers.lock().expect("workers lock");
            let lease = match stored {
                // A shared store: the lease may come from any node.
                Some(l) => l.map(|l| Lease { worker: l.worker, attempt: l.attempt, until: l.until }),
                None => pool.lease_of(id).cloned(),
            };
            match lease {
                Some(l) if l.worker == worker && l.attempt == job.attempt => {}
                other => {
                    return Err(JobError::NotLeased {
                        job: id.to_string(),
                        worker: worker.to_string(),
                        holder: other.filter(|l| l.attempt == job.attempt).map(|l| l.worker),
                    })
                }
            }
            // Out of the pool while the result commits: nobody else can activate it
            // here (with a shared store, the lease still holds it on other nodes).
            pool.remove(id)
        };
        let connector = match (&job.kind, taken) {
            (_, Some(p)) => p.connector,
            (JobKind::Connector { connector, .. }, None) => connector.clone(),
            (_, None) => return Err(JobError::Stale(id.to_string())),
        };
        let outcome = if result.is_ok() { "completed" } else { "failed" };
        match self.finish_job(&job, result) {
            Ok(inst) => {
                tracing::info!(job = %id, instance = job.instance, worker, attempt = job.attempt, outcome, "job reported by worker");
                Ok(inst)
            }
            Err(EngineError::Conflict(Rejection::StaleJob(_))) | Err(EngineError::UnknownInstance(_)) => {
                Err(JobError::Stale(id.to_string()))
            }
            Err(e) => {
                // Not recorded (store failure): the job still awaits this attempt.
                self.return_to_pool(&job, connector);
                Err(e.into())
            }
        }
    }

    fn return_to_pool(&self, job: &Job, connector: String) {
        if matches!(self.store().job(&job.id), Ok(Some(j)) if j.attempt == job.attempt) {
            let entry = (job.due.timestamp_millis(), job.id.clone());
            self.inner.workers.lock().expect("workers lock").insert(entry, connector);
            self.inner.jobs_ready.notify_waiters();
        }
    }
}
