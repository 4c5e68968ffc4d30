//! Replication of galleries between devices (issue 4): the operations a device emits
//! for its local changes (written to the outbox in the transaction of the change) and
//! applies from others (idempotent by op id, ordered per user by version, never echoed).
//! The operations' wire shape is in `ops.rs`, applying a `gallery_state` in `state.rs`;
//! the transport is not known here.

use base64::Engine;

use super::ops::{b64, decode_embedding, now_ms, wire, Applied, Op, OpKind, Refusal};
use super::{crop, Change, Error, Gallery};
use crate::store::{self, EntityVersion, TemplateRecord, UserRecord, Writer};

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

/// The next version for an entity: the clock, but above anything already stored.
fn next_version(
    w: &Writer<'_, '_>,
    client: &str,
    gallery: &str,
    user: &str,
) -> Result<u64, store::Error> {
    let stored = w.reader().entity_version(client, gallery, user)?;
    Ok(now_ms().max(stored.map(|v| v.version + 1).unwrap_or(0)))
}

impl Gallery {
    /// Writes the operations describing `change` (already made by this transaction) to the
    /// outbox, bumping the entities' versions. `before` holds the client's galleries
    /// read before the change (for `ClientDeleted`).
    pub(super) fn write_outbox(
        &self,
        w: &mut Writer<'_, '_>,
        out: &OutboxSettings,
        change: &Change<'_>,
        before: &[String],
    ) -> Result<(), Error> {
        let mut ops = Vec::new();
        let model = self.pipeline.fingerprint().to_string();
        let mut op = |w: &mut Writer<'_, '_>,
                      client: &str,
                      gallery: &str,
                      user: &str,
                      kind: OpKind|
         -> Result<(), Error> {
            let version = next_version(w, client, gallery, user)?;
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
            Change::ClientDeleted { client } => {
                for gallery in before {
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
        let _order = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = self.store.write(|w| {
            let r = w.reader();
            if r.op_seen(&op.op_id)? {
                return Ok((Applied::Duplicate, None));
            }
            if r.client(&op.client)?.is_none() {
                return Ok((
                    Applied::Refused(Refusal::UnknownClient(op.client.clone())),
                    None,
                ));
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
                w.mark_op_seen(&op.op_id, op.version)?;
                return Ok((Applied::Stale, None));
            }
            let index_change = apply_in_txn(w, op, prepared.as_deref())?;
            let version = EntityVersion {
                version: op.version,
                origin: op.origin.clone(),
            };
            w.set_entity_version(&op.client, &op.gallery, user, &version)?;
            if matches!(op.kind, OpKind::DeleteGallery) {
                w.set_entity_version(&op.client, &op.gallery, GALLERY_DELETED, &version)?;
            }
            w.mark_op_seen(&op.op_id, op.version)?;
            Ok::<_, Error>((Applied::Applied, Some(index_change)))
        })?;
        match outcome {
            (Applied::Refused(refusal), _) => {
                drop(_order);
                self.refuse(op, refusal)
            }
            (applied, Some(change)) => {
                change.apply(&self.index, op);
                tracing::debug!(op_id = %op.op_id, origin = %op.origin, "remote op applied");
                Ok(applied)
            }
            (applied, None) => Ok(applied),
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
                let chip = match crop::decode(jpeg) {
                    Ok(chip) => chip,
                    Err(e) => return Ok(Err(Refusal::BadTemplate(e.to_string()))),
                };
                match self.pipeline.embed_chip(&chip) {
                    Ok(e) => e.0.to_vec(),
                    Err(busy @ crate::vision::Error::Busy(_)) => return Err(Error::Vision(busy)),
                    Err(e) => return Ok(Err(Refusal::BadTemplate(e.to_string()))),
                }
            };
            out.push(TemplateRecord {
                fingerprint: ours.to_string(),
                embedding,
                crop_jpeg: crop_jpeg.filter(|_| self.settings.keep_crops),
                masked: t.masked,
                created_at: store::now(),
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
        let _order = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let first = self.store.write(|w| {
            if w.reader().op_seen(&op.op_id)? {
                return Ok(false);
            }
            w.mark_op_seen(&op.op_id, op.version)?;
            if let Some(out) = &self.settings.outbox {
                let report = Op::new(
                    &out.origin,
                    self.pipeline.fingerprint(),
                    &op.client,
                    &op.gallery,
                    now_ms(),
                    OpKind::Refused {
                        refused_op_id: op.op_id.clone(),
                        reason: refusal.to_string(),
                    },
                );
                self.push_bounded(w, out, &report)?;
            }
            Ok::<_, Error>(true)
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
        self.store.write(|w| w.outbox_delete(seq))?;
        Ok(())
    }

    /// Events waiting in the outbox.
    pub fn outbox_len(&self) -> Result<u64, Error> {
        Ok(self.store.read(|r| r.outbox_len())?)
    }

    /// Events dropped because the outbox was full, since start.
    pub fn outbox_dropped(&self) -> u64 {
        self.outbox_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What the index must do after an applied op's transaction committed.
enum IndexChange {
    None,
    ReplaceUser(Vec<(u64, Vec<f32>)>),
    RemoveUser,
    RemoveGallery,
}

impl IndexChange {
    fn apply(self, index: &crate::index::Index, op: &Op) {
        let (c, g) = (op.client.as_str(), op.gallery.as_str());
        match (self, &op.kind) {
            (IndexChange::ReplaceUser(templates), OpKind::UpsertUser { user_id, .. }) => {
                index.remove_user(c, g, user_id);
                for (id, e) in &templates {
                    super::search::index_insert(index, c, g, user_id, *id, e);
                }
            }
            (IndexChange::RemoveUser, OpKind::DeleteUser { user_id }) => {
                index.remove_user(c, g, user_id)
            }
            (IndexChange::RemoveGallery, _) => index.remove_gallery(c, g),
            _ => {}
        }
    }
}

/// Creates a gallery that a synced operation refers to. Operations from the fleet are not
/// held to this device's quota (0: unlimited): refusing them would split the fleet.
fn ensure_gallery(w: &mut Writer<'_, '_>, client: &str, gallery: &str) -> Result<(), Error> {
    if w.reader().gallery(client, gallery)?.is_none() {
        super::galleries::add_gallery(w, client, gallery, 0)?;
    }
    Ok(())
}

fn apply_in_txn(
    w: &mut Writer<'_, '_>,
    op: &Op,
    prepared: Option<&[TemplateRecord]>,
) -> Result<IndexChange, Error> {
    let (c, g) = (op.client.as_str(), op.gallery.as_str());
    Ok(match &op.kind {
        OpKind::CreateGallery => {
            ensure_gallery(w, c, g)?;
            IndexChange::None
        }
        OpKind::DeleteGallery => {
            if w.reader().gallery(c, g)?.is_some() {
                let users = w.delete_gallery(c, g)?;
                let mut counters = w.reader().counters(c)?;
                counters.galleries = counters.galleries.saturating_sub(1);
                counters.faces = counters.faces.saturating_sub(users);
                w.put_counters(c, &counters)?;
            }
            IndexChange::RemoveGallery
        }
        OpKind::DeleteUser { user_id } => {
            if w.reader().user(c, g, user_id)?.is_some() {
                w.delete_user(c, g, user_id)?;
                let mut counters = w.reader().counters(c)?;
                counters.faces = counters.faces.saturating_sub(1);
                w.put_counters(c, &counters)?;
            }
            IndexChange::RemoveUser
        }
        OpKind::UpsertUser {
            user_id, user_name, ..
        } => {
            ensure_gallery(w, c, g)?;
            let existing = w.reader().user(c, g, user_id)?;
            if existing.is_none() {
                let mut counters = w.reader().counters(c)?;
                counters.faces += 1;
                w.put_counters(c, &counters)?;
            }
            w.delete_user(c, g, user_id)?;
            let now = store::now();
            w.put_user(
                c,
                g,
                user_id,
                &UserRecord {
                    user_name: user_name.clone(),
                    created_at: existing.map(|u| u.created_at).unwrap_or(now),
                    updated_at: now,
                },
            )?;
            let mut added = Vec::new();
            for t in prepared.unwrap_or(&[]) {
                let id = w.add_template(c, g, user_id, t)?;
                added.push((id, t.embedding.clone()));
            }
            IndexChange::ReplaceUser(added)
        }
        // Applied by `apply_state` (state.rs), never here.
        OpKind::GalleryState { .. }
        | OpKind::Refused { .. }
        | OpKind::Recognized { .. }
        | OpKind::Open { .. } => IndexChange::None,
    })
}
