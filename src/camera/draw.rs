//! The live frame for the kiosk screen: face boxes drawn on a copy, encoded as JPEG.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};

use super::recognizer::{Label, LabelledBox};

const QUALITY: u8 = 80;
const THICKNESS: i64 = 3;

fn colour(label: &Label) -> Rgb<u8> {
    match label {
        Label::Pending => Rgb([255, 200, 0]),
        Label::Known(_) => Rgb([0, 200, 60]),
        Label::Unknown => Rgb([230, 30, 30]),
    }
}

/// Draws rectangle outlines (clipped to the image).
pub fn draw_boxes(image: &mut RgbImage, boxes: &[LabelledBox]) {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    for b in boxes {
        let c = colour(&b.label);
        let x0 = b.bbox.x.round() as i64;
        let y0 = b.bbox.y.round() as i64;
        let x1 = (b.bbox.x + b.bbox.width).round() as i64;
        let y1 = (b.bbox.y + b.bbox.height).round() as i64;
        for y in y0..=y1 {
            for x in x0..=x1 {
                let edge = x - x0 < THICKNESS
                    || x1 - x < THICKNESS
                    || y - y0 < THICKNESS
                    || y1 - y < THICKNESS;
                if edge && (0..w).contains(&x) && (0..h).contains(&y) {
                    image.put_pixel(x as u32, y as u32, c);
                }
            }
        }
    }
}

pub fn annotated_jpeg(
    image: &RgbImage,
    boxes: &[LabelledBox],
) -> Result<Vec<u8>, image::ImageError> {
    let mut copy = image.clone();
    draw_boxes(&mut copy, boxes);
    let mut out = Vec::with_capacity(64 * 1024);
    JpegEncoder::new_with_quality(Cursor::new(&mut out), QUALITY).encode_image(&copy)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::BoundingBox;

    #[test]
    fn boxes_are_outlined_in_the_colour_of_their_label_and_clipped() {
        let mut image = RgbImage::new(100, 80);
        let boxes = [
            LabelledBox {
                bbox: BoundingBox {
                    x: 10.0,
                    y: 10.0,
                    width: 40.0,
                    height: 40.0,
                },
                label: Label::Known("Amy".into()),
            },
            LabelledBox {
                bbox: BoundingBox {
                    x: 80.0,
                    y: 60.0,
                    width: 50.0,
                    height: 50.0,
                },
                label: Label::Unknown,
            },
        ];
        draw_boxes(&mut image, &boxes);
        assert_eq!(image.get_pixel(10, 30), &Rgb([0, 200, 60]));
        assert_eq!(image.get_pixel(30, 30), &Rgb([0, 0, 0]), "inside stays");
        assert_eq!(image.get_pixel(99, 60), &Rgb([230, 30, 30]));
    }
}
