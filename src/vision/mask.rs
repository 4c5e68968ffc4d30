//! Mask classifier: a square crop around the detector box with a margin (tight crops
//! hurt the MobileNetV2 model), scaled to its input size, pixels in -1..1.

use image::RgbImage;

use super::model_input::square_rgb_input;
use super::warp::{warp_into, Similarity, WarpScratch};
use super::{BoundingBox, Error};
use crate::runtime::{ElementType, Model};

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

/// The side of the mask model's square input, checked when the pipeline loads: a
/// float32 input of [1, side, side, 3] (RGB in -1..1) and a first output of two values
/// (mask, no mask), so that an operator's own file is refused at load, not at its first
/// face.
pub fn input_side(model: &Model) -> Result<u32, Error> {
    let input = model.input_info(0)?;
    let refuse = |what: String| {
        Error::Runtime(crate::runtime::Error::Shape {
            model: model.name().to_string(),
            reason: format!(
                "{what}; the mask classifier needs a float32 input [1, side, side, 3] and \
                 an output of 2 values (mask, no mask)"
            ),
        })
    };
    let side = match input.shape.as_slice() {
        [1, h, w, 3] if h == w && *h > 0 => *h as u32,
        shape => return Err(refuse(format!("input shape is {shape:?}"))),
    };
    if input.element_type != ElementType::Float32 {
        return Err(refuse(format!("input is {}", input.element_type)));
    }
    let output = model.output_info(0)?;
    if output.element_count() != 2 {
        return Err(refuse(format!("output shape is {:?}", output.shape)));
    }
    if !matches!(
        output.element_type,
        ElementType::Float32 | ElementType::Int8 | ElementType::UInt8
    ) {
        return Err(refuse(format!("output is {}", output.element_type)));
    }
    Ok(side)
}
