//! The scan's kernel: the query's int8 codes against many rows of packed 4-bit codes.
//!
//! x86_64 with AVX2 (chosen at run time): per 32 bytes of a row (64 dimensions), two
//! `vpand`/`vpsrlw` to split the nibbles, two `vpmaddubsw` (unsigned nibble x signed
//! query byte, pairs summed in i16) and an i16 add; the i16 sums go to i32 with one
//! `vpmaddwd` per 128 dimensions, and eight rows' sums are reduced together with
//! `vphaddd` so no row pays a horizontal sum of its own. i16 cannot overflow: a lane sums
//! at most 8 products of 15 x 127 (15,240) before it is widened, and `vpmaddubsw`'s
//! saturation is never reached (2 x 15 x 127 = 3,810).
//!
//! The release binary must run on any x86_64 (SSE2), so AVX2 cannot be enabled for the
//! whole build; calling a `#[target_feature]` function is `unsafe` because running AVX2
//! code on a CPU without it is undefined behaviour, and the one call below is guarded by
//! the CPU check. Inside, loads and stores go through `bytemuck` (safe, bounds-checked
//! copies that compile to `vmovdqu`), so the kernel itself has no `unsafe`.
//! Everything else (and aarch64, where NEON is baseline) runs the portable
//! [`dot4`], which LLVM vectorises; `tests/bench/index_asm.sh` shows both.

#![allow(unsafe_code)]

use super::quantized::dot4;

/// `out[i] = dot4(query, row i of codes)` for `out.len()` rows of `query.len() / 2`
/// bytes (`query.len()` a multiple of 64).
pub(crate) fn dots4(query: &[i8], codes: &[u8], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked on the line above, cached by std), the
        // one condition for running code compiled with `target_feature(enable = "avx2")`.
        // The function itself is safe Rust (slices, bounds-checked).
        return unsafe { avx2::dots4(query, codes, out) };
    }
    dots4_portable(query, codes, out)
}

