//! BlazeFace (MediaPipe face detection): letterboxed input, SSD anchor decoding,
//! weighted non-maximum suppression, and mapping back to image pixels.

use std::borrow::Cow;

use image::RgbImage;

use super::model_input::square_rgb_input;
use super::warp::{warp_into, Similarity, WarpScratch};
use super::{BoundingBox, Detection, Error, Keypoints, Point};
use crate::runtime::Model;

/// Which BlazeFace variant runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// 128x128 input, faces within ~2 m of the camera.
    ShortRange,
    /// 192x192 input, faces up to ~5 m away.
    FullRange,
}

impl DetectorKind {
    pub fn file_name(self) -> &'static str {
        match self {
            DetectorKind::ShortRange => "face_detection_short_range.tflite",
            DetectorKind::FullRange => "face_detection_full_range.tflite",
        }
    }

    fn input_size(self) -> u32 {
        match self {
            DetectorKind::ShortRange => 128,
            DetectorKind::FullRange => 192,
        }
    }

    /// MediaPipe's SSD anchor layout for each model: (feature-map stride, anchors per
    /// cell) per layer, all anchors of size 1 (the regressors carry the size).
    fn anchor_layers(self) -> &'static [(u32, u32)] {
        match self {
            DetectorKind::ShortRange => &[(8, 2), (16, 6)],
            DetectorKind::FullRange => &[(4, 1)],
        }
    }
}

/// Detector tuning (score and NMS defaults follow MediaPipe's graphs).
#[derive(Clone, Copy, Debug)]
pub struct DetectorParams {
    pub min_score: f32,
    pub nms_iou: f32,
    /// When nothing is found, detect once more on the picture shrunk into a black border
    /// whose side is this many times the picture's longer side ("zoom out"): BlazeFace
    /// misses faces that fill the whole frame (tight face crops, a face right at the
    /// camera), more so with a mask on. 1.0 or less: no retry.
    pub zoom_out_retry: f32,
}

/// The zoom-out factor of the retry: tight crops of masked development faces (LFW with
/// drawn masks) went from many misses to few at 1.6; see models-tflite/MANIFEST.toml.
pub const ZOOM_OUT_RETRY: f32 = 1.6;

impl Default for DetectorParams {
    fn default() -> Self {
        DetectorParams {
            min_score: 0.5,
            nms_iou: 0.3,
            zoom_out_retry: ZOOM_OUT_RETRY,
        }
    }
}

/// The second detector for faces too small for the first: BlazeFace short range sees a
/// 1280x720 frame at 128x128, where a face 150 px wide (a person 1.5 m from a 720p
/// door camera) is 15 px and not found, or found with misplaced eyes. Full range (192x192,
/// trained for faces up to ~5 m) finds them. It runs only when the first detector found
/// nothing, or its best face scores below `below` and is small in the frame (a tight
/// portrait, which short range scores lower but places well, does not pay the full-range
/// run: ~3x a short-range run), and its faces are taken when its best face scores higher.
pub struct FarRetry {
    pub detector: Detector,
    pub below: f32,
}

/// Score below which identify, enroll and the camera also try the full-range detector
/// (`recognition.far_face_retry_below`).
pub const FAR_RETRY_BELOW: f32 = 0.75;

/// A face whose box is at least this share of the frame's longer side is large enough
/// for short range (it reads the frame at 128 px: such a face is 38 px or more there).
const SMALL_FACE: f32 = 0.3;

impl FarRetry {
    /// Whether `near` (faces in a `width` x `height` picture) calls for the far
    /// detector: nothing found, or every face unsure and small.
    pub fn needed(&self, near: &[Detection], width: u32, height: u32) -> bool {
        let longer_side = width.max(height) as f32;
        !near.iter().any(|f| {
            f.score >= self.below || f.bbox.width.max(f.bbox.height) >= SMALL_FACE * longer_side
        })
    }

