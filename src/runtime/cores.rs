//! Which cores the threads of a model that spreads over several cores run on.
//!
//! A model compiled for `n` threads runs each layer on the calling thread and on the
//! `n - 1` worker threads LiteRT (XNNPACK's thread pool) starts when it compiles the
//! model. When the board has been idle, the kernel may place the caller and a worker on
//! the same core (schedulers pack waking threads on one core to let the others sleep):
//! the two then take turns on one core, every layer waits for a context switch, and a
//! lone request runs slower than on one thread. Measured on a 2-core host after 300 ms
//! idle between identify calls: 24.5 ms with the threads free, 19.8 ms with them on
//! distinct cores (docs/performance.md, "Thread placement").
//!
//! [`CoreSplit`] keeps them apart: the workers start while the building thread is
//! confined to every allowed core but the first (they inherit that), and a caller is
//! confined to the first core while it uses the model ([`CoreSplit::pin_caller`]).
//! Failing to set an affinity (a container that forbids it) only costs that speed, so it
//! is logged and ignored.

#[cfg(target_os = "linux")]
mod imp {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;

    /// The calling thread (`sched_*affinity` with pid 0 act on the caller on Linux).
    fn this_thread() -> Pid {
        Pid::from_raw(0)
    }

    #[derive(Clone, Debug)]
    pub struct CoreSplit {
        caller: CpuSet,
        workers: CpuSet,
        caller_core: usize,
        worker_cores: Vec<usize>,
    }

    impl CoreSplit {
        /// The first core this thread may run on for callers, the other allowed cores for
        /// workers; `None` with fewer than two allowed cores.
        pub fn of_this_thread() -> Option<CoreSplit> {
            let allowed = sched_getaffinity(this_thread()).ok()?;
            let cores: Vec<usize> = (0..CpuSet::count())
                .filter(|&c| allowed.is_set(c).unwrap_or(false))
                .collect();
            let (&caller_core, worker_cores) = cores.split_first()?;
            if worker_cores.is_empty() {
                return None;
            }
            let mut caller = CpuSet::new();
            caller.set(caller_core).ok()?;
            let mut workers = CpuSet::new();
            for &c in worker_cores {
                workers.set(c).ok()?;
            }
            Some(CoreSplit {
                caller,
                workers,
                caller_core,
                worker_cores: worker_cores.to_vec(),
            })
        }

        pub fn caller_core(&self) -> usize {
            self.caller_core
        }

        pub fn worker_cores(&self) -> &[usize] {
            &self.worker_cores
        }

        /// Runs `build` with this thread confined to the worker cores, so that threads
        /// started by `build` inherit them; the thread's cores are restored afterwards.
        pub fn build_workers<T>(&self, build: impl FnOnce() -> T) -> T {
            let _restore = Confined::to(&self.workers);
            build()
        }

        /// Confines the calling thread to the caller core until the guard drops.
        pub fn pin_caller(&self) -> Confined {
            Confined::to(&self.caller)
        }
    }

    /// Restores the thread's former cores when dropped (also while unwinding).
    #[must_use = "the thread is confined only while the guard lives"]
    pub struct Confined {
        previous: Option<CpuSet>,
    }

    impl Confined {
        fn to(cores: &CpuSet) -> Confined {
            let previous = match sched_getaffinity(this_thread()) {
                Ok(previous) => previous,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read this thread's cores");
                    return Confined { previous: None };
                }
            };
            match sched_setaffinity(this_thread(), cores) {
                Ok(()) => Confined {
                    previous: Some(previous),
                },
                Err(e) => {
                    tracing::debug!(error = %e, "cannot confine this thread to its cores");
                    Confined { previous: None }
                }
            }
        }
    }

    impl Drop for Confined {
        fn drop(&mut self) {
            if let Some(previous) = self.previous.take() {
                if let Err(e) = sched_setaffinity(this_thread(), &previous) {
                    tracing::debug!(error = %e, "cannot restore this thread's cores");
                }
            }
        }
    }

    /// The cores the calling thread may run on (tests, diagnostics).
    pub fn this_thread_cores() -> Vec<usize> {
        match sched_getaffinity(this_thread()) {
            Ok(set) => (0..CpuSet::count())
                .filter(|&c| set.is_set(c).unwrap_or(false))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    /// Thread placement is Linux-only; elsewhere the threads stay where the OS puts them.
    #[derive(Clone, Debug)]
    pub struct CoreSplit;

    impl CoreSplit {
        pub fn of_this_thread() -> Option<CoreSplit> {
            None
        }
        pub fn caller_core(&self) -> usize {
            0
        }
        pub fn worker_cores(&self) -> &[usize] {
            &[]
        }
        pub fn build_workers<T>(&self, build: impl FnOnce() -> T) -> T {
            build()
        }
        pub fn pin_caller(&self) -> Confined {
            Confined
        }
    }

    pub struct Confined;

    pub fn this_thread_cores() -> Vec<usize> {
        Vec::new()
    }
}

pub use imp::{this_thread_cores, Confined, CoreSplit};

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_caller_runs_on_the_first_core_and_gets_its_cores_back() {
        // Runs in its own thread so the test harness's thread is never confined.
        std::thread::spawn(|| {
            let before = this_thread_cores();
            let Some(split) = CoreSplit::of_this_thread() else {
                assert!(
                    before.len() < 2,
                    "two cores allowed but no split: {before:?}"
                );
                return;
            };
            assert_eq!(split.caller_core(), before[0]);
            assert_eq!(split.worker_cores(), &before[1..]);
            {
                let _pin = split.pin_caller();
                assert_eq!(this_thread_cores(), vec![before[0]]);
            }
            assert_eq!(this_thread_cores(), before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn threads_started_while_building_workers_stay_off_the_caller_core() {
        std::thread::spawn(|| {
            let before = this_thread_cores();
            let Some(split) = CoreSplit::of_this_thread() else {
                return;
            };
            let worker = split.build_workers(|| std::thread::spawn(this_thread_cores));
            assert_eq!(
                this_thread_cores(),
                before,
                "the builder got its cores back"
            );
            let worker_cores = worker.join().unwrap();
            assert_eq!(worker_cores, split.worker_cores());
            assert!(!worker_cores.contains(&split.caller_core()));
        })
        .join()
        .unwrap();
    }
}
