//! Fits `size_shift_per_ln_user`: how far a stranger's best match rises, in cosine, each
//! time the gallery grows e-fold (identify's `gallery_size` scoring, src/vision/open_set.rs).
//!
//! Why it is fitted per embedder: the best of N impostor scores rises at a rate set by
//! the spread of the network's impostor scores *for one probe* (a probe's scores against
//! different people are correlated), which the pairs' spread does not give. The rule
//! fitted for dlib's network (0.012 of the calibration's span) let 60 % of strangers
//! into a 1,000-user gallery with the FaceNet example.
//!
//! The fit, on the images of the pairs file alone: every person's first image is their
//! gallery template. At one user, the false-alarm rate `r` is the share of (image,
//! another person's template) pairs at or above the threshold cosine. For galleries of
//! N = 10, 30, 100, 300, 1000, 3000 people (at most half of the people, so that at least
//! half are strangers; five fixed random galleries each), every image of a person not in
//! the gallery is a stranger; the shift at N is how far above the threshold the best
//! match of the top share `r` of strangers lies, so that moving the threshold by it keeps
//! the one-user rate. The slope through the origin of those shifts against ln(N) is
//! the answer. On lfw-dev's pairsDevTrain images it gives 0.0058 for the shipped dlib
//! embedder, whose hand-fitted rule is 0.0050 (docs/accuracy.md).

use facegate::vision::Embedding;
use serde::Serialize;

use crate::cmd::eval::identify::{shuffled, SPLIT_SEEDS};

/// Gallery sizes the shift is measured at, as far as the people allow.
const GALLERY_SIZES: [usize; 6] = [10, 30, 100, 300, 1000, 3000];

/// The quantile of the strangers' best matches is read at no fewer than this many
/// strangers above it, so that a handful of scores does not set the slope.
const MIN_STRANGERS_ABOVE: f64 = 5.0;

/// The fitted shift with what it was measured on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SizeShiftFit {
    /// Cosine per unit of ln(users).
    pub per_ln_user: f32,
    /// Share of strangers at or above the threshold in a one-user gallery.
    pub one_user_false_alarms: f64,
    /// (users, measured shift) at each gallery size.
    pub steps: Vec<(usize, f32)>,
    /// People with at least one template.
    pub people: usize,
}

