//! The Face API over HTTP (axum on hyper): routes under `/face-api/` and
//! `/risetai/face-api/`, wire types, the envelope, status codes and the one mapping
//! from domain errors to them ([`Status::of`]); `/healthz`, `/metrics`,
//! `/openapi.json`, the OAuth token endpoints; graceful shutdown. Inference admission
//! (bounded queue, deadline) is the pipeline's, shared with the camera loop.
//!
//! Public face: [`ApiState`], [`ServerOptions`], [`router`], [`serve`], [`Status`].

mod connections;
mod endpoints;
mod handlers;
mod kiosk;
mod metrics;
mod oauth;
mod openapi;
mod reply;
mod request;
mod server;
mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use tracing::{field, Instrument};

use crate::config::{Config, Envelope, HttpStatusRule};
use crate::gallery::Gallery;
pub use endpoints::Endpoint;
pub use kiosk::{KioskHooks, MAX_EVENT_STREAMS_PER_CLIENT};
use metrics::Metrics;
pub use reply::Reply;
pub use request::{decode_base64, MAX_FIELD_CHARS};
pub use server::{tls_config, ConnectionLimits, TlsError};
pub use status::Status;

/// How the server answers; from the `[server]` and `[runtime]` configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerOptions {
    pub envelope: Envelope,
    pub http_status: HttpStatusRule,
    pub body_limit_bytes: usize,
    /// A kiosk screen connecting without Last-Event-ID first gets the visits of this
    /// many seconds (`camera.replay_secs`).
    pub kiosk_replay_secs: u64,
    /// Connection caps and read timeouts (`server.max_connections`, ...).
    pub limits: ConnectionLimits,
}

impl ServerOptions {
    pub fn from_config(config: &Config) -> ServerOptions {
        ServerOptions {
            envelope: config.server.envelope,
            http_status: config.server.http_status,
            body_limit_bytes: config.server.body_limit_bytes,
            kiosk_replay_secs: config.camera.replay_secs,
            limits: ConnectionLimits {
                max_connections: config.server.max_connections,
                max_connections_per_ip: config.server.max_connections_per_ip,
                header_timeout: std::time::Duration::from_secs(config.server.header_timeout_secs),
                body_timeout: std::time::Duration::from_secs(config.server.body_timeout_secs),
            },
        }
    }
}

pub struct ApiState {
    gallery: Arc<Gallery>,
    options: ServerOptions,
    metrics: Metrics,
    kiosk: KioskHooks,
    kiosk_streams: kiosk::StreamCounts,
}

impl ApiState {
    pub fn new(gallery: Arc<Gallery>, options: ServerOptions) -> Arc<ApiState> {
        ApiState::with_kiosk(gallery, options, KioskHooks::default())
    }

    /// As `new`, with the camera's live frame and metrics for the kiosk routes.
    pub fn with_kiosk(
        gallery: Arc<Gallery>,
        options: ServerOptions,
        kiosk: KioskHooks,
    ) -> Arc<ApiState> {
        Arc::new(ApiState {
            gallery,
            options,
            metrics: Metrics::default(),
            kiosk,
            kiosk_streams: kiosk::StreamCounts::default(),
        })
    }
}

/// Every route.
pub fn router(state: Arc<ApiState>) -> Router {
    let mut app = Router::new();
    for prefix in ["/face-api", "/risetai/face-api"] {
        for ep in Endpoint::ALL {
            let handler = move |State(s): State<Arc<ApiState>>,
                                method: Method,
                                uri: Uri,
                                headers: HeaderMap,
                                body: Body| async move {
                handle(ep, s, method, uri, headers, body).await
            };
            app = app.route(&format!("{prefix}/{}", ep.path()), any(handler));
        }
    }
    for prefix in ["", "/risetai"] {
        app = app
            .route(&format!("{prefix}/oauth/client/token"), post(oauth::token))
            .route(&format!("{prefix}/oauth/token/revoke"), post(oauth::revoke));
    }
    for prefix in ["/face-api", "/risetai/face-api"] {
        app = app
            .route(&format!("{prefix}/kiosk/events"), get(kiosk::events))
            .route(&format!("{prefix}/kiosk/frame.jpg"), get(kiosk::frame));
    }
    app = app.route("/kiosk", get(kiosk::page));
    app.route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_head,
        ))
        .with_state(state)
}

