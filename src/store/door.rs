//! Door actions' durable state (src/door): the webhook's bounded queue of pending calls
//! and each visit's action lines. Both databases are additive (created empty at open,
//! ignored by builds that do not know them), so they need no schema step.

use serde::{Deserialize, Serialize};

use super::records::{from_json, to_json};
use super::{Error, Reader, Writer};

/// One line of a visit's door record: what one action did for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoorLine {
    /// The visit's sequence number (its SSE id).
    pub visit_id: u64,
    /// The client that owns the camera (a screen sees only its client's lines).
    pub client: String,
    /// `webhook`, `relay` or `mqtt`.
    pub action: String,
    /// `done`, `queued`, `refused`, `failed` or `dropped`.
    pub outcome: String,
    /// Why (a refusal's rule, an error), or for whom the door opened.
    pub detail: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A webhook call waiting for a 2xx answer: the exact body that is signed and sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookCall {
    pub visit_id: u64,
    pub client: String,
    pub body: String,
    /// Failed attempts so far (kept across restarts).
    #[serde(default)]
    pub attempts: u32,
}

impl Reader<'_> {
    /// Up to `limit` pending webhook calls, oldest first.
    pub fn door_queue_head(&self, limit: usize) -> Result<Vec<(u64, WebhookCall)>, Error> {
        let mut out = Vec::new();
        for item in self.dbs.door_queue.iter(self.txn)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            out.push((seq(k)?, from_json(v)?));
        }
        Ok(out)
    }

    /// Pending webhook calls.
    pub fn door_queue_len(&self) -> Result<u64, Error> {
        Ok(self.dbs.door_queue.len(self.txn)?)
    }

    /// The door lines of a visit, in the order they were written.
    pub fn door_lines(&self, visit_id: u64) -> Result<Vec<DoorLine>, Error> {
        Ok(self
            .dbs
            .door_lines
            .get(self.txn, &visit_id.to_be_bytes())?
            .map(from_json)
            .transpose()?
            .unwrap_or_default())
    }
}

impl Writer<'_, '_> {
    /// Appends a line to its visit's record; lines of visits more than `keep` visits
    /// older than this one are pruned (the visit history keeps as many).
    pub fn add_door_line(&mut self, line: &DoorLine, keep: usize) -> Result<(), Error> {
        let mut lines = self.reader().door_lines(line.visit_id)?;
        lines.push(line.clone());
        self.put(
            self.dbs.door_lines,
            &line.visit_id.to_be_bytes(),
            &to_json(&lines)?,
        )?;
        let cutoff = line.visit_id.saturating_sub(keep.max(1) as u64);
        let old = self
            .dbs
            .door_lines
            .iter(self.txn)?
            .map(|item| item.map(|(k, _)| k.to_vec()))
            .take_while(|k| {
                k.as_ref()
                    .map(|k| k.as_slice() < &cutoff.to_be_bytes()[..])
                    .unwrap_or(false)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for k in &old {
            self.del(self.dbs.door_lines, k)?;
        }
        Ok(())
    }

    /// Appends a webhook call; with `limit` calls already waiting the oldest is dropped
    /// first and returned (so that its visit can say so).
    pub fn door_queue_push(
        &mut self,
        call: &WebhookCall,
        limit: usize,
    ) -> Result<Option<WebhookCall>, Error> {
        let mut dropped = None;
        if self.reader().door_queue_len()? >= limit.max(1) as u64 {
            if let Some((seq, oldest)) = self.reader().door_queue_head(1)?.pop() {
                self.del(self.dbs.door_queue, &seq.to_be_bytes())?;
                dropped = Some(oldest);
            }
        }
        let seq = self.next_seq("door_queue_seq")?;
        self.put(self.dbs.door_queue, &seq.to_be_bytes(), &to_json(call)?)?;
        Ok(dropped)
    }

    /// Rewrites a pending call (its attempt count); false if it is gone.
    pub fn door_queue_update(&mut self, seq: u64, call: &WebhookCall) -> Result<bool, Error> {
        let key = seq.to_be_bytes();
        if self.dbs.door_queue.get(self.txn, &key)?.is_none() {
            return Ok(false);
        }
        self.put(self.dbs.door_queue, &key, &to_json(call)?)?;
        Ok(true)
    }

    /// Removes a call (after its 2xx answer); false if it was already gone.
    pub fn door_queue_delete(&mut self, seq: u64) -> Result<bool, Error> {
        self.del(self.dbs.door_queue, &seq.to_be_bytes())
    }
}

fn seq(k: &[u8]) -> Result<u64, Error> {
    <[u8; 8]>::try_from(k)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Corrupt("door queue key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn call(visit_id: u64) -> WebhookCall {
        WebhookCall {
            visit_id,
            client: "kiosk".into(),
            body: format!("{{\"visit_id\":{visit_id}}}"),
            attempts: 0,
        }
    }

    #[test]
    fn the_webhook_queue_is_bounded_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), 1).unwrap();
            let mut dropped = Vec::new();
            for id in 1..=5 {
                if let Some(d) = store.write(|w| w.door_queue_push(&call(id), 3)).unwrap() {
                    dropped.push(d.visit_id);
                }
            }
            assert_eq!(dropped, [1, 2]);
        }
        let store = Store::open(dir.path(), 1).unwrap();
        let head = store.read(|r| r.door_queue_head(10)).unwrap();
        let ids: Vec<u64> = head.iter().map(|(_, c)| c.visit_id).collect();
        assert_eq!(ids, [3, 4, 5]);
        let (seq, mut first) = head[0].clone();
        first.attempts = 4;
        assert!(store.write(|w| w.door_queue_update(seq, &first)).unwrap());
        assert!(store.write(|w| w.door_queue_delete(seq)).unwrap());
        assert!(!store.write(|w| w.door_queue_delete(seq)).unwrap());
        assert!(!store.write(|w| w.door_queue_update(seq, &first)).unwrap());
        assert_eq!(store.read(|r| r.door_queue_len()).unwrap(), 2);
    }

    #[test]
    fn door_lines_follow_their_visit_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let line = |visit_id: u64, outcome: &str| DoorLine {
            visit_id,
            client: "kiosk".into(),
            action: "relay".into(),
            outcome: outcome.into(),
            detail: String::new(),
            at_ms: 1,
        };
        for id in 1..=10 {
            store
                .write(|w| w.add_door_line(&line(id, "done"), 4))
                .unwrap();
        }
        store
            .write(|w| w.add_door_line(&line(10, "failed"), 4))
            .unwrap();
        let outcomes: Vec<String> = store
            .read(|r| r.door_lines(10))
            .unwrap()
            .into_iter()
            .map(|l| l.outcome)
            .collect();
        assert_eq!(outcomes, ["done", "failed"]);
        assert!(store.read(|r| r.door_lines(5)).unwrap().is_empty());
        assert_eq!(store.read(|r| r.door_lines(6)).unwrap().len(), 1);
    }
}
