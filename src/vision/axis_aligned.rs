//! Resampling for maps without rotation, `x -> a * x + t` on both axes (the detector's
//! letterbox and the mask crop): the map is separable, so each output row blends two
//! source rows once (a contiguous, vectorised pass), and each output pixel then blends
//! two neighbours of that row. Integer arithmetic with 8-bit weights throughout.

use super::warp::{fast_floor, RgbView, Similarity, Texel};

/// Source index and 8-bit weight of the left/top neighbour for each output coordinate of
/// an axis-aligned map `x -> scale * x + offset`.
pub(super) fn taps(n: usize, scale: f32, offset: f32) -> Vec<(i64, u32)> {
    (0..n)
        .map(|u| {
            let f = scale * (u as f32 + 0.5) + offset - 0.5;
            let i = fast_floor(f);
            (i, ((f - i as f32) * 256.0) as u32)
        })
        .collect()
}

/// The row buffers of [`bilinear_into`], reused from call to call.
#[derive(Debug, Default)]
pub(super) struct RowScratch {
    /// Source columns blended vertically for one output row (8-bit weights).
    blended: Vec<u16>,
    /// One output row as bytes, before its conversion to the output type.
    bytes: Vec<u8>,
    horizontal: HorizontalTaps,
}

/// The horizontal half of [`bilinear_into`], the same for every output row: where each
/// output pixel's two neighbours sit in the vertically blended row, and the weights of
/// each output value. A row then gathers the neighbours (whole pixels, three values at
/// once) and blends all its values in one contiguous loop, which LLVM vectorises:
/// blending each pixel as it was read did not, and took about twice as long.
#[derive(Debug, Default)]
struct HorizontalTaps {
    /// Index in the blended row of each output pixel's left neighbour.
    first: Vec<usize>,
    /// Per output value: the left and right neighbours' weights (sum 256).
    left_weight: Vec<u16>,
    right_weight: Vec<u16>,
    /// The current row's gathered neighbours, per output value.
    left: Vec<u16>,
    right: Vec<u16>,
}

impl HorizontalTaps {
    /// Taps `xs` of a blended row that starts at source column `first_col`.
    fn prepare(&mut self, xs: &[(i64, u32)], first_col: i64) {
        self.first.clear();
        self.first
            .extend(xs.iter().map(|&(x0, _)| (x0 - first_col) as usize * 3));
        self.left_weight.clear();
        self.right_weight.clear();
        for &(_, wx) in xs {
            self.left_weight.extend([(256 - wx) as u16; 3]);
            self.right_weight.extend([wx as u16; 3]);
        }
        self.left.resize(xs.len() * 3, 0);
        self.right.resize(xs.len() * 3, 0);
    }

    /// `out[j] = (left * left_weight + right * right_weight + 2^15) >> 16` for every
    /// value of the row, from the vertically blended row `blended`.
    fn blend_row(&mut self, blended: &[u16], out: &mut [u8]) {
        let gathered = self
            .left
            .chunks_exact_mut(3)
            .zip(self.right.chunks_exact_mut(3));
        for ((left, right), &i) in gathered.zip(&self.first) {
            let pair = &blended[i..i + 6];
            left.copy_from_slice(&pair[..3]);
            right.copy_from_slice(&pair[3..]);
        }
        let values = self.left.iter().zip(&self.right);
        let weights = self.left_weight.iter().zip(&self.right_weight);
        for ((o, (&l, &r)), (&wl, &wr)) in out.iter_mut().zip(values).zip(weights) {
            let v = u32::from(l) * u32::from(wl) + u32::from(r) * u32::from(wr);
            *o = ((v + (1 << 15)) >> 16) as u8;
        }
    }
}

