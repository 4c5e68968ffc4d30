//! API hit counts per client, in memory: what the store holds, what a flush is writing,
//! and what was counted since. The quota check and get-counters read only this book, so
//! a request never waits for the disk: a flush moves the unsaved hits to "saving" under
//! the lock, commits them with the lock released (on an SD card the commit's sync can
//! take tens of milliseconds), then marks them saved, or unsaved again if the commit
//! failed. A client's saved count is read from the store once, at its first hit or
//! query; only `Accounts::flush_hits` writes hit counts after that, so the book stays
//! equal to the store (a client removed meanwhile gets its hits dropped by the flush).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// One client's hits.
#[derive(Clone, Copy, Debug, Default)]
struct ClientHits {
    /// In the store.
    saved: u64,
    /// In a flush's batch whose commit is running.
    saving: u64,
    /// Counted since the last batch was taken.
    unsaved: u64,
}

impl ClientHits {
    fn total(&self) -> u64 {
        self.saved + self.saving + self.unsaved
    }
}

/// Hits a flush takes to the store: client name and count.
pub(super) type HitBatch = Vec<(String, u64)>;

#[derive(Debug, Default)]
pub(super) struct HitBook {
    clients: Mutex<HashMap<String, ClientHits>>,
}

impl HitBook {
    /// Counts one hit unless `limit` (0: none) is reached; false when refused.
    /// `saved` gives the stored count the first time the book meets the client.
    pub fn count<E>(
        &self,
        client: &str,
        limit: u64,
        saved: impl FnOnce() -> Result<u64, E>,
    ) -> Result<bool, E> {
        let mut clients = self.lock();
        let hits = entry(&mut clients, client, saved)?;
        if limit > 0 && hits.total() >= limit {
            return Ok(false);
        }
        hits.unsaved += 1;
        Ok(true)
    }

    /// All hits of `client`, saved or not.
    pub fn total<E>(&self, client: &str, saved: impl FnOnce() -> Result<u64, E>) -> Result<u64, E> {
        let mut clients = self.lock();
        Ok(entry(&mut clients, client, saved)?.total())
    }

    /// The totals of the clients the book knows (the store has the others' exactly).
    pub fn known_totals(&self) -> HashMap<String, u64> {
        let clients = self.lock();
        clients
            .iter()
            .map(|(c, h)| (c.clone(), h.total()))
            .collect()
    }

    /// Moves every unsaved hit to "saving" and returns them; empty when there is none.
    pub fn take_batch(&self) -> HitBatch {
        let mut clients = self.lock();
        let mut batch = Vec::new();
        for (client, hits) in clients.iter_mut().filter(|(_, h)| h.unsaved > 0) {
            batch.push((client.clone(), hits.unsaved));
            hits.saving += hits.unsaved;
            hits.unsaved = 0;
        }
        batch
    }

    /// Ends a batch: its hits are saved, or (the commit failed) unsaved again so that
    /// the next flush retries them.
    pub fn batch_done(&self, batch: &HitBatch, committed: bool) {
        let mut clients = self.lock();
        for (client, n) in batch {
            // Every client of a batch has an entry: entries are never removed.
            if let Some(hits) = clients.get_mut(client) {
                hits.saving -= n;
                if committed {
                    hits.saved += n;
                } else {
                    hits.unsaved += n;
                }
            }
        }
    }

    #[cfg(test)]
    pub fn saving(&self) -> u64 {
        self.lock().values().map(|h| h.saving).sum()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, ClientHits>> {
        // Poisoned only by a panic between two plain field updates; the counts are
        // still whole numbers, the worst case a hit counted or not.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn entry<'a, E>(
    clients: &'a mut HashMap<String, ClientHits>,
    client: &str,
    saved: impl FnOnce() -> Result<u64, E>,
) -> Result<&'a mut ClientHits, E> {
    if !clients.contains_key(client) {
        let saved = saved()?;
        clients.insert(
            client.to_string(),
            ClientHits {
                saved,
                ..ClientHits::default()
            },
        );
    }
    // Inserted just above when it was missing.
    Ok(clients
        .get_mut(client)
        .unwrap_or_else(|| unreachable!("entry inserted above")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: u64) -> impl FnOnce() -> Result<u64, ()> {
        move || Ok(n)
    }

    #[test]
    fn hits_in_a_batch_still_count_against_the_limit_until_saved_or_returned() {
        let book = HitBook::default();
        assert_eq!(book.count("kiosk", 4, stored(2)), Ok(true));
        // The stored count is read once: a later loader is not called.
        let batch = book.take_batch();
        assert_eq!(batch, vec![("kiosk".to_string(), 1)]);
        assert_eq!(book.count("kiosk", 4, || Err(())), Ok(true));
        assert_eq!(book.total("kiosk", || Err(())), Ok(4));
        assert_eq!(book.count("kiosk", 4, || Err(())), Ok(false));
        book.batch_done(&batch, false);
        assert_eq!(book.take_batch(), vec![("kiosk".to_string(), 2)]);
        assert_eq!(book.total("kiosk", || Err(())), Ok(4));
        assert!(book.take_batch().is_empty());
    }

    #[test]
    fn a_failed_first_read_counts_nothing() {
        let book = HitBook::default();
        assert_eq!(book.count("kiosk", 0, || Err("store")), Err("store"));
        assert!(book.known_totals().is_empty());
        assert_eq!(book.count("kiosk", 0, stored(7)), Ok(true));
        assert_eq!(book.known_totals()["kiosk"], 8);
    }
}
