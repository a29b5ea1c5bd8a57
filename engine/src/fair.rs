//! Fair share of the executor among processes: the stage between "due" and "run".
//!
//! The due window (`due`) is ordered by due time only, so a burst of ten
//! thousand jobs from one process would run before a job of another process that
//! came due a moment later. Due jobs therefore pass through this queue: one lane
//! per process, each ordered by priority (highest first), then due time, then id;
//! the lanes take turns by stride scheduling, a lane's share proportional to
//! `priority + 1` of the job it runs. So with two processes at the same priority
//! each gets every other free slot however many jobs either has waiting; a process
//! at priority 90 gets 91 slots for every 11 of one at priority 10; a job at
//! priority 0 still gets a turn (weight 1), so nothing starves.
//!
//! A lane that joins (or comes back after running dry) starts at the current
//! virtual time: idle processes bank no credit for a later burst.
//!
//! Deterministic: ties between lanes go to the process id in byte order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The stride of a job at priority `p` is `STRIDE / (p + 1)`; a multiple of every
/// weight's common factors is not needed, integer division errs by < 1e-6.
const STRIDE: u128 = 1 << 32;

/// A due job waiting for an executor slot: (due in ms, id), as in the due window.
pub type Entry = crate::due::Entry;

#[derive(Debug, Default)]
struct Lane {
    /// Virtual time at which this lane runs next.
    pass: u128,
    /// (priority, highest first; due; id).
    jobs: BTreeSet<(Reverse<u8>, i64, String)>,
}

/// Per-process lanes of due jobs, taken in weighted turns (see the module doc).
#[derive(Debug)]
pub struct FairQueue {
    lanes: BTreeMap<String, Lane>,
    /// Lanes by their next pass: (pass, process).
    turns: BTreeSet<(u128, String)>,
    /// job id → (process, priority, due): to withdraw an entry.
    index: HashMap<String, (String, u8, i64)>,
    /// The pass of the last lane that ran.
    vtime: u128,
    cap: usize,
    /// job id → (process, priority, due) of jobs committed to run soon, so that
    /// moving them here needs no store read; at most `cap`, dropped when used.
    hints: HashMap<String, (String, u8, i64)>,
}

impl FairQueue {
    /// A queue holding at most `cap` jobs ([`FairQueue::is_full`]).
    pub fn new(cap: usize) -> Self {
        FairQueue {
            lanes: BTreeMap::new(),
            turns: BTreeSet::new(),
            index: HashMap::new(),
            vtime: 0,
            cap: cap.max(1),
            hints: HashMap::new(),
        }
    }

    /// Jobs queued in all lanes.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// No job queued.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// No more jobs should be added until some were taken.
    pub fn is_full(&self) -> bool {
        self.index.len() >= self.cap
    }

    /// Add a due job of `process`. A job already queued is replaced.
    pub fn push(&mut self, process: &str, priority: u8, (due, id): Entry) {
        self.remove(&id);
        let lane = match self.lanes.get_mut(process) {
            Some(l) => l,
            None => {
                let lane = Lane { pass: self.vtime, jobs: BTreeSet::new() };
                self.turns.insert((lane.pass, process.to_string()));
                self.lanes.entry(process.to_string()).or_insert(lane)
            }
        };
        lane.jobs.insert((Reverse(priority), due, id.clone()));
        self.index.insert(id, (process.to_string(), priority, due));
    }

    /// Remember the process and priority of a job just committed (due at `due` ms),
    /// unless the hints are full (the job is then read from the store when due).
    pub fn hint(&mut self, id: String, process: String, priority: u8, due: i64) {
        if self.hints.len() < self.cap || self.hints.contains_key(&id) {
            self.hints.insert(id, (process, priority, due));
        }
    }

    /// The hint for the job of `entry`, if one was given for that due time.
    pub fn take_hint(&mut self, (due, id): &Entry) -> Option<(String, u8)> {
        match self.hints.remove(id) {
            Some((process, priority, at)) if at == *due => Some((process, priority)),
            _ => None,
        }
    }

    /// Withdraw job `id` (cancelled or moved to another due time). Whether it was queued.
    pub fn remove(&mut self, id: &str) -> bool {
        self.hints.remove(id);
        let Some((process, priority, due)) = self.index.remove(id) else { return false };
        let lane = self.lanes.get_mut(&process).expect("an indexed job has its lane");
        lane.jobs.remove(&(Reverse(priority), due, id.to_string()));
        if lane.jobs.is_empty() {
            let pass = lane.pass;
            self.lanes.remove(&process);
            self.turns.remove(&(pass, process));
        }
        true
    }