/// Bilinear sampling through `m` (`m.b == 0`, `m.a > 0`) into `out` (`out_w x out_h`
/// RGB, `out_w * out_h * 3` values), black outside the source.
///
/// Each output value is `(sum of the four neighbours times their weight products +
/// 2^15) >> 16`, the same integer sum in whatever order it is formed, so the result is
/// exactly that of blending horizontally first.
pub(super) fn bilinear_into<T: Texel>(
    src: RgbView<'_>,
    m: &Similarity,
    out_w: usize,
    out_h: usize,
    rows: &mut RowScratch,
    out: &mut [T],
) {
    let RowScratch {
        blended,
        bytes: row_bytes,
        horizontal,
    } = rows;
    debug_assert_eq!(out.len(), out_w * out_h * 3);
    out.fill(T::BLACK);
    row_bytes.clear();
    row_bytes.resize(out_w * 3, 0);
    let xs = taps(out_w, m.a, m.tx);
    let ys = taps(out_h, m.a, m.ty);
    let (Some(&(first_col, _)), Some(&(last_col, _))) = (xs.first(), xs.last()) else {
        return; // zero-width output
    };
    let (w, h) = (src.width as i64, src.height as i64);
    // `blended` covers source columns first_col..=last_col + 1 (taps increase with u);
    // columns outside the source stay zero, which reads as black.
    let span = (last_col + 2 - first_col) as usize;
    blended.clear();
    blended.resize(span * 3, 0);
    let inside_lo = first_col.max(0);
    let inside_hi = (last_col + 1).min(w - 1);
    if inside_hi < inside_lo {
        return; // every column outside: black
    }
    let inside = (inside_lo - first_col) as usize * 3..(inside_hi + 1 - first_col) as usize * 3;
    let src_cols = inside_lo as usize * 3..(inside_hi + 1) as usize * 3;
    horizontal.prepare(&xs, first_col);
    let stride = src.width * 3;
    let row_at = |y: i64| -> Option<&[u8]> {
        (0..h)
            .contains(&y)
            .then(|| &src.data[y as usize * stride..][src_cols.clone()])
    };
    for (out_row, &(y0, wy)) in out.chunks_exact_mut(out_w * 3).zip(&ys) {
        // wy <= 255 and pixels <= 255: each weighted sum is at most 255 * 256, a u16.
        let (w_top, w_bottom) = ((256 - wy) as u16, wy as u16);
        let target = &mut blended[inside.clone()];
        match (row_at(y0), row_at(y0 + 1)) {
            (None, None) => continue, // entirely above or below: stays black
            (Some(top), Some(bottom)) => {
                for ((b, &t), &d) in target.iter_mut().zip(top).zip(bottom) {
                    *b = u16::from(t) * w_top + u16::from(d) * w_bottom;
                }
            }
            (Some(top), None) => {
                for (b, &t) in target.iter_mut().zip(top) {
                    *b = u16::from(t) * w_top;
                }
            }
            (None, Some(bottom)) => {
                for (b, &d) in target.iter_mut().zip(bottom) {
                    *b = u16::from(d) * w_bottom;
                }
            }
        }
        horizontal.blend_row(blended, row_bytes);
        T::from_bytes(row_bytes, out_row);
    }
}

/// `out` (`out_w x out_h` RGB) gets the source shifted by whole pixels: output pixel
/// `(u, v)` is source pixel `(u + dx, v + dy)`, black outside the source. This is what
/// bilinear sampling gives when the map is `x -> x + d` with integer `d` (all weights
/// zero), without the arithmetic.
pub(super) fn shift_into<T: Texel>(
    src: RgbView<'_>,
    dx: i64,
    dy: i64,
    out_w: usize,
    out_h: usize,
    out: &mut [T],
) {
    debug_assert_eq!(out.len(), out_w * out_h * 3);
    // Output columns u with 0 <= u + dx < width, rows v with 0 <= v + dy < height; the
    // rest is black (filled here, not before, so each value is written once).
    let (u_lo, u_hi) = covered(dx, src.width, out_w);
    let (v_lo, v_hi) = covered(dy, src.height, out_h);
    let row_len = out_w * 3;
    out[..v_lo * row_len].fill(T::BLACK);
    out[v_hi * row_len..].fill(T::BLACK);
    let stride = src.width * 3;
    let x_lo = (u_lo as i64 + dx).max(0) as usize;
    for v in v_lo..v_hi {
        let out_row = &mut out[v * row_len..(v + 1) * row_len];
        out_row[..u_lo * 3].fill(T::BLACK);
        out_row[u_hi * 3..].fill(T::BLACK);
        let y = (v as i64 + dy) as usize;
        let row = &src.data[y * stride..(y + 1) * stride];
        // Empty when no column is covered (x_lo may then lie past the row).
        T::from_bytes(
            row.get(x_lo * 3..).unwrap_or_default(),
            &mut out_row[u_lo * 3..u_hi * 3],
        );
    }
}

