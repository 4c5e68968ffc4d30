//! Frame sources behind one trait: a folder of pictures, an MJPEG stream over HTTP, a
//! local camera (feature `camera-v4l`), and the reconnecting driver that hides a source
//! disappearing and coming back.

mod dir;
mod http_body;
mod mjpeg;
#[cfg(feature = "camera-v4l")]
mod v4l;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use image::RgbImage;

pub use dir::DirSource;
pub use mjpeg::MjpegSource;
#[cfg(feature = "camera-v4l")]
pub use v4l::{decode_buffer, V4lSource};

/// One captured picture.
#[derive(Clone, Debug)]
pub struct Frame {
    pub image: RgbImage,
    /// Capture time, milliseconds since the Unix epoch (the event timestamp).
    pub timestamp_ms: u64,
    /// Capture instant (frame-to-event latency).
    pub captured: Instant,
}

impl Frame {
    /// A frame captured now.
    pub fn now(image: RgbImage) -> Frame {
        Frame {
            image,
            timestamp_ms: unix_ms(),
            captured: Instant::now(),
        }
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("camera source {0:?}: expected dir:PATH, mjpeg:URL or v4l:INDEX")]
    Spec(String),
    #[error("frame folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stream {url}: {message}")]
    Stream { url: String, message: String },
    #[error("stream {url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("frame cannot be decoded: {0}")]
    Decode(String),
    #[error("camera {index}: {message}")]
    Camera { index: u32, message: String },
    #[error("v4l camera sources need a build with the cargo feature camera-v4l")]
    V4lNotBuilt,
}

/// Where frames come from. A source is used from one thread; `open` is called first and
/// again after `next_frame` failed (with a backoff in between, see [`Reconnecting`]).
pub trait FrameSource: Send {
    /// Opens or reopens the source (connect, open the device, list the folder).
    fn open(&mut self) -> Result<(), SourceError>;
    /// Blocks until the next frame. `Ok(None)`: the source has ended for good (a
    /// folder replayed to its last picture).
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;
    /// False when the source produces a frame whenever asked (a folder not in real time):
    /// the loop then waits for the previous frame instead of dropping frames.
    fn paced(&self) -> bool {
        true
    }
    /// For logs.
    fn describe(&self) -> String;
}

/// A parsed `camera.source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Dir(PathBuf),
    Mjpeg(String),
    V4l(u32),
}

impl SourceSpec {
    pub fn parse(text: &str) -> Result<SourceSpec, SourceError> {
        let bad = || SourceError::Spec(mjpeg::redact(text));
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        match kind {
            "dir" if !rest.is_empty() => Ok(SourceSpec::Dir(PathBuf::from(rest))),
            "mjpeg" if rest.starts_with("http://") => Ok(SourceSpec::Mjpeg(rest.to_string())),
            "v4l" => rest.parse().map(SourceSpec::V4l).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// The spec as configured, without the MJPEG URL's password (for logs).
impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Dir(path) => write!(f, "dir:{}", path.display()),
            SourceSpec::Mjpeg(url) => write!(f, "mjpeg:{}", mjpeg::redact(url)),
            SourceSpec::V4l(index) => write!(f, "v4l:{index}"),
        }
    }
}

/// Capture settings shared by every source.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CaptureOptions {
    /// Frames per second.
    pub fps: u32,
    /// Frames larger than this are scaled down to fit (v4l: the requested size).
    pub width: u32,
    pub height: u32,
    /// dir: wait for each frame's time (false: as fast as the loop takes frames).
    pub realtime: bool,
}

/// Opens the source a spec names (not yet connected: call `open`).
pub fn from_spec(
    spec: &SourceSpec,
    options: CaptureOptions,
) -> Result<Box<dyn FrameSource>, SourceError> {
    match spec {
        SourceSpec::Dir(path) => Ok(Box::new(DirSource::new(path.clone(), options))),
        SourceSpec::Mjpeg(url) => Ok(Box::new(MjpegSource::new(url, options)?)),
        #[cfg(feature = "camera-v4l")]
        SourceSpec::V4l(index) => Ok(Box::new(V4lSource::new(*index, options))),
        #[cfg(not(feature = "camera-v4l"))]
        SourceSpec::V4l(_) => Err(SourceError::V4lNotBuilt),
    }
}

/// Scales a frame down to fit `width` x `height` (never up).
pub(crate) fn fit(image: RgbImage, options: &CaptureOptions) -> RgbImage {
    let (w, h) = image.dimensions();
    if w <= options.width && h <= options.height {
        return image;
    }
    let scale = (options.width as f32 / w as f32).min(options.height as f32 / h as f32);
    let nw = ((w as f32 * scale).round() as u32).max(1);
    let nh = ((h as f32 * scale).round() as u32).max(1);
    image::imageops::resize(&image, nw, nh, image::imageops::FilterType::Triangle)
}