    /// The next job to run: the lane whose turn it is gives its first job.
    pub fn pop(&mut self) -> Option<Entry> {
        let (pass, process) = self.turns.pop_first()?;
        let lane = self.lanes.get_mut(&process).expect("every turn has its lane");
        let (Reverse(priority), due, id) = lane.jobs.pop_first().expect("lanes are never empty");
        self.index.remove(&id);
        self.vtime = pass;
        lane.pass = pass + STRIDE / (u128::from(priority) + 1);
        if lane.jobs.is_empty() {
            self.lanes.remove(&process);
        } else {
            self.turns.insert((lane.pass, process));
        }
        debug_assert_eq!(self.turns.len(), self.lanes.len(), "one turn per lane");
        Some((due, id))
    }

    /// The earliest due time of a queued job (all of them were due when queued).
    pub fn earliest(&self) -> Option<i64> {
        self.lanes.values().filter_map(|l| l.jobs.iter().map(|(_, due, _)| *due).min()).min()
    }
}

/// Hints for the jobs of a commit that come due within a second of `now` (later
/// ones would only fill the hints; they are read when due), but for those `skip`
/// names (jobs of external workers go through the store): (id, process,
/// priority, due in ms).
pub(crate) fn hints_of(
    jobs: &[(Option<crate::runtime::Job>, crate::runtime::Job)],
    now: chrono::DateTime<chrono::Utc>,
    skip: impl Fn(&crate::runtime::Job) -> bool,
) -> Vec<(String, String, u8, i64)> {
    let soon = now + chrono::Duration::seconds(1);
    jobs.iter()
        .map(|(_, j)| j)
        .filter(|j| j.due <= soon && !skip(j))
        .map(|j| (j.id.clone(), j.process.clone(), j.priority, j.due.timestamp_millis()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut FairQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop()).map(|(_, id)| id).collect()
    }

    #[test]
    fn a_flood_from_one_process_does_not_delay_another() {
        let mut q = FairQueue::new(100_000);
        for i in 0..10_000 {
            q.push("flood", 10, (i, format!("a{i:05}")));
        }
        q.push("other", 10, (20_000, "b".into()));
        let order = drain(&mut q);
        let at = order.iter().position(|id| id == "b").unwrap();
        assert!(at <= 1, "the other process's job ran at position {at}");
        assert_eq!(order.len(), 10_001);
    }

    #[test]
    fn shares_follow_priorities() {
        let mut q = FairQueue::new(100_000);
        for i in 0..1000 {
            q.push("low", 10, (i, format!("l{i:04}")));
            q.push("high", 90, (i, format!("h{i:04}")));
        }
        let first: Vec<String> = drain(&mut q).into_iter().take(102).collect();
        let high = first.iter().filter(|id| id.starts_with('h')).count();
        // 91 : 11 of every 102 turns.
        assert!((90..=92).contains(&high), "high got {high} of 102");
    }

    #[test]
    fn within_a_process_higher_priority_then_earlier_due() {
        let mut q = FairQueue::new(10);
        q.push("p", 50, (1, "old".into()));
        q.push("p", 80, (5, "urgent".into()));
        q.push("p", 50, (0, "older".into()));
        assert_eq!(drain(&mut q), ["urgent", "older", "old"]);
    }

    #[test]
    fn an_idle_process_banks_no_credit() {
        let mut q = FairQueue::new(1000);
        for i in 0..100 {
            q.push("a", 50, (i, format!("a{i:03}")));
        }
        for _ in 0..50 {
            q.pop();
        }
        // `b` arrives late with a burst: it alternates with `a`, it does not run 50 in a row.
        for i in 0..100 {
            q.push("b", 50, (i, format!("b{i:03}")));
        }
        let next: String = drain(&mut q).iter().take(10).map(|id| &id[..1]).collect();
        assert!(next == "ababababab" || next == "bababababa", "{next}");
    }

    #[test]
    fn withdrawn_jobs_leave_no_empty_lanes() {
        let mut q = FairQueue::new(10);
        q.push("p", 50, (1, "x".into()));
        q.push("q", 50, (1, "y".into()));
        assert!(q.remove("x"));
        assert!(!q.remove("x"));
        assert_eq!(q.len(), 1);
        assert_eq!(drain(&mut q), ["y"]);
        assert!(q.is_empty() && q.earliest().is_none());
    }
}
