//! The aligned face crop kept with each template, as a small JPEG.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;

use super::Error;
use crate::vision::{CropPoints, Face, Pipeline};

const QUALITY: u8 = 90;

pub fn encode(chip: &RgbImage) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(8 * 1024);
    JpegEncoder::new_with_quality(Cursor::new(&mut out), QUALITY)
        .encode_image(chip)
        .map_err(|e| Error::Crop(e.to_string()))?;
    Ok(out)
}

pub fn decode(jpeg: &[u8]) -> Result<RgbImage, Error> {
    image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .map(|i| i.to_rgb8())
        .map_err(|e| Error::Crop(e.to_string()))
}

/// The crop to store for `face` as JPEG, and where it shows the face: its stored crop
/// when the pipeline cut one (`Pipeline::analyze_bytes_to_store`), else its aligned chip,
/// whose points are `chip_points` (`Pipeline::crop_points`).
pub fn of_face(face: &Face, chip_points: CropPoints) -> Result<(Vec<u8>, CropPoints), Error> {
    match &face.stored_crop {
        Some(c) => Ok((encode(&c.image)?, c.points)),
        None => Ok((encode(&face.aligned)?, chip_points)),
    }
}

/// The face points to read a stored crop with: those recorded with it; for a crop
/// stored before points were recorded, by the model in use now (`fingerprint`, the
/// template's or operation's, is this pipeline's), this model's own chip points;
/// otherwise none, and the vision layer reads the crop as the chip every shipped
/// embedder cut (`vision::Pipeline::embed_stored_crop`).
pub(crate) fn points_to_read(
    pipeline: &Pipeline,
    fingerprint: &str,
    recorded: Option<[[f32; 2]; 3]>,
) -> Result<Option<CropPoints>, crate::vision::Error> {
    match recorded {
        Some(points) => CropPoints::checked(points).map(Some),
        None if fingerprint == pipeline.fingerprint() => Ok(Some(pipeline.crop_points())),
        None => Ok(None),
    }
}
