//! Log capture for tests that read the log lines (shared by `#[path]` between the
//! test binaries of several crates).
//!
//! Why not a per-test `tracing::subscriber::set_default`: it misses lines.
//! - With a single scoped subscriber, tracing-core computes a callsite's interest
//!   from the subscriber of whichever thread hits the callsite first. When another
//!   test thread of the same binary (no subscriber) gets there first, the callsite
//!   is cached as `never` for the whole process and the capturing test never sees
//!   that line (the flaky `no_secret_reaches_the_logs`).
//! - A scoped subscriber only sees its own thread: lines from tokio blocking or
//!   worker threads are lost.
//!
//! So one global subscriber at TRACE for the whole test binary, installed by
//! [`install`] before a test logs anything, records every line from every thread,
//! each with the id of the thread that emitted it. A test reads what was logged
//! since its [`Mark`], or only the lines of its own thread.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, OnceLock};
use tracing_subscriber::fmt::format::FmtSpan;

/// Every formatted log line of this test binary.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// A position in the log: what comes after it was logged later.
#[derive(Clone, Copy)]
pub struct Mark(usize);

static LOGS: OnceLock<Logs> = OnceLock::new();

/// Install the global capturing subscriber (once; later calls return it). Call it
/// first in every test of a binary that reads logs, or in the helpers they all use:
/// other threads wait here until it is in place, so no callsite is first seen
/// without it.
pub fn install() -> &'static Logs {
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::CLOSE)
            .with_thread_ids(true)
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("log capture: another global subscriber is installed in this test binary");
        // Callsites registered before the subscriber existed were cached as
        // `never`; installing rebuilds them, this makes it explicit.
        tracing::callsite::rebuild_interest_cache();
        logs
    })
}

impl Logs {
    /// Now: read what comes after with [`Logs::since`].
    pub fn mark(&self) -> Mark {
        Mark(self.0.lock().unwrap().len())
    }

    /// Everything logged, by every thread and test, since `mark`.
    pub fn since(&self, mark: Mark) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[mark.0..]).into_owned()
    }

    /// Everything logged by this test binary so far.
    pub fn all(&self) -> String {
        self.since(Mark(0))
    }

    /// The lines logged since `mark` by the calling thread (a `current_thread`
    /// tokio test logs its futures here), not by tests running alongside.
    pub fn of_this_thread_since(&self, mark: Mark) -> String {
        // The same format as tracing-subscriber's `with_thread_ids`.
        let tag = format!(" {:0>2?} ", std::thread::current().id());
        self.since(mark).lines().filter(|l| l.contains(&tag)).map(|l| format!("{l}\n")).collect()
    }
}
