//! Tracking faces across frames by position: a detection continues the track whose
//! last box it overlaps most (intersection over union at least the threshold, or its
//! centre inside that box); a track not seen for the timeout has left.
//!
//! Position alone cannot tell two people apart who take the same spot one after the
//! other (a queue at a door): each continuation also says how it moved ([`Motion`]), so
//! that the recognizer looks at the face again when the box jumped, changed size or
//! shape abruptly, or the face had been missing; when the recognizer finds another face,
//! it [`Tracker::restart`]s the track.

use crate::vision::{BoundingBox, Detection, Keypoints, Point};

#[derive(Clone, Debug, PartialEq)]
pub struct Track {
    pub id: u64,
    pub bbox: BoundingBox,
    /// The keypoints of the last detection, relative to its box (box sides).
    layout: [Point; 4],
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// How a detection continued its track since the track's previous detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Motion {
    /// The detection started the track.
    New,
    /// Moved and grew as one face does between two frames.
    Steady,
    /// Missing on the previous frame, or the box jumped, shrank or grew, or the face's
    /// keypoint layout changed beyond what one face does between two frames: perhaps
    /// another person in the same place.
    Abrupt,
}

/// One detection and the track it belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Match {
    pub track: u64,
    /// Index into the frame's detections.
    pub detection: usize,
    pub motion: Motion,
}

#[derive(Debug)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u64,
    min_iou: f32,
    timeout_ms: u64,
    /// Capture time of the previous update (a track not seen then was missing).
    previous_ms: Option<u64>,
}

/// What one frame's detections did to the tracks.
#[derive(Debug, Default, PartialEq)]
pub struct Update {
    pub matched: Vec<Match>,
    /// Tracks that have left (not seen for the timeout).
    pub ended: Vec<Track>,
}

/// Largest centre shift between two frames of one face, in sides of its previous box.
const MAX_STEADY_SHIFT: f32 = 0.25;
/// Largest change of the box side between two frames of one face (ratio).
const MAX_STEADY_GROWTH: f32 = 1.25;
/// Largest mean change of the keypoint layout between two frames of one face (box
/// sides): a face turning a little moves its keypoints by a few hundredths.
const MAX_STEADY_LAYOUT: f32 = 0.06;

fn contains_centre(outer: &BoundingBox, inner: &BoundingBox) -> bool {
    let c = inner.center();
    c.x >= outer.x
        && c.x <= outer.x + outer.width
        && c.y >= outer.y
        && c.y <= outer.y + outer.height
}

/// Eyes, nose tip and mouth relative to the box, in box sides.
fn layout(bbox: &BoundingBox, k: &Keypoints) -> [Point; 4] {
    let side = bbox.width.max(bbox.height).max(1.0);
    [k.right_eye, k.left_eye, k.nose_tip, k.mouth].map(|p| Point {
        x: (p.x - bbox.x) / side,
        y: (p.y - bbox.y) / side,
    })
}

fn side(b: &BoundingBox) -> f32 {
    b.width.max(b.height).max(1.0)
}

/// Whether `det` continues `track` as the same face would between consecutive frames.
fn is_steady(track: &Track, det: &Detection) -> bool {
    let (a, b) = (track.bbox, det.bbox);
    let (ca, cb) = (a.center(), b.center());
    let shift = ((ca.x - cb.x).powi(2) + (ca.y - cb.y).powi(2)).sqrt() / side(&a);
    let growth = side(&b) / side(&a);
    let new_layout = layout(&b, &det.keypoints);
    let layout_change = track
        .layout
        .iter()
        .zip(&new_layout)
        .map(|(p, q)| ((p.x - q.x).powi(2) + (p.y - q.y).powi(2)).sqrt())
        .sum::<f32>()
        / 4.0;
    shift <= MAX_STEADY_SHIFT
        && (1.0 / MAX_STEADY_GROWTH..=MAX_STEADY_GROWTH).contains(&growth)
        && layout_change <= MAX_STEADY_LAYOUT
}

