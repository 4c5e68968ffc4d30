//! Open-set score normalisation for 1:N (identify-face, the camera recogniser, eval
//! identify): makes "unknown" depend less on how large and how crowded the gallery is.
//!
//! Why: a raw cosine means different things in different galleries. In a gallery of
//! ~2,000 people, a stranger's best match is the maximum of ~2,000 impostor scores and
//! lands far above a typical impostor pair (issue #14: 97 % of strangers reach 0.75 on
//! lfw-dev). Some probes (poor light, pose, blur) also score high against everybody.
//!
//! `gallery_cohort` (no extra data, no training): the other gallery users that the
//! search ranked just below a match are this probe's impostors in this gallery. A match
//! is scored by its lead over them: `lead = cosine - mean` of the `cohort` runner-up
//! users (ranks 2..=cohort+1). The lead is mapped back to the cosine scale with one
//! constant fitted on the LFW development images (`LEAD_AT_THRESHOLD`): a lead of
//! `LEAD_AT_THRESHOLD` lands on the calibration's threshold cosine (similarity 0.75, the
//! 1 % false-alarm point of `eval identify` on lfw-dev), one unit of lead is one unit of
//! cosine, and the embedder's calibration then gives the 0..1 confidence. For one probe
//! the map is increasing, so the ranking (rank-1) never changes; only the accept /
//! unknown decision does.
//!
//! Dividing the lead by the cohort's std (a z-score, T-norm) was measured and is worse:
//! the std of ten tail scores is too noisy (docs/accuracy.md, "Open-set scores").
//!
//! A gallery with fewer than `cohort + 1` users has no cohort: the score is the plain
//! calibrated similarity there (same as `none`).

use super::Calibration;

/// How identify scores its matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScoreNormalisation {
    /// The calibrated similarity of the match's cosine.
    #[default]
    None,
    /// Against the `cohort` runner-up users of the same search (module doc).
    GalleryCohort { cohort: usize },
}

/// Lead over the cohort's mean (cosine) at which the confidence is 0.75: the 1 %
/// false-alarm point of `facegate eval identify` on lfw-dev with a cohort of 10
/// (docs/accuracy.md, "Open-set scores").
pub const LEAD_AT_THRESHOLD: f32 = 0.029;

impl ScoreNormalisation {
    /// Name for reports ("none", "gallery_cohort").
    pub fn name(&self) -> &'static str {
        match self {
            ScoreNormalisation::None => "none",
            ScoreNormalisation::GalleryCohort { .. } => "gallery_cohort",
        }
    }

    /// How many users a search must return so that the first `listed` can be scored.
    pub fn candidates(&self, listed: usize) -> usize {
        match self {
            ScoreNormalisation::None => listed,
            ScoreNormalisation::GalleryCohort { cohort } => listed.max(cohort.saturating_add(1)),
        }
    }

    /// Confidence (0..1) of each user of `ranked` (one best cosine per user, best first,
    /// as the index answers), in the same order.
    pub fn scores(&self, calibration: &Calibration, ranked: &[f32]) -> Vec<f32> {
        let plain = || ranked.iter().map(|&c| calibration.similarity(c)).collect();
        let ScoreNormalisation::GalleryCohort { cohort } = *self else {
            return plain();
        };
        let Some(runners_up) = ranked.get(1..=cohort).filter(|_| cohort > 0) else {
            return plain();
        };
        let mean = runners_up.iter().sum::<f32>() / runners_up.len() as f32;
        let at_threshold = calibration.threshold_cosine;
        ranked
            .iter()
            .map(|&c| calibration.similarity(at_threshold + (c - mean) - LEAD_AT_THRESHOLD))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::CALIBRATION;

    const COHORT: ScoreNormalisation = ScoreNormalisation::GalleryCohort { cohort: 4 };

    #[test]
    fn without_normalisation_the_score_is_the_calibrated_similarity() {
        let ranked = [0.95, 0.9, 0.85];
        let s = ScoreNormalisation::None.scores(&CALIBRATION, &ranked);
        let expected: Vec<f32> = ranked.iter().map(|&c| CALIBRATION.similarity(c)).collect();
        assert_eq!(s, expected);
    }

    #[test]
    fn a_best_match_that_barely_leads_a_crowded_cohort_is_scored_down() {
        // A stranger in a large gallery: high best cosine, but everybody else is close.
        let stranger = [0.93, 0.925, 0.92, 0.918, 0.915];
        // A known person: lower raw cosine, far ahead of the rest.
        let known = [0.91, 0.82, 0.80, 0.79, 0.78];
        let raw_stranger = CALIBRATION.similarity(stranger[0]);
        let raw_known = CALIBRATION.similarity(known[0]);
        assert!(raw_stranger > raw_known, "raw scores favour the stranger");
        let s = COHORT.scores(&CALIBRATION, &stranger)[0];
        let k = COHORT.scores(&CALIBRATION, &known)[0];
        assert!(k > s, "normalised: known {k} > stranger {s}");
        assert!(s < 0.75, "the stranger is unknown at 0.75: {s}");
        assert!(k >= 0.75, "the known person is accepted at 0.75: {k}");
    }

    #[test]
    fn the_ranking_of_one_search_is_kept() {
        let ranked = [0.96, 0.95, 0.9, 0.88, 0.86, 0.8];
        let s = COHORT.scores(&CALIBRATION, &ranked);
        assert!(s.windows(2).all(|w| w[0] >= w[1]), "{s:?}");
    }

    #[test]
    fn a_gallery_smaller_than_the_cohort_gets_the_plain_similarity() {
        let ranked = [0.95, 0.8];
        assert_eq!(
            COHORT.scores(&CALIBRATION, &ranked),
            ScoreNormalisation::None.scores(&CALIBRATION, &ranked)
        );
        assert_eq!(COHORT.candidates(1), 5);
        assert_eq!(COHORT.candidates(10), 10);
        assert_eq!(ScoreNormalisation::None.candidates(3), 3);
    }

    #[test]
    fn a_small_lead_over_identical_runners_up_is_unknown() {
        let ranked = [0.86, 0.85, 0.85, 0.85, 0.85];
        let s = COHORT.scores(&CALIBRATION, &ranked)[0];
        // A lead of 0.01 over the cohort: below LEAD_AT_THRESHOLD.
        assert!(s < 0.75, "{s}");
    }
}
