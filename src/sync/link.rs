//! The MQTT connection: one task owns the rumqttc event loop, publishes the outbox in
//! order with QoS 1, deletes an event when its PUBACK arrives, and applies incoming
//! operations before acknowledging them (manual acks: an operation interrupted by a
//! crash is redelivered, and applying it twice is harmless).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, LastWill, Outgoing, Publish, QoS};
use tracing::Instrument;

use super::failure::Failure;
use super::inbound::{self, Inbound};
use super::snapshot::{SnapshotRequest, ALL_GALLERIES};
use super::{SyncMetrics, SyncOptions, Topics};
use crate::gallery::{Applied, Gallery};

/// Outbox events published and not yet acknowledged, at most.
const WINDOW: usize = 64;
/// Largest incoming MQTT packet the client reads.
pub(super) const MAX_PACKET: usize = 16 << 20;
/// How often the outbox is looked at when nothing else happens.
const TICK: Duration = Duration::from_millis(50);
/// How often remembered op ids older than the retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

const ONLINE: &[u8] = br#"{"state":"online"}"#;
const OFFLINE: &[u8] = br#"{"state":"offline"}"#;

/// Tracks which outbox event a packet id stands for.
#[derive(Default)]
struct Inflight {
    /// Publishes handed to rumqttc, in order, not yet given a packet id
    /// (None: a status message).
    sent: VecDeque<Option<u64>>,
    /// Packet id -> outbox sequence, waiting for PUBACK.
    by_pkid: HashMap<u16, u64>,
    /// Highest outbox sequence handed to rumqttc in this connection.
    cursor: u64,
}

impl Inflight {
    fn len(&self) -> usize {
        self.sent.len() + self.by_pkid.len()
    }
}

pub(super) async fn run(
    gallery: Arc<Gallery>,
    options: SyncOptions,
    metrics: Arc<SyncMetrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let span = tracing::info_span!("sync", device = %options.device_id);
    async move {
        let topics = Topics::new(&options.topic_prefix, &options.device_id);
        let mut mqtt = options.mqtt(format!("facegate-{}", options.device_id));
        mqtt.set_keep_alive(Duration::from_secs(5))
            // A persistent session: the broker keeps operations for us while we are away.
            .set_clean_session(false)
            .set_manual_acks(true)
            // Far above MAX_OP_BYTES, so that an oversized operation is read, rejected and
            // acknowledged instead of breaking the connection (and being redelivered on
            // every reconnect). Brokers should cap packets below this (docs/sync.md).
            .set_max_packet_size(MAX_PACKET, 2 * inbound::MAX_OP_BYTES)
            .set_last_will(LastWill::new(topics.status(), OFFLINE, QoS::AtLeastOnce, true));
        if !options.username.is_empty() && options.tls.is_none() {
            tracing::warn!("broker password sent over plain TCP (use mqtts://)");
        }
        let (client, mut eventloop) = AsyncClient::new(mqtt, 4 * WINDOW);
        let mut inflight = Inflight::default();
        let mut connected = false;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Pruning runs beside the event loop, not in its select!: a branch that wins
        // while `eventloop.poll()` is connecting drops the half-made connection, and the
        // client connects again at once (seen with TLS, where connecting takes longer).
        let pruner = options.seen_retention.map(|retention| {
            tokio::spawn(
                prune_periodically(gallery.clone(), retention, metrics.clone(), stop.clone())
                    .in_current_span(),
            )
        });
        // The last connection failure logged, so that a broker that keeps refusing us
        // is reported once, not every second.
        let mut last_failure: Option<String> = None;
        let mut snapshot_asked = !options.snapshot_when_empty;
        tracing::info!(broker = %options.broker(), "sync starting");
        loop {
            tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(event) => {
                        if matches!(event, Event::Incoming(Incoming::ConnAck(_))) {
                            last_failure = None;
                        }
                        handle_event(
                            event, &gallery, &client, &topics, &metrics,
                            &mut inflight, &mut connected,
                        ).await;
                    }
                    Err(e) => {
                        metrics.connection_errors.fetch_add(1, Ordering::Relaxed);
                        let failure = Failure::of(&e, !connected && !options.username.is_empty());
                        let text = failure.to_string();
                        if connected {
                            tracing::warn!(error = %text, broker = %options.broker(), "broker connection lost; outbox keeps growing");
                        } else if last_failure.as_deref() != Some(text.as_str()) {
                            match failure {
                                Failure::Unreachable(_) => tracing::warn!(error = %text, broker = %options.broker(), "broker unreachable; retrying"),
                                _ => tracing::error!(error = %text, broker = %options.broker(), "cannot connect to the broker; retrying"),
                            }
                        } else {
                            tracing::debug!(error = %text, "broker still refusing or unreachable");
                        }
                        last_failure = Some(text);
                        connected = false;
                        metrics.connected.store(false, Ordering::Relaxed);
                        metrics.subscribed.store(false, Ordering::Relaxed);
                        // Forget what was in flight: after reconnecting, the outbox is
                        // published again from its oldest event, in order.
                        eventloop.pending.clear();
                        inflight = Inflight::default();
                        tokio::select! {
                            _ = tokio::time::sleep(options.reconnect_delay) => {}
                            _ = stop.changed() => break,
                        }
                    }
                },
                _ = tick.tick(), if connected => {}
                _ = stop.changed() => break,
            }
            if connected && !snapshot_asked {
                snapshot_asked = true;
                ask_snapshots_if_empty(&gallery, &client, &topics, &mut inflight).await;
            }
            if connected {
                top_up(&gallery, &client, &topics, &mut inflight).await;
            }
        }
        if connected {
            let _ = client.try_publish(topics.status(), QoS::AtLeastOnce, true, OFFLINE);
            let _ = client.try_disconnect();
            // Let the event loop send the status and the disconnect.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while eventloop.poll().await.is_ok() {}
            })
            .await;
        }
        if let Some(pruner) = pruner {
            let _ = pruner.await;
        }
        tracing::info!("sync stopped");
    }
    .instrument(span)
    .await
}

