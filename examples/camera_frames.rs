//! Writes the camera tests' replayed walk-ups (built from the photos in
//! tests/fixtures/camera) as JPEG frames into a folder, for the `dir:` source:
//!
//!     cargo run --example camera_frames -- /tmp/frames
//!     FACEGATE_CAMERA=dir:/tmp/frames FACEGATE_CAMERA_GALLERY=kiosk/door facegate serve

#[path = "../tests/camera/sequence.rs"]
mod sequence;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: camera_frames DIR");
        return ExitCode::from(64);
    };
    let frames = sequence::scene(&sequence::VISITORS);
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
