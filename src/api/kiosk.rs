//! The kiosk screen's routes: `GET /kiosk` (a plain HTML/JS page from the binary),
//! `GET {prefix}/kiosk/events` (Server-Sent Events: recent visits first, then live
//! ones; `Last-Event-ID` honoured; each replayed visit carries its door lines, and live
//! door lines arrive as `door` events) and `GET {prefix}/kiosk/frame.jpg` (the camera's
//! newest frame with face boxes). Authenticated by the `Accesstoken` header or an
//! `access_token` query parameter (browsers cannot set headers on EventSource or img).
//! A token in the query must be a kiosk token (`facegate client add NAME --scope
//! kiosk`): URLs end up in browser history and proxy logs, so a full-power token there
//! is refused (403) — it still works from the headers. A kiosk token opens these two
//! routes of its client and nothing else.
//!
//! The API does not know the camera: `serve` lends it the live frame and the camera's
//! metrics through [`KioskHooks`]; visits come from `gallery`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::{broadcast, mpsc};

use super::{ApiState, Reply, Status};
use crate::gallery::{Scope, Visit};
use crate::store::DoorLine;

/// The kiosk page, served as is.
const PAGE: &str = include_str!("kiosk.html");

/// At most this many stored visits are replayed to a connecting screen.
const REPLAY_LIMIT: usize = 500;

/// Event streams one client may hold open at once. A stream keeps its connection busy
/// for as long as it lasts, so it is never closed to admit another connection
/// (`connections.rs`); without this cap, a kiosk token (it sits in a display's URL)
/// could fill the connection cap with streams.
pub const MAX_EVENT_STREAMS_PER_CLIENT: usize = 8;

/// Open event streams per client.
#[derive(Debug, Default)]
pub(super) struct StreamCounts(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// One open event stream; its place is given back when the stream ends.
struct StreamSlot {
    state: Arc<ApiState>,
    client: String,
}

impl StreamCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        // Poisoned only by a panic between two map updates, each consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open_stream(state: &Arc<ApiState>, client: &str) -> Option<StreamSlot> {
    let mut counts = state.kiosk_streams.lock();
    let n = counts.entry(client.to_string()).or_insert(0);
    if *n >= MAX_EVENT_STREAMS_PER_CLIENT {
        return None;
    }
    *n += 1;
    Some(StreamSlot {
        state: state.clone(),
        client: client.to_string(),
    })
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.state.kiosk_streams.lock();
        if let Some(n) = counts.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

type FrameFn = dyn Fn() -> Option<Vec<u8>> + Send + Sync;
type MetricsFn = dyn Fn() -> String + Send + Sync;

/// What the camera lends the API (wired by `facegate serve`); empty without a camera.
#[derive(Clone, Default)]
pub struct KioskHooks {
    /// The client that owns the camera, and a function giving the newest frame (JPEG).
    pub live_frame: Option<(String, Arc<FrameFn>)>,
    /// Extra Prometheus text appended to /metrics.
    pub metrics: Option<Arc<MetricsFn>>,
}

impl std::fmt::Debug for KioskHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KioskHooks")
            .field("camera_client", &self.live_frame.as_ref().map(|l| &l.0))
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

pub(super) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// Where a request's token came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenSource {
    Headers,
    Url,
}

/// The `Accesstoken` header, `Authorization: Bearer`, or `?access_token=`.
fn token(headers: &HeaderMap, uri: &Uri) -> Option<(String, TokenSource)> {
    if let Some(t) = super::handlers::access_token(headers) {
        return Some((t, TokenSource::Headers));
    }
    let query = uri.query()?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .map(|v| (v, TokenSource::Url))
}

/// The message of the 429 for one event stream too many (docs/api.md).
pub(super) const TOO_MANY_STREAMS: &str = "Too many open kiosk event streams for this client";

/// The message of the 403 for a full-power token in a URL (docs/api.md).
pub(super) const FULL_TOKEN_IN_URL: &str =
    "A full-power token is not accepted in a URL; use a kiosk token (facegate client add NAME --scope kiosk)";

