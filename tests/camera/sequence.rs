//! Replayed camera footage built from real photos (tests/fixtures/camera): each visitor's
//! face is pasted onto a generated 640x480 background, growing and drifting over the
//! frames as a person walking up to a door camera, with empty frames between visitors.
//! Visitors alternate between the left and the right half of the picture.
//!
//! Shared by the camera tests, the camera benchmark and `examples/camera_frames.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::{imageops, Rgb, RgbImage};

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 480;
/// Frames are 100 ms apart (10 fps).
pub const FRAME_MS: u64 = 100;
/// Frames of one walk-up: the pasted photo grows from 100 to 280 px.
pub const WALK_FRAMES: usize = 14;
/// Empty frames after each visitor: longer than the default track timeout (1 s).
pub const GAP_FRAMES: usize = 12;

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/camera")
        .join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture(name: &str) -> RgbImage {
    image::load_from_memory(&fixture_bytes(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
        .to_rgb8()
}

/// A plain hallway: a vertical wall gradient, a darker door frame, a floor band and
/// a little deterministic noise (no faces).
pub fn background() -> RgbImage {
    let mut seed: u32 = 0x2545_f491;
    RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed % 9) as i32 - 4;
        let base: [i32; 3] = if y > 400 {
            [95, 85, 75]
        } else if (250..390).contains(&x) && y > 60 {
            [120, 100, 80]
        } else {
            let shade = 200 - (y as i32) / 8;
            [shade, shade - 5, shade - 15]
        };
        Rgb(base.map(|c| (c + noise).clamp(0, 255) as u8))
    })
}

/// One visitor walking up: `frames` pictures, the face photo scaled from 100 to 280 px
/// and moving from beside `centre_x` towards it.
pub fn walk(face: &RgbImage, frames: usize, centre_x: f32) -> Vec<RgbImage> {
    let bg = background();
    let drift = if centre_x < WIDTH as f32 / 2.0 {
        -50.0
    } else {
        50.0
    };
    (0..frames)
        .map(|i| {
            let t = i as f32 / (frames.max(2) - 1) as f32;
            let side = (100.0 + 180.0 * t).round() as u32;
            let cx = centre_x + drift * (1.0 - t);
            let cy = 210.0 + 30.0 * t;
            let scaled = imageops::resize(face, side, side, imageops::FilterType::CatmullRom);
            let mut frame = bg.clone();
            imageops::overlay(
                &mut frame,
                &scaled,
                (cx - side as f32 / 2.0).round() as i64,
                (cy - side as f32 / 2.0).round() as i64,
            );
            frame
        })
        .collect()
}

/// The visitors (fixture file names) one after the other, alternating sides, each
/// followed by `GAP_FRAMES` empty frames; the scene starts with three empty frames.
pub fn scene(visitors: &[&str]) -> Vec<RgbImage> {
    let bg = background();
    let mut frames = vec![bg.clone(); 3];
    for (i, name) in visitors.iter().enumerate() {
        let centre_x = if i % 2 == 0 { 190.0 } else { 450.0 };
        frames.extend(walk(&fixture(name), WALK_FRAMES, centre_x));
        frames.extend(std::iter::repeat_n(bg.clone(), GAP_FRAMES));
    }
    frames
}

/// The scene of the kiosk tests: three enrolled people, one stranger, and the first
/// person again at once (same visit: no second event).
pub const VISITORS: [&str; 5] = [
    "amy2.png",
    "sheldon2.png",
    "stuart1.png",
    "penny2.png",
    "amy2.png",
];

/// Who is enrolled: (user_id, user_name, reference photo).
pub const ENROLLED: [(&str, &str, &str); 3] = [
    ("amy", "Amy Farrah Fowler", "amy1.png"),
    ("sheldon", "Sheldon Cooper", "sheldon1.png"),
    ("penny", "Penny", "penny1.png"),
];

/// Writes frames as `frame-0000.jpg`, ... (JPEG quality 92) into `dir`.
pub fn write_frames(frames: &[RgbImage], dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, frame) in frames.iter().enumerate() {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92)
            .encode_image(frame)
            .map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("frame-{i:04}.jpg")), bytes)?;
    }
    Ok(())
}

/// A visitor walking up from far away: `frames` pictures growing from 140 to 300 px,
/// the first `far` of them out of focus (Gaussian blur of `sigma` pixels, as a face
/// beyond the camera's focus range), the rest sharp.
pub fn approach(face: &RgbImage, frames: usize, far: usize, sigma: f32) -> Vec<RgbImage> {
    let bg = background();
    (0..frames)
        .map(|i| {
            let t = i as f32 / (frames.max(2) - 1) as f32;
            let side = (140.0 + 160.0 * t).round() as u32;
            let mut scaled = imageops::resize(face, side, side, imageops::FilterType::CatmullRom);
            if i < far {
                scaled = imageops::blur(&scaled, sigma);
            }
            let mut frame = bg.clone();
            imageops::overlay(
                &mut frame,
                &scaled,
                (320.0 - side as f32 / 2.0).round() as i64,
                (220.0 - side as f32 / 2.0).round() as i64,
            );
            frame
        })
        .collect()
}
