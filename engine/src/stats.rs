//! Counters the engine keeps about itself, for metrics endpoints.
//!
//! Plain atomics updated after each commit: reading them never takes a lock or
//! touches the store, so a scrape costs nothing. They describe this process since it
//! opened the store, except `tasks_open`, which is counted from the store at open.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the commit latency histogram buckets.
pub const COMMIT_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Live counters of one engine. See [`crate::Engine::stats`].
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) instances_started: AtomicU64,
    pub(crate) instances_completed: AtomicU64,
    pub(crate) instances_cancelled: AtomicU64,
    pub(crate) tasks_open: AtomicI64,
    /// Per bucket of [`COMMIT_BUCKETS`] (not cumulative), then one for +Inf.
    pub(crate) commit_buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    pub(crate) commit_nanos: AtomicU64,
    pub(crate) commits: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// Instances started since the engine opened.
    pub instances_started: u64,
    /// Instances completed since the engine opened.
    pub instances_completed: u64,
    /// Instances cancelled since the engine opened.
    pub instances_cancelled: u64,
    /// Tasks open now.
    pub tasks_open: i64,
    /// Cumulative counts per bucket of [`COMMIT_BUCKETS`], as Prometheus wants them.
    pub commit_buckets: Vec<(f64, u64)>,
    /// Commits since the engine opened.
    pub commits: u64,
    /// Total time of those commits, in seconds.
    pub commit_seconds_sum: f64,
}

impl Stats {
    pub(crate) fn record_commit(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = COMMIT_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(COMMIT_BUCKETS.len());
        self.commit_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.commit_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut cumulative = 0;
        let commit_buckets = COMMIT_BUCKETS
            .iter()
            .zip(&self.commit_buckets)
            .map(|(bound, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        StatsSnapshot {
            instances_started: self.instances_started.load(Ordering::Relaxed),
            instances_completed: self.instances_completed.load(Ordering::Relaxed),
            instances_cancelled: self.instances_cancelled.load(Ordering::Relaxed),
            tasks_open: self.tasks_open.load(Ordering::Relaxed),
            commit_buckets,
            commits: self.commits.load(Ordering::Relaxed),
            commit_seconds_sum: self.commit_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_overflow_counts_in_total_only() {
        let s = Stats::default();
        s.record_commit(Duration::from_micros(100));
        s.record_commit(Duration::from_millis(3));
        s.record_commit(Duration::from_secs(10));
        let snap = s.snapshot();
        assert_eq!(snap.commits, 3);
        assert_eq!(snap.commit_buckets[0], (0.0005, 1));
        assert_eq!(snap.commit_buckets[3], (0.005, 2));
        assert_eq!(snap.commit_buckets.last().unwrap().1, 2, "10 s is above the last bucket");
        assert!((snap.commit_seconds_sum - 10.0031).abs() < 1e-6);
    }
}
