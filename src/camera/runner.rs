//! The running camera: a capture thread reads the source into a one-frame mailbox, a
//! dedicated inference thread takes the newest frame from it. A frame that arrives
//! while the previous one still waits replaces it (it is dropped, never queued), so
//! the loop always works on the freshest picture and never delays the HTTP API beyond
//! the one model session it borrows at a time. It borrows it through the same bounded
//! queue as the API's requests (src/vision/admission.rs); a frame refused there (busy)
//! counts as dropped.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;

use super::draw;
use super::options::RecognizerOptions;
use super::recognizer::{LabelledBox, Recognizer};
use super::source::{
    from_spec, unix_ms, Backoff, CaptureOptions, Frame, Reconnecting, SourceSpec, SourceStats,
};
use super::Error;
use crate::gallery::Gallery;

/// Everything the camera needs, from `[camera]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CameraOptions {
    pub source: SourceSpec,
    pub capture: CaptureOptions,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub recognizer: RecognizerOptions,
}

impl CameraOptions {
    /// `None` when no camera is configured (`camera.source` empty).
    pub fn from_config(config: &crate::config::Config) -> Result<Option<CameraOptions>, Error> {
        let c = &config.camera;
        if c.source.is_empty() {
            return Ok(None);
        }
        let source = SourceSpec::parse(&c.source)?;
        let recognizer = RecognizerOptions::from_config(config).ok_or_else(|| {
            Error::Config(format!(
                "camera.gallery = {:?}: expected CLIENT/GALLERY",
                c.gallery
            ))
        })?;
        Ok(Some(CameraOptions {
            source,
            capture: CaptureOptions {
                fps: c.fps,
                width: c.width,
                height: c.height,
                realtime: c.dir_realtime,
            },
            reconnect_min: Duration::from_millis(c.reconnect_min_ms),
            reconnect_max: Duration::from_millis(c.reconnect_max_ms),
            recognizer,
        }))
    }
}

/// Frames processed within this window give the effective frame rate.
const FPS_WINDOW: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Mailbox {
    frame: Option<Frame>,
    /// The source ended (or the camera stops): no more frames will come.
    closed: bool,
}

#[derive(Default)]
struct Counters {
    processed: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    known: AtomicU64,
    unknown: AtomicU64,
    suppressed: AtomicU64,
    retried: AtomicU64,
    recognized_on_retry: AtomicU64,
    track_checks: AtomicU64,
    track_splits: AtomicU64,
    latency_us_sum: AtomicU64,
    latency_count: AtomicU64,
}

struct Shared {
    mailbox: Mutex<Mailbox>,
    changed: Condvar,
    stop: Arc<AtomicBool>,
    counters: Counters,
    recent: Mutex<VecDeque<Instant>>,
    view: Mutex<(Option<Arc<RgbImage>>, Vec<LabelledBox>)>,
    source: Arc<SourceStats>,
    idle: AtomicBool,
}

/// A camera feeding the recognition loop; stops when dropped.
pub struct Camera {
    shared: Arc<Shared>,
    client: String,
    capture: Option<JoinHandle<()>>,
    inference: Option<JoinHandle<()>>,
}

