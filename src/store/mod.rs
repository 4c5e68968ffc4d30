//! LMDB storage (heed): one environment per data folder, one database per record kind,
//! a schema version with a migration path, and transactions that grow the map when it
//! is full instead of failing.
//!
//! Public face: [`Store`] with [`Store::read`] closures over a [`Reader`], the record
//! types, and [`Error`]. The write side (`Store::write` over a `Writer`) is
//! `pub(crate)`: its one caller is the gallery's commit function
//! (src/gallery/commit.rs), which keeps the store, the index and the sync outbox
//! consistent; a test there fails when anything else calls it. Every write is
//! committed (and, with LMDB's default flags, synced) before `write` returns.

mod door;
mod keys;
mod lock;
mod records;
mod schema;
mod txn;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions};

pub use door::{DoorLine, WebhookCall};
pub use keys::MAX_ID_BYTES;
pub use lock::{DataLock, LockError, LOCK_FILE};
pub use records::{
    ClientRecord, Counters, GalleryRecord, TemplateRecord, TokenRecord, UserRecord, VisitRecord,
};
pub use schema::SCHEMA_VERSION;
pub(crate) use txn::Writer;
pub use txn::{EntityVersion, Reader, TemplateRow};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("LMDB: {0}")]
    Lmdb(#[from] heed::Error),
    // The cause is in the message, not a `source`: a report that prints the chain
    // would print it twice.
    #[error("cannot create data folder {path}: {cause}")]
    Folder {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the data folder {0} is a file, not a folder; check store.data_dir / FACEGATE_DATA_DIR"
    )]
    NotAFolder(PathBuf),
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    NewerSchema { found: u32, supported: u32 },
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("the LMDB map could not grow beyond {0} bytes")]
    MapLimit(usize),
}

impl Error {
    fn is_map_full(&self) -> bool {
        matches!(self, Error::Lmdb(heed::Error::Mdb(heed::MdbError::MapFull)))
    }
    fn is_map_resized(&self) -> bool {
        matches!(
            self,
            Error::Lmdb(heed::Error::Mdb(heed::MdbError::MapResized))
        )
    }
}

pub(crate) type Db = Database<'static, Bytes, Bytes>;

#[derive(Clone, Copy)]
pub(crate) struct Dbs {
    pub meta: Db,
    pub clients: Db,
    pub tokens: Db,
    pub galleries: Db,
    pub users: Db,
    pub templates: Db,
    pub counters: Db,
    /// Reserved for sync (issue 4): outgoing events written in the same transaction as
    /// the local change they describe.
    pub outbox: Db,
    /// Sync: ids of remote operations already applied (op id -> version), so that a
    /// redelivered operation is applied once.
    pub sync_seen: Db,
    /// Sync: the newest version applied per user / gallery (key -> version, origin), so
    /// that a stale operation never overwrites a newer state. Deletions keep theirs.
    pub sync_versions: Db,
    /// Camera kiosk visits (schema 2), keyed by a big-endian u64 sequence number.
    pub visits: Db,
    /// Door actions (additive, like the sync databases): the webhook's pending calls,
    /// keyed by a big-endian u64 sequence number.
    pub door_queue: Db,
    /// Door actions: each visit's action lines, keyed by the visit's sequence number.
    pub door_lines: Db,
}

/// Largest map the store grows to (1 TiB of address space; LMDB only uses what it writes).
const MAX_MAP: usize = 1 << 40;

