//! The client-side request limiter: at most N requests in any 60 seconds per
//! access token. CloudSign blocks a token for a minute once it passes 800 a minute,
//! which would stall every instance of its user; waiting a little here is cheaper.
//!
//! The window is pure (time is passed in), so tests drive it with their own clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window the limit counts in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// CloudSign's limit per token and minute.
pub const MAX_PER_MINUTE: u32 = 800;

/// A sliding window of the instants of the last requests of one token.
#[derive(Debug)]
pub struct Window {
    limit: usize,
    sent: VecDeque<Instant>,
}

impl Window {
    pub fn new(limit: u32) -> Window {
        assert!(limit >= 1, "a limit of 0 would never let a request through");
        Window { limit: limit as usize, sent: VecDeque::new() }
    }

    /// Take a slot at `now`: `None` when the request may go now (the slot is
    /// taken), or how long to wait before asking again.
    pub fn acquire(&mut self, now: Instant) -> Option<Duration> {
        while self.sent.front().is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW) {
            self.sent.pop_front();
        }
        if self.sent.len() < self.limit {
            self.sent.push_back(now);
            return None;
        }
        let oldest = *self.sent.front().expect("the window is full, so not empty");
        Some((oldest + WINDOW).saturating_duration_since(now).max(Duration::from_millis(1)))
    }

    /// Requests counted in the window ending at `now`.
    pub fn in_window(&self, now: Instant) -> usize {
        self.sent.iter().filter(|t| now.saturating_duration_since(**t) < WINDOW).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_limit_in_any_minute() {
        let start = Instant::now();
        let mut w = Window::new(800);
        let mut clock = start;
        let mut sent = Vec::new();
        // 2,000 requests as fast as allowed: the clock jumps by the wait asked.
        while sent.len() < 2000 {
            match w.acquire(clock) {
                None => sent.push(clock),
                Some(wait) => clock += wait,
            }
        }
        for (i, t) in sent.iter().enumerate() {
            let in_minute = sent[i..].iter().take_while(|u| u.duration_since(*t) < WINDOW).count();
            assert!(in_minute <= 800, "{in_minute} requests in the minute from request {i}");
        }
        // The first 800 go at once, the 801st waits a whole minute.
        assert_eq!(sent[799], start);
        assert_eq!(sent[800], start + WINDOW);
        assert_eq!(sent[1600], start + 2 * WINDOW);
        assert_eq!(w.in_window(clock), 400, "the last 400 in the third minute");
    }

    #[test]
    fn slots_free_up_as_the_window_slides() {
        let t0 = Instant::now();
        let mut w = Window::new(2);
        assert_eq!(w.acquire(t0), None);
        assert_eq!(w.acquire(t0 + Duration::from_secs(30)), None);
        assert_eq!(w.acquire(t0 + Duration::from_secs(40)), Some(Duration::from_secs(20)));
        assert_eq!(w.acquire(t0 + Duration::from_secs(60)), None, "the first slot has left the window");
        assert_eq!(w.acquire(t0 + Duration::from_secs(61)), Some(Duration::from_secs(29)));
    }
}
