//! The recognition loop's logic, one frame at a time and free of threads: detect,
//! track, keep each track's best frame, decide a track once (after enough good frames
//! or when it leaves) by identifying that frame through `gallery`, then debounce per
//! user and rate-limit unknown people before a visit is recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;

use super::source::Frame;
use super::tracker::Tracker;
use super::Error;
use crate::gallery::{Gallery, Visit};
use crate::store::VisitRecord;
use crate::vision::{frontalness, BoundingBox, Detection};

/// The loop's tuning, from `[camera]` (see configs/facegate.toml).
#[derive(Clone, Debug, PartialEq)]
pub struct RecognizerOptions {
    pub client: String,
    pub gallery: String,
    pub device_id: String,
    pub detect_every: u32,
    pub min_face_px: f32,
    pub track_iou: f32,
    pub track_timeout_ms: u64,
    pub decide_frames: u32,
    pub debounce_ms: u64,
    pub unknown_interval_ms: u64,
}

impl RecognizerOptions {
    /// From the configuration; `None` when `camera.gallery` is not CLIENT/GALLERY.
    pub fn from_config(config: &crate::config::Config) -> Option<RecognizerOptions> {
        let c = &config.camera;
        let (client, gallery) = c.gallery_parts()?;
        Some(RecognizerOptions {
            client: client.to_string(),
            gallery: gallery.to_string(),
            device_id: device_id(&config.sync.device_id),
            detect_every: c.detect_every.max(1),
            min_face_px: c.min_face_px,
            track_iou: c.track_iou,
            track_timeout_ms: c.track_timeout_ms,
            decide_frames: c.decide_frames.max(1),
            debounce_ms: c.debounce_secs.saturating_mul(1000),
            unknown_interval_ms: c.unknown_interval_secs.saturating_mul(1000),
        })
    }
}

/// `sync.device_id`, or the host name when it is empty.
pub fn device_id(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "facegate".into())
}

/// What the kiosk screen shows on a face box.
#[derive(Clone, Debug, PartialEq)]
pub enum Label {
    /// Not decided yet.
    Pending,
    Known(String),
    Unknown,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LabelledBox {
    pub bbox: BoundingBox,
    pub label: Label,
}

/// A recorded visit and the time from the capture of the frame that decided it.
#[derive(Clone, Debug)]
pub struct Emitted {
    pub visit: Visit,
    pub latency: Duration,
}

/// Counts of what the recognizer decided (metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    pub known: u64,
    pub unknown: u64,
    /// Known people seen again within the debounce window.
    pub debounced: u64,
    /// Unknown people within the unknown-event interval.
    pub unknown_suppressed: u64,
}

struct Candidate {
    score: f32,
    frame: Arc<RgbImage>,
    detection: Detection,
}

#[derive(Default)]
struct TrackState {
    good_frames: u32,
    best: Option<Candidate>,
    decided: Option<Label>,
    user_id: Option<String>,
}

pub struct Recognizer {
    gallery: Arc<Gallery>,
    options: RecognizerOptions,
    tracker: Tracker,
    states: HashMap<u64, TrackState>,
    /// user_id -> last time (frame ms) they were seen in a decided track.
    last_seen: HashMap<String, u64>,
    last_unknown_ms: Option<u64>,
    frames: u64,
    view: (Option<Arc<RgbImage>>, Vec<LabelledBox>),
    decisions: Decisions,
}

/// Which of a track's frames is best for recognition: larger, more confident, more
/// frontal faces first.
fn candidate_score(d: &Detection) -> f32 {
    let face_px = d.bbox.width.max(d.bbox.height).min(400.0);
    face_px * d.score * (0.5 + 0.5 * frontalness(d).clamp(0.0, 1.0))
}

impl Recognizer {
    pub fn new(gallery: Arc<Gallery>, options: RecognizerOptions) -> Recognizer {
        Recognizer {
            gallery,
            tracker: Tracker::new(options.track_iou, options.track_timeout_ms),
            options,
            states: HashMap::new(),
            last_seen: HashMap::new(),
            last_unknown_ms: None,
            frames: 0,
            view: (None, Vec::new()),
            decisions: Decisions::default(),
        }
    }

    pub fn options(&self) -> &RecognizerOptions {
        &self.options
    }

    pub fn decisions(&self) -> Decisions {
        self.decisions
    }

    /// The last processed frame with its labelled face boxes.
    pub fn view(&self) -> (Option<Arc<RgbImage>>, Vec<LabelledBox>) {
        self.view.clone()
    }