/// The client of a kiosk token (header or URL) or of a full-power token (headers only).
async fn authenticate(
    state: &Arc<ApiState>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<String, Response> {
    let render = |reply: Reply| reply.render(state.options.envelope, state.options.http_status);
    let (token, source) = token(headers, uri).ok_or_else(|| render(Status::UNAUTHORIZED.into()))?;
    let gallery = state.gallery.clone();
    match tokio::task::spawn_blocking(move || gallery.accounts().authenticate_any(&token)).await {
        Ok(Ok(p)) if p.scope == Scope::Full && source == TokenSource::Url => Err(render(
            Reply::from(Status::DENIED).message(FULL_TOKEN_IN_URL),
        )),
        Ok(Ok(p)) => Ok(p.client),
        Ok(Err(e)) => Err(render(Status::of(&e).into())),
        Err(_) => Err(render(Status::SERVER_ERROR.into())),
    }
}

pub(super) async fn frame(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let client = match authenticate(&s, &headers, &uri).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let not_found = || {
        Reply::from(Status(404))
            .message("No camera frame")
            .render(s.options.envelope, s.options.http_status)
    };
    // Another client's camera is never visible.
    let Some((owner, live)) = s.kiosk.live_frame.clone() else {
        return not_found();
    };
    if owner != client {
        return not_found();
    }
    match tokio::task::spawn_blocking(move || live()).await {
        Ok(Some(jpeg)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg,
        )
            .into_response(),
        _ => not_found(),
    }
}

/// The receiving half of the event channel as a stream for axum's `Sse`.
struct Events(mpsc::Receiver<Event>);

impl futures_core::Stream for Events {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

fn event(visit: &Visit, door: &[DoorLine]) -> Event {
    let mut json = visit.to_json();
    json["door"] = door.iter().map(door_json).collect();
    Event::default()
        .id(visit.id.to_string())
        .data(json.to_string())
}

/// A door action line as the kiosk sees it (docs/api.md).
fn door_json(line: &DoorLine) -> serde_json::Value {
    serde_json::json!({
        "visit_id": line.visit_id,
        "action": line.action,
        "outcome": line.outcome,
        "detail": line.detail,
        "at": crate::gallery::rfc3339_millis(line.at_ms),
    })
}

/// A live door line: an SSE event of type `door` (no id: the visit's id stays the
/// resume point).
fn door_event(line: &DoorLine) -> Event {
    Event::default()
        .event("door")
        .data(door_json(line).to_string())
}

pub(super) async fn events(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let client = match authenticate(&s, &headers, &uri).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(slot) = open_stream(&s, &client) else {
        return Reply::from(Status::TOO_MANY_ATTEMPTS)
            .message(TOO_MANY_STREAMS)
            .render(s.options.envelope, s.options.http_status);
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Subscribe before reading the history, so that no visit falls between the two.
    let live = s.gallery.subscribe_visits();
    let door = s.gallery.subscribe_door();
    let (tx, rx) = mpsc::channel(32);
    let replay_ms = s.options.kiosk_replay_secs.saturating_mul(1000);
    let stream = stream_visits(s.clone(), client, last_id, replay_ms, (live, door), tx);
    tokio::spawn(async move {
        let _slot = slot;
        stream.await
    });
    let mut response = Sse::new(Events(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Sends `client`'s visits after `last_id` (or of the last `replay_ms`), then live ones,
/// until the screen disconnects.
async fn stream_visits(
    state: Arc<ApiState>,
    client: String,
    last_id: Option<u64>,
    replay_ms: u64,
    (mut live, mut door): (broadcast::Receiver<Visit>, broadcast::Receiver<DoorLine>),
    tx: mpsc::Sender<Event>,
) {
    let gallery = state.gallery.clone();
    let backlog = tokio::task::spawn_blocking(move || {
        let visits = match last_id {
            Some(id) => gallery.visits_after(id, REPLAY_LIMIT),
            None => {
                let since = now_ms().saturating_sub(replay_ms);
                gallery.visits_since(since, REPLAY_LIMIT)
            }
        }?;
        visits
            .into_iter()
            .map(|v| Ok((gallery.door_lines(v.id)?, v)))
            .collect::<Result<Vec<_>, crate::gallery::Error>>()
    })
    .await;
    let mut sent = last_id.unwrap_or(0);
    match backlog {
        Ok(Ok(visits)) => {
            for (lines, v) in visits {
                sent = sent.max(v.id);
                if v.record.client == client && tx.send(event(&v, &lines)).await.is_err() {
                    return;
                }
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "kiosk events: history unavailable"),
        Err(e) => tracing::warn!(error = %e, "kiosk events: history task failed"),
    }
    loop {
        let next = tokio::select! {
            next = live.recv() => next,
            line = door.recv() => {
                // A lagging screen misses live door lines; they stay in the visits'
                // records (replayed on reconnect).
                match line {
                    Ok(line) if line.client == client && tx.send(door_event(&line)).await.is_err() => {
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                    _ => {}
                }
                continue;
            }
            () = tx.closed() => return,
        };
        let visits = match next {
            Ok(v) => vec![v],
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Too slow for the live channel: catch up from the store.
                let gallery = state.gallery.clone();
                let after = sent;
                match tokio::task::spawn_blocking(move || gallery.visits_after(after, REPLAY_LIMIT))
                    .await
                {
                    Ok(Ok(v)) => v,
                    _ => Vec::new(),
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        for v in visits {
            if v.id <= sent {
                continue;
            }
            sent = v.id;
            if v.record.client == client && tx.send(event(&v, &[])).await.is_err() {
                return;
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
