//! Bytes -> RGB image, with the format sniffed from magic bytes, EXIF orientation
//! applied, and limits checked from the header before any pixel buffer is allocated.
//!
//! Two limits: the picture's size (`max_side`, `max_pixels`) and the memory its
//! decoding needs (`max_decode_bytes`): the decoder's own output (16-bit samples and
//! palette expansion included), the RGB copy, a rotated copy for EXIF orientation and,
//! for progressive JPEG, the coefficient planes. A 500 KB PNG of 16-bit RGBA zeros or a
//! 1 KB JPEG header claiming 11000x4500 is refused from its header, before any of that
//! memory is taken. Truncated data is refused whatever it ends with (see `decode_jpeg`
//! and `check_png_chunks`).

use std::io::Cursor;

use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

/// Limits that keep a hostile header (a 20000x20000 PNG, a decompression bomb) from
/// allocating memory.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest accepted width or height.
    pub max_side: u32,
    /// Largest accepted width * height.
    pub max_pixels: u64,
    /// Largest memory one decoding may take, in bytes (see [`decode_cost`]); also the
    /// largest single allocation the `image` decoders may make.
    pub max_decode_bytes: u64,
}

/// The default `max_decode_bytes`: 128 MiB, room for a 12 Mpx progressive JPEG
/// (36 MB of RGB and 72 MB of coefficients) or a 40 Mpx baseline one.
pub const DEFAULT_MAX_DECODE_BYTES: u64 = 128 * 1024 * 1024;

impl Default for DecodeLimits {
    fn default() -> Self {
        // 50 Mpx covers any phone camera; 12k covers panoramas of sane size.
        DecodeLimits {
            max_side: 12_000,
            max_pixels: 50_000_000,
            max_decode_bytes: DEFAULT_MAX_DECODE_BYTES,
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
    #[error("image would take {needed} bytes to decode (limit {limit})")]
    TooCostly { needed: u64, limit: u64 },
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
    let header = match format {
        ImageFormat::Jpeg => Some(jpeg_header(bytes)?),
        _ => {
            check_png_chunks(bytes)?;
            None
        }
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(limits.max_decode_bytes);
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder().map_err(|e| map_error(e, limits))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    let orientation = decoder.orientation().ok();
    let rotates = orientation.is_some_and(|o| o != image::metadata::Orientation::NoTransforms);
    let cost = decode_cost(
        width,
        height,
        decoder.total_bytes(),
        decoder.color_type(),
        header,
        rotates,
    );
    if cost > limits.max_decode_bytes {
        return Err(DecodeError::TooCostly {
            needed: cost,
            limit: limits.max_decode_bytes,
        });
    }
    let image = match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, width, height, limits)?,
        _ => DynamicImage::from_decoder(decoder)
            .map_err(|e| map_error(e, limits))?
            .into_rgb8(),
    };
    let mut image = DynamicImage::ImageRgb8(image);
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image.into_rgb8())
}

/// What a JPEG's frame header says about the memory its decoding takes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct JpegHeader {
    progressive: bool,
    components: u8,
}

/// The bytes one decoding takes at its peak, from the header alone: the decoder's
/// output (`decoded_bytes`: 16-bit samples and palette expansion are counted there),
/// the RGB copy unless the output already is RGB8, a rotated copy for EXIF
/// orientation, and for progressive JPEG the coefficient planes (2 bytes per sample
/// per component, counted at full resolution as chroma subsampling is not known here).
fn decode_cost(
    width: u32,
    height: u32,
    decoded_bytes: u64,
    color: ColorType,
    jpeg: Option<JpegHeader>,
    rotates: bool,
) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    let rgb = pixels.saturating_mul(3);
    let mut cost = decoded_bytes;
    if color != ColorType::Rgb8 {
        cost = cost.saturating_add(rgb);
    }
    if rotates {
        cost = cost.saturating_add(rgb);
    }
    if let Some(h) = jpeg.filter(|h| h.progressive) {
        cost = cost.saturating_add(pixels.saturating_mul(2 * u64::from(h.components)));
    }
    cost
}

/// Walks a JPEG's marker segments up to the first scan: each must be complete, and a
/// frame header (SOFn) must come before it. Reads lengths only; allocates nothing.
fn jpeg_header(bytes: &[u8]) -> Result<JpegHeader, DecodeError> {
    let corrupt = |why: &str| DecodeError::Corrupt(why.to_string());
    let mut at = 2;
    let mut frame = None;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(corrupt("JPEG ends before its first scan"));
        };
        let length = match (bytes.get(at + 2), bytes.get(at + 3)) {
            (Some(&hi), Some(&lo)) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(corrupt("JPEG segment cut short")),
        };
        if length < 2 || at + 2 + length > bytes.len() {
            return Err(corrupt("JPEG segment cut short"));
        }
        match marker {
            // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let components = bytes.get(at + 9).copied().unwrap_or(0);
                frame = Some(JpegHeader {
                    progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
                    components,
                });
            }
            0xDA => return frame.ok_or_else(|| corrupt("JPEG scan before its frame header")),
            0xD9 => return Err(corrupt("JPEG ends before its first scan")),
            _ => {}
        }
        at += 2 + length;
    }
}

