//! The index's codes: two 4-bit codes per byte, with a per-vector scale and error bound,
//! and the integer dot products the scan runs on them.
//!
//! A unit vector `v` is stored twice, in two tiers of `d / 2` bytes each:
//! - coarse: `c[i] = round(v[i] / s)`, `s = max|v[i]| / 7`, `c` in -7..=7;
//! - fine: the same quantisation of the coarse residual `r = v - s * c` (`r`'s entries
//!   are at most `s / 2`, so the fine step is ~14x smaller: coarse + fine together are
//!   about as precise as one int8 code).
//!
//! Each tier keeps `error = ||v - approximation||` (rounded up): the largest amount by
//! which any dot product with a unit query can differ from the one computed on the codes
//! (Cauchy-Schwarz). The search scans only the coarse tier (half the bytes of an int8
//! code), re-scores the rows it cannot rule out with the fine tier, and re-ranks the
//! rows neither can rule out in f32, so quantisation never changes an answer.
//!
//! Layout: the dimension is padded to a multiple of 64 (padding codes are 0); in each
//! 32-byte group `g` of a row, byte `b` holds dimension `64g + b` in its low nibble and
//! `64g + 32 + b` in its high nibble, stored as `c + 8` (1..=15, never negative). That
//! is the order an AVX2 `vpmaddubsw` (unsigned x signed bytes) wants; the portable dot
//! product below reads the same layout.
//!
//! Queries are int8 codes (`-127..=127`, scale `max|q| / 127`); their own rounding error
//! enters the bound the same way.

/// Largest query code magnitude; -128 is never used so that codes are symmetric.
const QUERY_MAX: f32 = 127.0;

/// Largest 4-bit code magnitude (codes are stored as `code + NIBBLE_BIAS`).
const NIBBLE_MAX: f32 = 7.0;

/// 1.5 * 2^23: adding it to an f32 below 2^22 in magnitude rounds it to an integer held
/// in the low mantissa bits.
const ROUNDING_MAGIC: f32 = 12_582_912.0;

/// Added to a 4-bit code to store it as an unsigned nibble.
pub(crate) const NIBBLE_BIAS: i32 = 8;

/// Dimensions per 32-byte group of packed codes.
pub(crate) const GROUP_DIMS: usize = 64;

/// `dim` rounded up to whole groups.
pub(crate) fn padded_dim(dim: usize) -> usize {
    dim.div_ceil(GROUP_DIMS) * GROUP_DIMS
}

/// Nearest integer, halves away from zero, without a libm call (`f32::round` is one on
/// x86_64's SSE2 baseline, and the start-up build rounds every value of every template).
/// Any rounding would do for correctness: the error bound is measured on the codes.
#[inline(always)]
fn round_to_i32(x: f32) -> i32 {
    (x + 0.5f32.copysign(x)) as i32
}

