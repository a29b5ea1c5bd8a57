//! Internals for nagare's own server, tools and tests: the raw store, raw events
//! and job runs. **Not part of the supported API**: they bypass the checks and
//! ordering the [`Engine`] methods keep (an injected `JobDone` or `TimerFired`
//! can move an instance past a step that never ran), and they change without
//! notice. An app embedding the engine needs none of them.
//!
//! The same items remain reachable at their old paths (`Engine::store`,
//! `Engine::handle`, `Engine::fire`, `executor::run_job`, `store::Batch`'s
//! fields), hidden from the documentation; new code says `internals::...` so
//! that a use of an internal is visible as such.

use crate::runtime::{Event, Instance, InstanceId, Job};
use crate::store::Store;
use crate::{Engine, EngineError};

pub use crate::executor::{run_job, JobOutcome};
pub use crate::store::Batch;

/// The engine's store, for reads the [`Engine`] API does not offer (due jobs,
/// raw records) and health checks. Writing through it skips the instance locks.
pub fn store(engine: &Engine) -> &dyn Store {
    engine.store()
}

/// Apply a raw step-function event to instance `id` and commit it.
pub fn handle(engine: &Engine, id: InstanceId, event: Event) -> Result<Instance, EngineError> {
    engine.handle(id, event)
}

/// Carry out an internal job (timer, scheduled start, message expiry) now.
pub fn fire(engine: &Engine, job: &Job) -> Result<(), EngineError> {
    engine.fire(job)
}
