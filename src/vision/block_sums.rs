//! The horizontal half of the box filter for u16 column sums (every factor up to 16,
//! so the detector's 640 -> 128 letterbox): a whole row of block averages with a few
//! wide operations instead of one scalar addition per column and channel.
//!
//! Block totals are formed four u16 lanes at a time in a u64 (the RGB of one pixel and
//! one lane of its neighbour, which is ignored): a block's total never exceeds a u16
//! (the narrow sums are chosen only when `factor^2 * 255` fits), so the lanes never
//! carry into each other. The rounded division then runs over the row's totals in one
//! contiguous loop as a 16-bit multiply-high and a shift, which LLVM vectorises.

/// `(x + n / 2) / n` for u16 `x <= 255 n`, as `mulhi(x + n / 2, m) >> s`: exact when
/// `m * n = 2^(16 + s) + e` with `x_max * e < 2^(16 + s)` (the error term then stays
/// under `1 / n`). [`NarrowDivisor::new`] checks that bound and refuses the divisors it
/// does not hold for.
#[derive(Clone, Copy, Debug)]
pub(super) struct NarrowDivisor {
    half: u16,
    multiplier: u16,
    shift: u32,
}

impl NarrowDivisor {
    /// `None` when `n` is 0 or 1, larger than 256, or the bound above fails.
    pub(super) fn new(n: u32) -> Option<Self> {
        if !(2..=256).contains(&n) {
            return None;
        }
        // The largest `s` with `m = ceil(2^(16 + s) / n)` still below 2^16.
        let shift = if n.is_power_of_two() {
            n.trailing_zeros() - 1
        } else {
            31 - n.leading_zeros()
        };
        let scale = 1u64 << (16 + shift);
        let multiplier = scale.div_ceil(u64::from(n));
        let excess = multiplier * u64::from(n) - scale;
        let x_max = 255 * u64::from(n) + u64::from(n / 2);
        (multiplier <= u64::from(u16::MAX) && x_max * excess < scale).then_some(NarrowDivisor {
            half: (n / 2) as u16,
            multiplier: multiplier as u16,
            shift,
        })
    }

    /// The rounded quotient of a block total `x <= 255 n` (so `x + n / 2` fits a u16).
    fn divide(&self, x: u16) -> u8 {
        // Written as a 16-bit multiply-high so that the row loop maps onto pmulhuw/umull.
        let high = ((u32::from(x + self.half) * u32::from(self.multiplier)) >> 16) as u16;
        (high >> self.shift) as u8
    }
}

/// Averages blocks of `F` columns of the RGB column sums `sums` into `dst`, one pixel
/// per block, `dst.len() / 3` blocks. `sums` must hold at least one value past the
/// last block (the wide loads read four lanes where a pixel has three); `totals` is a
/// reused buffer.
pub(super) fn average_blocks<const F: usize>(
    sums: &[u16],
    divisor: NarrowDivisor,
    dst: &mut [u8],
    totals: &mut Vec<u16>,
) {
    let pixels = dst.len() / 3;
    totals.clear();
    totals.resize(pixels * 3, 0);
    // Little-endian bytes: the u64 read at byte 2j holds sums[j..j + 4] in its lanes.
    // Each block's window reaches one value (2 bytes) past the block; with its length
    // known, the reads below need no bounds checks once the column loop unrolls.
    let bytes: &[u8] = bytemuck::cast_slice(sums);
    let windows = bytes.windows(F * 6 + 2).step_by(F * 6);
    for (total, window) in totals.chunks_exact_mut(3).zip(windows) {
        let mut acc = 0u64;
        for column in 0..F {
            let lanes = <[u8; 8]>::try_from(&window[column * 6..column * 6 + 8]);
            acc += lanes.map_or(0, u64::from_le_bytes);
        }
        total[0] = acc as u16;
        total[1] = (acc >> 16) as u16;
        total[2] = (acc >> 32) as u16;
    }
    for (d, &t) in dst.iter_mut().zip(totals.iter()) {
        *d = divisor.divide(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_narrow_divisor_rounds_exactly_for_every_sum_it_accepts() {
        let mut accepted = 0;
        for n in 0..=300u32 {
            let Some(d) = NarrowDivisor::new(n) else {
                continue;
            };
            accepted += 1;
            for x in 0..=255 * n {
                assert_eq!(u32::from(d.divide(x as u16)), (x + n / 2) / n, "{x} / {n}");
            }
        }
        // Every block of the factors that matter (2x2 .. 8x8, edge blocks included).
        for n in 2..=64 {
            assert!(NarrowDivisor::new(n).is_some(), "{n}");
        }
        assert!(accepted > 150, "{accepted}");
    }

    fn scalar(sums: &[u16], factor: usize, pixels: usize) -> Vec<u8> {
        let n = (factor * factor) as u32;
        (0..pixels * 3)
            .map(|i| {
                let (k, c) = (i / 3, i % 3);
                let total: u32 = (0..factor)
                    .map(|j| u32::from(sums[(k * factor + j) * 3 + c]))
                    .sum();
                ((total + n / 2) / n) as u8
            })
            .collect()
    }

    fn check<const F: usize>(rng: &mut impl Rng) {
        let pixels = rng.gen_range(1..40);
        // Column sums of F rows (at most F * 255) and the one value past the blocks.
        let sums: Vec<u16> = (0..pixels * F * 3 + 1)
            .map(|_| rng.gen_range(0..=(F * 255) as u16))
            .collect();
        let divisor = NarrowDivisor::new((F * F) as u32).unwrap();
        let (mut dst, mut totals) = (vec![0u8; pixels * 3], Vec::new());
        average_blocks::<F>(&sums, divisor, &mut dst, &mut totals);
        assert_eq!(dst, scalar(&sums, F, pixels), "factor {F}, {pixels} px");
    }

    #[test]
    fn wide_block_totals_equal_the_per_column_sums_including_full_scale() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        for _ in 0..40 {
            check::<2>(&mut rng);
            check::<3>(&mut rng);
            check::<5>(&mut rng);
            check::<8>(&mut rng);
        }
        // All white: the largest totals (8 * 8 * 255 per channel) without carries.
        let sums = vec![8 * 255u16; 4 * 8 * 3 + 1];
        let (mut dst, mut totals) = (vec![0u8; 12], Vec::new());
        average_blocks::<8>(
            &sums,
            NarrowDivisor::new(64).unwrap(),
            &mut dst,
            &mut totals,
        );
        assert!(dst.iter().all(|&v| v == 255), "{dst:?}");
    }
}
