//! The replicated operations' wire shape (docs/sync.md): what devices and the central
//! server exchange, and how templates travel. How operations are applied lives in
//! `replica.rs`.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::store::{self, TemplateRecord};

/// Version of the operation format.
pub const PROTOCOL_VERSION: u32 = 1;

/// One replicated operation; the same shape travels device -> central (events) and
/// central -> device (gallery operations).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub v: u32,
    /// Unique id (UUID v4); a device applies an id once.
    pub op_id: String,
    /// Device id (or central name) that produced the operation.
    pub origin: String,
    /// Per-user (or per-gallery) order: milliseconds since the epoch, raised above the
    /// last version the origin knew for that entity.
    pub version: u64,
    /// Seconds since the epoch when the operation was produced.
    pub ts: u64,
    pub client: String,
    pub gallery: String,
    /// Fingerprint of the embedding model the templates come from.
    pub model: String,
    #[serde(flatten)]
    pub kind: OpKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpKind {
    /// The user's complete state: name and every template (replaces what a device has).
    UpsertUser {
        user_id: String,
        user_name: String,
        templates: Vec<WireTemplate>,
    },
    DeleteUser {
        user_id: String,
    },
    CreateGallery,
    DeleteGallery,
    /// The gallery's complete user list at the snapshot's version (`Op::version`): a
    /// local user absent from it and older than that version is deleted, as if its
    /// `delete_user` had arrived (state.rs). Sent after a snapshot's upserts.
    GalleryState {
        users: Vec<StateUser>,
    },
    /// Report from a device: it refused the operation `refused_op_id`.
    Refused {
        refused_op_id: String,
        reason: String,
    },
    /// Report from a device's camera: whom it recognized (`user_id` null: an unknown
    /// person). Not a gallery change: devices ignore it (built by `VisitEvent::op`).
    Recognized {
        user_id: Option<String>,
        user_name: Option<String>,
        similarity: f32,
        mask: bool,
        /// The small aligned face (base64 JPEG), when the device sends it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        face_jpeg: Option<String>,
    },
    /// A device's door command: the visit `visit_id` opens the door (src/door). Published
    /// on `{prefix}/devices/{device}/door`, not on the events topic; devices ignore it.
    /// Not to be acted on after `expires_at_ms`.
    Open {
        visit_id: u64,
        user_id: String,
        user_name: String,
        similarity: f32,
        mask: bool,
        /// The visit's capture time, RFC 3339 UTC.
        at: String,
        expires_at_ms: u64,
    },
}

/// The operation names a device understands (anything else is an unknown op).
pub const OP_NAMES: &[&str] = &[
    "upsert_user",
    "delete_user",
    "create_gallery",
    "delete_gallery",
    "gallery_state",
    "refused",
    "recognized",
    "open",
];

/// A user listed by a `gallery_state`, with the version it has where the snapshot was
/// made (informational: the accompanying `upsert_user` carries the state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateUser {
    pub user_id: String,
    pub version: u64,
    pub origin: String,
}

/// A template on the wire: the embedding as base64 of little-endian f32s, and optionally
/// the aligned face crop (base64 JPEG) so that a device with another model can re-embed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireTemplate {
    pub embedding: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<String>,
    /// Where the crop shows the face: dlib's mean-face right eye, left eye and mouth
    /// centre as `[x, y]` crop pixels (`vision::CropPoints`), so that a device whose
    /// embedder cuts another chip can cut it from the crop. Absent: a 150x150 crop is
    /// read as dlib's chip (docs/sync.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_points: Option<[[f32; 2]; 3]>,
    #[serde(default)]
    pub masked: bool,
}

/// What applying an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Already applied (same op id).
    Duplicate,
    /// Older than what the device has for that user or gallery: skipped.
    Stale,
    /// Nothing to apply (a refusal report or recognition event from another device).
    Ignored,
    /// Refused for good; reported back as a `refused` event.
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("client {0} is not known on this device")]
    UnknownClient(String),
    #[error("model fingerprint {theirs} differs from ours ({ours}) and a template has no crop")]
    ModelMismatch { theirs: String, ours: String },
    #[error("template cannot be used: {0}")]
    BadTemplate(String),
}

impl Op {
    /// A new operation produced now by `origin`, with a fresh op id.
    pub fn new(
        origin: &str,
        model: &str,
        client: &str,
        gallery: &str,
        version: u64,
        kind: OpKind,
    ) -> Op {
        Op {
            v: PROTOCOL_VERSION,
            op_id: uuid::Uuid::new_v4().to_string(),
            origin: origin.to_string(),
            version,
            ts: store::now(),
            client: client.to_string(),
            gallery: gallery.to_string(),
            model: model.to_string(),
            kind,
        }
    }
}

pub(super) fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

pub fn encode_embedding(embedding: &[f32]) -> String {
    let bytes: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
    b64().encode(bytes)
}

pub fn decode_embedding(text: &str) -> Result<Vec<f32>, Refusal> {
    let bytes = b64()
        .decode(text)
        .map_err(|e| Refusal::BadTemplate(format!("embedding base64: {e}")))?;
    if bytes.is_empty() || bytes.len() % 4 != 0 || bytes.len() > 4 * 4096 {
        return Err(Refusal::BadTemplate(format!(
            "embedding of {} bytes",
            bytes.len()
        )));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Refusal::BadTemplate("embedding not finite".into()));
    }
    Ok(values)
}

pub(super) fn wire(record: &TemplateRecord) -> WireTemplate {
    WireTemplate {
        embedding: encode_embedding(&record.embedding),
        crop: record.crop_jpeg.as_ref().map(|c| b64().encode(c)),
        crop_points: record.crop_jpeg.as_ref().and(record.crop_points),
        masked: record.masked,
    }
}
