//! How sharp an aligned face chip is: the energy of its Laplacian relative to the
//! energy of its grey levels around their mean, over the chip's central part (the face,
//! without the padding). Independent of the chip's contrast; out-of-focus and
//! motion-blurred faces score low, and their embeddings stop telling people apart.

use image::RgbImage;

/// Sharpness of `chip` (an aligned face chip), 0 for a flat or tiny picture.
pub fn chip_sharpness(chip: &RgbImage) -> f32 {
    let (w, h) = chip.dimensions();
    if w < 8 || h < 8 {
        return 0.0;
    }
    let grey = |x: u32, y: u32| {
        let p = chip.get_pixel(x, y).0;
        0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
    };
    // Eyes, nose and mouth: the chip's central half. The padding holds hair and
    // background, whose edges stay sharp when the face is not.
    let (x0, x1, y0, y1) = (w / 4, w - w / 4, h / 4, h - h / 4);
    let mut sum = 0.0f64;
    let mut sum_sq = 0.0f64;
    let mut lap_sq = 0.0f64;
    let mut n = 0.0f64;
    for y in y0..y1 {
        for x in x0..x1 {
            let c = grey(x, y);
            let lap = grey(x - 1, y) + grey(x + 1, y) + grey(x, y - 1) + grey(x, y + 1) - 4.0 * c;
            sum += f64::from(c);
            sum_sq += f64::from(c) * f64::from(c);
            lap_sq += f64::from(lap) * f64::from(lap);
            n += 1.0;
        }
    }
    let variance = sum_sq / n - (sum / n) * (sum / n);
    if variance <= 1.0 {
        return 0.0;
    }
    ((lap_sq / n) / variance) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripes(period: u32) -> RgbImage {
        RgbImage::from_fn(60, 60, |x, _| {
            let v = if (x / period).is_multiple_of(2) {
                40
            } else {
                200
            };
            image::Rgb([v, v, v])
        })
    }

    #[test]
    fn fine_detail_is_sharper_than_the_same_picture_blurred() {
        let sharp = stripes(5);
        let blurred = image::imageops::blur(&sharp, 3.0);
        let (s, b) = (chip_sharpness(&sharp), chip_sharpness(&blurred));
        assert!(s > 3.0 * b, "sharp {s}, blurred {b}");
    }

    #[test]
    fn a_flat_picture_has_no_sharpness() {
        let flat = RgbImage::from_pixel(60, 60, image::Rgb([128, 128, 128]));
        assert_eq!(chip_sharpness(&flat), 0.0);
    }
}
