//! The open connections as the accept loop admits and evicts them: at most
//! `max_connections` in all and `max_connections_per_ip` from one address. When a cap
//! is full, the connection that has been idle longest (no request in progress: waiting
//! for its first request head, or kept alive between requests) is closed to admit the
//! new one; only when every connection under the cap is busy is the new one refused.
//! So a flood of idle connections, from one address or many, cannot keep anyone out:
//! it only churns itself, and a request that arrives gets in.
//!
//! A connection is busy from the moment its request head is parsed until its answer's
//! body has been sent (or dropped): the accept loop marks each request with
//! [`Conn::begin_request`], whose guard travels inside the response body.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// `Conn::state` of a connection chosen for eviction: no request may start on it.
const EVICTED: usize = usize::MAX;

/// One admitted connection.
#[derive(Debug)]
pub(super) struct Conn {
    id: u64,
    ip: IpAddr,
    /// Requests in progress, or `EVICTED`.
    state: AtomicUsize,
    /// When it last became idle, in ms since the registry's start.
    idle_since_ms: AtomicU64,
    /// Signalled when the connection is evicted; its task then drops it.
    close: Notify,
    registry: Arc<Registry>,
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<u64, Arc<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: u64,
}

#[derive(Debug)]
pub(super) struct Registry {
    started: Instant,
    max: usize,
    max_per_ip: usize,
    inner: Mutex<Inner>,
}

/// The admitted connection's place under the caps, given back when it ends.
#[derive(Debug)]
pub(super) struct Admitted(pub Arc<Conn>);

/// What `admit` did to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    Admitted { evicted: bool },
    Refused,
}

impl Registry {
    pub fn new(max: usize, max_per_ip: usize) -> Arc<Registry> {
        Arc::new(Registry {
            started: Instant::now(),
            max: max.max(1),
            max_per_ip: max_per_ip.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a thread panicked between two map updates, each
        // of which leaves the maps consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `ip`, evicting the longest-idle connection (of that
    /// address when its cap is full, else of all) if a cap is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> (Admission, Option<Admitted>) {
        let mut inner = self.lock();
        let mut evicted = false;
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            if !evict_longest_idle(&mut inner, Some(ip)) {
                return (Admission::Refused, None);
            }
            evicted = true;
        }
        if inner.conns.len() >= self.max {
            if !evict_longest_idle(&mut inner, None) {
                return (Admission::Refused, None);
            }
            evicted = true;
        }
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id: inner.next_id,
            ip,
            state: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
            registry: self.clone(),
        });
        inner.conns.insert(conn.id, conn.clone());
        *inner.per_ip.entry(ip).or_insert(0) += 1;
        (Admission::Admitted { evicted }, Some(Admitted(conn)))
    }

    /// Open connections (admitted and not yet ended or evicted).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

/// Removes the connection idle longest (of `ip` if given) from the counts and tells
/// it to close; false if every candidate is busy.
fn evict_longest_idle(inner: &mut Inner, ip: Option<IpAddr>) -> bool {
    let mut candidates: Vec<&Arc<Conn>> = inner
        .conns
        .values()
        .filter(|c| ip.is_none_or(|ip| c.ip == ip))
        .filter(|c| c.state.load(Ordering::Acquire) == 0)
        .collect();
    candidates.sort_by_key(|c| (c.idle_since_ms.load(Ordering::Relaxed), c.id));
    // A request may start between the filter and here: only a connection still idle
    // is taken (compare-and-swap), the next candidate otherwise.
    let Some(victim) = candidates
        .into_iter()
        .find(|c| {
            c.state
                .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
        .cloned()
    else {
        return false;
    };
    forget(inner, &victim);
    victim.close.notify_one();
    tracing::debug!(ip = %victim.ip, "idle connection closed to admit a new one");
    true
}

fn forget(inner: &mut Inner, conn: &Conn) {
    if inner.conns.remove(&conn.id).is_none() {
        return;
    }
    if let Some(n) = inner.per_ip.get_mut(&conn.ip) {
        *n -= 1;
        if *n == 0 {
            inner.per_ip.remove(&conn.ip);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        forget(&mut self.0.registry.lock(), &self.0);
    }
}

impl Conn {
    /// Resolves when the connection has been evicted.
    pub async fn evicted(&self) {
        self.close.notified().await
    }

    /// Marks a request in progress until the returned guard is dropped (it goes into
    /// the response body, so the connection stays busy while the answer is sent).
    pub fn begin_request(self: &Arc<Self>) -> Busy {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n != EVICTED).then_some(n + 1)
            });
        Busy(self.clone())
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub(super) struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.idle_since_ms
            .store(conn.registry.now_ms(), Ordering::Relaxed);
        let _ = conn
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n != EVICTED && n > 0).then(|| n - 1)
            });
    }
}

/// A response body that keeps its connection busy until it is sent or dropped.
pub(super) struct TrackedBody {
    inner: axum::body::Body,
    _busy: Busy,
}

impl TrackedBody {
    pub fn new(inner: axum::body::Body, busy: Busy) -> TrackedBody {
        TrackedBody { inner, _busy: busy }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        // axum's Body is a boxed body, so it is Unpin and so is this struct.
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_full_address_gives_up_its_longest_idle_connection_and_never_a_busy_one() {
        let r = Registry::new(100, 3);
        let conns: Vec<Admitted> = (0..3).map(|_| r.admit(A).1.unwrap()).collect();
        let busy = conns[0].0.begin_request();
        let (admission, fourth) = r.admit(A);
        assert_eq!(admission, Admission::Admitted { evicted: true });
        assert_eq!(r.len(), 3);
        // The busy first one stays; the second (idle longest of the rest) went.
        let lock = r.lock();
        assert!(lock.conns.contains_key(&conns[0].0.id));
        assert!(!lock.conns.contains_key(&conns[1].0.id));
        drop(lock);
        // Everyone busy: refused.
        let _b2 = conns[2].0.begin_request();
        let _b4 = fourth.as_ref().unwrap().0.begin_request();
        assert_eq!(r.admit(A).0, Admission::Refused);
        // Another address is not limited by A's cap.
        assert!(matches!(
            r.admit(B).0,
            Admission::Admitted { evicted: false }
        ));
        drop(busy);
    }

    #[test]
    fn a_full_server_evicts_the_longest_idle_of_all_and_counts_stay_exact() {
        let r = Registry::new(2, 10);
        let first = r.admit(A).1.unwrap();
        let second = r.admit(B).1.unwrap();
        // `second` served a request and is idle again, later than `first`.
        drop(second.0.begin_request());
        let (admission, third) = r.admit(B);
        assert_eq!(admission, Admission::Admitted { evicted: true });
        assert_eq!(first.0.state.load(Ordering::Acquire), EVICTED);
        // The evicted one ends later: its release does not free a second place.
        drop(first);
        assert_eq!(r.len(), 2);
        drop(second);
        drop(third);
        assert_eq!(r.len(), 0);
        assert!(r.lock().per_ip.is_empty());
    }
}
