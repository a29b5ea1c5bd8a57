//! The interpreter: instance state and the pure transition function.

mod invariants;
pub mod state;
pub mod step;

pub use invariants::InvariantViolation;
pub use state::*;
pub use step::{message_start_vars, start, step, Command, Event, Failure, FieldError, Outcome, Rejection, Transition};
