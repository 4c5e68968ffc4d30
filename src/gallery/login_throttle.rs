//! Failed-login budgets for the password endpoints: each peer address, each client
//! name and the whole daemon may fail only so often, so a flood of guesses costs at
//! most a few password hashes a second and is then refused before any hashing.
//!
//! An attempt takes one unit from its address's bucket, its name's bucket and the
//! global bucket *before* the password is hashed (so concurrent guesses cannot all slip
//! past a check), and a success gives them back. Buckets refill continuously. The
//! address budget keeps one machine guessing many names from spending the global
//! budget that every other client's logins share: alone it gets a sixth of it.
//! IPv6 peers count by their /64 (one host usually holds a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts one client name may make in a burst, then one per `NAME_REFILL`.
pub const NAME_BURST: f64 = 5.0;
pub const NAME_REFILL: Duration = Duration::from_secs(12);
/// Failed attempts all names together may make in a burst, then one per
/// `GLOBAL_REFILL`: at ~30 ms of hashing each, at most 10% of one core.
pub const GLOBAL_BURST: f64 = 20.0;
pub const GLOBAL_REFILL: Duration = Duration::from_millis(300);
/// Failed attempts one peer address may make in a burst, then one per `PEER_REFILL`.
pub const PEER_BURST: f64 = 10.0;
pub const PEER_REFILL: Duration = Duration::from_secs(2);
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
    peers: HashMap<IpAddr, Bucket>,
}

/// One attempt's claim on the budgets; give it back with [`LoginThrottle::succeeded`].
#[derive(Debug)]
pub struct Attempt {
    name: Option<String>,
    peer: Option<IpAddr>,
}

/// The address a peer's budget is kept under: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64.
fn peer_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Takes `key`'s bucket out of `map` (a full one if absent), refilled to `now`;
/// `None` when the map is full of buckets still in use (then this key is not limited
/// on its own, only by the global bucket).
fn bucket_for<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Bucket>,
    key: &K,
    (burst, every): (f64, Duration),
    now: Instant,
) -> (Bucket, bool) {
    if !map.contains_key(key) && map.len() >= MAX_NAMES {
        map.retain(|_, b| {
            b.refill(burst, every, now);
            b.units < burst
        });
    }
    let tracked = map.contains_key(key) || map.len() < MAX_NAMES;
    let mut bucket = map.get(key).copied().unwrap_or(Bucket::full(burst, now));
    bucket.refill(burst, every, now);
    (bucket, tracked)
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            state: Mutex::new(State {
                global: Bucket::full(GLOBAL_BURST, Instant::now()),
                names: HashMap::new(),
                peers: HashMap::new(),
            }),
        }
    }
}

impl LoginThrottle {
    /// Takes one unit for `name`, one for `peer` (when known) and one globally, or
    /// says how many seconds to wait.
    pub fn begin(&self, name: &str, peer: Option<IpAddr>) -> Result<Attempt, u64> {
        self.begin_at(name, peer, Instant::now())
    }

    fn begin_at(&self, name: &str, peer: Option<IpAddr>, now: Instant) -> Result<Attempt, u64> {
        // A poisoned lock only means another attempt panicked; the counts stay usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.global.refill(GLOBAL_BURST, GLOBAL_REFILL, now);
        // The address first: a refused flood from one machine touches nothing else.
        let peer = peer.map(peer_key);
        let mut peer_bucket = None;
        if let Some(ip) = peer {
            let (bucket, tracked) =
                bucket_for(&mut state.peers, &ip, (PEER_BURST, PEER_REFILL), now);
            if bucket.units < 1.0 {
                return Err(bucket.wait(PEER_REFILL).max(1));
            }
            peer_bucket = tracked.then_some((ip, bucket));
        }
        // Names are bounded in length so the map's memory is bounded too.
        let key: String = name.chars().take(64).collect();
        let (mut bucket, tracked) =
            bucket_for(&mut state.names, &key, (NAME_BURST, NAME_REFILL), now);
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
        if let Some((ip, mut b)) = peer_bucket {
            b.units -= 1.0;
            state.peers.insert(ip, b);
        }
        Ok(Attempt {
            name: tracked.then_some(key),
            peer: peer_bucket.map(|(ip, _)| ip),
        })
    }

