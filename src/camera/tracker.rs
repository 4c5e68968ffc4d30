//! Tracking faces across frames by position: a detection continues the track whose
//! last box it overlaps most (intersection over union at least the threshold, or its
//! centre inside that box); a track not seen for the timeout has left.

use crate::vision::{BoundingBox, Detection};

#[derive(Clone, Debug, PartialEq)]
pub struct Track {
    pub id: u64,
    pub bbox: BoundingBox,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

#[derive(Debug)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u64,
    min_iou: f32,
    timeout_ms: u64,
}

/// What one frame's detections did to the tracks.
#[derive(Debug, Default, PartialEq)]
pub struct Update {
    /// (track id, index into the frame's detections).
    pub matched: Vec<(u64, usize)>,
    /// Tracks that have left (not seen for the timeout).
    pub ended: Vec<Track>,
}

fn contains_centre(outer: &BoundingBox, inner: &BoundingBox) -> bool {
    let c = inner.center();
    c.x >= outer.x
        && c.x <= outer.x + outer.width
        && c.y >= outer.y
        && c.y <= outer.y + outer.height
}

impl Tracker {
    pub fn new(min_iou: f32, timeout_ms: u64) -> Tracker {
        Tracker {
            tracks: Vec::new(),
            next_id: 1,
            min_iou,
            timeout_ms,
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
        for (_, t, d) in pairs {
            if track_used[t] || det_used[d] {
                continue;
            }
            track_used[t] = true;
            det_used[d] = true;
            let track = &mut self.tracks[t];
            track.bbox = detections[d].bbox;
            track.last_seen_ms = now_ms;
            update.matched.push((track.id, d));
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
            let id = self.next_id;
            self.next_id += 1;
            self.tracks.push(Track {
                id,
                bbox: det.bbox,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
            });
            update.matched.push((id, d));
        }
        update
    }

    /// Ends every track (the source ended).
    pub fn end_all(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::{Keypoints, Point};

    fn det(x: f32, y: f32, side: f32) -> Detection {
        let p = Point::default();
        Detection {
            bbox: BoundingBox {
                x,
                y,
                width: side,
                height: side,
            },
            score: 0.9,
            keypoints: Keypoints {
                right_eye: p,
                left_eye: p,
                nose_tip: p,
                mouth: p,
                right_ear: p,
                left_ear: p,
            },
        }
    }

    #[test]
    fn a_face_growing_and_moving_towards_the_camera_stays_one_track() {
        let mut tracker = Tracker::new(0.3, 1000);
        let mut ids = Vec::new();
        for i in 0..12 {
            let side = 80.0 + 12.0 * i as f32;
            let u = tracker.update(&[det(100.0 + 10.0 * i as f32, 120.0, side)], 100 * i);
            ids.push(u.matched[0].0);
            assert!(u.ended.is_empty());
        }
        assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");
    }

    #[test]
    fn two_people_side_by_side_are_two_tracks() {
        let mut tracker = Tracker::new(0.3, 1000);
        let first = tracker.update(&[det(50.0, 100.0, 120.0), det(400.0, 100.0, 120.0)], 0);
        let second = tracker.update(&[det(410.0, 100.0, 125.0), det(55.0, 100.0, 125.0)], 100);
        let id_of = |u: &Update, d: usize| u.matched.iter().find(|m| m.1 == d).unwrap().0;
        assert_ne!(id_of(&first, 0), id_of(&first, 1));
        assert_eq!(id_of(&second, 1), id_of(&first, 0));
        assert_eq!(id_of(&second, 0), id_of(&first, 1));
    }

    #[test]
    fn a_track_ends_after_the_timeout_and_a_returning_face_starts_a_new_one() {
        let mut tracker = Tracker::new(0.3, 500);
        let a = tracker.update(&[det(100.0, 100.0, 150.0)], 0).matched[0].0;
        assert!(tracker.update(&[], 400).ended.is_empty());
        let u = tracker.update(&[], 600);
        assert_eq!(u.ended.len(), 1);
        assert_eq!(u.ended[0].id, a);
        let b = tracker.update(&[det(100.0, 100.0, 150.0)], 700).matched[0].0;
        assert_ne!(a, b);
    }
}
