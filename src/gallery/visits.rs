//! Camera kiosk use cases: the faces in a frame, identifying one of them, and the visit
//! history (stored in LMDB, bounded, and broadcast to live listeners such as the
//! Server-Sent Events stream). Nothing here knows where frames come from.

use base64::Engine;
use image::RgbImage;
use serde_json::{json, Value};

use super::ops::{b64, Op, OpKind};
use super::{crop, Change, Error, Gallery};
use crate::store::VisitRecord;
use crate::vision::{Detection, Quality};

/// Live visits kept for slow listeners before they lag (they then re-read the store).
pub(super) const BROADCAST_CAPACITY: usize = 256;

/// Side of the face thumbnail attached to each visit.
const THUMBNAIL_PX: u32 = 96;

/// Largest face JPEG sent in a `recognized` event (a 96 px thumbnail is a few KiB); a
/// larger one is left out of the event (it stays in the local visit history).
pub const MAX_EVENT_FACE_BYTES: usize = 32 * 1024;

/// A visit as the sync outbox publishes it: a `recognized` device event.
#[derive(Clone, Copy, PartialEq)]
pub(crate) struct VisitEvent<'a> {
    pub record: &'a VisitRecord,
    /// Attach the face JPEG (when at most [`MAX_EVENT_FACE_BYTES`]).
    pub publish_face: bool,
}

impl std::fmt::Debug for VisitEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.record;
        f.debug_struct("VisitEvent")
            .field("client", &r.client)
            .field("gallery", &r.gallery)
            .field("user_id", &r.user_id)
            .field("similarity", &r.similarity)
            .field("face_bytes", &r.face_jpeg.len())
            .field("publish_face", &self.publish_face)
            .finish()
    }
}

impl VisitEvent<'_> {
    /// The `recognized` operation of this visit from device `origin` (docs/sync.md):
    /// versioned by the capture time; it touches no entity version, since receivers
    /// do not apply it.
    pub(super) fn op(&self, origin: &str, model: &str) -> Op {
        let r = self.record;
        let face_jpeg = (self.publish_face
            && !r.face_jpeg.is_empty()
            && r.face_jpeg.len() <= MAX_EVENT_FACE_BYTES)
            .then(|| b64().encode(&r.face_jpeg));
        let kind = OpKind::Recognized {
            user_id: r.user_id.clone(),
            user_name: r.user_name.clone(),
            similarity: (r.similarity * 10_000.0).round() / 10_000.0,
            mask: r.mask,
            face_jpeg,
        };
        Op {
            ts: r.timestamp_ms / 1000,
            ..Op::new(origin, model, &r.client, &r.gallery, r.timestamp_ms, kind)
        }
    }
}

/// One face of a frame, recognized (or not) against a gallery.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    /// (user_id, user_name) when the best match reaches the identify threshold.
    pub user: Option<(String, String)>,
    /// Calibrated similarity of the best match (0 when the gallery is empty).
    pub similarity: f32,
    pub masked: bool,
    pub quality: Quality,
    /// A small JPEG of the aligned face.
    pub face_jpeg: Vec<u8>,
}

/// A stored visit with its sequence number (the SSE event id).
#[derive(Clone, Debug, PartialEq)]
pub struct Visit {
    pub id: u64,
    pub record: VisitRecord,
}

impl Visit {
    /// The event as listeners receive it (SSE data; the MQTT payload of issue 4).
    pub fn to_json(&self) -> Value {
        use base64::Engine;
        let r = &self.record;
        json!({
            "id": self.id,
            "user_id": r.user_id,
            "user_name": r.user_name,
            "similarity": (f64::from(r.similarity) * 10_000.0).round() / 10_000.0,
            "mask": r.mask,
            "timestamp": rfc3339_millis(r.timestamp_ms),
            "timestamp_ms": r.timestamp_ms,
            "device_id": r.device_id,
            "client": r.client,
            "facegallery_id": r.gallery,
            "face_jpeg": b64().encode(&r.face_jpeg),
        })
    }
}

impl Gallery {
    /// Faces in a camera frame, largest first, without recognition (no far-face
    /// retry: see [`crate::vision::Pipeline::detect_near`]).
    pub fn detect_faces(&self, frame: &RgbImage) -> Result<Vec<Detection>, Error> {
        self.pipeline.detect_near(frame).map_err(Error::Vision)
    }

    /// The appearance embedding of `detection` (found by [`Gallery::detect_faces`] in
    /// `frame`), for telling whether two detections show the same face; `None` when
    /// the face cannot be aligned. Searches nothing and writes nothing.
    pub fn face_appearance(
        &self,
        frame: &RgbImage,
        detection: &Detection,
    ) -> Result<Option<crate::vision::Appearance>, Error> {
        self.pipeline
            .appearance(frame, detection)
            .map_err(Error::Vision)
    }

