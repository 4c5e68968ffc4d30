//! The scan's kernel: the query's int8 codes against many rows of packed 4-bit codes,
//! each row's dot product turned into its coarse upper bound and compared with the
//! selection's floor in the same pass (`coarse_uppers`).
//!
//! x86_64 with AVX2 (chosen at run time): per 32 bytes of a row (64 dimensions), two
//! `vpand`/`vpsrlw` to split the nibbles, two `vpmaddubsw` (unsigned nibble x signed
//! query byte, pairs summed in i16) and an i16 add; the i16 sums go to i32 with one
//! `vpmaddwd` per 128 dimensions, and eight rows' sums are reduced together with
//! `vphaddd` so no row pays a horizontal sum of its own. i16 cannot overflow: a lane sums
//! at most 8 products of 15 x 127 (15,240) before it is widened, and `vpmaddubsw`'s
//! saturation is never reached (2 x 15 x 127 = 3,810). With AVX-512 VNNI, one `vpdpbusd`
//! (four products summed straight into i32) replaces the `vpmaddubsw`/add/`vpmaddwd`
//! chain. The eight rows' bounds are then computed in one vector (the same f32
//! operations in the same order as [`BoundTerms::upper`], so every path gives the same
//! bits) and compared with the floor as one mask.
//!
//! The release binary must run on any x86_64 (SSE2), so AVX2 cannot be enabled for the
//! whole build; calling a `#[target_feature]` function is `unsafe` because running its
//! code on a CPU without the features is undefined behaviour, and the calls below are
//! guarded by the CPU check. Inside, loads and stores go through `bytemuck` (safe,
//! bounds-checked copies that compile to `vmovdqu`), so the kernels have no `unsafe`.
//! Everything else (and aarch64, where NEON is baseline) runs the portable [`dot4`],
//! which LLVM vectorises; `tests/bench/index_asm.sh` shows both.

#![allow(unsafe_code)]

use super::quantized::dot4;

/// The per-search terms of a row's coarse upper bound (see `search.rs`, `CodedQuery`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BoundTerms {
    /// Subtracted from the raw nibble dot product (the stored nibbles' bias).
    pub bias: i32,
    /// The query's code scale.
    pub scale: f32,
    pub lift: f32,
    pub grow: f32,
}

impl BoundTerms {
    /// `(dot - bias) * (scale * row_scale) + lift + grow * row_error`, in this order of
    /// f32 operations (the vector kernels repeat it exactly).
    #[inline(always)]
    pub fn upper(&self, dot: i32, row_scale: f32, row_error: f32) -> f32 {
        (dot - self.bias) as f32 * (self.scale * row_scale) + self.lift + self.grow * row_error
    }

    /// The matching lower bound: `(dot - bias) * (scale * row_scale) - lift - grow *
    /// row_error`, in this order.
    #[inline(always)]
    pub fn lower(&self, dot: i32, row_scale: f32, row_error: f32) -> f32 {
        (dot - self.bias) as f32 * (self.scale * row_scale) - self.lift - self.grow * row_error
    }
}

/// Consecutive rows of coarse codes (`query.len() / 2` bytes each) with their scales and
/// error bounds.
#[derive(Clone, Copy)]
pub(crate) struct CoarseRows<'a> {
    pub codes: &'a [u8],
    pub scales: &'a [f32],
    pub errors: &'a [f32],
}

/// One coarse pass: the query's int8 codes (`query.len()` a multiple of 64) against
/// `rows`, each row's bounds from `terms`, the rows above `floor` flagged.
#[derive(Clone, Copy)]
pub(crate) struct CoarseScan<'a> {
    pub query: &'a [i8],
    pub terms: &'a BoundTerms,
    pub rows: CoarseRows<'a>,
    pub floor: f32,
}

/// Where a coarse pass writes: a bound per row, and a bit per row above the floor.
pub(crate) struct CoarseOut<'a> {
    pub uppers: &'a mut [f32],
    pub above: &'a mut [u64],
}

