//! Typed access inside one transaction: [`Reader`] for reads, [`Writer`] for changes.

use std::cell::Cell;

use heed::{RoTxn, RwTxn};

use super::keys::{key, key_with_id, split};
use super::records::{from_json, to_json};
use super::{
    ClientRecord, Counters, Dbs, Error, GalleryRecord, TemplateRecord, TokenRecord, UserRecord,
    VisitRecord,
};

/// The newest version applied to one user or gallery, and which device produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityVersion {
    pub version: u64,
    pub origin: String,
}

impl EntityVersion {
    /// Whether `(version, origin)` is newer than this one (ties go to the larger origin,
    /// so every device orders the same two operations the same way).
    pub fn is_older_than(&self, version: u64, origin: &str) -> bool {
        (self.version, self.origin.as_str()) < (version, origin)
    }
}

/// A stored template with where it belongs.
#[derive(Clone, Debug)]
pub struct TemplateRow {
    pub client: String,
    pub gallery: String,
    pub user_id: String,
    pub id: u64,
    pub record: TemplateRecord,
}

pub struct Reader<'t> {
    pub(super) txn: &'t RoTxn<'t>,
    pub(super) dbs: &'t Dbs,
}

impl<'t> Reader<'t> {
    pub(crate) fn new(txn: &'t RoTxn<'t>, dbs: &'t Dbs) -> Reader<'t> {
        Reader { txn, dbs }
    }

    pub(crate) fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .dbs
            .meta
            .get(self.txn, name.as_bytes())?
            .map(<[u8]>::to_vec))
    }

    /// The schema version record (see `store::SCHEMA_VERSION`).
    pub fn schema_version(&self) -> Result<Option<u32>, Error> {
        Ok(self
            .meta("schema_version")?
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes))
    }

    pub fn client(&self, name: &str) -> Result<Option<ClientRecord>, Error> {
        self.json(self.dbs.clients, &key(&[name]))
    }

    pub fn clients(&self) -> Result<Vec<ClientRecord>, Error> {
        let mut out = Vec::new();
        for item in self.dbs.clients.iter(self.txn)? {
            out.push(from_json(item?.1)?);
        }
        Ok(out)
    }

    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>, Error> {
        self.json(self.dbs.tokens, id.as_bytes())
    }

    /// (token id, record) of every token of `client`.
    pub fn tokens_of(&self, client: &str) -> Result<Vec<(String, TokenRecord)>, Error> {
        let mut out = Vec::new();
        for item in self.dbs.tokens.iter(self.txn)? {
            let (k, v) = item?;
            let record: TokenRecord = from_json(v)?;
            if record.client == client {
                out.push((String::from_utf8_lossy(k).into_owned(), record));
            }
        }
        Ok(out)
    }

    pub fn gallery(&self, client: &str, gallery: &str) -> Result<Option<GalleryRecord>, Error> {
        self.json(self.dbs.galleries, &key(&[client, gallery]))
    }

    /// Gallery ids of `client`, in key order.
    pub fn galleries(&self, client: &str) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for item in self.dbs.galleries.prefix_iter(self.txn, &key(&[client]))? {
            let (k, _) = item?;
            out.push(part(k, 2, 1)?);
        }
        Ok(out)
    }

    pub fn user(
        &self,
        client: &str,
        gallery: &str,
        user: &str,
    ) -> Result<Option<UserRecord>, Error> {
        self.json(self.dbs.users, &key(&[client, gallery, user]))
    }

    /// (user_id, record) of every user in a gallery.
    pub fn users(&self, client: &str, gallery: &str) -> Result<Vec<(String, UserRecord)>, Error> {
        let mut out = Vec::new();
        for item in self
            .dbs
            .users
            .prefix_iter(self.txn, &key(&[client, gallery]))?
        {
            let (k, v) = item?;
            out.push((part(k, 3, 2)?, from_json(v)?));
        }
        Ok(out)
    }

    /// (template id, record) of one user's templates, oldest first.
    pub fn templates_of(
        &self,
        client: &str,
        gallery: &str,
        user: &str,
    ) -> Result<Vec<(u64, TemplateRecord)>, Error> {
        let mut out = Vec::new();
        let prefix = key(&[client, gallery, user]);
        for item in self.dbs.templates.prefix_iter(self.txn, &prefix)? {
            let (k, v) = item?;
            let (_, id) = split(k, 3).ok_or_else(|| Error::Corrupt("template key".into()))?;
            let id = id.ok_or_else(|| Error::Corrupt("template key without id".into()))?;
            out.push((id, TemplateRecord::decode(v)?));
        }
        Ok(out)
    }

    /// One template's embedding and fingerprint, without copying its crop (the index's
    /// exact re-rank reads a few of these per search).
    pub fn template_embedding(
        &self,
        client: &str,
        gallery: &str,
        user: &str,
        id: u64,
    ) -> Result<Option<TemplateRecord>, Error> {
        let k = key_with_id(&[client, gallery, user], id);
        self.dbs
            .templates
            .get(self.txn, &k)?
            .map(TemplateRecord::decode_without_crop)
            .transpose()
    }

    /// One template's embedding into `out` when it exists and belongs to the embedding
    /// space `fingerprint` (true), else false; nothing else of the record is decoded
    /// (the index's exact re-rank reads a few of these per search).
    pub fn template_vector_into(
        &self,
        client: &str,
        gallery: &str,
        user: &str,
        id: u64,
        fingerprint: &str,
        out: &mut Vec<f32>,
    ) -> Result<bool, Error> {
        out.clear();
        let k = key_with_id(&[client, gallery, user], id);
        match self.dbs.templates.get(self.txn, &k)? {
            Some(bytes) => TemplateRecord::embedding_into(bytes, fingerprint, out),
            None => Ok(false),
        }
    }

    /// Calls `visit` with every stored template, crops left out (`crop_jpeg` is None):
    /// building the index at start reads only the first bytes of each record, so the
    /// crops' pages of the data file are never touched (nor counted in the RSS).
    pub fn for_each_template_without_crop(
        &self,
        visit: impl FnMut(TemplateRow) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.scan_templates(TemplateRecord::decode_without_crop, visit)
    }

    /// Calls `visit` with every stored template.
    pub fn for_each_template(
        &self,
        visit: impl FnMut(TemplateRow) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.scan_templates(TemplateRecord::decode, visit)
    }

    fn scan_templates(
        &self,
        decode: fn(&[u8]) -> Result<TemplateRecord, Error>,
        mut visit: impl FnMut(TemplateRow) -> Result<(), Error>,
    ) -> Result<(), Error> {
        for item in self.dbs.templates.iter(self.txn)? {
            let (k, v) = item?;
            let (mut parts, id) =
                split(k, 3).ok_or_else(|| Error::Corrupt("template key".into()))?;
            let id = id.ok_or_else(|| Error::Corrupt("template key without id".into()))?;
            let user_id = parts.pop().unwrap_or_default();
            let gallery = parts.pop().unwrap_or_default();
            let client = parts.pop().unwrap_or_default();
            visit(TemplateRow {
                client,
                gallery,
                user_id,
                id,
                record: decode(v)?,
            })?;
        }
        Ok(())
    }

    pub fn counters(&self, client: &str) -> Result<Counters, Error> {
        Ok(self
            .json(self.dbs.counters, &key(&[client]))?
            .unwrap_or_default())
    }

    /// Number of events waiting in the outbox.
    pub fn outbox_len(&self) -> Result<u64, Error> {
        Ok(self.dbs.outbox.len(self.txn)?)
    }

    /// Up to `limit` outbox events with a sequence number above `after`, oldest first.
    pub fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let start = after.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        let range = (
            std::ops::Bound::Included(&start[..]),
            std::ops::Bound::Unbounded,
        );
        for item in self.dbs.outbox.range(self.txn, &range)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let seq = <[u8; 8]>::try_from(k)
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt("outbox key".into()))?;
            out.push((seq, v.to_vec()));
        }
        Ok(out)
    }

    /// Whether a remote operation with this id was already applied.
    pub fn op_seen(&self, op_id: &str) -> Result<bool, Error> {
        Ok(self
            .dbs
            .sync_seen
            .get(self.txn, op_id.as_bytes())?
            .is_some())
    }

    /// Remembered op ids (`sync_seen` entries).
    pub fn seen_len(&self) -> Result<u64, Error> {
        Ok(self.dbs.sync_seen.len(self.txn)?)
    }

    /// The newest version applied to a user (`user` non-empty) or a gallery (`user` empty).
    pub fn entity_version(
        &self,
        client: &str,
        gallery: &str,
        user: &str,
    ) -> Result<Option<EntityVersion>, Error> {
        let Some(v) = self
            .dbs
            .sync_versions
            .get(self.txn, &key(&[client, gallery, user]))?
        else {
            return Ok(None);
        };
        let (head, origin) = v
            .split_first_chunk::<8>()
            .ok_or_else(|| Error::Corrupt("sync version".into()))?;
        Ok(Some(EntityVersion {
            version: u64::from_be_bytes(*head),
            origin: String::from_utf8_lossy(origin).into_owned(),
        }))
    }

    /// Up to `limit` visits with a sequence number above `after`, oldest first.
    pub fn visits_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, VisitRecord)>, Error> {
        let start = after.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.dbs.visits.range(
            self.txn,
            &(
                std::ops::Bound::Included(&start[..]),
                std::ops::Bound::Unbounded,
            ),
        )? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            out.push((visit_seq(k)?, from_json(v)?));
        }
        Ok(out)
    }

    /// Visits captured at or after `since_ms`, oldest first (at most `limit`, the newest).
    pub fn visits_since(
        &self,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, VisitRecord)>, Error> {
        let mut out = Vec::new();
        for item in self.dbs.visits.rev_iter(self.txn)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let record: VisitRecord = from_json(v)?;
            if record.timestamp_ms < since_ms {
                break;
            }
            out.push((visit_seq(k)?, record));
        }
        out.reverse();
        Ok(out)
    }

    /// Number of stored visits.
    pub fn visits_len(&self) -> Result<u64, Error> {
        Ok(self.dbs.visits.len(self.txn)?)
    }

    fn json<T: for<'de> serde::Deserialize<'de>>(
        &self,
        db: super::Db,
        k: &[u8],
    ) -> Result<Option<T>, Error> {
        db.get(self.txn, k)?.map(from_json).transpose()
    }
}

