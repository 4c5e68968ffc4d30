//! Integer-factor box downsampling of an RGB region: the anti-aliasing prefilter of
//! [`super::warp`]. It reads every pixel of the region (a whole 640x480 frame for the
//! detector's letterbox), so it is written for throughput: rows are summed into
//! per-column accumulators over contiguous slices (which LLVM vectorises), and block
//! sums are divided by a multiply and a shift instead of a division.

use super::block_sums::{self, NarrowDivisor};

/// A rectangle of source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Region {
    pub x0: usize,
    pub y0: usize,
    pub width: usize,
    pub height: usize,
}

/// Accumulator buffers kept between calls so that a frame allocates nothing.
#[derive(Debug, Default)]
pub(super) struct BoxScratch {
    narrow: ColumnBuffers<u16>,
    wide: ColumnBuffers<u32>,
    /// Block totals of a row, for the narrow horizontal pass.
    totals: Vec<u16>,
}

/// The per-row buffers of one column-sum type.
#[derive(Debug, Default)]
struct ColumnBuffers<A> {
    /// Column sums of a row of blocks (and one zero past them).
    sums: Vec<A>,
    /// Block sums of the generic horizontal pass.
    blocks: Vec<A>,
}

/// Columns summed at once in registers: 64 byte lanes are a few vector registers wide.
const COLUMN_CHUNK: usize = 64;

/// Averages `factor x factor` blocks of `region` of the RGB image `src` (rows `stride`
/// bytes apart) into `out`, rounding to nearest; partial blocks at the right and bottom
/// edges average what they cover. Returns the output's width and height. `region` must
/// lie inside the image and `factor` must be at least 1.
pub(super) fn box_downsample_into(
    src: &[u8],
    stride: usize,
    region: Region,
    factor: usize,
    scratch: &mut BoxScratch,
    out: &mut Vec<u8>,
) -> (usize, usize) {
    let factor = factor.max(1);
    let (out_w, out_h) = (
        region.width.div_ceil(factor),
        region.height.div_ceil(factor),
    );
    out.clear();
    out.resize(out_w * out_h * 3, 0);
    // u16 column sums hold a whole block (factor^2 * 255) up to factor 16, twice the
    // vector lanes of u32; larger factors (frames over 2048 px wide) take u32.
    if factor * factor * 255 <= usize::from(u16::MAX) {
        let narrow = &mut scratch.narrow;
        downsample_with(
            src,
            stride,
            region,
            factor,
            narrow,
            &mut scratch.totals,
            out,
        );
    } else {
        let wide = &mut scratch.wide;
        downsample_with(src, stride, region, factor, wide, &mut scratch.totals, out);
    }
    (out_w, out_h)
}

/// A column-sum type and its horizontal pass for blocks of a constant width `F`.
trait ColumnSum: Copy + Default + From<u8> + std::ops::AddAssign + Into<u32> {
    /// Averages blocks of `F` columns of `sums` into `dst` (`dst.len() / 3` blocks);
    /// `sums` holds at least one value past the blocks.
    fn average_blocks<const F: usize>(sums: &[Self], n: u32, dst: &mut [u8], totals: &mut Vec<u16>);
}

impl ColumnSum for u16 {
    fn average_blocks<const F: usize>(sums: &[u16], n: u32, dst: &mut [u8], totals: &mut Vec<u16>) {
        match NarrowDivisor::new(n) {
            Some(divisor) => block_sums::average_blocks::<F>(sums, divisor, dst, totals),
            None => average_blocks::<u16, F>(sums, RoundingDivisor::new(n), dst),
        }
    }
}

impl ColumnSum for u32 {
    fn average_blocks<const F: usize>(sums: &[u32], n: u32, dst: &mut [u8], _: &mut Vec<u16>) {
        average_blocks::<u32, F>(sums, RoundingDivisor::new(n), dst);
    }
}

