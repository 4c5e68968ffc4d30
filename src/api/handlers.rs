//! One request from method check to reply: body, token, fields, quota, then the
//! endpoint's use case (on the blocking pool). Image endpoints wait there for an
//! inference session in the pipeline's bounded queue (shared with the camera loop) and
//! answer 503 only when that queue is full or its deadline passes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{json, Value};

use super::endpoints::Endpoint;
use super::reply::{score, Reply};
use super::request::{read_body, BodyError, Fields};
use super::{ApiState, Status};
use crate::gallery::{EnrollRequest, Gallery, ImageRole};

/// identify-face `max_results`: 1 (the default) up to this many users.
const MAX_IDENTIFY_RESULTS: usize = 100;

pub(super) async fn run(
    ep: Endpoint,
    state: &Arc<ApiState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply, Reply> {
    if !ep.methods().contains(&method) {
        return Err(Reply::from(Status::MALFORMED).message("Method not allowed for this endpoint"));
    }
    // The token before the body: a client without one gets 401 without a byte of its
    // body read or buffered. The lookup is one LMDB read (MVCC: it never waits for a
    // writer), a few microseconds, so it stays on the async thread.
    let token = access_token(&headers).ok_or(Status::UNAUTHORIZED)?;
    let client = state
        .gallery
        .accounts()
        .authenticate(&token)
        .map_err(token_refused)?;
    let limits = &state.options;
    // A declared length over the limit is refused before its body is read: a kiosk on a
    // slow uplink learns it at once instead of after uploading megabytes, and one that
    // sent `Expect: 100-continue` never uploads them (hyper sends 100 only when the body
    // is first read).
    // hyper parsed Content-Length already: it is the body's lower size bound.
    if http_body::Body::size_hint(&body).lower() > limits.body_limit_bytes as u64 {
        return Err(Status::BODY_TOO_LARGE.into());
    }
    let body = read_body(body, limits.body_limit_bytes, limits.limits.body_timeout)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => Status::BODY_TOO_LARGE,
            BodyError::Read => Status::MALFORMED,
            BodyError::TimedOut => Status::BODY_TIMEOUT,
        })?;
    let span = tracing::Span::current();
    span.record("client", client.as_str());
    let gallery = state.gallery.clone();
    let query = uri.query().map(str::to_string);
    // Parsing a body of up to `body_limit_bytes` (megabytes of base64) takes
    // milliseconds: off the async threads, with the work it is for.
    let task = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let fields = Fields::parse(&body, query.as_deref())?;
        let trx_id = fields
            .optional_text("trx_id")?
            .unwrap_or_else(|| format!("gen-{}", uuid::Uuid::new_v4()));
        span.record("trx_id", trx_id.as_str());
        gallery
            .accounts()
            .hit(&client)
            .map_err(|e| Status::of(&e))?;
        dispatch(ep, &gallery, &client, &fields)
    });
    match task.await {
        Ok(reply) => reply,
        Err(join) => {
            tracing::error!(error = %join, "request task failed");
            Err(Status::SERVER_ERROR.into())
        }
    }
}

