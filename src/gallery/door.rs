//! Door actions' durable writes (the decisions and the delivery live in src/door): each
//! visit's action lines, the webhook's bounded queue of pending calls, and the MQTT
//! `open` command, which enters the sync outbox in the transaction of its line. Lines
//! are broadcast to live listeners (the kiosk's Server-Sent Events) after they commit.

use super::ops::{Op, OpKind};
use super::{Change, Error, Gallery};
use crate::store::{DoorLine, WebhookCall};

/// A visit that opens the door, as the `open` command published over MQTT.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenCommand {
    pub visit_id: u64,
    pub client: String,
    pub gallery: String,
    pub user_id: String,
    pub user_name: String,
    pub similarity: f32,
    pub mask: bool,
    /// The visit's capture time (ms since the epoch).
    pub at_ms: u64,
    /// Not to be acted on after this time (ms since the epoch).
    pub expires_at_ms: u64,
}

impl OpenCommand {
    /// The `open` operation from device `origin` (docs/sync.md), versioned by the
    /// capture time like a `recognized` event.
    pub(super) fn op(&self, origin: &str, model: &str) -> Op {
        let kind = OpKind::Open {
            visit_id: self.visit_id,
            user_id: self.user_id.clone(),
            user_name: self.user_name.clone(),
            similarity: (self.similarity * 10_000.0).round() / 10_000.0,
            mask: self.mask,
            at: super::rfc3339_millis(self.at_ms),
            expires_at_ms: self.expires_at_ms,
        };
        Op {
            ts: self.at_ms / 1000,
            ..Op::new(origin, model, &self.client, &self.gallery, self.at_ms, kind)
        }
    }
}

impl Gallery {
    /// Writes a line to its visit's record; with `open` and sync on, the `open` command
    /// enters the outbox in the same transaction. Then tells live listeners.
    pub fn door_note(&self, line: DoorLine, open: Option<&OpenCommand>) -> Result<(), Error> {
        let keep = self.settings.visit_history;
        self.writes.commit(|tx| {
            tx.add_door_line(&line, keep)?;
            match open {
                Some(command) => tx.publish(Change::DoorOpen(command)),
                None => Ok(()),
            }
        })?;
        let _ = self.door_lines.send(line);
        Ok(())
    }

    /// Queues a webhook call with its `queued` line in one transaction. With `limit`
    /// calls already waiting, the oldest is dropped and its visit gets a `dropped` line.
    pub fn door_enqueue_webhook(
        &self,
        line: DoorLine,
        call: &WebhookCall,
        limit: usize,
    ) -> Result<Option<DoorLine>, Error> {
        let keep = self.settings.visit_history;
        let dropped = self.writes.commit(|w| {
            w.add_door_line(&line, keep)?;
            let Some(old) = w.door_queue_push(call, limit)? else {
                return Ok::<_, Error>(None);
            };
            let note = DoorLine {
                visit_id: old.visit_id,
                client: old.client.clone(),
                action: line.action.clone(),
                outcome: "dropped".into(),
                detail: format!("webhook queue full ({limit} calls): oldest call dropped"),
                at_ms: line.at_ms,
            };
            w.add_door_line(&note, keep)?;
            Ok(Some(note))
        })?;
        let _ = self.door_lines.send(line);
        if let Some(note) = &dropped {
            let _ = self.door_lines.send(note.clone());
        }
        Ok(dropped)
    }

    /// Up to `limit` pending webhook calls, oldest first, with their queue sequence.
    pub fn door_pending(&self, limit: usize) -> Result<Vec<(u64, WebhookCall)>, Error> {
        Ok(self.store.read(|r| r.door_queue_head(limit))?)
    }

    /// Pending webhook calls.
    pub fn door_pending_len(&self) -> Result<u64, Error> {
        Ok(self.store.read(|r| r.door_queue_len())?)
    }

    /// A failed attempt: stores the call's attempt count and, when given, a line.
    pub fn door_webhook_failed(
        &self,
        seq: u64,
        call: &WebhookCall,
        line: Option<DoorLine>,
    ) -> Result<(), Error> {
        let keep = self.settings.visit_history;
        self.writes.commit(|w| {
            if w.door_queue_update(seq, call)? {
                if let Some(line) = &line {
                    w.add_door_line(line, keep)?;
                }
            }
            Ok::<_, Error>(())
        })?;
        if let Some(line) = line {
            let _ = self.door_lines.send(line);
        }
        Ok(())
    }

    /// The receiver answered 2xx: the call leaves the queue and its visit gets `line`,
    /// in one transaction. False when the call was no longer queued.
    pub fn door_webhook_delivered(&self, seq: u64, line: DoorLine) -> Result<bool, Error> {
        let keep = self.settings.visit_history;
        let removed = self.writes.commit(|w| {
            let removed = w.door_queue_delete(seq)?;
            if removed {
                w.add_door_line(&line, keep)?;
            }
            Ok::<_, Error>(removed)
        })?;
        if removed {
            let _ = self.door_lines.send(line);
        }
        Ok(removed)
    }

    /// The door lines of a stored visit.
    pub fn door_lines(&self, visit_id: u64) -> Result<Vec<DoorLine>, Error> {
        Ok(self.store.read(|r| r.door_lines(visit_id))?)
    }

    /// Live door lines from now on.
    pub fn subscribe_door(&self) -> tokio::sync::broadcast::Receiver<DoorLine> {
        self.door_lines.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_command_is_an_open_operation_that_reads_back() {
        let command = OpenCommand {
            visit_id: 7,
            client: "kiosk".into(),
            gallery: "door".into(),
            user_id: "amy".into(),
            user_name: "Amy".into(),
            similarity: 0.912_345,
            mask: false,
            at_ms: 1_795_639_580_300,
            expires_at_ms: 1_795_639_590_300,
        };
        let op = command.op("door-1", "m1");
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(json["op"], "open");
        assert_eq!(json["visit_id"], 7);
        assert_eq!(json["user_id"], "amy");
        assert_eq!(json["at"], "2026-11-25T20:46:20.300Z");
        assert_eq!(json["expires_at_ms"], 1_795_639_590_300u64);
        assert!((json["similarity"].as_f64().unwrap() - 0.9123).abs() < 1e-6);
        assert_eq!(serde_json::from_value::<Op>(json).unwrap(), op);
    }
}
