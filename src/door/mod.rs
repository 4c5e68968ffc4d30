//! Door actions (issue 12): what a recognized camera visit makes happen at the door.
//! Visits come from the gallery's live broadcast; [`Rules`] decide whether one opens
//! the door; then each configured action runs: the GPIO relay pulse ([`Relay`]), the
//! signed webhook (queued in the store, retried until a 2xx), and with sync on the MQTT
//! `open` command (through the sync outbox). Every outcome - done, queued, refused by a
//! rule, failed, dropped - is a line in the visit's record (gallery, shown by the kiosk
//! events and page) and a counter ([`DoorMetrics`]).
//!
//! Sits beside `camera` and `sync`, depends only on `gallery` (and `store` types);
//! nothing below knows it. Public face: [`DoorOptions`], [`Door`], [`Rules`],
//! [`Refusal`], [`Relay`] with [`GpioRelay`] and [`RecordingRelay`], [`DoorMetrics`],
//! the webhook's [`signature`] and [`Error`].

mod metrics;
mod relay;
mod rules;
mod webhook;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};

use crate::config::Config;
use crate::gallery::{Gallery, OpenCommand, Visit};
use crate::store::{now_ms, DoorLine, WebhookCall};

pub use metrics::{DoorMetrics, ACTIONS, OUTCOMES};
pub use relay::{GpioRelay, RecordingRelay, Relay, RelayError};
pub use rules::{parse_utc_offset, Refusal, Rules, TimeWindow};
pub use webhook::{body as webhook_body, signature, WebhookOptions, SIGNATURE_HEADER};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("door.{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        key,
        message: message.into(),
    }
}

/// The GPIO line of the relay.
#[derive(Clone, Debug, PartialEq)]
pub struct GpioOptions {
    pub chip: String,
    pub line: u32,
    pub active_low: bool,
}

/// The `[door]` section, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct DoorOptions {
    pub rules: Rules,
    pub webhook: Option<WebhookOptions>,
    pub gpio: Option<GpioOptions>,
    pub pulse: Duration,
    /// The `open` command's topic when sync is on and `mqtt_open` is set.
    pub mqtt_topic: Option<String>,
    pub mqtt_ttl: Duration,
}

