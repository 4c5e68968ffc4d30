//! Fleet sync over MQTT (issue 4; protocol in docs/sync.md): publishes the gallery's
//! outbox with QoS 1 (an event leaves the outbox only after the broker's PUBACK),
//! applies gallery operations from the central server and from peer devices through
//! [`Gallery::apply_op`], and keeps a retained online/offline status with a last will.
//!
//! Public face: [`SyncOptions`] (from the `[sync]` config), [`start`] which returns a
//! [`SyncHandle`], [`SyncMetrics`] and [`Error`]. Depends only on `gallery`.

mod failure;
mod inbound;
mod link;
mod metrics;
mod options;
mod push;
mod snapshot;
mod tls;
mod topics;

use std::sync::Arc;
use std::time::Duration;

use crate::gallery::Gallery;

pub use inbound::MAX_OP_BYTES;
pub use metrics::{MetricsSnapshot, SyncMetrics};
pub use options::SyncOptions;
pub use push::{push, PushError};
pub use snapshot::{
    request_snapshot, serve_snapshots, Catalog, SnapshotEvent, SnapshotRequest, ALL_GALLERIES,
    SNAPSHOT_REQUEST,
};
pub use tls::{TlsClient, TlsError, TlsFiles};
pub use topics::Topics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sync url {0:?}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")]
    BadUrl(String),
    #[error(
        "sync url {0:?} is plain TCP but ca_file, client_cert or client_key is set: use mqtts://"
    )]
    TlsFilesWithoutTls(String),
    #[error("sync TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("sync needs a device id ([sync] device_id or FACEGATE_DEVICE_ID)")]
    NoDeviceId,
    #[error("device id {0:?} must not contain '/', '+' or '#'")]
    BadDeviceId(String),
}

/// The running link; [`SyncHandle::stop`] publishes "offline" and disconnects.
pub struct SyncHandle {
    metrics: Arc<SyncMetrics>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SyncHandle {
    pub fn metrics(&self) -> &Arc<SyncMetrics> {
        &self.metrics
    }

    /// Publishes the offline status, disconnects and waits for the task (at most `grace`).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("sync link did not stop in time");
        }
    }
}

/// Starts the link on the current tokio runtime.
pub fn start(gallery: Arc<Gallery>, options: SyncOptions) -> SyncHandle {
    start_with_metrics(gallery, options, Arc::new(SyncMetrics::default()))
}

/// As [`start`], counting into `metrics` (created before, e.g. for /metrics).
pub fn start_with_metrics(
    gallery: Arc<Gallery>,
    options: SyncOptions,
    metrics: Arc<SyncMetrics>,
) -> SyncHandle {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(link::run(gallery, options, metrics.clone(), stopped));
    SyncHandle {
        metrics,
        stop,
        task,
    }
}
