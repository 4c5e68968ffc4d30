//! Bounded memory of applied op ids (`sync_seen`): ids older than a retention are
//! forgotten. Safe because versions still order operations: a forgotten operation
//! delivered again is not newer than the state it made, so it is skipped as stale
//! (docs/sync.md, "Remembered op ids").

use std::time::Duration;

use super::{Error, Gallery};
use crate::store;

/// Entries deleted per write transaction (keeps each transaction short).
const BATCH: usize = 10_000;

impl Gallery {
    /// Forgets the op ids seen more than `retention` ago; returns how many.
    pub fn prune_seen(&self, retention: Duration) -> Result<u64, Error> {
        let cutoff = self
            .writes
            .clock()
            .now_ms()
            .saturating_sub(retention.as_millis() as u64);
        let mut total = 0;
        loop {
            let n = self
                .writes
                .commit(|w| Ok(w.prune_seen_before(cutoff, BATCH)?))?;
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Op ids remembered.
    pub fn seen_len(&self) -> Result<u64, Error> {
        Ok(self.store.read(|r| r.seen_len())?)
    }

    /// The clients of a device that never received anything: no op id remembered and
    /// no gallery at all. Empty when the device already holds or received data.
    pub fn clients_of_an_empty_replica(&self) -> Result<Vec<String>, Error> {
        Ok(self.store.read(|r| {
            if r.seen_len()? > 0 {
                return Ok(Vec::new());
            }
            let mut clients = Vec::new();
            for c in r.clients()? {
                if !r.galleries(&c.name)?.is_empty() {
                    return Ok(Vec::new());
                }
                clients.push(c.name);
            }
            Ok::<_, store::Error>(clients)
        })?)
    }
}
