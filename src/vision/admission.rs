//! Admission to the inference sessions: a fixed pool of sessions, a bounded queue of
//! callers waiting for one, and a deadline per wait.
//!
//! Every caller of the pipeline (the HTTP API, the camera loop, the CLI) goes through
//! the same pool, so the API and the camera share the board's cores fairly. A caller
//! that finds every session busy waits in line (first come, first served); it is
//! refused with [`Busy`] only when the line is already `queue` long, or when it has
//! waited `timeout` without getting a session. A [`Lease`] hands its session back when
//! dropped, also while unwinding from a panic in the work, so the pool never shrinks.
//!
//! The pool may also hold one *idle-machine session* (`[runtime] idle_request_threads`):
//! the same models built to spread each run over all the board's cores. A caller that
//! finds every session free and nobody in line takes it, so a lone request (a kiosk's
//! usual case) runs on every core instead of one: about half the latency on two
//! cores. It is never handed to a caller while another works or waits, so a burst of
//! callers is served by the one-core sessions, which give the higher throughput (no
//! core runs two model threads). A caller arriving while the idle-machine session runs
//! takes a one-core session at once; the two then share the cores for a few
//! milliseconds.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long and how many callers may wait for a session (`[runtime] queue`,
/// `queue_timeout_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Callers allowed to wait while every session is busy; 0: refuse at once.
    pub queue: usize,
    /// Longest wait for a session.
    pub timeout: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            queue: 64,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a caller got no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("every inference session is busy and the queue is full")]
    QueueFull,
    #[error("no inference session became free before the deadline")]
    Deadline,
}

/// The pool's state, for /healthz and /metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStatus {
    pub sessions: usize,
    /// 1 when an idle-machine session exists (it is not counted in `sessions`).
    pub idle_machine_sessions: usize,
    pub idle_machine_busy: bool,
    /// Since start: callers that got the idle-machine session (also in `admitted_total`).
    pub idle_machine_admitted_total: u64,
    pub busy: usize,
    pub free: usize,
    pub queued: usize,
    pub queue_limit: usize,
    pub queue_timeout_ms: u64,
    /// Since start: callers that got a session, and callers refused for each reason.
    pub admitted_total: u64,
    pub refused_queue_full_total: u64,
    pub refused_deadline_total: u64,
}

struct State<S> {
    free: Vec<S>,
    /// The idle-machine session, when it exists and is not lent out.
    idle_machine: Option<S>,
    /// Tickets of the waiting callers, oldest first.
    line: VecDeque<u64>,
    next_ticket: u64,
    admitted: u64,
    admitted_idle_machine: u64,
    refused_full: u64,
    refused_deadline: u64,
}

pub struct SessionPool<S> {
    state: Mutex<State<S>>,
    changed: Condvar,
    size: usize,
    has_idle_machine: bool,
    limits: AdmissionLimits,
}

impl<S> SessionPool<S> {
    /// A pool of `sessions`, and `idle_machine` lent only to a caller that finds the
    /// whole pool idle (see the module docs).
    pub fn with_idle_machine_session(
        sessions: Vec<S>,
        idle_machine: Option<S>,
        limits: AdmissionLimits,
    ) -> SessionPool<S> {
        SessionPool {
            size: sessions.len(),
            has_idle_machine: idle_machine.is_some(),
            state: Mutex::new(State {
                idle_machine,
                free: sessions,
                line: VecDeque::new(),
                next_ticket: 0,
                admitted: 0,
                admitted_idle_machine: 0,
                refused_full: 0,
                refused_deadline: 0,
            }),
            changed: Condvar::new(),
            limits,
        }
    }

