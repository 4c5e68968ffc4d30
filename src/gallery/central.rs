//! What the central tool (`facegate push --photos`) sends: templates made from faces
//! found in photos, and a gallery's `create_gallery` + `upsert_user` + `gallery_state`
//! operations with fresh op ids and versions (docs/sync.md). No store is written here.

use base64::Engine;

use super::ops::b64;
use super::{crop, encode_embedding, Error, Op, OpKind, StateUser, WireTemplate};
use crate::store::now_ms;
use crate::vision::{CropPoints, Face};

/// A template for the wire: the face's embedding and its crop with where the crop shows
/// the face (`chip_points`: `Pipeline::crop_points` of the pipeline that found `face`,
/// for a face without a stored crop), so that a device with another model can re-embed.
pub fn wire_template(face: &Face, chip_points: CropPoints) -> Result<WireTemplate, Error> {
    let (jpeg, points) = crop::of_face(face, chip_points)?;
    Ok(WireTemplate {
        embedding: encode_embedding(&face.embedding.0),
        crop: Some(b64().encode(jpeg)),
        crop_points: Some(points.pixels()),
        masked: face.masked,
    })
}

/// One user of a gallery published by the central tool.
#[derive(Clone, Debug, PartialEq)]
pub struct CentralUser {
    pub user_id: String,
    pub user_name: String,
    pub templates: Vec<WireTemplate>,
}

/// `create_gallery`, one `upsert_user` per user, then the `gallery_state` listing them;
/// fresh op ids, versions from the clock (newer than what devices hold, so the pushed
/// state wins). `facegate push` sends the `gallery_state` only with `--replace`.
pub fn central_ops(
    client: &str,
    gallery: &str,
    origin: &str,
    model: &str,
    users: Vec<CentralUser>,
) -> Vec<Op> {
    let version = now_ms();
    let op = |kind: OpKind| Op::new(origin, model, client, gallery, version, kind);
    let mut ops = vec![op(OpKind::CreateGallery)];
    let listed = users
        .iter()
        .map(|u| StateUser {
            user_id: u.user_id.clone(),
            version,
            origin: origin.to_string(),
        })
        .collect();
    for u in users {
        ops.push(op(OpKind::UpsertUser {
            user_id: u.user_id,
            user_name: u.user_name,
            templates: u.templates,
        }));
    }
    ops.push(op(OpKind::GalleryState { users: listed }));
    ops
}