/// A device that never received anything asks for snapshots of every gallery of its
/// clients (once per start; docs/sync.md, "Snapshots").
async fn ask_snapshots_if_empty(
    gallery: &Arc<Gallery>,
    client: &AsyncClient,
    topics: &Topics,
    inflight: &mut Inflight,
) {
    let g = gallery.clone();
    let clients = match tokio::task::spawn_blocking(move || g.clients_of_an_empty_replica()).await {
        Ok(Ok(clients)) => clients,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the sync state");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "sync state task failed");
            return;
        }
    };
    for name in clients {
        let request = SnapshotRequest::new(&topics.device, &name, ALL_GALLERIES);
        let Ok(payload) = serde_json::to_vec(&request) else {
            continue;
        };
        match client.try_publish(topics.requests(), QoS::AtLeastOnce, false, payload) {
            Ok(()) => {
                inflight.sent.push_back(None);
                tracing::info!(client = %name, "empty device: asked for snapshots of the client's galleries");
            }
            Err(e) => tracing::warn!(error = %e, "cannot ask for a snapshot"),
        }
    }
}

/// Forgets remembered op ids older than `retention` now and every [`PRUNE_EVERY`]
/// until `stop` changes.
async fn prune_periodically(
    gallery: Arc<Gallery>,
    retention: Duration,
    metrics: Arc<SyncMetrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = prune.tick() => prune_seen(&gallery, retention, &metrics).await,
            _ = stop.changed() => break,
        }
    }
}

/// Forgets remembered op ids older than the retention (docs/sync.md).
async fn prune_seen(gallery: &Arc<Gallery>, retention: Duration, metrics: &SyncMetrics) {
    let g = gallery.clone();
    match tokio::task::spawn_blocking(move || g.prune_seen(retention)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            metrics.seen_pruned.fetch_add(n, Ordering::Relaxed);
            tracing::info!(forgotten = n, "forgot op ids older than the retention");
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot prune remembered op ids"),
        Err(e) => tracing::error!(error = %e, "prune task failed"),
    }
}

async fn handle_event(
    event: Event,
    gallery: &Arc<Gallery>,
    client: &AsyncClient,
    topics: &Topics,
    metrics: &SyncMetrics,
    inflight: &mut Inflight,
    connected: &mut bool,
) {
    match event {
        Event::Incoming(Incoming::ConnAck(ack)) => {
            tracing::info!(session_present = ack.session_present, "connected to broker");
            *connected = true;
            metrics.connected.store(true, Ordering::Relaxed);
            metrics.connects.fetch_add(1, Ordering::Relaxed);
            let filters = topics
                .subscriptions()
                .map(|t| rumqttc::SubscribeFilter::new(t, QoS::AtLeastOnce));
            if let Err(e) = client.try_subscribe_many(filters) {
                tracing::warn!(error = %e, "cannot subscribe");
            }
            match client.try_publish(topics.status(), QoS::AtLeastOnce, true, ONLINE) {
                Ok(()) => inflight.sent.push_back(None),
                Err(e) => tracing::warn!(error = %e, "cannot publish status"),
            }
        }
        Event::Incoming(Incoming::SubAck(_)) => {
            metrics.subscribed.store(true, Ordering::Relaxed);
        }
        Event::Outgoing(Outgoing::Publish(pkid)) => {
            if let Some(Some(seq)) = inflight.sent.pop_front() {
                inflight.by_pkid.insert(pkid, seq);
            }
        }
        Event::Incoming(Incoming::PubAck(ack)) => {
            if let Some(seq) = inflight.by_pkid.remove(&ack.pkid) {
                let g = gallery.clone();
                match tokio::task::spawn_blocking(move || g.outbox_acknowledged(seq)).await {
                    Ok(Ok(())) => {
                        metrics.published.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        tracing::error!(seq, error = %e, "cannot delete acknowledged event")
                    }
                    Err(e) => tracing::error!(seq, error = %e, "outbox task failed"),
                }
            }
        }
        Event::Incoming(Incoming::Publish(publish)) => {
            receive(publish, gallery, client, topics, metrics).await;
        }
        _ => {}
    }
}

