//! `v4l:INDEX`: a local camera through nokhwa (V4L2 on Linux), MJPEG preferred, YUYV
//! as the fallback. Built only with the cargo feature `camera-v4l` (nokhwa's bindings
//! need clang/libclang at build time).

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use nokhwa::{Buffer, Camera};

use super::{fit, CaptureOptions, Frame, FrameSource, SourceError};

pub struct V4lSource {
    index: u32,
    options: CaptureOptions,
    camera: Option<Camera>,
}

impl V4lSource {
    pub fn new(index: u32, options: CaptureOptions) -> V4lSource {
        V4lSource {
            index,
            options,
            camera: None,
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> SourceError {
        SourceError::Camera {
            index: self.index,
            message: e.to_string(),
        }
    }

    fn open_with(&self, format: FrameFormat) -> Result<Camera, SourceError> {
        let wanted = CameraFormat::new(
            Resolution::new(self.options.width, self.options.height),
            format,
            self.options.fps.max(1),
        );
        let formats = [format];
        let request = RequestedFormat::with_formats(RequestedFormatType::Closest(wanted), &formats);
        let mut camera =
            Camera::new(CameraIndex::Index(self.index), request).map_err(|e| self.error(e))?;
        camera.open_stream().map_err(|e| self.error(e))?;
        Ok(camera)
    }
}

/// Decodes a captured buffer (MJPEG or YUYV) into RGB.
pub fn decode_buffer(buffer: &Buffer) -> Result<RgbImage, SourceError> {
    let decoded = buffer
        .decode_image::<RgbFormat>()
        .map_err(|e| SourceError::Decode(e.to_string()))?;
    let (w, h) = decoded.dimensions();
    RgbImage::from_raw(w, h, decoded.into_raw())
        .ok_or_else(|| SourceError::Decode("decoded buffer has the wrong size".into()))
}

impl FrameSource for V4lSource {
    fn open(&mut self) -> Result<(), SourceError> {
        self.camera = None;
        let camera = match self.open_with(FrameFormat::MJPEG) {
            Ok(c) => c,
            Err(mjpeg) => {
                tracing::debug!(error = %mjpeg, "no MJPEG mode; trying YUYV");
                self.open_with(FrameFormat::YUYV)?
            }
        };
        tracing::info!(index = self.index, format = %camera.camera_format(), "camera streaming");
        self.camera = Some(camera);
        Ok(())
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some(camera) = self.camera.as_mut() else {
            return Err(self.error("not open"));
        };
        let buffer = match camera.frame() {
            Ok(b) => b,
            Err(e) => {
                self.camera = None;
                return Err(self.error(e));
            }
        };
        let image = decode_buffer(&buffer)?;
        Ok(Some(Frame::now(fit(image, &self.options))))
    }

    fn describe(&self) -> String {
        format!("v4l:{}", self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        })
    }

    #[test]
    fn mjpeg_buffers_decode_to_rgb() {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&gradient())
            .unwrap();
        let buffer = Buffer::new(Resolution::new(64, 48), &jpeg, FrameFormat::MJPEG);
        let image = decode_buffer(&buffer).unwrap();
        assert_eq!(image.dimensions(), (64, 48));
        let p = image.get_pixel(40, 30).0;
        assert!((i32::from(p[0]) - 160).abs() < 12, "{p:?}");
        assert!((i32::from(p[1]) - 150).abs() < 12, "{p:?}");
    }

    #[test]
    fn yuyv_buffers_decode_to_rgb() {
        // Mid-grey: Y = 128, U = V = 128 (no colour) for every pixel pair.
        let yuyv: Vec<u8> = std::iter::repeat([128u8, 128, 128, 128])
            .take(32 * 24)
            .flatten()
            .collect();
        let buffer = Buffer::new(Resolution::new(64, 24), &yuyv, FrameFormat::YUYV);
        let image = decode_buffer(&buffer).unwrap();
        assert_eq!(image.dimensions(), (64, 24));
        for p in image.pixels() {
            for c in p.0 {
                assert!((i32::from(c) - 128).abs() <= 3, "{p:?}");
            }
        }
    }

    #[test]
    fn a_corrupt_mjpeg_buffer_is_an_error() {
        let buffer = Buffer::new(
            Resolution::new(64, 48),
            &[0xFF, 0xD8, 0, 1, 2],
            FrameFormat::MJPEG,
        );
        assert!(decode_buffer(&buffer).is_err());
    }

    #[test]
    fn opening_a_missing_camera_is_an_error() {
        let options = CaptureOptions {
            fps: 10,
            width: 640,
            height: 480,
            realtime: true,
        };
        let mut source = V4lSource::new(97, options);
        assert!(matches!(
            source.open(),
            Err(SourceError::Camera { index: 97, .. })
        ));
        assert!(source.next_frame().is_err());
    }
}
