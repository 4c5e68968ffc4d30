//! Request parsing: the body (read with a limit), the JSON object merged with query
//! parameters, and typed field access that answers the documented status codes.

use axum::body::Body;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use super::Status;
use crate::gallery::ImageRole;

/// Longest accepted value of a text field, in characters.
pub const MAX_FIELD_CHARS: usize = 120;

/// After the limit, this much more is read and discarded so the client gets a clean
/// 498 answer instead of a reset connection.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, PartialEq)]
pub enum BodyError {
    TooLarge,
    Read,
    TimedOut,
}

/// The body, at most `limit` bytes, received within `timeout` in all (a client
/// trickling bytes cannot hold the connection and its buffer open).
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, BodyError> {
    tokio::time::timeout(timeout, read_body_untimed(body, limit))
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

async fn read_body_untimed(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut body = body;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total <= limit {
                buf.extend_from_slice(&data);
            } else if total > limit + DRAIN_BYTES {
                break;
            }
        }
    }
    if total > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(buf.freeze())
    }
}

/// A request's fields: the JSON body object, completed by query parameters (the body
/// wins when both name a field).
#[derive(Clone, Debug, Default)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// Empty or whitespace-only bodies are an empty object; anything else must be a JSON
    /// object.
    pub fn parse(body: &[u8], query: Option<&str>) -> Result<Fields, Status> {
        let mut map = if body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => map,
                _ => return Err(Status::MALFORMED),
            }
        };
        if let Some(q) = query {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(q).map_err(|_| Status::MALFORMED)?;
            for (k, v) in pairs {
                map.entry(k).or_insert(Value::String(v));
            }
        }
        Ok(Fields(map))
    }

    fn present(&self, name: &str) -> Option<&Value> {
        match self.0.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(v) => Some(v),
        }
    }

    /// A text field of at most 120 characters; numbers are accepted as text (numeric
    /// ids such as a NIK). Missing, null or empty: `missing`.
    pub fn text(&self, name: &str, missing: Status) -> Result<String, Status> {
        self.optional_text(name)?.ok_or(missing)
    }

    pub fn optional_text(&self, name: &str) -> Result<Option<String>, Status> {
        let text = match self.present(name) {
            None => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(Status::MALFORMED),
        };
        if text.chars().count() > MAX_FIELD_CHARS {
            return Err(Status::MALFORMED);
        }
        Ok(Some(text))
    }

    /// An id field (`facegallery_id`, `user_id`): a text field that also fits the
    /// store's keys, at most `MAX_ID_BYTES` bytes of UTF-8 (else 400).
    pub fn id(&self, name: &str, missing: Status) -> Result<String, Status> {
        // A number is its decimal text only when JSON carried it exactly: beyond 64 bits
        // or written as 1e2 / 1.0 it arrives as a float, whose text ("1e+20") two
        // different ids would share.
        if let Some(Value::Number(n)) = self.present(name) {
            if !(n.is_i64() || n.is_u64()) {
                return Err(Status::MALFORMED);
            }
        }
        let id = self.text(name, missing)?;
        if id.len() > crate::gallery::MAX_ID_BYTES {
            return Err(Status::MALFORMED);
        }
        Ok(id)
    }

    /// true/false, also as the strings "true"/"false" or 1/0. Missing: false.
    pub fn flag(&self, name: &str) -> Result<bool, Status> {
        match self.present(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(Status::MALFORMED),
            },
            Some(Value::Number(n)) => match n.as_i64() {
                Some(1) => Ok(true),
                Some(0) => Ok(false),
                _ => Err(Status::MALFORMED),
            },
            Some(_) => Err(Status::MALFORMED),
        }
    }

    /// A number within 0..1 (also as a numeric string). Missing: None.
    pub fn unit_float(&self, name: &str) -> Result<Option<f32>, Status> {
        let v = match self.present(name) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match v {
            Some(v) if (0.0..=1.0).contains(&v) => Ok(Some(v as f32)),
            _ => Err(Status::MALFORMED),
        }
    }

    /// A whole number within 1..=max (also as a numeric string). Missing: None.
    pub fn count(&self, name: &str, max: usize) -> Result<Option<usize>, Status> {
        let v = match self.present(name) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(_) => None,
        };
        match v {
            Some(v) if v >= 1 && v <= max as u64 => Ok(Some(v as usize)),
            _ => Err(Status::MALFORMED),
        }
    }

    /// A base64 image field: missing is `missing`; not a string or not base64 is the
    /// role's "cannot decode base64" status.
    pub fn image(&self, name: &str, role: ImageRole, missing: Status) -> Result<Vec<u8>, Status> {
        match self.present(name) {
            None => Err(missing),
            Some(Value::String(s)) => decode_base64(s).ok_or(Status::bad_base64(role)),
            Some(_) => Err(Status::bad_base64(role)),
        }
    }
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes base64 as clients send it: with or without a `data:image/...;base64,`
/// prefix, padding, line breaks or spaces; standard or URL-safe alphabet.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    // URL schemes are case-insensitive: "DATA:IMAGE/JPEG;BASE64," too.
    let is_data_url = text
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"));
    let payload = if is_data_url {
        text.split_once(',')?.1
    } else {
        text
    };
    // Base64 is ASCII, so bytes are enough. Most clients send one unbroken line: it is
    // decoded where it lies; only a payload with line breaks or spaces is copied without
    // them (a per-character copy of every payload cost ~0.5 ms per 640x480 JPEG).
    let compacted: Vec<u8>;
    let mut bytes = payload.as_bytes();
    if bytes.iter().any(u8::is_ascii_whitespace) {
        compacted = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        bytes = &compacted;
    }
    while let [rest @ .., b'='] = bytes {
        bytes = rest;
    }
    if bytes.is_empty() {
        return None;
    }
    let engine = if bytes.iter().any(|&b| b == b'-' || b == b'_') {
        &URL_SAFE
    } else {
        &STANDARD
    };
    engine.decode(bytes).ok()
}

