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

use facegate::vision::{Embedding, MAX_SIZE_SHIFT};
use serde::Serialize;

use crate::cmd::eval::identify::{shuffled, SPLIT_SEEDS};
use crate::cmd::eval::metrics::threshold_at_rate;

/// Gallery sizes the shift is measured at, as far as the people allow.
const GALLERY_SIZES: [usize; 6] = [10, 30, 100, 300, 1000, 3000];

/// A gallery size is used only if this many strangers are expected above the one-user
/// rate's quantile: fewer would let a handful of scores set the slope. (Reading a
/// looser quantile instead biases the shift down, to 0 with a few dozen people.)
const MIN_STRANGERS_ABOVE: f64 = 5.0;

/// Gallery sizes needed for a slope.
const MIN_SIZES: usize = 2;

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

/// Why no shift was fitted, for the operator.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NotFitted {
    #[error(
        "{people} people with a face in the pairs' images, {impostor_pairs} of whose \
         impostor pairs reach the threshold, are too few: the fit needs galleries of 10 \
         and 30 of them (at most half) with {MIN_STRANGERS_ABOVE} strangers expected above \
         the threshold; a pairs file of a few hundred people has that"
    )]
    TooFewPeople {
        people: usize,
        impostor_pairs: usize,
    },
    #[error("the fitted {0:.4} is outside 0..{MAX_SIZE_SHIFT}: the pairs' images are not a sample of strangers")]
    OutOfRange(f32),
}

/// `people`: each person's templates, the first one their gallery template.
pub fn fit(people: &[Vec<&Embedding>], threshold: f32) -> Result<SizeShiftFit, NotFitted> {
    let people: Vec<&Vec<&Embedding>> = people.iter().filter(|p| !p.is_empty()).collect();
    let images: Vec<(usize, &Embedding)> = people
        .iter()
        .enumerate()
        .flat_map(|(owner, templates)| templates.iter().map(move |e| (owner, *e)))
        .collect();
    // `people` holds no empty list, so every person has a first template.
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
    for users in GALLERY_SIZES {
        if users > people.len() / 2 {
            break;
        }
        let mut shifts = Vec::new();
        for seed in SPLIT_SEEDS {
            let mut in_gallery = vec![false; people.len()];
            // users <= people / 2, so the slice is in range.
            let gallery = &shuffled(&everybody, seed)[..users];
            for &p in gallery {
                in_gallery[p] = true;
            }
            let best: Vec<f32> = images
                .iter()
                .filter(|(owner, _)| !in_gallery[*owner])
                .map(|(_, image)| {
                    gallery
                        .iter()
                        .map(|&p| cosine(image, p))
                        .fold(f32::MIN, f32::max)
                })
                .collect();
            if one_user_false_alarms * (best.len() as f64) < MIN_STRANGERS_ABOVE {
                break;
            }
            let strangers = best.len();
            shifts.push(threshold_at_rate(best, strangers, one_user_false_alarms) - threshold);
        }
        if shifts.len() == SPLIT_SEEDS.len() {
            steps.push((users, shifts.iter().sum::<f32>() / shifts.len() as f32));
        }
    }
    if steps.len() < MIN_SIZES {
        return Err(NotFitted::TooFewPeople {
            people: people.len(),
            impostor_pairs: above,
        });
    }
    let (num, den) = steps.iter().fold((0.0f64, 0.0f64), |(n, d), &(users, s)| {
        let ln = (users as f64).ln();
        (n + ln * f64::from(s), d + ln * ln)
    });
    let per_ln_user = (num / den) as f32;
    if !(0.0..=MAX_SIZE_SHIFT).contains(&per_ln_user) {
        return Err(NotFitted::OutOfRange(per_ln_user));
    }
    Ok(SizeShiftFit {
        per_ln_user,
        one_user_false_alarms,
        steps,
        people: people.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` people in `dim` dimensions, `per_person` images each: a random direction per
    /// person plus independent noise of `spread`, normalised (a seeded `StdRng`,
    /// Box-Muller).
    fn people(n: usize, per_person: usize, dim: usize, spread: f32) -> Vec<Vec<Embedding>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut normal = move || {
            let (u, v): (f64, f64) = (rng.gen_range(1e-12..1.0), rng.gen());
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
    fn too_few_people_or_strangers_above_the_threshold_give_no_fit_rather_than_zero() {
        // 59 people: one gallery size (10) only.
        let all = people(59, 2, 24, 0.5);
        let refs: Vec<Vec<&Embedding>> = all.iter().map(|p| p.iter().collect()).collect();
        let e = fit(&refs, 0.3).unwrap_err();
        assert!(
            matches!(e, NotFitted::TooFewPeople { people: 59, .. }),
            "{e:?}"
        );
        let mut with_empty = refs.clone();
        with_empty.push(Vec::new());
        let e = fit(&with_empty, 0.3).unwrap_err();
        assert!(
            matches!(e, NotFitted::TooFewPeople { people: 59, .. }),
            "a person without a template does not count: {e:?}"
        );
        // Enough people, but a threshold no stranger reaches: no rate to read a shift at.
        let all = people(300, 2, 24, 0.5);
        let refs: Vec<Vec<&Embedding>> = all.iter().map(|p| p.iter().collect()).collect();
        let e = fit(&refs, 0.999).unwrap_err();
        assert!(
            matches!(
                e,
                NotFitted::TooFewPeople {
                    impostor_pairs: 0,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
