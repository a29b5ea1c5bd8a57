//! The interpreter: instance state and the pure transition function.

mod invariants;
pub mod state;
pub mod step;

pub use invariants::InvariantViolation;

pub use state::*;
pub use step::{
    message_start_vars, raise_incident, start, start_called, step, Command, Culprit, Event, Failure, FieldError,
    Outcome, Rejection, Transition,
};
