//! A simulated disk under the key-value store: it knows which writes are durable.
//!
//! Every `apply` writes to the visible state and then flushes, as the sled backend
//! does with [`crate::store::Durability::Flush`]. Faults are drawn from the disk's
//! own random stream: an `apply` can fail before writing anything, or write and then
//! fail its flush (the caller gets an error, but the write is visible and may still
//! reach the disk: its outcome is unknown); a failed flush may keep failing for a
//! few more writes, as a full disk does. A background flush (sled's own flusher)
//! can make such writes durable later; a [`Disk::crash`] throws away everything not
//! flushed. Handles opened before a crash fail from then on, as a dead process would.

use super::rng::Rng;
use crate::store::{Kv, KvPair, Op, StoreError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// How often each fault happens, per thousand operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultRates {
    pub apply_fails: u32,
    pub flush_fails: u32,
}

struct State {
    durable: Map,
    visible: Map,
    /// Batches written but not flushed.
    unflushed: usize,
    /// Their writes, in order: replayed onto `durable` by a flush.
    pending: Vec<Op>,
    epoch: u64,
    rng: Rng,
    rates: FaultRates,
    faults: u64,
    /// Further flushes that fail: a full disk stays full for a while.
    full_for: u32,
    /// Writes tried and crashes so far: the store changed only if this moved.
    changes: u64,
    log: Vec<String>,
}

/// The disk, shared by every store opened on it.
#[derive(Clone)]
pub struct Disk(Arc<Mutex<State>>);

impl Disk {
    pub fn new(rng: Rng) -> Self {
        Disk(Arc::new(Mutex::new(State {
            durable: Map::new(),
            visible: Map::new(),
            unflushed: 0,
            pending: Vec::new(),
            epoch: 0,
            rng,
            rates: FaultRates::default(),
            faults: 0,
            full_for: 0,
            changes: 0,
            log: Vec::new(),
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere (caught by the simulation) must not hide the disk.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle for a store opened now (after the last crash).
    pub fn open(&self) -> SimKv {
        SimKv { disk: self.clone(), epoch: self.state().epoch }
    }

    pub fn set_faults(&self, rates: FaultRates) {
        let mut s = self.state();
        s.rates = rates;
        s.full_for = 0;
    }

    /// Faults injected so far: an engine error without a new fault is a bug.
    pub fn faults(&self) -> u64 {
        self.state().faults
    }

    /// Changes (writes tried, crashes) so far: equal counts mean an unchanged store.
    pub fn changes(&self) -> u64 {
        self.state().changes
    }

    /// Fault lines since the last call, for the trace.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.state().log)
    }

    /// Writes applied but not yet durable.
    pub fn unflushed(&self) -> usize {
        self.state().unflushed
    }

    /// The background flusher ran: everything written so far is durable.
    pub fn background_flush(&self) {
        make_durable(&mut self.state());
    }

    /// The process died: what was not flushed is gone, open handles are dead.
    pub fn crash(&self) {
        let mut s = self.state();
        s.visible = s.durable.clone();
        s.unflushed = 0;
        s.pending.clear();
        s.epoch += 1;
        s.changes += 1;
    }
}

/// One store's handle on the [`Disk`].
pub struct SimKv {
    disk: Disk,
    epoch: u64,
}

impl SimKv {
    fn live(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        let s = self.disk.state();
        if s.epoch != self.epoch {
            return Err(StoreError::Io("simulated process crashed; this handle is dead".into()));
        }
        Ok(s)
    }
}

fn range(map: &Map, prefix: &[u8], from: &[u8], limit: usize) -> Vec<KvPair> {
    let start = if from > prefix { from } else { prefix };
    map.range(start.to_vec()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Kv for SimKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.live()?.visible.get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        Ok(range(&self.live()?.visible, prefix, prefix, limit))
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        Ok(range(&self.live()?.visible, prefix, from, limit))
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<KvPair>, StoreError> {
        let s = self.live()?;
        Ok(s.visible
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .last()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut s = self.live()?;
        s.changes += 1;
        let rates = s.rates;
        if s.rng.chance(rates.apply_fails) {
            s.faults += 1;
            s.log.push(format!("disk: apply of {} ops failed, nothing written", ops.len()));
            return Err(StoreError::Io("simulated write failure".into()));
        }
        for (k, v) in &ops {
            match v {
                Some(v) => s.visible.insert(k.clone(), v.clone()),
                None => s.visible.remove(k),
            };
        }
        s.pending.extend(ops);
        s.unflushed += 1;
        flush_locked(&mut s)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut s = self.live()?;
        flush_locked(&mut s)
    }
}

fn flush_locked(s: &mut State) -> Result<(), StoreError> {
    let rates = s.rates;
    let full = s.full_for > 0;
    if s.unflushed > 0 && (full || s.rng.chance(rates.flush_fails)) {
        s.full_for = match full {
            true => s.full_for - 1,
            false => s.rng.below(4) as u32,
        };
        s.faults += 1;
        s.log.push(format!("disk: flush failed, {} batch(es) written but not durable", s.unflushed));
        return Err(StoreError::Io("simulated flush failure (disk full)".into()));
    }
    make_durable(s);
    Ok(())
}

fn make_durable(s: &mut State) {
    for (k, v) in std::mem::take(&mut s.pending) {
        match v {
            Some(v) => s.durable.insert(k, v),
            None => s.durable.remove(&k),
        };
    }
    s.unflushed = 0;
}
