//! The job executor: runs due jobs (connector calls, and timers through the engine)
//! and reports results.
//!
//! Jobs are committed before they run and removed in the commit that records their
//! result, so a crash in between runs the call again on restart with the same
//! idempotency key (at-least-once; services that honour the key make it
//! exactly-once). A result that cannot be stored (disk full) puts the job back on
//! the queue instead of losing it.
//!
//! Before a job runs, its start is counted in its record (durably); a job started
//! [`crate::engine::MAX_JOB_STARTS`] times without a recorded outcome (it stopped
//! the process each time) becomes an incident instead of a crash loop. A connector
//! that panics fails its job (fatal: an incident); the loop carries on.
//!
//! The executor follows the engine's clock: on a [`crate::VirtualClock`] it waits for
//! the clock to be moved instead of sleeping, and [`Executor::advance`] walks the
//! clock through every due time so a simulated "3 days later" fires each timer at
//! its own time.

use crate::clock::Clock;
use crate::connector::{Call, ConnectorError};
use crate::contain::CatchUnwind;
use crate::engine::{Engine, EngineError};
use crate::runtime::{Failure, Job, JobKind};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::Instrument;

/// How long to wait before trying a job again whose result could not be stored.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// Longest the idle loop sleeps before looking at the clock again.
const MAX_IDLE: Duration = Duration::from_millis(500);
/// How often a node sharing its store with others looks for jobs it did not
/// schedule itself (`Engine::rescan_due`).
pub const RESCAN_SHARED: Duration = Duration::from_secs(2);

/// Runs due jobs: connector calls (at most 64 at once) and timers, until told to
/// stop. One per engine; the server runs it, an app runs it or drives it in tests.
pub struct Executor {
    engine: Engine,
    concurrency: usize,
}

/// What became of one job run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// The result was stored.
    Reported,
    /// Cancelled or already reported by someone else.
    Stale,
    /// The result could not be stored; the job is queued again.
    Requeued,
}

impl Executor {
    /// An executor for `engine`.
    pub fn new(engine: Engine) -> Self {
        Executor { engine, concurrency: 64 }
    }

