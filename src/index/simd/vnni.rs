//! AVX-512 VNNI on 256-bit registers: `vpdpbusd` sums four products straight into i32
//! (no i16 stage: 4 x 15 x 127 per lane and step), and AVX-512VL gives 32 vector
//! registers, so eight rows' accumulators and the query stay in registers.

use std::arch::x86_64::*;

use super::super::quantized::GROUP_DIMS;
use super::{CoarseOut, CoarseScan};

x86_scan!("avx2,avx512f,avx512bw,avx512vl,avx512vnni");

#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn row_sums<const G: usize>(q: &[[__m256i; 2]; G], query: &[i8], row: &[u8]) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    let groups = if G > 0 { G } else { row.len() / 32 };
    for g in 0..groups {
        let [(nib_low, q_low), (nib_high, q_high)] = group_operands::<G>(q, query, row, g);
        acc = _mm256_dpbusd_epi32(acc, nib_low, q_low);
        acc = _mm256_dpbusd_epi32(acc, nib_high, q_high);
    }
    acc
}