    /// The password was right: the attempt does not count.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.global.units = (state.global.units + 1.0).min(GLOBAL_BURST);
        if let Some(bucket) = attempt.name.and_then(|n| state.names.get_mut(&n)) {
            bucket.units = (bucket.units + 1.0).min(NAME_BURST);
        }
        if let Some(bucket) = attempt.peer.and_then(|ip| state.peers.get_mut(&ip)) {
            bucket.units = (bucket.units + 1.0).min(PEER_BURST);
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
            t.begin_at("kiosk", None, now).unwrap();
        }
        let wait = t.begin_at("kiosk", None, now).unwrap_err();
        assert!(wait >= 1 && wait <= NAME_REFILL.as_secs(), "{wait}");
        t.begin_at("door", None, now).unwrap();
        // After one refill period, one more attempt.
        t.begin_at("kiosk", None, now + NAME_REFILL).unwrap();
        assert!(t.begin_at("kiosk", None, now + NAME_REFILL).is_err());
    }

    #[test]
    fn many_names_together_hit_the_global_budget() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..GLOBAL_BURST as usize {
            t.begin_at(&format!("guess{i}"), None, now).unwrap();
        }
        assert!(t.begin_at("another", None, now).is_err());
    }

    #[test]
    fn a_success_gives_its_unit_back() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..20 {
            let a = t.begin_at("kiosk", None, now).unwrap();
            t.succeeded(a);
        }
        t.begin_at("kiosk", None, now).unwrap();
    }

    #[test]
    fn one_address_guessing_many_names_is_stopped_and_leaves_the_global_budget_to_others() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let attacker: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..PEER_BURST as usize {
            t.begin_at(&format!("guess{i}"), Some(attacker), now)
                .unwrap();
        }
        let wait = t.begin_at("another", Some(attacker), now).unwrap_err();
        assert!(wait >= 1 && wait <= PEER_REFILL.as_secs(), "{wait}");
        // The same address mapped into IPv6 is the same peer.
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(t.begin_at("more", Some(mapped), now).is_err());
        // Refusals took nothing: the global budget has exactly what the burst left,
        // for other addresses.
        let left = (GLOBAL_BURST - PEER_BURST) as usize;
        for i in 0..left {
            let peer: IpAddr = format!("198.51.100.{i}").parse().unwrap();
            t.begin_at(&format!("user{i}"), Some(peer), now).unwrap();
        }
        let fresh: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(t.begin_at("someone", Some(fresh), now).is_err());
        // One refill period later, the address gets one more try.
        t.begin_at("late", Some(attacker), now + PEER_REFILL)
            .unwrap();
    }

    #[test]
    fn ipv6_peers_count_by_their_64_prefix() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..PEER_BURST as usize {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            t.begin_at(&format!("n{i}"), Some(ip), now).unwrap();
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(t.begin_at("x", Some(same_64), now).is_err());
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        t.begin_at("y", Some(other_64), now).unwrap();
    }

    #[test]
    fn a_success_gives_the_address_its_unit_back() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        for _ in 0..3 * PEER_BURST as usize {
            let a = t.begin_at("kiosk", Some(ip), now).unwrap();
            t.succeeded(a);
        }
    }

    #[test]
    fn the_name_map_stays_bounded() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_NAMES + 50) {
            // Refill the global bucket by moving time on.
            let _ = t.begin_at(&format!("n{i}"), None, now + GLOBAL_REFILL * (i as u32 + 1));
        }
        let names = t.state.lock().unwrap().names.len();
        assert!(names <= MAX_NAMES, "{names}");
    }
}
