//! The link's counters and their Prometheus text (appended to the API's /metrics).

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counters of the link (read them with [`SyncMetrics::snapshot`]).
#[derive(Debug, Default)]
pub struct SyncMetrics {
    pub connected: AtomicBool,
    /// Connected and the broker acknowledged our subscriptions.
    pub subscribed: AtomicBool,
    pub connects: AtomicU64,
    /// Failed connection attempts and dropped connections (refused credentials, TLS
    /// errors, broker unreachable).
    pub connection_errors: AtomicU64,
    /// Outbox events acknowledged by the broker (and deleted).
    pub published: AtomicU64,
    /// Operations received (every message on our topics, before any check).
    pub received: AtomicU64,
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
    /// Remembered op ids forgotten after `seen_retention_days`.
    pub seen_pruned: AtomicU64,
}

/// A copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub connected: bool,
    pub subscribed: bool,
    pub connects: u64,
    pub connection_errors: u64,
    pub published: u64,
    pub received: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub ignored: u64,
    pub refused: u64,
    pub rejected: u64,
    pub seen_pruned: u64,
}

impl SyncMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            subscribed: self.subscribed.load(Ordering::Relaxed),
            connects: l(&self.connects),
            connection_errors: l(&self.connection_errors),
            published: l(&self.published),
            received: l(&self.received),
            applied: l(&self.applied),
            duplicates: l(&self.duplicates),
            stale: l(&self.stale),
            ignored: l(&self.ignored),
            refused: l(&self.refused),
            rejected: l(&self.rejected),
            seen_pruned: l(&self.seen_pruned),
        }
    }

    /// Prometheus exposition text of the counters.
    pub fn prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, v: bool| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                u8::from(v)
            );
        };
        gauge(
            "facegate_sync_connected",
            "1 while connected to the MQTT broker.",
            s.connected,
        );
        gauge(
            "facegate_sync_subscribed",
            "1 while connected and subscribed.",
            s.subscribed,
        );
        let counters: [(&str, &str, u64); 11] = [
            ("connects", "Connections made to the broker.", s.connects),
            (
                "connection_errors",
                "Failed or dropped broker connections (refused credentials, TLS, unreachable).",
                s.connection_errors,
            ),
            (
                "published",
                "Outbox events acknowledged by the broker.",
                s.published,
            ),
            ("received", "Messages received on sync topics.", s.received),
            ("applied", "Operations applied.", s.applied),
            (
                "duplicates",
                "Operations already applied (same op id).",
                s.duplicates,
            ),
            (
                "stale",
                "Operations older than the stored state, skipped.",
                s.stale,
            ),
            (
                "ignored",
                "Refusal reports and recognition events of other devices.",
                s.ignored,
            ),
            (
                "refused",
                "Operations refused by the gallery (reported as refused events).",
                s.refused,
            ),
            (
                "rejected",
                "Messages rejected before reaching the gallery.",
                s.rejected,
            ),
            (
                "seen_pruned",
                "Remembered op ids forgotten after the retention.",
                s.seen_pruned,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP facegate_sync_{name}_total {help}\n# TYPE facegate_sync_{name}_total counter\nfacegate_sync_{name}_total {v}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_render_as_prometheus_text() {
        let m = SyncMetrics::default();
        m.connected.store(true, Ordering::Relaxed);
        m.applied.fetch_add(3, Ordering::Relaxed);
        let text = m.prometheus();
        assert!(text.contains("\nfacegate_sync_connected 1\n"), "{text}");
        assert!(text.contains("\nfacegate_sync_applied_total 3\n"), "{text}");
        assert!(text.contains("# TYPE facegate_sync_rejected_total counter\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(name.starts_with("facegate_sync_"), "{line}");
            value.parse::<f64>().unwrap();
        }
    }
}
