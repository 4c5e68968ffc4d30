//! Affine resampling shared by the letterbox (detector input), the face alignment
//! (embedder input) and the mask crop. Coordinates are continuous: pixel `i` covers
//! `[i, i + 1)`, so its centre is `i + 0.5`.

use image::RgbImage;

use super::axis_aligned::{bilinear_into, shift_into, RowScratch};
use super::box_filter::{box_downsample_into, BoxScratch, Region};
use super::Point;

/// `dst = [a -b; b a] * src + [tx; ty]`: rotation, uniform scale and translation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    pub fn scale_translate(scale: f32, tx: f32, ty: f32) -> Self {
        Similarity {
            a: scale,
            b: 0.0,
            tx,
            ty,
        }
    }

    /// Least-squares fit of `dst ≈ T(src)` (Umeyama's method without reflection).
    /// `None` when the source points coincide.
    pub fn fit(src: &[Point], dst: &[Point]) -> Option<Self> {
        let n = src.len().min(dst.len());
        if n < 2 {
            return None;
        }
        let mean = |pts: &[Point]| {
            let (sx, sy) = pts[..n]
                .iter()
                .fold((0.0, 0.0), |(x, y), p| (x + p.x, y + p.y));
            Point {
                x: sx / n as f32,
                y: sy / n as f32,
            }
        };
        let (ms, md) = (mean(src), mean(dst));
        let (mut num_a, mut num_b, mut den) = (0.0f32, 0.0f32, 0.0f32);
        for (s, d) in src.iter().zip(dst).take(n) {
            let (sx, sy) = (s.x - ms.x, s.y - ms.y);
            let (dx, dy) = (d.x - md.x, d.y - md.y);
            num_a += sx * dx + sy * dy;
            num_b += sx * dy - sy * dx;
            den += sx * sx + sy * sy;
        }
        if den <= f32::EPSILON {
            return None;
        }
        let (a, b) = (num_a / den, num_b / den);
        Some(Similarity {
            a,
            b,
            tx: md.x - (a * ms.x - b * ms.y),
            ty: md.y - (b * ms.x + a * ms.y),
        })
    }

    pub fn apply(&self, p: Point) -> Point {
        Point {
            x: self.a * p.x - self.b * p.y + self.tx,
            y: self.b * p.x + self.a * p.y + self.ty,
        }
    }

    pub fn scale(&self) -> f32 {
        (self.a * self.a + self.b * self.b).sqrt()
    }

    pub fn inverse(&self) -> Option<Self> {
        let det = self.a * self.a + self.b * self.b;
        if det <= f32::EPSILON {
            return None;
        }
        let (a, b) = (self.a / det, -self.b / det);
        Some(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// A borrowed RGB image: `width * height * 3` bytes, rows packed.
#[derive(Clone, Copy, Debug)]
pub(super) struct RgbView<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
}

impl<'a> From<&'a RgbImage> for RgbView<'a> {
    fn from(image: &'a RgbImage) -> Self {
        RgbView {
            data: image.as_raw(),
            width: image.width() as usize,
            height: image.height() as usize,
        }
    }
}

/// A value of a warp's output: RGB bytes as they are, or a model's float input.
pub(super) trait Texel: Copy {
    /// What positions outside the source read as.
    const BLACK: Self;
    fn from_byte(v: u8) -> Self;
    /// `dst[i] = from_byte(src[i])` over the shorter of the two: the warps convert a
    /// row at a time, a contiguous loop that LLVM vectorises.
    fn from_bytes(src: &[u8], dst: &mut [Self]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = Self::from_byte(s);
        }
    }
}

impl Texel for u8 {
    const BLACK: u8 = 0;
    fn from_byte(v: u8) -> u8 {
        v
    }
    fn from_bytes(src: &[u8], dst: &mut [u8]) {
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
    }
}

/// Buffers reused from one warp to the next (one per pipeline session), so that the
/// per-frame stages allocate no image-sized buffers once warmed up (only the small
/// per-row and per-column tap tables).
#[derive(Debug, Default)]
pub(super) struct WarpScratch {
    box_sums: BoxScratch,
    downsampled: Vec<u8>,
    rows: RowScratch,
}

/// Renders `out_w x out_h` pixels whose centres map to source positions through
/// `dst_to_src`; positions outside the source read black. When one output pixel spans
/// more than two source pixels, the needed source region is first box-averaged by an
/// integer factor so that bilinear sampling does not alias.
pub fn warp(src: &RgbImage, dst_to_src: &Similarity, out_w: u32, out_h: u32) -> RgbImage {
    let mut pixels = vec![0u8; out_w as usize * out_h as usize * 3];
    warp_into(
        src,
        dst_to_src,
        out_w as usize,
        out_h as usize,
        &mut WarpScratch::default(),
        &mut pixels,
    );
    // `pixels` has exactly out_w * out_h * 3 bytes by construction.
    RgbImage::from_raw(out_w, out_h, pixels).unwrap_or_else(|| RgbImage::new(out_w, out_h))
}