impl DoorOptions {
    /// None when no action is configured (no webhook, no GPIO chip, no MQTT command).
    pub fn from_config(config: &Config) -> Result<Option<DoorOptions>, Error> {
        let d = &config.door;
        let mut galleries = Vec::new();
        let listed: Vec<&str> = if d.galleries.is_empty() {
            [config.camera.gallery.as_str()]
                .into_iter()
                .filter(|g| !g.is_empty())
                .collect()
        } else {
            d.galleries.iter().map(String::as_str).collect()
        };
        for g in listed {
            match g.split_once('/') {
                Some((c, n)) if !c.is_empty() && !n.is_empty() && !n.contains('/') => {
                    galleries.push((c.to_string(), n.to_string()))
                }
                _ => {
                    return Err(invalid(
                        "galleries",
                        format!("{g:?}: expected CLIENT/GALLERY"),
                    ))
                }
            }
        }
        if !(0.0..=1.0).contains(&d.min_similarity) {
            return Err(invalid("min_similarity", "must be within 0..1"));
        }
        let windows = d
            .time_windows
            .iter()
            .map(|w| TimeWindow::parse(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| invalid("time_windows", m))?;
        let rules = Rules {
            galleries,
            users: d.users.clone(),
            min_similarity: d.min_similarity,
            allow_masked: d.allow_masked,
            windows,
            utc_offset_min: parse_utc_offset(&d.utc_offset)
                .map_err(|m| invalid("utc_offset", m))?,
        };
        let webhook = if d.webhook_url.is_empty() {
            None
        } else {
            let url: hyper::Uri = d
                .webhook_url
                .parse()
                .map_err(|e| invalid("webhook_url", format!("{:?}: {e}", d.webhook_url)))?;
            if url.scheme_str() != Some("http") || url.host().is_none() {
                return Err(invalid(
                    "webhook_url",
                    format!(
                        "{:?}: expected http://HOST[:PORT]/PATH (https is not supported: put a TLS proxy in front)",
                        d.webhook_url
                    ),
                ));
            }
            if d.webhook_secret.is_empty() {
                return Err(invalid(
                    "webhook_secret",
                    "must be set with webhook_url (receivers verify the signature)",
                ));
            }
            if d.webhook_retry_min_ms == 0
                || d.webhook_retry_max_ms < d.webhook_retry_min_ms
                || d.webhook_timeout_ms == 0
                || d.webhook_queue_limit == 0
            {
                return Err(invalid(
                    "webhook_retry_min_ms",
                    "webhook_timeout_ms, webhook_retry_min_ms and webhook_queue_limit must be at least 1, and webhook_retry_max_ms at least webhook_retry_min_ms",
                ));
            }
            Some(WebhookOptions {
                url,
                secret: d.webhook_secret.clone(),
                timeout: Duration::from_millis(d.webhook_timeout_ms),
                retry_min: Duration::from_millis(d.webhook_retry_min_ms),
                retry_max: Duration::from_millis(d.webhook_retry_max_ms),
                queue_limit: d.webhook_queue_limit,
            })
        };
        let gpio = (!d.gpio_chip.is_empty()).then(|| GpioOptions {
            chip: d.gpio_chip.clone(),
            line: d.gpio_line,
            active_low: d.gpio_active_low,
        });
        if gpio.is_some() && !(1..=60_000).contains(&d.gpio_pulse_ms) {
            return Err(invalid("gpio_pulse_ms", "must be within 1..60000"));
        }
        let mqtt_topic = (d.mqtt_open && !config.sync.url.is_empty()).then(|| {
            format!(
                "{}/devices/{}/door",
                config.sync.topic_prefix.trim_end_matches('/'),
                config.sync.device_id
            )
        });
        if webhook.is_none() && gpio.is_none() && mqtt_topic.is_none() {
            return Ok(None);
        }
        Ok(Some(DoorOptions {
            rules,
            webhook,
            gpio,
            pulse: Duration::from_millis(d.gpio_pulse_ms),
            mqtt_topic,
            mqtt_ttl: Duration::from_secs(d.mqtt_open_ttl_secs),
        }))
    }

    /// The configured GPIO relay (None without `gpio_chip`).
    pub fn gpio_relay(&self) -> Option<Arc<dyn Relay>> {
        self.gpio
            .as_ref()
            .map(|g| Arc::new(GpioRelay::new(&g.chip, g.line, g.active_low)) as Arc<dyn Relay>)
    }
}

/// A line of `visit`'s door record, written now.
fn door_line(visit: &Visit, action: &str, outcome: &str, detail: String) -> DoorLine {
    DoorLine {
        visit_id: visit.id,
        client: visit.record.client.clone(),
        action: action.into(),
        outcome: outcome.into(),
        detail,
        at_ms: now_ms(),
    }
}

/// How far back, at start, the door looks for visits it never acted on (the daemon
/// stopped or lost power between recording a visit and writing its door lines).
const CATCH_UP_MS: u64 = 3_600_000;

/// The running door: the visit watcher and the webhook sender.
pub struct Door {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: Arc<DoorMetrics>,
}

impl Door {
    /// Starts on `runtime`. Visits recorded from this call on are acted on (it
    /// subscribes before returning, so start it before the camera). `relay` is the
    /// relay to pulse (normally [`DoorOptions::gpio_relay`]).
    pub fn start(
        runtime: &tokio::runtime::Handle,
        gallery: Arc<Gallery>,
        options: DoorOptions,
        relay: Option<Arc<dyn Relay>>,
        metrics: Arc<DoorMetrics>,
    ) -> Door {
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let live = gallery.subscribe_visits();
        // Read after subscribing: a visit recorded meanwhile is in both, and acted on
        // once (the watcher skips ids it has seen).
        let backlog = gallery
            .visits_since(now_ms().saturating_sub(CATCH_UP_MS), 1000)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "door: cannot read recent visits; no catch-up");
                Vec::new()
            });
        let mut tasks = Vec::new();
        if let Some(webhook) = options.webhook.clone() {
            tasks.push(runtime.spawn(webhook::run(
                gallery.clone(),
                webhook,
                metrics.clone(),
                wake.clone(),
                stopped.clone(),
            )));
        }
        let actor = Actor {
            gallery,
            options,
            relay,
            metrics: metrics.clone(),
            wake,
        };
        tasks.push(runtime.spawn(actor.watch(backlog, live, stopped)));
        Door {
            stop,
            tasks,
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<DoorMetrics> {
        &self.metrics
    }

    /// Stops the tasks (a call being sent stays queued and is sent after a restart).
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!("door task did not stop in time");
            }
        }
    }
}

struct Actor {
    gallery: Arc<Gallery>,
    options: DoorOptions,
    relay: Option<Arc<dyn Relay>>,
    metrics: Arc<DoorMetrics>,
    wake: Arc<Notify>,
}

