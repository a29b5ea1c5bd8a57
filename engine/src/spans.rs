//! Tracing spans around engine calls and job runs, so that every log line an
//! engine call or a job emits (a step's incident, a failed commit, "connector
//! call failed") carries the instance, process and node it is about.
//!
//! An engine call opens an `engine` span with its operation (`op = "complete"`)
//! and whatever it knows at once; what it learns later (the instance of a task,
//! the process of an instance) is recorded into the current span as it is read.
//! A job run is a `job` span ([`job`]) around the whole run: the connector call,
//! its warning, and the engine call that stores the result (a child `engine` span,
//! carried onto the blocking pool with [`on_blocking_pool`]).

use crate::runtime::{InstanceId, Job, JobKind};
use tracing::field::Empty;
use tracing::Span;

/// The span of one engine call `op`; enter it for the call's duration.
pub(crate) fn call(op: &'static str) -> Span {
    tracing::info_span!("engine", op, instance = Empty, process = Empty, node = Empty, task = Empty)
}

/// The span of a job run (connector call, timer, message expiry...).
pub(crate) fn job(job: &Job) -> Span {
    let connector = match &job.kind {
        JobKind::Connector { connector, .. } => connector.as_str(),
        _ => "",
    };
    tracing::info_span!(
        "job",
        job = %job.id,
        instance = job.instance,
        node = %job.node,
        attempt = job.attempt,
        connector,
    )
}

/// Note in the current span which instance (of which process) the call is about,
/// once it is known. Recorded once per call (a log formatter shows every record).
pub(crate) fn record_instance(id: InstanceId, process: &str) {
    let span = Span::current();
    span.record("instance", id);
    span.record("process", process);
}

/// `f` on tokio's blocking pool, inside the caller's current span.
pub(crate) fn on_blocking_pool<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}
