//! The original service's token endpoints, for apps that fetch their token themselves:
//! `POST /oauth/client/token` and `POST /oauth/token/revoke` (form fields `client_id`,
//! `password`). Answers are plain JSON (no envelope), as the original's.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::json;

use super::request::form_fields;
use super::ApiState;

fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn refused(error: Option<crate::gallery::Error>) -> Response {
    match error {
        Some(crate::gallery::Error::TooManyAttempts { retry_after_secs }) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(
                axum::http::header::RETRY_AFTER,
                retry_after_secs.to_string(),
            )],
            axum::Json(json!({"error": "too_many_attempts", "status": "429",
                "status_message": super::Status::TOO_MANY_ATTEMPTS.message()})),
        )
            .into_response(),
        _ => unauthorized(),
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "invalid_client", "status": "401",
            "status_message": "client_id or password not valid"})),
    )
        .into_response()
}

/// The peer's address, as the accept loop records it on each request.
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn peer_ip(peer: Peer) -> Option<IpAddr> {
    peer.map(|Extension(ConnectInfo(addr))| addr.ip())
}

pub(super) async fn token(
    State(s): State<Arc<ApiState>>,
    peer: Peer,
    uri: Uri,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body, uri.query());
    let (client, password) = (field(&fields, "client_id"), field(&fields, "password"));
    let gallery = s.gallery.clone();
    let peer = peer_ip(peer);
    let issued = tokio::task::spawn_blocking(move || {
        gallery
            .accounts()
            .issue_token_from(&client, &password, peer)
    })
    .await;
    match issued {
        Ok(Ok(token)) => {
            axum::Json(json!({"access_token": token, "token_type": "Bearer"})).into_response()
        }
        Ok(Err(e)) => refused(Some(e)),
        Err(_) => refused(None),
    }
}

pub(super) async fn revoke(
    State(s): State<Arc<ApiState>>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body, uri.query());
    let (client, password) = (field(&fields, "client_id"), field(&fields, "password"));
    let token = headers
        .get("accesstoken")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_default();
    let gallery = s.gallery.clone();
    let peer = peer_ip(peer);
    let revoked = tokio::task::spawn_blocking(move || {
        gallery
            .accounts()
            .revoke_token_from(&token, &client, &password, peer)
    })
    .await;
    match revoked {
        Ok(Ok(())) => {
            axum::Json(json!({"status": "200", "status_message": "Token revoked"})).into_response()
        }
        Ok(Err(e)) => refused(Some(e)),
        Err(_) => refused(None),
    }
}
