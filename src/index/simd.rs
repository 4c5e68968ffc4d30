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

/// For the first `uppers.len()` rows: `uppers[i] = terms.upper(dot4(query, row i), ..)`,
/// and bit `i % 64` of `above[i / 64]` set exactly when `uppers[i] > floor` (the other
/// bits cleared). Returns the highest of the rows' lower bounds (`terms.lower`; -inf
/// for no row). `query.len()` is a multiple of 64; `above` holds at least
/// `uppers.len().div_ceil(64)` words.
pub(crate) fn coarse_uppers(
    query: &[i8],
    terms: &BoundTerms,
    rows: CoarseRows<'_>,
    floor: f32,
    uppers: &mut [f32],
    above: &mut [u64],
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if x86_has_vnni() {
        if avx512::fits(query.len()) {
            // SAFETY: as below; `avx512`'s features are a subset of those checked.
            return unsafe { avx512::coarse_uppers(query, terms, rows, floor, uppers, above) };
        }
        // SAFETY: the CPU supports every feature the kernel is compiled with (checked by
        // `x86_has_vnni`, cached by std), the one condition for running it. The function
        // itself is safe Rust (slices, bounds-checked).
        return unsafe { vnni::coarse_uppers(query, terms, rows, floor, uppers, above) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked on the line above, cached by std), the
        // one condition for running code compiled with `target_feature(enable = "avx2")`.
        // The function itself is safe Rust (slices, bounds-checked).
        return unsafe { avx2::coarse_uppers(query, terms, rows, floor, uppers, above) };
    }
    coarse_uppers_portable(query, terms, rows, floor, uppers, above)
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

fn coarse_uppers_portable(
    query: &[i8],
    terms: &BoundTerms,
    rows: CoarseRows<'_>,
    floor: f32,
    uppers: &mut [f32],
    above: &mut [u64],
) -> f32 {
    let row_bytes = query.len() / 2;
    above.fill(0);
    let mut best_lower = f32::NEG_INFINITY;
    if row_bytes == 0 {
        return best_lower;
    }
    let each = uppers
        .iter_mut()
        .zip(rows.codes.chunks_exact(row_bytes))
        .zip(rows.scales.iter().zip(rows.errors));
    for (i, ((upper, row), (scale, error))) in each.enumerate() {
        let dot = dot4(query, row);
        *upper = terms.upper(dot, *scale, *error);
        above[i / 64] |= u64::from(*upper > floor) << (i % 64);
        best_lower = best_lower.max(terms.lower(dot, *scale, *error));
    }
    best_lower
}

/// The x86_64 scan, stamped out once per instruction set (the features must be known
/// at compile time for the intrinsics to inline); each module brings its own
/// `row_sums::<G>(q, query, row) -> __m256i`, eight i32 partial sums whose total is
/// `dot4(query, row)`, with `G > 0` the query's two halves of each group from registers
/// (`q`), else from `query`.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_scan {
    ($features:literal) => {
        /// Rows reduced together by the `vphaddd` tree.
        const ROWS: usize = 8;

        #[target_feature(enable = $features)]
        pub(super) fn coarse_uppers(
            query: &[i8],
            terms: &BoundTerms,
            rows: CoarseRows<'_>,
            floor: f32,
            uppers: &mut [f32],
            above: &mut [u64],
        ) -> f32 {
            // The common embedding sizes get a kernel with the query in registers and
            // the groups unrolled (128-d: dlib, FaceNet; 512-d: ArcFace-style models); 0
            // reads the query from memory (any size).
            match query.len() / GROUP_DIMS {
                1 => scan::<1>(query, terms, rows, floor, uppers, above),
                2 => scan::<2>(query, terms, rows, floor, uppers, above),
                3 => scan::<3>(query, terms, rows, floor, uppers, above),
                4 => scan::<4>(query, terms, rows, floor, uppers, above),
                8 => scan::<8>(query, terms, rows, floor, uppers, above),
                _ => scan::<0>(query, terms, rows, floor, uppers, above),
            }
        }

        /// `G` groups of 64 dimensions per row (32 bytes each); `G == 0`: any number.
        #[target_feature(enable = $features)]
        fn scan<const G: usize>(
            query: &[i8],
            terms: &BoundTerms,
            rows: CoarseRows<'_>,
            floor: f32,
            uppers: &mut [f32],
            above: &mut [u64],
        ) -> f32 {
            above.fill(0);
            // A constant for the fixed sizes, so that the loops below unroll.
            let row_bytes = if G > 0 { 32 * G } else { query.len() / 2 };
            if row_bytes == 0 || query.len() != 2 * row_bytes {
                return f32::NEG_INFINITY;
            }
            let mut q = [[_mm256_setzero_si256(); 2]; G];
            for (halves, bytes) in q.iter_mut().zip(query.chunks_exact(GROUP_DIMS)) {
                let bytes = bytemuck::cast_slice::<i8, u8>(bytes);
                halves[0] = bytemuck::pod_read_unaligned(&bytes[..32]);
                halves[1] = bytemuck::pod_read_unaligned(&bytes[32..]);
            }
            let n = uppers
                .len()
                .min(rows.codes.len() / row_bytes)
                .min(rows.scales.len())
                .min(rows.errors.len());
            let whole = n / ROWS * ROWS;
            let bias = _mm256_set1_epi32(terms.bias);
            let scale = _mm256_set1_ps(terms.scale);
            let lift = _mm256_set1_ps(terms.lift);
            let grow = _mm256_set1_ps(terms.grow);
            let floor_v = _mm256_set1_ps(floor);
            let mut lowers = _mm256_set1_ps(f32::NEG_INFINITY);
            let blocks = rows.codes[..whole * row_bytes]
                .chunks_exact(ROWS * row_bytes)
                .zip(uppers[..whole].chunks_exact_mut(ROWS));
            for (b, (block, out)) in blocks.enumerate() {
                let mut sums = [_mm256_setzero_si256(); ROWS];
                for (sum, row) in sums.iter_mut().zip(block.chunks_exact(row_bytes)) {
                    *sum = row_sums::<G>(&q, query, row);
                }
                let first = b * ROWS;
                let dots = _mm256_cvtepi32_ps(_mm256_sub_epi32(reduce8(&sums), bias));
                let row_scales: __m256 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(
                    &rows.scales[first..][..ROWS],
                ));
                let row_errors: __m256 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(
                    &rows.errors[first..][..ROWS],
                ));
                // The order of `BoundTerms::upper` / `lower`: (dot * (scale * s)) +/- lift,
                // then +/- grow * e.
                let approx = _mm256_mul_ps(dots, _mm256_mul_ps(scale, row_scales));
                let margin = _mm256_mul_ps(grow, row_errors);
                let bounds = _mm256_add_ps(_mm256_add_ps(approx, lift), margin);
                lowers = _mm256_max_ps(lowers, _mm256_sub_ps(_mm256_sub_ps(approx, lift), margin));
                out.copy_from_slice(&bytemuck::cast::<__m256, [f32; ROWS]>(bounds));
                let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(bounds, floor_v));
                // ROWS divides 64: the eight bits never straddle two words.
                above[first / 64] |= u64::from(mask as u8) << (first % 64);
            }
            let mut best_lower = bytemuck::cast::<__m256, [f32; ROWS]>(lowers)
                .into_iter()
                .fold(f32::NEG_INFINITY, f32::max);
            for i in whole..n {
                let row = &rows.codes[i * row_bytes..][..row_bytes];
                let sums = bytemuck::cast::<__m256i, [i32; 8]>(row_sums::<G>(&q, query, row));
                let dot = sums.iter().sum();
                uppers[i] = terms.upper(dot, rows.scales[i], rows.errors[i]);
                above[i / 64] |= u64::from(uppers[i] > floor) << (i % 64);
                best_lower = best_lower.max(terms.lower(dot, rows.scales[i], rows.errors[i]));
            }
            best_lower
        }

        /// Lane i of the result is the sum of the eight lanes of `sums[i]`.
        #[target_feature(enable = $features)]
        #[inline]
        fn reduce8(sums: &[__m256i; ROWS]) -> __m256i {
            let h01 = _mm256_hadd_epi32(sums[0], sums[1]);
            let h23 = _mm256_hadd_epi32(sums[2], sums[3]);
            let h45 = _mm256_hadd_epi32(sums[4], sums[5]);
            let h67 = _mm256_hadd_epi32(sums[6], sums[7]);
            // Per 128-bit half: [r0 r1 r2 r3] and [r4 r5 r6 r7] partial sums.
            let h0123 = _mm256_hadd_epi32(h01, h23);
            let h4567 = _mm256_hadd_epi32(h45, h67);
            let low_halves = _mm256_permute2x128_si256::<0x20>(h0123, h4567);
            let high_halves = _mm256_permute2x128_si256::<0x31>(h0123, h4567);
            _mm256_add_epi32(low_halves, high_halves)
        }

        /// The query's codes of group `g` (its two 32-byte halves), from registers when
        /// the size is fixed.
        #[target_feature(enable = $features)]
        #[inline]
        fn query_halves<const G: usize>(
            q: &[[__m256i; 2]; G],
            query: &[i8],
            g: usize,
        ) -> (__m256i, __m256i) {
            if G > 0 {
                (q[g][0], q[g][1])
            } else {
                let bytes = bytemuck::cast_slice::<i8, u8>(&query[GROUP_DIMS * g..][..64]);
                (
                    bytemuck::pod_read_unaligned(&bytes[..32]),
                    bytemuck::pod_read_unaligned(&bytes[32..]),
                )
            }
        }
    };
}

