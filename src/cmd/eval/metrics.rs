//! Verification metrics over scored pairs: best-accuracy thresholds, k-fold accuracy,
//! TAR at a given FAR. Pure functions, unit-tested.

/// One scored pair. `score` is `None` when a face was not found in either image; such a
/// pair counts as an error whatever the threshold (the conservative convention).
#[derive(Clone, Copy, Debug)]
pub struct ScoredPair {
    pub same: bool,
    pub score: Option<f32>,
    pub fold: usize,
}

pub fn correct(pair: &ScoredPair, threshold: f32) -> bool {
    match pair.score {
        Some(s) => (s >= threshold) == pair.same,
        None => false,
    }
}

pub fn accuracy(pairs: &[&ScoredPair], threshold: f32) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    pairs.iter().filter(|p| correct(p, threshold)).count() as f64 / pairs.len() as f64
}

/// The lowest threshold at which at most `rate` of `out_of` items pass (score at or
/// above it); `scores` are the items' scores (an item without one never passes).
pub fn threshold_at_rate(mut scores: Vec<f32>, out_of: usize, rate: f64) -> f32 {
    scores.sort_by(|a, b| b.total_cmp(a));
    let allowed = (rate * out_of as f64).floor() as usize;
    // Accepting only scores strictly above the (allowed+1)-th highest keeps the rate.
    scores.get(allowed).map_or(f32::MIN, |s| s.next_up())
}

/// The threshold with the best accuracy on `pairs` (midpoint between neighbouring
/// scores, so it does not sit on a sample).
pub fn best_threshold(pairs: &[&ScoredPair]) -> f32 {
    let mut scores: Vec<f32> = pairs.iter().filter_map(|p| p.score).collect();
    scores.sort_by(f32::total_cmp);
    scores.dedup();
    let mut best = (f64::MIN, 0.0f32);
    let candidates = scores
        .windows(2)
        .map(|w| (w[0] + w[1]) / 2.0)
        .chain(scores.first().map(|s| s - 1e-4))
        .chain(scores.last().map(|s| s + 1e-4));
    for t in candidates {
        let acc = accuracy(pairs, t);
        if acc > best.0 {
            best = (acc, t);
        }
    }
    best.1
}

/// Per fold: the threshold chosen on the other folds, and this fold's accuracy with it.
pub fn k_fold(pairs: &[ScoredPair], folds: usize) -> Vec<(f32, f64)> {
    (0..folds)
        // A fold without pairs has no accuracy (it is not 0 %).
        .filter(|&k| pairs.iter().any(|p| p.fold == k))
        .map(|k| {
            let train: Vec<&ScoredPair> = pairs.iter().filter(|p| p.fold != k).collect();
            let test: Vec<&ScoredPair> = pairs.iter().filter(|p| p.fold == k).collect();
            let t = best_threshold(&train);
            (t, accuracy(&test, t))
        })
        .collect()
}

pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// False accept and false reject rates at `threshold` (failed pairs count as rejects).
pub fn far_frr(pairs: &[ScoredPair], threshold: f32) -> (f64, f64) {
    let (mut fa, mut impostors, mut fr, mut genuine) = (0, 0, 0, 0);
    for p in pairs {
        let accepted = p.score.is_some_and(|s| s >= threshold);
        if p.same {
            genuine += 1;
            fr += usize::from(!accepted);
        } else {
            impostors += 1;
            fa += usize::from(accepted);
        }
    }
    (
        fa as f64 / impostors.max(1) as f64,
        fr as f64 / genuine.max(1) as f64,
    )
}

/// The lowest threshold whose FAR is at most `far`, and the TAR there.
pub fn tar_at_far(pairs: &[ScoredPair], far: f64) -> (f32, f64) {
    let mut impostor: Vec<f32> = pairs
        .iter()
        .filter(|p| !p.same)
        .filter_map(|p| p.score)
        .collect();
    impostor.sort_by(|a, b| b.total_cmp(a));
    let n = pairs.iter().filter(|p| !p.same).count();
    let allowed = (far * n as f64).floor() as usize;
    // Accepting scores strictly above the (allowed+1)-th highest impostor keeps FAR <= far.
    let threshold = impostor.get(allowed).map(|s| s + 1e-6).unwrap_or(f32::MIN);
    let (_, frr) = far_frr(pairs, threshold);
    (threshold, 1.0 - frr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(same: bool, score: f32, fold: usize) -> ScoredPair {
        ScoredPair {
            same,
            score: Some(score),
            fold,
        }
    }

    #[test]
    fn separable_pairs_give_full_accuracy_in_every_fold() {
        let pairs: Vec<_> = (0..20)
            .map(|i| {
                pair(
                    i % 2 == 0,
                    if i % 2 == 0 {
                        0.9 + i as f32 * 1e-3
                    } else {
                        0.5
                    },
                    i % 10,
                )
            })
            .collect();
        let folds = k_fold(&pairs, 10);
        assert!(folds
            .iter()
            .all(|&(t, acc)| acc == 1.0 && t > 0.5 && t < 0.9));
    }

    #[test]
    fn failed_pairs_count_as_errors() {
        let pairs = [
            pair(true, 0.9, 0),
            ScoredPair {
                same: true,
                score: None,
                fold: 0,
            },
        ];
        let refs: Vec<&ScoredPair> = pairs.iter().collect();
        assert_eq!(accuracy(&refs, 0.5), 0.5);
    }

    #[test]
    fn tar_at_far_rejects_the_top_impostors() {
        let mut pairs: Vec<_> = (0..1000)
            .map(|i| pair(false, i as f32 / 1000.0, 0))
            .collect();
        pairs.extend((0..10).map(|i| pair(true, 0.9985 + i as f32 * 1e-5, 0)));
        let (t, tar) = tar_at_far(&pairs, 1e-3);
        let (far, _) = far_frr(&pairs, t);
        assert!(far <= 1e-3, "far {far}");
        assert_eq!(tar, 1.0);
    }
}
