//! Face-mesh landmarks for alignment (`recognition.alignment = "face_mesh"`, issue #14):
//! MediaPipe's face landmark network (468 points, models-tflite/face_landmark.tflite)
//! refines BlazeFace's six keypoints into the five points dlib's ResNet was trained
//! with (both corners of each eye and the base of the nose), so that the chip is cut
//! the way dlib's 5-point shape predictor cut its training chips.
//!
//! The network's input is MediaPipe's region of interest for a detection
//! (face_detection_front_detection_to_roi.pbtxt): the detector box's centre, turned so
//! that the line from the right eye (image left) to the left eye is horizontal, a square
//! of 1.5 x the box's longer side, resampled to 192x192 RGB in 0..1
//! (face_landmark_cpu.pbtxt: ImageToTensor range 0..1). Outputs: 468 x (x, y, z) in
//! input pixels, and a face-presence logit.

use image::RgbImage;

use super::model_input::square_rgb_input;
use super::warp::{warp_into, Similarity, WarpScratch};
use super::{Detection, Error, Point};
use crate::runtime::Model;

/// Which points align the face (`recognition.alignment`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alignment {
    /// BlazeFace's keypoints (eye centres and mouth centre): no extra model run.
    #[default]
    Keypoints,
    /// The face mesh's eye corners and nose base fitted to dlib's 5-point template (one
    /// more model run per face).
    FaceMesh,
}

impl Alignment {
    pub fn name(self) -> &'static str {
        match self {
            Alignment::Keypoints => "keypoints",
            Alignment::FaceMesh => "face_mesh",
        }
    }
}

/// The shipped face landmark network (models-tflite/MANIFEST.toml).
pub const FACE_MESH_FILE: &str = "face_landmark.tflite";

/// The network's square input side.
pub const MESH_INPUT: u32 = 192;
/// Side of the region of interest over the detector box's longer side (MediaPipe's
/// RectTransformation scale 1.5, square_long).
const ROI_SCALE: f32 = 1.5;
/// Landmarks the network outputs.
const MESH_POINTS: usize = 468;
/// Face presence below this (sigmoid of the flag) means the mesh is not trusted and
/// the detector's keypoints align the face (MediaPipe's tracking threshold).
pub const MIN_PRESENCE: f32 = 0.5;

/// Mesh indices of dlib's five points, in dlib's order (shape_predictor_5_face_landmarks
/// and `get_face_chip_details`): the subject's left eye outer and inner corner (image
/// right), the right eye outer and inner corner (image left), the base of the nose.
const DLIB5: [usize; 5] = [263, 362, 33, 133, NOSE_BASE];
/// The mesh point under the nose (the columella's base) that stands for dlib's nose
/// point; 2 and 94 were compared on pairsDevTrain (docs/accuracy.md).
const NOSE_BASE: usize = 2;
/// Mouth corners (right, left) for templates that use the mouth centre.
const MOUTH_CORNERS: [usize; 2] = [61, 291];

/// What the face mesh found for one detection, in image pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeshLandmarks {
    /// dlib's five points in dlib's order (see [`DLIB5`]).
    pub dlib5: [Point; 5],
    /// Right eye centre, left eye centre (means of their corners) and mouth centre (mean
    /// of its corners): the three points of the keypoint-based templates.
    pub eyes_mouth: [Point; 3],
    /// Face presence, 0..1.
    pub presence: f32,
}

/// Checks a loaded face landmark network at load: one [1, 192, 192, 3] input, and
/// outputs holding 468 x 3 landmark values and one presence value.
pub fn check_mesh_model(model: &Model) -> Result<(), Error> {
    let side = MESH_INPUT as i32;
    let inputs: Vec<_> = model.inputs().collect();
    let counts: Vec<usize> = model.outputs().map(|o| o.element_count()).collect();
    let input_ok = matches!(inputs.as_slice(), [i] if i.shape == [1, side, side, 3]);
    if !input_ok || !counts.contains(&(MESH_POINTS * 3)) || !counts.contains(&1) {
        return Err(Error::ModelOutput(format!(
            "face landmark model {}: inputs {:?} and output sizes {counts:?}, expected one \
             [1, {side}, {side}, 3] input and outputs of {} and 1 values",
            model.name(),
            inputs.iter().map(|i| &i.shape).collect::<Vec<_>>(),
            MESH_POINTS * 3
        )));
    }
    Ok(())
}

