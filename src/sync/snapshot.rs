//! Snapshots (docs/sync.md, "Snapshots"): a device asks the central server for the full
//! state of a gallery on `{prefix}/devices/{device}/requests`; the central answers on
//! `{prefix}/devices/{device}/snapshot` with the gallery's `create_gallery`, one
//! `upsert_user` per user and last the `gallery_state` (which removes users absent from
//! the snapshot), in the export file's order, with their versions and op ids as stored,
//! so that applying a snapshot is idempotent and never overwrites newer data.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, QoS};
use serde::{Deserialize, Serialize};

use super::push::{publish_all, PushError};
use super::{SyncOptions, Topics};
use crate::gallery::{Op, PROTOCOL_VERSION};

pub const SNAPSHOT_REQUEST: &str = "snapshot";
/// `gallery` of a request for every gallery of the client the central server has.
pub const ALL_GALLERIES: &str = "*";

/// A device's request for a snapshot of one gallery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub v: u32,
    /// Always "snapshot".
    pub request: String,
    pub request_id: String,
    pub device: String,
    pub client: String,
    pub gallery: String,
    pub ts: u64,
}

impl SnapshotRequest {
    pub fn new(device: &str, client: &str, gallery: &str) -> SnapshotRequest {
        SnapshotRequest {
            v: PROTOCOL_VERSION,
            request: SNAPSHOT_REQUEST.into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            device: device.into(),
            client: client.into(),
            gallery: gallery.into(),
            ts: crate::store::now(),
        }
    }
}

/// Publishes a snapshot request for `client`/`gallery` as the configured device; returns
/// it once the broker acknowledged it.
pub async fn request_snapshot(
    options: &SyncOptions,
    client: &str,
    gallery: &str,
    timeout: Duration,
) -> Result<SnapshotRequest, PushError> {
    let topics = Topics::new(&options.topic_prefix, &options.device_id);
    let request = SnapshotRequest::new(&options.device_id, client, gallery);
    let payload = serde_json::to_vec(&request)?;
    publish_all(
        options,
        "request",
        vec![(topics.requests(), payload)],
        timeout,
    )
    .await?;
    Ok(request)
}

/// The galleries the central server can send, by (client, gallery).
pub type Catalog = HashMap<(String, String), Vec<Op>>;

/// What the snapshot server did (for the caller to report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotEvent {
    /// Subscribed to the devices' requests: requests are now received.
    Listening,
    Served {
        device: String,
        client: String,
        gallery: String,
        operations: usize,
    },
    UnknownGallery {
        device: String,
        client: String,
        gallery: String,
    },
    Rejected {
        topic: String,
        reason: String,
    },
    ConnectionError(String),
}

fn parse(topics: &Topics, topic: &str, payload: &[u8]) -> Result<SnapshotRequest, String> {
    let device = topics
        .request_device(topic)
        .ok_or_else(|| "not a request topic".to_string())?;
    let request: SnapshotRequest =
        serde_json::from_slice(payload).map_err(|e| format!("bad request: {e}"))?;
    if request.v != PROTOCOL_VERSION || request.request != SNAPSHOT_REQUEST {
        return Err(format!(
            "unknown request {:?} version {}",
            request.request, request.v
        ));
    }
    if request.device != device {
        return Err(format!(
            "request for device {} on the topic of device {device}",
            request.device
        ));
    }
    Ok(request)
}

/// Answers snapshot requests from `catalog` until `stop` completes. Uses a persistent
/// session (client id `facegate-snapshots-{device_id}`), so requests made while it is
/// down are answered when it is back (once it has subscribed a first time).
pub async fn serve_snapshots(
    options: &SyncOptions,
    catalog: Catalog,
    stop: impl Future<Output = ()>,
    mut report: impl FnMut(SnapshotEvent),
) {
    let topics = Topics::new(&options.topic_prefix, &options.device_id);
    let mut mqtt = options.mqtt(format!("facegate-snapshots-{}", options.device_id));
    mqtt.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(super::link::MAX_PACKET, super::link::MAX_PACKET);
    let (client, mut eventloop) = AsyncClient::new(mqtt, 1024);
    let catalog = std::sync::Arc::new(catalog);
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                if let Err(e) = client.try_subscribe(topics.all_requests(), QoS::AtLeastOnce) {
                    report(SnapshotEvent::ConnectionError(e.to_string()));
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(_))) => report(SnapshotEvent::Listening),
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let request = match parse(&topics, &p.topic, &p.payload) {
                    Ok(r) => r,
                    Err(reason) => {
                        report(SnapshotEvent::Rejected {
                            topic: p.topic.to_string(),
                            reason,
                        });
                        continue;
                    }
                };
                let keys: Vec<(String, String)> = if request.gallery == ALL_GALLERIES {
                    let mut keys: Vec<_> = catalog
                        .keys()
                        .filter(|(c, _)| *c == request.client)
                        .cloned()
                        .collect();
                    keys.sort();
                    keys
                } else {
                    let key = (request.client.clone(), request.gallery.clone());
                    catalog
                        .contains_key(&key)
                        .then_some(key)
                        .into_iter()
                        .collect()
                };
                if keys.is_empty() {
                    report(SnapshotEvent::UnknownGallery {
                        device: request.device,
                        client: request.client,
                        gallery: request.gallery,
                    });
                    continue;
                }
                for (c, g) in &keys {
                    report(SnapshotEvent::Served {
                        device: request.device.clone(),
                        client: c.clone(),
                        gallery: g.clone(),
                        operations: catalog[&(c.clone(), g.clone())].len(),
                    });
                }
                let (client, catalog) = (client.clone(), catalog.clone());
                let topic = topics.snapshot_for(&request.device);
                // Publishing waits for room in the request queue, which this loop
                // empties: publish from another task.
                tokio::spawn(async move {
                    for op in keys.iter().flat_map(|k| &catalog[k]) {
                        let Ok(payload) = serde_json::to_vec(op) else {
                            continue;
                        };
                        if let Err(e) = client
                            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                            .await
                        {
                            tracing::warn!(error = %e, "cannot publish a snapshot operation");
                            return;
                        }
                    }
                });
            }
            Ok(_) => {}
            Err(e) => {
                report(SnapshotEvent::ConnectionError(e.to_string()));
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}
