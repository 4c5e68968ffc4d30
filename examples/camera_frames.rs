//! Writes the camera tests' replayed walk-ups (built from the photos in
//! tests/fixtures/camera) as JPEG frames into a folder, for the `dir:` source:
//!
//!     cargo run --example camera_frames -- /tmp/frames
//!     FACEGATE_CAMERA=dir:/tmp/frames FACEGATE_CAMERA_GALLERY=kiosk/door facegate serve
//!
//! or one of the door scenes of issue 12 (photos from `../shared/data/faces-small`, or
//! `FACEGATE_SHARED_DATA`; enroll `<person>1.png` of the seven known people to replay
//! them):
//!
//!     cargo run --example camera_frames -- --list
//!     cargo run --example camera_frames -- /tmp/queue "queue, no gap"

#[path = "../tests/camera/sequence.rs"]
mod sequence;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(first) = args.next() else {
        eprintln!("usage: camera_frames DIR [SCENE] | camera_frames --list");
        return ExitCode::from(64);
    };
    if first == "--list" {
        for (name, _, expected, debounce, unknown) in sequence::door_scenes() {
            println!("{name}\texpected {expected:?}\tdebounce_secs {debounce}\tunknown_interval_secs {unknown}");
        }
        return ExitCode::SUCCESS;
    }
    let dir = PathBuf::from(first);
    let frames = match args.next() {
        None => sequence::scene(&sequence::VISITORS),
        Some(name) => {
            let name = name.to_string_lossy().into_owned();
            match sequence::door_scenes().into_iter().find(|s| s.0 == name) {
                Some((_, frames, ..)) => frames,
                None => {
                    eprintln!("camera_frames: no scene {name:?} (see --list)");
                    return ExitCode::from(64);
                }
            }
        }
    };
    match sequence::write_frames(&frames, &dir) {
        Ok(()) => {
            println!("{} frames in {}", frames.len(), dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("camera_frames: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
