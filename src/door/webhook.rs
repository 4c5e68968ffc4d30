//! The webhook: each opening visit is POSTed as JSON, signed with HMAC-SHA256 of the
//! raw body (`X-Facegate-Signature: sha256=<hex>`). Calls wait in the store's bounded
//! queue (gallery), oldest first; one is removed only after a 2xx answer, and a failed
//! one is retried with a doubling backoff, so a receiver that is down gets every call
//! once it is back (a crash between its 2xx and the removal sends that call again:
//! receivers deduplicate by `visit_id`). Plain HTTP only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{watch, Notify};

use super::metrics::DoorMetrics;
use crate::gallery::{rfc3339_millis, Gallery, Visit};
use crate::store::{now_ms, DoorLine};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-facegate-signature";

/// How often an empty queue is looked at without a wake-up (calls from before a
/// restart are found at start anyway).
const IDLE_POLL: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookOptions {
    pub url: hyper::Uri,
    pub secret: String,
    pub timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub queue_limit: usize,
}

/// The JSON body of an opening visit (its exact bytes are signed and queued).
pub fn body(visit: &Visit) -> String {
    let r = &visit.record;
    json!({
        "event": "door.open",
        "visit_id": visit.id,
        "user_id": r.user_id,
        "user_name": r.user_name,
        "facegallery_id": r.gallery,
        "client": r.client,
        "similarity": (f64::from(r.similarity) * 10_000.0).round() / 10_000.0,
        "masker": r.mask,
        "at": rfc3339_millis(r.timestamp_ms),
        "device_id": r.device_id,
    })
    .to_string()
}

/// `sha256=<lowercase hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length (new_from_slice never fails for it).
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// One POST: Ok(status) when the receiver answered, Err(why) otherwise.
async fn post(client: &HttpClient, options: &WebhookOptions, body: &str) -> Result<u16, String> {
    let request = hyper::Request::post(options.url.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "facegate-door")
        .header(
            SIGNATURE_HEADER,
            signature(&options.secret, body.as_bytes()),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(options.timeout, client.request(request)).await {
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!(
            "no answer within {} ms",
            options.timeout.as_millis()
        )),
    }
}

/// The innermost cause (hyper-util's own message is only "client error (Connect)").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    format!("{e}: {cause}")
}

/// Sends the queued calls until `stop`; `wake` says a call was queued.
pub(super) async fn run(
    gallery: Arc<Gallery>,
    options: WebhookOptions,
    metrics: Arc<DoorMetrics>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut backoff = options.retry_min;
    loop {
        if *stop.borrow() {
            return;
        }
        let g = gallery.clone();
        let head = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::gallery::Error>((g.door_pending(1)?, g.door_pending_len()?))
        })
        .await;
        let (head, pending) = match head {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "door webhook: cannot read the queue");
                (Vec::new(), 0)
            }
            Err(e) => {
                tracing::error!(error = %e, "door webhook: queue task failed");
                (Vec::new(), 0)
            }
        };
        metrics
            .webhook_pending
            .store(pending, std::sync::atomic::Ordering::Relaxed);
        let Some((seq, mut call)) = head.into_iter().next() else {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.changed() => return,
            }
            continue;
        };
        let result = post(&client, &options, &call.body).await;
        let line = |outcome: &str, detail: String| DoorLine {
            visit_id: call.visit_id,
            client: call.client.clone(),
            action: "webhook".into(),
            outcome: outcome.into(),
            detail,
            at_ms: now_ms(),
        };
        match result {
            Ok(status) if (200..300).contains(&status) => {
                let done = line(
                    "done",
                    format!(
                        "delivered (HTTP {status}) after {} failed attempts",
                        call.attempts
                    ),
                );
                let g = gallery.clone();
                match tokio::task::spawn_blocking(move || g.door_webhook_delivered(seq, done)).await
                {
                    Ok(Ok(_)) => metrics.count("webhook", "done"),
                    Ok(Err(e)) => {
                        tracing::error!(seq, error = %e, "door webhook: cannot remove a delivered call")
                    }
                    Err(e) => tracing::error!(seq, error = %e, "door webhook: task failed"),
                }
                tracing::info!(visit_id = call.visit_id, status, "door webhook delivered");
                backoff = options.retry_min;
            }
            failure => {
                let why = match failure {
                    Ok(status) => format!("HTTP {status}"),
                    Err(e) => e,
                };
                metrics
                    .webhook_failed_attempts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                call.attempts = call.attempts.saturating_add(1);
                // The first failure of a call is a line and a count; retries only count
                // as attempts (a receiver down for an hour would flood the record).
                let note = (call.attempts == 1).then(|| {
                    metrics.count("webhook", "failed");
                    line("failed", format!("{why}; retrying"))
                });
                tracing::warn!(visit_id = call.visit_id, attempts = call.attempts, error = %why,
                    retry_ms = backoff.as_millis() as u64, "door webhook failed");
                let g = gallery.clone();
                let stored = call.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || g.door_webhook_failed(seq, &stored, note))
                        .await
                {
                    tracing::error!(seq, error = %e, "door webhook: cannot note a failure");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(options.retry_max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_rfc_4231_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