    /// `near` (the first detector's faces) or, when they are unsure, the far detector's
    /// if its best face scores higher.
    pub fn refine(
        &self,
        near: Vec<Detection>,
        model: &mut Model,
        image: &RgbImage,
        scratch: &mut WarpScratch,
    ) -> Result<Vec<Detection>, Error> {
        let best = |faces: &[Detection]| faces.iter().map(|f| f.score).fold(0.0, f32::max);
        if !self.needed(&near, image.width(), image.height()) {
            return Ok(near);
        }
        let far = self.detector.detect_zoomed(model, image, 1.0, scratch)?;
        Ok(if best(&far) > best(&near) { far } else { near })
    }
}

/// Anchor centres in normalised input coordinates.
pub fn anchors(kind: DetectorKind) -> Vec<Point> {
    let size = kind.input_size();
    let mut out = Vec::new();
    for &(stride, per_cell) in kind.anchor_layers() {
        let cells = size.div_ceil(stride);
        for y in 0..cells {
            for x in 0..cells {
                for _ in 0..per_cell {
                    out.push(Point {
                        x: (x as f32 + 0.5) / cells as f32,
                        y: (y as f32 + 0.5) / cells as f32,
                    });
                }
            }
        }
    }
    out
}

/// A detector output as floats: borrowed from the tensor, or dequantized.
type Values<'m> = Cow<'m, [f32]>;

/// A loaded detector with its anchors.
pub struct Detector {
    kind: DetectorKind,
    anchors: Vec<Point>,
    params: DetectorParams,
}

impl Detector {
    pub fn new(kind: DetectorKind, params: DetectorParams) -> Self {
        Detector {
            kind,
            anchors: anchors(kind),
            params,
        }
    }

    /// Detects faces in `image` with `model` (a BlazeFace session of this kind); if none
    /// is found, retries zoomed out (see [`DetectorParams::zoom_out_retry`]). `scratch`
    /// holds the letterbox buffers between calls.
    pub fn detect(
        &self,
        model: &mut Model,
        image: &RgbImage,
        scratch: &mut WarpScratch,
    ) -> Result<Vec<Detection>, Error> {
        let faces = self.detect_zoomed(model, image, 1.0, scratch)?;
        if faces.is_empty() && self.params.zoom_out_retry > 1.0 {
            return self.detect_zoomed(model, image, self.params.zoom_out_retry, scratch);
        }
        Ok(faces)
    }

    /// One detector run on `image` letterboxed into a square of `zoom` times its longer
    /// side (1.0: the usual letterbox), results in image pixels.
    pub fn detect_zoomed(
        &self,
        model: &mut Model,
        image: &RgbImage,
        zoom: f32,
        scratch: &mut WarpScratch,
    ) -> Result<Vec<Detection>, Error> {
        let size = self.kind.input_size();
        let (w, h) = (image.width() as f32, image.height() as f32);
        // Letterbox: a square of `side` image pixels (the longer side times `zoom`),
        // centred on the image, padded black, scaled to `size`. Kept in image pixels so
        // that the usual frames map exactly (640 / 128 = 5 input pixels, offset 80):
        // the warp then reduces to the box filter and a copy.
        let side = w.max(h) * zoom.max(1.0);
        let (pad_x, pad_y) = ((side - w) / 2.0, (side - h) / 2.0);
        let input_to_image = Similarity::scale_translate(side / size as f32, -pad_x, -pad_y);
        let tensor = square_rgb_input(model.input_f32_mut(0)?, size, "detector")?;
        warp_into(
            image,
            &input_to_image,
            size as usize,
            size as usize,
            scratch,
            tensor,
        );
        model.run()?;
        let (regressors, scores) = self.outputs(model)?;
        let raw = self.decode(&regressors, &scores, size as f32);
        let merged = weighted_nms(raw, self.params.nms_iou);
        // Normalised letterbox coordinates to image pixels.
        let to_image = |p: Point| Point {
            x: p.x * side - pad_x,
            y: p.y * side - pad_y,
        };
        let mut faces: Vec<Detection> = merged
            .into_iter()
            .map(|d| {
                let tl = to_image(Point {
                    x: d.bbox.x,
                    y: d.bbox.y,
                });
                let br = to_image(Point {
                    x: d.bbox.x + d.bbox.width,
                    y: d.bbox.y + d.bbox.height,
                });
                let k = d.keypoints;
                Detection {
                    bbox: BoundingBox {
                        x: tl.x,
                        y: tl.y,
                        width: br.x - tl.x,
                        height: br.y - tl.y,
                    },
                    score: d.score,
                    keypoints: Keypoints {
                        right_eye: to_image(k.right_eye),
                        left_eye: to_image(k.left_eye),
                        nose_tip: to_image(k.nose_tip),
                        mouth: to_image(k.mouth),
                        right_ear: to_image(k.right_ear),
                        left_ear: to_image(k.left_ear),
                    },
                }
            })
            .collect();
        faces.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
        Ok(faces)
    }