fn dots4_portable(query: &[i8], codes: &[u8], out: &mut [i32]) {
    let row_bytes = query.len() / 2;
    if row_bytes == 0 {
        return;
    }
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(row_bytes)) {
        *o = dot4(query, row);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::quantized::GROUP_DIMS;

    /// Rows reduced together by the `vphaddd` tree.
    const ROWS: usize = 8;

    #[target_feature(enable = "avx2")]
    pub(super) fn dots4(query: &[i8], codes: &[u8], out: &mut [i32]) {
        // The common embedding sizes get a kernel with the query in registers and the
        // groups unrolled (128-d: dlib, FaceNet; 512-d: ArcFace-style models).
        match query.len() / GROUP_DIMS {
            1 => dots4_fixed::<1>(query, codes, out),
            2 => dots4_fixed::<2>(query, codes, out),
            3 => dots4_fixed::<3>(query, codes, out),
            4 => dots4_fixed::<4>(query, codes, out),
            8 => dots4_fixed::<8>(query, codes, out),
            _ => dots4_any(query, codes, out),
        }
    }

    /// `G` groups of 64 dimensions per row (32 bytes each).
    #[target_feature(enable = "avx2")]
    fn dots4_fixed<const G: usize>(query: &[i8], codes: &[u8], out: &mut [i32]) {
        let row_bytes = 32 * G;
        let mut q = [[_mm256_setzero_si256(); 2]; G];
        for (halves, bytes) in q.iter_mut().zip(query.chunks_exact(GROUP_DIMS)) {
            let bytes = bytemuck::cast_slice::<i8, u8>(bytes);
            halves[0] = bytemuck::pod_read_unaligned(&bytes[..32]);
            halves[1] = bytemuck::pod_read_unaligned(&bytes[32..]);
        }
        let rows = out.len().min(codes.len() / row_bytes);
        let whole = rows / ROWS * ROWS;
        for (block, o) in codes[..whole * row_bytes]
            .chunks_exact(ROWS * row_bytes)
            .zip(out[..whole].chunks_exact_mut(ROWS))
        {
            let mut sums = [_mm256_setzero_si256(); ROWS];
            for (sum, row) in sums.iter_mut().zip(block.chunks_exact(row_bytes)) {
                *sum = row_sums_fixed::<G>(&q, row);
            }
            o.copy_from_slice(&bytemuck::cast::<__m256i, [i32; 8]>(reduce8(&sums)));
        }
        for (o, row) in out[whole..rows]
            .iter_mut()
            .zip(codes[whole * row_bytes..].chunks_exact(row_bytes))
        {
            *o = bytemuck::cast::<__m256i, [i32; 8]>(row_sums_fixed::<G>(&q, row))
                .iter()
                .sum();
        }
    }

    /// Eight i32 partial sums whose total is `dot4(query, row)`, the query's two
    /// halves of each group in registers.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn row_sums_fixed<const G: usize>(q: &[[__m256i; 2]; G], row: &[u8]) -> __m256i {
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        let mut acc16 = _mm256_setzero_si256();
        for (g, (halves, bytes)) in q.iter().zip(row.chunks_exact(32)).enumerate() {
            let packed: __m256i = bytemuck::pod_read_unaligned(bytes);
            let nib_low = _mm256_and_si256(packed, low);
            let nib_high = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low);
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(nib_low, halves[0]));
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(nib_high, halves[1]));
            // Two groups (8 products a lane) at most in i16.
            if g % 2 == 1 || g + 1 == G {
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(acc16, ones));
                acc16 = _mm256_setzero_si256();
            }
        }
        acc
    }

    /// Any number of groups (the query read from memory).
    #[target_feature(enable = "avx2")]
    fn dots4_any(query: &[i8], codes: &[u8], out: &mut [i32]) {
        let row_bytes = query.len() / 2;
        if row_bytes == 0 {
            return;
        }
        let rows = out.len().min(codes.len() / row_bytes);
        let whole = rows / ROWS * ROWS;
        for (block, o) in codes[..whole * row_bytes]
            .chunks_exact(ROWS * row_bytes)
            .zip(out[..whole].chunks_exact_mut(ROWS))
        {
            let mut sums = [_mm256_setzero_si256(); ROWS];
            for (sum, row) in sums.iter_mut().zip(block.chunks_exact(row_bytes)) {
                *sum = row_sums(query, row);
            }
            o.copy_from_slice(&bytemuck::cast::<__m256i, [i32; 8]>(reduce8(&sums)));
        }
        for (o, row) in out[whole..rows]
            .iter_mut()
            .zip(codes[whole * row_bytes..].chunks_exact(row_bytes))
        {
            *o = bytemuck::cast::<__m256i, [i32; 8]>(row_sums(query, row))
                .iter()
                .sum();
        }
    }

    /// Eight i32 partial sums whose total is `dot4(query, row)`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn row_sums(query: &[i8], row: &[u8]) -> __m256i {
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        // Two groups (128 dimensions) per i16 accumulation: at most 8 products a lane.
        for (q, bytes) in query.chunks(2 * GROUP_DIMS).zip(row.chunks(GROUP_DIMS)) {
            let mut acc16 = _mm256_setzero_si256();
            for (q, bytes) in q.chunks_exact(GROUP_DIMS).zip(bytes.chunks_exact(32)) {
                let packed: __m256i = bytemuck::pod_read_unaligned(bytes);
                let q_low: __m256i =
                    bytemuck::pod_read_unaligned(bytemuck::cast_slice::<i8, u8>(&q[..32]));
                let q_high: __m256i =
                    bytemuck::pod_read_unaligned(bytemuck::cast_slice::<i8, u8>(&q[32..]));
                let nib_low = _mm256_and_si256(packed, low);
                let nib_high = _mm256_and_si256(_mm256_srli_epi16::<4>(packed), low);
                acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(nib_low, q_low));
                acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(nib_high, q_high));
            }
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(acc16, ones));
        }
        acc
    }

    /// Lane i of the result is the sum of the eight lanes of `sums[i]`.
    #[target_feature(enable = "avx2")]
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatched_dot_products_equal_the_portable_ones() {
        for padded in [64, 128, 192, 256, 320, 512] {
            let query: Vec<i8> = (0..padded)
                .map(|i| ((i * 53) % 255) as i32 - 127)
                .map(|x| x as i8)
                .collect();
            // 8 rows per reduction: 43 rows leave a remainder; the extreme nibbles
            // (0 and 15) included.
            for rows in [1, 7, 8, 43] {
                let codes: Vec<u8> = (0..padded / 2 * rows)
                    .map(|i| ((i * 97) % 256) as u8)
                    .collect();
                let mut fast = vec![0; rows];
                let mut plain = vec![0; rows];
                dots4(&query, &codes, &mut fast);
                dots4_portable(&query, &codes, &mut plain);
                assert_eq!(fast, plain, "dim {padded} rows {rows}");
                let r = rows - 1;
                assert_eq!(
                    plain[r],
                    dot4(&query, &codes[r * padded / 2..(r + 1) * padded / 2])
                );
            }
            // The largest sums: every nibble 15 against every query code 127 / -127.
            for q in [127i8, -127] {
                let query = vec![q; padded];
                let codes = vec![0xFFu8; padded / 2 * 9];
                let mut fast = vec![0; 9];
                dots4(&query, &codes, &mut fast);
                assert!(fast.iter().all(|d| *d == i32::from(q) * 15 * padded as i32));
            }
        }
    }
}
