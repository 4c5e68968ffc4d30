//! Mask classifier: a square crop around the detector box with a margin (tight crops
//! hurt the MobileNetV2 model), scaled to its input size, pixels in -1..1.

use image::RgbImage;

use super::model_input::square_rgb_input;
use super::warp::{warp_into, Similarity, WarpScratch};
use super::{BoundingBox, Error};
use crate::runtime::Model;

/// The map from the mask classifier's `size x size` input to the image: a square of the
/// box's larger side times `1 + margin`, centred on the box.
fn crop_to_image(bbox: &BoundingBox, margin: f32, size: u32) -> Similarity {
    let side = bbox.width.max(bbox.height) * (1.0 + margin);
    let c = bbox.center();
    Similarity::scale_translate(side / size as f32, c.x - side / 2.0, c.y - side / 2.0)
}

/// The probability that the face in `bbox` wears a mask: the crop around it (see
/// [`crop_to_image`]) is rendered straight into reused buffers and the model's input.
pub fn mask_probability(
    model: &mut Model,
    image: &RgbImage,
    bbox: &BoundingBox,
    margin: f32,
    size: u32,
    scratch: &mut WarpScratch,
) -> Result<f32, Error> {
    let to_image = crop_to_image(bbox, margin, size);
    let tensor = square_rgb_input(model.input_f32_mut(0)?, size, "mask")?;
    warp_into(
        image,
        &to_image,
        size as usize,
        size as usize,
        scratch,
        tensor,
    );
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
