//! Bytes -> RGB image, with the format sniffed from magic bytes, EXIF orientation
//! applied, and limits checked from the header before any pixel buffer is allocated.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

/// Limits that keep a hostile header (a 20000x20000 PNG, a decompression bomb) from
/// allocating memory.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest accepted width or height.
    pub max_side: u32,
    /// Largest accepted width * height.
    pub max_pixels: u64,
    /// Largest allocation the decoder may make, in bytes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // 50 Mpx covers any phone camera; 12k covers panoramas of sane size.
        DecodeLimits {
            max_side: 12_000,
            max_pixels: 50_000_000,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("image is empty")]
    Empty,
    #[error("image type not recognized (JPEG or PNG expected)")]
    UnsupportedFormat,
    #[error("image is broken or truncated: {0}")]
    Corrupt(String),
    #[error(
        "image is too large: {width}x{height} (limit {max_side} per side, {max_pixels} pixels)"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
}

/// Which of the accepted formats `bytes` starts with.
pub fn sniff_format(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else {
        None
    }
}

/// Decodes a JPEG or PNG into upright RGB.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let format = sniff_format(bytes).ok_or(DecodeError::UnsupportedFormat)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(|e| map_error(e, limits))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    let orientation = decoder.orientation().ok();
    let mut image = match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(decode_jpeg(bytes, width, height, limits)?),
        _ => DynamicImage::from_decoder(decoder).map_err(|e| map_error(e, limits))?,
    };
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image.into_rgb8())
}

/// JPEG pixels through zune-jpeg directly: its lenient mode (what the `image` crate
/// uses) fills a truncated file with grey and reports success, which would let a cut
/// upload through as a valid picture. Strict mode refuses that; files that only strict
/// mode dislikes (minor deviations some cameras produce) are accepted leniently when
/// they are complete, i.e. end with the EOI marker.
fn decode_jpeg(
    bytes: &[u8],
    width: u32,
    height: u32,
    limits: &DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let options = |strict: bool| {
        DecoderOptions::default()
            .set_strict_mode(strict)
            .set_max_width(limits.max_side as usize)
            .set_max_height(limits.max_side as usize)
            .jpeg_set_out_colorspace(ColorSpace::RGB)
    };
    let decode = |strict: bool| {
        zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options(strict)).decode()
    };
    let pixels = match decode(true) {
        Ok(pixels) => pixels,
        Err(strict_error) if ends_with_eoi(bytes) => {
            decode(false).map_err(|_| DecodeError::Corrupt(strict_error.to_string()))?
        }
        Err(strict_error) => return Err(DecodeError::Corrupt(strict_error.to_string())),
    };
    RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| DecodeError::Corrupt("decoded JPEG size does not match its header".into()))
}

fn ends_with_eoi(bytes: &[u8]) -> bool {
    // Some encoders pad after EOI with zeros or a newline.
    let end = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xFF, 0xD9])
}

fn check_size(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt("zero width or height".into()));
    }
    if width > limits.max_side
        || height > limits.max_side
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(DecodeError::TooLarge {
            width,
            height,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
}

fn map_error(error: image::ImageError, limits: &DecodeLimits) -> DecodeError {
    match error {
        image::ImageError::Limits(_) => DecodeError::TooLarge {
            width: 0,
            height: 0,
            max_side: limits.max_side,
            max_pixels: limits.max_pixels,
        },
        image::ImageError::Unsupported(e) => DecodeError::Corrupt(e.to_string()),
        other => DecodeError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_header(width: u32, height: u32) -> Vec<u8> {
        // A PNG signature and IHDR chunk claiming the given size, and nothing else.
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&ihdr);
        let crc = crc32(&chunk);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend_from_slice(&13u32.to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn tiny_jpeg() -> Vec<u8> {
        let img = RgbImage::from_pixel(32, 24, image::Rgb([200, 100, 50]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn empty_input_is_empty() {
        assert_eq!(
            decode_image(&[], &DecodeLimits::default()),
            Err(DecodeError::Empty)
        );
    }

    #[test]
    fn text_is_an_unsupported_format() {
        let err = decode_image(b"hello, this is not a picture", &DecodeLimits::default());
        assert_eq!(err, Err(DecodeError::UnsupportedFormat));
    }

    #[test]
    fn gif_is_an_unsupported_format() {
        let err = decode_image(
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
            &DecodeLimits::default(),
        );
        assert_eq!(err, Err(DecodeError::UnsupportedFormat));
    }

    #[test]
    fn huge_png_header_is_refused_before_allocation() {
        let err = decode_image(&png_header(20_000, 20_000), &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn truncated_jpeg_is_corrupt() {
        let jpeg = tiny_jpeg();
        let err = decode_image(&jpeg[..jpeg.len() / 3], &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn jpeg_decodes_to_its_size() {
        let img = decode_image(&tiny_jpeg(), &DecodeLimits::default()).unwrap();
        assert_eq!(img.dimensions(), (32, 24));
    }
}