    /// Analyses `detection` (found by [`Gallery::detect_faces`] in `frame`) and searches
    /// the gallery for it. `None` when the face cannot be aligned.
    pub fn identify_detection(
        &self,
        client: &str,
        gallery: &str,
        frame: &RgbImage,
        detection: Detection,
    ) -> Result<Option<Sighting>, Error> {
        self.require_gallery(client, gallery)?;
        let Some(face) = self
            .pipeline
            .analyze_detection(frame, detection)
            .map_err(Error::Vision)?
        else {
            return Ok(None);
        };
        let found = self.search_index(
            client,
            gallery,
            &face.embedding.0,
            self.pipeline.identify_candidates(1),
        )?;
        let cosines: Vec<f32> = found.iter().map(|m| m.cosine).collect();
        let similarity = self
            .pipeline
            .identify_scores(&cosines, self.index().users(client, gallery))
            .first()
            .copied()
            .unwrap_or(0.0);
        let best = found.into_iter().next();
        let mut user = None;
        if let Some(found) = best.filter(|_| similarity >= self.settings.identify_threshold) {
            // A user deleted between the search and this read is no match.
            if let Some(record) = self
                .store
                .read(|r| r.user(client, gallery, &found.user_id))?
            {
                user = Some((found.user_id.to_string(), record.user_name));
            }
        }
        let thumbnail = image::imageops::resize(
            &face.aligned,
            THUMBNAIL_PX,
            THUMBNAIL_PX,
            image::imageops::FilterType::Triangle,
        );
        Ok(Some(Sighting {
            user,
            similarity,
            masked: face.masked,
            quality: face.quality,
            face_jpeg: crop::encode(&thumbnail)?,
        }))
    }

    /// Stores a visit (pruning the oldest beyond `camera.history`) and then tells live
    /// listeners. The store write goes through the same path as every other change: with
    /// sync on, the visit's `recognized` event enters the outbox in the same transaction
    /// (with the face JPEG when `publish_face`, bounded by [`MAX_EVENT_FACE_BYTES`]).
    pub fn record_visit(&self, record: VisitRecord, publish_face: bool) -> Result<Visit, Error> {
        let keep = self.settings.visit_history;
        let id = self.writes.commit(|tx| {
            let id = tx.add_visit(&record, keep)?;
            tx.publish(Change::Visit(VisitEvent {
                record: &record,
                publish_face,
            }))?;
            Ok(id)
        })?;
        let visit = Visit { id, record };
        // No receiver (nobody listening) is not an error.
        let _ = self.visits.send(visit.clone());
        Ok(visit)
    }

    /// Live visits from now on (see [`Gallery::record_visit`]).
    pub fn subscribe_visits(&self) -> tokio::sync::broadcast::Receiver<Visit> {
        self.visits.subscribe()
    }

    /// Stored visits with an id above `after`, oldest first, at most `limit`.
    pub fn visits_after(&self, after: u64, limit: usize) -> Result<Vec<Visit>, Error> {
        let rows = self.store.read(|r| r.visits_after(after, limit))?;
        Ok(rows
            .into_iter()
            .map(|(id, record)| Visit { id, record })
            .collect())
    }

    /// Stored visits captured at or after `since_ms`, oldest first, at most `limit`.
    pub fn visits_since(&self, since_ms: u64, limit: usize) -> Result<Vec<Visit>, Error> {
        let rows = self.store.read(|r| r.visits_since(since_ms, limit))?;
        Ok(rows
            .into_iter()
            .map(|(id, record)| Visit { id, record })
            .collect())
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC (`2026-11-25T20:06:36.123Z`).
pub fn rfc3339_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(face_bytes: usize) -> VisitRecord {
        VisitRecord {
            client: "kiosk".into(),
            gallery: "door".into(),
            device_id: "door-1".into(),
            user_id: None,
            user_name: None,
            similarity: 0.612_345,
            mask: true,
            timestamp_ms: 1_795_639_580_300,
            face_jpeg: vec![0xFF; face_bytes],
        }
    }

    #[test]
    fn a_visit_is_a_recognized_event_with_a_bounded_optional_face() {
        let record = visit(3000);
        let op = VisitEvent {
            record: &record,
            publish_face: true,
        }
        .op("door-1", "m1");
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(json["op"], "recognized");
        assert_eq!(
            (json["origin"].as_str(), json["model"].as_str()),
            (Some("door-1"), Some("m1"))
        );
        assert_eq!(json["version"], 1_795_639_580_300u64);
        assert_eq!(json["ts"], 1_795_639_580u64);
        assert!(json["user_id"].is_null() && json["user_name"].is_null());
        assert_eq!(json["mask"], true);
        assert!((json["similarity"].as_f64().unwrap() - 0.6123).abs() < 1e-6);
        assert_eq!(json["face_jpeg"].as_str().unwrap().len(), 4000);
        // The same JSON reads back as the same operation (what peers parse).
        assert_eq!(serde_json::from_value::<Op>(json).unwrap(), op);

        for (record, publish_face) in [
            (visit(3000), false),
            (visit(MAX_EVENT_FACE_BYTES + 1), true),
        ] {
            let op = VisitEvent {
                record: &record,
                publish_face,
            }
            .op("door-1", "m1");
            let json = serde_json::to_value(&op).unwrap();
            assert!(json.get("face_jpeg").is_none(), "{publish_face}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_637_196_123),
            "2026-11-25T20:06:36.123Z"
        );
    }
}
