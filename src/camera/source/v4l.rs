//! `v4l:INDEX`: a local camera through nokhwa (V4L2 on Linux), MJPEG preferred, YUYV
//! as the fallback. Built only with the cargo feature `camera-v4l` (nokhwa's bindings
//! need clang/libclang at build time).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use nokhwa::{Buffer, Camera};

use super::{fit, CaptureOptions, Frame, FrameSource, SourceError};

/// nokhwa's `Camera` is not `Send`, so each opened camera lives on its own thread,
/// which hands decoded frames over a one-place channel.
pub struct V4lSource {
    index: u32,
    options: CaptureOptions,
    frames: Option<Receiver<Result<RgbImage, SourceError>>>,
}

impl V4lSource {
    pub fn new(index: u32, options: CaptureOptions) -> V4lSource {
        V4lSource {
            index,
            options,
            frames: None,
        }
    }
}

fn camera_error(index: u32, e: impl std::fmt::Display) -> SourceError {
    SourceError::Camera {
        index,
        message: e.to_string(),
    }
}

fn open_camera(
    index: u32,
    options: &CaptureOptions,
    format: FrameFormat,
) -> Result<Camera, SourceError> {
    let wanted = CameraFormat::new(
        Resolution::new(options.width, options.height),
        format,
        options.fps.max(1),
    );
    let formats = [format];
    let request = RequestedFormat::with_formats(RequestedFormatType::Closest(wanted), &formats);
    let mut camera =
        Camera::new(CameraIndex::Index(index), request).map_err(|e| camera_error(index, e))?;
    camera.open_stream().map_err(|e| camera_error(index, e))?;
    Ok(camera)
}

/// The camera thread: opens the camera (MJPEG, else YUYV), reports the outcome on
/// `opened`, then sends frames until an error or until the source is dropped.
fn capture(
    index: u32,
    options: CaptureOptions,
    opened: SyncSender<Result<(), SourceError>>,
    frames: SyncSender<Result<RgbImage, SourceError>>,
) {
    let camera = open_camera(index, &options, FrameFormat::MJPEG).or_else(|mjpeg| {
        tracing::debug!(error = %mjpeg, "no MJPEG mode; trying YUYV");
        open_camera(index, &options, FrameFormat::YUYV)
    });
    let mut camera = match camera {
        Ok(c) => c,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    tracing::info!(index, format = %camera.camera_format(), "camera streaming");
    if opened.send(Ok(())).is_err() {
        return;
    }
    loop {
        let frame = camera
            .frame()
            .map_err(|e| camera_error(index, e))
            .and_then(|buffer| decode_buffer(&buffer));
        let failed = frame.is_err();
        if frames.send(frame).is_err() || failed {
            return;
        }
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
        // Dropping the old receiver ends the old camera thread at its next frame.
        self.frames = None;
        let (opened_tx, opened_rx) = sync_channel(1);
        let (frames_tx, frames_rx) = sync_channel(1);
        let (index, options) = (self.index, self.options);
        std::thread::Builder::new()
            .name(format!("camera-v4l-{index}"))
            .spawn(move || capture(index, options, opened_tx, frames_tx))
            .map_err(|e| camera_error(index, e))?;
        match opened_rx.recv() {
            Ok(Ok(())) => {
                self.frames = Some(frames_rx);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(camera_error(index, "camera thread ended")),
        }
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let Some(frames) = self.frames.as_ref() else {
            return Err(camera_error(self.index, "not open"));
        };
        match frames.recv() {
            Ok(Ok(image)) => Ok(Some(Frame::now(fit(image, &self.options)))),
            Ok(Err(e)) => {
                self.frames = None;
                Err(e)
            }
            Err(_) => {
                self.frames = None;
                Err(camera_error(self.index, "camera thread ended"))
            }
        }
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
        let yuyv: Vec<u8> = std::iter::repeat_n([128u8, 128, 128, 128], 32 * 24)
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

    #[test]
    fn a_missing_camera_is_retried_until_stopped() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::Duration;

        let options = CaptureOptions {
            fps: 10,
            width: 640,
            height: 480,
            realtime: true,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut driver = super::super::Reconnecting::new(
            Box::new(V4lSource::new(97, options)),
            super::super::Backoff::new(Duration::from_millis(1), Duration::from_millis(4)),
            stop.clone(),
        );
        let stats = driver.stats();
        let watcher = std::thread::spawn(move || {
            while stats.failures.load(Ordering::SeqCst) < 2 {
                std::thread::yield_now();
            }
            stop.store(true, Ordering::SeqCst);
        });
        assert!(driver.next_frame().is_none());
        watcher.join().unwrap();
        assert!(driver.stats().failures.load(Ordering::SeqCst) >= 2);
    }
}