/// AVX2: `vpmaddubsw` into i16, widened every two groups.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::quantized::GROUP_DIMS;
    use super::{BoundTerms, CoarseRows};

    x86_scan!("avx2");

    #[target_feature(enable = "avx2")]
    #[inline]
    fn row_sums<const G: usize>(q: &[[__m256i; 2]; G], query: &[i8], row: &[u8]) -> __m256i {
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        let mut acc16 = _mm256_setzero_si256();
        let groups = if G > 0 { G } else { row.len() / 32 };
        for g in 0..groups {
            let packed: __m256i = bytemuck::pod_read_unaligned(&row[32 * g..][..32]);
            let (q_low, q_high) = query_halves::<G>(q, query, g);
            let nib_low = _mm256_and_si256(packed, low);
            let nib_high = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low);
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(nib_low, q_low));
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(nib_high, q_high));
            // Two groups (8 products a lane) at most in i16.
            if g % 2 == 1 || g + 1 == groups {
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(acc16, ones));
                acc16 = _mm256_setzero_si256();
            }
        }
        acc
    }
}

/// AVX-512 VNNI on 256-bit registers: `vpdpbusd` sums four products straight into i32
/// (no i16 stage: 4 x 15 x 127 per lane and step), and AVX-512VL gives 32 vector
/// registers, so eight rows' accumulators and the query stay in registers.
#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::super::quantized::GROUP_DIMS;
    use super::{BoundTerms, CoarseRows};

    x86_scan!("avx2,avx512f,avx512bw,avx512vl,avx512vnni");

    #[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn row_sums<const G: usize>(q: &[[__m256i; 2]; G], query: &[i8], row: &[u8]) -> __m256i {
        let low = _mm256_set1_epi8(0x0F);
        let mut acc = _mm256_setzero_si256();
        let groups = if G > 0 { G } else { row.len() / 32 };
        for g in 0..groups {
            let packed: __m256i = bytemuck::pod_read_unaligned(&row[32 * g..][..32]);
            let (q_low, q_high) = query_halves::<G>(q, query, g);
            let nib_low = _mm256_and_si256(packed, low);
            let nib_high = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low);
            acc = _mm256_dpbusd_epi32(acc, nib_low, q_low);
            acc = _mm256_dpbusd_epi32(acc, nib_high, q_high);
        }
        acc
    }
}