    /// A session, waiting in line for one if all are busy. The idle-machine session
    /// when the whole pool is idle.
    pub fn acquire(&self) -> Result<Lease<'_, S>, Busy> {
        self.acquire_as(true)
    }

    /// A one-core session only (maintenance, and tests that fill the pool on purpose).
    pub fn acquire_one_core(&self) -> Result<Lease<'_, S>, Busy> {
        self.acquire_as(false)
    }

    fn acquire_as(&self, idle_machine_allowed: bool) -> Result<Lease<'_, S>, Busy> {
        let mut state = self.lock();
        if state.line.is_empty() {
            if idle_machine_allowed && state.free.len() == self.size {
                if let Some(session) = state.idle_machine.take() {
                    state.admitted += 1;
                    state.admitted_idle_machine += 1;
                    return Ok(self.lease(session, true));
                }
            }
            if let Some(session) = state.free.pop() {
                state.admitted += 1;
                return Ok(self.lease(session, false));
            }
        }
        if state.line.len() >= self.limits.queue {
            state.refused_full += 1;
            return Err(Busy::QueueFull);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.line.push_back(ticket);
        let deadline = Instant::now() + self.limits.timeout;
        loop {
            // The first `free.len()` callers in line may take a session: first come,
            // first served, and no session stays idle while someone waits.
            let position = state.line.iter().position(|t| *t == ticket);
            if let Some(position) = position {
                if position < state.free.len() {
                    state.line.remove(position);
                    // position < free.len(), so free is not empty.
                    if let Some(session) = state.free.pop() {
                        state.admitted += 1;
                        // Others behind us may now be within reach of a free session.
                        self.changed.notify_all();
                        return Ok(self.lease(session, false));
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                state.line.retain(|t| *t != ticket);
                state.refused_deadline += 1;
                // Our place in line is gone: the callers behind us move up.
                self.changed.notify_all();
                return Err(Busy::Deadline);
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn status(&self) -> PoolStatus {
        let state = self.lock();
        PoolStatus {
            sessions: self.size,
            idle_machine_sessions: usize::from(self.has_idle_machine),
            idle_machine_busy: self.has_idle_machine && state.idle_machine.is_none(),
            idle_machine_admitted_total: state.admitted_idle_machine,
            busy: self.size - state.free.len(),
            free: state.free.len(),
            queued: state.line.len(),
            queue_limit: self.limits.queue,
            queue_timeout_ms: self.limits.timeout.as_millis() as u64,
            admitted_total: state.admitted,
            refused_queue_full_total: state.refused_full,
            refused_deadline_total: state.refused_deadline,
        }
    }

    fn lease(&self, session: S, idle_machine: bool) -> Lease<'_, S> {
        Lease {
            pool: self,
            session: Some(session),
            idle_machine,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // The lock is never held while a session works, so a poisoned lock means a
        // panic inside this module's bookkeeping; the state is still consistent (every
        // change above is a single push, pop or remove).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A session borrowed from the pool; goes back when dropped (also during a panic).
pub struct Lease<'a, S> {
    pool: &'a SessionPool<S>,
    session: Option<S>,
    /// The session is the pool's idle-machine session.
    idle_machine: bool,
}

impl<S> Deref for Lease<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        // `session` is Some from construction until drop.
        self.session
            .as_ref()
            .expect("a lease holds its session until dropped")
    }
}

impl<S> DerefMut for Lease<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        // `session` is Some from construction until drop.
        self.session
            .as_mut()
            .expect("a lease holds its session until dropped")
    }
}

impl<S> Drop for Lease<'_, S> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let mut state = self.pool.lock();
            if self.idle_machine {
                // Nobody waits for this one (it is lent only to a caller finding the
                // pool idle), so no one needs waking.
                state.idle_machine = Some(session);
            } else {
                state.free.push(session);
                drop(state);
                self.pool.changed.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pool(sessions: usize, queue: usize, timeout_ms: u64) -> Arc<SessionPool<usize>> {
        Arc::new(SessionPool::with_idle_machine_session(
            (0..sessions).collect(),
            None,
            AdmissionLimits {
                queue,
                timeout: Duration::from_millis(timeout_ms),
            },
        ))
    }

    #[test]
    fn a_caller_beyond_the_queue_is_refused_at_once() {
        let p = pool(1, 0, 60_000);
        let held = p.acquire().unwrap();
        assert_eq!(p.acquire().err(), Some(Busy::QueueFull));
        drop(held);
        assert!(p.acquire().is_ok());
        assert_eq!(p.status().refused_queue_full_total, 1);
    }

    #[test]
    fn a_caller_in_line_is_refused_when_its_deadline_passes() {
        let p = pool(1, 4, 50);
        let _held = p.acquire().unwrap();
        assert_eq!(p.acquire().err(), Some(Busy::Deadline));
        let s = p.status();
        assert_eq!((s.queued, s.busy, s.refused_deadline_total), (0, 1, 1));
    }

    #[test]
    fn waiting_callers_get_the_session_in_arrival_order() {
        let p = pool(1, 8, 60_000);
        let held = p.acquire().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..5 {
            let (pool, order) = (p.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let _lease = pool.acquire().unwrap();
                order.lock().unwrap().push(i);
            }));
            // Each caller is in line before the next one arrives.
            while p.status().queued < i + 1 {
                std::thread::yield_now();
            }
        }
        drop(held);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    fn pool_with_idle_machine(sessions: usize) -> Arc<SessionPool<usize>> {
        Arc::new(SessionPool::with_idle_machine_session(
            (0..sessions).collect(),
            Some(100),
            AdmissionLimits {
                queue: 8,
                timeout: Duration::from_millis(60_000),
            },
        ))
    }

    #[test]
    fn a_lone_caller_gets_the_idle_machine_session() {
        let p = pool_with_idle_machine(2);
        let lone = p.acquire().unwrap();
        assert_eq!(*lone, 100);
        assert!(p.status().idle_machine_busy);
        drop(lone);
        assert_eq!(*p.acquire().unwrap(), 100, "it comes back when dropped");
        assert!(!p.status().idle_machine_busy);
    }

    #[test]
    fn callers_arriving_while_others_work_get_one_core_sessions() {
        let p = pool_with_idle_machine(2);
        let first = p.acquire().unwrap();
        // The idle-machine session is busy: the next callers take the one-core ones,
        // at once, and a third waits for one of those, never for the idle-machine one.
        let (second, third) = (p.acquire().unwrap(), p.acquire().unwrap());
        assert_eq!(*first, 100);
        assert!(*second < 2 && *third < 2);
        drop(first);
        let one_core_busy = p.clone();
        let waiter = std::thread::spawn(move || *one_core_busy.acquire().unwrap());
        while p.status().queued < 1 {
            std::thread::yield_now();
        }
        drop(second);
        assert!(waiter.join().unwrap() < 2);
        // With one one-core session busy, the pool is not idle: no idle-machine lease.
        let fourth = p.acquire().unwrap();
        assert!(
            *fourth < 2,
            "the idle-machine session is only for a caller alone"
        );
    }

    #[test]
    fn filling_the_one_core_sessions_queues_the_next_caller() {
        let p = pool_with_idle_machine(2);
        let _held = (p.acquire_one_core().unwrap(), p.acquire_one_core().unwrap());
        let s = p.status();
        assert_eq!((s.busy, s.free, s.idle_machine_busy), (2, 0, false));
        let waiter = p.clone();
        let t = std::thread::spawn(move || waiter.acquire().map(|l| *l).err());
        while p.status().queued < 1 {
            std::thread::yield_now();
        }
        assert_eq!(
            p.status().queued,
            1,
            "it waits instead of taking the idle-machine one"
        );
        drop(_held);
        assert_eq!(t.join().unwrap(), None);
    }

    #[test]
    fn a_panic_in_the_work_returns_the_session() {
        let p = pool(2, 0, 10);
        for _ in 0..3 {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _lease = p.acquire().unwrap();
                panic!("the work failed");
            }));
            assert!(result.is_err());
        }
        let s = p.status();
        assert_eq!((s.sessions, s.free, s.busy), (2, 2, 0));
        let (a, b) = (p.acquire().unwrap(), p.acquire().unwrap());
        assert_ne!(*a, *b);
    }
}