impl CoarseScan<'_> {
    /// Clears `out`'s bits and returns the rows the pass covers: those of `row_bytes`
    /// bytes that `rows` holds and `out` has room for (none for empty rows).
    #[inline(always)]
    fn start(&self, out: &mut CoarseOut<'_>, row_bytes: usize) -> usize {
        out.above.fill(0);
        let rows = self.rows;
        let whole_rows = rows.codes.len().checked_div(row_bytes).unwrap_or(0);
        whole_rows
            .min(out.uppers.len())
            .min(rows.scales.len())
            .min(rows.errors.len())
    }

    /// Row `i` on its own, from its dot product: writes its upper bound and floor bit
    /// into `out` and returns its lower bound. The portable pass runs it on every row,
    /// the vector kernels on the rows after their last whole block (their vector code
    /// repeats these f32 operations in this order).
    #[inline(always)]
    fn bound_row(&self, i: usize, dot: i32, out: &mut CoarseOut<'_>) -> f32 {
        let (scale, error) = (self.rows.scales[i], self.rows.errors[i]);
        let upper = self.terms.upper(dot, scale, error);
        out.uppers[i] = upper;
        out.above[i / 64] |= u64::from(upper > self.floor) << (i % 64);
        self.terms.lower(dot, scale, error)
    }
}

/// For the first `uppers.len()` rows: `uppers[i] = terms.upper(dot4(query, row i), ..)`,
/// and bit `i % 64` of `above[i / 64]` set exactly when `uppers[i] > floor` (the other
/// bits cleared). Returns the highest of the rows' lower bounds (`terms.lower`; -inf
/// for no row). `query.len()` is a multiple of 64; `above` holds at least
/// `uppers.len().div_ceil(64)` words.
pub(crate) fn coarse_uppers(pass: CoarseScan<'_>, out: CoarseOut<'_>) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86_has_vnni() {
        if avx512::fits(pass.query.len()) {
            // SAFETY: as below; `avx512`'s features are a subset of those checked.
            return unsafe { avx512::coarse_uppers(pass, out) };
        }
        // SAFETY: the CPU supports every feature the kernel is compiled with (checked by
        // `x86_has_vnni`, cached by std), the one condition for running it. The function
        // itself is safe Rust (slices, bounds-checked).
        return unsafe { vnni::coarse_uppers(pass, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked on the line above, cached by std), the
        // one condition for running code compiled with `target_feature(enable = "avx2")`.
        // The function itself is safe Rust (slices, bounds-checked).
        return unsafe { avx2::coarse_uppers(pass, out) };
    }
    coarse_uppers_portable(pass, out)
}

/// AVX-512 VNNI on 256-bit vectors and everything the VNNI kernel is compiled with.
#[cfg(target_arch = "x86_64")]
fn x86_has_vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

fn coarse_uppers_portable(pass: CoarseScan<'_>, mut out: CoarseOut<'_>) -> f32 {
    let row_bytes = pass.query.len() / 2;
    let mut best_lower = f32::NEG_INFINITY;
    for i in 0..pass.start(&mut out, row_bytes) {
        let dot = dot4(pass.query, &pass.rows.codes[i * row_bytes..][..row_bytes]);
        best_lower = best_lower.max(pass.bound_row(i, dot, &mut out));
    }
    best_lower
}

