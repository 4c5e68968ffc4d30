//! The aligned face crop kept with each template, as a small JPEG.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;

use super::Error;
use crate::vision::{decode_image, CropPoints, DecodeLimits, Face, Pipeline};

const QUALITY: u8 = 90;

pub fn encode(chip: &RgbImage) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(8 * 1024);
    JpegEncoder::new_with_quality(Cursor::new(&mut out), QUALITY)
        .encode_image(chip)
        .map_err(|e| Error::Crop(e.to_string()))?;
    Ok(out)
}

/// What a stored or received crop may be: this side's crops are at most 512 px a side
/// (src/vision/stored_crop.rs); one from another device's model may be larger, but a
/// header claiming more than 1024 px a side is refused before any pixel is decoded (a
/// small JPEG can declare 20000x20000 and take gigabytes).
const CROP_LIMITS: DecodeLimits = DecodeLimits {
    max_side: 1024,
    max_pixels: 1024 * 1024,
    max_decode_bytes: 32 * 1024 * 1024,
};

pub fn decode(jpeg: &[u8]) -> Result<RgbImage, Error> {
    decode_image(jpeg, &CROP_LIMITS).map_err(|e| Error::Crop(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crop_declaring_a_huge_picture_is_refused_before_decoding() {
        // 1100 px a side: a few KB of JPEG, refused by its header.
        let big = encode(&RgbImage::new(1100, 40)).unwrap();
        let err = decode(&big).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        let ok = encode(&RgbImage::new(220, 220)).unwrap();
        assert_eq!(decode(&ok).unwrap().dimensions(), (220, 220));
        assert!(decode(b"not a jpeg").is_err());
    }
}