impl Actor {
    async fn watch(
        self,
        backlog: Vec<Visit>,
        mut live: broadcast::Receiver<Visit>,
        mut stop: watch::Receiver<bool>,
    ) {
        let this = Arc::new(self);
        let mut last = 0u64;
        for visit in backlog {
            last = last.max(visit.id);
            this.catch_up(visit).await;
        }
        loop {
            let next = tokio::select! {
                next = live.recv() => next,
                _ = stop.changed() => return,
            };
            let visits = match next {
                Ok(v) => vec![v],
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "door: behind the visits; catching up from the store"
                    );
                    let g = this.gallery.clone();
                    match tokio::task::spawn_blocking(move || g.visits_after(last, 500)).await {
                        Ok(Ok(v)) => v,
                        _ => Vec::new(),
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            for visit in visits {
                if visit.id <= last && last != 0 {
                    continue;
                }
                last = visit.id;
                this.clone().act(visit).await;
            }
        }
    }

    fn actions(&self) -> Vec<&'static str> {
        let mut a = Vec::new();
        if self.relay.is_some() {
            a.push("relay");
        }
        if self.options.webhook.is_some() {
            a.push("webhook");
        }
        if self.options.mqtt_topic.is_some() {
            a.push("mqtt");
        }
        a
    }

    /// Writes a line (and the `open` command with it), counting its outcome.
    async fn note(&self, line: DoorLine, open: Option<OpenCommand>) {
        self.metrics.count(&line.action, &line.outcome);
        let g = self.gallery.clone();
        let visit_id = line.visit_id;
        match tokio::task::spawn_blocking(move || g.door_note(line, open.as_ref())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(visit_id, error = %e, "door: cannot record an action"),
            Err(e) => tracing::error!(visit_id, error = %e, "door: task failed"),
        }
    }

    /// A visit recorded before this start that has no line for some action: the
    /// webhook call is queued now (attendance must not be lost); the relay and the MQTT
    /// `open` are not done late, and say so.
    async fn catch_up(self: &Arc<Self>, visit: Visit) {
        let g = self.gallery.clone();
        let id = visit.id;
        let lines = match tokio::task::spawn_blocking(move || g.door_lines(id)).await {
            Ok(Ok(lines)) => lines,
            _ => return,
        };
        let missing: Vec<&'static str> = self
            .actions()
            .into_iter()
            .filter(|a| !lines.iter().any(|l| l.action == *a))
            .collect();
        if missing.is_empty() {
            return;
        }
        let r = &visit.record;
        let line = |action: &str, outcome: &str, detail: String| {
            door_line(&visit, action, outcome, detail)
        };
        let span = tracing::info_span!("door", visit_id = visit.id, user_id = ?r.user_id);
        let _enter = span.enter();
        tracing::info!(
            ?missing,
            "door: a visit recorded before this start was not acted on"
        );
        if let Err(refusal) = self.options.rules.decide(r) {
            for action in missing {
                self.note(line(action, "refused", refusal.to_string()), None)
                    .await;
            }
            return;
        }
        let who = format!(
            "{} ({})",
            r.user_name.as_deref().unwrap_or(""),
            r.user_id.as_deref().unwrap_or("")
        );
        for action in missing {
            if action == "webhook" {
                self.queue_webhook(&visit, &who).await;
            } else {
                let detail = "recorded before the door restarted: not opened late".to_string();
                self.note(line(action, "skipped", detail), None).await;
            }
        }
    }

