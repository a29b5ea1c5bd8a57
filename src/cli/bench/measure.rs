//! What every benchmark shares: temp directories, RSS from /proc, percentiles,
//! rounding, and the one result line in the peers' JSON shape
//! (`shared/peers/py/bench.py`), so every figure sits in the same table.

use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Removes a run's directory when the run ends, also on error.
pub struct TempDir(pub PathBuf);

/// A fresh directory `nagare-bench-<pid>-<name>-<nanos>` under `root`, removed on drop.
pub fn temp_dir(root: &Path, name: &str) -> anyhow::Result<TempDir> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let dir = root.join(format!("nagare-bench-{}-{name}-{}", std::process::id(), stamp.as_nanos()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(TempDir(dir))
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Bytes under `dir` (files only, recursively); 0 where it cannot be read.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A field of /proc/self/status in MiB (VmRSS, VmHWM); 0 where there is none.
pub fn proc_status_mb(field: &str) -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else { return 0.0 };
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Reset VmHWM so that each run reports its own peak (Linux; best effort).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `x` rounded to `digits` decimals (for JSON lines that stay readable).
pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// Latencies of one run, sorted once; percentiles by the nearest-rank method.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut all: Vec<Duration>) -> Self {
        all.sort_unstable();
        Latencies(all)
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p` quantile (0.0–1.0) in milliseconds, rounded to µs; 0 when empty.
    pub fn ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len());
        round(self.0[rank - 1].as_secs_f64() * 1000.0, 3)
    }

    pub fn max_ms(&self) -> f64 {
        self.ms(1.0)
    }
}

/// One result line, keys as in `shared/peers/py/bench.py`, plus latency
/// percentiles. Every benchmark prints at least one of these.
#[derive(Serialize, Debug, Clone)]
pub struct PeersLine {
    pub engine: &'static str,
    pub version: &'static str,
    pub runtime: String,
    pub case: String,
    pub mode: String,
    pub n: usize,
    pub warmup: usize,
    pub seconds: f64,
    /// Units per second: instances, round trips, items, pages (see `case`).
    pub ips: f64,
    pub us_per_instance: f64,
    pub steps_per_instance: f64,
    pub snapshots_per_instance: f64,
    pub snapshot_avg_bytes: u64,
    pub deploy_ms: f64,
    pub rss_start_mb: f64,
    pub peak_rss_mb: f64,
    /// Time of one unit (an instance from start to end, a round trip, a page).
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl PeersLine {
    /// A line for `n` units in `seconds` with these latencies; the engine-specific
    /// fields (steps, snapshots, deploy, RSS) are zero until set.
    pub fn new(
        case: impl Into<String>,
        mode: impl Into<String>,
        threads: usize,
        n: usize,
        seconds: f64,
        lat: &Latencies,
    ) -> Self {
        PeersLine {
            engine: "nagare",
            version: env!("CARGO_PKG_VERSION"),
            runtime: format!("rust ({threads} thread{})", if threads == 1 { "" } else { "s" }),
            case: case.into(),
            mode: mode.into(),
            n,
            warmup: 0,
            seconds: round(seconds, 4),
            ips: if seconds > 0.0 { round(n as f64 / seconds, 1) } else { 0.0 },
            us_per_instance: if n > 0 { round(seconds / n as f64 * 1e6, 1) } else { 0.0 },
            steps_per_instance: 0.0,
            snapshots_per_instance: 0.0,
            snapshot_avg_bytes: 0,
            deploy_ms: 0.0,
            rss_start_mb: 0.0,
            peak_rss_mb: round(proc_status_mb("VmHWM"), 1),
            p50_ms: lat.ms(0.50),
            p99_ms: lat.ms(0.99),
        }
    }

    /// One human line on stderr (the JSON goes to stdout).
    pub fn say(&self) {
        eprintln!(
            "{:<9} {:<22} {:>9.0} /s  p50 {:.3} ms  p99 {:.3} ms",
            self.case, self.mode, self.ips, self.p50_ms, self.p99_ms
        );
    }

    pub fn print(&self) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string(self)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_empty_is_zero() {
        let lat = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(lat.ms(0.5), 50.0);
        assert_eq!(lat.ms(0.99), 99.0);
        assert_eq!(lat.max_ms(), 100.0);
        assert_eq!(Latencies::default().ms(0.99), 0.0);
        assert_eq!(round(1.23456, 2), 1.23);
    }
}
