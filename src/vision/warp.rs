//! Affine resampling shared by the letterbox (detector input), the face alignment
//! (embedder input) and the mask crop. Coordinates are continuous: pixel `i` covers
//! `[i, i + 1)`, so its centre is `i + 0.5`.

use image::RgbImage;

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

/// Renders `out_w x out_h` pixels whose centres map to source positions through
/// `dst_to_src`; positions outside the source read black. When one output pixel spans
/// more than two source pixels, the needed source region is first box-averaged by an
/// integer factor so that bilinear sampling does not alias.
pub fn warp(src: &RgbImage, dst_to_src: &Similarity, out_w: u32, out_h: u32) -> RgbImage {
    let factor = dst_to_src.scale().floor() as u32;
    if factor >= 2 {
        let corners = [
            (0.0, 0.0),
            (out_w as f32, 0.0),
            (0.0, out_h as f32),
            (out_w as f32, out_h as f32),
        ]
        .map(|(x, y)| dst_to_src.apply(Point { x, y }));
        let x0 = corners
            .iter()
            .map(|p| p.x)
            .fold(f32::INFINITY, f32::min)
            .floor()
            .max(0.0) as u32;
        let y0 = corners
            .iter()
            .map(|p| p.y)
            .fold(f32::INFINITY, f32::min)
            .floor()
            .max(0.0) as u32;
        let x1 = (corners
            .iter()
            .map(|p| p.x)
            .fold(f32::NEG_INFINITY, f32::max)
            .ceil() as i64)
            .clamp(0, i64::from(src.width())) as u32;
        let y1 = (corners
            .iter()
            .map(|p| p.y)
            .fold(f32::NEG_INFINITY, f32::max)
            .ceil() as i64)
            .clamp(0, i64::from(src.height())) as u32;
        if x1 > x0 && y1 > y0 {
            let small = box_downsample(src, x0, y0, x1 - x0, y1 - y0, factor);
            // Source position p maps to (p - origin) / factor in the small image.
            let k = factor as f32;
            let adjusted = Similarity {
                a: dst_to_src.a / k,
                b: dst_to_src.b / k,
                tx: (dst_to_src.tx - x0 as f32) / k,
                ty: (dst_to_src.ty - y0 as f32) / k,
            };
            return sample(&small, &adjusted, out_w, out_h);
        }
    }
    sample(src, dst_to_src, out_w, out_h)
}

