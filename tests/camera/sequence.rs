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

// ---- Scenes that users meet at a door (issue 12), from the development photos ----

/// The development data (`../shared/data` beside the repository, as in CI;
/// `FACEGATE_SHARED_DATA` overrides it).
pub fn shared_data() -> PathBuf {
    std::env::var_os("FACEGATE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

/// `faces-small/<person>/<person><n>.png`: a 150x150 face photo.
pub fn person_bytes(person: &str, n: u32) -> Vec<u8> {
    let path = shared_data()
        .join("faces-small")
        .join(person)
        .join(format!("{person}{n}.png"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the development data: ../shared/data beside the repository, or set \
             FACEGATE_SHARED_DATA)",
            path.display()
        )
    })
}

pub fn person(name: &str, n: u32) -> RgbImage {
    image::load_from_memory(&person_bytes(name, n))
        .unwrap_or_else(|e| panic!("{name}{n}: {e}"))
        .to_rgb8()
}

/// Who the door gallery knows in the scenes: the first photo of seven people of
/// faces-small (`stuart` is the stranger).
pub const DOOR_PEOPLE: [&str; 7] = [
    "amy",
    "bernadette",
    "howard",
    "leonard",
    "penny",
    "raj",
    "sheldon",
];

/// One person's face in a frame: the photo scaled to `side` px, centred at (cx, cy).
#[derive(Clone)]
pub struct Placed<'a> {
    pub face: &'a RgbImage,
    pub side: u32,
    pub cx: f32,
    pub cy: f32,
}

