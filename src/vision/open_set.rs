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
//! `gallery_size`: a stranger's best match is the best of N impostor scores, so it
//! rises with the gallery's N users (for dlib's network by about 0.005 cosine each time N
//! grows e-fold). The match's cosine is lowered by the calibration's
//! `size_shift_per_ln_user` x ln(N) before the calibration maps it: a one-user gallery
//! scores as verify, and 0.75 keeps 0.5-1.3 % false alarms from 1 to 2,129 users on
//! lfw-dev, where a fixed threshold goes from 0.6 % to 97 %. One shift per search, so
//! the ranking never changes. How fast the best of N impostors rises depends on the
//! network: `facegate calibrate` fits the shift for any embedder and writes it into its
//! description; without one, a description gets `SIZE_SHIFT_PER_LN_USER` of its span
//! (threshold - zero cosine), the rule fitted for dlib's network.
//!
//! `gallery_cohort` is the lower of the two: the lead alone is fitted to a gallery of
//! ~2,000, and in a gallery of tens of users, whose runners-up are random people far
//! below any best match, it let 9 in 10 strangers through at 11 users. The size-aware
//! similarity bounds it at every size, and the lead adds the cohort's gain in large
//! crowded galleries (docs/accuracy.md, "Open-set scores by gallery size"). A gallery
//! with fewer than `cohort + 1` users has no cohort: it gets the size-aware similarity.

use super::Calibration;

/// How identify scores its matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScoreNormalisation {
    /// The calibrated similarity of the match's cosine.
    None,
    /// Against the `cohort` runner-up users of the same search (module doc).
    GalleryCohort { cohort: usize },
    /// Lowered with the logarithm of the gallery's number of users (module doc); the
    /// default: a fixed threshold's false alarms grow with the gallery.
    #[default]
    GallerySize,
}

/// Lead over the cohort's mean (cosine) at which the confidence is 0.75: the 1 %
/// false-alarm point of `facegate eval identify` on lfw-dev with a cohort of 10
/// (docs/accuracy.md, "Open-set scores").
pub const LEAD_AT_THRESHOLD: f32 = 0.029;

/// `gallery_size`: how far the cosine is lowered per unit of ln(users), as a share of
/// the calibration's span from zero to threshold cosine (0.005 cosine for the shipped
/// dlib calibration, 0.917 - 0.5). Fitted on lfw-dev (docs/accuracy.md, "Open-set
/// scores by gallery size"): 0.75 stays near 1 % false alarms at 1 to 2,129 users.
/// The default for a description without its own `size_shift_per_ln_user` (which
/// `facegate calibrate` fits for any embedder).
pub const SIZE_SHIFT_PER_LN_USER: f32 = 0.012;

