//! The sled backend, with group commit.
//!
//! sled writes to its log in memory and syncs only every 500 ms by itself, so a
//! commit that must survive `kill -9` or power loss calls `flush`. Flushing is the
//! slow part, so concurrent commits share one, and also one sled batch: a commit
//! queues its writes; the first caller to find no leader becomes the leader, takes
//! every queued commit, applies them as one atomic sled batch and flushes once; the
//! others wait until a round that took their writes has finished (it answers each
//! of them: all written and durable, or all refused). A commit's writes become
//! visible when its round applies them, before it returns, as before. (sled applies
//! batches one at a time under a global lock anyway; one batch per round instead of
//! one per commit saves that lock, its wake-ups and a batch record per commit.)

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

/// A [`Kv`](super::Kv) on sled, in the data directory.
pub struct SledKv {
    db: sled::Db,
    tree: sled::Tree,
    durability: Durability,
    written: AtomicU64,
    flush: Mutex<FlushState>,
    flushed_cv: Condvar,
}

/// Rounds of the group commit: queued writes, and which tickets are done.
#[derive(Default)]
struct FlushState {
    /// A leader is applying and flushing a round now.
    flushing: bool,
    /// Tickets up to this one are done (written and flushed, or failed).
    flushed: u64,
    /// The last ticket handed out.
    issued: u64,
    /// Writes of the commits after `flushed` not taken by a round yet, in ticket order.
    queue: Vec<Vec<Op>>,
    /// Rounds that failed and whose commits have not all been told yet.
    failed: Vec<FailedRound>,
}

/// A round that failed: tickets `first..=last`, why, and how many of their
/// commits still have to read it (it is dropped when all have).
struct FailedRound {
    first: u64,
    last: u64,
    why: String,
    untold: u64,
}

/// How long `open` waits for a lock that a closing handle is about to release.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Why one attempt to open sled failed.
enum OpenFail {
    Store(StoreError),
    /// A snapshot that does not read back (no offset: not a log segment).
    Snapshot(String),
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl SledKv {
    /// Open (or create) the sled database at `path`; another process holding it is refused.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
        // sled releases its file lock from a background thread shortly after the last
        // handle drops, so a restart in the same process (or right after the previous
        // process exited) may find it still held for a moment: wait a little for it.
        let mut waited = std::time::Duration::ZERO;
        let mut quarantined = false;
        loop {
            match Self::open_once(path) {
                Err(OpenFail::Store(StoreError::Locked { .. })) if waited < LOCK_WAIT => {
                    std::thread::sleep(LOCK_POLL);
                    waited += LOCK_POLL;
                }
                // sled 0.34 writes a snapshot while it opens, as `snap.<lsn>.generating`
                // renamed to `snap.<lsn>` once complete; killed in between, the torn
                // `.generating` file sorts last and the next open reads it as the newest
                // snapshot and fails (spacejam/sled#1527; seen here once in ~80 kill -9s
                // of the crash test under load). A `.generating` file is incomplete by
                // construction: set it aside, sled then reads the last complete one.
                Err(OpenFail::Snapshot(msg)) if !quarantined => {
                    quarantined = true;
                    let moved = quarantine_snapshots(path)?;
                    tracing::warn!(path = %path.display(), error = %msg, moved = ?moved,
                        "store snapshot corrupt after an unclean stop; set aside, recovering from the log");
                }
                Err(OpenFail::Snapshot(msg)) => return Err(StoreError::Io(msg)),
                Err(OpenFail::Store(e)) => return Err(e),
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

    fn open_once(path: &Path) -> Result<(sled::Db, sled::Tree), OpenFail> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(128 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref ioe)
                    if ioe.kind() == std::io::ErrorKind::WouldBlock || ioe.to_string().contains("lock") =>
                {
                    OpenFail::Store(StoreError::Locked { path: path.display().to_string(), reason: ioe.to_string() })
                }
                sled::Error::Corruption { at: None, .. } => OpenFail::Snapshot(e.to_string()),
                other => OpenFail::Store(io(other)),
            })?;
        let tree = db.open_tree("nagare").map_err(|e| OpenFail::Store(io(e)))?;
        Ok((db, tree))
    }

