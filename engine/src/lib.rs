//! nagare-engine: the workflow interpreter.
//!
//! The pure core lives in the crate `nagare-core` (re-exported here: [`load`] →
//! [`compile`] → [`process::Process`] run by [`runtime::step`]). This crate is its
//! edge: [`store`] (sled),
//! [`engine::Engine`] (locks, commits; [`messages`], [`timers`] and [`incidents`]
//! add to it) and [`executor::Executor`] (due jobs: connector calls and timers).

// The pure core, re-exported so that `nagare_engine::runtime` etc. keep working and
// the edge modules below can say `crate::runtime`.
pub use nagare_core::{
    compile, diag, diagram, expr, load, model, process, runtime, schedule, schema, sensitive, types,
};

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
pub mod files;
pub mod incidents;
mod lock;
pub mod messages;
pub mod notify;
pub mod prelude;
pub mod records;
#[cfg(test)]
mod reliability_tests;
pub mod sendback;
pub mod settings;
pub mod sim;
pub mod stats;
pub mod store;
pub mod timers;
pub mod typed;
pub mod workers;

pub use asynchronous::AsyncEngine;
pub use clock::{Clock, SystemClock, VirtualClock};
pub use connector::{Call, Connector, ConnectorError, FnConnector, Registry};
pub use diag::{Diagnostic, Diagnostics};
pub use engine::{Deployed, Engine, EngineBuilder, EngineError, StartOptions};
pub use events::{EngineEvent, EventKind};
pub use executor::Executor;
pub use expr::Vars;
pub use incidents::IncidentView;
pub use messages::{Correlation, MessageOptions};
pub use records::{RecordStart, RecordStartOptions};
pub use sendback::SendBackNote;
pub use typed::{TypedVarsError, VarsAs, VarsFromSerde};
pub use workers::{ActivatedJob, JobError};