    /// The two outputs, identified by size: regressors hold 16 values per anchor,
    /// classificators one. Float outputs are borrowed, not copied.
    fn outputs<'m>(&self, model: &'m Model) -> Result<(Values<'m>, Values<'m>), Error> {
        let n = self.anchors.len();
        let (mut regressors, mut scores) = (None, None);
        for i in 0..2 {
            let values = match model.output_f32(i) {
                Ok(values) => Cow::Borrowed(values),
                Err(_) => Cow::Owned(model.output_dequantized(i)?),
            };
            if values.len() == n * 16 {
                regressors = Some(values);
            } else if values.len() == n {
                scores = Some(values);
            }
        }
        match (regressors, scores) {
            (Some(r), Some(s)) => Ok((r, s)),
            _ => Err(Error::ModelOutput(format!(
                "detector outputs do not match {n} anchors"
            ))),
        }
    }

    /// Candidate detections in normalised letterbox coordinates.
    fn decode(&self, regressors: &[f32], scores: &[f32], size: f32) -> Vec<Detection> {
        let mut out = Vec::new();
        // Logits are clipped as MediaPipe does (score_clipping_thresh = 100).
        let min_logit = (self.params.min_score / (1.0 - self.params.min_score)).ln();
        for (i, (&score, anchor)) in scores.iter().zip(&self.anchors).enumerate() {
            // Most anchors fail the threshold: test the raw logit before anything else.
            // Clipping cannot change the outcome for thresholds whose logit lies within
            // +-100 (scores between 4e-44 and 1 - 4e-44), so it waits for the survivors.
            if score < min_logit {
                continue;
            }
            let logit = score.clamp(-100.0, 100.0);
            let r = &regressors[i * 16..i * 16 + 16];
            let point = |k: usize| Point {
                x: r[k] / size + anchor.x,
                y: r[k + 1] / size + anchor.y,
            };
            let c = point(0);
            let (bw, bh) = (r[2] / size, r[3] / size);
            if !(bw > 0.0 && bh > 0.0 && bw.is_finite() && bh.is_finite()) {
                continue;
            }
            out.push(Detection {
                bbox: BoundingBox {
                    x: c.x - bw / 2.0,
                    y: c.y - bh / 2.0,
                    width: bw,
                    height: bh,
                },
                score: 1.0 / (1.0 + (-logit).exp()),
                keypoints: Keypoints {
                    right_eye: point(4),
                    left_eye: point(6),
                    nose_tip: point(8),
                    mouth: point(10),
                    right_ear: point(12),
                    left_ear: point(14),
                },
            });
        }
        out
    }
}