    /// Queue `ops` for the next round of the group commit and wait until a round
    /// applied and flushed them (leading one if no one does).
    fn commit_grouped(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut st = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
        st.issued += 1;
        let ticket = st.issued;
        st.queue.push(ops);
        loop {
            if st.flushed >= ticket {
                let Some(at) = st.failed.iter().position(|f| (f.first..=f.last).contains(&ticket)) else {
                    return Ok(());
                };
                let why = st.failed[at].why.clone();
                st.failed[at].untold -= 1;
                if st.failed[at].untold == 0 {
                    st.failed.swap_remove(at);
                }
                return Err(StoreError::Io(why));
            }
            if st.flushing {
                st = self.flushed_cv.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead a round: everything queued so far, as one batch and one flush.
            st.flushing = true;
            let work = std::mem::take(&mut st.queue);
            let (first, last) = (st.flushed + 1, st.issued);
            debug_assert_eq!(work.len() as u64, last + 1 - first, "the queue holds exactly the tickets not done");
            drop(st);
            // A panic inside sled must not leave `flushing` set: every later commit
            // would wait for a round that never ends.
            let result = crate::contain::catch(|| {
                let ops = work.into_iter().flatten().collect();
                self.tree.apply_batch(batch_of(ops))?;
                self.written.fetch_add(1, Ordering::SeqCst);
                self.db.flush()
            })
            .unwrap_or_else(|panic| Err(sled::Error::ReportableBug(format!("commit panicked: {panic}"))));
            st = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
            st.flushing = false;
            st.flushed = last;
            if let Err(e) = result {
                st.failed.push(FailedRound { first, last, why: e.to_string(), untold: last + 1 - first });
            }
            self.flushed_cv.notify_all();
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
        match self.durability {
            Durability::Flush => self.commit_grouped(ops),
            Durability::Relaxed => {
                self.tree.apply_batch(batch_of(ops)).map_err(io)?;
                self.written.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
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

/// One sled batch of `ops`, in order (a later op on a key wins).
fn batch_of(ops: Vec<Op>) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (k, v) in ops {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    batch
}

/// Move sled's unfinished snapshot files (`snap.*.generating`) of the store at
/// `path` into a `snapshot-quarantine-<n>` folder beside them (kept for a
/// post-mortem, never read again); returns their names.
fn quarantine_snapshots(path: &Path) -> Result<Vec<String>, StoreError> {
    let fail = |e: std::io::Error| StoreError::Io(format!("{}: {e}", path.display()));
    let snaps: Vec<std::path::PathBuf> = std::fs::read_dir(path)
        .map_err(fail)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("snap.") && n.ends_with(".generating"))
        })
        .collect();
    let mut n = 0;
    let dir = loop {
        let d = path.join(format!("snapshot-quarantine-{n}"));
        if !d.exists() {
            break d;
        }
        n += 1;
    };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    let mut moved = Vec::new();
    for s in snaps {
        let name = s.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        std::fs::rename(&s, dir.join(&name)).map_err(fail)?;
        moved.push(name);
    }
    Ok(moved)
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    /// Concurrent durable commits share rounds (one sled batch and one flush each)
    /// and every commit is answered only once its writes are in the store.
    #[test]
    fn concurrent_commits_share_rounds_and_each_is_applied_when_answered() {
        let dir = std::env::temp_dir().join(format!("nagare-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kv = SledKv::open(&dir, Durability::Flush).unwrap();
        std::thread::scope(|s| {
            for t in 0..8u32 {
                let kv = &kv;
                s.spawn(move || {
                    for i in 0..50u32 {
                        let (a, b) = (format!("a/{t}/{i}"), format!("b/{t}/{i}"));
                        kv.apply(vec![
                            (a.clone().into_bytes(), Some(vec![1])),
                            (b.clone().into_bytes(), Some(vec![2])),
                        ])
                        .unwrap();
                        // Answered: both writes of the commit are there.
                        assert_eq!(kv.get(a.as_bytes()).unwrap(), Some(vec![1]));
                        assert_eq!(kv.get(b.as_bytes()).unwrap(), Some(vec![2]));
                    }
                });
            }
        });
        assert_eq!(kv.scan(b"a/", usize::MAX).unwrap().len(), 400);
        assert_eq!(kv.scan(b"b/", usize::MAX).unwrap().len(), 400);
        let st = kv.flush.lock().unwrap();
        assert_eq!((st.issued, st.flushed, st.queue.len(), st.failed.len()), (400, 400, 0, 0));
        let rounds = kv.written.load(Ordering::SeqCst);
        assert!((1..=400).contains(&rounds), "{rounds} rounds for 400 commits");
        drop(st);
        drop(kv);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Regression: after a kill -9 while sled wrote its snapshot during an open, the
    /// store did not open again ("Read corrupted data at file offset None"). The torn
    /// `.generating` snapshot is set aside and everything committed is still there.
    #[test]
    fn a_torn_snapshot_is_set_aside_and_the_data_kept() {
        let dir = std::env::temp_dir().join(format!("nagare-snap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let kv = SledKv::open(&dir, Durability::Flush).unwrap();
            for i in 0..500u32 {
                kv.tree.insert(format!("k{i:04}"), vec![7u8; 100]).unwrap();
            }
            kv.db.flush().unwrap();
        }
        // What a kill during the next open's snapshot leaves behind.
        std::fs::write(dir.join("snap.FFFFFFFFFFFFFFFF.generating"), b"torn: the writer was killed here").unwrap();
        let kv = SledKv::open(&dir, Durability::Flush).expect("opens after setting the torn snapshot aside");
        assert_eq!(kv.tree.len(), 500, "every committed key recovered from the log");
        assert!(dir.join("snapshot-quarantine-0").is_dir());
        drop(kv);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