impl Camera {
    /// Starts the capture and inference threads.
    pub fn start(gallery: Arc<Gallery>, options: CameraOptions) -> Result<Camera, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let source = from_spec(&options.source, options.capture)?;
        let mut driver = Reconnecting::new(
            source,
            Backoff::new(options.reconnect_min, options.reconnect_max),
            stop.clone(),
        );
        let shared = Arc::new(Shared {
            mailbox: Mutex::new(Mailbox::default()),
            changed: Condvar::new(),
            stop,
            counters: Counters::default(),
            recent: Mutex::new(VecDeque::new()),
            view: Mutex::new((None, Vec::new())),
            source: driver.stats(),
            idle: AtomicBool::new(false),
        });
        let client = options.recognizer.client.clone();
        let mut recognizer = Recognizer::new(gallery, options.recognizer);
        let s = shared.clone();
        let capture = std::thread::Builder::new()
            .name("camera-capture".into())
            .spawn(move || capture_loop(&s, &mut driver))
            .map_err(Error::Thread)?;
        let s = shared.clone();
        let inference = std::thread::Builder::new()
            .name("camera-inference".into())
            .spawn(move || inference_loop(&s, &mut recognizer))
            .map_err(Error::Thread)?;
        Ok(Camera {
            shared,
            client,
            capture: Some(capture),
            inference: Some(inference),
        })
    }

    /// The API client whose gallery the camera identifies against (the only client
    /// allowed to see its frames).
    pub fn client(&self) -> &str {
        &self.client
    }

    /// True once the source ended and every frame was processed (folder replays).
    pub fn is_idle(&self) -> bool {
        self.shared.idle.load(Ordering::Acquire)
    }

    /// The newest processed frame with its face boxes, as JPEG.
    pub fn live_jpeg(&self) -> Option<Vec<u8>> {
        let (image, boxes) = self
            .shared
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let image = image?;
        match draw::annotated_jpeg(&image, &boxes) {
            Ok(jpeg) => Some(jpeg),
            Err(e) => {
                tracing::warn!(error = %e, "live frame cannot be encoded");
                None
            }
        }
    }

    /// Prometheus text of the camera's counters and gauges.
    pub fn metrics_text(&self) -> String {
        let c = &self.shared.counters;
        let fps = {
            let mut recent = self.shared.recent.lock().unwrap_or_else(|e| e.into_inner());
            prune(&mut recent);
            recent.len() as f64 / FPS_WINDOW.as_secs_f64()
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "facegate_camera_fps",
            "gauge",
            "Frames processed per second by the recognition loop (last 5 s).",
            format!("{fps}"),
        );
        metric(
            "facegate_camera_frames_captured_total",
            "counter",
            "Frames read from the camera source.",
            get(&self.shared.source.frames).to_string(),
        );
        metric(
            "facegate_camera_frames_processed_total",
            "counter",
            "Frames the recognition loop processed.",
            get(&c.processed).to_string(),
        );
        metric(
            "facegate_camera_frames_dropped_total",
            "counter",
            "Frames dropped because recognition was still busy with an earlier one.",
            get(&c.dropped).to_string(),
        );
        metric(
            "facegate_camera_source_up",
            "gauge",
            "1 while the camera source is open.",
            u8::from(self.shared.source.up.load(Ordering::Relaxed)).to_string(),
        );
        metric(
            "facegate_camera_source_failures_total",
            "counter",
            "Times the camera source could not be opened or failed while reading.",
            get(&self.shared.source.failures).to_string(),
        );
        metric(
            "facegate_camera_errors_total",
            "counter",
            "Frames whose recognition failed (store or model errors).",
            get(&c.errors).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP facegate_camera_visits_total Visits recorded, by kind.\n# TYPE facegate_camera_visits_total counter\nfacegate_camera_visits_total{{kind=\"known\"}} {}\nfacegate_camera_visits_total{{kind=\"unknown\"}} {}",
            get(&c.known),
            get(&c.unknown)
        );
        let _ = writeln!(
            out,
            "# HELP facegate_camera_visits_suppressed_total Decisions without event (debounced person, rate-limited unknown).\n# TYPE facegate_camera_visits_suppressed_total counter\nfacegate_camera_visits_suppressed_total {}",
            get(&c.suppressed)
        );
        let _ = writeln!(
            out,
            "# HELP facegate_camera_unknown_retries_total Tracks found unknown identified again on a better frame, by outcome.\n# TYPE facegate_camera_unknown_retries_total counter\nfacegate_camera_unknown_retries_total{{outcome=\"tried\"}} {}\nfacegate_camera_unknown_retries_total{{outcome=\"recognized\"}} {}",
            get(&c.retried),
            get(&c.recognized_on_retry)
        );
        let (checks, splits) = (get(&c.track_checks), get(&c.track_splits));
        let _ = writeln!(
            out,
            "# HELP facegate_camera_track_checks_total Comparisons of a track's face with the face it started with, by outcome (other: another person, the track was split).\n# TYPE facegate_camera_track_checks_total counter\nfacegate_camera_track_checks_total{{outcome=\"same\"}} {}\nfacegate_camera_track_checks_total{{outcome=\"other\"}} {}",
            checks.saturating_sub(splits),
            splits
        );
        let _ = writeln!(
            out,
            "# HELP facegate_camera_event_latency_seconds From the capture of the deciding frame to the stored event.\n# TYPE facegate_camera_event_latency_seconds summary\nfacegate_camera_event_latency_seconds_sum {}\nfacegate_camera_event_latency_seconds_count {}",
            get(&c.latency_us_sum) as f64 / 1e6,
            get(&c.latency_count)
        );
        out
    }

    /// Stops both threads and waits for the inference thread to finish its frame.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let mut mailbox = self
                .shared
                .mailbox
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            mailbox.closed = true;
        }
        self.shared.changed.notify_all();
        if let Some(t) = self.inference.take() {
            let _ = t.join();
        }
        // The capture thread may be blocked in a read (bounded by the source's read
        // timeout); it sees the stop flag afterwards and exits on its own.
        drop(self.capture.take());
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.halt();
    }
}

