//! Replication of galleries between devices (issue 4): the operations a device emits
//! for its local changes (written to the outbox in the transaction of the change) and
//! applies from others (idempotent by op id, ordered per user by version, never echoed).
//! The operations' wire shape is in `ops.rs`, applying a `gallery_state` in `state.rs`;
//! the transport is not known here.

use base64::Engine;

use super::commit::Tx;
use super::ops::{b64, decode_embedding, Applied, Op, OpKind, Refusal};
use super::{crop, Change, Error, Gallery};
use crate::store::{EntityVersion, TemplateRecord, UserRecord};

/// The pseudo user under which a gallery's deletion version is kept: a user operation
/// older than the gallery's last deletion is stale (user ids never contain NUL).
pub(super) const GALLERY_DELETED: &str = "\u{0}deleted";

/// Where the device's own changes go: its id and the outbox bound.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxSettings {
    pub origin: String,
    /// Largest number of waiting events; beyond it the oldest is dropped (with a warning).
    pub limit: usize,
}

impl Gallery {
    /// Applies an operation from another device or the central server: once per op id,
    /// never over a newer state of the same user or gallery, without writing the
    /// outbox (so it is not echoed back). A refusal is remembered and reported as a
    /// `refused` event in the outbox.
    pub fn apply_op(&self, op: &Op) -> Result<Applied, Error> {
        if matches!(
            op.kind,
            OpKind::Refused { .. } | OpKind::Recognized { .. } | OpKind::Open { .. }
        ) {
            return Ok(Applied::Ignored);
        }
        super::check_id("client", &op.client)?;
        super::check_id("facegallery_id", &op.gallery)?;
        if let OpKind::UpsertUser { user_id, .. } | OpKind::DeleteUser { user_id } = &op.kind {
            super::check_id("user_id", user_id)?;
        }
        if matches!(op.kind, OpKind::GalleryState { .. }) {
            return self.apply_state(op);
        }
        // Decode and, for another model, re-embed before taking the write lock.
        let prepared = match self.prepare_templates(op)? {
            Ok(t) => t,
            Err(refusal) => return self.refuse(op, refusal),
        };
        let outcome = self.writes.commit(|tx| {
            let r = tx.reader();
            if r.op_seen(&op.op_id)? {
                return Ok(Applied::Duplicate);
            }
            if r.client(&op.client)?.is_none() {
                return Ok(Applied::Refused(Refusal::UnknownClient(op.client.clone())));
            }
            let user = match &op.kind {
                OpKind::UpsertUser { user_id, .. } | OpKind::DeleteUser { user_id } => {
                    user_id.as_str()
                }
                _ => "",
            };
            let newer = |v: Option<EntityVersion>| {
                v.is_some_and(|v| !v.is_older_than(op.version, &op.origin))
            };
            if newer(r.entity_version(&op.client, &op.gallery, user)?)
                || newer(r.entity_version(&op.client, &op.gallery, GALLERY_DELETED)?)
            {
                let seen_at = tx.now_ms();
                tx.mark_op_seen(&op.op_id, op.version, seen_at)?;
                return Ok(Applied::Stale);
            }
            apply_in_txn(tx, op, prepared.as_deref())?;
            let version = EntityVersion {
                version: op.version,
                origin: op.origin.clone(),
            };
            tx.set_entity_version(&op.client, &op.gallery, user, &version)?;
            if matches!(op.kind, OpKind::DeleteGallery) {
                tx.set_entity_version(&op.client, &op.gallery, GALLERY_DELETED, &version)?;
            }
            let seen_at = tx.now_ms();
            tx.mark_op_seen(&op.op_id, op.version, seen_at)?;
            Ok(Applied::Applied)
        })?;
        match outcome {
            Applied::Refused(refusal) => self.refuse(op, refusal),
            applied => {
                if applied == Applied::Applied {
                    tracing::debug!(op_id = %op.op_id, origin = %op.origin, "remote op applied");
                }
                Ok(applied)
            }
        }
    }

    /// The templates to store: a refusal when the op's templates cannot be used, an
    /// error when they could be but not now (every inference session busy: the op is
    /// applied later, never refused for that).
    fn prepare_templates(
        &self,
        op: &Op,
    ) -> Result<Result<Option<Vec<TemplateRecord>>, Refusal>, Error> {
        let OpKind::UpsertUser { templates, .. } = &op.kind else {
            return Ok(Ok(None));
        };
        let ours = self.pipeline.fingerprint();
        let same_model = op.model == ours;
        let mut out = Vec::with_capacity(templates.len());
        for t in templates {
            let crop_jpeg = match &t.crop {
                Some(c) => match b64().decode(c) {
                    Ok(jpeg) => Some(jpeg),
                    Err(e) => return Ok(Err(Refusal::BadTemplate(format!("crop base64: {e}")))),
                },
                None => None,
            };
            let mut crop_points =
                match crop::points_to_read(&self.pipeline, &op.model, t.crop_points) {
                    Ok(points) => points,
                    Err(e) => return Ok(Err(Refusal::BadTemplate(e.to_string()))),
                };
            let embedding = if same_model {
                match decode_embedding(&t.embedding) {
                    Ok(e) => e,
                    Err(refusal) => return Ok(Err(refusal)),
                }
            } else {
                let Some(jpeg) = &crop_jpeg else {
                    return Ok(Err(Refusal::ModelMismatch {
                        theirs: op.model.clone(),
                        ours: ours.to_string(),
                    }));
                };
                let stored = match crop::decode(jpeg) {
                    Ok(stored) => stored,
                    Err(e) => return Ok(Err(Refusal::BadTemplate(e.to_string()))),
                };
                match self
                    .pipeline
                    .embed_stored_crop(&stored, crop_points.as_ref())
                {
                    Ok((e, points)) => {
                        crop_points = Some(points);
                        e.0.to_vec()
                    }
                    Err(busy @ crate::vision::Error::Busy(_)) => return Err(Error::Vision(busy)),
                    Err(e) => return Ok(Err(Refusal::BadTemplate(e.to_string()))),
                }
            };
            let crop_jpeg = crop_jpeg.filter(|_| self.settings.keep_crops);
            out.push(TemplateRecord {
                fingerprint: ours.to_string(),
                embedding,
                crop_points: crop_jpeg.as_ref().and(crop_points).map(|p| p.pixels()),
                crop_jpeg,
                masked: t.masked,
                created_at: self.writes.clock().now_secs(),
            });
        }
        Ok(Ok(Some(out)))
    }

