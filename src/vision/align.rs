//! Alignment: a similarity transform from three BlazeFace keypoints (both eyes, mouth
//! centre) to the embedder's crop template ([`CropTemplate`]): by default a least-squares
//! fit to dlib's mean-face layout, rendered as dlib's 150x150 chip. Which points and what
//! padding were measured on the LFW development pairs (docs/accuracy.md); the ear and
//! nose points are too unstable across poses. With face-mesh landmarks
//! (src/vision/landmarks.rs) a dlib chip is fitted to dlib's own five points instead.

use image::RgbImage;

use super::embedder_spec::CropTemplate;
use super::landmarks::MeshLandmarks;
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

/// dlib's 5-point template (`get_face_chip_details` in dlib/image_transforms/
/// interpolation.h, the mean face of shape_predictor_5_face_landmarks), unit square:
/// left eye outer and inner corner (image right), right eye outer and inner corner,
/// base of the nose.
const DLIB_5: [Point; 5] = [
    Point {
        x: 0.859_567_46,
        y: 0.213_498_15,
    },
    Point {
        x: 0.646_060_5,
        y: 0.228_967_44,
    },
    Point {
        x: 0.120_575_06,
        y: 0.213_727_45,
    },
    Point {
        x: 0.334_085_06,
        y: 0.229_064_24,
    },
    Point {
        x: 0.490_112_3,
        y: 0.627_797_5,
    },
];

/// ArcFace's 112x112 template: right eye (image left), left eye, mouth centre (the
/// midpoint of its two mouth corners).
const ARCFACE_112: [Point; 3] = [
    Point {
        x: 38.2946 / 112.0,
        y: 51.6963 / 112.0,
    },
    Point {
        x: 73.5318 / 112.0,
        y: 51.5014 / 112.0,
    },
    Point {
        x: 56.1396 / 112.0,
        y: 92.2848 / 112.0,
    },
];

/// Crop geometry: the embedder's crop template at its input size.
#[derive(Clone, Debug, PartialEq)]
pub struct ChipLayout {
    pub width: u32,
    pub height: u32,
    pub template: CropTemplate,
}

impl Default for ChipLayout {
    fn default() -> Self {
        ChipLayout {
            width: ALIGNED_SIZE,
            height: ALIGNED_SIZE,
            template: CropTemplate::DlibChip { padding: 0.25 },
        }
    }
}

impl ChipLayout {
    /// The square every crop template is defined on, in chip pixels: `(left, side)`, its
    /// top being the chip's top. A square chip is that square. A chip of another shape
    /// takes the square of its height, centred across its width, as 112x96 models of
    /// the SphereFace family cut ArcFace's 112x112 template (8 px off each side); scaling
    /// the template's x and y apart would distort the face, which a similarity fit can
    /// only split between the eyes and the mouth.
    fn template_square(&self) -> (f32, f32) {
        let (w, h) = (self.width as f32, self.height as f32);
        ((w - h) / 2.0, h)
    }

    /// Chip positions of a unit-square template with dlib's padding formula
    /// `(padding + p) / (2 padding + 1) * size`.
    fn template_points<const N: usize>(&self, unit: &[Point; N], padding: f32) -> [Point; N] {
        let (left, side) = self.template_square();
        unit.map(|t| Point {
            x: left + (t.x + padding) / (1.0 + 2.0 * padding) * side,
            y: (t.y + padding) / (1.0 + 2.0 * padding) * side,
        })
    }

    /// Where this layout's chips show dlib's mean-face right eye, left eye and mouth
    /// centre: the template's points put through the layout as a face's keypoints would
    /// be (what a stored crop records, src/vision/stored_crop.rs). `None` only for a
    /// degenerate template.
    pub(super) fn face_points(&self) -> Option<[Point; 3]> {
        let frame = self.face_frame()?;
        Some(TEMPLATE.map(|p| frame.apply(p)))
    }

