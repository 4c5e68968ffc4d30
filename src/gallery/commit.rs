//! The one write path (issue 15). Every durable change facegate makes — enrollment and
//! deletion, galleries, remote operations and their refusals, gallery states
//! (snapshots), visits and door lines, clients and tokens, op-id pruning, outbox
//! acknowledgements, reembed — is one call of [`WritePath::commit`], and nothing else
//! opens a write transaction. What a commit implies travels with it:
//!
//! - store writes: through the [`Tx`] (it derefs to the store's `Writer`);
//! - outbox entries: [`Tx::publish`] writes the change's operations to the outbox in the
//!   same LMDB transaction (only when sync is on), so a change and its event commit or
//!   fail together;
//! - index edits: [`Tx::index_insert`] and friends only *record* them; `commit` applies
//!   them after the LMDB commit succeeded, in commit order (under `order`), and drops
//!   them when the closure fails or the commit fails. When the map is full the store
//!   aborts and runs the closure again with a fresh `Tx`, so the edits of the aborted
//!   attempt are never applied either.
//!
//! Why `pub(crate)` plus a test, not a capability type: `store` and `gallery` are sibling
//! modules and Rust has no visibility "this sibling only" (`pub(in path)` names an
//! ancestor). `Store::write` and the `Writer` are `pub(crate)`, so the binary
//! (src/cmd), the integration tests and the benchmarks cannot reach them (the compiler
//! says so); inside the library, the test `only_the_commit_function_opens_a_write_transaction`
//! fails when any file other than this one and src/store calls the write API. A
//! capability type defined in `gallery` would make `store` depend upward on `gallery`;
//! one defined in `store` could be constructed by any module of the crate, which is the
//! same promise as `pub(crate)` with more ceremony.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::clock::{Clock, SystemClock};
use super::replica::OutboxSettings;
use super::{Change, Error};
use crate::index::Index;
use crate::store::{Store, Writer};

/// The store, the index and the outbox, written together.
pub(crate) struct WritePath {
    store: Arc<Store>,
    index: Index,
    /// Held from the transaction to the index update, so that the index applies
    /// changes in commit order.
    order: Mutex<()>,
    /// Sync on: the device id and outbox bound. None: no outbox entries are written.
    pub(super) outbox: Option<OutboxSettings>,
    /// Fingerprint of the embedding model (the `model` of published operations).
    pub(super) model: String,
    /// Outbox events dropped because the outbox was full (since start).
    pub(super) outbox_dropped: AtomicU64,
    /// Where every write's time comes from.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for WritePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritePath")
            .field("store", &self.store)
            .field("index", &self.index)
            .finish()
    }
}

/// An index change implied by a commit, applied once the commit succeeded.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum IndexEdit {
    Insert {
        client: String,
        gallery: String,
        user_id: String,
        template_id: u64,
        embedding: Vec<f32>,
    },
    RemoveTemplate {
        client: String,
        gallery: String,
        template_id: u64,
    },
    RemoveUser {
        client: String,
        gallery: String,
        user_id: String,
    },
    RemoveGallery {
        client: String,
        gallery: String,
    },
}

impl IndexEdit {
    fn apply(self, index: &Index) {
        match self {
            IndexEdit::Insert {
                client,
                gallery,
                user_id,
                template_id,
                embedding,
            } => super::search::index_insert(
                index,
                &client,
                &gallery,
                &user_id,
                template_id,
                &embedding,
            ),
            IndexEdit::RemoveTemplate {
                client,
                gallery,
                template_id,
            } => index.remove_template(&client, &gallery, template_id),
            IndexEdit::RemoveUser {
                client,
                gallery,
                user_id,
            } => index.remove_user(&client, &gallery, &user_id),
            IndexEdit::RemoveGallery { client, gallery } => index.remove_gallery(&client, &gallery),
        }
    }
}

/// One attempt of a commit's transaction: the store writer, plus the index edits
/// recorded so far and the outbox.
pub(crate) struct Tx<'t, 'a, 'e> {
    w: &'t mut Writer<'a, 'e>,
    path: &'t WritePath,
    edits: Vec<IndexEdit>,
}

impl<'a, 'e> Deref for Tx<'_, 'a, 'e> {
    type Target = Writer<'a, 'e>;
    fn deref(&self) -> &Writer<'a, 'e> {
        self.w
    }
}

impl<'a, 'e> DerefMut for Tx<'_, 'a, 'e> {
    fn deref_mut(&mut self) -> &mut Writer<'a, 'e> {
        self.w
    }
}