    /// Remembers a refused op (so a redelivery is not refused and reported again) and
    /// reports it in the outbox when sync is on.
    pub(super) fn refuse(&self, op: &Op, refusal: Refusal) -> Result<Applied, Error> {
        tracing::warn!(
            op_id = %op.op_id,
            origin = %op.origin,
            reason = %refusal,
            "remote op refused"
        );
        let first = self.writes.commit(|tx| {
            if tx.reader().op_seen(&op.op_id)? {
                return Ok(false);
            }
            let seen_at = tx.now_ms();
            tx.mark_op_seen(&op.op_id, op.version, seen_at)?;
            tx.publish(Change::Refused {
                op,
                reason: refusal.to_string(),
            })?;
            Ok(true)
        })?;
        if !first {
            return Ok(Applied::Duplicate);
        }
        Ok(Applied::Refused(refusal))
    }

    /// Up to `limit` outbox events after sequence `after`, oldest first.
    pub fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        Ok(self.store.read(|r| r.outbox_after(after, limit))?)
    }

    /// Deletes an outbox event once the broker acknowledged it.
    pub fn outbox_acknowledged(&self, seq: u64) -> Result<(), Error> {
        self.writes.commit(|tx| Ok(tx.outbox_delete(seq)?))?;
        Ok(())
    }

    /// Events waiting in the outbox.
    pub fn outbox_len(&self) -> Result<u64, Error> {
        Ok(self.store.read(|r| r.outbox_len())?)
    }

    /// Events dropped because the outbox was full, since start.
    pub fn outbox_dropped(&self) -> u64 {
        self.writes
            .outbox_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Creates a gallery that a synced operation refers to. Operations from the fleet are not
/// held to this device's quota (0: unlimited): refusing them would split the fleet.
fn ensure_gallery(w: &mut Tx<'_, '_, '_>, client: &str, gallery: &str) -> Result<(), Error> {
    if w.reader().gallery(client, gallery)?.is_none() {
        super::galleries::add_gallery(w, client, gallery, 0)?;
    }
    Ok(())
}

/// Makes an applied operation's change in its transaction, recording the index edits
/// it implies.
fn apply_in_txn(
    tx: &mut Tx<'_, '_, '_>,
    op: &Op,
    prepared: Option<&[TemplateRecord]>,
) -> Result<(), Error> {
    let (c, g) = (op.client.as_str(), op.gallery.as_str());
    match &op.kind {
        OpKind::CreateGallery => ensure_gallery(tx, c, g)?,
        OpKind::DeleteGallery => {
            if tx.reader().gallery(c, g)?.is_some() {
                super::galleries::remove_gallery(tx, c, g)?;
            } else {
                tx.index_remove_gallery(c, g);
            }
        }
        OpKind::DeleteUser { user_id } => {
            if tx.reader().user(c, g, user_id)?.is_some() {
                tx.delete_user(c, g, user_id)?;
                let mut counters = tx.reader().counters(c)?;
                counters.faces = counters.faces.saturating_sub(1);
                tx.put_counters(c, &counters)?;
            }
            tx.index_remove_user(c, g, user_id);
        }
        OpKind::UpsertUser {
            user_id, user_name, ..
        } => {
            ensure_gallery(tx, c, g)?;
            let existing = tx.reader().user(c, g, user_id)?;
            if existing.is_none() {
                let mut counters = tx.reader().counters(c)?;
                counters.faces += 1;
                tx.put_counters(c, &counters)?;
            }
            tx.delete_user(c, g, user_id)?;
            tx.index_remove_user(c, g, user_id);
            let now = tx.now_secs();
            tx.put_user(
                c,
                g,
                user_id,
                &UserRecord {
                    user_name: user_name.clone(),
                    created_at: existing.map(|u| u.created_at).unwrap_or(now),
                    updated_at: now,
                },
            )?;
            for t in prepared.unwrap_or(&[]) {
                let id = tx.add_template(c, g, user_id, t)?;
                tx.index_insert(c, g, user_id, id, &t.embedding);
            }
        }
        // Applied by `apply_state` (state.rs), never here.
        OpKind::GalleryState { .. }
        | OpKind::Refused { .. }
        | OpKind::Recognized { .. }
        | OpKind::Open { .. } => {}
    }
    Ok(())
}
