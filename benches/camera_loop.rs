//! The camera recognition loop at 640x480 on one inference worker (one XNNPACK thread):
//! the replayed walk-ups of the camera tests (real photos pasted onto a 640x480
//! background) go through `camera::Recognizer` frame by frame, with a real LMDB store.
//! Reports the loop's frames per second (all frames; frames with a face; empty frames)
//! and the latency from a frame's capture to its stored event (the deciding frame:
//! detection, alignment, mask, embedding, 1:N search and the LMDB commit).
//!
//! Two configurations of the same loop run in the same process, round by round in turn
//! (the machine's load hits both alike): tracking by position only
//! (`camera.track_check_frames = 0`, the loop before issue 12) and with the appearance
//! check of each track (the default). It then replays the door scenes of issue 12
//! (tests/camera/scenes.rs; photos from `../shared/data/faces-small`, or
//! `FACEGATE_SHARED_DATA`) once in each configuration and prints the visits each gives.
//!
//!   cargo bench --bench camera_loop              # 3 rounds of the 133-frame scene
//!   cargo bench --bench camera_loop -- 10        # 10 rounds

#[path = "../tests/camera/sequence.rs"]
mod sequence;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate::camera::{Frame, Recognizer, RecognizerOptions};
use facegate::config;
use facegate::gallery::{EnrollRequest, Gallery, Settings};
use facegate::runtime::Runtime;
use facegate::store::Store;
use facegate::vision::{Pipeline, PipelineOptions};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let mut cfg = config::merge(None, "-", &HashMap::<String, String>::new()).expect("config");
    cfg.camera.gallery = "kiosk/door".into();
    cfg.sync.device_id = "bench".into();
    let runtime = Runtime::locate_and_load(cfg.runtime_library()).expect("LiteRT");
    let pipeline = Arc::new(
        Pipeline::load(
            &runtime,
            PipelineOptions {
                workers: 1,
                threads_per_model: 1,
                ..cfg.pipeline_options()
            },
        )
        .expect("models"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path(), 16).expect("store"));
    let gallery = Arc::new(
        Gallery::open(store, pipeline.clone(), Settings::from_config(&cfg)).expect("gallery"),
    );
    gallery.accounts().add_client("kiosk", None).unwrap();
    gallery.create_gallery("kiosk", "door").unwrap();
    for (user_id, user_name, photo) in sequence::ENROLLED {
        let image = sequence::fixture_bytes(photo);
        let req = EnrollRequest {
            gallery: "door",
            user_id,
            user_name,
            image: &image,
            force: false,
        };
        gallery.enroll("kiosk", &req).expect("enroll");
    }
    // The door scenes' gallery: the first photo of each of the seven known people.
    let door_dir = tempfile::tempdir().expect("temp dir");
    let door_store = Arc::new(Store::open(door_dir.path(), 16).expect("store"));
    let door = Arc::new(
        Gallery::open(door_store, pipeline, Settings::from_config(&cfg)).expect("gallery"),
    );
    door.accounts().add_client("kiosk", None).unwrap();
    door.create_gallery("kiosk", "door").unwrap();
    for person in sequence::DOOR_PEOPLE {
        let image = sequence::person_bytes(person, 1);
        let req = EnrollRequest {
            gallery: "door",
            user_id: person,
            user_name: person,
            image: &image,
            force: false,
        };
        door.enroll("kiosk", &req).expect("enroll");
    }
    let checked = RecognizerOptions::from_config(&cfg).expect("options");
    let position_only = RecognizerOptions {
        track_check: None,
        ..checked.clone()
    };
    let configurations = [
        ("position only (before)", position_only),
        ("appearance-checked (after)", checked),
    ];
    let frames = sequence::scene(&sequence::VISITORS);
    let background = sequence::background();
    let mut runs: Vec<Run> = configurations.iter().map(|_| Run::default()).collect();
    for round in 0..rounds {
        for (c, (_, options)) in configurations.iter().enumerate() {
            let t0 = 1_800_000_000_000 + (round * 2 + c) as u64 * 3_600_000;
            runs[c].round(&gallery, options, &frames, &background, t0);
        }
        eprintln!("round {}/{rounds}", round + 1);
    }
    println!(
        "camera loop, 640x480, 1 worker x 1 thread, {rounds} rounds of {} frames per configuration",
        frames.len()
    );
    for ((name, _), run) in configurations.iter().zip(&mut runs) {
        println!("{name}:");
        run.report();
    }
    let fps = |r: &Run| r.count as f64 / r.total.as_secs_f64();
    println!(
        "  appearance-checked / position-only frames/s: {:.3}",
        fps(&runs[1]) / fps(&runs[0])
    );
    println!("door scenes of issue 12 (visits in order; - is an unknown person):");
    for (name, frames, expected, debounce_secs, unknown_secs) in sequence::door_scenes() {
        let mut line = format!("  {name}: expected {}", names(&expected));
        for (label, options) in &configurations {
            let options = RecognizerOptions {
                debounce_ms: debounce_secs * 1000,
                unknown_interval_ms: unknown_secs * 1000,
                ..options.clone()
            };
            let got = replay_visits(&door, &options, &frames);
            let got: Vec<Option<&str>> = got.iter().map(|u| u.as_deref()).collect();
            let verdict = if got == expected { "ok" } else { "WRONG" };
            let short = label.split(' ').next_back().unwrap_or(label);
            line += &format!("; {short} {} {verdict}", names(&got));
        }
        println!("{line}");
    }
}

