//! nagare-core: the pure, deterministic part of the workflow interpreter.
//!
//! [`load`] (YAML with positions) → [`compile`] (validation, petgraph) →
//! [`process::Process`], run by [`runtime::step()`]: `(instance, event, now) →
//! (new instance, commands)`. Nothing here reads files, the network, the clock or
//! a random source; those are injected by `nagare-engine`, which adds the store,
//! the locks and the executor. Keeping this a separate crate makes the rule
//! structural: a test fails if this crate's manifest gains an IO dependency.

pub mod ambient;
pub mod bpmn;
pub mod calendar;
pub mod compile;
pub mod diag;
pub mod diagram;
pub mod expr;
pub mod kinds;
pub mod load;
pub mod migrate;
pub mod model;
pub mod org;
pub mod priority;
pub mod process;
pub mod runtime;
pub mod schedule;
pub mod schema;
pub mod sensitive;
pub mod types;

pub use diag::{Diagnostic, Diagnostics};
pub use expr::Vars;
