//! AVX2: `vpmaddubsw` into i16, widened every two groups.

use std::arch::x86_64::*;

use super::super::quantized::GROUP_DIMS;
use super::{CoarseOut, CoarseScan};

x86_scan!("avx2");

#[target_feature(enable = "avx2")]
#[inline]
fn row_sums<const G: usize>(q: &[[__m256i; 2]; G], query: &[i8], row: &[u8]) -> __m256i {
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    let mut acc16 = _mm256_setzero_si256();
    let groups = if G > 0 { G } else { row.len() / 32 };
    for g in 0..groups {
        let [(nib_low, q_low), (nib_high, q_high)] = group_operands::<G>(q, query, row, g);
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
