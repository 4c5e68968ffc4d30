//! Thread placement of the idle-machine session (`runtime.pin_idle_request_threads`,
//! src/runtime/cores.rs) with the real LiteRT runtime and models: the model worker
//! threads LiteRT starts stay off the core a lone request is pinned to, the request gets
//! the same answer as without pinning, and its thread gets its cores back.
//!
//! Each test loads its pipelines in a thread of its own, with a name of its own (so the
//! harness's thread is never confined), one load at a time across the tests
//! (`LOADING`). The threads LiteRT starts inherit their creator's name (Linux copies a
//! thread's `comm` to the threads it creates), which tells them apart from threads other
//! tests or the harness start meanwhile: filtering by time alone once counted another
//! test's thread, unconfined, as a model worker.

#![cfg(target_os = "linux")]

#[path = "common/real_models.rs"]
mod real_models;

use std::collections::BTreeSet;
use std::sync::Mutex;

use facegate::runtime::{this_thread_cores, CoreSplit};
use facegate::vision::{FaceSelection, Pipeline, PipelineOptions};
use real_models::{fixture, models_dir, runtime};

/// Held while a pipeline loads: LiteRT's threads of one load are told apart from those
/// of a load in another test by time.
static LOADING: Mutex<()> = Mutex::new(());

/// A pipeline whose only session for a lone caller is the two-thread idle-machine one.
fn pipeline(pin: bool) -> Pipeline {
    let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    load_unlocked(pin)
}

fn load_unlocked(pin: bool) -> Pipeline {
    let options = PipelineOptions {
        models_dir: models_dir(),
        threads_per_model: 1,
        idle_request_threads: 2,
        pin_idle_request_threads: pin,
        workers: 1,
        ..PipelineOptions::default()
    };
    Pipeline::load(runtime(), options).expect("models load")
}

/// The name (`comm`) of thread `tid` of this process, or of the calling thread.
fn thread_name(tid: Option<u32>) -> String {
    let path = match tid {
        Some(tid) => format!("/proc/self/task/{tid}/comm"),
        None => "/proc/thread-self/comm".to_string(),
    };
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

/// Thread id -> allowed cores, for every thread of this process.
fn threads() -> Vec<(u32, Vec<usize>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let entry = entry.expect("task entry");
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let cores = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|list| parse_core_list(list.trim()))
            .unwrap_or_default();
        out.push((tid, cores));
    }
    out
}

fn parse_core_list(list: &str) -> Vec<usize> {
    let mut cores = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cores.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => cores.push(part.parse().unwrap()),
        }
    }
    cores
}

/// The threads started while `load` ran by this thread (LiteRT's workers: new, and
/// named as this thread), with their cores.
fn threads_started_by(pin: bool) -> (Pipeline, Vec<Vec<usize>>) {
    let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    let before: BTreeSet<u32> = threads().into_iter().map(|(tid, _)| tid).collect();
    let loaded = load_unlocked(pin);
    let ours = thread_name(None);
    let started = threads()
        .into_iter()
        .filter(|(tid, _)| !before.contains(tid) && thread_name(Some(*tid)) == ours)
        .map(|(_, cores)| cores)
        .collect();
    (loaded, started)
}

/// Runs `test` on a thread of its own named `name` (at most 15 bytes, unique per test),
/// so the harness's thread is never confined and LiteRT's threads carry that name.
fn on_its_own_thread(name: &str, test: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(test)
        .expect("test thread")
        .join()
        .unwrap();
}

#[test]
fn the_idle_machine_session_starts_its_model_workers_off_the_callers_core() {
    on_its_own_thread("place-pinned", || {
        let Some(split) = CoreSplit::of_this_thread() else {
            eprintln!("fewer than two cores allowed: nothing to place");
            return;
        };
        let (_pipeline, started) = threads_started_by(true);
        // Detector, embedder and mask model, each with one worker for its second thread.
        assert!(
            started.len() >= 3,
            "LiteRT started {} threads",
            started.len()
        );
        for cores in &started {
            assert_eq!(
                cores,
                split.worker_cores(),
                "a model worker may run on {cores:?}"
            );
            assert!(!cores.contains(&split.caller_core()));
        }
    });
}

#[test]
fn without_pinning_the_model_workers_may_run_anywhere() {
    on_its_own_thread("place-free", || {
        let allowed = this_thread_cores();
        let (_pipeline, started) = threads_started_by(false);
        assert!(
            started.len() >= 3,
            "LiteRT started {} threads",
            started.len()
        );
        for cores in &started {
            assert_eq!(cores, &allowed);
        }
    });
}

#[test]
fn a_pinned_request_gets_the_unpinned_answer_and_its_thread_gets_its_cores_back() {
    on_its_own_thread("place-answer", || {
        let allowed = this_thread_cores();
        let image = fixture("single_640x480.jpg");
        let pinned_pipeline = pipeline(true);
        let pinned = pinned_pipeline
            .analyze_bytes(&image, FaceSelection::Largest)
            .expect("analysis");
        // A lone caller gets the idle-machine session, the one whose caller is pinned.
        assert_eq!(pinned_pipeline.pool_status().idle_machine_admitted_total, 1);
        assert_eq!(
            this_thread_cores(),
            allowed,
            "the caller's cores were restored"
        );
        let free = pipeline(false)
            .analyze_bytes(&image, FaceSelection::Largest)
            .expect("analysis");
        assert_eq!(pinned.len(), 1);
        assert_eq!(pinned[0].embedding, free[0].embedding);
        assert_eq!(pinned[0].mask_probability, free[0].mask_probability);
    });
}
