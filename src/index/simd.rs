//! The scan's only `unsafe`: on x86_64, the same portable dot product compiled a second
//! time with AVX2 enabled (256-bit `vpmaddwd`, twice the SSE2 baseline's work per
//! instruction) and chosen at run time when the CPU has it. The release binary must run
//! on any x86_64 (SSE2), so AVX2 cannot be enabled for the whole build; calling a
//! `#[target_feature]` function is `unsafe` because running AVX2 code on a CPU without
//! it is undefined behaviour, and the call below is guarded by the CPU check.
//! aarch64 needs none of this: NEON is part of its baseline and the portable code
//! compiles to it (`tests/bench/index_asm.sh` shows both).

#![allow(unsafe_code)]

use super::quantized::dot;

/// `out[i] = dot(query, row i of codes)` for `out.len()` rows of `query.len()` codes.
pub(crate) fn dots(query: &[i16], codes: &[i8], out: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked on the line above, cached by std), the
        // one condition for running code compiled with `target_feature(enable = "avx2")`.
        // The function itself is safe Rust (slices, bounds-checked).
        return unsafe { dots_avx2(query, codes, out) };
    }
    dots_portable(query, codes, out)
}

#[inline(always)]
fn dots_portable(query: &[i16], codes: &[i8], out: &mut [i32]) {
    if query.is_empty() {
        return;
    }
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(query.len())) {
        *o = dot(query, row);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dots_avx2(query: &[i16], codes: &[i8], out: &mut [i32]) {
    dots_portable(query, codes, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatched_dot_products_equal_the_portable_ones() {
        for dim in [5, 32, 128, 200] {
            let query: Vec<i16> = (0..dim).map(|i| (i as i16 * 53) % 255 - 127).collect();
            let codes: Vec<i8> = (0..dim * 40)
                .map(|i| ((i * 97) % 255) as i16 - 127)
                .map(|x| x as i8)
                .collect();
            let mut fast = vec![0; 40];
            let mut plain = vec![0; 40];
            dots(&query, &codes, &mut fast);
            dots_portable(&query, &codes, &mut plain);
            assert_eq!(fast, plain, "dim {dim}");
            assert_eq!(plain[3], dot(&query, &codes[3 * dim..4 * dim]));
        }
    }
}