/// Fields of an `application/x-www-form-urlencoded` body, a JSON body, or the query.
pub fn form_fields(body: &[u8], query: Option<&str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = serde_json::from_slice::<Map<String, Value>>(body)
        .map(|m| {
            m.into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    Value::Number(n) => Some((k, n.to_string())),
                    _ => None,
                })
                .collect()
        })
        .or_else(|_| serde_urlencoded::from_bytes(body))
        .unwrap_or_default();
    if let Some(q) = query {
        out.extend(serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_variants_all_decode_to_the_same_bytes() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        let std = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let expect = Some(bytes.clone());
        assert_eq!(decode_base64(&std), expect);
        assert_eq!(decode_base64(std.trim_end_matches('=')), expect);
        assert_eq!(
            decode_base64(&format!("data:image/png;base64,{std}")),
            expect
        );
        let wrapped: String = std
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        assert_eq!(decode_base64(&wrapped), expect);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(decode_base64(&url), expect);
        assert_eq!(decode_base64("not base64 at all!"), None);
        assert_eq!(decode_base64("data:image/png;base64,"), None);
        assert_eq!(
            decode_base64(&format!("DATA:IMAGE/PNG;BASE64,{std}")),
            Some(bytes.clone())
        );
        assert_eq!(decode_base64("===="), None);
        let spaced: String = std.chars().flat_map(|c| [c, ' ']).collect();
        assert_eq!(decode_base64(&spaced), expect);
        assert_eq!(decode_base64(&format!("{std}\u{e9}")), None);
    }

    #[test]
    fn fields_over_120_characters_are_malformed() {
        let long = "x".repeat(121);
        let f = Fields::parse(format!("{{\"user_id\":\"{long}\"}}").as_bytes(), None).unwrap();
        assert_eq!(
            f.text("user_id", Status::USER_ID_MISSING),
            Err(Status::MALFORMED)
        );
        let f = Fields::parse(b"{\"user_id\":null}", None).unwrap();
        assert_eq!(
            f.text("user_id", Status::USER_ID_MISSING),
            Err(Status::USER_ID_MISSING)
        );
    }

    #[test]
    fn a_numeric_id_is_taken_only_when_it_is_an_exact_integer() {
        let id = |json: &str| {
            Fields::parse(format!("{{\"user_id\":{json}}}").as_bytes(), None)
                .unwrap()
                .id("user_id", Status::MALFORMED)
        };
        assert_eq!(id("3175092505900001"), Ok("3175092505900001".into()));
        assert_eq!(
            id("18446744073709551615"),
            Ok("18446744073709551615".into())
        );
        assert_eq!(id("-12"), Ok("-12".into()));
        for lossy in ["99999999999999999998", "1e2", "100.0", "-0", "1.5"] {
            assert_eq!(id(lossy), Err(Status::MALFORMED), "{lossy}");
        }
    }

    #[test]
    fn query_parameters_fill_fields_the_body_lacks() {
        let f = Fields::parse(b"", Some("facegallery_id=g%40x&trx_id=t1")).unwrap();
        assert_eq!(
            f.text("facegallery_id", Status::GALLERY_ID_MISSING)
                .unwrap(),
            "g@x"
        );
        assert_eq!(Fields::parse(b"[1]", None).err(), Some(Status::MALFORMED));
        assert_eq!(Fields::parse(b"{bad", None).err(), Some(Status::MALFORMED));
    }
}
