//! The gallery's one clock, passed in ([`Gallery::open_with_clock`](super::Gallery)):
//! every time the gallery writes (record creation times, sync versions, when an op id
//! was seen, the op-id retention's cutoff, export versions) comes from it, so tests set
//! time ([`ManualClock`]) instead of sleeping. Not covered: the `ts` field of
//! operations (informational), `Accounts` (clients and tokens) and the login throttle
//! (monotonic, already given its instant by its callers).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Wall-clock time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;

    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// The system's clock (the daemon's).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::store::now_ms()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn starting_at(ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(ms))
    }

    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
