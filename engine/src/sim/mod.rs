//! A seeded simulation of the whole engine under faults (TigerBeetle / FoundationDB
//! style): one seed fixes every random choice, so a failure replays exactly.
//!
//! The driver (`world`) runs the real [`Engine`](crate::Engine) on a
//! [`VirtualClock`](crate::VirtualClock) and a simulated disk (`disk`) that loses
//! unflushed writes on a crash and fails writes and flushes at random. It deploys
//! random processes (`grammar`) and, step by step, starts instances with ordinary
//! and hostile form values (`hostile`), completes and claims tasks, sends
//! messages, runs due jobs through a connector that succeeds, fails (retryably,
//! with a business code, fatally), times out or answers late, moves the clock,
//! retries incidents, cancels, and crashes and reopens the engine. After every step
//! it checks the invariants (see `world`); at the end it turns faults off, lets
//! every instance run to its end and checks that none is stuck.
//!
//! Single-threaded and synchronous: due jobs are taken from the engine's queue and
//! run inline, as [`Executor::advance`](crate::Executor::advance) does, so a seed
//! gives the same run on every machine.

pub(crate) mod disk;
mod grammar;
mod hostile;
pub(crate) mod rng;
mod world;

pub use disk::FaultRates;
pub use rng::Rng;

use std::fmt;

/// What a simulation run does.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Steps (actions) per seed before the final drain.
    pub steps: usize,
    /// Processes deployed per seed.
    pub processes: usize,
    pub faults: FaultRates,
    /// Task due dates computed from form values (`add_days(now, v1)`): with huge
    /// numbers this found issue 10's finding 2 (date arithmetic that panicked,
    /// also while reopening the engine). On by default.
    pub hostile_dates: bool,
    /// Fail on an idempotency key reused for a different call (the default). Issue
    /// 10, finding 12 (instance ids reused after a crash that lost an unflushed
    /// start) predicts such reuses; none has shown up in the seeds run so far.
    /// Off: they are counted in [`SimReport::known`] instead.
    pub strict_keys: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            steps: 80,
            processes: 2,
            faults: FaultRates { apply_fails: 25, flush_fails: 40 },
            hostile_dates: true,
            strict_keys: true,
        }
    }
}

/// What one seed did.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub seed: u64,
    pub steps: usize,
    pub instances: usize,
    /// Instances started, tasks completed, messages delivered, internal jobs fired
    /// (timers, expiries) during the random steps.
    pub started: usize,
    pub completed_tasks: usize,
    pub delivered: usize,
    pub fired: usize,
    pub connector_calls: usize,
    pub faults: u64,
    pub crashes: usize,
    /// Violations of known, open findings that `SimOptions` does not fail on.
    pub known: Vec<String>,
}

/// A broken invariant (or a panic), with the seed and the end of the trace.
#[derive(Debug, Clone)]
pub struct SimFailure {
    pub seed: u64,
    pub step: usize,
    pub message: String,
    /// The generated processes, then the last lines of the trace (actions,
    /// results, injected faults).
    pub trace: Vec<String>,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation seed {} failed at step {}: {}", self.seed, self.step, self.message)?;
        writeln!(f, "replay: nagare simulate --start {} --seeds 1", self.seed)?;
        writeln!(f, "processes, then the end of the trace:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SimFailure {}

/// Run one seed.
pub fn run_seed(seed: u64, opts: &SimOptions) -> Result<SimReport, SimFailure> {
    world::Sim::new(seed, opts.clone()).run()
}

/// Run seeds `start..start + count`, calling `progress` after each; stops at the
/// first failure.
pub fn run_seeds(
    start: u64,
    count: u64,
    opts: &SimOptions,
    mut progress: impl FnMut(&SimReport),
) -> Result<Vec<SimReport>, SimFailure> {
    let mut out = Vec::new();
    for seed in start..start.saturating_add(count) {
        let r = run_seed(seed, opts)?;
        progress(&r);
        out.push(r);
    }
    Ok(out)
}