/// Quantises `v` (any length up to `padded`) to 4-bit codes, writing `padded / 2`
/// packed bytes into `out` (that long) and writing the residual `v - scale * code` into `residual`
/// (resized to `v.len()`). Returns `(scale, ||residual||)`, the norm rounded up.
///
/// Written per group of 64 with fixed-size arrays so that LLVM vectorises it: the
/// start-up build runs it twice per stored template.
pub(crate) fn quantize4(
    v: &[f32],
    padded: usize,
    out: &mut [u8],
    residual: &mut Vec<f32>,
) -> (f32, f32) {
    residual.clear();
    residual.extend_from_slice(v);
    residual.resize(padded.max(v.len()), 0.0);
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    out.fill((NIBBLE_BIAS as u8) * 0x11);
    if max == 0.0 || !max.is_finite() {
        residual.truncate(v.len());
        return (0.0, round_up(norm_f64(v)));
    }
    let scale = max / NIBBLE_MAX;
    let inverse = NIBBLE_MAX / max;
    // Four independent f64 sums: no long chain of dependent additions.
    let mut sums = [0.0f64; 4];
    for (group, bytes) in residual
        .chunks_exact_mut(GROUP_DIMS)
        .zip(out.chunks_exact_mut(GROUP_DIMS / 2))
    {
        let mut codes = [0i32; GROUP_DIMS];
        let mut lefts = [0.0f64; GROUP_DIMS];
        for ((c, left), x) in codes.iter_mut().zip(lefts.iter_mut()).zip(group.iter_mut()) {
            // In range by construction (|x| <= max); the clamp keeps a rounding at the
            // edge inside the nibble. Rounded by the 1.5 * 2^23 trick (to nearest even;
            // the integer lands in the low mantissa bits): no float-to-int conversion,
            // so the loop vectorises.
            let y = (*x * inverse).clamp(-NIBBLE_MAX, NIBBLE_MAX);
            let shifted = y + ROUNDING_MAGIC;
            *c = shifted.to_bits() as i32 - ROUNDING_MAGIC.to_bits() as i32;
            let code = shifted - ROUNDING_MAGIC;
            *left = f64::from(*x) - f64::from(code) * f64::from(scale);
            // The residual the fine tier quantises, in f32; the index adds a bound for
            // this rounding to the fine tier's error.
            *x = *left as f32;
        }
        for four in lefts.chunks_exact(4) {
            for (sum, left) in sums.iter_mut().zip(four) {
                *sum += left * left;
            }
        }
        for (b, byte) in bytes.iter_mut().enumerate() {
            let low = (codes[b] + NIBBLE_BIAS) as u8;
            let high = (codes[32 + b] + NIBBLE_BIAS) as u8;
            *byte = low | (high << 4);
        }
    }
    residual.truncate(v.len());
    (scale, round_up(sums.iter().sum::<f64>().sqrt()))
}

/// `||v - (coarse_scale * coarse + fine_scale * fine)||` computed in f64 and rounded up:
/// the fine tier's true error, measured on what the codes actually hold (the tests
/// check the index's cheaper bound against it).
#[cfg(test)]
pub(crate) fn two_tier_error(
    v: &[f32],
    coarse: &[u8],
    coarse_scale: f32,
    fine: &[u8],
    fine_scale: f32,
) -> f32 {
    let mut sum = 0.0f64;
    for (i, x) in v.iter().enumerate() {
        let approx = f64::from(coarse_scale) * f64::from(nibble_at(coarse, i))
            + f64::from(fine_scale) * f64::from(nibble_at(fine, i));
        sum += (f64::from(*x) - approx).powi(2);
    }
    round_up(sum.sqrt())
}

/// The signed 4-bit code of dimension `i` in a packed row.
#[cfg(test)]
pub(crate) fn nibble_at(row: &[u8], i: usize) -> i32 {
    let (group, lane) = (i / GROUP_DIMS, i % GROUP_DIMS);
    let byte = row[group * 32 + lane % 32];
    let nibble = if lane < 32 { byte & 0x0F } else { byte >> 4 };
    i32::from(nibble) - NIBBLE_BIAS
}

