//! Flip averaging on demand (issue 13): the mirrored chip costs a second embedder run,
//! half of the single-face pipeline. Its average moves a cosine by a few thousandths,
//! which only matters for a decision close to its threshold; far from it, the single
//! embedding gives the same answer. So a caller that knows its decision (identify:
//! best match against the identify threshold; verify: best template against the verify
//! threshold) asks for the single embedding first and for the mirror only when near.
//! Templates are still flip-averaged (enrollment uses [`Flip::Configured`]), so the
//! embedding space (the fingerprint) is unchanged. LFW development figures: docs/accuracy.md.

use image::RgbImage;

use super::embed::{add_into, embed, embed_sum, normalised, Embedding};
use super::embedder_spec::EmbedderSpec;
use super::jitter::ExtraChips;
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

/// True when a ranked answer made with the single embedding could change with the
/// mirror: `cosines` are the best cosines of distinct candidates, best first, for the
/// first `listed` places and the runner-up after them. Near when one of them is within
/// `margin` of the threshold (in or out), or when two neighbours, the higher a possible
/// match, are within `margin` of each other (their order, or which of them is listed,
/// could swap: identify's best of two look-alike users).
pub fn ranking_near(cosines: &[f32], threshold_cosine: f32, margin: f32, listed: usize) -> bool {
    let considered = &cosines[..cosines.len().min(listed + 1)];
    considered
        .iter()
        .any(|&c| near_threshold(c, threshold_cosine, margin))
        || considered
            .windows(2)
            .any(|w| w[0] >= threshold_cosine - margin && w[0] - w[1] <= margin)
}

/// The embedding of `chip` (and of `extra`'s test-time chips, src/vision/jitter.rs),
/// each with its mirror when `flip_average`, as `flip` asks. With
/// [`Flip::WhenNear`] the single chip runs first; the mirror and the test-time chips run
/// only when near, and then the answer is the average over all of them, as a template's.
pub(super) fn embed_with(
    model: &mut Model,
    chip: &RgbImage,
    extra: &ExtraChips<'_>,
    flip_average: bool,
    flip: Flip<'_>,
    spec: &EmbedderSpec,
) -> Result<Embedding, Error> {
    let Flip::WhenNear(near) = flip else {
        let mut sum = embed_sum(model, chip, flip_average, spec)?;
        for c in extra.chips() {
            add_into(&mut sum, &embed_sum(model, &c, flip_average, spec)?);
        }
        return normalised(&sum);
    };
    let single_sum = embed_sum(model, chip, false, spec)?;
    let single = normalised(&single_sum)?;
    if !(flip_average || extra.any()) || !near(&single) {
        return Ok(single);
    }
    if !extra.any() {
        // Flip averaging alone: the mean of the two normalised embeddings, as measured
        // in issue 13 (docs/accuracy.md).
        let mirrored = embed(model, &image::imageops::flip_horizontal(chip), false, spec)?;
        let mut sum = single.0.clone();
        add_into(&mut sum, &mirrored.0);
        return Embedding::from_raw(&sum)
            .ok_or_else(|| Error::ModelOutput("flip-averaged embedding is zero".into()));
    }
    let mut sum = single_sum;
    if flip_average {
        let mirrored = embed_sum(model, &image::imageops::flip_horizontal(chip), false, spec)?;
        add_into(&mut sum, &mirrored);
    }
    for c in extra.chips() {
        add_into(&mut sum, &embed_sum(model, &c, flip_average, spec)?);
    }
    normalised(&sum)
}

#[cfg(test)]
mod tests {
    use super::ranking_near;

    #[test]
    fn a_clear_single_match_needs_no_mirror() {
        assert!(!ranking_near(&[0.98, 0.60], 0.917, 0.02, 1));
        assert!(!ranking_near(&[0.50], 0.917, 0.02, 1));
        assert!(!ranking_near(&[], 0.917, 0.02, 1));
    }

    #[test]
    fn a_best_match_near_the_threshold_needs_the_mirror() {
        assert!(ranking_near(&[0.93, 0.40], 0.917, 0.02, 1));
        assert!(ranking_near(&[0.90], 0.917, 0.02, 1));
    }

    #[test]
    fn two_look_alike_users_above_the_threshold_need_the_mirror() {
        // Both clear the threshold by far, but the mirror could swap who is first.
        assert!(ranking_near(&[0.975, 0.97], 0.917, 0.02, 1));
        // The same pair far below the threshold: "unknown" either way.
        assert!(!ranking_near(&[0.70, 0.695], 0.917, 0.02, 1));
    }

    #[test]
    fn only_the_listed_places_and_the_runner_up_count() {
        // With one place listed, the third candidate's closeness to the second is moot.
        assert!(!ranking_near(&[0.99, 0.95, 0.949], 0.917, 0.02, 1));
        assert!(ranking_near(&[0.99, 0.95, 0.949], 0.917, 0.02, 2));
    }
}
