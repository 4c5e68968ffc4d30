//! Flip averaging on demand (issue 13): the mirrored chip costs a second embedder run,
//! half of the single-face pipeline. Its average moves a cosine by a few thousandths,
//! which only matters for a decision close to its threshold; far from it, the single
//! embedding gives the same answer. So a caller that knows its decision (identify:
//! best match against the identify threshold; verify: best template against the verify
//! threshold) asks for the single embedding first and for the mirror only when near.
//! Templates are still flip-averaged (enrollment uses [`Flip::Configured`]), so the
//! embedding space (the fingerprint) is unchanged. LFW development figures: docs/accuracy.md.

use image::RgbImage;

use super::embed::{embed, Embedding};
use super::embedder_spec::EmbedderSpec;
use super::Error;
use crate::runtime::Model;

/// When the embedder also runs on the mirrored chip.
#[derive(Clone, Copy)]
pub enum Flip<'a> {
    /// As `recognition.flip_average` says (templates, compare, the camera).
    Configured,
    /// With flip averaging on: the single embedding first, then the mirror too only if
    /// `near` says the caller's decision with the single embedding is near its threshold.
    WhenNear(&'a dyn Fn(&Embedding) -> bool),
}

/// True when `cosine` is within `margin` of `threshold_cosine` (both cosines).
pub fn near_threshold(cosine: f32, threshold_cosine: f32, margin: f32) -> bool {
    (cosine - threshold_cosine).abs() <= margin
}

pub(super) fn embed_with(
    model: &mut Model,
    chip: &RgbImage,
    flip_average: bool,
    flip: Flip<'_>,
    spec: &EmbedderSpec,
) -> Result<Embedding, Error> {
    let Flip::WhenNear(near) = flip else {
        return embed(model, chip, flip_average, spec);
    };
    let single = embed(model, chip, false, spec)?;
    if !flip_average || !near(&single) {
        return Ok(single);
    }
    let mirrored = embed(model, &image::imageops::flip_horizontal(chip), false, spec)?;
    let sum: Vec<f32> = single
        .0
        .iter()
        .zip(&mirrored.0)
        .map(|(a, b)| a + b)
        .collect();
    Embedding::from_raw(&sum)
        .ok_or_else(|| Error::ModelOutput("flip-averaged embedding is zero".into()))
}
