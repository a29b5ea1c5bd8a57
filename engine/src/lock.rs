//! Locks that a panicking holder does not poison.
//!
//! std's `Mutex` refuses every later `lock` once a holder panicked. For the engine's
//! lock shards that would wedge every instance hashed to the shard for the life of
//! the process, because of one bad step. What these locks guard is either nothing
//! (the shards: the data is in the store) or in-memory state that is consistent
//! between statements (the due window, the workers' pool), so the next holder just
//! carries on.

use std::convert::Infallible;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub(crate) struct Lock<T>(Mutex<T>);

impl<T> Lock<T> {
    pub(crate) fn new(value: T) -> Self {
        Lock(Mutex::new(value))
    }

    /// Take the lock, also after a holder panicked. It never fails: the `Result`
    /// only keeps call sites shaped like std's (`.lock().expect(..)`).
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, T>, Infallible> {
        Ok(self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_holding_the_lock_does_not_wedge_it() {
        let lock = std::sync::Arc::new(Lock::new(1));
        let l2 = lock.clone();
        let r = std::thread::spawn(move || {
            let _g = l2.lock().expect("lock");
            panic!("holder panics");
        })
        .join();
        assert!(r.is_err());
        *lock.lock().expect("lock") += 1;
        assert_eq!(*lock.lock().expect("lock"), 2);
    }
}
