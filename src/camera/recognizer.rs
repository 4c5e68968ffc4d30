//! The recognition loop's logic, one frame at a time and free of threads: detect,
//! track, keep each track's best frame, decide a track once (after enough good frames
//! or when it leaves) by identifying that frame through `gallery`, then debounce per
//! user and rate-limit unknown people before a visit is recorded. A track identified as
//! unknown is identified again on a clearly better frame (a person still walking up),
//! a bounded number of times, before the unknown visit is reported.
//!
//! A track is one person. With `track_check` on, a track's face is compared with the
//! face it started with (an appearance embedding: one embedder run, no mask): when the
//! tracker saw an abrupt motion (the face was missing, the box jumped or changed size
//! or shape), before the track is decided, and every `every_frames` frames. Frames since
//! the last comparison are provisional: they count for the track (best frame, good
//! frames, the debounce of the person it was decided as) only once a clear face
//! confirms it. Another face ends the track (it is decided on its confirmed frames) and
//! starts a new one. Cost per frame: one detection plus at most `per_frame` appearance
//! embeddings (plus the identification of a track being decided, as before).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;

use super::options::{RecognizerOptions, TrackCheck};
use super::source::Frame;
use super::tracker::{Match, Motion, Track, Tracker};
use super::Error;
use crate::gallery::{Gallery, Sighting, Visit};
use crate::store::VisitRecord;
use crate::vision::{frontalness, similarity, BoundingBox, Detection, Embedding};

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
    /// Tracks found unknown identified again on a better frame.
    pub retried: u64,
    /// Of those, recognized on a retry (they would have been reported as unknown).
    pub recognized_on_retry: u64,
    /// Appearance comparisons of a track's face with the face it started with.
    pub track_checks: u64,
    /// Of those, another person's face: the track ended and a new one started.
    pub track_splits: u64,
}

struct Candidate {
    score: f32,
    frame: Arc<RgbImage>,
    detection: Detection,
}

/// A track identified as unknown, not reported yet.
struct Pending {
    sighting: Sighting,
    /// Candidate score of the frame last identified.
    tried_score: f32,
    retries_left: u32,
    /// When the track was first identified as unknown (frame time).
    first_ms: u64,
}

#[derive(Default)]
struct TrackState {
    /// Confirmed frames with a large-enough face.
    good_frames: u32,
    /// The best confirmed frame.
    best: Option<Candidate>,
    decided: Option<Label>,
    user_id: Option<String>,
    pending: Option<Pending>,
    /// The appearance of the track's clearest face so far and its candidate score.
    identity: Option<(Embedding, f32)>,
    /// Good frames since the last confirmation (see the module doc).
    provisional_good: u32,
    provisional_best: Option<Candidate>,
    /// Frames (with a face of any size) were seen since the last confirmation.
    unconfirmed: bool,
    /// An abrupt motion was seen and no clear face has been compared since.
    check_due: bool,
    /// Detection frames since the last comparison.
    since_check: u32,
}

impl TrackState {
    /// Adds a frame (its `candidate`, `None` when the face is too small) to the
    /// confirmed frames or to the provisional ones.
    fn add_frame(&mut self, candidate: Option<Candidate>, confirmed: bool) {
        let (count, best) = if confirmed {
            (&mut self.good_frames, &mut self.best)
        } else {
            self.unconfirmed = true;
            (&mut self.provisional_good, &mut self.provisional_best)
        };
        if let Some(c) = candidate {
            *count += 1;
            if best.as_ref().is_none_or(|b| c.score > b.score) {
                *best = Some(c);
            }
        }
    }

    /// The provisional frames show the track's face: they count from now on.
    fn confirm(&mut self) {
        self.good_frames += std::mem::take(&mut self.provisional_good);
        if let Some(c) = self.provisional_best.take() {
            if self.best.as_ref().is_none_or(|b| c.score > b.score) {
                self.best = Some(c);
            }
        }
        self.unconfirmed = false;
        self.check_due = false;
        self.since_check = 0;
    }
}

