//! The sync outbox's side of a commit (issue 4): the operations a local change emits,
//! written in the change's own transaction by [`super::commit::Tx::publish`], with the
//! entities' versions bumped; the outbox is bounded (oldest dropped, counted).

use super::commit::WritePath;
use super::ops::{wire, Op, OpKind};
use super::replica::{OutboxSettings, GALLERY_DELETED};
use super::{Change, Error};
use crate::store::{self, EntityVersion, Writer};

/// The next version for an entity: the clock, but above anything already stored.
fn next_version(
    w: &Writer<'_, '_>,
    now_ms: u64,
    client: &str,
    gallery: &str,
    user: &str,
) -> Result<u64, store::Error> {
    let stored = w.reader().entity_version(client, gallery, user)?;
    Ok(now_ms.max(stored.map(|v| v.version + 1).unwrap_or(0)))
}

impl WritePath {
    /// Writes the operations describing `change` (already made by this transaction) to the
    /// outbox, bumping the entities' versions.
    pub(super) fn write_outbox(
        &self,
        w: &mut Writer<'_, '_>,
        out: &OutboxSettings,
        change: &Change<'_>,
    ) -> Result<(), Error> {
        let mut ops = Vec::new();
        let model = self.model.clone();
        let mut op = |w: &mut Writer<'_, '_>,
                      client: &str,
                      gallery: &str,
                      user: &str,
                      kind: OpKind|
         -> Result<(), Error> {
            let version = next_version(w, self.clock().now_ms(), client, gallery, user)?;
            w.set_entity_version(
                client,
                gallery,
                user,
                &EntityVersion {
                    version,
                    origin: out.origin.clone(),
                },
            )?;
            if matches!(kind, OpKind::DeleteGallery) {
                w.set_entity_version(
                    client,
                    gallery,
                    GALLERY_DELETED,
                    &EntityVersion {
                        version,
                        origin: out.origin.clone(),
                    },
                )?;
            }
            ops.push(Op::new(&out.origin, &model, client, gallery, version, kind));
            Ok(())
        };
        match change {
            Change::GalleryCreated { client, gallery } => {
                op(w, client, gallery, "", OpKind::CreateGallery)?
            }
            Change::GalleryDeleted { client, gallery } => {
                op(w, client, gallery, "", OpKind::DeleteGallery)?
            }
            Change::ClientDeleted { client, galleries } => {
                for gallery in galleries.iter() {
                    op(w, client, gallery, "", OpKind::DeleteGallery)?;
                }
            }
            Change::FaceEnrolled {
                client,
                gallery,
                user_id,
            } => {
                let r = w.reader();
                let user = r
                    .user(client, gallery, user_id)?
                    .ok_or(Error::UserNotFound)?;
                let templates = r
                    .templates_of(client, gallery, user_id)?
                    .iter()
                    .map(|(_, t)| wire(t))
                    .collect();
                let kind = OpKind::UpsertUser {
                    user_id: user_id.to_string(),
                    user_name: user.user_name,
                    templates,
                };
                op(w, client, gallery, user_id, kind)?
            }
            Change::FaceDeleted {
                client,
                gallery,
                user_id,
            } => op(
                w,
                client,
                gallery,
                user_id,
                OpKind::DeleteUser {
                    user_id: user_id.to_string(),
                },
            )?,
            // Not a gallery operation: no entity version is bumped.
            Change::Visit(event) => ops.push(event.op(&out.origin, &model)),
            Change::DoorOpen(command) => ops.push(command.op(&out.origin, &model)),
            Change::Refused {
                op: refused,
                reason,
            } => ops.push(Op::new(
                &out.origin,
                &model,
                &refused.client,
                &refused.gallery,
                self.clock().now_ms(),
                OpKind::Refused {
                    refused_op_id: refused.op_id.clone(),
                    reason: reason.clone(),
                },
            )),
        }
        for op in &ops {
            self.push_bounded(w, out, op)?;
        }
        Ok(())
    }

    /// Appends to the outbox; when it holds `limit` events the oldest is dropped, counted
    /// and warned about (a later full resync repairs what it described).
    fn push_bounded(
        &self,
        w: &mut Writer<'_, '_>,
        out: &OutboxSettings,
        op: &Op,
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec(op).map_err(|e| store::Error::Corrupt(e.to_string()))?;
        let len = w.reader().outbox_len()?;
        if len >= out.limit.max(1) as u64 {
            if let Some(seq) = w.outbox_drop_oldest()? {
                let dropped = self
                    .outbox_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                tracing::warn!(
                    seq,
                    limit = out.limit,
                    dropped_total = dropped,
                    "sync outbox full (broker unreachable?): dropped its oldest event"
                );
            }
        }
        w.outbox_push(&bytes)?;
        Ok(())
    }
}