// The x86_64 kernels, one module per instruction set (`x86_scan!` stamps out the
// 256-bit scan for `avx2` and `vnni`).
#[cfg(target_arch = "x86_64")]
#[macro_use]
mod x86_scan;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod vnni;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU can run, by name: the dispatched one, and on x86_64 each
    /// instruction set's kernel on its own (the dispatch picks only the best, so the
    /// others would otherwise go untested on a newer CPU).
    fn kernels() -> Vec<&'static str> {
        let mut names = vec!["dispatched"];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                names.push("avx2");
            }
            if x86_has_vnni() {
                names.extend(["vnni", "avx512"]);
            }
        }
        names
    }

    fn run(
        kernel: &str,
        query: &[i8],
        terms: &BoundTerms,
        rows: CoarseRows<'_>,
        floor: f32,
        uppers: &mut [f32],
        above: &mut [u64],
    ) -> f32 {
        let pass = CoarseScan {
            query,
            terms,
            rows,
            floor,
        };
        let out = CoarseOut { uppers, above };
        match kernel {
            // SAFETY (each x86_64 arm): `kernels()` lists a kernel only when the CPU has
            // the features it is compiled with.
            #[cfg(target_arch = "x86_64")]
            "avx2" => unsafe { avx2::coarse_uppers(pass, out) },
            #[cfg(target_arch = "x86_64")]
            "vnni" => unsafe { vnni::coarse_uppers(pass, out) },
            #[cfg(target_arch = "x86_64")]
            "avx512" if avx512::fits(query.len()) => unsafe { avx512::coarse_uppers(pass, out) },
            "portable" => coarse_uppers_portable(pass, out),
            _ => coarse_uppers(pass, out),
        }
    }

    fn both(query: &[i8], terms: &BoundTerms, rows: CoarseRows<'_>, floor: f32, n: usize) {
        for kernel in kernels() {
            same_as_portable(kernel, query, terms, rows, floor, n);
        }
    }

    fn same_as_portable(
        kernel: &str,
        query: &[i8],
        terms: &BoundTerms,
        rows: CoarseRows<'_>,
        floor: f32,
        n: usize,
    ) {
        let words = n.div_ceil(64);
        let (mut fast, mut plain) = (vec![0f32; n], vec![0f32; n]);
        // Stale bits must be cleared.
        let (mut fast_above, mut plain_above) = (vec![u64::MAX; words], vec![u64::MAX; words]);
        let fast_lower = run(
            kernel,
            query,
            terms,
            rows,
            floor,
            &mut fast,
            &mut fast_above,
        );
        let plain_lower = coarse_uppers_portable(
            CoarseScan {
                query,
                terms,
                rows,
                floor,
            },
            CoarseOut {
                uppers: &mut plain,
                above: &mut plain_above,
            },
        );
        let what = format!("{kernel}: dim {} rows {n}", query.len());
        assert_eq!(fast_lower.to_bits(), plain_lower.to_bits(), "{what}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&plain), "{what}");
        assert_eq!(fast_above, plain_above, "{what}");
        let row_bytes = query.len() / 2;
        let mut lowest = f32::NEG_INFINITY;
        for (i, upper) in plain.iter().enumerate() {
            let dot = dot4(query, &rows.codes[i * row_bytes..(i + 1) * row_bytes]);
            lowest = lowest.max(terms.lower(dot, rows.scales[i], rows.errors[i]));
            assert_eq!(
                upper.to_bits(),
                terms.upper(dot, rows.scales[i], rows.errors[i]).to_bits()
            );
            assert_eq!(plain_above[i / 64] >> (i % 64) & 1 == 1, *upper > floor);
        }
        assert_eq!(plain_lower.to_bits(), lowest.to_bits());
    }

    #[test]
    fn the_dispatched_bounds_and_masks_equal_the_portable_ones() {
        for padded in [64, 128, 192, 256, 320, 512] {
            let query: Vec<i8> = (0..padded)
                .map(|i| ((i * 53) % 255) as i32 - 127)
                .map(|x| x as i8)
                .collect();
            let terms = BoundTerms {
                bias: 8 * query.iter().map(|c| i32::from(*c)).sum::<i32>(),
                scale: 0.0071,
                lift: 0.013,
                grow: 1.02,
            };
            // 8 rows per reduction, 64 per mask word: 43 and 131 rows leave remainders;
            // the extreme nibbles (0 and 15) included.
            for n in [1, 7, 8, 43, 131] {
                let codes: Vec<u8> = (0..padded / 2 * n)
                    .map(|i| ((i * 97) % 256) as u8)
                    .collect();
                let scales: Vec<f32> = (0..n).map(|i| 0.01 + i as f32 * 1e-4).collect();
                let errors: Vec<f32> = (0..n).map(|i| 0.05 + (i % 7) as f32 * 0.01).collect();
                let rows = CoarseRows {
                    codes: &codes,
                    scales: &scales,
                    errors: &errors,
                };
                let mut uppers = vec![0f32; n];
                run(
                    "portable",
                    &query,
                    &terms,
                    rows,
                    f32::NEG_INFINITY,
                    &mut uppers,
                    &mut [0; 3],
                );
                uppers.sort_by(f32::total_cmp);
                // Floors below all, above all, and through the middle (some rows equal it).
                for floor in [
                    f32::NEG_INFINITY,
                    uppers[n / 2],
                    uppers[n - 1],
                    f32::INFINITY,
                ] {
                    both(&query, &terms, rows, floor, n);
                }
            }
            // The largest sums: every nibble 15 against every query code 127 / -127.
            for q in [127i8, -127] {
                let query = vec![q; padded];
                let codes = vec![0xFFu8; padded / 2 * 9];
                let ones = vec![1.0f32; 9];
                let zeros = vec![0.0f32; 9];
                let rows = CoarseRows {
                    codes: &codes,
                    scales: &ones,
                    errors: &zeros,
                };
                let terms = BoundTerms {
                    bias: 0,
                    scale: 1.0,
                    lift: 0.0,
                    grow: 0.0,
                };
                let mut uppers = vec![0f32; 9];
                run(
                    "dispatched",
                    &query,
                    &terms,
                    rows,
                    0.0,
                    &mut uppers,
                    &mut [0],
                );
                let expected = (i32::from(q) * 15 * padded as i32) as f32;
                assert!(uppers.iter().all(|u| *u == expected), "{uppers:?}");
                both(&query, &terms, rows, 0.0, 9);
            }
        }
    }
}
