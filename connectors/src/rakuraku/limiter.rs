//! A client-side rate limit: at most N requests in any sliding window, per account.
//!
//! Rakuraku Seisan takes at most 20 requests a minute per account. Bursting into
//! its refusals would waste retries and delay the sync; instead each request
//! reserves the next free slot (now, or when the oldest of the last N leaves the
//! window) and waits for it. Reservations are taken under a lock, so concurrent
//! calls get distinct slots. The clock is injected ([`Clock`]) so tests run on
//! virtual time.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Time as seen by the limiter (and the emulator): elapsed since some start.
pub trait Clock: Send + Sync {
    fn now(&self) -> Duration;
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The real clock.
pub struct SystemClock(Instant);

impl SystemClock {
    pub fn shared() -> Arc<dyn Clock> {
        static CLOCK: OnceLock<Arc<SystemClock>> = OnceLock::new();
        CLOCK.get_or_init(|| Arc::new(SystemClock(Instant::now()))).clone()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when someone sleeps on it (tests).
#[derive(Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
    slept: Mutex<Duration>,
}

impl ManualClock {
    pub fn advance(&self, d: Duration) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
    /// Total time callers asked to sleep.
    pub fn slept(&self) -> Duration {
        *self.slept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        *self.slept.lock().unwrap_or_else(|p| p.into_inner()) += d;
        // Sleeping moves time to the end of the sleep (never backwards).
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += d;
        Box::pin(std::future::ready(()))
    }
}

/// Slots of one account.
#[derive(Debug)]
pub struct Window {
    max: usize,
    window: Duration,
    /// Times of the last `max` reserved requests, oldest first.
    slots: VecDeque<Duration>,
}

impl Window {
    pub fn new(max: usize, window: Duration) -> Window {
        assert!(max > 0, "a rate limit lets at least one request through");
        Window { max, window, slots: VecDeque::with_capacity(max) }
    }

    /// Reserve the earliest slot at or after `now`; returns how long to wait for it.
    pub fn reserve(&mut self, now: Duration) -> Duration {
        let latest = self.slots.back().copied().unwrap_or(Duration::ZERO);
        let mut at = now.max(latest);
        if self.slots.len() == self.max {
            let oldest = self.slots.pop_front().expect("full");
            at = at.max(oldest + self.window);
        }
        self.slots.push_back(at);
        debug_assert!(self.slots.len() <= self.max);
        at - now
    }
}

/// Windows by account key, shared by every client of the process.
pub struct Limiter {
    clock: Arc<dyn Clock>,
    windows: Mutex<HashMap<String, Window>>,
}

impl Limiter {
    pub fn new(clock: Arc<dyn Clock>) -> Limiter {
        Limiter { clock, windows: Mutex::new(HashMap::new()) }
    }

    /// The limiter of the real clock, one per process (accounts are global).
    pub fn global() -> Arc<Limiter> {
        static L: OnceLock<Arc<Limiter>> = OnceLock::new();
        L.get_or_init(|| Arc::new(Limiter::new(SystemClock::shared()))).clone()
    }

    /// Wait until `account` may send another request (`per_minute` of them a minute).
    /// Returns the time waited.
    pub async fn acquire(&self, account: &str, per_minute: usize) -> Duration {
        let wait = {
            let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            let win = w.entry(account.to_string()).or_insert_with(|| Window::new(per_minute, Duration::from_secs(60)));
            if win.max != per_minute {
                *win = Window::new(per_minute, Duration::from_secs(60));
            }
            win.reserve(self.clock.now())
        };
        if !wait.is_zero() {
            tracing::info!(account, wait = ?wait, "rate limit: waiting for a free slot");
            self.clock.sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_a_minute_then_wait_for_the_oldest_to_leave() {
        let mut w = Window::new(20, Duration::from_secs(60));
        let t0 = Duration::from_secs(100);
        for _ in 0..20 {
            assert_eq!(w.reserve(t0), Duration::ZERO);
        }
        assert_eq!(w.reserve(t0), Duration::from_secs(60), "21st waits a whole minute");
        assert_eq!(w.reserve(t0 + Duration::from_secs(10)), Duration::from_secs(50));
        // Later, the window has room again.
        assert_eq!(w.reserve(t0 + Duration::from_secs(200)), Duration::ZERO);
    }

    #[test]
    fn no_window_ever_holds_more_than_the_limit() {
        let mut w = Window::new(3, Duration::from_secs(60));
        let mut times = Vec::new();
        let mut now = Duration::ZERO;
        for i in 0..40u64 {
            now += Duration::from_secs(i % 7);
            times.push(now + w.reserve(now));
        }
        assert!(times.windows(2).all(|p| p[0] <= p[1]), "slots in order");
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|u| **u < *t + Duration::from_secs(60)).count();
            assert!(in_window <= 3, "{in_window} requests within a minute from {t:?}");
        }
    }

    #[tokio::test]
    async fn acquire_sleeps_on_the_injected_clock() {
        let clock = Arc::new(ManualClock::default());
        let l = Limiter::new(clock.clone());
        for _ in 0..20 {
            assert_eq!(l.acquire("acct", 20).await, Duration::ZERO);
        }
        assert_eq!(l.acquire("other", 20).await, Duration::ZERO, "accounts are separate");
        assert_eq!(l.acquire("acct", 20).await, Duration::from_secs(60));
        assert_eq!(clock.slept(), Duration::from_secs(60));
    }
}
