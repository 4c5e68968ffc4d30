//! Fleet sync over MQTT (issue 4; protocol in docs/sync.md): publishes the gallery's
//! outbox with QoS 1 (an event leaves the outbox only after the broker's PUBACK),
//! applies gallery operations from the central server and from peer devices through
//! [`Gallery::apply_op`], and keeps a retained online/offline status with a last will.
//!
//! Public face: [`SyncOptions`] (from the `[sync]` config), [`start`] which returns a
//! [`SyncHandle`], [`SyncMetrics`] and [`Error`]. Depends only on `gallery`.

mod inbound;
mod link;
mod push;
mod topics;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::gallery::Gallery;

pub use inbound::MAX_OP_BYTES;
pub use push::{push, PushError};
pub use topics::Topics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sync url {0:?}: expected mqtt://HOST:PORT")]
    BadUrl(String),
    #[error("sync url {0:?}: TLS (mqtts://) is not supported yet")]
    TlsUnsupported(String),
    #[error("sync needs a device id ([sync] device_id or FACEGATE_DEVICE_ID)")]
    NoDeviceId,
    #[error("device id {0:?} must not contain '/', '+' or '#'")]
    BadDeviceId(String),
}

/// Settings of the MQTT link.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncOptions {
    pub host: String,
    pub port: u16,
    pub device_id: String,
    pub topic_prefix: String,
    pub username: String,
    pub password: String,
    /// Delay before reconnecting after the broker went away.
    pub reconnect_delay: Duration,
}

impl SyncOptions {
    /// None when sync is off (empty url).
    pub fn from_config(config: &crate::config::Config) -> Result<Option<SyncOptions>, Error> {
        let s = &config.sync;
        if s.url.is_empty() {
            return Ok(None);
        }
        if s.url.starts_with("mqtts://") || s.url.starts_with("ssl://") {
            return Err(Error::TlsUnsupported(s.url.clone()));
        }
        let rest = s
            .url
            .strip_prefix("mqtt://")
            .or_else(|| s.url.strip_prefix("tcp://"))
            .ok_or_else(|| Error::BadUrl(s.url.clone()))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| Error::BadUrl(s.url.clone()))?),
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(Error::BadUrl(s.url.clone()));
        }
        // Empty: the host name, as the default config documents.
        let device_id = if s.device_id.is_empty() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default()
        } else {
            s.device_id.clone()
        };
        if device_id.is_empty() {
            return Err(Error::NoDeviceId);
        }
        if device_id.contains(['/', '+', '#']) {
            return Err(Error::BadDeviceId(device_id));
        }
        Ok(Some(SyncOptions {
            host: host.to_string(),
            port,
            device_id,
            topic_prefix: s.topic_prefix.clone(),
            username: s.username.clone(),
            password: s.password.clone(),
            reconnect_delay: Duration::from_secs(1),
        }))
    }
}

/// Counters of the link (read them with [`SyncMetrics::snapshot`]).
#[derive(Debug, Default)]
pub struct SyncMetrics {
    pub connected: AtomicBool,
    /// Connected and the broker acknowledged our subscriptions.
    pub subscribed: AtomicBool,
    pub connects: AtomicU64,
    /// Outbox events acknowledged by the broker (and deleted).
    pub published: AtomicU64,
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub stale: AtomicU64,
    /// Refusal reports and recognition events of other devices (nothing to apply).
    pub ignored: AtomicU64,
    /// Operations refused by the gallery (unknown client, model mismatch, bad template).
    pub refused: AtomicU64,
    /// Messages rejected before reaching the gallery (bad JSON, unknown op, too large,
    /// topic / payload mismatch).
    pub rejected: AtomicU64,
}

/// A copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub connected: bool,
    pub subscribed: bool,
    pub connects: u64,
    pub published: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub ignored: u64,
    pub refused: u64,
    pub rejected: u64,
}

impl SyncMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            subscribed: self.subscribed.load(Ordering::Relaxed),
            connects: l(&self.connects),
            published: l(&self.published),
            applied: l(&self.applied),
            duplicates: l(&self.duplicates),
            stale: l(&self.stale),
            ignored: l(&self.ignored),
            refused: l(&self.refused),
            rejected: l(&self.rejected),
        }
    }
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
    let metrics = Arc::new(SyncMetrics::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(link::run(gallery, options, metrics.clone(), stopped));
    SyncHandle {
        metrics,
        stop,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn with(url: &str, device: &str) -> Result<Option<SyncOptions>, Error> {
        let mut config = Config::default();
        config.sync.url = url.into();
        config.sync.device_id = device.into();
        SyncOptions::from_config(&config)
    }

    #[test]
    fn an_empty_url_turns_sync_off() {
        assert_eq!(with("", "d").unwrap(), None);
    }

    #[test]
    fn a_broker_url_gives_host_port_and_device() {
        let o = with("mqtt://10.0.0.5:1884", "door-1").unwrap().unwrap();
        assert_eq!((o.host.as_str(), o.port), ("10.0.0.5", 1884));
        assert_eq!(o.device_id, "door-1");
        let o = with("mqtt://broker", "door-1").unwrap().unwrap();
        assert_eq!(o.port, 1883);
    }

    #[test]
    fn bad_urls_tls_and_wildcard_device_ids_are_configuration_errors() {
        assert!(matches!(with("http://x:1", "d"), Err(Error::BadUrl(_))));
        assert!(matches!(with("mqtt://x:port", "d"), Err(Error::BadUrl(_))));
        assert!(matches!(
            with("mqtts://x:8883", "d"),
            Err(Error::TlsUnsupported(_))
        ));
        assert!(matches!(
            with("mqtt://x:1", "a/b"),
            Err(Error::BadDeviceId(_))
        ));
    }
}