/// AVX-512 VNNI on whole 64-byte chunks (two groups, 128 dimensions: a whole 128-d row)
/// per `zmm` register: half the instructions of the 256-bit kernels per row on CPUs with
/// full-width 512-bit units (Zen 5, Intel server cores). Sixteen rows' sums are reduced
/// together by an unpack/shuffle tree. Rows of an odd number of groups take the 256-bit
/// kernel.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::super::quantized::GROUP_DIMS;
    use super::{BoundTerms, CoarseRows};

    /// Rows reduced together.
    const ROWS: usize = 16;

    /// Query codes per 64-byte chunk of a row.
    const CHUNK_DIMS: usize = 2 * GROUP_DIMS;

    /// Whether rows for a query of this length are whole 64-byte chunks.
    pub(super) fn fits(query_len: usize) -> bool {
        query_len > 0 && query_len.is_multiple_of(CHUNK_DIMS)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn coarse_uppers(
        query: &[i8],
        terms: &BoundTerms,
        rows: CoarseRows<'_>,
        floor: f32,
        uppers: &mut [f32],
        above: &mut [u64],
    ) -> f32 {
        match query.len() / CHUNK_DIMS {
            1 => scan::<1>(query, terms, rows, floor, uppers, above),
            2 => scan::<2>(query, terms, rows, floor, uppers, above),
            4 => scan::<4>(query, terms, rows, floor, uppers, above),
            _ => scan::<0>(query, terms, rows, floor, uppers, above),
        }
    }

    /// `Z` chunks of 64 bytes per row; `Z == 0`: any number, the query read from memory.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    fn scan<const Z: usize>(
        query: &[i8],
        terms: &BoundTerms,
        rows: CoarseRows<'_>,
        floor: f32,
        uppers: &mut [f32],
        above: &mut [u64],
    ) -> f32 {
        above.fill(0);
        // A constant for the fixed sizes, so that the loops below unroll.
        let row_bytes = if Z > 0 { 64 * Z } else { query.len() / 2 };
        if !fits(query.len()) || query.len() != 2 * row_bytes {
            return f32::NEG_INFINITY;
        }
        let mut q = [[_mm512_setzero_si512(); 2]; Z];
        for (halves, codes) in q.iter_mut().zip(query.chunks_exact(CHUNK_DIMS)) {
            *halves = query_halves(codes);
        }
        let n = uppers
            .len()
            .min(rows.codes.len() / row_bytes)
            .min(rows.scales.len())
            .min(rows.errors.len());
        let whole = n / ROWS * ROWS;
        let bias = _mm512_set1_epi32(terms.bias);
        let scale = _mm512_set1_ps(terms.scale);
        let lift = _mm512_set1_ps(terms.lift);
        let grow = _mm512_set1_ps(terms.grow);
        let floor_v = _mm512_set1_ps(floor);
        let mut lowers = _mm512_set1_ps(f32::NEG_INFINITY);
        let blocks = rows.codes[..whole * row_bytes]
            .chunks_exact(ROWS * row_bytes)
            .zip(uppers[..whole].chunks_exact_mut(ROWS))
            .zip(rows.scales[..whole].chunks_exact(ROWS))
            .zip(rows.errors[..whole].chunks_exact(ROWS));
        for (b, (((block, out), scales), errors)) in blocks.enumerate() {
            let mut sums = [_mm512_setzero_si512(); ROWS];
            for (sum, row) in sums.iter_mut().zip(block.chunks_exact(row_bytes)) {
                *sum = row_sums::<Z>(&q, query, row);
            }
            let dots = _mm512_cvtepi32_ps(_mm512_sub_epi32(reduce16(&sums), bias));
            let row_scales: __m512 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(scales));
            let row_errors: __m512 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(errors));
            // The order of `BoundTerms::upper` / `lower`: (dot * (scale * s)) +/- lift, then
            // +/- grow * e.
            let approx = _mm512_mul_ps(dots, _mm512_mul_ps(scale, row_scales));
            let margin = _mm512_mul_ps(grow, row_errors);
            let bounds = _mm512_add_ps(_mm512_add_ps(approx, lift), margin);
            lowers = _mm512_max_ps(lowers, _mm512_sub_ps(_mm512_sub_ps(approx, lift), margin));
            out.copy_from_slice(&bytemuck::cast::<__m512, [f32; ROWS]>(bounds));
            let mask = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(bounds, floor_v);
            // ROWS divides 64: the sixteen bits never straddle two words.
            let first = b * ROWS;
            above[first / 64] |= u64::from(mask) << (first % 64);
        }
        let mut best_lower = bytemuck::cast::<__m512, [f32; ROWS]>(lowers)
            .into_iter()
            .fold(f32::NEG_INFINITY, f32::max);
        for i in whole..n {
            let row = &rows.codes[i * row_bytes..][..row_bytes];
            let sums = bytemuck::cast::<__m512i, [i32; 16]>(row_sums::<Z>(&q, query, row));
            let dot = sums.iter().sum();
            uppers[i] = terms.upper(dot, rows.scales[i], rows.errors[i]);
            above[i / 64] |= u64::from(uppers[i] > floor) << (i % 64);
            best_lower = best_lower.max(terms.lower(dot, rows.scales[i], rows.errors[i]));
        }
        best_lower
    }

    /// The query codes that meet a 64-byte chunk's low and high nibbles: in the row's
    /// layout (`quantized.rs`), byte `b` of group `g` holds dimension `64g + b` low and
    /// `64g + 32 + b` high, and a chunk is two groups.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn query_halves(codes: &[i8]) -> [__m512i; 2] {
        let codes = bytemuck::cast_slice::<i8, u8>(codes);
        let (mut low, mut high) = ([0u8; 64], [0u8; 64]);
        for half in 0..2 {
            let group = &codes[GROUP_DIMS * half..][..GROUP_DIMS];
            low[32 * half..][..32].copy_from_slice(&group[..32]);
            high[32 * half..][..32].copy_from_slice(&group[32..]);
        }
        [bytemuck::cast(low), bytemuck::cast(high)]
    }

    /// Sixteen i32 partial sums whose total is `dot4(query, row)`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn row_sums<const Z: usize>(q: &[[__m512i; 2]; Z], query: &[i8], row: &[u8]) -> __m512i {
        let low = _mm512_set1_epi8(0x0F);
        let mut acc = _mm512_setzero_si512();
        let chunks = if Z > 0 { Z } else { row.len() / 64 };
        for j in 0..chunks {
            let packed: __m512i = bytemuck::pod_read_unaligned(&row[64 * j..][..64]);
            let [q_low, q_high] = if Z > 0 {
                q[j]
            } else {
                query_halves(&query[CHUNK_DIMS * j..][..CHUNK_DIMS])
            };
            let nib_low = _mm512_and_si512(packed, low);
            let nib_high = _mm512_and_si512(_mm512_srli_epi16::<4>(packed), low);
            acc = _mm512_dpbusd_epi32(acc, nib_low, q_low);
            acc = _mm512_dpbusd_epi32(acc, nib_high, q_high);
        }
        acc
    }

    /// Lane i of the result is the sum of the sixteen lanes of `sums[i]`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn reduce16(sums: &[__m512i; ROWS]) -> __m512i {
        // Rows a, b -> per 128-bit lane [a0+a2, b0+b2, a1+a3, b1+b3].
        let mut pairs = [_mm512_setzero_si512(); 8];
        for (pair, ab) in pairs.iter_mut().zip(sums.chunks_exact(2)) {
            *pair = _mm512_add_epi32(
                _mm512_unpacklo_epi32(ab[0], ab[1]),
                _mm512_unpackhi_epi32(ab[0], ab[1]),
            );
        }
        // Four rows -> per 128-bit lane [a, b, c, d] (that lane's part of each sum).
        let mut quads = [_mm512_setzero_si512(); 4];
        for (quad, p) in quads.iter_mut().zip(pairs.chunks_exact(2)) {
            *quad = _mm512_add_epi32(
                _mm512_unpacklo_epi64(p[0], p[1]),
                _mm512_unpackhi_epi64(p[0], p[1]),
            );
        }
        // Fold the four 128-bit lanes: [q0 lanes 0+1, q0 2+3, q1 0+1, q1 2+3], then
        // [q0, q1, q2, q3] totals, rows in order.
        let fold = |x: __m512i, y: __m512i| {
            _mm512_add_epi32(
                _mm512_shuffle_i32x4::<0b10_00_10_00>(x, y),
                _mm512_shuffle_i32x4::<0b11_01_11_01>(x, y),
            )
        };
        let low = fold(quads[0], quads[1]);
        let high = fold(quads[2], quads[3]);
        fold(low, high)
    }
}

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
        match kernel {
            // SAFETY (each x86_64 arm): `kernels()` lists a kernel only when the CPU has
            // the features it is compiled with.
            #[cfg(target_arch = "x86_64")]
            "avx2" => unsafe { avx2::coarse_uppers(query, terms, rows, floor, uppers, above) },
            #[cfg(target_arch = "x86_64")]
            "vnni" => unsafe { vnni::coarse_uppers(query, terms, rows, floor, uppers, above) },
            #[cfg(target_arch = "x86_64")]
            "avx512" if avx512::fits(query.len()) => unsafe {
                avx512::coarse_uppers(query, terms, rows, floor, uppers, above)
            },
            _ => coarse_uppers(query, terms, rows, floor, uppers, above),
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
        let plain_lower =
            coarse_uppers_portable(query, terms, rows, floor, &mut plain, &mut plain_above);
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
                coarse_uppers_portable(
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
                coarse_uppers(&query, &terms, rows, 0.0, &mut uppers, &mut [0]);
                let expected = (i32::from(q) * 15 * padded as i32) as f32;
                assert!(uppers.iter().all(|u| *u == expected), "{uppers:?}");
                both(&query, &terms, rows, 0.0, 9);
            }
        }
    }
}
