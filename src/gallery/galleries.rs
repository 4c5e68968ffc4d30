//! Gallery use cases: create, delete, list; a client's default gallery and removal.

use super::commit::Tx;
use super::{Change, Error, Gallery, QuotaKind};
use crate::store::GalleryRecord;

impl Gallery {
    /// Gallery ids of a client, sorted.
    pub fn galleries(&self, client: &str) -> Result<Vec<String>, Error> {
        let mut ids = self.store.read(|r| r.galleries(client))?;
        ids.sort();
        Ok(ids)
    }

    pub fn create_gallery(&self, client: &str, gallery: &str) -> Result<(), Error> {
        super::check_id("facegallery_id", gallery)?;
        let quota = self.accounts.quota().galleries;
        self.writes.commit(|tx| {
            if tx.reader().gallery(client, gallery)?.is_some() {
                return Err(Error::GalleryExists);
            }
            add_gallery(tx, client, gallery, quota)?;
            tx.publish(Change::GalleryCreated { client, gallery })
        })
    }

    /// client/register: creates `<client>@trial` if it does not exist yet; returns its id.
    pub fn register_client(&self, client: &str) -> Result<String, Error> {
        let gallery = format!("{client}@trial");
        let quota = self.accounts.quota().galleries;
        self.writes.commit(|tx| {
            if tx.reader().gallery(client, &gallery)?.is_none() {
                add_gallery(tx, client, &gallery, quota)?;
            }
            tx.publish(Change::GalleryCreated {
                client,
                gallery: &gallery,
            })
        })?;
        Ok(gallery)
    }

    pub fn delete_gallery(&self, client: &str, gallery: &str) -> Result<(), Error> {
        self.writes.commit(|tx| {
            if tx.reader().gallery(client, gallery)?.is_none() {
                return Err(Error::GalleryNotFound);
            }
            remove_gallery(tx, client, gallery)?;
            tx.publish(Change::GalleryDeleted { client, gallery })
        })
    }

    /// client/delete: removes all of the client's galleries and faces (its credentials
    /// stay); returns the ids of the removed galleries.
    pub fn delete_client_data(&self, client: &str) -> Result<Vec<String>, Error> {
        self.writes.commit(|tx| {
            let mut galleries = tx.reader().galleries(client)?;
            galleries.sort();
            for g in &galleries {
                remove_gallery(tx, client, g)?;
            }
            tx.publish(Change::ClientDeleted {
                client,
                galleries: &galleries,
            })?;
            Ok(galleries)
        })
    }
}

/// Records a new gallery and counts it against the client's quota (0: unlimited).
pub(super) fn add_gallery(
    w: &mut Tx<'_, '_, '_>,
    client: &str,
    gallery: &str,
    quota: u64,
) -> Result<(), Error> {
    let mut counters = w.reader().counters(client)?;
    if quota > 0 && counters.galleries >= quota {
        return Err(Error::QuotaExhausted(QuotaKind::Galleries));
    }
    counters.galleries += 1;
    w.put_counters(client, &counters)?;
    let created_at = w.now_secs();
    w.put_gallery(client, gallery, &GalleryRecord { created_at })?;
    Ok(())
}

/// Removes a gallery with its users and templates, from the store and (once committed)
/// the index.
pub(super) fn remove_gallery(
    w: &mut Tx<'_, '_, '_>,
    client: &str,
    gallery: &str,
) -> Result<(), Error> {
    let users = w.delete_gallery(client, gallery)?;
    w.index_remove_gallery(client, gallery);
    let mut counters = w.reader().counters(client)?;
    counters.galleries = counters.galleries.saturating_sub(1);
    counters.faces = counters.faces.saturating_sub(users);
    w.put_counters(client, &counters)?;
    Ok(())
}