    /// Queues the visit's webhook call with its `queued` line (one transaction).
    async fn queue_webhook(&self, visit: &Visit, who: &str) {
        let r = &visit.record;
        let line =
            |action: &str, outcome: &str, detail: String| door_line(visit, action, outcome, detail);
        if let Some(webhook) = &self.options.webhook {
            let call = WebhookCall {
                visit_id: visit.id,
                client: r.client.clone(),
                body: webhook::body(visit),
                attempts: 0,
            };
            let queued = line("webhook", "queued", format!("for {who}"));
            let g = self.gallery.clone();
            let limit = webhook.queue_limit;
            match tokio::task::spawn_blocking(move || g.door_enqueue_webhook(queued, &call, limit))
                .await
            {
                Ok(Ok(dropped)) => {
                    self.metrics.count("webhook", "queued");
                    // The sender sets the true figure whenever it looks at the queue.
                    if dropped.is_none() {
                        self.metrics.webhook_pending.fetch_add(1, Ordering::Relaxed);
                    }
                    if dropped.is_some() {
                        self.metrics.count("webhook", "dropped");
                        tracing::warn!(limit, "door webhook queue full: dropped its oldest call");
                    }
                    self.wake.notify_one();
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "door webhook: cannot queue");
                    self.note(
                        line("webhook", "failed", format!("cannot queue: {e}")),
                        None,
                    )
                    .await;
                }
                Err(e) => tracing::error!(error = %e, "door webhook: task failed"),
            }
        }
    }

    async fn act(self: Arc<Self>, visit: Visit) {
        let r = &visit.record;
        let line = |action: &str, outcome: &str, detail: String| {
            door_line(&visit, action, outcome, detail)
        };
        let span = tracing::info_span!("door", visit_id = visit.id, user_id = ?r.user_id);
        let _enter = span.enter();
        if let Err(refusal) = self.options.rules.decide(r) {
            self.metrics.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(reason = %refusal, "door stays closed");
            for action in self.actions() {
                self.note(line(action, "refused", refusal.to_string()), None)
                    .await;
            }
            return;
        }
        self.metrics.opened.fetch_add(1, Ordering::Relaxed);
        let who = format!(
            "{} ({})",
            r.user_name.as_deref().unwrap_or(""),
            r.user_id.as_deref().unwrap_or("")
        );
        tracing::info!(%who, "door opens");
        // The relay first, on its own thread: the door should not wait for the others.
        if let Some(relay) = self.relay.clone() {
            let pulse = self.options.pulse;
            let this = self.clone();
            let (done, failed) = (
                line(
                    "relay",
                    "done",
                    format!(
                        "{} pulsed {} ms for {who}",
                        relay.describe(),
                        pulse.as_millis()
                    ),
                ),
                line("relay", "failed", String::new()),
            );
            tokio::spawn(async move {
                let result = tokio::task::spawn_blocking(move || relay.pulse(pulse)).await;
                let line = match result {
                    Ok(Ok(())) => done,
                    Ok(Err(e)) => DoorLine {
                        detail: e.to_string(),
                        ..failed
                    },
                    Err(e) => DoorLine {
                        detail: format!("relay task failed: {e}"),
                        ..failed
                    },
                };
                if line.outcome == "failed" {
                    tracing::error!(error = %line.detail, "door relay failed");
                }
                this.note(line, None).await;
            });
        }
        self.queue_webhook(&visit, &who).await;
        if let Some(topic) = &self.options.mqtt_topic {
            let command = OpenCommand {
                visit_id: visit.id,
                client: r.client.clone(),
                gallery: r.gallery.clone(),
                user_id: r.user_id.clone().unwrap_or_default(),
                user_name: r.user_name.clone().unwrap_or_default(),
                similarity: r.similarity,
                mask: r.mask,
                at_ms: r.timestamp_ms,
                // From now, or from the frame's time when a replayed folder runs ahead of
                // the wall clock (dir: sources stamp frames at their nominal fps).
                expires_at_ms: now_ms().max(r.timestamp_ms)
                    + self.options.mqtt_ttl.as_millis() as u64,
            };
            self.note(
                line("mqtt", "queued", format!("open for {who} on {topic}")),
                Some(command),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_door: &str) -> Config {
        let no_env = std::collections::HashMap::<String, String>::new();
        let mut config =
            crate::config::merge(Some(&format!("[door]\n{toml_door}")), "test", &no_env).unwrap();
        config.camera.gallery = "kiosk/door".into();
        config
    }

    #[test]
    fn no_action_configured_means_no_door() {
        assert_eq!(DoorOptions::from_config(&config("")).unwrap(), None);
    }

    #[test]
    fn the_rules_default_to_the_cameras_gallery() {
        let o = DoorOptions::from_config(&config(
            "webhook_url = \"http://127.0.0.1:18200/hook\"\nwebhook_secret = \"s\"",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            o.rules.galleries,
            [("kiosk".to_string(), "door".to_string())]
        );
        assert!(o.rules.users.is_empty() && !o.rules.allow_masked);
        assert!(o.gpio.is_none() && o.mqtt_topic.is_none());
    }

    #[test]
    fn bad_door_settings_name_their_key() {
        for (toml, key) in [
            (
                "webhook_url = \"https://x/hook\"\nwebhook_secret = \"s\"",
                "webhook_url",
            ),
            ("webhook_url = \"http://x/hook\"", "webhook_secret"),
            (
                "gpio_chip = \"gpiochip0\"\ngalleries = [\"nogallery\"]",
                "galleries",
            ),
            (
                "gpio_chip = \"gpiochip0\"\ntime_windows = [\"9-5\"]",
                "time_windows",
            ),
            (
                "gpio_chip = \"gpiochip0\"\nutc_offset = \"7\"",
                "utc_offset",
            ),
            (
                "gpio_chip = \"gpiochip0\"\ngpio_pulse_ms = 0",
                "gpio_pulse_ms",
            ),
            (
                "gpio_chip = \"gpiochip0\"\nmin_similarity = 1.5",
                "min_similarity",
            ),
        ] {
            let e = DoorOptions::from_config(&config(toml)).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("door.{key}")),
                "{toml}: {e}"
            );
        }
    }
}
