//! Mask classifier: a square crop around the detector box with a margin (tight crops
//! hurt the MobileNetV2 model), scaled to its input size, pixels in -1..1.

use image::RgbImage;

use super::warp::{warp, Similarity};
use super::{BoundingBox, Error};
use crate::runtime::Model;

/// The crop that the mask classifier sees: the box's larger side times `1 + margin`,
/// centred on the box.
pub fn mask_crop(image: &RgbImage, bbox: &BoundingBox, margin: f32, size: u32) -> RgbImage {
    let side = bbox.width.max(bbox.height) * (1.0 + margin);
    let c = bbox.center();
    let scale = side / size as f32;
    let to_image = Similarity::scale_translate(scale, c.x - side / 2.0, c.y - side / 2.0);
    warp(image, &to_image, size, size)
}

/// The probability that `crop` shows a masked face.
pub fn mask_probability(model: &mut Model, crop: &RgbImage) -> Result<f32, Error> {
    let input = model.input_f32_mut(0)?;
    if input.len() != crop.as_raw().len() {
        return Err(Error::ModelOutput(format!(
            "mask input holds {} values, crop has {}",
            input.len(),
            crop.as_raw().len()
        )));
    }
    for (d, &s) in input.iter_mut().zip(crop.as_raw()) {
        *d = f32::from(s) / 127.5 - 1.0;
    }
    model.run()?;
    let out = model.output_dequantized(0)?;
    match out.as_slice() {
        // Softmax over [mask, without_mask].
        [mask, without] if (mask + without) > 0.0 => Ok(mask / (mask + without)),
        _ => Err(Error::ModelOutput(format!("mask output {out:?}"))),
    }
}

/// The side of the mask model's square input.
pub fn input_side(model: &Model) -> Result<u32, Error> {
    let shape = &model.input_info(0)?.shape;
    match shape.as_slice() {
        [1, h, w, 3] if h == w && *h > 0 => Ok(*h as u32),
        _ => Err(Error::ModelOutput(format!("mask input shape {shape:?}"))),
    }
}