/// The `Accesstoken` header (any case), or `Authorization: Bearer ...`.
pub(super) fn access_token(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get("accesstoken")
        .or_else(|| headers.get(axum::http::header::AUTHORIZATION))?;
    let text = value.to_str().ok()?.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The message of the 403 for a kiosk token on any other endpoint (docs/api.md).
pub(super) const OUT_OF_SCOPE: &str = "Token scope does not allow this endpoint";

/// 401 for a missing or bad token, 403 for a kiosk token (valid, but not here).
pub(super) fn token_refused(e: crate::gallery::Error) -> Reply {
    match e {
        crate::gallery::Error::OutOfScope => Reply::from(Status::DENIED).message(OUT_OF_SCOPE),
        e => Status::of(&e).into(),
    }
}

fn domain(e: crate::gallery::Error) -> Reply {
    let status = Status::of(&e);
    if status == Status::SERVER_ERROR {
        tracing::error!(error = %e, "request failed");
    } else {
        tracing::debug!(error = %e, "request refused");
    }
    status.into()
}

fn dispatch(ep: Endpoint, g: &Gallery, client: &str, f: &Fields) -> Result<Reply, Reply> {
    let gallery_id = || f.id("facegallery_id", Status::GALLERY_ID_MISSING);
    let user_id = || f.id("user_id", Status::USER_ID_MISSING);
    match ep {
        Endpoint::ClientRegister => {
            let id = g.register_client(client).map_err(domain)?;
            Ok(Reply::ok().with("facegallery_id", id))
        }
        Endpoint::ClientDelete => {
            let removed = g.delete_client_data(client).map_err(domain)?;
            Ok(Reply::ok().with("facegallery_id", removed))
        }
        Endpoint::GetCounters => {
            let left = g.accounts().remaining(client).map_err(domain)?;
            Ok(Reply::ok().with(
                "remaining_limit",
                json!({
                    "n_api_hits": left.api_hits,
                    "n_face": left.faces,
                    "n_facegallery": left.galleries,
                }),
            ))
        }
        Endpoint::MyGalleries => {
            let list = g.galleries(client).map_err(domain)?;
            Ok(Reply::ok()
                .message("Success - FaceGalleries Listed")
                .with("facegallery_id", list))
        }
        Endpoint::CreateGallery => {
            let id = gallery_id()?;
            g.create_gallery(client, &id).map_err(domain)?;
            Ok(Reply::ok().with("facegallery_id", id))
        }
        Endpoint::DeleteGallery => {
            let id = gallery_id()?;
            g.delete_gallery(client, &id).map_err(domain)?;
            Ok(Reply::ok().with("facegallery_id", id))
        }
        Endpoint::ListFaces => {
            let id = gallery_id()?;
            let faces: Vec<Value> = g
                .list_faces(client, &id)
                .map_err(domain)?
                .into_iter()
                .map(|(user_id, user_name)| json!({"user_id": user_id, "user_name": user_name}))
                .collect();
            Ok(Reply::ok().with("faces", faces))
        }
        Endpoint::DeleteFace => {
            let (user, id) = (user_id()?, gallery_id()?);
            g.delete_face(client, &id, &user).map_err(domain)?;
            Ok(Reply::ok())
        }
        Endpoint::Enroll | Endpoint::EnrollKtp => enroll(ep, g, client, f),
        Endpoint::Verify => {
            let (user, id) = (user_id()?, gallery_id()?);
            let image = f.image("image", ImageRole::Image, Status::IMAGE_MISSING)?;
            let out = g.verify(client, &id, &user, &image).map_err(domain)?;
            let reply = Reply::ok()
                .with("user_name", out.user_name)
                .with("similarity", score(out.similarity))
                .with("masker", out.masked)
                .with("verified", out.verified);
            Ok(if out.verified {
                reply
            } else {
                reply.status(Status::NOT_VERIFIED)
            })
        }
        Endpoint::Identify => {
            let id = gallery_id()?;
            let image = f.image("image", ImageRole::Image, Status::IMAGE_MISSING)?;
            let max_results = f.count("max_results", MAX_IDENTIFY_RESULTS)?.unwrap_or(1);
            let found = g
                .identify_top(client, &id, &image, max_results)
                .map_err(domain)?;
            Ok(match found.is_empty() {
                false => Reply::ok()
                    .with("status_description", "Face Recognition Success")
                    .with(
                        "return",
                        found
                            .into_iter()
                            .map(|m| {
                                json!({
                                    "confidence_level": format!("{:.6}", m.confidence),
                                    "mask": m.masked.to_string(),
                                    "user_id": m.user_id,
                                    "user_name": m.user_name,
                                })
                            })
                            .collect::<Vec<Value>>(),
                    ),
                true => Reply::from(Status::NOT_VERIFIED)
                    .with("status_description", "Face not registered in this gallery")
                    .with("return", json!([])),
            })
        }
        Endpoint::Compare => {
            let source = f.image("source_image", ImageRole::Source, Status::SOURCE_MISSING)?;
            let target = f.image("target_image", ImageRole::Target, Status::TARGET_MISSING)?;
            let out = g.compare(&source, &target).map_err(domain)?;
            let reply = Reply::ok()
                .with("similarity", score(out.similarity))
                .with("verified", out.verified)
                .with("masker", out.masked);
            Ok(if out.verified {
                reply
            } else {
                reply.status(Status::NOT_VERIFIED)
            })
        }
    }
}

fn enroll(ep: Endpoint, g: &Gallery, client: &str, f: &Fields) -> Result<Reply, Reply> {
    let user_id = f.id("user_id", Status::USER_ID_MISSING)?;
    let user_name = f.text("user_name", Status::USER_NAME_MISSING)?;
    let gallery = f.id("facegallery_id", Status::GALLERY_ID_MISSING)?;
    let force = f.flag("force_register")?;
    let minimum = f.unit_float("minimum_similarity")?;
    let image = f.image("image", ImageRole::Image, Status::IMAGE_MISSING)?;
    let req = EnrollRequest {
        gallery: &gallery,
        user_id: &user_id,
        user_name: &user_name,
        image: &image,
        force,
    };
    if ep == Endpoint::Enroll {
        g.enroll(client, &req).map_err(domain)?;
        return Ok(Reply::ok());
    }
    let out = g.enroll_ktp(client, &req, minimum).map_err(domain)?;
    let reply = Reply::ok()
        .with("masker", out.masked)
        .with("similarity", score(out.similarity));
    Ok(if out.enrolled {
        reply
    } else {
        reply.status(Status::NOT_VERIFIED)
    })
}