/// Serves plain HTTP on `listener` until `shutdown` completes, then lets in-flight
/// requests finish (the caller bounds that wait with its grace period). Connection
/// caps and timeouts: `server.rs`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve_connections(listener, state, None, shutdown).await
}

/// As [`serve`], over TLS only (see [`tls_config`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve_connections(listener, state, Some(tls), shutdown).await
}

/// Heads larger than this (all header lines) answer 431, URIs longer than
/// `MAX_URI_BYTES` 414, in the envelope like every other error.
const MAX_HEAD_BYTES: usize = 32 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_URI_BYTES: usize = 8 * 1024;

async fn check_head(
    State(s): State<Arc<ApiState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let head_bytes: usize = request
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let status = if request.uri().to_string().len() > MAX_URI_BYTES {
        Some(Status::URI_TOO_LONG)
    } else if head_bytes > MAX_HEAD_BYTES || request.headers().len() > MAX_HEADERS {
        Some(Status::HEADERS_TOO_LARGE)
    } else {
        None
    };
    match status {
        Some(status) => Reply::from(status).render(s.options.envelope, s.options.http_status),
        None => next.run(request).await,
    }
}

async fn handle(
    ep: Endpoint,
    state: Arc<ApiState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        endpoint = ep.path(),
        trx_id = field::Empty,
        client = field::Empty
    );
    let reply = handlers::run(ep, &state, method, uri, headers, body)
        .instrument(span.clone())
        .await
        .unwrap_or_else(|e| e);
    let elapsed = started.elapsed();
    state.metrics.observe(ep.path(), reply.status.0, elapsed);
    span.in_scope(|| {
        tracing::info!(
            status = reply.status.0,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "answered"
        )
    });
    reply.render(state.options.envelope, state.options.http_status)
}

async fn healthz(State(s): State<Arc<ApiState>>) -> Response {
    let ok = matches!(s.gallery.schema_version(), Ok(Some(_)));
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "store unavailable" },
        "templates": s.gallery.indexed_templates(),
        "inference": s.gallery.inference_status(),
    });
    let code = if ok { 200 } else { 503 };
    (
        axum::http::StatusCode::from_u16(code).unwrap_or_default(),
        axum::Json(body),
    )
        .into_response()
}

async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    let pool = s.gallery.inference_status();
    let text = s.metrics.render(&[
        (
            "facegate_inference_in_flight",
            "Callers (requests, camera) running on a model session or waiting for one.",
            (pool.busy + pool.queued) as f64,
        ),
        (
            "facegate_inference_slots",
            "Callers allowed in flight before 503: sessions plus queue places.",
            (pool.sessions + pool.queue_limit) as f64,
        ),
        (
            "facegate_inference_sessions_busy",
            "Model sessions working now.",
            pool.busy as f64,
        ),
        (
            "facegate_inference_queued",
            "Callers waiting for a model session.",
            pool.queued as f64,
        ),
        (
            "facegate_inference_refused_total",
            "Callers refused (503) since start: queue full or deadline passed.",
            (pool.refused_queue_full_total + pool.refused_deadline_total) as f64,
        ),
        (
            "facegate_index_templates",
            "Templates in the in-memory index.",
            s.gallery.indexed_templates() as f64,
        ),
        (
            "facegate_index_bytes",
            "Approximate memory of the in-memory index.",
            s.gallery.index_memory_bytes() as f64,
        ),
        (
            "facegate_sync_outbox_events",
            "Sync events waiting for the broker's acknowledgement.",
            s.gallery.outbox_len().unwrap_or(0) as f64,
        ),
        (
            "facegate_sync_outbox_dropped",
            "Sync events dropped since start because the outbox was full.",
            s.gallery.outbox_dropped() as f64,
        ),
    ]);
    let text = match &s.kiosk.metrics {
        Some(camera) => text + &camera(),
        None => text,
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Response {
    axum::Json(openapi::document()).into_response()
}

async fn not_found(State(s): State<Arc<ApiState>>) -> Response {
    Reply::from(Status(404))
        .message("Not found")
        .render(s.options.envelope, s.options.http_status)
}