fn sample(src: &RgbImage, m: &Similarity, out_w: u32, out_h: u32) -> RgbImage {
    if m.b == 0.0 && m.a > 0.0 {
        return sample_axis_aligned(src, m, out_w, out_h);
    }
    let (w, h) = (src.width() as i64, src.height() as i64);
    let raw = src.as_raw();
    let stride = src.width() as usize * 3;
    let mut out = vec![0u8; out_w as usize * out_h as usize * 3];
    // Reads a pixel, black outside the image.
    let fetch = |x: i64, y: i64, c: usize| -> f32 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0.0
        } else {
            f32::from(raw[y as usize * stride + x as usize * 3 + c])
        }
    };
    for v in 0..out_h {
        // The map is affine: along a row, the source position advances by (a, b).
        let p0 = m.apply(Point {
            x: 0.5,
            y: v as f32 + 0.5,
        });
        let row = &mut out[v as usize * out_w as usize * 3..(v as usize + 1) * out_w as usize * 3];
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
                    px[c] = ((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16) as u8;
                }
            } else if xi + 1 < 0 || yi + 1 < 0 || xi >= w || yi >= h {
                // Entirely outside (letterbox padding): black.
                px.fill(0);
            } else {
                for (c, out) in px.iter_mut().enumerate() {
                    let top = fetch(xi, yi, c) + (fetch(xi + 1, yi, c) - fetch(xi, yi, c)) * dx;
                    let bottom = fetch(xi, yi + 1, c)
                        + (fetch(xi + 1, yi + 1, c) - fetch(xi, yi + 1, c)) * dx;
                    *out = (top + (bottom - top) * dy).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    // The buffer has exactly out_w * out_h * 3 bytes by construction.
    RgbImage::from_raw(out_w, out_h, out).unwrap_or_else(|| RgbImage::new(out_w, out_h))
}

/// Source index and 8-bit weight of the left/top neighbour for each output coordinate of
/// an axis-aligned map `x -> scale * x + offset`.
fn taps(n: u32, scale: f32, offset: f32) -> Vec<(i64, u32)> {
    (0..n)
        .map(|u| {
            let f = scale * (u as f32 + 0.5) + offset - 0.5;
            let i = fast_floor(f);
            (i, ((f - i as f32) * 256.0) as u32)
        })
        .collect()
}

/// `sample` for maps without rotation (the letterbox and the mask crop): the map is
/// separable, so source indices and weights are computed once per column and per row
/// and the inner loop is integer arithmetic only.
fn sample_axis_aligned(src: &RgbImage, m: &Similarity, out_w: u32, out_h: u32) -> RgbImage {
    let (w, h) = (src.width() as i64, src.height() as i64);
    let raw = src.as_raw();
    let stride = src.width() as usize * 3;
    let xs = taps(out_w, m.a, m.tx);
    let ys = taps(out_h, m.a, m.ty);
    let mut out = vec![0u8; out_w as usize * out_h as usize * 3];
    // A pixel of the source, black outside it.
    let at = |x: i64, y: i64, c: usize| -> u32 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0
        } else {
            u32::from(raw[y as usize * stride + x as usize * 3 + c])
        }
    };
    for (v, &(y0, wy)) in ys.iter().enumerate() {
        let row = &mut out[v * out_w as usize * 3..(v + 1) * out_w as usize * 3];
        if y0 + 1 < 0 || y0 >= h {
            continue; // entirely outside: stays black
        }
        let rows_inside = y0 >= 0 && y0 + 1 < h;
        for (px, &(x0, wx)) in row.chunks_exact_mut(3).zip(&xs) {
            if rows_inside && x0 >= 0 && x0 + 1 < w {
                let i = y0 as usize * stride + x0 as usize * 3;
                let (r0, r1) = (&raw[i..i + 6], &raw[i + stride..i + stride + 6]);
                for c in 0..3 {
                    let top = u32::from(r0[c]) * (256 - wx) + u32::from(r0[c + 3]) * wx;
                    let bottom = u32::from(r1[c]) * (256 - wx) + u32::from(r1[c + 3]) * wx;
                    px[c] = ((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16) as u8;
                }
            } else if x0 + 1 >= 0 && x0 < w {
                for (c, out) in px.iter_mut().enumerate() {
                    let top = at(x0, y0, c) * (256 - wx) + at(x0 + 1, y0, c) * wx;
                    let bottom = at(x0, y0 + 1, c) * (256 - wx) + at(x0 + 1, y0 + 1, c) * wx;
                    *out = ((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16) as u8;
                }
            }
        }
    }
    // The buffer has exactly out_w * out_h * 3 bytes by construction.
    RgbImage::from_raw(out_w, out_h, out).unwrap_or_else(|| RgbImage::new(out_w, out_h))
}

/// `x.floor() as i64` without a libm call: baseline x86_64 has no rounding instruction,
/// and `f32::floor` there is a function call per use (it dominated the warp's time).
#[inline]
fn fast_floor(x: f32) -> i64 {
    let t = x as i64;
    if (t as f32) > x {
        t - 1
    } else {
        t
    }
}

/// Averages `factor x factor` blocks of the region (x0, y0, w, h); partial blocks at the
/// right and bottom edges average what they cover.
fn box_downsample(src: &RgbImage, x0: u32, y0: u32, w: u32, h: u32, factor: u32) -> RgbImage {
    let (ow, oh) = (w.div_ceil(factor) as usize, h.div_ceil(factor) as usize);
    let raw = src.as_raw();
    let stride = src.width() as usize * 3;
    let mut out = vec![0u8; ow * oh * 3];
    let mut sums = vec![0u32; ow * 3];
    let mut counts = vec![0u32; ow];
    for oy in 0..oh {
        sums.iter_mut().for_each(|s| *s = 0);
        counts.iter_mut().for_each(|c| *c = 0);
        let y_end = ((oy + 1) * factor as usize).min(h as usize);
        for y in oy * factor as usize..y_end {
            let row = &raw[(y0 as usize + y) * stride + x0 as usize * 3..][..w as usize * 3];
            for (ox, block) in row.chunks(factor as usize * 3).enumerate() {
                for px in block.chunks_exact(3) {
                    sums[ox * 3] += u32::from(px[0]);
                    sums[ox * 3 + 1] += u32::from(px[1]);
                    sums[ox * 3 + 2] += u32::from(px[2]);
                    counts[ox] += 1;
                }
            }
        }
        let dst = &mut out[oy * ow * 3..(oy + 1) * ow * 3];
        for ox in 0..ow {
            let n = counts[ox].max(1);
            for c in 0..3 {
                dst[ox * 3 + c] = ((sums[ox * 3 + c] + n / 2) / n) as u8;
            }
        }
    }
    // The buffer has exactly ow * oh * 3 bytes by construction.
    RgbImage::from_raw(ow as u32, oh as u32, out)
        .unwrap_or_else(|| RgbImage::new(ow as u32, oh as u32))
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
            let fast = sample_axis_aligned(&img, &m, 37, 29);
            // A rotation by a negligible angle takes the general path.
            let general = sample(&img, &Similarity { b: 1e-9, ..m }, 37, 29);
            for (a, b) in fast.as_raw().iter().zip(general.as_raw()) {
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
