//! Time, injected. The engine never reads the wall clock except through [`Clock`].

use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;

/// Where the engine reads the time: injected so that tests and simulations run on a
/// [`VirtualClock`] (no `Utc::now` in the engine).
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// The clock as a [`VirtualClock`], when it is one: the executor then waits for the
    /// clock to be moved instead of sleeping in real time.
    fn as_virtual(&self) -> Option<&VirtualClock> {
        None
    }
}

/// The real clock, for production.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told: tests and simulations run "3 days later" in
/// microseconds and replay identically.
///
/// Moving it wakes an executor running on it ([`crate::Executor::run`]), which then
/// fires what has come due; [`crate::Executor::advance`] moves it step by step through
/// every due time instead, as if the engine had been running all along.
#[derive(Debug)]
pub struct VirtualClock {
    now: Mutex<DateTime<Utc>>,
    moved: tokio::sync::Notify,
}

impl VirtualClock {
    /// A clock standing at `start` until moved.
    pub fn new(start: DateTime<Utc>) -> Self {
        VirtualClock { now: Mutex::new(start), moved: tokio::sync::Notify::new() }
    }

    /// Move the clock forward by `by` and wake what waits on it.
    pub fn advance(&self, by: Duration) {
        *self.now.lock().expect("clock lock") += by;
        self.moved.notify_waiters();
    }

    /// Set the time. Moving it backwards is allowed (a simulation may replay), but
    /// timers already fired stay fired.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().expect("clock lock") = to;
        self.moved.notify_waiters();
    }

    /// Resolves the next time the clock is moved.
    pub async fn moved(&self) {
        self.moved.notified().await
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock")
    }

    fn as_virtual(&self) -> Option<&VirtualClock> {
        Some(self)
    }
}
