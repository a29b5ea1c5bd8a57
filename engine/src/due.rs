//! The in-memory view of the due queue: a bounded window over the store's `q/` index.
//!
//! A million scheduled timers must not cost a million entries in memory. The store
//! keeps every job ordered by due time; this window holds only the earliest `cap`
//! of them. Invariant: every stored job whose (due, id) is at or before `horizon` is
//! in the window (or taken by the executor); jobs after it are only in the store. With
//! no horizon the window holds every job. When the window runs low it is refilled
//! from the store, strictly after the horizon.

use std::collections::BTreeSet;

/// (due in ms since the epoch, job id): the precision of the store's index keys.
pub type Entry = (i64, String);

#[derive(Debug)]
pub struct DueQueue {
    window: BTreeSet<Entry>,
    /// `None`: the window holds every job.
    horizon: Option<Entry>,
    cap: usize,
}

impl DueQueue {
    /// An empty window that must be filled from the store before use.
    pub fn unloaded(cap: usize) -> Self {
        DueQueue { window: BTreeSet::new(), horizon: Some((i64::MIN, String::new())), cap: cap.max(2) }
    }

    pub fn insert(&mut self, e: Entry) {
        if self.horizon.as_ref().is_some_and(|h| e > *h) {
            return; // the store has it; a refill will bring it in order
        }
        self.window.insert(e);
        if self.window.len() > self.cap {
            self.window.pop_last();
            self.horizon = self.window.last().cloned();
        }
    }

    pub fn remove(&mut self, e: &Entry) {
        self.window.remove(e);
    }

    pub fn first(&self) -> Option<&Entry> {
        self.window.first()
    }

    pub fn pop_first(&mut self) -> Option<Entry> {
        self.window.pop_first()
    }

    /// Whether the store holds jobs the window should load now.
    pub fn needs_refill(&self) -> bool {
        self.horizon.is_some() && self.window.len() <= self.cap / 2
    }

    /// Where a refill scan starts (exclusive) and how many entries it may load.
    pub fn refill_request(&self) -> Option<(Entry, usize)> {
        self.horizon.clone().map(|h| (h, self.cap - self.window.len()))
    }

    /// Take the entries a refill loaded; `asked` is how many were requested.
    pub fn refill(&mut self, loaded: Vec<Entry>, asked: usize) {
        let complete = loaded.len() < asked;
        let last = loaded.last().cloned();
        self.window.extend(loaded);
        self.horizon = if complete { None } else { last.or(self.horizon.take()) };
    }

    /// Most entries held in memory.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Entries in memory (not all pending jobs when the store holds more).
    pub fn len(&self) -> usize {
        self.window.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(ms: i64) -> Entry {
        (ms, format!("j{ms}"))
    }

    /// A store of `n` entries, the window over it, and draining in order.
    #[test]
    fn window_stays_bounded_and_drains_in_order() {
        let store: Vec<Entry> = (0..100).map(|i| e(i * 10)).collect();
        let mut q = DueQueue::unloaded(8);
        let mut out = Vec::new();
        loop {
            if q.needs_refill() {
                let (after, n) = q.refill_request().unwrap();
                let loaded: Vec<Entry> = store.iter().filter(|x| **x > after).take(n).cloned().collect();
                q.refill(loaded, n);
            }
            assert!(q.len() <= 8);
            match q.pop_first() {
                Some(x) => out.push(x),
                None if q.needs_refill() => continue,
                None => break,
            }
        }
        assert_eq!(out, store);
    }

    #[test]
    fn inserts_beyond_the_horizon_wait_in_the_store() {
        let mut q = DueQueue::unloaded(4);
        q.refill(vec![e(1), e(2), e(3), e(4)], 4);
        q.insert(e(100));
        assert_eq!(q.len(), 4, "past the horizon: not loaded");
        q.insert(e(0));
        assert_eq!(q.len(), 4, "the largest is evicted");
        assert_eq!(q.first(), Some(&e(0)));
        assert_eq!(q.refill_request().unwrap().0, e(3));
    }
}
