//! `facegate serve`: open the store, load the models, build the index, serve HTTP
//! (and, with `[sync] url` set, the MQTT fleet sync) until SIGTERM or Ctrl-C, then give
//! in-flight requests `shutdown_grace_secs`. With `[door]` actions configured, the
//! door acts on recognized visits (src/door).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use facegate::api::{self, ApiState, KioskHooks, ServerOptions};
use facegate::camera::{Camera, CameraOptions};
use facegate::config::Config;
use facegate::gallery::{Gallery, Settings};

#[derive(Args, Debug)]
pub struct ServeArgs {}

pub fn run(config: &Config, _args: &ServeArgs) -> anyhow::Result<ExitCode> {
    facegate::telemetry::init(&config.logging)?;
    // Held until the process ends: `reembed` refuses to run beside the daemon.
    let _lock =
        facegate::store::DataLock::acquire(&config.store.data_dir).context("facegate serve")?;
    tracing::info!(data_dir = %config.store.data_dir.display(), "data folder");
    let store = Arc::new(super::open_store(
        &config.store.data_dir,
        config.store.map_size_mb,
    )?);
    let sync_options = facegate::sync::SyncOptions::from_config(config).context("[sync]")?;
    let pipeline = Arc::new(super::load_pipeline(config)?);
    let gallery = Arc::new(Gallery::open(
        store,
        pipeline,
        Settings::from_config(config),
    )?);
    // Blocking threads run the use cases (each may hold an LMDB reader slot): bounded,
    // with room for every caller the inference queue admits besides the other requests.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(64 + config.runtime.workers + config.runtime.queue)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    // Door actions (src/door) subscribe to visits before the camera can record one;
    // with pending webhook calls from before a restart they are sent even without a
    // camera.
    let door_metrics = Arc::new(facegate::door::DoorMetrics::default());
    let door = match facegate::door::DoorOptions::from_config(config).context("[door]")? {
        Some(options) => {
            tracing::info!(
                webhook = options.webhook.is_some(),
                gpio = options.gpio.is_some(),
                mqtt = options.mqtt_topic.is_some(),
                "door actions on"
            );
            let relay = options.gpio_relay();
            Some(facegate::door::Door::start(
                runtime.handle(),
                gallery.clone(),
                options,
                relay,
                door_metrics.clone(),
            ))
        }
        None => None,
    };
    // Camera kiosk mode: its own capture and inference threads; a camera that is
    // missing or unplugged is retried in the background while the API serves.
    let camera = match CameraOptions::from_config(config)? {
        Some(options) => {
            tracing::info!(source = %options.source, gallery = %config.camera.gallery, "camera kiosk mode");
            Some(Arc::new(Camera::start(gallery.clone(), options)?))
        }
        None => None,
    };
    // The sync link starts inside the runtime below; its counters exist already so
    // that /metrics can show them (docs/sync.md).
    let sync_metrics = sync_options
        .as_ref()
        .map(|_| Arc::new(facegate::sync::SyncMetrics::default()));
    let mut hooks = KioskHooks::default();
    if let Some(camera) = &camera {
        let live = camera.clone();
        hooks.live_frame = Some((
            camera.client().to_string(),
            Arc::new(move || live.live_jpeg()),
        ));
    }
    if camera.is_some() || sync_metrics.is_some() || door.is_some() {
        let (camera_metrics, link_metrics) = (camera.clone(), sync_metrics.clone());
        let door_metrics = door.as_ref().map(|_| door_metrics.clone());
        hooks.metrics = Some(Arc::new(move || {
            let mut text = String::new();
            if let Some(camera) = &camera_metrics {
                text += &camera.metrics_text();
            }
            if let Some(sync) = &link_metrics {
                text += &sync.prometheus();
            }
            if let Some(door) = &door_metrics {
                text += &door.prometheus();
            }
            text
        }));
    }
    let state = ApiState::with_kiosk(gallery.clone(), ServerOptions::from_config(config), hooks);
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(
            api::tls_config(cert, key, config.server.tls_client_ca.as_deref())
                .context("[server] tls_cert / tls_key")?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("[server] tls_cert and tls_key go together: set both or neither"),
    };
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let listen = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%listen, scheme, "facegate serving");
        let sync = sync_options
            .zip(sync_metrics)
            .map(|(o, m)| facegate::sync::start_with_metrics(gallery.clone(), o, m));
        // systemd's Type=notify (systemd/facegate.service): the store is open, the models
        // are loaded and the listener is bound. Outside systemd this does nothing.
        if let Err(e) = facegate::telemetry::notify::ready(&format!("serving on {listen}")) {
            tracing::warn!(error = %e, "cannot report readiness to systemd");
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut stopped = stop_rx.clone();
        let stop = async move {
            let _ = stopped.changed().await;
        };
        let server = match tls {
            Some(tls) => tokio::spawn(api::serve_tls(listener, state, tls, stop)),
            None => tokio::spawn(api::serve(listener, state, stop)),
        };
        // API hits are counted in memory (a read request writes nothing); saved in
        // batches here and once more below after the last request.
        let flusher = tokio::spawn(flush_hits_every(
            gallery.clone(),
            Duration::from_secs(config.store.hits_flush_secs),
        ));
        shutdown_signal().await;
        let _ = facegate::telemetry::notify::stopping();
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: finishing in-flight requests"
        );
        let _ = stop_tx.send(true);
        match tokio::time::timeout(grace, server).await {
            Ok(joined) => joined.context("server task")?.context("server")?,
            Err(_) => tracing::warn!("grace period over: stopping with requests in flight"),
        }
        flusher.abort();
        if let Some(door) = door {
            door.stop(Duration::from_secs(2)).await;
        }
        if let Some(sync) = sync {
            sync.stop(Duration::from_secs(3)).await;
        }
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(camera) = camera.and_then(|c| Arc::try_unwrap(c).ok()) {
        camera.stop();
    }
    let saved = gallery
        .accounts()
        .flush_hits()
        .context("saving the api hit counts")?;
    tracing::info!(hits = saved, "api hit counts saved");
    gallery.flush()?;
    tracing::info!("stopped; store synced");
    Ok(ExitCode::SUCCESS)
}

async fn flush_hits_every(gallery: Arc<Gallery>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let g = gallery.clone();
        match tokio::task::spawn_blocking(move || g.accounts().flush_hits()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "api hit counts not saved; retrying"),
            Err(e) => tracing::error!(error = %e, "api hit flush task failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