/// `people`: each person's templates, the first one their gallery template. `None` with
/// fewer than twenty people (a gallery of ten would leave too few strangers).
pub fn fit(people: &[Vec<&Embedding>], threshold: f32) -> Option<SizeShiftFit> {
    let people: Vec<&Vec<&Embedding>> = people.iter().filter(|p| !p.is_empty()).collect();
    let images: Vec<(usize, &Embedding)> = people
        .iter()
        .enumerate()
        .flat_map(|(owner, templates)| templates.iter().map(move |e| (owner, *e)))
        .collect();
    let sizes: Vec<usize> = GALLERY_SIZES
        .into_iter()
        .filter(|&n| n <= people.len() / 2)
        .collect();
    if sizes.is_empty() {
        return None;
    }
    let cosine = |image: &Embedding, person: usize| image.cosine(people[person][0]);
    let (mut above, mut pairs) = (0usize, 0usize);
    for &(owner, image) in &images {
        for person in (0..people.len()).filter(|&p| p != owner) {
            pairs += 1;
            above += usize::from(cosine(image, person) >= threshold);
        }
    }
    let one_user_false_alarms = above as f64 / pairs.max(1) as f64;
    let everybody: Vec<usize> = (0..people.len()).collect();
    let mut steps = Vec::new();
    for users in sizes {
        let mut shifts = Vec::new();
        for seed in SPLIT_SEEDS {
            let mut in_gallery = vec![false; people.len()];
            let gallery: Vec<usize> = shuffled(&everybody, seed)[..users].to_vec();
            for &p in &gallery {
                in_gallery[p] = true;
            }
            let mut best: Vec<f32> = images
                .iter()
                .filter(|(owner, _)| !in_gallery[*owner])
                .map(|(_, image)| {
                    gallery
                        .iter()
                        .map(|&p| cosine(image, p))
                        .fold(f32::MIN, f32::max)
                })
                .collect();
            let strangers = best.len() as f64;
            let rate = one_user_false_alarms.max(MIN_STRANGERS_ABOVE / strangers);
            best.sort_by(|a, b| b.total_cmp(a));
            // The score with a share `rate` of the strangers above it.
            let at = ((rate * strangers) as usize).min(best.len() - 1);
            shifts.push(best[at] - threshold);
        }
        steps.push((users, shifts.iter().sum::<f32>() / shifts.len() as f32));
    }
    let (num, den) = steps.iter().fold((0.0f64, 0.0f64), |(n, d), &(users, s)| {
        let ln = (users as f64).ln();
        (n + ln * f64::from(s), d + ln * ln)
    });
    Some(SizeShiftFit {
        per_ln_user: (num / den).max(0.0) as f32,
        one_user_false_alarms,
        steps,
        people: people.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` people in `dim` dimensions, `per_person` images each: a random direction per
    /// person plus independent noise of `spread`, normalised (SplitMix64, Box-Muller).
    fn people(n: usize, per_person: usize, dim: usize, spread: f32) -> Vec<Vec<Embedding>> {
        let mut state = 7u64;
        let mut uniform = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut normal = move || {
            let (u, v) = (uniform().max(1e-12), uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        };
        (0..n)
            .map(|_| {
                let centre: Vec<f32> = (0..dim).map(|_| normal()).collect();
                (0..per_person)
                    .map(|_| {
                        let v: Vec<f32> = centre.iter().map(|c| c + spread * normal()).collect();
                        Embedding::from_raw(&v).unwrap()
                    })
                    .collect()
            })
            .collect()
    }

    fn best_of(gallery: &[&Embedding], image: &Embedding) -> f32 {
        gallery
            .iter()
            .map(|g| image.cosine(g))
            .fold(f32::MIN, f32::max)
    }

    #[test]
    fn with_the_fitted_shift_a_large_gallery_lets_in_about_as_many_strangers_as_one_user() {
        // Low-dimensional people, so that impostor scores spread widely and the best of
        // many rises fast, as with FaceNet's.
        let all = people(700, 2, 24, 0.5);
        let refs: Vec<Vec<&Embedding>> = all.iter().map(|p| p.iter().collect()).collect();
        // The threshold at which about 1 % of single impostor pairs pass.
        let mut impostors: Vec<f32> = (1..300).map(|i| all[i][1].cosine(&all[0][0])).collect();
        impostors.extend((2..300).map(|i| all[i][1].cosine(&all[1][0])));
        impostors.sort_by(|a, b| b.total_cmp(a));
        let threshold = impostors[impostors.len() / 100];
        let fit = fit(&refs, threshold).unwrap();
        assert!(fit.per_ln_user > 0.0, "{fit:?}");
        assert_eq!(
            fit.steps.len(),
            4,
            "10, 30, 100, 300 of 700 people: {fit:?}"
        );
        // Held out: a gallery of 300 other people than the fit's first seed chose,
        // probed by the strangers' second images.
        let gallery: Vec<&Embedding> = all[..300].iter().map(|p| &p[0]).collect();
        let strangers: Vec<&Embedding> = all[300..].iter().map(|p| &p[1]).collect();
        let false_alarms = |t: f32| {
            strangers
                .iter()
                .filter(|s| best_of(&gallery, s) >= t)
                .count() as f64
                / strangers.len() as f64
        };
        let fixed = false_alarms(threshold);
        let shifted = false_alarms(threshold + fit.per_ln_user * 300f32.ln());
        assert!(
            fixed > 0.5,
            "without the shift most strangers pass: {fixed}"
        );
        assert!(
            shifted < 4.0 * fit.one_user_false_alarms.max(0.01),
            "with it, about the one-user rate {}: {shifted}",
            fit.one_user_false_alarms
        );
    }

    #[test]
    fn too_few_people_give_no_fit() {
        let all = people(19, 2, 16, 0.3);
        let refs: Vec<Vec<&Embedding>> = all.iter().map(|p| p.iter().collect()).collect();
        assert_eq!(fit(&refs, 0.5), None);
        let mut with_empty = refs.clone();
        with_empty.push(Vec::new());
        assert_eq!(
            fit(&with_empty, 0.5),
            None,
            "a person without a template does not count"
        );
    }
}
