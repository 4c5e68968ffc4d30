//! int8 codes with a per-vector scale, and the integer dot product the scan runs.
//!
//! A unit vector `v` is stored as `codes[i] = round(v[i] / scale)` with
//! `scale = max|v[i]| / 127`, plus `error = ||v - scale * codes||` (rounded up): the
//! largest amount by which any dot product with a unit query can differ from the one
//! computed on the codes (Cauchy-Schwarz). The search uses that bound to know which
//! candidates an exact f32 re-rank must see, so quantisation never changes an answer.
//!
//! The dot product is portable Rust written so that LLVM vectorises it: 32 lanes of
//! i16 x i8 products summed into i32, which x86_64's SSE2 baseline compiles to
//! `pmaddwd` (16 multiply-adds per instruction pair) and aarch64 to NEON `smlal`/`sadalp`;
//! see docs/index.md for the generated code and how to check it. No `unsafe`, no
//! runtime feature detection.

/// Lanes per step of the dot product: four 128-bit registers of i16 per step on SSE2 /
/// NEON; the sum order of integers does not change the result.
const LANES: usize = 32;

/// Largest code magnitude; -128 is never used so that codes are symmetric.
const MAX_CODE: f32 = 127.0;

/// Quantises a (unit) vector into `codes` (appended); returns `(scale, error)`.
pub(crate) fn quantize(v: &[f32], codes: &mut Vec<i8>) -> (f32, f32) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        codes.extend(std::iter::repeat_n(0i8, v.len()));
        let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        return (0.0, round_up(norm));
    }
    let scale = max / MAX_CODE;
    let inverse = MAX_CODE / max;
    let mut residual = 0.0f64;
    for x in v {
        // In range by construction (|x| <= max); the clamp keeps a rounding at the edge
        // inside i8.
        let code = (x * inverse).round().clamp(-MAX_CODE, MAX_CODE) as i8;
        residual += (f64::from(*x) - f64::from(code) * f64::from(scale)).powi(2);
        codes.push(code);
    }
    (scale, round_up(residual.sqrt()))
}

/// An f64 error bound as an f32 that is not smaller.
fn round_up(x: f64) -> f32 {
    (x * (1.0 + 1e-6) + 1e-9) as f32
}

/// Sum of `query[i] * codes[i]`: exact (|products| <= 127 * 127, and `dim` is far below
/// the 130,000 that could overflow i32; `GalleryIndex` refuses larger dimensions).
#[inline(always)]
pub(crate) fn dot(query: &[i16], codes: &[i8]) -> i32 {
    let n = query.len().min(codes.len());
    let whole = n / LANES * LANES;
    let mut acc = [0i32; LANES];
    for (q, c) in query[..whole]
        .chunks_exact(LANES)
        .zip(codes[..whole].chunks_exact(LANES))
    {
        for i in 0..LANES {
            acc[i] += i32::from(q[i]) * i32::from(c[i]);
        }
    }
    let mut sum: i32 = acc.iter().sum();
    for (q, c) in query[whole..n].iter().zip(&codes[whole..n]) {
        sum += i32::from(*q) * i32::from(*c);
    }
    sum
}

/// f32 dot product with eight independent accumulators (vectorised by LLVM). The exact
/// score of the index: the re-rank and the brute-force reference both use it.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = a.len().min(b.len()) / 8 * 8;
    for (x, y) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks..a.len().min(b.len()) {
        sum += a[i] * b[i];
    }
    sum
}

/// `v / ||v||`, or None for a zero or non-finite vector.
pub fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = dot_f32(v, v).sqrt();
    if norm <= 0.0 || !norm.is_finite() {
        return None;
    }
    Some(v.iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        normalized(&v).unwrap()
    }

    #[test]
    fn the_integer_dot_product_equals_the_naive_sum_for_every_length() {
        for dim in [1, 7, 31, 32, 33, 64, 100, 128, 129, 512, 1000] {
            let q: Vec<i16> = (0..dim).map(|i| ((i * 37) % 255) as i16 - 127).collect();
            let c: Vec<i8> = (0..dim)
                .map(|i| ((i * 91) % 255) as i16 - 127)
                .map(|x| x as i8)
                .collect();
            let naive: i64 = q
                .iter()
                .zip(&c)
                .map(|(a, b)| i64::from(*a) * i64::from(*b))
                .sum();
            assert_eq!(i64::from(dot(&q, &c)), naive, "dim {dim}");
        }
    }

    #[test]
    fn the_error_bound_holds_for_every_pair() {
        for dim in [3, 128, 200] {
            for s in 0..50u64 {
                let a = random_unit(s, dim);
                let b = random_unit(s + 1000, dim);
                let mut ca = Vec::new();
                let mut cb = Vec::new();
                let (sa, ea) = quantize(&a, &mut ca);
                let (sb, eb) = quantize(&b, &mut cb);
                let qa: Vec<i16> = ca.iter().map(|c| i16::from(*c)).collect();
                let approx = dot(&qa, &cb) as f32 * sa * sb;
                let exact = dot_f32(&a, &b);
                // The search's bound: |q - q'| + |q'| |v - v'|.
                let bound = ea + (1.0 + ea) * eb + 1e-5;
                assert!((exact - approx).abs() <= bound, "{exact} {approx} {bound}");
                // And the bound is tight enough to be useful: far below the gap between
                // a genuine match (~0.6) and a stranger (~0.1).
                assert!(bound < 0.05, "{bound}");
            }
        }
    }

    #[test]
    fn a_zero_vector_has_zero_codes_and_no_error() {
        let mut c = Vec::new();
        assert_eq!(quantize(&[0.0; 4], &mut c), (0.0, round_up(0.0)));
        assert_eq!(c, [0; 4]);
    }
}