/// What a look at a track's face found.
enum Verdict {
    /// The same face as the track's (or the first clear face of the track).
    Same(Embedding),
    /// Another person's face.
    Other(Embedding),
    /// Too blurred or not alignable, or not looked at: tells nothing.
    Unclear,
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
        let mut update = self.tracker.update(&detections, meta.timestamp_ms);
        // Abrupt motions first: they are the likeliest to be another person, and the
        // per-frame budget of checks goes to them.
        update.matched.sort_by_key(|m| match m.motion {
            Motion::Abrupt => 0,
            Motion::New => 1,
            Motion::Steady => 2,
        });
        let mut budget = self.options.track_check.map_or(0, |c| c.per_frame);
        let mut emitted = Vec::new();
        let mut ended = std::mem::take(&mut update.ended);
        for m in update.matched {
            let detection = &detections[m.detection];
            let (track_id, split) = self.follow(m, detection, &image, &meta, &mut budget)?;
            if let Some(track) = split {
                ended.push(track);
            }
            let Some(state) = self.states.get_mut(&track_id) else {
                continue;
            };
            if state.decided.is_some() {
                continue;
            }
            let o = &self.options;
            let due = match &state.pending {
                None => state.good_frames >= o.decide_frames && state.best.is_some(),
                Some(p) => {
                    state
                        .best
                        .as_ref()
                        .is_some_and(|b| b.score >= p.tried_score * o.unknown_retry_gain)
                        || meta.timestamp_ms.saturating_sub(p.first_ms) >= o.unknown_retry_ms
                }
            };
            if due {
                emitted.extend(self.decide(track_id, &meta, false)?);
            }
        }
        for track in ended {
            emitted.extend(self.end_track(&track, &meta)?);
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
            emitted.extend(self.end_track(&track, &meta)?);
        }
        self.states.clear();
        self.view.1.clear();
        Ok(emitted)
    }

    /// Continues track `m.track` with `detection`: looks at the face when due, then
    /// counts the frame as confirmed or provisional, or ends the track when the face is
    /// another person's and starts a new track with it. Returns the track the detection
    /// belongs to now, and the ended track.
    fn follow(
        &mut self,
        m: Match,
        detection: &Detection,
        image: &Arc<RgbImage>,
        meta: &FrameMeta,
        budget: &mut u32,
    ) -> Result<(u64, Option<Track>), Error> {
        let o = &self.options;
        let face_px = detection.bbox.width.max(detection.bbox.height);
        let good = face_px >= o.min_face_px;
        let candidate = good.then(|| Candidate {
            score: candidate_score(detection),
            frame: image.clone(),
            detection: detection.clone(),
        });
        let mut state = self.states.remove(&m.track).unwrap_or_default();
        state.since_check = state.since_check.saturating_add(1);
        if m.motion == Motion::Abrupt {
            state.check_due = true;
        }
        let verdict = match o.track_check {
            Some(check) if good && *budget > 0 && Self::wants_look(&state, &check, o) => {
                *budget -= 1;
                self.look(
                    image,
                    detection,
                    state.identity.as_ref().map(|i| &i.0),
                    &check,
                )?
            }
            _ => Verdict::Unclear,
        };
        let score = candidate.as_ref().map_or(0.0, |c| c.score);
        match verdict {
            Verdict::Same(embedding) => {
                if state.identity.as_ref().is_none_or(|i| score > i.1) {
                    state.identity = Some((embedding, score));
                }
                state.confirm();
                state.add_frame(candidate, true);
            }
            Verdict::Other(embedding) => {
                self.decisions.track_splits += 1;
                tracing::debug!(track = m.track, "another face in the track's place");
                if let Some((ended, new_id)) =
                    self.tracker.restart(m.track, detection, meta.timestamp_ms)
                {
                    self.states.insert(m.track, state);
                    let mut fresh = TrackState {
                        identity: Some((embedding, score)),
                        ..TrackState::default()
                    };
                    fresh.add_frame(candidate, true);
                    self.states.insert(new_id, fresh);
                    return Ok((new_id, Some(ended)));
                }
            }
            // Nothing contradicts a track without a clear face yet.
            Verdict::Unclear if state.identity.is_none() => state.add_frame(candidate, true),
            Verdict::Unclear => state.add_frame(candidate, false),
        }
        if !state.unconfirmed {
            if let Some(user_id) = &state.user_id {
                // A decided person still in view keeps their debounce window open, as
                // long as the face in view is theirs.
                self.last_seen.insert(user_id.clone(), meta.timestamp_ms);
            }
        }
        self.states.insert(m.track, state);
        Ok((m.track, None))
    }

    /// Whether a track's (large-enough) face is due for a comparison.
    fn wants_look(state: &TrackState, check: &TrackCheck, o: &RecognizerOptions) -> bool {
        let about_to_decide = state.decided.is_none()
            && state.good_frames + state.provisional_good + 1 >= o.decide_frames;
        state.identity.is_none()
            || state.check_due
            || state.since_check >= check.every_frames
            || about_to_decide
    }

    /// Compares the face of `detection` with the track's `identity`.
    fn look(
        &mut self,
        image: &RgbImage,
        detection: &Detection,
        identity: Option<&Embedding>,
        check: &TrackCheck,
    ) -> Result<Verdict, Error> {
        self.decisions.track_checks += 1;
        let Some(seen) = self.gallery.face_appearance(image, detection)? else {
            return Ok(Verdict::Unclear);
        };
        if seen.sharpness < check.min_sharpness {
            return Ok(Verdict::Unclear);
        }
        Ok(match identity {
            Some(id) if similarity(seen.embedding.cosine(id)) < check.same_face => {
                Verdict::Other(seen.embedding)
            }
            _ => Verdict::Same(seen.embedding),
        })
    }

    /// A track left (or was split off): its provisional best frame is compared with
    /// its face once more, then the track is decided if it was not yet.
    fn end_track(&mut self, track: &Track, at: &FrameMeta) -> Result<Option<Emitted>, Error> {
        let Some(mut state) = self.states.remove(&track.id) else {
            return Ok(None);
        };
        if let (Some(check), Some(c), Some((identity, _))) = (
            self.options.track_check,
            state.provisional_best.as_ref(),
            state.identity.as_ref(),
        ) {
            if state.decided.is_none() {
                let (frame, detection, identity) =
                    (c.frame.clone(), c.detection.clone(), identity.clone());
                if let Verdict::Same(_) = self.look(&frame, &detection, Some(&identity), &check)? {
                    state.confirm();
                }
            }
        }
        self.states.insert(track.id, state);
        let emitted = if self.is_undecided(track.id) {
            self.decide(track.id, at, true)?
        } else {
            None
        };
        self.states.remove(&track.id);
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

    /// A track with a frame to identify or an unknown result not yet reported.
    fn is_undecided(&self, track_id: u64) -> bool {
        self.states
            .get(&track_id)
            .is_some_and(|s| s.decided.is_none() && (s.best.is_some() || s.pending.is_some()))
    }

    /// Identifies the track's best frame (the first time, or on a retry when it is
    /// clearly better than the frame last tried) and reports the visit when the result
    /// is final: known, or unknown with no retry left, past `unknown_retry_ms`, or on
    /// the `last_chance` (the track ended).
    fn decide(
        &mut self,
        track_id: u64,
        at: &FrameMeta,
        last_chance: bool,
    ) -> Result<Option<Emitted>, Error> {
        let (gain, retries, retry_ms) = (
            self.options.unknown_retry_gain,
            self.options.unknown_retries,
            self.options.unknown_retry_ms,
        );
        let Some(state) = self.states.get_mut(&track_id) else {
            return Ok(None);
        };
        let mut pending = state.pending.take();
        let candidate = state.best.take_if(|c| match &pending {
            None => true,
            Some(p) => p.retries_left > 0 && c.score >= p.tried_score * gain,
        });
        if let Some(candidate) = candidate {
            let retry = pending.is_some();
            if retry {
                self.decisions.retried += 1;
            }
            let o = &self.options;
            let sighting = self.gallery.identify_detection(
                &o.client,
                &o.gallery,
                &candidate.frame,
                candidate.detection,
            )?;
            match sighting {
                Some(known) if known.user.is_some() => {
                    if retry {
                        self.decisions.recognized_on_retry += 1;
                    }
                    return self.report(track_id, known, at);
                }
                Some(unknown) => {
                    pending = Some(Pending {
                        sighting: unknown,
                        tried_score: candidate.score,
                        retries_left: pending
                            .as_ref()
                            .map_or(retries, |p| p.retries_left.saturating_sub(1)),
                        first_ms: pending.as_ref().map_or(at.timestamp_ms, |p| p.first_ms),
                    });
                }
                // The face could not be aligned: the earlier result stands.
                None => {}
            }
        }
        let Some(p) = pending else {
            // Nothing usable was identified: no visit for this track.
            if let Some(state) = self.states.get_mut(&track_id) {
                state.decided = Some(Label::Unknown);
            }
            return Ok(None);
        };
        let expired = at.timestamp_ms.saturating_sub(p.first_ms) >= retry_ms;
        if last_chance || p.retries_left == 0 || expired {
            return self.report(track_id, p.sighting, at);
        }
        if let Some(state) = self.states.get_mut(&track_id) {
            state.pending = Some(p);
        }
        Ok(None)
    }

    /// Decides the track on `sighting`: debounces known people, rate-limits unknown
    /// ones, and records the visit.
    fn report(
        &mut self,
        track_id: u64,
        sighting: Sighting,
        at: &FrameMeta,
    ) -> Result<Option<Emitted>, Error> {
        let o = &self.options;
        let now = at.timestamp_ms;
        let Some(state) = self.states.get_mut(&track_id) else {
            return Ok(None);
        };
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
        let visit = self.gallery.record_visit(
            VisitRecord {
                client: o.client.clone(),
                gallery: o.gallery.clone(),
                device_id: o.device_id.clone(),
                user_id,
                user_name,
                similarity: sighting.similarity,
                mask: sighting.masked,
                timestamp_ms: now,
                face_jpeg: sighting.face_jpeg,
            },
            o.publish_face,
        )?;
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