/// [`warp`] straight into `out` (`out_w * out_h * 3` values: RGB bytes, or a model's
/// float input, see [`Texel`]), with `scratch`'s buffers for the intermediate steps.
pub(super) fn warp_into<T: Texel>(
    src: &RgbImage,
    dst_to_src: &Similarity,
    out_w: usize,
    out_h: usize,
    scratch: &mut WarpScratch,
    out: &mut [T],
) {
    let factor = dst_to_src.scale().floor() as u32;
    if factor >= 2 {
        if let Some(region) = covered_region(src, dst_to_src, out_w, out_h) {
            let (small_w, small_h) = box_downsample_into(
                src.as_raw(),
                src.width() as usize * 3,
                region,
                factor as usize,
                &mut scratch.box_sums,
                &mut scratch.downsampled,
            );
            let small = RgbView {
                data: &scratch.downsampled,
                width: small_w,
                height: small_h,
            };
            // Source position p maps to (p - origin) / factor in the small image.
            let k = factor as f32;
            let adjusted = Similarity {
                a: dst_to_src.a / k,
                b: dst_to_src.b / k,
                tx: (dst_to_src.tx - region.x0 as f32) / k,
                ty: (dst_to_src.ty - region.y0 as f32) / k,
            };
            resample(small, &adjusted, out_w, out_h, &mut scratch.rows, out);
            return;
        }
    }
    resample(src.into(), dst_to_src, out_w, out_h, &mut scratch.rows, out);
}

/// The source pixels that the output's footprint covers, clipped to the source; `None`
/// when the output lies entirely outside it.
fn covered_region(
    src: &RgbImage,
    dst_to_src: &Similarity,
    out_w: usize,
    out_h: usize,
) -> Option<Region> {
    let corners = [
        (0.0, 0.0),
        (out_w as f32, 0.0),
        (0.0, out_h as f32),
        (out_w as f32, out_h as f32),
    ]
    .map(|(x, y)| dst_to_src.apply(Point { x, y }));
    let min = |f: fn(&Point) -> f32| corners.iter().map(f).fold(f32::INFINITY, f32::min);
    let max = |f: fn(&Point) -> f32| corners.iter().map(f).fold(f32::NEG_INFINITY, f32::max);
    let x0 = min(|p| p.x).floor().max(0.0) as usize;
    let y0 = min(|p| p.y).floor().max(0.0) as usize;
    let x1 = (max(|p| p.x).ceil() as i64).clamp(0, i64::from(src.width())) as usize;
    let y1 = (max(|p| p.y).ceil() as i64).clamp(0, i64::from(src.height())) as usize;
    (x1 > x0 && y1 > y0).then_some(Region {
        x0,
        y0,
        width: x1 - x0,
        height: y1 - y0,
    })
}

/// Bilinear sampling of `src` through `m` into `out`, by the cheapest exact route: a
/// whole-pixel shift is a copy (the detector's letterbox of a 640x480 frame after the
/// 5x box filter), a map without rotation is separable, anything else is sampled per
/// pixel.
fn resample<T: Texel>(
    src: RgbView<'_>,
    m: &Similarity,
    out_w: usize,
    out_h: usize,
    rows: &mut RowScratch,
    out: &mut [T],
) {
    if m.b == 0.0 && m.a == 1.0 && m.tx.fract() == 0.0 && m.ty.fract() == 0.0 {
        shift_into(src, m.tx as i64, m.ty as i64, out_w, out_h, out);
    } else if m.b == 0.0 && m.a > 0.0 {
        bilinear_into(src, m, out_w, out_h, rows, out);
    } else {
        sample(src, m, out_w, out_h, out);
    }
}

