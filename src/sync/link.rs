//! The MQTT connection: one task owns the rumqttc event loop, publishes the outbox in
//! order with QoS 1, deletes an event when its PUBACK arrives, and applies incoming
//! operations before acknowledging them (manual acks: an operation interrupted by a
//! crash is redelivered, and applying it twice is harmless).
//!
//! The store work of incoming packets runs in two tasks fed in arrival order through
//! channels, [`store_worker`]s: one applies operations (which may re-embed a photo and
//! wait for an inference session), the other deletes the events the broker
//! acknowledged. The event loop never waits for either, so keep-alive pings, PUBACKs
//! and the outbox keep flowing while a long operation is applied (a stalled poll made
//! the broker drop the link, and an acknowledged event queued behind an operation
//! would stay in the outbox). The channels need no bound of their own: operations stay
//! unacknowledged until applied, so the broker's in-flight window bounds what is
//! queued, and acknowledgements are bounded by the publishing window.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Store work handed from the event loop to [`store_worker`], in arrival order.
enum StoreWork {
    /// An incoming operation, checked; acknowledged to the broker once applied, if the
    /// connection it came on (`connection`) is still the current one.
    Apply {
        op: Box<crate::gallery::Op>,
        publish: Publish,
        connection: u64,
    },
    /// An incoming packet with nothing to apply (our own event coming back, a
    /// rejected message): acknowledged in its turn, since MQTT wants PUBACKs in the
    /// order the PUBLISHes came (brokers such as rumqttd drop a client that does not).
    Ack { publish: Publish, connection: u64 },
    /// The outbox event the broker acknowledged.
    Acknowledged(u64),
}

/// The two queues of [`store_worker`]s.
struct Work {
    ops: tokio::sync::mpsc::UnboundedSender<StoreWork>,
    acks: tokio::sync::mpsc::UnboundedSender<StoreWork>,
}

/// What the event loop and the store workers share.
struct Shared {
    gallery: Arc<Gallery>,
    client: AsyncClient,
    metrics: Arc<SyncMetrics>,
    /// Counts connections (ConnAck); a PUBACK for an operation received on an earlier
    /// connection would name a packet id of that connection, so it is not sent (the
    /// broker redelivers the operation; applying it again is harmless).
    connection: AtomicU64,
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
        let shared = Arc::new(Shared {
            gallery: gallery.clone(),
            client: client.clone(),
            metrics: metrics.clone(),
            connection: AtomicU64::new(0),
        });
        let (ops, ops_queue) = tokio::sync::mpsc::unbounded_channel();
        let (acks, acks_queue) = tokio::sync::mpsc::unbounded_channel();
        let workers = [
            tokio::spawn(store_worker(shared.clone(), ops_queue, stop.clone()).in_current_span()),
            tokio::spawn(store_worker(shared.clone(), acks_queue, stop.clone()).in_current_span()),
        ];
        let work = Work { ops, acks };
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
                            event, &shared, &work, &topics, &mut inflight, &mut connected,
                        );
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
        // The worker ends once the queue is empty and closed: an operation being
        // applied is finished (and stays unacknowledged if the link is gone).
        drop(work);
        for worker in workers {
            let _ = worker.await;
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

fn handle_event(
    event: Event,
    shared: &Shared,
    work: &Work,
    topics: &Topics,
    inflight: &mut Inflight,
    connected: &mut bool,
) {
    let (client, metrics) = (&shared.client, &shared.metrics);
    match event {
        Event::Incoming(Incoming::ConnAck(ack)) => {
            tracing::info!(session_present = ack.session_present, "connected to broker");
            *connected = true;
            shared.connection.fetch_add(1, Ordering::SeqCst);
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
                // The worker only stops after this loop, so the send cannot fail.
                let _ = work.acks.send(StoreWork::Acknowledged(seq));
            }
        }
        Event::Incoming(Incoming::Publish(publish)) => receive(publish, shared, work, topics),
        _ => {}
    }
}

fn receive(publish: Publish, shared: &Shared, work: &Work, topics: &Topics) {
    let metrics = &shared.metrics;
    let checked = inbound::check(topics, &publish.topic, &publish.payload);
    if !matches!(checked, Ok(Inbound::Own)) {
        metrics.received.fetch_add(1, Ordering::Relaxed);
    }
    // Every packet is acknowledged by the operations worker, in arrival order; one to
    // apply once applied.
    let connection = shared.connection.load(Ordering::SeqCst);
    let item = match checked {
        Ok(Inbound::Own) => StoreWork::Ack {
            publish,
            connection,
        },
        Ok(Inbound::Apply(op)) => StoreWork::Apply {
            op,
            publish,
            connection,
        },
        Err(rejection) => {
            metrics.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %publish.topic, reason = %rejection, "message rejected");
            StoreWork::Ack {
                publish,
                connection,
            }
        }
    };
    // The worker only stops after the event loop, so the send cannot fail.
    let _ = work.ops.send(item);
}

/// Sends the PUBACK of `publish` if it came on the current connection.
fn acknowledge(shared: &Shared, publish: &Publish, connection: u64) {
    if shared.connection.load(Ordering::SeqCst) != connection {
        return;
    }
    if let Err(e) = shared.client.try_ack(publish) {
        tracing::warn!(error = %e, "cannot acknowledge");
    }
}

/// Runs the store work of one queue one item at a time, in arrival order, off the
/// event loop (see the module docs).
async fn store_worker(
    shared: Arc<Shared>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<StoreWork>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    while let Some(item) = queue.recv().await {
        match item {
            StoreWork::Acknowledged(seq) => {
                let g = shared.gallery.clone();
                match tokio::task::spawn_blocking(move || g.outbox_acknowledged(seq)).await {
                    Ok(Ok(())) => {
                        shared.metrics.published.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        tracing::error!(seq, error = %e, "cannot delete acknowledged event")
                    }
                    Err(e) => tracing::error!(seq, error = %e, "outbox task failed"),
                }
            }
            StoreWork::Apply {
                op,
                publish,
                connection,
            } => {
                if apply(&shared, *op, stop.clone()).await {
                    acknowledge(&shared, &publish, connection);
                }
            }
            StoreWork::Ack {
                publish,
                connection,
            } => acknowledge(&shared, &publish, connection),
        }
    }
}

/// How long an operation waits before it is tried again when every inference session
/// stayed busy (the camera and API keep a kiosk busy at times; the op is never refused
/// for that).
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Applies one operation; false when it must not be acknowledged (the broker
/// redelivers it on the next connection).
async fn apply(
    shared: &Shared,
    op: crate::gallery::Op,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> bool {
    let metrics = &shared.metrics;
    let op = Arc::new(op);
    let (op_id, origin) = (op.op_id.clone(), op.origin.clone());
    let outcome = loop {
        let (g, o) = (shared.gallery.clone(), op.clone());
        match tokio::task::spawn_blocking(move || g.apply_op(&o)).await {
            Ok(Err(e)) if e.is_busy() && !*stop.borrow() => {
                tracing::info!(%op_id, "inference sessions busy; operation tried again shortly");
                tokio::select! {
                    _ = tokio::time::sleep(BUSY_RETRY) => continue,
                    _ = stop.changed() => break Ok(Err(e)),
                }
            }
            outcome => break outcome,
        }
    };
    match outcome {
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
            true
        }
        Ok(Err(e)) => {
            tracing::error!(%op_id, %origin, error = %e, "cannot apply operation");
            false
        }
        Err(e) => {
            tracing::error!(%op_id, error = %e, "apply task failed");
            false
        }
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
