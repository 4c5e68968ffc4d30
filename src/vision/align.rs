//! Alignment: a least-squares similarity transform from three BlazeFace keypoints
//! (both eyes, mouth centre) to dlib's mean-face layout, rendered as dlib's 150x150
//! chip. Which points and what padding were measured on the LFW development pairs
//! (docs/accuracy.md); the ear and nose points are too unstable across poses.

use image::RgbImage;

use super::warp::{warp, Similarity};
use super::{Detection, Point, ALIGNED_SIZE};

/// dlib's mean-face positions (unit square) of the right eye, left eye and mouth centre.
const TEMPLATE: [Point; 3] = [
    Point {
        x: 0.2273,
        y: 0.2214,
    },
    Point {
        x: 0.7528,
        y: 0.2212,
    },
    Point {
        x: 0.4901,
        y: 0.8075,
    },
];

/// Crop geometry: dlib's `get_face_chip_details(..., size, padding)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChipLayout {
    pub size: u32,
    pub padding: f32,
}

impl Default for ChipLayout {
    fn default() -> Self {
        ChipLayout {
            size: ALIGNED_SIZE,
            padding: 0.25,
        }
    }
}

impl ChipLayout {
    fn template(&self) -> [Point; 3] {
        let s = self.size as f32;
        let p = self.padding;
        TEMPLATE.map(|t| Point {
            x: (t.x + p) / (1.0 + 2.0 * p) * s,
            y: (t.y + p) / (1.0 + 2.0 * p) * s,
        })
    }
}

/// The aligned chip of one detected face, or `None` if its keypoints are degenerate.
pub fn align(image: &RgbImage, detection: &Detection, layout: &ChipLayout) -> Option<RgbImage> {
    let k = &detection.keypoints;
    let src = [k.right_eye, k.left_eye, k.mouth];
    let to_chip = Similarity::fit(&src, &layout.template())?;
    let to_image = to_chip.inverse()?;
    Some(warp(image, &to_image, layout.size, layout.size))
}

/// How frontal a face looks, 0..1: the nose tip's horizontal position between the eyes
/// (0.5 for a frontal face) folded into a score.
pub fn frontalness(detection: &Detection) -> f32 {
    let k = &detection.keypoints;
    let span = k.left_eye.x - k.right_eye.x;
    if span.abs() < f32::EPSILON {
        return 0.0;
    }
    let t = (k.nose_tip.x - k.right_eye.x) / span;
    (1.0 - (t - 0.5).abs() * 2.0).clamp(0.0, 1.0)
}