/// MediaPipe's "weighted" NMS: each kept detection is the score-weighted average of the
/// candidates that overlap it by more than `iou`, which steadies boxes and keypoints.
pub fn weighted_nms(mut candidates: Vec<Detection>, iou: f32) -> Vec<Detection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut merged = vec![false; candidates.len()];
    let mut out = Vec::new();
    for best in 0..candidates.len() {
        if merged[best] {
            continue;
        }
        let best_box = candidates[best].bbox;
        // Score-weighted sums of the box (x, y, w, h) and the six keypoints (x, y), in
        // one pass over the group, in score order.
        let mut sums = [0.0f32; 16];
        let mut total = 0.0f32;
        for (d, taken) in candidates.iter().zip(merged.iter_mut()).skip(best) {
            if *taken || d.bbox.iou(&best_box) <= iou {
                continue;
            }
            *taken = true;
            total += d.score;
            for (sum, value) in sums.iter_mut().zip(fields(d)) {
                *sum += value * d.score;
            }
        }
        // A degenerate box (zero area) overlaps nothing, itself included: drop it.
        merged[best] = true;
        if total <= 0.0 {
            continue;
        }
        let avg = sums.map(|sum| sum / total);
        let point = |k: usize| Point {
            x: avg[4 + 2 * k],
            y: avg[5 + 2 * k],
        };
        out.push(Detection {
            bbox: BoundingBox {
                x: avg[0],
                y: avg[1],
                width: avg[2],
                height: avg[3],
            },
            score: candidates[best].score,
            keypoints: Keypoints {
                right_eye: point(0),
                left_eye: point(1),
                nose_tip: point(2),
                mouth: point(3),
                right_ear: point(4),
                left_ear: point(5),
            },
        });
    }
    out
}

/// The averaged values of a detection, in `weighted_nms`'s order.
fn fields(d: &Detection) -> [f32; 16] {
    let k = &d.keypoints;
    [
        d.bbox.x,
        d.bbox.y,
        d.bbox.width,
        d.bbox.height,
        k.right_eye.x,
        k.right_eye.y,
        k.left_eye.x,
        k.left_eye.y,
        k.nose_tip.x,
        k.nose_tip.y,
        k.mouth.x,
        k.mouth.y,
        k.right_ear.x,
        k.right_ear.y,
        k.left_ear.x,
        k.left_ear.y,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_counts_match_the_models() {
        assert_eq!(anchors(DetectorKind::ShortRange).len(), 896);
        assert_eq!(anchors(DetectorKind::FullRange).len(), 2304);
    }

    fn det(x: f32, score: f32) -> Detection {
        let p = Point { x, y: 0.0 };
        Detection {
            bbox: BoundingBox {
                x,
                y: 0.0,
                width: 10.0,
                height: 10.0,
            },
            score,
            keypoints: Keypoints {
                right_eye: p,
                left_eye: p,
                nose_tip: p,
                mouth: p,
                right_ear: p,
                left_ear: p,
            },
        }
    }

    #[test]
    fn the_far_detector_runs_only_for_nothing_or_small_unsure_faces() {
        let retry = FarRetry {
            detector: Detector::new(DetectorKind::FullRange, DetectorParams::default()),
            below: 0.75,
        };
        // 10 px faces in a 100 px picture are small; in a 30 px one they are not.
        assert!(retry.needed(&[], 640, 480), "nothing found");
        assert!(retry.needed(&[det(0.0, 0.6), det(50.0, 0.7)], 100, 80));
        assert!(
            !retry.needed(&[det(0.0, 0.6), det(50.0, 0.8)], 100, 80),
            "one sure face"
        );
        assert!(
            !retry.needed(&[det(0.0, 0.6)], 30, 30),
            "a large unsure face (portrait)"
        );
        let never = FarRetry {
            below: 0.0,
            ..retry
        };
        assert!(!never.needed(&[det(0.0, 0.1)], 100, 80));
    }

    #[test]
    fn weighted_nms_merges_overlaps_and_keeps_separate_faces() {
        let out = weighted_nms(vec![det(0.0, 0.9), det(1.0, 0.3), det(50.0, 0.8)], 0.3);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        // Weighted towards the stronger candidate: (0*0.9 + 1*0.3) / 1.2 = 0.25.
        assert!((out[0].bbox.x - 0.25).abs() < 1e-5);
        assert_eq!(out[1].bbox.x, 50.0);
    }

    #[test]
    fn weighted_nms_drops_a_zero_area_box_and_keeps_the_rest() {
        let mut flat = det(0.0, 0.9);
        flat.bbox.width = 0.0;
        let out = weighted_nms(vec![flat, det(50.0, 0.8)], 0.3);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bbox.x, 50.0);
    }
}