impl Tx<'_, '_, '_> {
    /// The write path's clock, in milliseconds since the epoch.
    pub(super) fn now_ms(&self) -> u64 {
        self.path.clock.now_ms()
    }

    /// The write path's clock, in seconds since the epoch.
    pub(super) fn now_secs(&self) -> u64 {
        self.path.clock.now_secs()
    }

    /// Writes the operations describing `change` to the outbox in this transaction
    /// (nothing when sync is off). Call it after making the change: an enrollment's
    /// operation carries the user's templates as this transaction sees them.
    pub(super) fn publish(&mut self, change: Change<'_>) -> Result<(), Error> {
        if let Some(out) = &self.path.outbox {
            self.path.write_outbox(self.w, out, &change)?;
        }
        tracing::debug!(?change, "published");
        Ok(())
    }

    pub(super) fn index_insert(
        &mut self,
        client: &str,
        gallery: &str,
        user_id: &str,
        template_id: u64,
        embedding: &[f32],
    ) {
        self.edits.push(IndexEdit::Insert {
            client: client.into(),
            gallery: gallery.into(),
            user_id: user_id.into(),
            template_id,
            embedding: embedding.to_vec(),
        });
    }

    pub(super) fn index_remove_template(&mut self, client: &str, gallery: &str, template_id: u64) {
        self.edits.push(IndexEdit::RemoveTemplate {
            client: client.into(),
            gallery: gallery.into(),
            template_id,
        });
    }

    pub(super) fn index_remove_user(&mut self, client: &str, gallery: &str, user_id: &str) {
        self.edits.push(IndexEdit::RemoveUser {
            client: client.into(),
            gallery: gallery.into(),
            user_id: user_id.into(),
        });
    }

    pub(super) fn index_remove_gallery(&mut self, client: &str, gallery: &str) {
        self.edits.push(IndexEdit::RemoveGallery {
            client: client.into(),
            gallery: gallery.into(),
        });
    }
}

impl WritePath {
    /// `index` holds what the store holds (built by the caller from the store).
    pub(super) fn new(
        store: Arc<Store>,
        index: Index,
        outbox: Option<OutboxSettings>,
        model: String,
        clock: Arc<dyn Clock>,
    ) -> WritePath {
        WritePath {
            store,
            index,
            order: Mutex::new(()),
            outbox,
            model,
            outbox_dropped: AtomicU64::new(0),
            clock,
        }
    }

    /// A write path without outbox and with an index nobody searches: for the admin
    /// commands' accounts (clients and tokens never touch the index).
    pub(super) fn accounts_only(store: Arc<Store>) -> WritePath {
        WritePath::new(
            store,
            Index::new(),
            None,
            String::new(),
            Arc::new(SystemClock),
        )
    }

    pub(super) fn index(&self) -> &Index {
        &self.index
    }

