//! /openapi.json, generated from the endpoint table.

use serde_json::{json, Map, Value};

use super::endpoints::Endpoint;

pub fn document() -> Value {
    let mut paths = Map::new();
    for prefix in ["/face-api", "/risetai/face-api"] {
        for ep in Endpoint::ALL {
            let mut ops = Map::new();
            for method in ep.methods() {
                ops.insert(method.as_str().to_ascii_lowercase(), operation(ep));
            }
            paths.insert(format!("{prefix}/{}", ep.path()), Value::Object(ops));
        }
    }
    paths.insert(
        "/oauth/client/token".into(),
        json!({"post": {"summary": "A new access token (form fields client_id, password)",
            "responses": {"200": {"description": "{\"access_token\": \"...\"}"}}}}),
    );
    paths.insert(
        "/oauth/token/revoke".into(),
        json!({"post": {"summary": "Revoke the Accesstoken header's token (form fields client_id, password)",
            "responses": {"200": {"description": "revoked"}}}}),
    );
    for (p, s) in [
        ("/healthz", "Liveness"),
        ("/metrics", "Prometheus metrics"),
        ("/openapi.json", "This document"),
    ] {
        paths.insert(
            p.into(),
            json!({"get": {"summary": s, "responses": {"200": {"description": "OK"}}}}),
        );
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "facegate Face API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Local drop-in for the Face API. The outcome is the body's `status` (a string); see docs/api.md for codes, the envelope and the HTTP status rule."
        },
        "components": {"securitySchemes": {"Accesstoken": {"type": "apiKey", "in": "header", "name": "Accesstoken"}}},
        "security": [{"Accesstoken": []}],
        "paths": paths,
    })
}

fn operation(ep: Endpoint) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, kind, is_required) in ep.fields() {
        let mut schema = json!({ "type": kind });
        if kind == "string" && !name.ends_with("image") {
            schema["maxLength"] = json!(120);
        }
        properties.insert(name.into(), schema);
        if is_required {
            required.push(Value::String(name.into()));
        }
    }
    json!({
        "summary": ep.summary(),
        "requestBody": {"required": false, "content": {"application/json": {"schema": {
            "type": "object", "properties": properties, "required": required
        }}}},
        "responses": {"200": {"description": "Body {\"risetai\": {\"status\": \"200\", ...}}; other statuses in docs/api.md"}}
    })
}