impl ScoreNormalisation {
    /// Name for reports ("none", "gallery_cohort").
    pub fn name(&self) -> &'static str {
        match self {
            ScoreNormalisation::None => "none",
            ScoreNormalisation::GalleryCohort { .. } => "gallery_cohort",
            ScoreNormalisation::GallerySize => "gallery_size",
        }
    }

    /// How many users a search must return so that the first `listed` can be scored.
    pub fn candidates(&self, listed: usize) -> usize {
        match self {
            ScoreNormalisation::None | ScoreNormalisation::GallerySize => listed,
            ScoreNormalisation::GalleryCohort { cohort } => listed.max(cohort.saturating_add(1)),
        }
    }

    /// Confidence (0..1) of each user of `ranked` (one best cosine per user, best first,
    /// as the index answers), in the same order, in a gallery of `users` users.
    pub fn scores(&self, calibration: &Calibration, ranked: &[f32], users: usize) -> Vec<f32> {
        let plain = |c: f32| calibration.similarity(c);
        let shift = calibration.size_shift_per_ln_user * (users.max(1) as f32).ln();
        let sized = |c: f32| plain(c - shift);
        match *self {
            ScoreNormalisation::None => ranked.iter().map(|&c| plain(c)).collect(),
            ScoreNormalisation::GallerySize => ranked.iter().map(|&c| sized(c)).collect(),
            ScoreNormalisation::GalleryCohort { cohort } => {
                let Some(runners_up) = ranked.get(1..=cohort).filter(|_| cohort > 0) else {
                    return ranked.iter().map(|&c| sized(c)).collect();
                };
                let mean = runners_up.iter().sum::<f32>() / runners_up.len() as f32;
                let at_threshold = calibration.threshold_cosine;
                ranked
                    .iter()
                    .map(|&c| plain(at_threshold + (c - mean) - LEAD_AT_THRESHOLD).min(sized(c)))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::CALIBRATION;

    const COHORT: ScoreNormalisation = ScoreNormalisation::GalleryCohort { cohort: 4 };
    const SIZE: ScoreNormalisation = ScoreNormalisation::GallerySize;

    #[test]
    fn without_normalisation_the_score_is_the_calibrated_similarity() {
        let ranked = [0.95, 0.9, 0.85];
        let s = ScoreNormalisation::None.scores(&CALIBRATION, &ranked, 2000);
        let expected: Vec<f32> = ranked.iter().map(|&c| CALIBRATION.similarity(c)).collect();
        assert_eq!(s, expected);
    }

    #[test]
    fn a_best_match_that_barely_leads_a_crowded_cohort_is_scored_down() {
        // A stranger in a large gallery: high best cosine, but everybody else is close.
        let stranger = [0.96, 0.955, 0.95, 0.948, 0.945];
        // A known person: lower raw cosine, far ahead of the rest.
        let known = [0.95, 0.82, 0.80, 0.79, 0.78];
        let raw_stranger = CALIBRATION.similarity(stranger[0]);
        let raw_known = CALIBRATION.similarity(known[0]);
        assert!(raw_stranger > raw_known, "raw scores favour the stranger");
        let s = COHORT.scores(&CALIBRATION, &stranger, 5)[0];
        let k = COHORT.scores(&CALIBRATION, &known, 5)[0];
        assert!(k > s, "normalised: known {k} > stranger {s}");
        assert!(s < 0.75, "the stranger is unknown at 0.75: {s}");
        assert!(k >= 0.75, "the known person is accepted at 0.75: {k}");
    }

    #[test]
    fn the_ranking_of_one_search_is_kept() {
        let ranked = [0.96, 0.95, 0.9, 0.88, 0.86, 0.8];
        for n in [COHORT, SIZE] {
            let s = n.scores(&CALIBRATION, &ranked, 300);
            assert!(s.windows(2).all(|w| w[0] >= w[1]), "{s:?}");
        }
    }

    #[test]
    fn a_gallery_smaller_than_the_cohort_gets_the_size_aware_similarity() {
        let ranked = [0.95, 0.8];
        assert_eq!(
            COHORT.scores(&CALIBRATION, &ranked, 2),
            SIZE.scores(&CALIBRATION, &ranked, 2)
        );
        assert_eq!(COHORT.candidates(1), 5);
        assert_eq!(COHORT.candidates(10), 10);
        assert_eq!(ScoreNormalisation::None.candidates(3), 3);
        assert_eq!(SIZE.candidates(3), 3);
    }

    #[test]
    fn a_small_lead_over_identical_runners_up_is_unknown() {
        let ranked = [0.96, 0.95, 0.95, 0.95, 0.95];
        let s = COHORT.scores(&CALIBRATION, &ranked, 5)[0];
        // A lead of 0.01 over the cohort: below LEAD_AT_THRESHOLD.
        assert!(s < 0.75, "{s}");
    }

    #[test]
    fn a_one_user_gallery_scores_as_verify_and_a_larger_one_asks_more_of_the_same_cosine() {
        let ranked = [0.93];
        let verify = CALIBRATION.similarity(0.93);
        assert_eq!(SIZE.scores(&CALIBRATION, &ranked, 1)[0], verify);
        assert_eq!(SIZE.scores(&CALIBRATION, &ranked, 0)[0], verify);
        let by_size: Vec<f32> = [1, 10, 100, 1000]
            .iter()
            .map(|&n| SIZE.scores(&CALIBRATION, &ranked, n)[0])
            .collect();
        assert!(by_size.windows(2).all(|w| w[0] > w[1]), "{by_size:?}");
        // For the shipped calibration: 0.005 cosine per e-fold growth of the gallery.
        let shift = CALIBRATION.size_shift_per_ln_user;
        assert!((shift - 0.005).abs() < 1e-4, "{shift}");
        // A fitted shift replaces the default: a steeper one asks more of the match.
        let steep = Calibration {
            size_shift_per_ln_user: 0.04,
            ..CALIBRATION
        };
        let at_100 = |c: &Calibration| SIZE.scores(c, &ranked, 100)[0];
        assert!(at_100(&steep) < at_100(&CALIBRATION));
        assert_eq!(
            at_100(&steep),
            CALIBRATION.similarity(0.93 - 0.04 * 100f32.ln())
        );
    }

    #[test]
    fn the_cohort_never_scores_above_the_size_aware_similarity() {
        // A stranger at a door of 11 users: his best match is weak, the runners-up are
        // random people far below it, so his lead over them is large. The lead alone
        // accepted him (9 in 10 strangers at 11 users on lfw-dev).
        let stranger = [
            0.905, 0.84, 0.83, 0.82, 0.82, 0.81, 0.80, 0.80, 0.79, 0.78, 0.77,
        ];
        let cohort = ScoreNormalisation::GalleryCohort { cohort: 10 };
        let s = cohort.scores(&CALIBRATION, &stranger, 11);
        let sized = SIZE.scores(&CALIBRATION, &stranger, 11);
        assert!(s[0] < 0.75, "the stranger is unknown: {}", s[0]);
        assert!(s.iter().zip(&sized).all(|(c, z)| c <= z), "{s:?} {sized:?}");
        assert!(sized[0] <= CALIBRATION.similarity(0.905));
    }
}