/// Per-pixel bilinear sampling for any similarity (the face alignment's rotation).
fn sample<T: Texel>(src: RgbView<'_>, m: &Similarity, out_w: usize, out_h: usize, out: &mut [T]) {
    let (w, h) = (src.width as i64, src.height as i64);
    let raw = src.data;
    let stride = src.width * 3;
    debug_assert_eq!(out.len(), out_w * out_h * 3);
    out.fill(T::BLACK);
    // Reads a pixel, black outside the image.
    let fetch = |x: i64, y: i64, c: usize| -> f32 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0.0
        } else {
            f32::from(raw[y as usize * stride + x as usize * 3 + c])
        }
    };
    for (v, row) in out.chunks_exact_mut(out_w * 3).enumerate() {
        // The map is affine: along a row, the source position advances by (a, b).
        let p0 = m.apply(Point {
            x: 0.5,
            y: v as f32 + 0.5,
        });
        for (u, px) in row.chunks_exact_mut(3).enumerate() {
            // Index space: pixel i's centre is at i + 0.5.
            let fx = p0.x + m.a * u as f32 - 0.5;
            let fy = p0.y + m.b * u as f32 - 0.5;
            let (xi, yi) = (fast_floor(fx), fast_floor(fy));
            let (dx, dy) = (fx - xi as f32, fy - yi as f32);
            if xi >= 0 && yi >= 0 && xi + 1 < w && yi + 1 < h {
                // Fast path, all four neighbours inside: 8-bit fixed-point weights.
                let wx = (dx * 256.0) as u32;
                let wy = (dy * 256.0) as u32;
                let i = yi as usize * stride + xi as usize * 3;
                let (r0, r1) = (&raw[i..i + 6], &raw[i + stride..i + stride + 6]);
                for c in 0..3 {
                    let top = u32::from(r0[c]) * (256 - wx) + u32::from(r0[c + 3]) * wx;
                    let bottom = u32::from(r1[c]) * (256 - wx) + u32::from(r1[c + 3]) * wx;
                    px[c] =
                        T::from_byte(((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16) as u8);
                }
            } else if xi + 1 < 0 || yi + 1 < 0 || xi >= w || yi >= h {
                // Entirely outside (letterbox padding): black (already zero).
            } else {
                for (c, out) in px.iter_mut().enumerate() {
                    let top = fetch(xi, yi, c) + (fetch(xi + 1, yi, c) - fetch(xi, yi, c)) * dx;
                    let bottom = fetch(xi, yi + 1, c)
                        + (fetch(xi + 1, yi + 1, c) - fetch(xi, yi + 1, c)) * dx;
                    *out =
                        T::from_byte((top + (bottom - top) * dy).round().clamp(0.0, 255.0) as u8);
                }
            }
        }
    }
}

/// `x.floor() as i64` without a libm call: baseline x86_64 has no rounding instruction,
/// and `f32::floor` there is a function call per use (it dominated the warp's time).
#[inline]
pub(super) fn fast_floor(x: f32) -> i64 {
    let t = x as i64;
    if (t as f32) > x {
        t - 1
    } else {
        t
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn pt(x: f32, y: f32) -> Point {
        Point { x, y }
    }

    #[test]
    fn fit_recovers_a_known_similarity() {
        let t = Similarity {
            a: 0.8,
            b: 0.3,
            tx: 12.0,
            ty: -4.0,
        };
        let src = [pt(10.0, 20.0), pt(50.0, 22.0), pt(30.0, 60.0)];
        let dst: Vec<Point> = src.iter().map(|&p| t.apply(p)).collect();
        let fit = Similarity::fit(&src, &dst).unwrap();
        assert!((fit.a - t.a).abs() < 1e-4 && (fit.b - t.b).abs() < 1e-4);
        assert!((fit.tx - t.tx).abs() < 1e-3 && (fit.ty - t.ty).abs() < 1e-3);
        let back = fit.inverse().unwrap().apply(dst[2]);
        assert!((back.x - 30.0).abs() < 1e-3 && (back.y - 60.0).abs() < 1e-3);
    }

    #[test]
    fn coincident_points_do_not_fit() {
        assert!(
            Similarity::fit(&[pt(1.0, 1.0), pt(1.0, 1.0)], &[pt(0.0, 0.0), pt(2.0, 2.0)]).is_none()
        );
    }

    #[test]
    fn identity_warp_copies_pixels() {
        let mut img = RgbImage::new(8, 6);
        for (i, p) in img.pixels_mut().enumerate() {
            *p = Rgb([i as u8, (i * 3) as u8, 7]);
        }
        let out = warp(&img, &Similarity::scale_translate(1.0, 0.0, 0.0), 8, 6);
        assert_eq!(out, img);
    }

    #[test]
    fn the_axis_aligned_path_matches_the_general_one() {
        let img = RgbImage::from_fn(40, 30, |x, y| {
            Rgb([(x * 6) as u8, (y * 8) as u8, ((x * y) % 256) as u8])
        });
        for m in [
            Similarity::scale_translate(0.37, -3.2, 2.9),
            Similarity::scale_translate(1.7, 5.5, -4.0),
        ] {
            let (mut fast, mut general) = (vec![0u8; 37 * 29 * 3], vec![0u8; 37 * 29 * 3]);
            let mut rows = RowScratch::default();
            bilinear_into((&img).into(), &m, 37, 29, &mut rows, &mut fast);
            // A rotation by a negligible angle takes the general path.
            sample(
                (&img).into(),
                &Similarity { b: 1e-9, ..m },
                37,
                29,
                &mut general,
            );
            for (a, b) in fast.iter().zip(&general) {
                assert!((i16::from(*a) - i16::from(*b)).abs() <= 1, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn downscale_averages_instead_of_aliasing() {
        // A one-pixel checkerboard shrunk 4x must come out mid-grey, not black or white.
        let img = RgbImage::from_fn(64, 64, |x, y| {
            if (x + y) % 2 == 0 {
                Rgb([255, 255, 255])
            } else {
                Rgb([0, 0, 0])
            }
        });
        let out = warp(&img, &Similarity::scale_translate(4.0, 0.0, 0.0), 16, 16);
        for p in out.pixels() {
            assert!((100..=155).contains(&p.0[0]), "{p:?}");
        }
    }
}