fn visit_seq(k: &[u8]) -> Result<u64, Error> {
    <[u8; 8]>::try_from(k)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Corrupt("visit key".into()))
}

fn part(k: &[u8], parts: usize, index: usize) -> Result<String, Error> {
    let (mut parts, _) = split(k, parts).ok_or_else(|| Error::Corrupt("key".into()))?;
    Ok(parts.swap_remove(index))
}

pub struct Writer<'a, 'e> {
    pub(super) txn: &'a mut RwTxn<'e>,
    pub(super) dbs: &'a Dbs,
    map_full: Cell<bool>,
}

impl<'a, 'e> Writer<'a, 'e> {
    pub(crate) fn new(txn: &'a mut RwTxn<'e>, dbs: &'a Dbs) -> Writer<'a, 'e> {
        Writer {
            txn,
            dbs,
            map_full: Cell::new(false),
        }
    }

    pub(crate) fn hit_map_full(&self) -> bool {
        self.map_full.get()
    }

    /// Reads inside this write transaction (sees its uncommitted changes).
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(self.txn, self.dbs)
    }

    fn check<T>(&self, r: heed::Result<T>) -> Result<T, Error> {
        let r = r.map_err(Error::from);
        if let Err(e) = &r {
            if e.is_map_full() {
                self.map_full.set(true);
            }
        }
        r
    }

    pub(super) fn put(&mut self, db: super::Db, k: &[u8], v: &[u8]) -> Result<(), Error> {
        let r = db.put(self.txn, k, v);
        self.check(r)
    }

    pub(super) fn del(&mut self, db: super::Db, k: &[u8]) -> Result<bool, Error> {
        let r = db.delete(self.txn, k);
        self.check(r)
    }

    fn del_prefix(&mut self, db: super::Db, prefix: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let keys = db
            .prefix_iter(self.txn, prefix)?
            .map(|item| item.map(|(k, _)| k.to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        for k in &keys {
            self.del(db, k)?;
        }
        Ok(keys)
    }

    pub(crate) fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), Error> {
        self.put(self.dbs.meta, name.as_bytes(), value)
    }

    pub(super) fn next_seq(&mut self, name: &str) -> Result<u64, Error> {
        let current = self
            .reader()
            .meta(name)?
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let next = current + 1;
        self.set_meta(name, &next.to_be_bytes())?;
        Ok(next)
    }

    pub fn put_client(&mut self, record: &ClientRecord) -> Result<(), Error> {
        self.put(self.dbs.clients, &key(&[&record.name]), &to_json(record)?)
    }

    pub fn put_token(&mut self, id: &str, record: &TokenRecord) -> Result<(), Error> {
        self.put(self.dbs.tokens, id.as_bytes(), &to_json(record)?)
    }

    pub fn delete_token(&mut self, id: &str) -> Result<bool, Error> {
        self.del(self.dbs.tokens, id.as_bytes())
    }

    pub fn put_gallery(
        &mut self,
        client: &str,
        gallery: &str,
        record: &GalleryRecord,
    ) -> Result<(), Error> {
        self.put(
            self.dbs.galleries,
            &key(&[client, gallery]),
            &to_json(record)?,
        )
    }

    /// Deletes a gallery with its users and templates; returns how many users it had.
    pub fn delete_gallery(&mut self, client: &str, gallery: &str) -> Result<u64, Error> {
        let prefix = key(&[client, gallery]);
        self.del(self.dbs.galleries, &prefix)?;
        let users = self.del_prefix(self.dbs.users, &prefix)?.len() as u64;
        self.del_prefix(self.dbs.templates, &prefix)?;
        Ok(users)
    }

    pub fn put_user(
        &mut self,
        client: &str,
        gallery: &str,
        user: &str,
        record: &UserRecord,
    ) -> Result<(), Error> {
        self.put(
            self.dbs.users,
            &key(&[client, gallery, user]),
            &to_json(record)?,
        )
    }

    /// Deletes a user and their templates; returns the deleted template ids.
    pub fn delete_user(
        &mut self,
        client: &str,
        gallery: &str,
        user: &str,
    ) -> Result<Vec<u64>, Error> {
        let k = key(&[client, gallery, user]);
        self.del(self.dbs.users, &k)?;
        let keys = self.del_prefix(self.dbs.templates, &k)?;
        Ok(keys
            .iter()
            .filter_map(|k| split(k, 3).and_then(|(_, id)| id))
            .collect())
    }

    /// Stores a new template; returns its id (unique in the store, increasing).
    pub fn add_template(
        &mut self,
        client: &str,
        gallery: &str,
        user: &str,
        record: &TemplateRecord,
    ) -> Result<u64, Error> {
        let id = self.next_seq("template_seq")?;
        self.put_template(client, gallery, user, id, record)?;
        Ok(id)
    }

    /// Replaces a template's record (re-embedding keeps the id).
    pub fn put_template(
        &mut self,
        client: &str,
        gallery: &str,
        user: &str,
        id: u64,
        record: &TemplateRecord,
    ) -> Result<(), Error> {
        let k = key_with_id(&[client, gallery, user], id);
        self.put(self.dbs.templates, &k, &record.encode())
    }

    pub fn delete_template(
        &mut self,
        client: &str,
        gallery: &str,
        user: &str,
        id: u64,
    ) -> Result<bool, Error> {
        self.del(
            self.dbs.templates,
            &key_with_id(&[client, gallery, user], id),
        )
    }

    pub fn put_counters(&mut self, client: &str, counters: &Counters) -> Result<(), Error> {
        self.put(self.dbs.counters, &key(&[client]), &to_json(counters)?)
    }

    /// Appends a visit and prunes the oldest beyond `keep`; returns its sequence number
    /// (increasing, never reused).
    pub fn add_visit(&mut self, record: &VisitRecord, keep: usize) -> Result<u64, Error> {
        let seq = self.next_seq("visit_seq")?;
        self.put(self.dbs.visits, &seq.to_be_bytes(), &to_json(record)?)?;
        let len = self.dbs.visits.len(self.txn)?;
        let excess = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .saturating_sub(keep.max(1));
        if excess > 0 {
            let oldest = self
                .dbs
                .visits
                .iter(self.txn)?
                .take(excess)
                .map(|item| item.map(|(k, _)| k.to_vec()))
                .collect::<Result<Vec<_>, _>>()?;
            for k in &oldest {
                self.del(self.dbs.visits, k)?;
            }
        }
        Ok(seq)
    }

    /// Appends an event to the sync outbox, in this transaction (issue 4).
    pub fn outbox_push(&mut self, event: &[u8]) -> Result<u64, Error> {
        let seq = self.next_seq("outbox_seq")?;
        self.put(self.dbs.outbox, &seq.to_be_bytes(), event)?;
        Ok(seq)
    }

    /// Removes one outbox event (after the broker acknowledged it); false if absent.
    pub fn outbox_delete(&mut self, seq: u64) -> Result<bool, Error> {
        self.del(self.dbs.outbox, &seq.to_be_bytes())
    }

    /// Removes the oldest outbox event (when the outbox is full); returns its sequence.
    pub fn outbox_drop_oldest(&mut self) -> Result<Option<u64>, Error> {
        let Some(seq) = self.reader().outbox_after(0, 1)?.pop().map(|(s, _)| s) else {
            return Ok(None);
        };
        self.outbox_delete(seq)?;
        Ok(Some(seq))
    }

    /// Remembers that a remote operation was applied (or refused for good): its version
    /// and when it was seen (ms since the epoch, for [`Writer::prune_seen_before`]).
    /// Remembers an applied op id with its version and when it was seen (ms).
    pub fn mark_op_seen(
        &mut self,
        op_id: &str,
        version: u64,
        seen_at_ms: u64,
    ) -> Result<(), Error> {
        let mut v = version.to_be_bytes().to_vec();
        v.extend_from_slice(&seen_at_ms.to_be_bytes());
        self.put(self.dbs.sync_seen, op_id.as_bytes(), &v)
    }

    /// Forgets up to `limit` remembered op ids seen before `cutoff_ms`; returns how many.
    /// Entries written before the seen time was stored (8 bytes) count their version
    /// (the producer's clock) as their time.
    pub fn prune_seen_before(&mut self, cutoff_ms: u64, limit: usize) -> Result<u64, Error> {
        let mut old = Vec::new();
        for item in self.dbs.sync_seen.iter(self.txn)? {
            if old.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let at = match v.len() {
                16 => &v[8..16],
                8 => v,
                _ => return Err(Error::Corrupt("sync_seen value".into())),
            };
            let at = u64::from_be_bytes(<[u8; 8]>::try_from(at).unwrap_or([0; 8]));
            if at < cutoff_ms {
                old.push(k.to_vec());
            }
        }
        for k in &old {
            self.del(self.dbs.sync_seen, k)?;
        }
        Ok(old.len() as u64)
    }

    pub fn set_entity_version(
        &mut self,
        client: &str,
        gallery: &str,
        user: &str,
        version: &EntityVersion,
    ) -> Result<(), Error> {
        let mut v = version.version.to_be_bytes().to_vec();
        v.extend_from_slice(version.origin.as_bytes());
        self.put(self.dbs.sync_versions, &key(&[client, gallery, user]), &v)
    }
}