fn prune(recent: &mut VecDeque<Instant>) {
    while recent.front().is_some_and(|t| t.elapsed() > FPS_WINDOW) {
        recent.pop_front();
    }
}

fn capture_loop(shared: &Shared, driver: &mut Reconnecting) {
    let paced = driver.paced();
    while let Some(frame) = driver.next_frame() {
        let mut mailbox = shared.mailbox.lock().unwrap_or_else(|e| e.into_inner());
        if !paced {
            while mailbox.frame.is_some() && !mailbox.closed {
                mailbox = shared
                    .changed
                    .wait(mailbox)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        if mailbox.closed {
            return;
        }
        if mailbox.frame.replace(frame).is_some() {
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
        drop(mailbox);
        shared.changed.notify_all();
    }
    let mut mailbox = shared.mailbox.lock().unwrap_or_else(|e| e.into_inner());
    mailbox.closed = true;
    drop(mailbox);
    shared.changed.notify_all();
}

fn inference_loop(shared: &Shared, recognizer: &mut Recognizer) {
    let mut last_ms = unix_ms();
    loop {
        let frame = {
            let mut mailbox = shared.mailbox.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(frame) = mailbox.frame.take() {
                    break Some(frame);
                }
                if mailbox.closed {
                    break None;
                }
                mailbox = shared
                    .changed
                    .wait(mailbox)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        shared.changed.notify_all();
        let Some(frame) = frame else {
            break;
        };
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        last_ms = frame.timestamp_ms;
        let outcome = recognizer.process(frame);
        shared.counters.processed.fetch_add(1, Ordering::Relaxed);
        {
            let mut recent = shared.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.push_back(Instant::now());
            prune(&mut recent);
        }
        *shared.view.lock().unwrap_or_else(|e| e.into_inner()) = recognizer.view();
        report(shared, recognizer, outcome);
    }
    if !shared.stop.load(Ordering::Acquire) {
        let outcome = recognizer.finish(last_ms.max(unix_ms()));
        *shared.view.lock().unwrap_or_else(|e| e.into_inner()) = recognizer.view();
        report(shared, recognizer, outcome);
    }
    shared.idle.store(true, Ordering::Release);
}

fn report(
    shared: &Shared,
    recognizer: &Recognizer,
    outcome: Result<Vec<super::recognizer::Emitted>, Error>,
) {
    let c = &shared.counters;
    match outcome {
        Ok(emitted) => {
            for e in emitted {
                let r = &e.visit.record;
                tracing::info!(
                    visit = e.visit.id,
                    user_id = r.user_id.as_deref().unwrap_or("-"),
                    similarity = r.similarity,
                    latency_ms = e.latency.as_secs_f64() * 1000.0,
                    "camera visit"
                );
                c.latency_us_sum
                    .fetch_add(e.latency.as_micros() as u64, Ordering::Relaxed);
                c.latency_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        // No model session within the shared queue's bounds (the API is busy): the
        // frame is dropped like one the camera produced faster than we could take.
        Err(Error::Gallery(crate::gallery::Error::Vision(crate::vision::Error::Busy(_)))) => {
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            let n = c.errors.fetch_add(1, Ordering::Relaxed);
            // Log the first errors and then every 100th: a missing gallery must not
            // flood the log at 10 frames per second.
            if n < 5 || n.is_multiple_of(100) {
                tracing::warn!(error = %e, errors = n + 1, "camera frame not recognized");
            }
        }
    }
    let d = recognizer.decisions();
    c.known.store(d.known, Ordering::Relaxed);
    c.unknown.store(d.unknown, Ordering::Relaxed);
    c.suppressed
        .store(d.debounced + d.unknown_suppressed, Ordering::Relaxed);
    c.retried.store(d.retried, Ordering::Relaxed);
    c.track_checks.store(d.track_checks, Ordering::Relaxed);
    c.track_splits.store(d.track_splits, Ordering::Relaxed);
    c.recognized_on_retry
        .store(d.recognized_on_retry, Ordering::Relaxed);
}