async fn receive(
    publish: Publish,
    gallery: &Arc<Gallery>,
    client: &AsyncClient,
    topics: &Topics,
    metrics: &SyncMetrics,
) {
    let checked = inbound::check(topics, &publish.topic, &publish.payload);
    if !matches!(checked, Ok(Inbound::Own)) {
        metrics.received.fetch_add(1, Ordering::Relaxed);
    }
    match checked {
        Ok(Inbound::Own) => {}
        Ok(Inbound::Apply(op)) => {
            let g = gallery.clone();
            let op_id = op.op_id.clone();
            let origin = op.origin.clone();
            match tokio::task::spawn_blocking(move || g.apply_op(&op)).await {
                Ok(Ok(applied)) => {
                    let counter = match &applied {
                        Applied::Applied => &metrics.applied,
                        Applied::Duplicate => &metrics.duplicates,
                        Applied::Stale => &metrics.stale,
                        Applied::Ignored => &metrics.ignored,
                        Applied::Refused(_) => &metrics.refused,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%op_id, %origin, ?applied, "operation handled");
                }
                Ok(Err(e)) => {
                    // Not acknowledged: the broker redelivers it on the next connection.
                    tracing::error!(%op_id, %origin, error = %e, "cannot apply operation");
                    return;
                }
                Err(e) => {
                    tracing::error!(%op_id, error = %e, "apply task failed");
                    return;
                }
            }
        }
        Err(rejection) => {
            metrics.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %publish.topic, reason = %rejection, "message rejected");
        }
    }
    if let Err(e) = client.try_ack(&publish) {
        tracing::warn!(error = %e, "cannot acknowledge");
    }
}

/// Hands the next outbox events to rumqttc, oldest first, up to the window.
async fn top_up(
    gallery: &Arc<Gallery>,
    client: &AsyncClient,
    topics: &Topics,
    inflight: &mut Inflight,
) {
    let room = WINDOW.saturating_sub(inflight.len());
    if room == 0 {
        return;
    }
    let g = gallery.clone();
    let after = inflight.cursor;
    let batch = match tokio::task::spawn_blocking(move || g.outbox_after(after, room)).await {
        Ok(Ok(batch)) => batch,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read outbox");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "outbox task failed");
            return;
        }
    };
    for (seq, payload) in batch {
        // Door commands go to their own topic; one that expired while the broker was
        // unreachable is dropped instead of opening the door late.
        let topic = match door_command_expiry(&payload) {
            None => topics.events(),
            Some(expires) if expires >= crate::store::now_ms() => topics.door(),
            Some(expires) => {
                tracing::warn!(
                    seq,
                    expires,
                    "door open command expired before publishing: dropped"
                );
                let g = gallery.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || g.outbox_acknowledged(seq)).await
                {
                    tracing::error!(seq, error = %e, "cannot drop expired door command");
                    return;
                }
                inflight.cursor = seq;
                continue;
            }
        };
        match client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
            Ok(()) => {
                inflight.sent.push_back(Some(seq));
                inflight.cursor = seq;
            }
            Err(e) => {
                tracing::debug!(error = %e, "request queue full; publishing later");
                return;
            }
        }
    }
}

/// The expiry (ms since the epoch) of an outbox event that is a door `open` command;
/// None for every other event.
fn door_command_expiry(payload: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        op: std::borrow::Cow<'a, str>,
        #[serde(default)]
        expires_at_ms: u64,
    }
    let peek: Peek<'_> = serde_json::from_slice(payload).ok()?;
    (peek.op == "open").then_some(peek.expires_at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_commands_are_routed_to_the_door_topic() {
        assert_eq!(
            door_command_expiry(br#"{"op":"open","visit_id":3,"expires_at_ms":42}"#),
            Some(42)
        );
        assert_eq!(
            door_command_expiry(br#"{"op":"recognized","expires_at_ms":42}"#),
            None
        );
        assert_eq!(door_command_expiry(b"not json"), None);
    }
}
