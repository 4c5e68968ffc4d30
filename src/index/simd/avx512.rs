//! AVX-512 VNNI on whole 64-byte chunks (two groups, 128 dimensions: a whole 128-d row)
//! per `zmm` register: half the instructions of the 256-bit kernels per row on CPUs with
//! full-width 512-bit units (Zen 5, Intel server cores). Sixteen rows' sums are reduced
//! together by an unpack/shuffle tree. Rows of an odd number of groups take the 256-bit
//! kernel.

use std::arch::x86_64::*;

use super::super::quantized::GROUP_DIMS;
use super::{CoarseOut, CoarseScan};

/// Rows reduced together.
const ROWS: usize = 16;

/// Query codes per 64-byte chunk of a row.
const CHUNK_DIMS: usize = 2 * GROUP_DIMS;

/// Whether rows for a query of this length are whole 64-byte chunks.
pub(super) fn fits(query_len: usize) -> bool {
    query_len > 0 && query_len.is_multiple_of(CHUNK_DIMS)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn coarse_uppers(pass: CoarseScan<'_>, out: CoarseOut<'_>) -> f32 {
    match pass.query.len() / CHUNK_DIMS {
        1 => scan::<1>(pass, out),
        2 => scan::<2>(pass, out),
        4 => scan::<4>(pass, out),
        _ => scan::<0>(pass, out),
    }
}

/// `Z` chunks of 64 bytes per row; `Z == 0`: any number, the query read from memory.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn scan<const Z: usize>(pass: CoarseScan<'_>, mut out: CoarseOut<'_>) -> f32 {
    let (query, rows, terms) = (pass.query, pass.rows, pass.terms);
    // A constant for the fixed sizes, so that the loops below unroll.
    let row_bytes = if Z > 0 { 64 * Z } else { query.len() / 2 };
    let n = pass.start(&mut out, row_bytes);
    if !fits(query.len()) || query.len() != 2 * row_bytes {
        return f32::NEG_INFINITY;
    }
    let mut q = [[_mm512_setzero_si512(); 2]; Z];
    for (halves, codes) in q.iter_mut().zip(query.chunks_exact(CHUNK_DIMS)) {
        *halves = query_halves(codes);
    }
    let whole = n / ROWS * ROWS;
    let bias = _mm512_set1_epi32(terms.bias);
    let scale = _mm512_set1_ps(terms.scale);
    let lift = _mm512_set1_ps(terms.lift);
    let grow = _mm512_set1_ps(terms.grow);
    let floor_v = _mm512_set1_ps(pass.floor);
    let mut lowers = _mm512_set1_ps(f32::NEG_INFINITY);
    let blocks = rows.codes[..whole * row_bytes]
        .chunks_exact(ROWS * row_bytes)
        .zip(out.uppers[..whole].chunks_exact_mut(ROWS))
        .zip(rows.scales[..whole].chunks_exact(ROWS))
        .zip(rows.errors[..whole].chunks_exact(ROWS));
    for (b, (((block, uppers), scales), errors)) in blocks.enumerate() {
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
        uppers.copy_from_slice(&bytemuck::cast::<__m512, [f32; ROWS]>(bounds));
        let mask = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(bounds, floor_v);
        // ROWS divides 64: the sixteen bits never straddle two words.
        let first = b * ROWS;
        out.above[first / 64] |= u64::from(mask) << (first % 64);
    }
    let mut best_lower = bytemuck::cast::<__m512, [f32; ROWS]>(lowers)
        .into_iter()
        .fold(f32::NEG_INFINITY, f32::max);
    for i in whole..n {
        let row = &rows.codes[i * row_bytes..][..row_bytes];
        let sums = bytemuck::cast::<__m512i, [i32; 16]>(row_sums::<Z>(&q, query, row));
        best_lower = best_lower.max(pass.bound_row(i, sums.iter().sum(), &mut out));
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