impl Tracker {
    pub fn new(min_iou: f32, timeout_ms: u64) -> Tracker {
        Tracker {
            tracks: Vec::new(),
            next_id: 1,
            min_iou,
            timeout_ms,
            previous_ms: None,
        }
    }

    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Assigns `detections` (of a frame captured at `now_ms`) to tracks, greedily by
    /// overlap; unassigned detections start new tracks.
    pub fn update(&mut self, detections: &[Detection], now_ms: u64) -> Update {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            for (d, det) in detections.iter().enumerate() {
                let iou = track.bbox.iou(&det.bbox);
                let near = contains_centre(&track.bbox, &det.bbox)
                    || contains_centre(&det.bbox, &track.bbox);
                if iou >= self.min_iou || near {
                    pairs.push((iou, t, d));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_used = vec![false; self.tracks.len()];
        let mut det_used = vec![false; detections.len()];
        let mut update = Update::default();
        let previous_ms = self.previous_ms.replace(now_ms);
        for (_, t, d) in pairs {
            if track_used[t] || det_used[d] {
                continue;
            }
            track_used[t] = true;
            det_used[d] = true;
            let track = &mut self.tracks[t];
            let det = &detections[d];
            let was_missing = previous_ms.is_some_and(|p| track.last_seen_ms < p);
            let motion = if !was_missing && is_steady(track, det) {
                Motion::Steady
            } else {
                Motion::Abrupt
            };
            track.bbox = det.bbox;
            track.layout = layout(&det.bbox, &det.keypoints);
            track.last_seen_ms = now_ms;
            update.matched.push(Match {
                track: track.id,
                detection: d,
                motion,
            });
        }
        let timeout = self.timeout_ms;
        let (alive, ended): (Vec<Track>, Vec<Track>) = std::mem::take(&mut self.tracks)
            .into_iter()
            .partition(|t| now_ms.saturating_sub(t.last_seen_ms) <= timeout);
        self.tracks = alive;
        update.ended = ended;
        for (d, det) in detections.iter().enumerate() {
            if det_used[d] {
                continue;
            }
            let id = self.start(det, now_ms);
            update.matched.push(Match {
                track: id,
                detection: d,
                motion: Motion::New,
            });
        }
        update
    }

    fn start(&mut self, det: &Detection, now_ms: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.tracks.push(Track {
            id,
            bbox: det.bbox,
            layout: layout(&det.bbox, &det.keypoints),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
        });
        id
    }

    /// Ends track `id` and starts a new one with `det` (the detection that continued it
    /// in the frame captured at `now_ms`, found to show another face). Returns the ended
    /// track and the new track's id; `None` when `id` is not a track.
    pub fn restart(&mut self, id: u64, det: &Detection, now_ms: u64) -> Option<(Track, u64)> {
        let at = self.tracks.iter().position(|t| t.id == id)?;
        let ended = self.tracks.remove(at);
        Some((ended, self.start(det, now_ms)))
    }

    /// Ends every track (the source ended).
    pub fn end_all(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face box at (x, y) with keypoints where a frontal face has them.
    fn det(x: f32, y: f32, side: f32) -> Detection {
        let at = |u: f32, v: f32| Point {
            x: x + u * side,
            y: y + v * side,
        };
        Detection {
            bbox: BoundingBox {
                x,
                y,
                width: side,
                height: side,
            },
            score: 0.9,
            keypoints: Keypoints {
                right_eye: at(0.3, 0.35),
                left_eye: at(0.7, 0.35),
                nose_tip: at(0.5, 0.55),
                mouth: at(0.5, 0.75),
                right_ear: at(0.05, 0.4),
                left_ear: at(0.95, 0.4),
            },
        }
    }

    fn only(u: &Update) -> Match {
        assert_eq!(u.matched.len(), 1, "{u:?}");
        u.matched[0]
    }

    #[test]
    fn a_face_growing_and_moving_towards_the_camera_stays_one_steady_track() {
        let mut tracker = Tracker::new(0.3, 1000);
        let mut ids = Vec::new();
        for i in 0..12 {
            let side = 80.0 + 12.0 * i as f32;
            let u = tracker.update(&[det(100.0 + 10.0 * i as f32, 120.0, side)], 100 * i);
            let m = only(&u);
            ids.push(m.track);
            let expected = if i == 0 { Motion::New } else { Motion::Steady };
            assert_eq!(m.motion, expected, "frame {i}");
            assert!(u.ended.is_empty());
        }
        assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");
    }

    #[test]
    fn two_people_side_by_side_are_two_tracks() {
        let mut tracker = Tracker::new(0.3, 1000);
        let first = tracker.update(&[det(50.0, 100.0, 120.0), det(400.0, 100.0, 120.0)], 0);
        let second = tracker.update(&[det(410.0, 100.0, 125.0), det(55.0, 100.0, 125.0)], 100);
        let id_of = |u: &Update, d: usize| *u.matched.iter().find(|m| m.detection == d).unwrap();
        assert_ne!(id_of(&first, 0).track, id_of(&first, 1).track);
        assert_eq!(id_of(&second, 1).track, id_of(&first, 0).track);
        assert_eq!(id_of(&second, 0).track, id_of(&first, 1).track);
        assert_eq!(id_of(&second, 0).motion, Motion::Steady);
    }

    #[test]
    fn a_track_ends_after_the_timeout_and_a_returning_face_starts_a_new_one() {
        let mut tracker = Tracker::new(0.3, 500);
        let a = only(&tracker.update(&[det(100.0, 100.0, 150.0)], 0)).track;
        assert!(tracker.update(&[], 400).ended.is_empty());
        let u = tracker.update(&[], 600);
        assert_eq!(u.ended.len(), 1);
        assert_eq!(u.ended[0].id, a);
        let b = only(&tracker.update(&[det(100.0, 100.0, 150.0)], 700)).track;
        assert_ne!(a, b);
    }

    #[test]
    fn a_face_back_after_missing_frames_continues_its_track_as_an_abrupt_motion() {
        let mut tracker = Tracker::new(0.3, 1000);
        let a = only(&tracker.update(&[det(100.0, 100.0, 150.0)], 0)).track;
        tracker.update(&[], 100);
        tracker.update(&[], 200);
        let m = only(&tracker.update(&[det(100.0, 100.0, 150.0)], 300));
        assert_eq!((m.track, m.motion), (a, Motion::Abrupt));
    }

    #[test]
    fn a_large_face_followed_at_once_by_a_small_one_in_its_place_is_abrupt() {
        let mut tracker = Tracker::new(0.3, 1000);
        let a = only(&tracker.update(&[det(100.0, 100.0, 250.0)], 0)).track;
        // Another person's small face, its centre inside the previous box.
        let m = only(&tracker.update(&[det(180.0, 180.0, 110.0)], 100));
        assert_eq!((m.track, m.motion), (a, Motion::Abrupt));
    }

    #[test]
    fn keypoints_rearranged_in_the_same_box_are_abrupt() {
        let mut tracker = Tracker::new(0.3, 1000);
        tracker.update(&[det(100.0, 100.0, 200.0)], 0);
        let mut other = det(102.0, 100.0, 200.0);
        other.keypoints.right_eye.x += 30.0;
        other.keypoints.left_eye.x += 30.0;
        other.keypoints.nose_tip.x += 30.0;
        other.keypoints.mouth.y -= 25.0;
        assert_eq!(only(&tracker.update(&[other], 100)).motion, Motion::Abrupt);
    }

    #[test]
    fn a_restarted_track_ends_and_its_detection_starts_a_new_track() {
        let mut tracker = Tracker::new(0.3, 1000);
        let d = det(100.0, 100.0, 200.0);
        let a = only(&tracker.update(std::slice::from_ref(&d), 0)).track;
        let (ended, b) = tracker.restart(a, &d, 0).unwrap();
        assert_eq!(ended.id, a);
        assert_ne!(a, b);
        assert_eq!(tracker.tracks().len(), 1);
        assert_eq!(tracker.tracks()[0].id, b);
        let m = only(&tracker.update(&[det(104.0, 100.0, 204.0)], 100));
        assert_eq!((m.track, m.motion), (b, Motion::Steady));
        assert!(tracker.restart(a, &d, 100).is_none());
    }
}
