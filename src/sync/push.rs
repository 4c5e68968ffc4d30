//! Plays the central server: publishes operations with QoS 1 and returns once the broker
//! acknowledged every one (used by `facegate push` and the snapshot server).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, QoS};

use super::{SyncOptions, Topics};
use crate::gallery::Op;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("broker {broker}: {source}")]
    Connection {
        broker: String,
        source: Box<rumqttc::ConnectionError>,
    },
    #[error("cannot queue a publish: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("serialising a message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the broker acknowledged {acked} of {total} messages within {secs} s")]
    Timeout {
        acked: usize,
        total: usize,
        secs: u64,
    },
}

/// Publishes `ops` in order to `{prefix}/ops/{client}`; Ok(n) when the broker
/// acknowledged all n.
pub async fn push(
    options: &SyncOptions,
    ops: &[Op],
    timeout: Duration,
) -> Result<usize, PushError> {
    let topics = Topics::new(&options.topic_prefix, &options.device_id);
    let messages = ops
        .iter()
        .map(|op| Ok((topics.ops_for(&op.client), serde_json::to_vec(op)?)))
        .collect::<Result<Vec<_>, PushError>>()?;
    publish_all(options, "push", messages, timeout).await
}

/// Publishes `(topic, payload)` messages in order with QoS 1 on a connection of its own
/// (`role` names its client id); Ok(n) when the broker acknowledged all n.
pub(super) async fn publish_all(
    options: &SyncOptions,
    role: &str,
    messages: Vec<(String, Vec<u8>)>,
    timeout: Duration,
) -> Result<usize, PushError> {
    let mut mqtt = options.mqtt(format!("facegate-{role}-{}", std::process::id()));
    mqtt.set_max_packet_size(super::link::MAX_PACKET, super::link::MAX_PACKET);
    let (client, mut eventloop) = AsyncClient::new(mqtt, messages.len().max(1));
    let total = messages.len();
    for (topic, payload) in messages {
        client.try_publish(topic, QoS::AtLeastOnce, false, payload)?;
    }
    let mut acked = 0;
    let wait = async {
        while acked < total {
            let event = eventloop
                .poll()
                .await
                .map_err(|source| PushError::Connection {
                    broker: options.broker(),
                    source: Box::new(source),
                })?;
            if let Event::Incoming(Incoming::PubAck(_)) = event {
                acked += 1;
            }
        }
        Ok::<_, PushError>(())
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(PushError::Timeout {
                acked,
                total,
                secs: timeout.as_secs(),
            })
        }
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    Ok(total)
}
