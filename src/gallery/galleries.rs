//! Gallery use cases: create, delete, list; a client's default gallery and removal.

use super::{Change, Error, Gallery, QuotaKind};
use crate::store::{self, GalleryRecord, Writer};

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
        self.commit(
            Change::GalleryCreated { client, gallery },
            |w| {
                if w.reader().gallery(client, gallery)?.is_some() {
                    return Err(Error::GalleryExists);
                }
                add_gallery(w, client, gallery, quota)
            },
            |_, _| {},
        )
    }

    /// client/register: creates `<client>@trial` if it does not exist yet; returns its id.
    pub fn register_client(&self, client: &str) -> Result<String, Error> {
        let gallery = format!("{client}@trial");
        let quota = self.accounts.quota().galleries;
        self.commit(
            Change::GalleryCreated {
                client,
                gallery: &gallery,
            },
            |w| {
                if w.reader().gallery(client, &gallery)?.is_none() {
                    add_gallery(w, client, &gallery, quota)?;
                }
                Ok(())
            },
            |_, _| {},
        )?;
        Ok(gallery)
    }

    pub fn delete_gallery(&self, client: &str, gallery: &str) -> Result<(), Error> {
        self.commit(
            Change::GalleryDeleted { client, gallery },
            |w| {
                if w.reader().gallery(client, gallery)?.is_none() {
                    return Err(Error::GalleryNotFound);
                }
                remove_gallery(w, client, gallery)
            },
            |_, index| index.remove_gallery(client, gallery),
        )
    }

    /// client/delete: removes all of the client's galleries and faces (its credentials
    /// stay); returns the ids of the removed galleries.
    pub fn delete_client_data(&self, client: &str) -> Result<Vec<String>, Error> {
        self.commit(
            Change::ClientDeleted { client },
            |w| {
                let mut galleries = w.reader().galleries(client)?;
                galleries.sort();
                for g in &galleries {
                    remove_gallery(w, client, g)?;
                }
                Ok(galleries)
            },
            |galleries, index| {
                for g in galleries {
                    index.remove_gallery(client, g);
                }
            },
        )
    }
}

/// Records a new gallery and counts it against the client's quota (0: unlimited).
pub(super) fn add_gallery(
    w: &mut Writer<'_, '_>,
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
    w.put_gallery(
        client,
        gallery,
        &GalleryRecord {
            created_at: store::now(),
        },
    )?;
    Ok(())
}

fn remove_gallery(w: &mut Writer<'_, '_>, client: &str, gallery: &str) -> Result<(), Error> {
    let users = w.delete_gallery(client, gallery)?;
    let mut counters = w.reader().counters(client)?;
    counters.galleries = counters.galleries.saturating_sub(1);
    counters.faces = counters.faces.saturating_sub(users);
    w.put_counters(client, &counters)?;
    Ok(())
}
