//! The camera recognition loop at 640x480 on one inference worker (one XNNPACK thread):
//! the replayed walk-ups of the camera tests (real photos pasted onto a 640x480
//! background) go through `camera::Recognizer` frame by frame, with a real LMDB store.
//! Reports the loop's frames per second (all frames; frames with a face; empty frames)
//! and the latency from a frame's capture to its stored event (the deciding frame:
//! detection, alignment, mask, embedding, 1:N search and the LMDB commit).
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
    let gallery = Arc::new(Gallery::open(store, pipeline, Settings::from_config(&cfg)).unwrap());
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
    let options = RecognizerOptions::from_config(&cfg).expect("options");
    let frames = sequence::scene(&sequence::VISITORS);
    let background = sequence::background();
    let mut with_face = Vec::new();
    let mut empty = Vec::new();
    let mut latencies = Vec::new();
    let mut total = Duration::ZERO;
    let mut count = 0usize;
    let mut visits = 0usize;
    for round in 0..rounds {
        let mut recognizer = Recognizer::new(gallery.clone(), options.clone());
        let t0 = 1_800_000_000_000 + round as u64 * 3_600_000;
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
            total += took;
            count += 1;
            if emitted.is_empty() {
                if is_empty { &mut empty } else { &mut with_face }.push(took.as_secs_f64());
            }
            for e in emitted {
                visits += 1;
                latencies.push(e.latency.as_secs_f64());
            }
        }
        recognizer
            .finish(t0 + frames.len() as u64 * 100)
            .expect("finish");
    }
    let fps = count as f64 / total.as_secs_f64();
    let ms = |s: f64| s * 1000.0;
    println!(
        "camera loop, 640x480, 1 worker x 1 thread, {rounds} rounds of {} frames",
        frames.len()
    );
    println!("  frames/s, whole scene (detect every frame, decide tracks): {fps:.1}");
    println!(
        "  frames/s, frames with a face (detect + track): {:.1}  (median {:.1} ms)",
        1.0 / median(&mut with_face),
        ms(median(&mut with_face.clone()))
    );
    println!(
        "  frames/s, empty frames (detect): {:.1}  (median {:.1} ms)",
        1.0 / median(&mut empty),
        ms(median(&mut empty.clone()))
    );
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "  frame -> event latency over {visits} visits: median {:.1} ms, max {:.1} ms",
        ms(median(&mut latencies)),
        ms(sorted.last().copied().unwrap_or(f64::NAN))
    );
}
