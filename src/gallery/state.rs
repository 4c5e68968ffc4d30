//! Applying a `gallery_state` (docs/sync.md, "Snapshots"): the gallery's complete user
//! list at the snapshot's version. A local user absent from it whose stored version is
//! older than the snapshot's is deleted, and the snapshot's version is recorded for it
//! as a deletion's would be, so an older upsert does not bring it back. Users in the list
//! are left to the snapshot's `upsert_user` operations; a user changed after the
//! snapshot (newer version) is kept. Idempotent by op id, never written to the outbox.

use std::collections::HashSet;

use super::replica::GALLERY_DELETED;
use super::{Applied, Error, Gallery, Op, OpKind};
use crate::store::EntityVersion;

impl Gallery {
    /// Applies a `gallery_state` operation (any other kind is ignored).
    pub(super) fn apply_state(&self, op: &Op) -> Result<Applied, Error> {
        let OpKind::GalleryState { users } = &op.kind else {
            return Ok(Applied::Ignored);
        };
        let (c, g) = (op.client.as_str(), op.gallery.as_str());
        let listed: HashSet<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
        let outcome = self.writes.commit(|tx| {
            let r = tx.reader();
            if r.op_seen(&op.op_id)? {
                return Ok((Applied::Duplicate, 0));
            }
            if r.client(c)?.is_none() {
                return Ok((Applied::Refused(super::Refusal::UnknownClient(c.into())), 0));
            }
            let newer = |v: Option<EntityVersion>| {
                v.is_some_and(|v| !v.is_older_than(op.version, &op.origin))
            };
            if newer(r.entity_version(c, g, GALLERY_DELETED)?) {
                let seen_at = tx.now_ms();
                tx.mark_op_seen(&op.op_id, op.version, seen_at)?;
                return Ok((Applied::Stale, 0));
            }
            let mut local = Vec::new();
            if r.gallery(c, g)?.is_some() {
                for (user_id, _) in r.users(c, g)? {
                    let stored = r.entity_version(c, g, &user_id)?;
                    local.push((user_id, stored));
                }
            }
            let removed = absent_and_older(local, &listed, op.version, &op.origin);
            let version = EntityVersion {
                version: op.version,
                origin: op.origin.clone(),
            };
            for user_id in &removed {
                tx.delete_user(c, g, user_id)?;
                tx.index_remove_user(c, g, user_id);
                tx.set_entity_version(c, g, user_id, &version)?;
            }
            if !removed.is_empty() {
                let mut counters = tx.reader().counters(c)?;
                counters.faces = counters.faces.saturating_sub(removed.len() as u64);
                tx.put_counters(c, &counters)?;
            }
            let seen_at = tx.now_ms();
            tx.mark_op_seen(&op.op_id, op.version, seen_at)?;
            Ok::<_, Error>((Applied::Applied, removed.len()))
        })?;
        match outcome {
            (Applied::Refused(refusal), _) => self.refuse(op, refusal),
            (applied, removed) => {
                if removed > 0 {
                    tracing::info!(
                        op_id = %op.op_id,
                        client = c,
                        gallery = g,
                        removed,
                        "gallery_state: users absent from the snapshot deleted"
                    );
                }
                Ok(applied)
            }
        }
    }
}

/// The local users a gallery state removes: absent from `listed` and stored with a
/// version older than the state's `(version, origin)`. A user without a stored version
/// was enrolled while sync was off: it cannot be ordered against the snapshot, so it is
/// kept.
fn absent_and_older(
    local: Vec<(String, Option<EntityVersion>)>,
    listed: &HashSet<&str>,
    version: u64,
    origin: &str,
) -> Vec<String> {
    local
        .into_iter()
        .filter(|(user_id, stored)| {
            !listed.contains(user_id.as_str())
                && stored
                    .as_ref()
                    .is_some_and(|s| s.is_older_than(version, origin))
        })
        .map(|(user_id, _)| user_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: u64, origin: &str) -> Option<EntityVersion> {
        Some(EntityVersion {
            version,
            origin: origin.into(),
        })
    }

    #[test]
    fn a_gallery_state_removes_only_unlisted_users_older_than_itself() {
        let local = vec![
            ("listed".to_string(), v(10, "central")),
            ("deleted_centrally".to_string(), v(50, "door-1")),
            ("enrolled_after".to_string(), v(150, "door-1")),
            ("same_version_smaller_origin".to_string(), v(100, "a")),
            ("same_version_larger_origin".to_string(), v(100, "z")),
            ("enrolled_with_sync_off".to_string(), None),
        ];
        let listed: HashSet<&str> = ["listed", "not_here"].into();
        assert_eq!(
            absent_and_older(local, &listed, 100, "central"),
            ["deleted_centrally", "same_version_smaller_origin"]
        );
    }

    #[test]
    fn a_gallery_state_listing_every_local_user_removes_nobody() {
        let local = vec![("a".to_string(), v(1, "x")), ("b".to_string(), v(2, "x"))];
        let listed: HashSet<&str> = ["a", "b"].into();
        assert!(absent_and_older(local, &listed, 100, "central").is_empty());
    }
}
