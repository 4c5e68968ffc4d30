//! Checks an incoming message before it reaches the gallery: size, JSON, operation name,
//! protocol version, and that the payload matches its topic (a message on one client's
//! topic may not touch another client's gallery; a peer may not speak for another).

use super::topics::{Source, Topics};
use crate::gallery::{Op, OpKind, OP_NAMES, PROTOCOL_VERSION};

/// Largest accepted message (a user with a few templates and crops is well below).
pub const MAX_OP_BYTES: usize = 1 << 20;

/// Why a message was rejected before reaching the gallery.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("topic {0} is not ours")]
    Topic(String),
    #[error("payload of {0} bytes exceeds {MAX_OP_BYTES}")]
    TooLarge(usize),
    #[error("bad JSON: {0}")]
    BadJson(String),
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    #[error("protocol version {0} not supported")]
    Version(u32),
    #[error("invalid operation: {0}")]
    Invalid(String),
    #[error("operation for client {payload} on the topic of client {topic}")]
    OtherClient { topic: String, payload: String },
    #[error("operation from {payload} on the topic of device {topic}")]
    Spoofed { topic: String, payload: String },
}

/// What to do with a message.
#[derive(Debug)]
pub enum Inbound {
    Apply(Box<Op>),
    /// Our own event coming back from the broker: nothing to do.
    Own,
}

pub fn check(topics: &Topics, topic: &str, payload: &[u8]) -> Result<Inbound, Rejection> {
    let source = topics
        .classify(topic)
        .ok_or_else(|| Rejection::Topic(topic.to_string()))?;
    if let Source::Peer { device } = &source {
        if *device == topics.device {
            return Ok(Inbound::Own);
        }
    }
    if payload.len() > MAX_OP_BYTES {
        return Err(Rejection::TooLarge(payload.len()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| Rejection::BadJson(e.to_string()))?;
    let name = value.get("op").and_then(|v| v.as_str()).unwrap_or("");
    if !OP_NAMES.contains(&name) {
        return Err(Rejection::UnknownOp(name.chars().take(64).collect()));
    }
    let op: Op = serde_json::from_value(value).map_err(|e| Rejection::Invalid(e.to_string()))?;
    if op.v != PROTOCOL_VERSION {
        return Err(Rejection::Version(op.v));
    }
    if op.op_id.is_empty() || op.op_id.len() > 128 || op.client.is_empty() || op.gallery.is_empty()
    {
        return Err(Rejection::Invalid(
            "empty or oversized op_id, client or gallery".into(),
        ));
    }
    match source {
        Source::Central { client } if client != op.client => {
            return Err(Rejection::OtherClient {
                topic: client,
                payload: op.client,
            })
        }
        // A device never emits a gallery's full state: only the central server may
        // remove users it does not list.
        Source::Peer { device } if matches!(op.kind, OpKind::GalleryState { .. }) => {
            return Err(Rejection::Invalid(format!(
                "gallery_state from device {device}: only the central server sends it"
            )))
        }
        Source::Peer { device } if device != op.origin => {
            return Err(Rejection::Spoofed {
                topic: device,
                payload: op.origin,
            })
        }
        _ => {}
    }
    Ok(Inbound::Apply(Box::new(op)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new("fg", "door-1")
    }

    fn op_json(client: &str, origin: &str, op: &str) -> Vec<u8> {
        format!(
            r#"{{"v":1,"op_id":"x1","origin":"{origin}","version":5,"ts":1,"client":"{client}",
               "gallery":"g","model":"m","op":"{op}","user_id":"u"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn hostile_messages_are_rejected_with_their_reason() {
        let t = topics();
        assert!(matches!(
            check(&t, "fg/ops/acme", b"{not json"),
            Err(Rejection::BadJson(_))
        ));
        assert!(matches!(
            check(
                &t,
                "fg/ops/acme",
                &op_json("acme", "central", "format_disk")
            ),
            Err(Rejection::UnknownOp(_))
        ));
        assert!(matches!(
            check(&t, "fg/ops/acme", &vec![b' '; MAX_OP_BYTES + 1]),
            Err(Rejection::TooLarge(_))
        ));
        assert!(matches!(
            check(
                &t,
                "fg/ops/acme",
                &op_json("evil", "central", "delete_user")
            ),
            Err(Rejection::OtherClient { .. })
        ));
        assert!(matches!(
            check(
                &t,
                "fg/devices/door-2/events",
                &op_json("acme", "door-3", "delete_user")
            ),
            Err(Rejection::Spoofed { .. })
        ));
        // Only the central server sends a gallery's full state.
        let state = br#"{"v":1,"op_id":"x2","origin":"door-2","version":5,"ts":1,"client":"acme",
            "gallery":"g","model":"m","op":"gallery_state","users":[]}"#;
        assert!(matches!(
            check(&t, "fg/devices/door-2/events", state),
            Err(Rejection::Invalid(_))
        ));
        assert!(matches!(
            check(&t, "fg/ops/acme", state),
            Ok(Inbound::Apply(_))
        ));
    }

    #[test]
    fn a_valid_operation_is_accepted_and_our_own_events_are_skipped() {
        let t = topics();
        assert!(matches!(
            check(
                &t,
                "fg/ops/acme",
                &op_json("acme", "central", "delete_user")
            ),
            Ok(Inbound::Apply(_))
        ));
        assert!(matches!(
            check(&t, "fg/devices/door-1/events", b"anything"),
            Ok(Inbound::Own)
        ));
    }
}
