//! Failed-login budgets for the password endpoints: each client name and the whole
//! daemon may fail only so often, so a flood of guesses costs at most a few password
//! hashes a second and is then refused before any hashing.
//!
//! An attempt takes one unit from its name's bucket and from the global bucket
//! *before* the password is hashed (so concurrent guesses cannot all slip past a
//! check), and a success gives both back. Buckets refill continuously.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts one client name may make in a burst, then one per `NAME_REFILL`.
pub const NAME_BURST: f64 = 5.0;
pub const NAME_REFILL: Duration = Duration::from_secs(12);
/// Failed attempts all names together may make in a burst, then one per
/// `GLOBAL_REFILL`: at ~30 ms of hashing each, at most 10% of one core.
pub const GLOBAL_BURST: f64 = 20.0;
pub const GLOBAL_REFILL: Duration = Duration::from_millis(300);
/// Names tracked at once; beyond it, idle full buckets are dropped, and if none is,
/// only the global bucket limits (the map never grows without bound).
const MAX_NAMES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    units: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            units: burst,
            at: now,
        }
    }

    fn refill(&mut self, burst: f64, every: Duration, now: Instant) {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() / every.as_secs_f64();
        self.units = (self.units + gained).min(burst);
        self.at = now;
    }

    /// Seconds until one unit is back.
    fn wait(&self, every: Duration) -> u64 {
        ((1.0 - self.units).max(0.0) * every.as_secs_f64()).ceil() as u64
    }
}

#[derive(Debug)]
pub struct LoginThrottle {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    global: Bucket,
    names: HashMap<String, Bucket>,
}

/// One attempt's claim on the budgets; give it back with [`LoginThrottle::succeeded`].
#[derive(Debug)]
pub struct Attempt {
    name: Option<String>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            state: Mutex::new(State {
                global: Bucket::full(GLOBAL_BURST, Instant::now()),
                names: HashMap::new(),
            }),
        }
    }
}

impl LoginThrottle {
    /// Takes one unit for `name` and one globally, or says how many seconds to wait.
    pub fn begin(&self, name: &str) -> Result<Attempt, u64> {
        self.begin_at(name, Instant::now())
    }

    fn begin_at(&self, name: &str, now: Instant) -> Result<Attempt, u64> {
        // A poisoned lock only means another attempt panicked; the counts stay usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.global.refill(GLOBAL_BURST, GLOBAL_REFILL, now);
        // Names are bounded in length so the map's memory is bounded too.
        let key: String = name.chars().take(64).collect();
        if !state.names.contains_key(&key) && state.names.len() >= MAX_NAMES {
            state.names.retain(|_, b| {
                b.refill(NAME_BURST, NAME_REFILL, now);
                b.units < NAME_BURST
            });
        }
        let tracked = state.names.contains_key(&key) || state.names.len() < MAX_NAMES;
        let mut bucket = state
            .names
            .get(&key)
            .copied()
            .unwrap_or(Bucket::full(NAME_BURST, now));
        bucket.refill(NAME_BURST, NAME_REFILL, now);
        if bucket.units < 1.0 {
            return Err(bucket.wait(NAME_REFILL).max(1));
        }
        if state.global.units < 1.0 {
            return Err(state.global.wait(GLOBAL_REFILL).max(1));
        }
        state.global.units -= 1.0;
        bucket.units -= 1.0;
        if tracked {
            state.names.insert(key.clone(), bucket);
        }
        Ok(Attempt {
            name: tracked.then_some(key),
        })
    }

    /// The password was right: the attempt does not count.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.global.units = (state.global.units + 1.0).min(GLOBAL_BURST);
        if let Some(bucket) = attempt.name.and_then(|n| state.names.get_mut(&n)) {
            bucket.units = (bucket.units + 1.0).min(NAME_BURST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_refused_after_its_burst_and_others_still_pass() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..NAME_BURST as usize {
            t.begin_at("kiosk", now).unwrap();
        }
        let wait = t.begin_at("kiosk", now).unwrap_err();
        assert!(wait >= 1 && wait <= NAME_REFILL.as_secs(), "{wait}");
        t.begin_at("door", now).unwrap();
        // After one refill period, one more attempt.
        t.begin_at("kiosk", now + NAME_REFILL).unwrap();
        assert!(t.begin_at("kiosk", now + NAME_REFILL).is_err());
    }

    #[test]
    fn many_names_together_hit_the_global_budget() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..GLOBAL_BURST as usize {
            t.begin_at(&format!("guess{i}"), now).unwrap();
        }
        assert!(t.begin_at("another", now).is_err());
    }

    #[test]
    fn a_success_gives_its_unit_back() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..20 {
            let a = t.begin_at("kiosk", now).unwrap();
            t.succeeded(a);
        }
        t.begin_at("kiosk", now).unwrap();
    }

    #[test]
    fn the_name_map_stays_bounded() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_NAMES + 50) {
            // Refill the global bucket by moving time on.
            let _ = t.begin_at(&format!("n{i}"), now + GLOBAL_REFILL * (i as u32 + 1));
        }
        let names = t.state.lock().unwrap().names.len();
        assert!(names <= MAX_NAMES, "{names}");
    }
}
