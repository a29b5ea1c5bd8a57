//! The sled backend, with group commit.
//!
//! sled writes to its log in memory and syncs only every 500 ms by itself, so a
//! commit that must survive `kill -9` or power loss calls `flush`. Flushing is the
//! slow part, so concurrent commits share one: the first caller to find no flush
//! running becomes the leader and flushes everything written so far; the others wait
//! until a flush that started after their write has finished.

use super::kv::{Kv, KvPair, Op};
use super::StoreError;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

/// Whether `apply` waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before acknowledging (group commit). The default.
    Flush,
    /// Leave syncing to sled's background flusher (up to 500 ms of loss on a crash
    /// of the machine; a killed process loses nothing). For bulk loads and tests.
    Relaxed,
}

pub struct SledKv {
    db: sled::Db,
    tree: sled::Tree,
    durability: Durability,
    written: AtomicU64,
    flush: Mutex<FlushState>,
    flushed_cv: Condvar,
}

#[derive(Default)]
struct FlushState {
    flushing: bool,
    flushed: u64,
}

/// How long `open` waits for a lock that a closing handle is about to release.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl SledKv {
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        // sled releases its file lock from a background thread shortly after the last
        // handle drops, so a restart in the same process (or right after the previous
        // process exited) may find it still held for a moment: wait a little for it.
        let mut waited = std::time::Duration::ZERO;
        loop {
            match Self::open_once(path) {
                Err(StoreError::Locked { .. }) if waited < LOCK_WAIT => {
                    std::thread::sleep(LOCK_POLL);
                    waited += LOCK_POLL;
                }
                Err(e) => return Err(e),
                Ok((db, tree)) => {
                    return Ok(SledKv {
                        db,
                        tree,
                        durability,
                        written: AtomicU64::new(0),
                        flush: Mutex::new(FlushState::default()),
                        flushed_cv: Condvar::new(),
                    })
                }
            }
        }
    }

    fn open_once(path: &Path) -> Result<(sled::Db, sled::Tree), StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(128 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref ioe)
                    if ioe.kind() == std::io::ErrorKind::WouldBlock || ioe.to_string().contains("lock") =>
                {
                    StoreError::Locked { path: path.display().to_string(), reason: ioe.to_string() }
                }
                other => io(other),
            })?;
        let tree = db.open_tree("nagare").map_err(io)?;
        Ok((db, tree))
    }

    /// Wait until everything written up to `ticket` is on disk, sharing flushes.
    fn sync_up_to(&self, ticket: u64) -> Result<(), StoreError> {
        let mut st = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if st.flushed >= ticket {
                return Ok(());
            }
            if st.flushing {
                st = self.flushed_cv.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.flushing = true;
            let target = self.written.load(Ordering::SeqCst);
            drop(st);
            // A panic inside sled must not leave `flushing` set: every later commit
            // would wait for a flush that never ends.
            let result = crate::contain::catch(|| self.db.flush())
                .unwrap_or_else(|panic| Err(sled::Error::ReportableBug(format!("flush panicked: {panic}"))));
            st = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
            st.flushing = false;
            if result.is_ok() {
                st.flushed = st.flushed.max(target);
            }
            self.flushed_cv.notify_all();
            result.map_err(io)?;
        }
    }
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io))
            .collect()
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch).map_err(io)?;
        let ticket = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        match self.durability {
            Durability::Flush => self.sync_up_to(ticket),
            Durability::Relaxed => Ok(()),
        }
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<KvPair>, StoreError> {
        let start = if from > prefix { from } else { prefix };
        self.tree
            .range(start..)
            .take_while(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .take(limit)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(io))
            .collect()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }

    fn last(&self, prefix: &[u8]) -> Result<Option<KvPair>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .next_back()
            .transpose()
            .map(|o| o.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .map_err(io)
    }
}