    /// Where this layout's chips put dlib's mean-face unit square: the transform from
    /// its coordinates to chip pixels.
    pub(super) fn face_frame(&self) -> Option<Similarity> {
        self.to_chip(&TEMPLATE)
    }

    /// The transform from image to chip coordinates for these keypoints.
    fn to_chip(&self, src: &[Point; 3]) -> Option<Similarity> {
        match self.template {
            CropTemplate::DlibChip { padding } => {
                Similarity::fit(src, &self.template_points(&TEMPLATE, padding))
            }
            CropTemplate::Arcface112 => {
                Similarity::fit(src, &self.template_points(&ARCFACE_112, 0.0))
            }
            CropTemplate::KeypointSquare { scale, shift_up } => {
                let [re, le, mouth] = *src;
                let eyes = Point {
                    x: (re.x + le.x) / 2.0,
                    y: (re.y + le.y) / 2.0,
                };
                let (dx, dy) = (mouth.x - eyes.x, mouth.y - eyes.y);
                let d = (dx * dx + dy * dy).sqrt();
                if d <= f32::EPSILON {
                    return None;
                }
                let side = scale * d;
                // Upright: the square's "down" is the eye-to-mouth direction.
                let (ux, uy) = (dx / d, dy / d);
                let centre = Point {
                    x: (eyes.x + mouth.x) / 2.0 - shift_up * dx,
                    y: (eyes.y + mouth.y) / 2.0 - shift_up * dy,
                };
                // Corners: top-left, top-right, bottom-left. "Right" is "down" turned a
                // quarter anticlockwise on screen: (0, 1) -> (1, 0), so the chip is not
                // mirrored (a similarity cannot fit a mirror image).
                let (rx, ry) = (uy, -ux);
                let corner = |sx: f32, sy: f32| Point {
                    x: centre.x + (sx * rx + sy * ux) * side / 2.0,
                    y: centre.y + (sx * ry + sy * uy) * side / 2.0,
                };
                let (left, side) = self.template_square();
                Similarity::fit(
                    &[corner(-1.0, -1.0), corner(1.0, -1.0), corner(-1.0, 1.0)],
                    &[
                        Point { x: left, y: 0.0 },
                        Point {
                            x: left + side,
                            y: 0.0,
                        },
                        Point { x: left, y: side },
                    ],
                )
            }
        }
    }
}

/// Keypoints are snapped to this fraction of a pixel before the fit.
const KEYPOINT_GRID: f32 = 32.0;

/// The aligned chip of one detected face, or `None` if its keypoints are degenerate.
/// With `mesh` (face-mesh landmarks of the same face), a dlib chip is fitted to dlib's
/// five points and the other templates take the mesh's eye and mouth centres.
pub fn align(
    image: &RgbImage,
    detection: &Detection,
    mesh: Option<&MeshLandmarks>,
    layout: &ChipLayout,
) -> Option<RgbImage> {
    align_with_transform(image, detection, mesh, layout).map(|(chip, _)| chip)
}

/// [`align`]'s chip and the image-to-chip transform it was cut with (test-time chips
/// move that transform, src/vision/jitter.rs).
pub fn align_with_transform(
    image: &RgbImage,
    detection: &Detection,
    mesh: Option<&MeshLandmarks>,
    layout: &ChipLayout,
) -> Option<(RgbImage, Similarity)> {
    let to_chip = chip_transform(detection, mesh, layout)?;
    Some((cut(image, &to_chip, layout)?, to_chip))
}

/// The chip `to_chip` (image to chip coordinates) cuts out of `image`.
pub fn cut(image: &RgbImage, to_chip: &Similarity, layout: &ChipLayout) -> Option<RgbImage> {
    let to_image = to_chip.inverse()?;
    Some(warp(image, &to_image, layout.width, layout.height))
}