fn downsample_with<A: ColumnSum>(
    src: &[u8],
    stride: usize,
    region: Region,
    factor: usize,
    buffers: &mut ColumnBuffers<A>,
    totals: &mut Vec<u16>,
    out: &mut [u8],
) {
    let ColumnBuffers {
        sums,
        blocks: block_sums,
    } = buffers;
    let row_len = region.width * 3;
    let out_row_len = region.width.div_ceil(factor) * 3;
    // One value past the row, always zero: the wide horizontal loads read it.
    sums.clear();
    sums.resize(row_len + 1, A::default());
    let rows_of = |y: usize| {
        let start = (region.y0 + y) * stride + region.x0 * 3;
        &src[start..start + row_len]
    };
    for (oy, dst) in out.chunks_exact_mut(out_row_len).enumerate() {
        let first = oy * factor;
        let rows = factor.min(region.height - first);
        // Vertical: column sums of the block's rows, a chunk of columns at a time so the
        // partial sums stay in registers across rows (constant-length loops vectorise).
        let mut chunks = sums[..row_len].chunks_exact_mut(COLUMN_CHUNK);
        let mut start = 0;
        for chunk in &mut chunks {
            let mut acc = [A::default(); COLUMN_CHUNK];
            for y in first..first + rows {
                let row = &rows_of(y)[start..start + COLUMN_CHUNK];
                for (a, &p) in acc.iter_mut().zip(row) {
                    *a += A::from(p);
                }
            }
            chunk.copy_from_slice(&acc);
            start += COLUMN_CHUNK;
        }
        let tail = chunks.into_remainder();
        tail.fill(A::default());
        for y in first..first + rows {
            for (a, &p) in tail.iter_mut().zip(&rows_of(y)[start..]) {
                *a += A::from(p);
            }
        }
        // Horizontal: the sum of each block's columns per channel, then the division.
        let full_blocks = region.width / factor;
        let covered = full_blocks * factor * 3;
        let n = (rows * factor) as u32;
        let divisor = RoundingDivisor::new(n);
        // The blocks and the values after them (at least the zero past the row).
        let (sums_full, dst_full) = (&sums[..], &mut dst[..full_blocks * 3]);
        match factor {
            // The common factors with a constant block width, so the block loop unrolls
            // (640 px frames into 128 px: 5; with the zoom-out retry: 8).
            2 => A::average_blocks::<2>(sums_full, n, dst_full, totals),
            3 => A::average_blocks::<3>(sums_full, n, dst_full, totals),
            4 => A::average_blocks::<4>(sums_full, n, dst_full, totals),
            5 => A::average_blocks::<5>(sums_full, n, dst_full, totals),
            6 => A::average_blocks::<6>(sums_full, n, dst_full, totals),
            8 => A::average_blocks::<8>(sums_full, n, dst_full, totals),
            _ => {
                // `block_sums[i]` = sum of `sums[i + 3k]` for k < factor, formed as
                // `factor` shifted slice additions (vectorised); the block of output
                // pixel `ox`, channel `c` is then `block_sums[ox * 3 * factor + c]`.
                if full_blocks > 0 {
                    let reach = covered - 3 * (factor - 1);
                    block_sums.clear();
                    block_sums.extend_from_slice(&sums[..reach]);
                    for k in 1..factor {
                        for (b, &s) in block_sums.iter_mut().zip(&sums[3 * k..3 * k + reach]) {
                            *b += s;
                        }
                    }
                    for (px, block) in dst_full
                        .chunks_exact_mut(3)
                        .zip(block_sums.chunks(3 * factor))
                    {
                        for (p, &total) in px.iter_mut().zip(block) {
                            *p = divisor.divide(total.into());
                        }
                    }
                }
            }
        }
        let tail = &sums[covered..row_len];
        if !tail.is_empty() {
            let mut total = [0u32; 3];
            for column in tail.chunks_exact(3) {
                for (t, &v) in total.iter_mut().zip(column) {
                    *t += v.into();
                }
            }
            let divisor = RoundingDivisor::new((rows * tail.len() / 3) as u32);
            for (p, t) in dst[full_blocks * 3..].iter_mut().zip(total) {
                *p = divisor.divide(t);
            }
        }
    }
}

/// Averages blocks of `F` columns of the column sums `sums` (RGB interleaved, a whole
/// number of blocks) into `dst`, one pixel per block.
fn average_blocks<A, const F: usize>(sums: &[A], divisor: RoundingDivisor, dst: &mut [u8])
where
    A: Copy + Into<u32>,
{
    for (px, block) in dst.chunks_exact_mut(3).zip(sums.chunks_exact(3 * F)) {
        let mut total = [0u32; 3];
        for column in block.chunks_exact(3) {
            total[0] += column[0].into();
            total[1] += column[1].into();
            total[2] += column[2].into();
        }
        for (p, t) in px.iter_mut().zip(total) {
            *p = divisor.divide(t);
        }
    }
}