fn names(v: &[Option<&str>]) -> String {
    let n: Vec<&str> = v.iter().map(|u| u.unwrap_or("-")).collect();
    format!("[{}]", n.join(", "))
}

/// Visits (user ids) of `frames` replayed 100 ms apart.
fn replay_visits(
    gallery: &Arc<Gallery>,
    options: &RecognizerOptions,
    frames: &[image::RgbImage],
) -> Vec<Option<String>> {
    let mut recognizer = Recognizer::new(gallery.clone(), options.clone());
    let t0 = 1_900_000_000_000;
    let mut out = Vec::new();
    for (i, image) in frames.iter().enumerate() {
        let frame = Frame {
            image: image.clone(),
            timestamp_ms: t0 + i as u64 * sequence::FRAME_MS,
            captured: Instant::now(),
        };
        for e in recognizer.process(frame).expect("frame") {
            out.push(e.visit.record.user_id);
        }
    }
    let end = t0 + frames.len() as u64 * sequence::FRAME_MS;
    for e in recognizer.finish(end).expect("finish") {
        out.push(e.visit.record.user_id);
    }
    out
}

#[derive(Default)]
struct Run {
    with_face: Vec<f64>,
    empty: Vec<f64>,
    latencies: Vec<f64>,
    total: Duration,
    count: usize,
    visits: usize,
    checks: u64,
}

impl Run {
    fn round(
        &mut self,
        gallery: &Arc<Gallery>,
        options: &RecognizerOptions,
        frames: &[image::RgbImage],
        background: &image::RgbImage,
        t0: u64,
    ) {
        let mut recognizer = Recognizer::new(gallery.clone(), options.clone());
        for (i, image) in frames.iter().enumerate() {
            let is_empty = image.as_raw() == background.as_raw();
            let frame = Frame {
                image: image.clone(),
                timestamp_ms: t0 + i as u64 * sequence::FRAME_MS,
                captured: Instant::now(),
            };
            let start = Instant::now();
            let emitted = recognizer.process(frame).expect("frame");
            let took = start.elapsed();
            self.total += took;
            self.count += 1;
            if emitted.is_empty() {
                if is_empty {
                    &mut self.empty
                } else {
                    &mut self.with_face
                }
                .push(took.as_secs_f64());
            }
            for e in emitted {
                self.visits += 1;
                self.latencies.push(e.latency.as_secs_f64());
            }
        }
        recognizer
            .finish(t0 + frames.len() as u64 * 100)
            .expect("finish");
        self.checks += recognizer.decisions().track_checks;
    }

    fn report(&mut self) {
        let fps = self.count as f64 / self.total.as_secs_f64();
        let ms = |s: f64| s * 1000.0;
        println!("  frames/s, whole scene (detect every frame, decide tracks): {fps:.1}");
        println!(
            "  frames/s, frames with a face (detect + track): {:.1}  (median {:.1} ms)",
            1.0 / median(&mut self.with_face),
            ms(median(&mut self.with_face.clone()))
        );
        println!(
            "  frames/s, empty frames (detect): {:.1}  (median {:.1} ms)",
            1.0 / median(&mut self.empty),
            ms(median(&mut self.empty.clone()))
        );
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "  frame -> event latency over {} visits: median {:.1} ms, max {:.1} ms",
            self.visits,
            ms(median(&mut self.latencies)),
            ms(sorted.last().copied().unwrap_or(f64::NAN))
        );
        println!(
            "  appearance checks: {} over {} frames ({:.2} per frame)",
            self.checks,
            self.count,
            self.checks as f64 / self.count as f64
        );
    }
}