/// The image-to-chip transform [`align`] cuts with, or `None` for degenerate points.
fn chip_transform(
    detection: &Detection,
    mesh: Option<&MeshLandmarks>,
    layout: &ChipLayout,
) -> Option<Similarity> {
    let to_chip = match (mesh, &layout.template) {
        (Some(m), CropTemplate::DlibChip { padding }) => Similarity::fit(
            &m.dlib5.map(snap),
            &layout.template_points(&DLIB_5, *padding),
        )?,
        (Some(m), _) => layout.to_chip(&m.eyes_mouth.map(snap))?,
        (None, _) => {
            let k = &detection.keypoints;
            layout.to_chip(&[k.right_eye, k.left_eye, k.mouth].map(snap))?
        }
    };
    Some(to_chip)
}

/// Where dlib's 5-point template puts its points on `layout`'s chip (a dlib chip).
pub fn dlib5_on_chip(layout: &ChipLayout) -> Option<[Point; 5]> {
    match layout.template {
        CropTemplate::DlibChip { padding } => Some(layout.template_points(&DLIB_5, padding)),
        _ => None,
    }
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

    #[test]
    fn a_112x96_chip_cuts_arcfaces_template_8_px_in_from_each_side() {
        // SphereFace-family models: 96 wide, 112 high, the 112x112 template's points
        // 8 px further left. Keypoints already there must map onto themselves.
        let layout = ChipLayout {
            width: 96,
            height: 112,
            template: CropTemplate::Arcface112,
        };
        let sphereface = ARCFACE_112.map(|p| Point {
            x: p.x * 112.0 - 8.0,
            y: p.y * 112.0,
        });
        let t = layout.to_chip(&sphereface).unwrap();
        for p in sphereface {
            let q = t.apply(p);
            assert!(
                (q.x - p.x).abs() < 1e-3 && (q.y - p.y).abs() < 1e-3,
                "{p:?} -> {q:?}"
            );
        }
    }

    #[test]
    fn a_chip_that_is_not_square_keeps_the_faces_proportions() {
        // The same face cut by each template into a square chip and into one 20 px
        // narrower: the same scale, the points shifted by 10 px, none distorted.
        let face = [
            Point { x: 40.0, y: 40.0 },
            Point { x: 62.0, y: 41.0 },
            Point { x: 51.0, y: 66.0 },
        ];
        for template in [
            CropTemplate::DlibChip { padding: 0.25 },
            CropTemplate::Arcface112,
            CropTemplate::KeypointSquare {
                scale: 3.2,
                shift_up: 0.2,
            },
        ] {
            let chip = |width| ChipLayout {
                width,
                height: 120,
                template: template.clone(),
            };
            let square = chip(120).to_chip(&face).unwrap();
            let narrow = chip(100).to_chip(&face).unwrap();
            assert!(
                (square.scale() - narrow.scale()).abs() < 1e-4,
                "{template:?}"
            );
            for p in face {
                let (a, b) = (square.apply(p), narrow.apply(p));
                assert!(
                    (a.x - 10.0 - b.x).abs() < 1e-3 && (a.y - b.y).abs() < 1e-3,
                    "{template:?}: {a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn a_keypoint_square_keeps_the_right_eye_on_the_chip_left_and_the_mouth_below() {
        let layout = ChipLayout {
            width: 160,
            height: 160,
            template: CropTemplate::KeypointSquare {
                scale: 3.2,
                shift_up: 0.2,
            },
        };
        let eye_r = Point { x: 40.0, y: 40.0 };
        let eye_l = Point { x: 60.0, y: 40.0 };
        let mouth = Point { x: 50.0, y: 60.0 };
        let t = layout.to_chip(&[eye_r, eye_l, mouth]).unwrap();
        let (r, l, m) = (t.apply(eye_r), t.apply(eye_l), t.apply(mouth));
        assert!(r.x < l.x && (r.y - l.y).abs() < 1e-3, "{r:?} {l:?}");
        assert!(m.y > r.y && (m.x - 80.0).abs() < 1e-3, "{m:?}");
        // 3.2 x 20 px square -> 160 px: 2.5x.
        assert!((t.scale() - 2.5).abs() < 1e-3);
    }
}
