//! A response body before rendering, and the rendering rules: the envelope and the
//! HTTP status line.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::Status;
use crate::config::{Envelope, HttpStatusRule};

#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: Status,
    pub message: &'static str,
    pub fields: Map<String, Value>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::from(Status::OK)
    }

    pub fn message(mut self, message: &'static str) -> Reply {
        self.message = message;
        self
    }

    /// Sets the body status (keeping the fields), with that status's message.
    pub fn status(mut self, status: Status) -> Reply {
        self.status = status;
        self.message = status.message();
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Reply {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    /// The JSON body: status and message first, then the endpoint's fields.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("status".into(), Value::String(self.status.0.to_string()));
        body.insert("status_message".into(), Value::String(self.message.into()));
        for (k, v) in &self.fields {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }

    pub fn render(&self, envelope: Envelope, rule: HttpStatusRule) -> Response {
        let body = match envelope {
            Envelope::Risetai => serde_json::json!({ "risetai": self.body() }),
            Envelope::Flat => self.body(),
        };
        let code = match rule {
            HttpStatusRule::Mirror => self.status.http_mirror(),
            HttpStatusRule::Always200 => 200,
        };
        let http = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (http, axum::Json(body)).into_response();
        if self.status == Status::BUSY {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<Status> for Reply {
    fn from(status: Status) -> Reply {
        Reply {
            status,
            message: status.message(),
            fields: Map::new(),
        }
    }
}

/// A similarity as the API reports it: a JSON number with 4 decimals.
pub fn score(value: f32) -> Value {
    let rounded = (f64::from(value) * 10_000.0).round() / 10_000.0;
    serde_json::Number::from_f64(rounded)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}