/// The map from the network's input pixels to image pixels for `detection`; `None`
/// for a degenerate box.
pub fn roi_to_image(detection: &Detection) -> Option<Similarity> {
    let k = &detection.keypoints;
    let (dx, dy) = (k.left_eye.x - k.right_eye.x, k.left_eye.y - k.right_eye.y);
    let angle = dy.atan2(dx);
    let side = ROI_SCALE * detection.bbox.width.max(detection.bbox.height);
    if !(side > 0.0 && side.is_finite() && angle.is_finite()) {
        return None;
    }
    let s = side / MESH_INPUT as f32;
    let (a, b) = (s * angle.cos(), s * angle.sin());
    let c = detection.bbox.center();
    let half = MESH_INPUT as f32 / 2.0;
    Some(Similarity {
        a,
        b,
        tx: c.x - (a * half - b * half),
        ty: c.y - (b * half + a * half),
    })
}

/// Runs the face mesh `model` on `detection`'s region of `image`.
pub fn mesh_landmarks(
    model: &mut Model,
    image: &RgbImage,
    detection: &Detection,
    scratch: &mut WarpScratch,
) -> Result<Option<MeshLandmarks>, Error> {
    let Some(to_image) = roi_to_image(detection) else {
        return Ok(None);
    };
    let side = MESH_INPUT as usize;
    let tensor = square_rgb_input(model.input_f32_mut(0)?, MESH_INPUT, "face mesh")?;
    // The warp writes -1..1 (the other models' range); this network takes 0..1.
    warp_into(image, &to_image, side, side, scratch, tensor);
    for v in tensor.iter_mut() {
        *v = *v * 0.5 + 0.5;
    }
    model.run()?;
    let (mut points, mut flag) = (None, None);
    for i in 0..model.outputs().count() {
        let values = model.output_dequantized(i)?;
        match values.len() {
            n if n == MESH_POINTS * 3 => points = Some(values),
            1 => flag = Some(values[0]),
            _ => {}
        }
    }
    let (Some(points), Some(flag)) = (points, flag) else {
        return Err(Error::ModelOutput(format!(
            "face mesh outputs are not {} landmark values and a presence flag",
            MESH_POINTS * 3
        )));
    };
    let at = |i: usize| {
        to_image.apply(Point {
            x: points[i * 3],
            y: points[i * 3 + 1],
        })
    };
    let dlib5 = DLIB5.map(at);
    if dlib5.iter().any(|p| !(p.x.is_finite() && p.y.is_finite())) {
        return Ok(None);
    }
    let mid = |p: Point, q: Point| Point {
        x: (p.x + q.x) / 2.0,
        y: (p.y + q.y) / 2.0,
    };
    let [mr, ml] = MOUTH_CORNERS.map(at);
    Ok(Some(MeshLandmarks {
        dlib5,
        eyes_mouth: [
            mid(dlib5[2], dlib5[3]),
            mid(dlib5[0], dlib5[1]),
            mid(mr, ml),
        ],
        presence: 1.0 / (1.0 + (-flag.clamp(-100.0, 100.0)).exp()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::{BoundingBox, Keypoints};

    #[test]
    fn the_roi_is_centred_on_the_box_turned_with_the_eyes_and_half_again_its_size() {
        let p = |x, y| Point { x, y };
        let d = Detection {
            bbox: BoundingBox {
                x: 100.0,
                y: 50.0,
                width: 80.0,
                height: 100.0,
            },
            score: 0.9,
            keypoints: Keypoints {
                right_eye: p(120.0, 90.0),
                left_eye: p(160.0, 130.0),
                nose_tip: p(0.0, 0.0),
                mouth: p(0.0, 0.0),
                right_ear: p(0.0, 0.0),
                left_ear: p(0.0, 0.0),
            },
        };
        let t = roi_to_image(&d).unwrap();
        let c = t.apply(p(96.0, 96.0));
        assert!(
            (c.x - 140.0).abs() < 1e-3 && (c.y - 100.0).abs() < 1e-3,
            "{c:?}"
        );
        assert!((t.scale() * 192.0 - 150.0).abs() < 1e-3);
        // The input's x axis runs along the eye line (45 degrees here).
        let right = t.apply(p(97.0, 96.0));
        assert!(((right.y - c.y) - (right.x - c.x)).abs() < 1e-4);
    }
}
