//! Faults an emulator injects on request (latency, 429, 500), shared by the kintone
//! and CloudSign emulators so that tests drive both the same way.

use serde::{Deserialize, Serialize};

/// Faults to inject into the next requests (set over the emulator's API or in code).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Delay before every answer, in milliseconds.
    pub latency_ms: u64,
    /// The next N requests answer 500.
    pub fail_next: u32,
    /// The next N requests answer 429.
    pub throttle_next: u32,
    /// `Retry-After` sent with a 429, in seconds.
    pub retry_after_secs: Option<u64>,
}

impl Faults {
    /// Use up the next fault, if any: (status, `Retry-After` seconds). Throttling
    /// comes before failing.
    pub(crate) fn take(&mut self) -> Option<(u16, Option<u64>)> {
        if self.throttle_next > 0 {
            self.throttle_next -= 1;
            Some((429, self.retry_after_secs))
        } else if self.fail_next > 0 {
            self.fail_next -= 1;
            Some((500, None))
        } else {
            None
        }
    }
}
