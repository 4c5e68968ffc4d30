//! Test-time augmentation ("jitter", as dlib's `num_jitters`): the embedding of a face
//! is the mean of the embeddings of its aligned chip and of a few chips cut with the
//! alignment moved slightly (shifted, scaled, rotated about the chip's centre), each
//! with its mirror when flip averaging is on. The alignment's own error differs from
//! photo to photo; averaging over small moves of it makes the embedding depend less on
//! where exactly the keypoints fell. Which moves: docs/accuracy.md, "Test-time chips".

use image::RgbImage;
use serde::Deserialize;

use super::align::{cut, ChipLayout};
use super::warp::Similarity;

/// Largest shift (fraction of the chip's side), scale change and rotation accepted:
/// beyond them a chip no longer shows the face the way the embedder was trained on.
pub const MAX_SHIFT: f32 = 0.1;
pub const SCALE_RANGE: std::ops::RangeInclusive<f32> = 0.8..=1.25;
pub const MAX_ROTATE_DEGREES: f32 = 15.0;
/// At most this many extra chips (each one or two more embedder runs per face).
pub const MAX_CHIPS: usize = 16;

/// One extra chip: the aligned chip's transform followed by this move, in chip
/// coordinates. `shift_x` / `shift_y` move the face by that fraction of the chip's
/// width / height (positive: right / down), `scale` enlarges it about the chip's centre
/// (0.97: the face 3 % smaller), `rotate_degrees` turns it about the centre (positive:
/// clockwise on screen).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChipJitter {
    #[serde(default)]
    pub shift_x: f32,
    #[serde(default)]
    pub shift_y: f32,
    #[serde(default = "unit_scale")]
    pub scale: f32,
    #[serde(default)]
    pub rotate_degrees: f32,
}

fn unit_scale() -> f32 {
    1.0
}

impl Default for ChipJitter {
    fn default() -> Self {
        ChipJitter {
            shift_x: 0.0,
            shift_y: 0.0,
            scale: 1.0,
            rotate_degrees: 0.0,
        }
    }
}

impl ChipJitter {
    /// Why this move is refused, if it is.
    pub fn problem(&self) -> Option<String> {
        let finite = [self.shift_x, self.shift_y, self.scale, self.rotate_degrees]
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return Some("values must be finite numbers".into());
        }
        if self.shift_x.abs() > MAX_SHIFT || self.shift_y.abs() > MAX_SHIFT {
            return Some(format!("shift_x and shift_y must be within ±{MAX_SHIFT}"));
        }
        if !SCALE_RANGE.contains(&self.scale) {
            return Some(format!(
                "scale must be within {}..{}",
                SCALE_RANGE.start(),
                SCALE_RANGE.end()
            ));
        }
        if self.rotate_degrees.abs() > MAX_ROTATE_DEGREES {
            return Some(format!(
                "rotate_degrees must be within ±{MAX_ROTATE_DEGREES}"
            ));
        }
        if *self == ChipJitter::default() {
            return Some("moves nothing (the aligned chip is always used)".into());
        }
        None
    }

    /// The image-to-chip transform of this chip, from the aligned chip's `to_chip` on a
    /// `width` x `height` chip: `J(p) = scale * R(p - c) + c + shift`, then `J ∘ to_chip`.
    pub fn apply_to(&self, to_chip: &Similarity, width: u32, height: u32) -> Similarity {
        let (w, h) = (width as f32, height as f32);
        let (sin, cos) = self.rotate_degrees.to_radians().sin_cos();
        let (ja, jb) = (self.scale * cos, self.scale * sin);
        let (cx, cy) = (w / 2.0, h / 2.0);
        let jitter = Similarity {
            a: ja,
            b: jb,
            tx: cx + self.shift_x * w - (ja * cx - jb * cy),
            ty: cy + self.shift_y * h - (jb * cx + ja * cy),
        };
        let t = jitter.apply(super::Point {
            x: to_chip.tx,
            y: to_chip.ty,
        });
        Similarity {
            a: ja * to_chip.a - jb * to_chip.b,
            b: ja * to_chip.b + jb * to_chip.a,
            tx: t.x,
            ty: t.y,
        }
    }
}