    /// Most connector calls in flight at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Run jobs as they come due until `shutdown` completes; then let the calls in
    /// flight finish and report before returning.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut running: JoinSet<()> = JoinSet::new();
        let mut rescanned = std::time::Instant::now();
        loop {
            if self.engine.store().shared() && rescanned.elapsed() >= RESCAN_SHARED {
                rescanned = std::time::Instant::now();
                if let Err(e) = self.engine.rescan_due() {
                    tracing::error!(error = %e, "could not look for jobs of other nodes");
                }
            }
            let free = self.concurrency.saturating_sub(running.len());
            for id in self.engine.take_due(self.engine.now(), free) {
                let this = self.engine.clone();
                running.spawn(async move {
                    // A panic outside the connector call (a bug): retry the job later;
                    // its starts are counted, so this cannot loop for ever.
                    if let Err(panic) = CatchUnwind(Box::pin(run_job(&this, &id))).await {
                        tracing::error!(job = %id, panic = %panic, "running a job panicked; will try again");
                        this.requeue(this.now() + store_retry(), id);
                    }
                });
            }
            let sleep = match self.engine.next_due() {
                Some(due) => (due - self.engine.now()).to_std().unwrap_or(Duration::ZERO).min(MAX_IDLE),
                None => MAX_IDLE,
            };
            let sleep = if running.len() >= self.concurrency { MAX_IDLE } else { sleep };
            let clock = self.engine.virtual_clock();
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.engine.woken() => {}
                Some(_) = running.join_next() => {}
                // A virtual clock only moves when told; still look every MAX_IDLE.
                _ = async { match clock { Some(c) => c.moved().await, None => std::future::pending().await } } => {}
                _ = tokio::time::sleep(if clock.is_some() { MAX_IDLE } else { sleep }) => {}
            }
        }
        tracing::info!(in_flight = running.len(), "executor stopping; waiting for calls in flight");
        while running.join_next().await.is_some() {}
    }

    /// Run every job due now, and those they lead to, until none is due.
    /// Returns how many jobs ran. For the CLI, tests and simulations: timers fire
    /// inline, one after the other in due order; connector calls run concurrently.
    pub async fn run_until_idle(&self) -> usize {
        let mut count = 0;
        loop {
            let due = self.engine.take_due(self.engine.now(), self.concurrency);
            if due.is_empty() {
                return count;
            }
            let mut set = JoinSet::new();
            for id in due {
                let job = match self.engine.store().job(&id) {
                    Ok(Some(job)) => job,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::error!(job = %id, error = %e, "could not read a due job");
                        return count;
                    }
                };
                if job.kind.is_internal() {
                    let job = match self.engine.begin_run(&id) {
                        Ok(Some(job)) => job,
                        Ok(None) => continue,
                        Err(EngineError::Store(crate::store::StoreError::Leased { .. })) => {
                            self.engine.requeue(self.engine.now() + store_retry(), id);
                            continue;
                        }
                        Err(e) => {
                            tracing::error!(job = %id, error = %e, "could not count a start of a due job");
                            self.engine.requeue(job.due, id);
                            return count;
                        }
                    };
                    match fire_reported(&self.engine, &job) {
                        JobOutcome::Requeued => return count,
                        _ => count += 1,
                    }
                    continue;
                }
                let engine = self.engine.clone();
                set.spawn(async move { run_job(&engine, &id).await });
            }
            while let Some(r) = set.join_next().await {
                if let Ok(Ok(JobOutcome::Requeued)) = r {
                    // The store refused; stop instead of spinning on it.
                    return count;
                }
                count += 1;
            }
        }
    }

    /// Move the engine's [`crate::VirtualClock`] forward by `by`, stopping at every due
    /// time on the way to run what is due then: the history is the one a running
    /// engine would have written. Returns how many jobs ran.
    ///
    /// # Panics
    /// When the engine does not run on a virtual clock.
    pub async fn advance(&self, by: chrono::Duration) -> usize {
        let clock = self.engine.virtual_clock().expect("Executor::advance needs an engine on a VirtualClock");
        let target = clock.now() + by;
        let mut count = self.run_until_idle().await;
        while let Some(due) = self.engine.next_due().filter(|d| *d <= target) {
            if due > clock.now() {
                clock.set(due);
            }
            let ran = self.run_until_idle().await;
            count += ran;
            if ran == 0 && due <= clock.now() {
                break; // the store refused a result; do not spin
            }
        }
        clock.set(target);
        count + self.run_until_idle().await
    }

    /// Jobs loaded in memory (due or not); the store may hold more.
    pub fn queued(&self) -> usize {
        self.engine.queued()
    }
}

fn store_retry() -> chrono::Duration {
    chrono::Duration::from_std(STORE_RETRY).unwrap_or_default()
}

/// Run one job by id: fire a timer, or call its connector and report the result.
/// Its start is counted in the store first (see [`Engine::begin_run`]).
/// Internal: reached as [`crate::internals::run_job`].
#[doc(hidden)]
pub async fn run_job(engine: &Engine, id: &str) -> Result<JobOutcome, EngineError> {
    let (e2, id2) = (engine.clone(), id.to_string());
    let begun = tokio::task::spawn_blocking(move || e2.begin_run(&id2))
        .await
        .unwrap_or_else(|join| Err(EngineError::Internal(join.to_string())));
    let job = match begun {
        Ok(Some(job)) => job,
        Ok(None) => return Ok(JobOutcome::Stale),
        Err(EngineError::Store(crate::store::StoreError::Leased { .. })) => {
            // Another node runs it: look again later (it is gone by then, or that
            // node died and its lease ran out).
            tracing::debug!(job = %id, "another node runs this job");
            engine.requeue(engine.now() + store_retry(), id.to_string());
            return Ok(JobOutcome::Stale);
        }
        Err(e) => {
            tracing::error!(job = %id, error = %e, "could not count a start of a due job; will try again");
            engine.requeue(engine.now() + store_retry(), id.to_string());
            return Ok(JobOutcome::Requeued);
        }
    };
    let span = crate::spans::job(&job);
    run_begun(engine, job).instrument(span).await
}