/// A frame with `faces` pasted in order (later ones in front) onto the background.
pub fn compose(faces: &[Placed<'_>]) -> RgbImage {
    let mut frame = background();
    for p in faces {
        let scaled = imageops::resize(p.face, p.side, p.side, imageops::FilterType::CatmullRom);
        imageops::overlay(
            &mut frame,
            &scaled,
            (p.cx - p.side as f32 / 2.0).round() as i64,
            (p.cy - p.side as f32 / 2.0).round() as i64,
        );
    }
    frame
}

/// The spot in front of the door camera where each person of a queue stops.
pub const SPOT: (f32, f32) = (320.0, 230.0);
/// Face side (px) of a person standing at the spot.
pub const AT_SPOT: u32 = 260;

/// Side of a face walking up from `from` to `to` px over `frames` frames, at frame `i`.
pub fn growing(from: u32, to: u32, frames: usize, i: usize) -> u32 {
    let t = i as f32 / (frames.max(2) - 1) as f32;
    (from as f32 + (to as f32 - from as f32) * t).round() as u32
}

/// A person walking up to the spot (face from 100 px to [`AT_SPOT`] over `walk` frames,
/// coming straight at the camera) and standing there for `stand` frames.
pub fn walk_up_and_stand(face: &RgbImage, walk: usize, stand: usize) -> Vec<RgbImage> {
    let (cx, cy) = SPOT;
    (0..walk + stand)
        .map(|i| {
            let side = growing(100, AT_SPOT, walk, i.min(walk - 1));
            compose(&[Placed { face, side, cx, cy }])
        })
        .collect()
}

/// A person standing at the spot for `frames` frames (stepped into the place the
/// previous person left, the same size and position).
pub fn stand(face: &RgbImage, frames: usize) -> Vec<RgbImage> {
    let (cx, cy) = SPOT;
    vec![
        compose(&[Placed {
            face,
            side: AT_SPOT,
            cx,
            cy
        }]);
        frames
    ]
}

/// A queue at the door: the first person walks up to the spot and stands; each next
/// one steps into the same spot `gap` empty frames after the previous one left, and
/// stands for `stand` frames. Three empty frames before, twelve after.
pub fn queue(faces: &[&RgbImage], gap: usize, stand_frames: usize) -> Vec<RgbImage> {
    let bg = background();
    let mut frames = vec![bg.clone(); 3];
    for (i, face) in faces.iter().enumerate() {
        if i == 0 {
            frames.extend(walk_up_and_stand(face, WALK_FRAMES, stand_frames));
        } else {
            frames.extend(std::iter::repeat_n(bg.clone(), gap));
            frames.extend(stand(face, stand_frames));
        }
    }
    frames.extend(std::iter::repeat_n(bg, GAP_FRAMES));
    frames
}

/// Two people at once: one walks up on the left, the other three frames later on the
/// right; both stay side by side for three seconds.
pub fn side_by_side(left: &RgbImage, right: &RgbImage) -> Vec<RgbImage> {
    let bg = background();
    let mut frames = vec![bg.clone(); 3];
    for i in 0..30 {
        let mut faces = vec![Placed {
            face: left,
            side: growing(100, 200, WALK_FRAMES, i.min(WALK_FRAMES - 1)),
            cx: 170.0,
            cy: 230.0,
        }];
        if i >= 3 {
            faces.push(Placed {
                face: right,
                side: growing(100, 200, WALK_FRAMES, (i - 3).min(WALK_FRAMES - 1)),
                cx: 480.0,
                cy: 230.0,
            });
        }
        frames.push(compose(&faces));
    }
    frames.extend(std::iter::repeat_n(bg, GAP_FRAMES));
    frames
}

/// Frames of [`passing_behind`] in which the passer-by is in the picture.
pub const PASSING: std::ops::Range<usize> = 9..33;

/// `front` walks up to the spot and stays; meanwhile `passer` crosses the hallway far
/// behind (a 110 px photo: face boxes of about 90 to 110 px, under the default
/// min_face_px), from the left edge to the right edge, above the front person's head.
pub fn passing_behind(front: &RgbImage, passer: &RgbImage) -> Vec<RgbImage> {
    let bg = background();
    let mut frames = vec![bg.clone(); 3];
    for i in 0..WALK_FRAMES + 26 {
        let mut faces = Vec::new();
        if (6..30).contains(&i) {
            let t = (i - 6) as f32 / 23.0;
            faces.push(Placed {
                face: passer,
                side: 110,
                cx: 60.0 + 520.0 * t,
                cy: 80.0,
            });
        }
        faces.push(Placed {
            face: front,
            side: growing(100, AT_SPOT, WALK_FRAMES, i.min(WALK_FRAMES - 1)),
            cx: SPOT.0,
            cy: SPOT.1 + 40.0,
        });
        frames.push(compose(&faces));
    }
    frames.extend(std::iter::repeat_n(bg, GAP_FRAMES));
    frames
}

/// Frames of the walk of [`from_afar`].
pub const AFAR_WALK: usize = 24;

/// One person walking up from afar: the photo grows from 90 px (a face too small to
/// recognize) to 300 px over [`AFAR_WALK`] frames, then stays 6 frames.
pub fn from_afar(face: &RgbImage) -> Vec<RgbImage> {
    let bg = background();
    let mut frames = vec![bg.clone(); 3];
    for i in 0..AFAR_WALK + 6 {
        frames.push(compose(&[Placed {
            face,
            side: growing(90, 300, AFAR_WALK, i.min(AFAR_WALK - 1)),
            cx: 330.0,
            cy: 220.0,
        }]));
    }
    frames.extend(std::iter::repeat_n(bg, GAP_FRAMES));
    frames
}

/// `first` at the spot, `second` in their place at once for three seconds, then
/// `first` again at once for two seconds.
pub fn back_and_forth(first: &RgbImage, second: &RgbImage) -> Vec<RgbImage> {
    let mut frames = queue(&[first, second], 0, 30);
    let tail = frames.split_off(frames.len() - GAP_FRAMES);
    frames.extend(stand(first, 20));
    frames.extend(tail);
    frames
}

/// The door scenes of issue 12: (name, frames, expected user ids in order, debounce
/// seconds, unknown interval seconds).
pub type DoorScene = (
    &'static str,
    Vec<RgbImage>,
    Vec<Option<&'static str>>,
    u64,
    u64,
);

pub fn door_scenes() -> Vec<DoorScene> {
    let amy = person("amy", 2);
    let sheldon = person("sheldon", 2);
    let penny = person("penny", 2);
    let stuart = person("stuart", 1);
    let three = [Some("amy"), Some("sheldon"), Some("penny")];
    vec![
        (
            "queue, 0.6 s gaps",
            queue(&[&amy, &sheldon, &penny], 6, 20),
            three.to_vec(),
            60,
            10,
        ),
        (
            "queue, 0.2 s gaps",
            queue(&[&amy, &sheldon, &penny], 2, 20),
            three.to_vec(),
            60,
            10,
        ),
        (
            "queue, no gap",
            queue(&[&amy, &sheldon, &penny], 0, 20),
            three.to_vec(),
            60,
            10,
        ),
        (
            "A, B in A's place, A again (debounce 1 s)",
            back_and_forth(&amy, &sheldon),
            vec![Some("amy"), Some("sheldon"), Some("amy")],
            1,
            10,
        ),
        (
            "two people at once",
            side_by_side(&person("howard", 3), &person("raj", 2)),
            vec![Some("howard"), Some("raj")],
            60,
            10,
        ),
        (
            "passer-by far behind",
            passing_behind(&penny, &person("raj", 2)),
            vec![Some("penny")],
            60,
            10,
        ),
        (
            "known person from afar",
            from_afar(&person("leonard", 2)),
            vec![Some("leonard")],
            60,
            0,
        ),
        (
            "stranger from afar (no unknown rate limit)",
            from_afar(&stuart),
            vec![None],
            60,
            0,
        ),
        (
            "stranger (2 s), a known person at once",
            queue(&[&stuart, &amy], 0, 20),
            vec![None, Some("amy")],
            60,
            10,
        ),
        (
            "stranger (4 s), a known person at once",
            queue(&[&stuart, &amy], 0, 40),
            vec![None, Some("amy")],
            60,
            10,
        ),
    ]
}