/// `(x + n / 2) / n` for a fixed `n`, as a multiply and a shift: with
/// `m = ceil(2^40 / n)` the product `x * m >> 40` equals `x / n` exactly for every
/// `x < 2^24` and `n <= 2^16` (the error `x * (m * n - 2^40) / 2^40` stays under `1 / n`).
#[derive(Clone, Copy, Debug)]
struct RoundingDivisor {
    half: u32,
    multiplier: u64,
}

impl RoundingDivisor {
    const SHIFT: u32 = 40;

    fn new(n: u32) -> Self {
        let n = n.max(1);
        RoundingDivisor {
            half: n / 2,
            multiplier: (1u64 << Self::SHIFT).div_ceil(u64::from(n)),
        }
    }

    /// The rounded quotient of a block sum: `x <= 255 n`, so the quotient fits a u8.
    fn divide(&self, x: u32) -> u8 {
        ((u64::from(x + self.half) * self.multiplier) >> Self::SHIFT) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The obvious per-pixel implementation, to check the fast one against.
    fn naive(src: &[u8], stride: usize, r: Region, factor: usize) -> Vec<u8> {
        let (ow, oh) = (r.width.div_ceil(factor), r.height.div_ceil(factor));
        let mut out = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..3 {
                    let (mut sum, mut n) = (0u32, 0u32);
                    for y in oy * factor..((oy + 1) * factor).min(r.height) {
                        for x in ox * factor..((ox + 1) * factor).min(r.width) {
                            sum += u32::from(src[(r.y0 + y) * stride + (r.x0 + x) * 3 + c]);
                            n += 1;
                        }
                    }
                    out.push(((sum + n / 2) / n) as u8);
                }
            }
        }
        out
    }

    fn random_image(rng: &mut impl Rng, w: usize, h: usize) -> Vec<u8> {
        (0..w * h * 3).map(|_| rng.gen()).collect()
    }

    #[test]
    fn matches_the_naive_average_on_random_images_of_odd_sizes_and_regions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut scratch = BoxScratch::default();
        let mut out = Vec::new();
        for _ in 0..60 {
            let (w, h) = (rng.gen_range(1..150), rng.gen_range(1..90));
            let src = random_image(&mut rng, w, h);
            let x0 = rng.gen_range(0..w);
            let y0 = rng.gen_range(0..h);
            let region = Region {
                x0,
                y0,
                width: rng.gen_range(1..=w - x0),
                height: rng.gen_range(1..=h - y0),
            };
            let factor = rng.gen_range(1..9);
            let (ow, oh) = box_downsample_into(&src, w * 3, region, factor, &mut scratch, &mut out);
            assert_eq!(out.len(), ow * oh * 3);
            assert_eq!(
                out,
                naive(&src, w * 3, region, factor),
                "{region:?} x{factor}"
            );
        }
    }

    #[test]
    fn large_factors_take_wide_accumulators_without_overflow() {
        // 17 x 17 x 255 exceeds u16; an all-white block must stay white.
        let (w, h) = (40, 35);
        let src = vec![255u8; w * h * 3];
        let region = Region {
            x0: 0,
            y0: 0,
            width: w,
            height: h,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for (i, src) in [src, random_image(&mut rng, w, h)].iter().enumerate() {
            let mut out = Vec::new();
            let dims =
                box_downsample_into(src, w * 3, region, 17, &mut BoxScratch::default(), &mut out);
            assert_eq!(dims, (3, 3));
            if i == 0 {
                assert!(out.iter().all(|&v| v == 255));
            }
            assert_eq!(out, naive(src, w * 3, region, 17));
        }
    }

    #[test]
    fn rounding_divisor_equals_integer_division_for_every_block_size_up_to_16x16() {
        for n in 1..=256u32 {
            let d = RoundingDivisor::new(n);
            for x in 0..=n * 255 {
                assert_eq!(u32::from(d.divide(x)), (x + n / 2) / n, "{x} / {n}");
            }
        }
    }
}
