//! Plays the central server: publishes operations to `{prefix}/ops/{client}` with QoS 1
//! and returns once the broker acknowledged every one (used by `facegate push`).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

use super::{SyncOptions, Topics};
use crate::gallery::Op;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("broker: {0}")]
    Connection(#[from] rumqttc::ConnectionError),
    #[error("cannot queue a publish: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("serialising an operation: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the broker acknowledged {acked} of {total} operations within {secs} s")]
    Timeout {
        acked: usize,
        total: usize,
        secs: u64,
    },
}

/// Publishes `ops` in order; Ok(n) when the broker acknowledged all n.
pub async fn push(
    options: &SyncOptions,
    ops: &[Op],
    timeout: Duration,
) -> Result<usize, PushError> {
    let topics = Topics::new(&options.topic_prefix, &options.device_id);
    let mut mqtt = MqttOptions::new(
        format!("facegate-push-{}", std::process::id()),
        options.host.clone(),
        options.port,
    );
    mqtt.set_max_packet_size(16 << 20, 16 << 20);
    if !options.username.is_empty() {
        mqtt.set_credentials(options.username.clone(), options.password.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(mqtt, ops.len().max(1));
    for op in ops {
        let payload = serde_json::to_vec(op)?;
        client.try_publish(topics.ops_for(&op.client), QoS::AtLeastOnce, false, payload)?;
    }
    let total = ops.len();
    let mut acked = 0;
    let wait = async {
        while acked < total {
            if let Event::Incoming(Incoming::PubAck(_)) = eventloop.poll().await? {
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
