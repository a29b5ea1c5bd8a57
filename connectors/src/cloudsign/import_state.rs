//! The durable state of a CloudSign import integration: its management id, the
//! high-water mark, the documents that failed last time, and which run holds it.
//!
//! One integration per CloudSign client id (seed 001): the state is keyed by the
//! host and a digest of the client id, so two deployed copies of the import
//! process that point at the same client id share one state (and one management
//! id), and copies with different client ids never see each other's marks.
//!
//! Kept in `<dir>/cloudsign-import-<key>.json` (temp file + fsync + rename), or in
//! memory when the connector has no state directory. Each run is an instance;
//! runs take the integration in turn (a lease held by the instance id), so an
//! overlapping run (yesterday's run still waiting for reviews) does nothing
//! instead of listing the same documents again. A lease older than
//! [`LEASE_TIMEOUT_DAYS`] is taken over: a cancelled run does not block forever.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// A run that held the integration this long without committing loses it.
pub const LEASE_TIMEOUT_DAYS: i64 = 7;
/// Most documents kept for a retry; more failures in one run fail the commit
/// (the run stays an incident and nothing is forgotten).
pub const MAX_FAILED: usize = 10_000;

/// The state of one integration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    /// Auto-issued on first use (`CS-` and 8 hex digits); names the integration in
    /// every report and error.
    pub management_id: String,
    /// Documents last processed at or after this time (CloudSign's `from`, RFC 3339)
    /// are listed by the next run; `None` before the first successful run.
    #[serde(default)]
    pub mark: Option<String>,
    /// Documents last processed exactly at `mark` that a run already handled: the
    /// next run lists from `mark` inclusive (nothing concluded in that same second
    /// is missed) and leaves these out (a discarded entry is not offered again).
    #[serde(default)]
    pub at_mark: Vec<String>,
    /// Documents whose files could not be stored last time; the next run retries them.
    #[serde(default)]
    pub failed: Vec<String>,
    /// The run holding the integration.
    #[serde(default)]
    pub run: Option<Lease>,
    /// Runs committed so far.
    #[serde(default)]
    pub runs: u64,
    #[serde(default)]
    pub last_commit: Option<DateTime<Utc>>,
    /// The run that committed last (a retried commit of it is answered, not refused).
    #[serde(default)]
    pub committed_by: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub instance: u64,
    pub since: DateTime<Utc>,
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("the import state {path} cannot be used: {reason}")]
    Io { path: String, reason: String },
    #[error(
        "run {instance} does not hold the integration {management_id} (held by {holder:?}); it may not move the mark"
    )]
    NotHolder { instance: u64, management_id: String, holder: Option<u64> },
    #[error("{0} documents failed; at most {MAX_FILED} are kept for a retry", MAX_FILED = MAX_FAILED)]
    TooManyFailed(usize),
}

/// What [`Marks::begin`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Begun {
    pub state: Integration,
    /// Another run holds the integration: this run should do nothing.
    pub busy_with: Option<u64>,
}

/// Integration states by key: a directory of JSON files, or memory.
pub struct Marks {
    dir: Option<PathBuf>,
    /// Every read-modify-write goes through this lock; without a directory the
    /// states live here.
    cache: Mutex<HashMap<String, Integration>>,
}

fn issue_id() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the OS has randomness");
    format!("CS-{}", b.iter().map(|x| format!("{x:02X}")).collect::<String>())
}

