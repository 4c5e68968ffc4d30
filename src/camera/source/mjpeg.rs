//! `mjpeg:URL`: a `multipart/x-mixed-replace` stream of JPEGs over plain HTTP/1.1, as
//! IP cameras and ESP32-CAM boards serve it. A minimal blocking client on its own
//! thread: parts with or without Content-Length, chunked transfer encoding or not.
//! `http://USER:PASS@HOST/...` sends HTTP Basic authentication (percent-escapes in the
//! user and password are decoded); logs and errors show the URL without the password.
//! Plain HTTP only (no TLS).

use std::io::{BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::http_body::{read_line, Body, MAX_PART};
use super::{decode_picture, CaptureOptions, Frame, FrameSource, SourceError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// No byte for this long: the stream is considered dead and reopened.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct MjpegSource {
    /// The URL without the password (for logs and errors).
    url: String,
    /// `Authorization` header value, when the URL has credentials.
    authorization: Option<String>,
    host: String,
    port: u16,
    path: String,
    options: CaptureOptions,
    stream: Option<Body>,
    boundary: Vec<u8>,
}

impl MjpegSource {
    pub fn new(url: &str, options: CaptureOptions) -> Result<MjpegSource, SourceError> {
        let shown = redact(url);
        let bad = |message: &str| SourceError::Stream {
            url: shown.clone(),
            message: message.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (credentials, authority) = match authority.rsplit_once('@') {
            Some((c, a)) => (Some(c), a),
            None => (None, authority),
        };
        let authorization = credentials
            .map(|c| {
                let (user, pass) = c.split_once(':').unwrap_or((c, ""));
                let plain = format!(
                    "{}:{}",
                    percent_decode(user).ok_or_else(|| bad("bad escape in the user"))?,
                    percent_decode(pass).ok_or_else(|| bad("bad escape in the password"))?
                );
                use base64::Engine;
                Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(plain)
                ))
            })
            .transpose()?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse().map_err(|_| bad("bad port"))?)
            }
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(MjpegSource {
            url: shown,
            authorization,
            host: host.to_string(),
            port,
            path: path.to_string(),
            options,
            stream: None,
            boundary: Vec::new(),
        })
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::Stream {
            url: self.url.clone(),
            message: message.into(),
        }
    }

    fn io(&self, source: std::io::Error) -> SourceError {
        SourceError::Io {
            url: self.url.clone(),
            source,
        }
    }

    fn connect(&mut self) -> Result<(), SourceError> {
        let addr = (self.host.trim_matches(|c| c == '[' || c == ']'), self.port)
            .to_socket_addrs()
            .map_err(|e| self.io(e))?
            .next()
            .ok_or_else(|| self.error("host has no address"))?;
        let mut tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| self.io(e))?;
        tcp.set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| self.io(e))?;
        let authorization = self
            .authorization
            .as_ref()
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: facegate\r\n{authorization}Accept: multipart/x-mixed-replace, image/jpeg\r\nConnection: close\r\n\r\n",
            self.path, self.host, self.port
        );
        tcp.write_all(request.as_bytes()).map_err(|e| self.io(e))?;
        let mut reader = BufReader::new(tcp);
        let status = read_line(&mut reader).map_err(|e| self.io(e))?;
        let code = status.split_whitespace().nth(1).unwrap_or("");
        if code != "200" {
            return Err(self.error(format!("answered {status:?}")));
        }
        let mut content_type = String::new();
        let mut chunked = false;
        loop {
            let line = read_line(&mut reader).map_err(|e| self.io(e))?;
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim();
                if name == "content-type" {
                    content_type = value.to_string();
                } else if name == "transfer-encoding" {
                    chunked = value.to_ascii_lowercase().contains("chunked");
                }
            }
        }
        let boundary = boundary_of(&content_type)
            .ok_or_else(|| self.error(format!("not an MJPEG stream: {content_type:?}")))?;
        self.boundary = format!("--{boundary}").into_bytes();
        self.stream = Some(Body {
            reader,
            chunked,
            chunk_left: 0,
            pending: Vec::new(),
        });
        Ok(())
    }

    fn read_part(&mut self) -> Result<Vec<u8>, SourceError> {
        let url = self.url.clone();
        let io = |source| SourceError::Io {
            url: url.clone(),
            source,
        };
        let boundary = self.boundary.clone();
        let Some(body) = self.stream.as_mut() else {
            return Err(self.error("not connected"));
        };
        // Skip to the boundary line (preamble, blank lines between parts).
        loop {
            let line = body.line().map_err(io)?;
            let line = line.trim_ascii();
            if line.starts_with(&boundary) {
                if line[boundary.len()..].starts_with(b"--") {
                    return Err(SourceError::Stream {
                        url: url.clone(),
                        message: "stream ended".into(),
                    });
                }
                break;
            }
        }
        let mut length = None;
        loop {
            let line = body.line().map_err(io)?;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim();
            if text.is_empty() {
                break;
            }
            if let Some((name, value)) = text.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        match length {
            Some(n) if n <= MAX_PART => {
                let mut data = vec![0u8; n];
                body.read_exact(&mut data).map_err(io)?;
                Ok(data)
            }
            Some(n) => Err(SourceError::Stream {
                url,
                message: format!("part of {n} bytes"),
            }),
            None => {
                // Up to the next boundary line, which stays in the stream.
                let mut marker = b"\r\n".to_vec();
                marker.extend_from_slice(&boundary);
                body.until(&marker).map_err(io)
            }
        }
    }
}