/// The rest of [`run_job`] once the job's start is counted, inside its span.
async fn run_begun(engine: &Engine, job: Job) -> Result<JobOutcome, EngineError> {
    if job.kind.is_internal() {
        let e2 = engine.clone();
        let job2 = job.clone();
        let outcome = match crate::spans::on_blocking_pool(move || fire_reported(&e2, &job2)).await {
            Ok(outcome) => outcome,
            Err(join) => {
                tracing::error!(job = %job.id, error = %join, "firing a timer panicked; will try again");
                engine.requeue(engine.now() + store_retry(), job.id.clone());
                JobOutcome::Requeued
            }
        };
        return Ok(outcome);
    }
    if crate::notify::is_notification(&job.id) {
        return Ok(notify(engine, job).await);
    }
    let result = call(engine, &job).await;
    let e2 = engine.clone();
    let job2 = job.clone();
    let reported = crate::spans::on_blocking_pool(move || e2.finish_job(&job2, result))
        .await
        .unwrap_or_else(|join| Err(EngineError::Store(crate::store::StoreError::Io(join.to_string()))));
    match reported {
        Ok(_) => Ok(JobOutcome::Reported),
        Err(EngineError::Conflict(_)) | Err(EngineError::UnknownInstance(_)) => Ok(JobOutcome::Stale),
        Err(e) => {
            tracing::error!(job = %job.id, instance = job.instance, error = %e, "could not store a job result; will run it again");
            engine.requeue(engine.now() + store_retry(), job.id.clone());
            Ok(JobOutcome::Requeued)
        }
    }
}

/// Send a task notification (or drop it when its task is no longer open); its
/// outcome goes to no instance.
async fn notify(engine: &Engine, job: Job) -> JobOutcome {
    let (e2, j2) = (engine.clone(), job.clone());
    let obsolete = crate::spans::on_blocking_pool(move || e2.notification_obsolete(&j2)).await.unwrap_or(false);
    let result = if obsolete { None } else { Some(call(engine, &job).await) };
    let (e2, j2) = (engine.clone(), job.clone());
    let stored = crate::spans::on_blocking_pool(move || match result {
        None => e2.drop_notification(&j2),
        Some(r) => e2.finish_notification(&j2, r),
    })
    .await
    .unwrap_or_else(|join| Err(EngineError::Internal(join.to_string())));
    match stored {
        Ok(()) => JobOutcome::Reported,
        Err(EngineError::Conflict(_)) => JobOutcome::Stale,
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "could not store a notification's outcome; will run it again");
            engine.requeue(engine.now() + store_retry(), job.id.clone());
            JobOutcome::Requeued
        }
    }
}

/// Fire an internal job through the engine; a failure to store puts it back on the queue.
fn fire_reported(engine: &Engine, job: &Job) -> JobOutcome {
    match engine.fire(job) {
        Ok(()) => JobOutcome::Reported,
        Err(EngineError::Conflict(_)) | Err(EngineError::UnknownInstance(_)) => JobOutcome::Stale,
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "could not fire a timer; will try again");
            engine.requeue(engine.now() + store_retry(), job.id.clone());
            JobOutcome::Requeued
        }
    }
}

async fn call(engine: &Engine, job: &Job) -> Result<serde_json::Value, Failure> {
    let JobKind::Connector { connector, input, idempotency_key, timeout_ms } = &job.kind else {
        return Err(Failure::Fatal { message: format!("job {} is not a connector call", job.id) });
    };
    let Some(c) = engine.connectors().get(connector) else {
        return Err(Failure::Fatal { message: format!("no connector `{connector}` is registered in this engine") });
    };
    let call = Arc::new(Call {
        connector: connector.clone(),
        input: input.clone(),
        idempotency_key: idempotency_key.clone(),
        instance: job.instance,
        node: job.node.clone(),
        attempt: job.attempt,
    });
    // Inside the job's span (see `run_job`): its warnings carry the instance and node.
    let timeout = Duration::from_millis(*timeout_ms);
    // A connector that panics, in its synchronous part or in its future, fails its
    // job: a bug in it is not worth retrying, so the step gets an incident.
    let future = match crate::contain::catch(|| c.call(&call)) {
        Ok(f) => f,
        Err(panic) => return Err(panicked(connector, panic)),
    };
    let out = tokio::time::timeout(timeout, CatchUnwind(future)).await;
    match out {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "connector call failed");
            Err(e.into())
        }
        Ok(Err(panic)) => Err(panicked(connector, panic)),
        Err(_) => {
            Err(ConnectorError::Retryable(format!("no answer within {}", humantime::format_duration(timeout))).into())
        }
    }
}

fn panicked(connector: &str, panic: String) -> Failure {
    tracing::error!(connector, panic = %panic, "connector panicked");
    Failure::Fatal { message: format!("connector `{connector}` failed with an internal error (a bug in it): {panic}") }
}
