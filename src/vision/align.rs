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

/// Keypoints are snapped to this fraction of a pixel before the fit.
const KEYPOINT_GRID: f32 = 32.0;

/// The aligned chip of one detected face, or `None` if its keypoints are degenerate.
pub fn align(image: &RgbImage, detection: &Detection, layout: &ChipLayout) -> Option<RgbImage> {
    let k = &detection.keypoints;
    let src = [k.right_eye, k.left_eye, k.mouth].map(snap);
    let to_chip = Similarity::fit(&src, &layout.template())?;
    let to_image = to_chip.inverse()?;
    Some(warp(image, &to_image, layout.size, layout.size))
}

/// Rounds a keypoint to 1/32 pixel. The detector's float outputs differ between CPUs by
/// about 1e-5 pixel (XNNPACK's x86_64 and ARM kernels); unsnapped, that moves the chip's
/// sampling points, flips the rounding of some chip pixels, and the int8 embedder turns
/// those flips into a similarity difference of ~2e-3 between an x86_64 server and a
/// Raspberry Pi for the same photo. Snapped, the chips are identical except when a
/// coordinate sits within 1e-5 of a grid line; 1/32 pixel is far below the detector's
/// own keypoint noise.
fn snap(p: Point) -> Point {
    Point {
        x: (p.x * KEYPOINT_GRID).round() / KEYPOINT_GRID,
        y: (p.y * KEYPOINT_GRID).round() / KEYPOINT_GRID,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypoints_differing_by_float_noise_snap_to_the_same_point() {
        let a = snap(Point {
            x: 107.082_94,
            y: 46.758_45,
        });
        let b = snap(Point {
            x: 107.082_98,
            y: 46.758_48,
        });
        assert_eq!(a, b);
        assert!((a.x - 107.082_94).abs() <= 0.5 / KEYPOINT_GRID);
    }
}