    pub(super) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// The single write path: runs `f` in a store transaction and commits it; then, and
    /// only then, applies the index edits `f` recorded, before any other commit can
    /// start. `f` may run more than once (the store retries after growing a full map):
    /// it must change things only through the [`Tx`].
    pub(super) fn commit<T>(
        &self,
        mut f: impl FnMut(&mut Tx<'_, '_, '_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        // Poisoned only by a panic in an earlier commit, whose transaction aborted.
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let (value, edits) = self.store.write(|w| {
            let mut tx = Tx {
                w,
                path: self,
                edits: Vec::new(),
            };
            let value = f(&mut tx)?;
            Ok::<_, Error>((value, tx.edits))
        })?;
        for edit in edits {
            edit.apply(&self.index);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GalleryRecord, TemplateRecord, UserRecord, MAX_ID_BYTES};

    fn template(fill: f32, crop: usize) -> TemplateRecord {
        TemplateRecord {
            fingerprint: "m".into(),
            embedding: (0..128).map(|i| fill + i as f32).collect(),
            crop_jpeg: (crop > 0).then(|| vec![7u8; crop]),
            crop_points: None,
            masked: false,
            created_at: 0,
        }
    }

    fn user() -> UserRecord {
        UserRecord {
            user_name: "n".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn path(dir: &std::path::Path, map_mb: usize) -> WritePath {
        let store = Arc::new(Store::open(dir, map_mb).unwrap());
        WritePath::new(store, Index::new(), None, "m".into(), Arc::new(SystemClock))
    }

    /// Enrolls `user_id` with one template, recording its index insert.
    fn enroll(tx: &mut Tx<'_, '_, '_>, user_id: &str, fill: f32) -> Result<u64, Error> {
        tx.put_gallery("c", "g", &GalleryRecord { created_at: 0 })?;
        tx.put_user("c", "g", user_id, &user())?;
        let t = template(fill, 0);
        let id = tx.add_template("c", "g", user_id, &t)?;
        tx.index_insert("c", "g", user_id, id, &t.embedding);
        Ok(id)
    }

    #[test]
    fn a_commit_whose_store_write_fails_leaves_the_index_and_the_store_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), 1);
        path.commit(|tx| enroll(tx, "amy", 1.0)).unwrap();
        assert_eq!(path.index().len(), 1);
        // The second user's insert is recorded, then LMDB refuses a key beyond its limit
        // (MDB_BAD_VALSIZE) in the same transaction.
        let too_long = "u".repeat(MAX_ID_BYTES * 4);
        let failed = path.commit(|tx| {
            enroll(tx, "bob", 2.0)?;
            tx.index_remove_user("c", "g", "amy");
            tx.put_user("c", "g", &too_long, &user())?;
            Ok(())
        });
        assert!(matches!(failed, Err(Error::Store(_))), "{failed:?}");
        assert_eq!(
            path.index().len(),
            1,
            "no edit of the failed commit applied"
        );
        let users = path
            .store
            .read(|r| r.users("c", "g"))
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>();
        assert_eq!(users, ["amy"]);
    }

    #[test]
    fn a_commit_refused_by_its_own_check_applies_none_of_its_index_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path(), 1);
        path.commit(|tx| enroll(tx, "amy", 1.0)).unwrap();
        let refused = path.commit(|tx| {
            tx.index_remove_gallery("c", "g");
            Err::<(), _>(Error::GalleryExists)
        });
        assert!(matches!(refused, Err(Error::GalleryExists)));
        assert_eq!(path.index().len(), 1);
    }

    #[test]
    fn a_commit_retried_after_the_map_grew_applies_its_index_edits_once() {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB map, ~3 MB in one transaction: the first attempt hits MAP_FULL, the
        // store grows the map and runs the closure again.
        let path = path(dir.path(), 1);
        let before = path.store.map_size();
        let mut attempts = 0;
        path.commit(|tx| {
            attempts += 1;
            tx.put_gallery("c", "g", &GalleryRecord { created_at: 0 })?;
            for i in 0..300 {
                let u = format!("u{i}");
                tx.put_user("c", "g", &u, &user())?;
                let t = template(i as f32, 10_000);
                let id = tx.add_template("c", "g", &u, &t)?;
                tx.index_insert("c", "g", &u, id, &t.embedding);
            }
            Ok(())
        })
        .unwrap();
        assert!(attempts > 1, "the map did not fill: the scene is not built");
        assert!(path.store.map_size() > before);
        assert_eq!(path.index().len(), 300);
    }

    /// True when a line of Rust opens a store write transaction: the store's closure API
    /// (`.write(|w| ..)`, `.write(move |w| ..)`, `.write(some_fn)`, `Store::write`), heed's
    /// `write_txn`, or a `Writer` made by hand. `RwLock::write()` (no argument) and
    /// `io::Write::write(&buf)` are not.
    fn opens_a_write_transaction(line: &str) -> bool {
        let code = line.trim_start();
        if code.starts_with("//") {
            return false;
        }
        if code.contains("Store::write") || code.contains("write_txn") {
            return true;
        }
        let made_by_hand = |pattern: &str| {
            code.match_indices(pattern).any(|(at, _)| {
                !code[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        };
        if made_by_hand("Writer::new(") || made_by_hand("Writer {") {
            return true;
        }
        code.match_indices(".write(").any(|(at, m)| {
            let rest = code[at + m.len()..].trim_start();
            !rest.starts_with(')')
                && !rest.starts_with('&')
                && !rest.starts_with("true")
                && !rest.starts_with("false")
                && !rest.starts_with('"')
                && !rest.starts_with("b\"")
        })
    }

    #[test]
    fn the_architecture_check_recognises_write_transactions_and_nothing_else() {
        for opens in [
            "store.write(|w| w.put_gallery(c, g, &r))?;",
            "        .write(move |w| {",
            "self.store.write(fill)",
            "Store::write(&store, |w| Ok(()))",
            "let txn = self.env.write_txn()?;",
            "let mut writer = Writer::new(&mut txn, &dbs);",
        ] {
            assert!(opens_a_write_transaction(opens), "{opens}");
        }
        for reads in [
            "let mut map = self.galleries.write().unwrap_or_else(|e| e.into_inner());",
            "file.write(&buf)?;",
            "OpenOptions::new().write(true)",
            "write_export(&mut BufWriter::new(file), &header, &ops)?;",
            "// store.write(|w| ..) in a comment",
            "self.store.read(|r| r.galleries(client))",
        ] {
            assert!(!opens_a_write_transaction(reads), "{reads}");
        }
    }

    /// The one write path is the only one: no file of the library outside src/store
    /// (which implements transactions) and this one opens a write transaction. The
    /// binary, the integration tests and the benchmarks cannot (`pub(crate)`).
    #[test]
    fn only_the_commit_function_opens_a_write_transaction() {
        fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    rust_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        assert!(files.len() > 50, "the scan found the sources");
        let mut offenders = Vec::new();
        for file in &files {
            let relative = file
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if relative.starts_with("src/store/") || relative == "src/gallery/commit.rs" {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if opens_a_write_transaction(line) {
                    offenders.push(format!("{relative}:{}: {}", n + 1, line.trim()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "write transactions outside WritePath::commit (src/gallery/commit.rs):\n{}",
            offenders.join("\n")
        );
    }
}
