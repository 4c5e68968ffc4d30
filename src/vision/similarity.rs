//! The API's similarity (0..1) as a calibrated, monotonic mapping of the embedder's
//! cosine similarity.
//!
//! Raw cosines of this embedder are bunched (genuine pairs around 0.95, impostors
//! around 0.83), so reporting them directly would make every answer look "83% similar".
//! The mapping is piecewise linear through three anchors:
//! cosine <= `zero_cosine` -> 0, cosine = `threshold_cosine` -> [`DEFAULT_THRESHOLD`]
//! (0.75), cosine = 1 -> 1. `threshold_cosine` is the operating point chosen on the
//! LFW development pairs (pairsDevTrain, best accuracy); docs/accuracy.md gives its
//! false accept / false reject rates on pairsDevTest and the command that measures them.

use super::open_set::SIZE_SHIFT_PER_LN_USER;

/// The API's default verify threshold; by construction it means `threshold_cosine`.
pub const DEFAULT_THRESHOLD: f32 = 0.75;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Calibration {
    /// Cosine at which the similarity is 0.75 (the default operating point).
    pub threshold_cosine: f32,
    /// Cosine at and below which the similarity is 0.
    pub zero_cosine: f32,
    /// How much a stranger's best match rises, in cosine, each time the gallery grows
    /// e-fold; identify's `gallery_size` scoring lowers a match by it
    /// (src/vision/open_set.rs).
    pub size_shift_per_ln_user: f32,
}

/// Calibration of the shipped embedder (dlib ResNet, int8; see models-tflite/MANIFEST.toml).
pub const CALIBRATION: Calibration = Calibration::with_default_size_shift(0.917, 0.5);

impl Calibration {
    /// A calibration whose size shift is [`SIZE_SHIFT_PER_LN_USER`] of its span, the rule
    /// fitted for dlib's network; descriptions without a fitted shift get it.
    pub const fn with_default_size_shift(threshold_cosine: f32, zero_cosine: f32) -> Calibration {
        Calibration {
            threshold_cosine,
            zero_cosine,
            size_shift_per_ln_user: SIZE_SHIFT_PER_LN_USER * (threshold_cosine - zero_cosine),
        }
    }

    pub fn similarity(&self, cosine: f32) -> f32 {
        let c = cosine.clamp(-1.0, 1.0);
        let t = self.threshold_cosine;
        let s = if c >= t {
            DEFAULT_THRESHOLD + (c - t) / (1.0 - t) * (1.0 - DEFAULT_THRESHOLD)
        } else {
            (c - self.zero_cosine) / (t - self.zero_cosine) * DEFAULT_THRESHOLD
        };
        s.clamp(0.0, 1.0)
    }

    /// The inverse mapping, for turning a similarity threshold into a cosine.
    pub fn cosine_for(&self, similarity: f32) -> f32 {
        let s = similarity.clamp(0.0, 1.0);
        let t = self.threshold_cosine;
        if s >= DEFAULT_THRESHOLD {
            t + (s - DEFAULT_THRESHOLD) / (1.0 - DEFAULT_THRESHOLD) * (1.0 - t)
        } else {
            self.zero_cosine + s / DEFAULT_THRESHOLD * (t - self.zero_cosine)
        }
    }
}

/// The shipped calibration's similarity for a cosine.
pub fn similarity(cosine: f32) -> f32 {
    CALIBRATION.similarity(cosine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_cosine_maps_to_the_default_threshold() {
        let s = CALIBRATION.similarity(CALIBRATION.threshold_cosine);
        assert!((s - DEFAULT_THRESHOLD).abs() < 1e-6);
        assert_eq!(CALIBRATION.similarity(1.0), 1.0);
        assert_eq!(CALIBRATION.similarity(0.2), 0.0);
    }

    #[test]
    fn mapping_is_monotonic_and_invertible() {
        let mut last = -1.0;
        for i in 0..=200 {
            let c = i as f32 / 100.0 - 1.0;
            let s = CALIBRATION.similarity(c);
            assert!(s >= last);
            last = s;
            if c > CALIBRATION.zero_cosine {
                assert!((CALIBRATION.cosine_for(s) - c).abs() < 1e-4);
            }
        }
    }
}