/// A PNG must be a complete chain of chunks ending with IEND and nothing after it
/// but padding: the `image` decoder stops after the pixel data and would accept a file
/// missing its last bytes.
fn check_png_chunks(bytes: &[u8]) -> Result<(), DecodeError> {
    let corrupt = |why: &str| DecodeError::Corrupt(why.to_string());
    let mut at = 8;
    loop {
        let Some(head) = bytes.get(at..at + 8) else {
            return Err(corrupt("PNG cut short: no IEND chunk"));
        };
        let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let end = at
            .checked_add(12)
            .and_then(|n| n.checked_add(length))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| corrupt("PNG chunk cut short"))?;
        if &head[4..8] == b"IEND" {
            let crc = u32::from_be_bytes([
                bytes[end - 4],
                bytes[end - 3],
                bytes[end - 2],
                bytes[end - 1],
            ]);
            if crc != crc32fast::hash(&bytes[at + 4..end - 4]) {
                return Err(corrupt("PNG IEND chunk damaged"));
            }
            return Ok(());
        }
        at = end;
    }
}

/// JPEG pixels through zune-jpeg directly, in strict mode: its lenient mode (what the
/// `image` crate uses) fills a truncated file with grey and reports success.
///
/// Strict mode alone still accepts a scan cut short when the file ends with an EOI
/// marker (the decoder reads zero bits after a marker), so the scan is decoded with
/// 256 one bits put before that marker: a complete scan never reaches them, a cut one
/// does, and a run of ones is no Huffman code (JPEG reserves the all-ones codes), so
/// the decoder fails. A file without its EOI marker is truncated by definition.
fn decode_jpeg(
    bytes: &[u8],
    width: u32,
    height: u32,
    limits: &DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let guarded = with_ones_before_eoi(bytes)?;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(limits.max_side as usize)
        .set_max_height(limits.max_side as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let pixels = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&guarded[..]), options)
        .decode()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| DecodeError::Corrupt("decoded JPEG size does not match its header".into()))
}

/// One bits (as stuffed `FF 00` bytes) the decoder meets only if the last scan is cut.
const ONES_GUARD: [u8; 64] = {
    let mut guard = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        guard[i] = 0xFF;
        i += 2;
    }
    guard
};

fn with_ones_before_eoi(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    // Whatever follows the image's EOI (padding, a phone's motion-photo video, a second
    // picture) is not the image's business.
    let end = jpeg_end(bytes)
        .ok_or_else(|| DecodeError::Corrupt("JPEG ends without its EOI marker".into()))?;
    let mut out = Vec::with_capacity(end + ONES_GUARD.len());
    out.extend_from_slice(&bytes[..end - 2]);
    out.extend_from_slice(&ONES_GUARD);
    out.extend_from_slice(&[0xFF, 0xD9]);
    Ok(out)
}