/// The output range `lo..hi` along one axis whose positions `i` read source `i + d`
/// inside a source of `len` pixels, for an output of `out_len`.
fn covered(d: i64, len: usize, out_len: usize) -> (usize, usize) {
    let lo = (-d).clamp(0, out_len as i64);
    let hi = (len as i64 - d).clamp(lo, out_len as i64);
    (lo as usize, hi as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Per-pixel bilinear sampling, horizontal first, black outside: the reference.
    fn naive(src: RgbView<'_>, m: &Similarity, out_w: usize, out_h: usize) -> Vec<u8> {
        let (w, h) = (src.width as i64, src.height as i64);
        let at = |x: i64, y: i64, c: usize| -> u32 {
            if x < 0 || y < 0 || x >= w || y >= h {
                0
            } else {
                u32::from(src.data[(y * w + x) as usize * 3 + c])
            }
        };
        let (xs, ys) = (taps(out_w, m.a, m.tx), taps(out_h, m.a, m.ty));
        let mut out = Vec::new();
        for &(y0, wy) in &ys {
            for &(x0, wx) in &xs {
                for c in 0..3 {
                    let top = at(x0, y0, c) * (256 - wx) + at(x0 + 1, y0, c) * wx;
                    let bottom = at(x0, y0 + 1, c) * (256 - wx) + at(x0 + 1, y0 + 1, c) * wx;
                    out.push(((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16) as u8);
                }
            }
        }
        out
    }

    #[test]
    fn bilinear_equals_the_per_pixel_reference_including_edges_and_outside() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (mut rows, mut out) = (RowScratch::default(), Vec::<u8>::new());
        for _ in 0..80 {
            let (w, h) = (rng.gen_range(1..60), rng.gen_range(1..50));
            let data: Vec<u8> = (0..w * h * 3).map(|_| rng.gen()).collect();
            let src = RgbView {
                data: &data,
                width: w,
                height: h,
            };
            // Scales from upsampling to 2x downsampling, offsets reaching outside.
            let m = Similarity::scale_translate(
                rng.gen_range(0.2..2.0),
                rng.gen_range(-20.0..20.0),
                rng.gen_range(-20.0..20.0),
            );
            let (ow, oh) = (rng.gen_range(1..45), rng.gen_range(1..45));
            out.resize(ow * oh * 3, 0u8);
            bilinear_into(src, &m, ow, oh, &mut rows, &mut out);
            assert_eq!(out, naive(src, &m, ow, oh), "{w}x{h} {m:?} -> {ow}x{oh}");
        }
    }

    #[test]
    fn shift_equals_bilinear_with_an_integer_offset() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (mut rows, mut shifted, mut sampled) =
            (RowScratch::default(), Vec::<u8>::new(), Vec::<u8>::new());
        for _ in 0..50 {
            let (w, h) = (rng.gen_range(1..40), rng.gen_range(1..40));
            let data: Vec<u8> = (0..w * h * 3).map(|_| rng.gen()).collect();
            let src = RgbView {
                data: &data,
                width: w,
                height: h,
            };
            let (dx, dy) = (rng.gen_range(-45..45), rng.gen_range(-45..45));
            let (ow, oh) = (rng.gen_range(1..50), rng.gen_range(1..50));
            shifted.resize(ow * oh * 3, 0u8);
            sampled.resize(ow * oh * 3, 0u8);
            shift_into(src, dx, dy, ow, oh, &mut shifted);
            let m = Similarity::scale_translate(1.0, dx as f32, dy as f32);
            bilinear_into(src, &m, ow, oh, &mut rows, &mut sampled);
            assert_eq!(shifted, sampled, "{w}x{h} by ({dx}, {dy}) -> {ow}x{oh}");
        }
    }
}