/// The URL with its password (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return url.to_string();
    };
    let user = rest[..at].split(':').next().unwrap_or("");
    format!("{scheme}://{user}:***@{}", &rest[at + 1..])
}

/// `%XX` escapes decoded (UTF-8); None on a malformed escape.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn boundary_of(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.starts_with("multipart/") {
        return None;
    }
    let at = lower.find("boundary=")?;
    let value = content_type[at + "boundary=".len()..]
        .split(';')
        .next()?
        .trim()
        .trim_matches('"');
    let value = value.strip_prefix("--").unwrap_or(value);
    (!value.is_empty()).then(|| value.to_string())
}

impl FrameSource for MjpegSource {
    fn open(&mut self) -> Result<(), SourceError> {
        self.stream = None;
        self.connect()
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        loop {
            let part = match self.read_part() {
                Ok(p) => p,
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            };
            // A broken JPEG in a live stream is one lost frame, not a dead stream.
            match decode_picture(&part, &self.options) {
                Ok(image) => return Ok(Some(Frame::now(image))),
                Err(e) => tracing::debug!(url = %self.url, error = %e, "MJPEG part skipped"),
            }
        }
    }

    fn describe(&self) -> String {
        format!("mjpeg:{}", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_read_with_or_without_quotes_and_dashes() {
        assert_eq!(
            boundary_of("multipart/x-mixed-replace;boundary=123456789000000000000987654321")
                .as_deref(),
            Some("123456789000000000000987654321")
        );
        assert_eq!(
            boundary_of("multipart/x-mixed-replace; boundary=\"--frame\"").as_deref(),
            Some("frame")
        );
        assert_eq!(boundary_of("image/jpeg"), None);
    }

    #[test]
    fn urls_name_host_port_and_path() {
        let options = CaptureOptions {
            fps: 10,
            width: 640,
            height: 480,
            realtime: true,
        };
        let s = MjpegSource::new("http://10.0.0.5:81/stream", options).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.path.as_str()),
            ("10.0.0.5", 81, "/stream")
        );
        let s = MjpegSource::new("http://cam.local", options).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.path.as_str()),
            ("cam.local", 80, "/")
        );
        assert!(MjpegSource::new("https://cam/s", options).is_err());
    }

    #[test]
    fn credentials_in_the_url_become_basic_auth_and_never_reach_logs() {
        let options = CaptureOptions {
            fps: 10,
            width: 640,
            height: 480,
            realtime: true,
        };
        let s = MjpegSource::new("http://admin:p%40ss:w@10.0.0.5:81/stream", options).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.path.as_str()),
            ("10.0.0.5", 81, "/stream")
        );
        // base64("admin:p@ss:w")
        assert_eq!(s.authorization.as_deref(), Some("Basic YWRtaW46cEBzczp3"));
        assert_eq!(s.describe(), "mjpeg:http://admin:***@10.0.0.5:81/stream");
        assert_eq!(redact("http://cam.local/s"), "http://cam.local/s");
        assert!(MjpegSource::new("http://a:%zz@cam/s", options).is_err());
    }
}