/// Where the image's EOI marker ends: segments are skipped by their lengths (so an
/// EXIF thumbnail's EOI is not taken), entropy-coded data up to the next marker that is
/// neither a stuffed `FF 00` nor a restart marker. `None`: the data ends first.
fn jpeg_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 2;
    loop {
        // Fill bytes (FF FF ...) may precede a marker.
        while bytes.get(at..at + 2)? == [0xFF, 0xFF] {
            at += 1;
        }
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        match marker {
            0xD9 => return Some(at + 2),
            0x01 | 0xD0..=0xD8 => {
                at += 2;
                continue;
            }
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        at = at.checked_add(2 + length)?;
        if marker == 0xDA {
            loop {
                let ff = at + bytes.get(at..)?.iter().position(|&b| b == 0xFF)?;
                match *bytes.get(ff + 1)? {
                    0x00 | 0xD0..=0xD7 | 0xFF => at = ff + 1,
                    _ => {
                        at = ff;
                        break;
                    }
                }
            }
        }
    }
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
        png_header_typed(width, height, 8, 2)
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    }

    /// A complete PNG (signature, IHDR, optional PLTE, one empty IDAT, IEND) whose
    /// header claims the given size, bit depth and colour type.
    fn png_header_typed(width: u32, height: u32, depth: u8, color: u8) -> Vec<u8> {
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[depth, color, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut out, b"IHDR", &ihdr);
        if color == 3 {
            chunk(&mut out, b"PLTE", &[0, 0, 0, 255, 255, 255]);
        }
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    /// A JPEG's first segments with a frame header claiming the given size, and an EOI.
    fn jpeg_header_only(width: u16, height: u16, sof: u8) -> Vec<u8> {
        let jpeg = tiny_jpeg();
        // Keep everything up to the frame header of a real file, then patch its size.
        let sof_at = jpeg
            .windows(2)
            .position(|w| w[0] == 0xFF && (w[1] == 0xC0 || w[1] == 0xC2))
            .unwrap();
        let mut out = jpeg.clone();
        out[sof_at + 1] = sof;
        out[sof_at + 5..sof_at + 7].copy_from_slice(&height.to_be_bytes());
        out[sof_at + 7..sof_at + 9].copy_from_slice(&width.to_be_bytes());
        out
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
    fn a_sixteen_bit_rgba_png_within_the_pixel_limits_is_refused_for_its_decoded_bytes() {
        // 12000 x 4166 is inside max_side and max_pixels, but 16-bit RGBA is 400 MB.
        let err = decode_image(
            &png_header_typed(12_000, 4_166, 16, 6),
            &DecodeLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::TooCostly { .. }), "{err:?}");
    }

    #[test]
    fn a_palette_png_is_counted_at_its_expanded_size() {
        // 1 bit per pixel on disk, 3 bytes per pixel once the palette is expanded:
        // 8000 x 6000 is 48 Mpx, 144 MB of RGB.
        let err = decode_image(
            &png_header_typed(8_000, 6_000, 1, 3),
            &DecodeLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::TooCostly { .. }), "{err:?}");
    }

    #[test]
    fn a_jpeg_header_claiming_11000_by_4500_is_refused_before_decoding() {
        let err = decode_image(
            &jpeg_header_only(11_000, 4_500, 0xC0),
            &DecodeLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::TooCostly { .. }), "{err:?}");
    }

    #[test]
    fn a_progressive_jpeg_counts_its_coefficient_planes() {
        // 5000 x 4000 baseline is 60 MB of RGB (accepted, then broken as it has no
        // data); progressive adds 120 MB of coefficients.
        let limits = DecodeLimits::default();
        let baseline = decode_image(&jpeg_header_only(5_000, 4_000, 0xC0), &limits);
        assert!(
            matches!(baseline, Err(DecodeError::Corrupt(_))),
            "{:?}",
            baseline.map(|i| i.dimensions())
        );
        let progressive = decode_image(&jpeg_header_only(5_000, 4_000, 0xC2), &limits);
        assert!(
            matches!(progressive, Err(DecodeError::TooCostly { .. })),
            "{:?}",
            progressive.map(|i| i.dimensions())
        );
    }

    #[test]
    fn a_jpeg_cut_short_is_corrupt_even_with_its_end_marker_put_back() {
        let jpeg = tiny_jpeg();
        for cut in [jpeg.len() / 2, jpeg.len() - 40, jpeg.len() - 3] {
            let mut bytes = jpeg[..cut].to_vec();
            bytes.extend_from_slice(&[0xFF, 0xD9]);
            let err = decode_image(&bytes, &DecodeLimits::default()).unwrap_err();
            assert!(matches!(err, DecodeError::Corrupt(_)), "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn a_jpeg_missing_its_last_bytes_is_corrupt() {
        let jpeg = tiny_jpeg();
        for missing in [1, 2, 5] {
            let err =
                decode_image(&jpeg[..jpeg.len() - missing], &DecodeLimits::default()).unwrap_err();
            assert!(
                matches!(err, DecodeError::Corrupt(_)),
                "-{missing}: {err:?}"
            );
        }
    }

    #[test]
    fn bytes_after_the_end_of_a_jpeg_do_not_make_it_broken() {
        let jpeg = tiny_jpeg();
        let expected = decode_image(&jpeg, &DecodeLimits::default()).unwrap();
        // A phone's motion photo (a video after the picture, itself holding FF D9), a
        // second picture, text.
        let mut video = vec![0u8, 0, 0, 0x18, b'f', b't', b'y', b'p'];
        video.extend((0..5000u32).map(|i| (i * 7919 % 251) as u8));
        video.extend([0xFF, 0xD9, 0x12]);
        for tail in [video, jpeg.clone(), b"GARBAGE".to_vec()] {
            let mut with_tail = jpeg.clone();
            with_tail.extend(&tail);
            let got = decode_image(&with_tail, &DecodeLimits::default()).unwrap();
            assert_eq!(got.as_raw(), expected.as_raw());
        }
        // Walking the segments of the picture alone ends at its last byte.
        assert_eq!(jpeg_end(&jpeg), Some(jpeg.len()));
    }

    #[test]
    fn a_png_missing_its_last_byte_is_corrupt() {
        let img = RgbImage::from_pixel(32, 24, image::Rgb([200, 100, 50]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        let png = out.into_inner();
        assert!(decode_image(&png, &DecodeLimits::default()).is_ok());
        for missing in [1, 4, 12, 20] {
            let err =
                decode_image(&png[..png.len() - missing], &DecodeLimits::default()).unwrap_err();
            assert!(
                matches!(err, DecodeError::Corrupt(_)),
                "-{missing}: {err:?}"
            );
        }
    }

    #[test]
    fn jpeg_decodes_to_its_size() {
        let img = decode_image(&tiny_jpeg(), &DecodeLimits::default()).unwrap();
        assert_eq!(img.dimensions(), (32, 24));
    }
}