pub(crate) fn decode_picture(
    bytes: &[u8],
    options: &CaptureOptions,
) -> Result<RgbImage, SourceError> {
    let image = crate::vision::decode_image(bytes, &crate::vision::DecodeLimits::default())
        .map_err(|e| SourceError::Decode(e.to_string()))?;
    Ok(fit(image, options))
}

/// Exponential backoff between reconnect attempts.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The next wait; doubles up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// Counters the driver keeps (exported as metrics).
#[derive(Debug, Default)]
pub struct SourceStats {
    pub frames: AtomicU64,
    pub failures: AtomicU64,
    pub up: AtomicBool,
}

/// Drives a source: opens it, reads frames, and when it fails (camera unplugged,
/// stream closed), logs, waits with backoff and reopens, until stopped.
pub struct Reconnecting {
    source: Box<dyn FrameSource>,
    backoff: Backoff,
    open: bool,
    stop: Arc<AtomicBool>,
    stats: Arc<SourceStats>,
}

impl Reconnecting {
    pub fn new(source: Box<dyn FrameSource>, backoff: Backoff, stop: Arc<AtomicBool>) -> Self {
        Reconnecting {
            source,
            backoff,
            open: false,
            stop,
            stats: Arc::new(SourceStats::default()),
        }
    }

    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    pub fn paced(&self) -> bool {
        self.source.paced()
    }

    /// The next frame, reconnecting as often as needed. `None` when the source ended
    /// or the driver was stopped.
    pub fn next_frame(&mut self) -> Option<Frame> {
        while !self.stop.load(Ordering::Relaxed) {
            if !self.open {
                match self.source.open() {
                    Ok(()) => {
                        tracing::info!(source = %self.source.describe(), "camera source open");
                        self.open = true;
                        self.stats.up.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.failed(&e);
                        continue;
                    }
                }
            }
            match self.source.next_frame() {
                Ok(Some(frame)) => {
                    self.backoff.reset();
                    self.stats.frames.fetch_add(1, Ordering::Relaxed);
                    return Some(frame);
                }
                Ok(None) => {
                    tracing::info!(source = %self.source.describe(), "camera source ended");
                    self.stats.up.store(false, Ordering::Relaxed);
                    return None;
                }
                Err(e) => {
                    self.open = false;
                    self.failed(&e);
                }
            }
        }
        None
    }

    fn failed(&mut self, error: &SourceError) {
        self.stats.up.store(false, Ordering::Relaxed);
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let delay = self.backoff.next_delay();
        tracing::warn!(
            source = %self.source.describe(),
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
            "camera source unavailable; retrying"
        );
        // Sleep in short steps so that stopping is prompt.
        let until = Instant::now() + delay;
        while !self.stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse_and_bad_ones_are_errors() {
        assert_eq!(
            SourceSpec::parse("dir:/tmp/frames").unwrap(),
            SourceSpec::Dir(PathBuf::from("/tmp/frames"))
        );
        assert_eq!(
            SourceSpec::parse("mjpeg:http://10.0.0.5:81/stream").unwrap(),
            SourceSpec::Mjpeg("http://10.0.0.5:81/stream".into())
        );
        assert_eq!(SourceSpec::parse("v4l:0").unwrap(), SourceSpec::V4l(0));
        for bad in [
            "",
            "dir:",
            "v4l:x",
            "rtsp://cam",
            "mjpeg:https://cam/s",
            "usb:0",
        ] {
            assert!(SourceSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }

    #[test]
    fn a_source_that_cannot_open_is_retried_with_backoff_until_stopped() {
        let options = CaptureOptions {
            fps: 10,
            width: 640,
            height: 480,
            realtime: true,
        };
        let missing = DirSource::new(PathBuf::from("/nonexistent/facegate/frames"), options);
        let stop = Arc::new(AtomicBool::new(false));
        let mut driver = Reconnecting::new(
            Box::new(missing),
            Backoff::new(Duration::from_millis(1), Duration::from_millis(4)),
            stop.clone(),
        );
        let stats = driver.stats();
        let watcher = std::thread::spawn(move || {
            while stats.failures.load(Ordering::SeqCst) < 3 {
                std::thread::yield_now();
            }
            stop.store(true, Ordering::SeqCst);
            stats
        });
        assert!(driver.next_frame().is_none());
        let stats = watcher.join().unwrap();
        assert!(stats.failures.load(Ordering::SeqCst) >= 3);
        assert!(!stats.up.load(Ordering::SeqCst));
    }

    #[test]
    fn large_frames_are_scaled_down_to_fit_and_small_ones_kept() {
        let options = CaptureOptions {
            fps: 10,
            width: 640,
            height: 480,
            realtime: true,
        };
        assert_eq!(
            fit(RgbImage::new(1280, 720), &options).dimensions(),
            (640, 360)
        );
        assert_eq!(
            fit(RgbImage::new(320, 240), &options).dimensions(),
            (320, 240)
        );
    }
}