impl Marks {
    pub fn new(dir: Option<PathBuf>) -> Marks {
        Marks { dir, cache: Mutex::new(HashMap::new()) }
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("cloudsign-import-{key}.json")))
    }

    fn io(&self, key: &str, e: impl std::fmt::Display) -> StateError {
        StateError::Io {
            path: self.path(key).map(|p| p.display().to_string()).unwrap_or_else(|| "(memory)".into()),
            reason: e.to_string(),
        }
    }

    fn load(&self, cache: &mut HashMap<String, Integration>, key: &str) -> Result<Integration, StateError> {
        // A file is read every time: two connector instances of one host and client
        // id share it (a memory copy per instance could go stale).
        if let (None, Some(s)) = (&self.dir, cache.get(key)) {
            return Ok(s.clone());
        }
        let state = match self.path(key) {
            Some(p) => match std::fs::read(&p) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.io(key, e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Integration::default(),
                Err(e) => return Err(self.io(key, e)),
            },
            None => Integration::default(),
        };
        cache.insert(key.to_string(), state.clone());
        Ok(state)
    }

    fn save(&self, cache: &mut HashMap<String, Integration>, key: &str, s: Integration) -> Result<(), StateError> {
        if let Some(p) = self.path(key) {
            let bytes = serde_json::to_vec_pretty(&s).map_err(|e| self.io(key, e))?;
            write_durably(&p, &bytes).map_err(|e| self.io(key, e))?;
        }
        cache.insert(key.to_string(), s);
        Ok(())
    }

    /// The state of `key` (a management id is issued on first use).
    pub fn get(&self, key: &str) -> Result<Integration, StateError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = self.load(&mut cache, key)?;
        if s.management_id.is_empty() {
            s.management_id = issue_id();
            self.save(&mut cache, key, s.clone())?;
        }
        Ok(s)
    }

    /// Run `instance` takes the integration (again, on a retry), unless another
    /// run holds it and its lease has not timed out.
    pub fn begin(&self, key: &str, instance: u64, now: DateTime<Utc>) -> Result<Begun, StateError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = self.load(&mut cache, key)?;
        if s.management_id.is_empty() {
            s.management_id = issue_id();
        }
        if let Some(l) = &s.run {
            let fresh = now - l.since < chrono::Duration::days(LEASE_TIMEOUT_DAYS);
            if l.instance != instance && fresh {
                let holder = l.instance;
                return Ok(Begun { state: s, busy_with: Some(holder) });
            }
            if l.instance == instance {
                return Ok(Begun { state: s, busy_with: None });
            }
            tracing::warn!(management_id = %s.management_id, stale = l.instance, instance, "a run's lease timed out; taken over");
        }
        s.run = Some(Lease { instance, since: now });
        self.save(&mut cache, key, s.clone())?;
        Ok(Begun { state: s, busy_with: None })
    }

    /// Run `instance` is done: the mark moves to `mark` (never backwards), the
    /// failed documents are kept for the next run, the lease is released. A commit
    /// repeated by a retry of the same run (lease already released by it) answers
    /// the state as it is.
    pub fn commit(
        &self,
        key: &str,
        instance: u64,
        mark: Option<String>,
        at_mark: Vec<String>,
        failed: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<Integration, StateError> {
        if failed.len() > MAX_FAILED {
            return Err(StateError::TooManyFailed(failed.len()));
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = self.load(&mut cache, key)?;
        match &s.run {
            Some(l) if l.instance == instance => {}
            None if s.committed_by == Some(instance) => return Ok(s),
            other => {
                return Err(StateError::NotHolder {
                    instance,
                    management_id: s.management_id.clone(),
                    holder: other.as_ref().map(|l| l.instance),
                })
            }
        }
        if let Some(m) = mark {
            // Compare as times (RFC 3339 text of different shapes does not sort).
            let order = match (&s.mark, DateTime::parse_from_rfc3339(&m)) {
                (_, Err(_)) => std::cmp::Ordering::Less,
                (None, Ok(_)) => std::cmp::Ordering::Greater,
                (Some(old), Ok(new)) => {
                    DateTime::parse_from_rfc3339(old).map(|o| new.cmp(&o)).unwrap_or(std::cmp::Ordering::Greater)
                }
            };
            match order {
                std::cmp::Ordering::Greater => {
                    s.mark = Some(m);
                    s.at_mark = at_mark;
                }
                std::cmp::Ordering::Equal => s.at_mark.extend(at_mark),
                std::cmp::Ordering::Less => {}
            }
            s.at_mark.sort();
            s.at_mark.dedup();
            s.at_mark.truncate(MAX_FAILED);
        }
        let mut failed = failed;
        failed.sort();
        failed.dedup();
        s.failed = failed;
        s.run = None;
        s.runs += 1;
        s.last_commit = Some(now);
        s.committed_by = Some(instance);
        self.save(&mut cache, key, s.clone())?;
        Ok(s)
    }
}

/// A temporary file, fsynced, renamed over `path`, and the directory fsynced.
fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn runs_take_turns_and_the_mark_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let m = Marks::new(Some(dir.path().to_path_buf()));
        let now = t("2026-12-01T00:00:00Z");
        let a = m.begin("k", 1, now).unwrap();
        assert!(a.busy_with.is_none() && a.state.management_id.starts_with("CS-"));
        assert_eq!(m.begin("k", 2, now).unwrap().busy_with, Some(1), "an overlapping run waits its turn");
        assert!(m.begin("k", 1, now).unwrap().busy_with.is_none(), "a retry of the holder goes on");
        let s =
            m.commit("k", 1, Some("2026-12-01T00:00:00Z".into()), vec!["d1".into()], vec!["d2".into()], now).unwrap();
        assert_eq!((s.mark.as_deref(), s.failed.as_slice()), (Some("2026-12-01T00:00:00Z"), &["d2".to_string()][..]));
        assert!(m.commit("k", 1, None, vec![], vec![], now).is_ok(), "a repeated commit of the same run is harmless");
        assert!(matches!(m.commit("k", 2, None, vec![], vec![], now), Err(StateError::NotHolder { .. })));
        m.begin("k", 2, now).unwrap();
        let s = m.commit("k", 2, Some("2026-11-01T00:00:00Z".into()), vec!["old".into()], vec![], now).unwrap();
        assert_eq!(s.mark.as_deref(), Some("2026-12-01T00:00:00Z"), "never backwards");
        assert_eq!(s.at_mark, vec!["d1".to_string()], "the boundary of the mark in force");
        // Durable: a fresh store reads the same state, management id included.
        let again = Marks::new(Some(dir.path().to_path_buf())).get("k").unwrap();
        assert_eq!(again.management_id, s.management_id);
        assert_eq!(again.runs, 2);
    }

    #[test]
    fn a_stale_lease_is_taken_over() {
        let m = Marks::new(None);
        m.begin("k", 1, t("2026-12-01T00:00:00Z")).unwrap();
        let b = m.begin("k", 2, t("2026-12-09T00:00:00Z")).unwrap();
        assert!(b.busy_with.is_none());
        assert_eq!(b.state.run.map(|l| l.instance), Some(2));
    }
}
