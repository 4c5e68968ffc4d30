//! The schema version record and the migration path.
//!
//! `meta["schema_version"]` holds a u32 (big-endian). A new store is stamped with
//! [`SCHEMA_VERSION`]; an older one is migrated step by step in one write transaction
//! per step; a newer one is refused (an older binary must not rewrite data it does not
//! understand).

use super::{Error, Store, Writer};

/// Version 1: clients, tokens, galleries, users, templates (layout 1), counters, outbox.
/// Version 2: adds `visits` (camera kiosk events, JSON records keyed by sequence).
/// The sync databases `sync_seen` and `sync_versions` are additive (created empty at open,
/// ignored by builds that do not know them), so they need no version step.
pub const SCHEMA_VERSION: u32 = 2;

const KEY: &str = "schema_version";

/// `MIGRATIONS[i]` migrates version `i + 1` to `i + 2`.
type Migration = fn(&mut Writer<'_, '_>) -> Result<(), Error>;
const MIGRATIONS: &[Migration] = &[v1_to_v2];

/// The `visits` database is created (empty) when the environment is opened; version 1
/// stores have nothing to convert.
fn v1_to_v2(_w: &mut Writer<'_, '_>) -> Result<(), Error> {
    Ok(())
}

pub(crate) fn version(store: &Store) -> Result<Option<u32>, Error> {
    store.read(|r| r.schema_version())
}

pub(crate) fn migrate(store: &Store) -> Result<(), Error> {
    const _: () = assert!(MIGRATIONS.len() + 1 == SCHEMA_VERSION as usize);
    let mut found = match version(store)? {
        Some(v) => v,
        None => {
            store.write(|w| w.set_meta(KEY, &SCHEMA_VERSION.to_be_bytes()))?;
            return Ok(());
        }
    };
    if found > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    while found < SCHEMA_VERSION {
        let step = found
            .checked_sub(1)
            .and_then(|i| MIGRATIONS.get(i as usize))
            .ok_or_else(|| Error::Corrupt(format!("schema version {found}")))?;
        let next = found + 1;
        store.write(|w| {
            step(w)?;
            w.set_meta(KEY, &next.to_be_bytes())
        })?;
        tracing::info!(from = found, to = next, "store schema migrated");
        found = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_is_stamped_with_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        assert_eq!(version(&store).unwrap(), Some(SCHEMA_VERSION));
    }

    #[test]
    fn a_version_1_store_is_migrated_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 1).unwrap();
            store
                .write(|w| {
                    w.put_gallery("c", "g", &crate::store::GalleryRecord { created_at: 1 })?;
                    w.set_meta(KEY, &1u32.to_be_bytes())
                })
                .unwrap();
        }
        let store = Store::open(dir.path(), 1).unwrap();
        assert_eq!(version(&store).unwrap(), Some(SCHEMA_VERSION));
        assert_eq!(store.read(|r| r.galleries("c")).unwrap(), ["g"]);
        assert_eq!(store.read(|r| r.visits_after(0, 10)).unwrap(), []);
    }

    #[test]
    fn a_store_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 1).unwrap();
            store
                .write(|w| w.set_meta(KEY, &(SCHEMA_VERSION + 1).to_be_bytes()))
                .unwrap();
        }
        assert!(matches!(
            Store::open(dir.path(), 1),
            Err(Error::NewerSchema { .. })
        ));
    }
}