/// The test-time chips of one face, cut only when asked for (identify and verify ask
/// only when their decision is near its threshold, src/vision/flip.rs).
pub(super) struct ExtraChips<'a> {
    pub image: &'a RgbImage,
    /// The aligned chip's image-to-chip transform.
    pub to_chip: Similarity,
    pub layout: &'a ChipLayout,
    pub jitters: &'a [ChipJitter],
}

impl ExtraChips<'_> {
    pub fn any(&self) -> bool {
        !self.jitters.is_empty()
    }

    /// One chip per jitter (a jitter whose transform cannot be inverted is skipped;
    /// validated jitters always can).
    pub fn chips(&self) -> Vec<RgbImage> {
        self.jitters
            .iter()
            .filter_map(|j| {
                let to_chip = j.apply_to(&self.to_chip, self.layout.width, self.layout.height);
                cut(self.image, &to_chip, self.layout)
            })
            .collect()
    }
}

/// The chips' part of the template fingerprint: empty for none (templates made without
/// test-time chips keep their fingerprint).
pub fn fingerprint_text(chips: &[ChipJitter]) -> String {
    if chips.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = chips
        .iter()
        .map(|j| {
            format!(
                "({},{},{},{})",
                j.shift_x, j.shift_y, j.scale, j.rotate_degrees
            )
        })
        .collect();
    format!("tta={}", parts.join(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::Point;

    fn close(p: Point, x: f32, y: f32) -> bool {
        (p.x - x).abs() < 1e-3 && (p.y - y).abs() < 1e-3
    }

    #[test]
    fn a_shift_moves_every_chip_point_by_that_fraction_of_the_chip() {
        let to_chip = Similarity::fit(
            &[Point { x: 10.0, y: 10.0 }, Point { x: 30.0, y: 12.0 }],
            &[Point { x: 40.0, y: 50.0 }, Point { x: 110.0, y: 50.0 }],
        )
        .unwrap();
        let j = ChipJitter {
            shift_x: 0.02,
            shift_y: -0.04,
            ..ChipJitter::default()
        };
        let moved = j.apply_to(&to_chip, 150, 100);
        let p = Point { x: 17.0, y: 23.0 };
        let (a, b) = (to_chip.apply(p), moved.apply(p));
        assert!(close(b, a.x + 3.0, a.y - 4.0), "{a:?} {b:?}");
    }

    #[test]
    fn scale_and_rotation_keep_the_chip_centre_and_turn_clockwise() {
        let identity = Similarity::scale_translate(1.0, 0.0, 0.0);
        let j = ChipJitter {
            scale: 0.5,
            rotate_degrees: 90.0,
            ..ChipJitter::default()
        };
        let t = j.apply_to(&identity, 150, 150);
        assert!(close(t.apply(Point { x: 75.0, y: 75.0 }), 75.0, 75.0));
        // A point right of the centre goes below it (y down: clockwise), at half the distance.
        assert!(close(t.apply(Point { x: 95.0, y: 75.0 }), 75.0, 85.0));
    }

    #[test]
    fn moves_out_of_range_or_moving_nothing_are_refused() {
        assert!(ChipJitter::default().problem().is_some());
        let bad = [
            ChipJitter {
                shift_x: 0.2,
                ..ChipJitter::default()
            },
            ChipJitter {
                scale: 0.5,
                ..ChipJitter::default()
            },
            ChipJitter {
                rotate_degrees: -30.0,
                ..ChipJitter::default()
            },
            ChipJitter {
                shift_y: f32::NAN,
                ..ChipJitter::default()
            },
        ];
        assert!(bad.iter().all(|j| j.problem().is_some()));
        let ok = ChipJitter {
            shift_x: -0.02,
            rotate_degrees: 3.0,
            ..ChipJitter::default()
        };
        assert_eq!(ok.problem(), None);
    }

    #[test]
    fn no_chips_leave_the_fingerprint_text_empty() {
        assert_eq!(fingerprint_text(&[]), "");
        let one = fingerprint_text(&[ChipJitter {
            scale: 0.97,
            ..ChipJitter::default()
        }]);
        assert_eq!(one, "tta=(0,0,0.97,0)");
    }
}
