//! Recognition core: decode -> detect -> align -> quality -> mask -> embed.
//!
//! Public face: [`Pipeline`] (thread-safe, built once from [`PipelineOptions`]), the
//! per-face result [`Face`], the [`Embedding`] type and the calibrated [`similarity`]
//! mapping. Nothing here knows HTTP, MQTT or cameras.

mod admission;
mod align;
mod axis_aligned;
mod block_sums;
mod box_filter;
mod decode;
mod detect;
mod embed;
mod embedder_spec;
mod flip;
mod jitter;
mod landmarks;
mod mask;
mod model_input;
mod open_set;
mod pipeline;
mod sharpness;
mod similarity;
mod stored_crop;
mod warp;

pub use admission::{AdmissionLimits, Busy, PoolStatus};
pub use align::frontalness;
pub use decode::{decode_image, DecodeError, DecodeLimits, DEFAULT_MAX_DECODE_BYTES};
pub use detect::{DetectorKind, FAR_RETRY_BELOW};
pub use embed::{Embedding, EMBEDDING_DIM};
pub use embedder_spec::{
    CropTemplate, EmbedderSpec, InputLayout, InputNormalisation, SimilarityCalibration, SpecError,
    SpecSource, MAX_SIZE_SHIFT,
};
pub use flip::{near_threshold, ranking_near};
pub use jitter::{ChipJitter, MAX_CHIPS as MAX_TEST_TIME_CHIPS};
pub use landmarks::{Alignment, MeshLandmarks, FACE_MESH_FILE};
pub use open_set::ScoreNormalisation;
pub use pipeline::{
    Appearance, FaceSelection, HeldSession, Pipeline, PipelineOptions, StageTimings,
};
pub use sharpness::chip_sharpness;
pub use similarity::{similarity, Calibration, CALIBRATION, DEFAULT_THRESHOLD};
pub use stored_crop::{CropPoints, StoredCrop};

/// An axis-aligned box in image pixels (origin top-left).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BoundingBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl BoundingBox {
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    pub fn center(&self) -> Point {
        Point {
            x: self.x + self.width / 2.0,
            y: self.y + self.height / 2.0,
        }
    }

    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// A point in image pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// BlazeFace's six keypoints, in the detector's order.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Keypoints {
    pub right_eye: Point,
    pub left_eye: Point,
    pub nose_tip: Point,
    pub mouth: Point,
    pub right_ear: Point,
    pub left_ear: Point,
}

/// One detected face before recognition.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Detection {
    pub bbox: BoundingBox,
    /// Detector confidence, 0..1.
    pub score: f32,
    pub keypoints: Keypoints,
}

/// Image-quality facts about a face, for gates such as "face too small" (413).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Quality {
    /// Face size in source pixels: the larger side of the detector box.
    pub face_px: f32,
    pub detector_score: f32,
    /// 0 (profile) .. 1 (frontal), from keypoint symmetry.
    pub frontalness: f32,
}

/// A face fully analysed: detected, aligned, mask-classified and embedded.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Face {
    pub detection: Detection,
    pub quality: Quality,
    /// Probability that the face wears a mask, 0..1.
    pub mask_probability: f32,
    /// `mask_probability >= PipelineOptions::mask_threshold`.
    pub masked: bool,
    #[serde(skip)]
    pub embedding: Embedding,
    /// The aligned chip the embedder saw (RGB, the embedder's input size).
    #[serde(skip)]
    pub aligned: image::RgbImage,
    /// The crop to keep with the face's template, so that a model change can re-embed
    /// without the photo: `aligned` with a margin (src/vision/stored_crop.rs). Only from
    /// [`Pipeline::analyze_bytes_to_store`].
    #[serde(skip)]
    pub stored_crop: Option<StoredCrop>,
}

/// Side of the aligned face crop (dlib's chip size).
pub const ALIGNED_SIZE: u32 = 150;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::Error),
    #[error(transparent)]
    Embedder(#[from] SpecError),
    #[error("model output malformed: {0}")]
    ModelOutput(String),
    /// A stored crop without recorded face points ([`CropPoints`]) and not of the one
    /// size whose layout is known.
    #[error(
        "a stored face crop is {}x{} and records no face position (crops stored before \
         facegate recorded it are read as dlib's 150x150 chip, the only crop facegate's \
         own embedders cut); this embedder takes {}x{} chips, so enroll these faces \
         again from photos (docs/own-model.md)",
        found.0, found.1, expected.0, expected.1
    )]
    StoredChipLayout {
        found: (u32, u32),
        expected: (u32, u32),
    },
    /// A stored crop's recorded face points cannot be used.
    #[error("stored face crop: {0}")]
    StoredCrop(String),
    /// No inference session within the queue's bounds (`[runtime] queue`,
    /// `queue_timeout_ms`): the caller may retry later.
    #[error(transparent)]
    Busy(#[from] Busy),
}