fn norm_f64(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

/// An f64 error bound as an f32 that is not smaller.
fn round_up(x: f64) -> f32 {
    (x * (1.0 + 1e-6) + 1e-9) as f32
}

/// A query as int8 codes padded to whole groups.
#[derive(Debug, Default)]
pub(crate) struct QueryCodes {
    /// `padded` codes; the padding is 0.
    pub codes: Vec<i8>,
    pub scale: f32,
    /// `||q - scale * codes||`, rounded up.
    pub error: f32,
    /// `NIBBLE_BIAS * sum(codes)`: what [`dot4`] adds for the bias of the stored nibbles.
    pub bias: i32,
}

impl QueryCodes {
    #[cfg(test)]
    pub fn new(q: &[f32], padded: usize) -> QueryCodes {
        let mut codes = QueryCodes::default();
        codes.encode(q, padded);
        codes
    }

    /// Quantises `q` into `self`, reusing the code buffer (a search allocates nothing).
    pub fn encode(&mut self, q: &[f32], padded: usize) {
        let max = q.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        self.codes.clear();
        self.codes.resize(padded, 0);
        if max == 0.0 || !max.is_finite() {
            self.scale = 0.0;
            self.error = round_up(norm_f64(q));
            self.bias = 0;
            return;
        }
        let scale = max / QUERY_MAX;
        let inverse = QUERY_MAX / max;
        let mut sum = 0.0f64;
        for (c, x) in self.codes.iter_mut().zip(q) {
            *c = round_to_i32(x * inverse).clamp(-127, 127) as i8;
            sum += (f64::from(*x) - f64::from(*c) * f64::from(scale)).powi(2);
        }
        self.bias = NIBBLE_BIAS * self.codes.iter().map(|c| i32::from(*c)).sum::<i32>();
        self.scale = scale;
        self.error = round_up(sum.sqrt());
    }
}

/// `sum(query[i] * stored_nibble[i])` over a packed row (`query.len() / 2` bytes),
/// stored nibbles being `code + 8`; subtract [`QueryCodes::bias`] for the dot product
/// with the codes. Exact: |terms| <= 127 * 15, and `dim` is far below the 1.1 million
/// that could overflow i32 (`GalleryIndex` refuses more than 65,535).
///
/// Portable Rust written so that LLVM vectorises it (32 i32 lanes per group half); the
/// scan's AVX2 version is in `simd/`, aarch64 compiles this one to NEON.
#[inline(always)]
pub(crate) fn dot4(query: &[i8], row: &[u8]) -> i32 {
    let mut acc = [0i32; 32];
    for (q, bytes) in query
        .chunks_exact(GROUP_DIMS)
        .zip(row.chunks_exact(GROUP_DIMS / 2))
    {
        for b in 0..32 {
            let byte = bytes[b];
            acc[b] += i32::from(q[b]) * i32::from(byte & 0x0F)
                + i32::from(q[32 + b]) * i32::from(byte >> 4);
        }
    }
    acc.iter().sum()
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
    let mut out = Vec::with_capacity(v.len());
    normalize_into(v, &mut out).then_some(out)
}

/// `v / ||v||` into `out` (cleared first); false (and `out` empty) for a zero or
/// non-finite vector. The same arithmetic as [`normalized`], without an allocation.
pub(crate) fn normalize_into(v: &[f32], out: &mut Vec<f32>) -> bool {
    out.clear();
    let norm = dot_f32(v, v).sqrt();
    if norm <= 0.0 || !norm.is_finite() {
        return false;
    }
    out.extend(v.iter().map(|x| x / norm));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn random_unit(seed: u64, dim: usize) -> Vec<f32> {
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

    /// Packs signed codes (-7..=7) the way `quantize4` does.
    fn pack(codes: &[i32]) -> Vec<u8> {
        let padded = padded_dim(codes.len());
        let mut row = vec![0x88u8; padded / 2];
        for (i, c) in codes.iter().enumerate() {
            let (group, lane) = (i / GROUP_DIMS, i % GROUP_DIMS);
            let byte = &mut row[group * 32 + lane % 32];
            let nibble = (c + NIBBLE_BIAS) as u8;
            *byte = if lane < 32 {
                (*byte & 0xF0) | nibble
            } else {
                (*byte & 0x0F) | (nibble << 4)
            };
        }
        row
    }

    #[test]
    fn the_nibble_dot_product_equals_the_naive_sum_for_every_length() {
        for dim in [1, 7, 31, 32, 33, 63, 64, 65, 100, 128, 129, 512, 1000] {
            let padded = padded_dim(dim);
            let codes: Vec<i32> = (0..dim).map(|i| (i as i32 * 5) % 15 - 7).collect();
            let mut q = vec![0i8; padded];
            for (i, x) in q.iter_mut().take(dim).enumerate() {
                // Extremes included: -127 and 127.
                *x = (((i * 37) % 255) as i32 - 127) as i8;
            }
            let row = pack(&codes);
            let naive: i64 = (0..dim)
                .map(|i| i64::from(q[i]) * i64::from(codes[i]))
                .sum();
            let bias = NIBBLE_BIAS * q.iter().map(|c| i32::from(*c)).sum::<i32>();
            assert_eq!(i64::from(dot4(&q, &row) - bias), naive, "dim {dim}");
            for (i, c) in codes.iter().enumerate() {
                assert_eq!(nibble_at(&row, i), *c);
            }
        }
    }

    #[test]
    fn the_largest_codes_do_not_overflow_at_the_largest_dimension() {
        let dim = crate::index::MAX_DIM;
        let padded = padded_dim(dim);
        let q = vec![-127i8; padded];
        let row = pack(&vec![7; dim]);
        let bias = NIBBLE_BIAS * -127 * padded as i32;
        // Padding nibbles hold 0 (stored 8): only `dim` terms of -127 * 7.
        assert_eq!(i64::from(dot4(&q, &row) - bias), -127 * 7 * dim as i64);
    }

    #[test]
    fn the_error_bounds_hold_for_every_pair() {
        for dim in [3, 100, 128, 200, 512] {
            let padded = padded_dim(dim);
            for s in 0..40u64 {
                let a = random_unit(s, dim);
                let b = random_unit(s + 1000, dim);
                let query = QueryCodes::new(&a, padded);
                let (mut coarse, mut fine) = (vec![0; padded / 2], vec![0; padded / 2]);
                let (mut residual, mut scratch) = (Vec::new(), Vec::new());
                let (s1, e1) = quantize4(&b, padded, &mut coarse, &mut residual);
                let (s2, rest) = quantize4(&residual, padded, &mut fine, &mut scratch);
                // The bound the index keeps (gallery_index.rs) is not below the truth.
                let e2 = rest + e1 * 1e-7 + 1e-9;
                assert!(
                    e2 >= two_tier_error(&b, &coarse, s1, &fine, s2),
                    "{dim} {s}"
                );
                let d1 = dot4(&query.codes, &coarse) - query.bias;
                let d2 = dot4(&query.codes, &fine) - query.bias;
                let approx1 = f64::from(d1) * f64::from(query.scale) * f64::from(s1);
                let approx2 = approx1 + f64::from(d2) * f64::from(query.scale) * f64::from(s2);
                let exact = f64::from(dot_f32(&a, &b));
                // The search's bound: |q - q'| + |q'| |v - v'|.
                let bound = |e: f32| f64::from(query.error + (1.0 + query.error) * e) + 1e-5;
                assert!((exact - approx1).abs() <= bound(e1), "coarse {dim} {s}");
                assert!((exact - approx2).abs() <= bound(e2), "fine {dim} {s}");
                // Tight enough to be useful: the coarse one rules out strangers (~0.1)
                // next to a genuine match (~0.6); the fine one is int8-like.
                assert!(bound(e1) < 0.2, "{}", bound(e1));
                assert!(bound(e2) < 0.03, "{}", bound(e2));
            }
        }
    }

    #[test]
    fn a_zero_vector_has_zero_codes_and_no_error() {
        let (mut c, mut r) = (vec![0; 32], Vec::new());
        assert_eq!(
            quantize4(&[0.0; 4], 64, &mut c, &mut r),
            (0.0, round_up(0.0))
        );
        assert_eq!(c, [0x88; 32]);
        assert!((0..4).all(|i| nibble_at(&c, i) == 0));
    }

    #[test]
    fn rounding_goes_to_the_nearest_integer() {
        for (x, n) in [
            (0.4, 0),
            (0.6, 1),
            (-0.6, -1),
            (2.5, 3),
            (-2.5, -3),
            (6.99, 7),
        ] {
            assert_eq!(round_to_i32(x), n, "{x}");
        }
    }
}
