//! The aligned face crop kept with each template, as a small JPEG.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;

use super::Error;

const QUALITY: u8 = 90;

pub(crate) fn encode(chip: &RgbImage) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(8 * 1024);
    JpegEncoder::new_with_quality(Cursor::new(&mut out), QUALITY)
        .encode_image(chip)
        .map_err(|e| Error::Crop(e.to_string()))?;
    Ok(out)
}

pub(crate) fn decode(jpeg: &[u8]) -> Result<RgbImage, Error> {
    image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .map(|i| i.to_rgb8())
        .map_err(|e| Error::Crop(e.to_string()))
}
