//! nagare-engine: the workflow interpreter.
//!
//! Pure core: [`load`] (YAML with positions) → [`compile`] (validation, petgraph) →
//! [`process::Process`] run by [`runtime::step`]. At the edge: [`store`] (sled),
//! [`engine::Engine`] (locks, commits; [`messages`], [`timers`] and [`incidents`]
//! add to it) and [`executor::Executor`] (due jobs: connector calls and timers).

pub mod clock;
pub mod compile;
pub mod connector;
pub mod diag;
mod due;
pub mod engine;
pub mod executor;
pub mod expr;
pub mod incidents;
pub mod load;
pub mod messages;
pub mod model;
pub mod process;
pub mod runtime;
pub mod schedule;
pub mod sim;
pub mod stats;
pub mod store;
pub mod timers;
pub mod types;
pub mod workers;

pub use clock::{Clock, SystemClock, VirtualClock};
pub use connector::{Call, Connector, ConnectorError, FnConnector, Registry};
pub use diag::{Diagnostic, Diagnostics};
pub use engine::{Deployed, Engine, EngineBuilder, EngineError, StartOptions};
pub use executor::Executor;
pub use expr::Vars;
pub use incidents::IncidentView;
pub use messages::{Correlation, MessageOptions};
pub use workers::{ActivatedJob, JobError};