    /// Processes one frame; returns the visits it completed.
    pub fn process(&mut self, frame: Frame) -> Result<Vec<Emitted>, Error> {
        self.frames += 1;
        let meta = FrameMeta {
            timestamp_ms: frame.timestamp_ms,
            captured: frame.captured,
        };
        let image = Arc::new(frame.image);
        if !(self.frames - 1).is_multiple_of(u64::from(self.options.detect_every)) {
            self.view.0 = Some(image);
            return Ok(Vec::new());
        }
        let detections = self.gallery.detect_faces(&image)?;
        let update = self.tracker.update(&detections, meta.timestamp_ms);
        let mut emitted = Vec::new();
        for (track_id, d) in update.matched {
            let detection = &detections[d];
            let state = self.states.entry(track_id).or_default();
            if let Some(user_id) = &state.user_id {
                // A decided person still in view keeps their debounce window open.
                self.last_seen.insert(user_id.clone(), meta.timestamp_ms);
            }
            let face_px = detection.bbox.width.max(detection.bbox.height);
            if face_px < self.options.min_face_px {
                continue;
            }
            state.good_frames += 1;
            let score = candidate_score(detection);
            if state.best.as_ref().is_none_or(|b| score > b.score) {
                state.best = Some(Candidate {
                    score,
                    frame: image.clone(),
                    detection: detection.clone(),
                });
            }
            if state.decided.is_none() && state.good_frames >= self.options.decide_frames {
                emitted.extend(self.decide(track_id, &meta)?);
            }
        }
        for track in update.ended {
            let undecided = self
                .states
                .get(&track.id)
                .is_some_and(|s| s.decided.is_none() && s.best.is_some());
            if undecided {
                emitted.extend(self.decide(track.id, &meta)?);
            }
            self.states.remove(&track.id);
        }
        self.view = (Some(image), self.boxes(meta.timestamp_ms));
        Ok(emitted)
    }

    /// Decides every open track (the source ended); `at` is the last frame's time.
    pub fn finish(&mut self, timestamp_ms: u64) -> Result<Vec<Emitted>, Error> {
        let meta = FrameMeta {
            timestamp_ms,
            captured: Instant::now(),
        };
        let mut emitted = Vec::new();
        for track in self.tracker.end_all() {
            let undecided = self
                .states
                .get(&track.id)
                .is_some_and(|s| s.decided.is_none() && s.best.is_some());
            if undecided {
                emitted.extend(self.decide(track.id, &meta)?);
            }
        }
        self.states.clear();
        self.view.1.clear();
        Ok(emitted)
    }

    /// The boxes of the tracks seen in the frame captured at `now_ms`.
    fn boxes(&self, now_ms: u64) -> Vec<LabelledBox> {
        self.tracker
            .tracks()
            .iter()
            .filter(|t| t.last_seen_ms == now_ms)
            .map(|t| LabelledBox {
                bbox: t.bbox,
                label: self
                    .states
                    .get(&t.id)
                    .and_then(|s| s.decided.clone())
                    .unwrap_or(Label::Pending),
            })
            .collect()
    }

    fn decide(&mut self, track_id: u64, at: &FrameMeta) -> Result<Option<Emitted>, Error> {
        let Some(state) = self.states.get_mut(&track_id) else {
            return Ok(None);
        };
        let Some(best) = state.best.take() else {
            return Ok(None);
        };
        let o = &self.options;
        let sighting =
            self.gallery
                .identify_detection(&o.client, &o.gallery, &best.frame, best.detection)?;
        let Some(sighting) = sighting else {
            state.decided = Some(Label::Unknown);
            return Ok(None);
        };
        let now = at.timestamp_ms;
        match &sighting.user {
            Some((user_id, user_name)) => {
                state.decided = Some(Label::Known(user_name.clone()));
                state.user_id = Some(user_id.clone());
                let previous = self.last_seen.insert(user_id.clone(), now);
                if previous.is_some_and(|p| now.saturating_sub(p) < o.debounce_ms) {
                    self.decisions.debounced += 1;
                    tracing::debug!(user_id, "seen again within the debounce window");
                    return Ok(None);
                }
                self.decisions.known += 1;
            }
            None => {
                state.decided = Some(Label::Unknown);
                if self
                    .last_unknown_ms
                    .is_some_and(|p| now.saturating_sub(p) < o.unknown_interval_ms)
                {
                    self.decisions.unknown_suppressed += 1;
                    return Ok(None);
                }
                self.last_unknown_ms = Some(now);
                self.decisions.unknown += 1;
            }
        }
        let (user_id, user_name) = match sighting.user {
            Some((id, name)) => (Some(id), Some(name)),
            None => (None, None),
        };
        let visit = self.gallery.record_visit(VisitRecord {
            client: o.client.clone(),
            gallery: o.gallery.clone(),
            device_id: o.device_id.clone(),
            user_id,
            user_name,
            similarity: sighting.similarity,
            mask: sighting.masked,
            timestamp_ms: now,
            face_jpeg: sighting.face_jpeg,
        })?;
        Ok(Some(Emitted {
            visit,
            latency: at.captured.elapsed(),
        }))
    }
}

struct FrameMeta {
    timestamp_ms: u64,
    captured: Instant,
}