pub struct Store {
    env: Env,
    dbs: Dbs,
    /// Shared by every transaction of this process, exclusive while the map is resized
    /// (LMDB requires that no transaction of the process is active then).
    gate: RwLock<()>,
    /// Serialises growth so that two writers hitting MAP_FULL grow the map once.
    grow: Mutex<()>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the environment in `dir` and migrates its schema.
    pub fn open(dir: &Path, initial_map_mb: usize) -> Result<Store, Error> {
        if dir.exists() && !dir.is_dir() {
            return Err(Error::NotAFolder(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(|cause| Error::Folder {
            path: dir.to_path_buf(),
            cause,
        })?;
        let page = 4096;
        let map = (initial_map_mb.max(1) * 1024 * 1024).div_ceil(page) * page;
        // LMDB silently raises a map smaller than the data file to the file's size.
        let env = open_env(dir, map)?;
        let wtxn = env.write_txn()?;
        let dbs = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> Result<_, Error> {
                let mut open =
                    |name: &str| opener.create_database::<Bytes, Bytes>(wtxn, Some(name));
                let dbs = (
                    open("meta")?,
                    open("clients")?,
                    open("tokens")?,
                    open("galleries")?,
                    open("users")?,
                    open("templates")?,
                    open("counters")?,
                    open("outbox")?,
                    open("sync_seen")?,
                    open("sync_versions")?,
                    open("visits")?,
                    // heed commits tuples of at most 12 databases: later ones nest.
                    (open("door_queue")?, open("door_lines")?),
                );
                Ok(CommitOrAbort::<_, ()>::Commit(dbs))
            })?
            .unwrap_commit();
        let store = Store {
            env,
            dbs: Dbs {
                meta: dbs.0,
                clients: dbs.1,
                tokens: dbs.2,
                galleries: dbs.3,
                users: dbs.4,
                templates: dbs.5,
                counters: dbs.6,
                outbox: dbs.7,
                sync_seen: dbs.8,
                sync_versions: dbs.9,
                visits: dbs.10,
                door_queue: dbs.11 .0,
                door_lines: dbs.11 .1,
            },
            gate: RwLock::new(()),
            grow: Mutex::new(()),
            path: dir.to_path_buf(),
        };
        schema::migrate(&store)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current map size in bytes.
    pub fn map_size(&self) -> usize {
        self.env.info().map_size
    }

    /// Runs `f` in a read transaction.
    pub fn read<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut f = Some(f);
        loop {
            let gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
            match self.env.read_txn().map_err(Error::from) {
                Ok(txn) => {
                    let reader = Reader::new(&txn, &self.dbs);
                    // `f` is taken exactly once: the loop only repeats before this point.
                    let Some(f) = f.take() else {
                        return Err(Error::Corrupt("read closure reused".into()).into());
                    };
                    return f(&reader);
                }
                Err(e) if e.is_map_resized() => {
                    drop(gate);
                    self.adopt_map_size()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs `f` in a write transaction and commits it. When the map is full, the
    /// transaction is aborted, the map doubled and `f` run again (so `f` must only
    /// change the store through the `Writer`). Only the gallery's commit function calls
    /// it (see the module docs).
    pub(crate) fn write<T, E: From<Error>>(
        &self,
        mut f: impl FnMut(&mut Writer<'_, '_>) -> Result<T, E>,
    ) -> Result<T, E> {
        loop {
            let gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
            let mut txn = match self.env.write_txn().map_err(Error::from) {
                Ok(txn) => txn,
                Err(e) if e.is_map_resized() => {
                    drop(gate);
                    self.adopt_map_size()?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut writer = Writer::new(&mut txn, &self.dbs);
            let outcome = f(&mut writer);
            let map_full = writer.hit_map_full();
            match outcome {
                Ok(value) => match txn.commit().map_err(Error::from) {
                    Ok(()) => return Ok(value),
                    Err(e) if e.is_map_full() => {}
                    Err(e) => return Err(e.into()),
                },
                Err(e) => {
                    drop(txn); // aborts
                    if !map_full {
                        return Err(e);
                    }
                }
            }
            drop(gate);
            self.grow_map()?;
        }
    }

    fn grow_map(&self) -> Result<(), Error> {
        let _one = self.grow.lock().unwrap_or_else(|e| e.into_inner());
        let _exclusive = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let current = self.env.info().map_size;
        let next = current.saturating_mul(2);
        if next > MAX_MAP {
            return Err(Error::MapLimit(current));
        }
        tracing::info!(from = current, to = next, "LMDB map full: growing");
        resize_map(&self.env, next)
    }

    fn adopt_map_size(&self) -> Result<(), Error> {
        let _exclusive = self.gate.write().unwrap_or_else(|e| e.into_inner());
        resize_map(&self.env, 0)
    }

    /// Unmaps and maps the data file again (same size), so that the pages a full scan
    /// touched (building the index at start) no longer count in the process's RSS; the
    /// kernel keeps them in its page cache. Waits for running transactions.
    pub fn release_mapped_pages(&self) -> Result<(), Error> {
        let _exclusive = self.gate.write().unwrap_or_else(|e| e.into_inner());
        resize_map(&self.env, self.env.info().map_size)
    }

    /// Flushes the environment to disk (already done at every commit; used at shutdown).
    pub fn sync(&self) -> Result<(), Error> {
        Ok(self.env.force_sync()?)
    }
}

#[allow(unsafe_code)]
fn open_env(dir: &Path, map_size: usize) -> Result<Env, Error> {
    let mut options = EnvOpenOptions::new();
    options.map_size(map_size).max_dbs(16).max_readers(1024);
    // SAFETY: the environment is opened once per process per path (heed itself refuses
    // a second open of the same path with EnvAlreadyOpened), with LMDB's default, safe
    // flags (locking and syncing on), on a local folder, and nothing in facegate
    // modifies the data file other than through LMDB. Other processes (the admin
    // commands) use LMDB's own lock file, which LMDB supports.
    Ok(unsafe { options.open(dir)? })
}

#[allow(unsafe_code)]
fn resize_map(env: &Env, size: usize) -> Result<(), Error> {
    // SAFETY: LMDB allows mdb_env_set_mapsize when no transaction of this process is
    // active. Every transaction in this process runs under `Store::gate` (shared), and
    // callers hold it exclusively here; `Store::open` calls it before any transaction.
    unsafe { env.resize(size)? };
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(fill: f32, crop: usize) -> TemplateRecord {
        TemplateRecord {
            fingerprint: "fp".into(),
            embedding: vec![fill; 128],
            crop_jpeg: Some(vec![7u8; crop]),
            crop_points: None,
            masked: false,
            created_at: now(),
        }
    }

    #[test]
    fn map_grows_when_full_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let before = store.map_size();
        // 3 MB in one transaction into a 1 MiB map.
        store
            .write(|w| {
                for i in 0..300 {
                    w.add_template("c", "g", &format!("u{i}"), &template(i as f32, 10_000))?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        assert!(store.map_size() > before);
        let n = store
            .read(|r| {
                let mut n = 0;
                r.for_each_template(|_| {
                    n += 1;
                    Ok(())
                })?;
                Ok::<_, Error>(n)
            })
            .unwrap();
        assert_eq!(n, 300);
    }

    #[test]
    fn visit_history_is_bounded_and_the_oldest_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let visit = |t: u64| VisitRecord {
            client: "c".into(),
            gallery: "g".into(),
            device_id: "d".into(),
            user_id: t.is_multiple_of(2).then(|| format!("u{t}")),
            user_name: None,
            similarity: 0.5,
            mask: false,
            timestamp_ms: t,
            face_jpeg: vec![0xFF, 0xD8],
        };
        for t in 1..=7 {
            store.write(|w| w.add_visit(&visit(t), 5)).unwrap();
        }
        let kept = store.read(|r| r.visits_after(0, 100)).unwrap();
        let ids: Vec<u64> = kept.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [3, 4, 5, 6, 7]);
        assert_eq!(kept[0].1, visit(3));
        let recent = store.read(|r| r.visits_since(6, 100)).unwrap();
        assert_eq!(recent.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [6, 7]);
        let after = store.read(|r| r.visits_after(5, 1)).unwrap();
        assert_eq!(after[0].0, 6);
    }

    #[test]
    fn data_survives_reopening_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 1).unwrap();
            store
                .write(|w| {
                    w.put_gallery("c", "g@x", &GalleryRecord { created_at: 1 })?;
                    w.add_template("c", "g@x", "u@example.com", &template(0.5, 10))
                })
                .unwrap();
        }
        let store = Store::open(dir.path(), 1).unwrap();
        let (galleries, templates) = store
            .read(|r| {
                Ok::<_, Error>((
                    r.galleries("c")?,
                    r.templates_of("c", "g@x", "u@example.com")?,
                ))
            })
            .unwrap();
        assert_eq!(galleries, ["g@x"]);
        assert_eq!(templates.len(), 1);
        assert_eq!(templates[0].1.embedding[0], 0.5);
    }

    #[test]
    fn deleting_a_gallery_removes_its_users_and_templates_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        store
            .write(|w| {
                for g in ["a", "ab"] {
                    w.put_gallery("c", g, &GalleryRecord { created_at: 1 })?;
                    let user = UserRecord {
                        user_name: "n".into(),
                        created_at: 1,
                        updated_at: 1,
                    };
                    w.put_user("c", g, "u", &user)?;
                    w.add_template("c", g, "u", &template(1.0, 0))?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        let removed = store.write(|w| w.delete_gallery("c", "a")).unwrap();
        assert_eq!(removed, 1);
        store
            .read(|r| {
                assert_eq!(r.galleries("c")?, ["ab"]);
                assert_eq!(r.users("c", "ab")?.len(), 1);
                assert!(r.templates_of("c", "a", "u")?.is_empty());
                assert_eq!(r.templates_of("c", "ab", "u")?.len(), 1);
                Ok::<_, Error>(())
            })
            .unwrap();
    }
}
