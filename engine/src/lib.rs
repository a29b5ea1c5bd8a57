//! nagare-engine: the workflow interpreter.
//!
//! The pure core lives in the crate `nagare-core` (re-exported here: [`load`] →
//! [`compile`] → [`process::Process`] run by [`runtime::step()`]). This crate is its
//! edge: [`store`] (sled),
//! [`engine::Engine`] (locks, commits; [`messages`], [`timers`] and [`incidents`]
//! add to it) and [`executor::Executor`] (due jobs: connector calls and timers).
//!
//! # Embedding
//!
//! An app builds an [`Engine`] (store, clock, its own connectors), deploys process
//! files, starts instances and works their tasks. Every `Engine` call blocks on the
//! disk (a commit returns once it is durable); async code uses [`AsyncEngine`]
//! ([`Engine::asynchronous`]), which runs each call on tokio's blocking pool. What
//! happens is told to [`Engine::subscribe`]rs as [`EngineEvent`]s, once durable and
//! in commit order per instance ([`events`]). The everyday types are in
//! [`prelude`].
//!
//! ```
//! use nagare_engine::prelude::*;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let engine = Engine::builder()
//!     .in_memory() // or .data_dir(path)? for a durable store
//!     .connector("app.rate", FnConnector(|_c: &Call| Ok(serde_json::json!({ "rate": 0.1 }))))
//!     .build()?
//!     .asynchronous();
//! let yaml = "
//! id: hello
//! lanes: { staff: {} }
//! variables: { rate: { type: number } }
//! start: { next: rate }
//! nodes:
//!   rate: { service: app.rate, set: { rate: result.rate }, next: check }
//!   check: { user_task: Check the rate, lane: staff, next: done }
//!   done: { end: }
//! ";
//! engine.deploy("hello.yaml", yaml).await?;
//! let mut events = engine.subscribe();
//! let inst = engine.start("hello", Vars::new(), StartOptions::default()).await?;
//! Executor::new(engine.blocking().clone()).run_until_idle().await; // the service step
//! let task = loop {
//!     if let EventKind::TaskOpened { task } = events.recv().await.unwrap().kind {
//!         break task;
//!     }
//! };
//! engine.complete(task.id, "sato", Vars::new(), Outcome::Next).await?;
//! assert_eq!(engine.instance(inst.id).await?.status, Status::Completed);
//! # Ok::<(), EngineError>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

// The pure core, re-exported so that `nagare_engine::runtime` etc. keep working and
// the edge modules below can say `crate::runtime`.
pub use nagare_core::{
    ambient, bpmn, compile, diag, diagram, expr, load, migrate, model, priority, process, runtime, schedule, schema,
    sensitive, types,
};

pub mod archive;
pub mod asynchronous;
pub mod blobs;
pub mod calls;
#[cfg(test)]
mod calls_sim_tests;
pub mod clock;
pub mod connector;
mod contain;
mod due;
pub mod engine;
pub mod events;
pub mod executor;
pub mod fair;
pub mod files;
pub mod incidents;
pub mod internals;
mod lock;
pub mod messages;
pub mod migrations;
pub mod notify;
pub mod org;
pub mod permissions;
pub mod prelude;
pub mod records;
#[cfg(test)]
mod reliability_tests;
pub mod sendback;
pub mod settings;
/// Deterministic simulation of the engine under faults (tests and `nagare simulate`).
#[doc(hidden)]
pub mod sim;
mod spans;
pub mod stats;
pub mod store;
pub mod task_order;
pub mod timers;
pub mod typed;
pub mod workers;

pub use asynchronous::AsyncEngine;
pub use clock::{Clock, SystemClock, VirtualClock};
pub use connector::{AsyncFnConnector, Call, Connector, ConnectorError, FnConnector, Registry};
pub use diag::{Diagnostic, Diagnostics};
pub use engine::{Deployed, Engine, EngineBuilder, EngineError, StartOptions};
pub use events::{EngineEvent, EventKind};
pub use executor::Executor;
pub use expr::Vars;
pub use incidents::IncidentView;
pub use messages::{Correlation, MessageOptions};
pub use migrations::{ApplyOutcome, ApplyReport, MigrationPlan};
pub use permissions::may_work;
pub use records::{RecordStart, RecordStartOptions};
pub use sendback::SendBackNote;
pub use typed::{TypedVarsError, VarsAs, VarsFromSerde};
pub use workers::{ActivatedJob, JobError};
