//! Camera kiosk mode: frames from a local camera, an MJPEG stream or a folder, through
//! detection, tracking and best-frame selection, to recognition events (visits).
//!
//! Sits beside `api` and `sync`: it depends on `gallery` (every detection,
//! identification and stored visit goes through it) and on `vision` types only; nothing
//! below knows the camera. Visits reach listeners through `gallery` (stored, then
//! broadcast), so `api` streams them without knowing where they came from.
//!
//! Public face: [`Camera`] (the running loop) with [`CameraOptions`], the
//! [`Recognizer`] (the loop's logic one frame at a time, for replays and benchmarks),
//! the frame sources ([`FrameSource`], [`SourceSpec`], [`Reconnecting`]) and [`Error`].

mod draw;
mod options;
mod recognizer;
mod runner;
mod source;
mod tracker;

pub use options::{device_id, RecognizerOptions, TrackCheck};
pub use recognizer::{Decisions, Emitted, Label, LabelledBox, Recognizer};
pub use runner::{Camera, CameraOptions};
#[cfg(feature = "camera-v4l")]
pub use source::{decode_buffer, V4lSource};
pub use source::{
    from_spec, Backoff, CaptureOptions, DirSource, Frame, FrameSource, MjpegSource, Reconnecting,
    SourceError, SourceSpec, SourceStats,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Gallery(#[from] crate::gallery::Error),
    #[error("camera configuration: {0}")]
    Config(String),
    #[error("cannot start a camera thread: {0}")]
    Thread(std::io::Error),
}
