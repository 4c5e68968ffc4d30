//! Test support: an in-process server on 127.0.0.1:0 with real models and a real LMDB
//! store in a temp folder, a raw HTTP/1.1 client (so tests can send anything: GET with
//! a body, truncated bodies, wrong types), and fixture pictures.
#![allow(dead_code)]

use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use facegate::api::{self, ApiState, ServerOptions};
use facegate::config::Config;
use facegate::gallery::{Gallery, Settings};
use facegate::store::Store;
use image::{imageops, DynamicImage, ImageFormat, RgbImage};
use serde_json::{json, Value};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/api")
        .join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fixture as the API expects it: base64 of the file.
pub fn photo(name: &str) -> String {
    b64(&fixture(name))
}

#[path = "../common/models.rs"]
mod models;
pub use models::{default_config, pipeline};

pub struct TestServer {
    pub addr: SocketAddr,
    pub gallery: Arc<Gallery>,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_with_options(tweak, |_| {})
    }

    /// As `start_with`, also adjusting the server options derived from the config.
    pub fn start_with_options(
        tweak: impl FnOnce(&mut Config),
        tweak_options: impl FnOnce(&mut ServerOptions),
    ) -> TestServer {
        TestServer::start_on(pipeline(), tweak, tweak_options)
    }

    /// As `start_with_options`, on a pipeline of the test's own (its own session pool).
    pub fn start_on(
        pipeline: Arc<facegate::vision::Pipeline>,
        tweak: impl FnOnce(&mut Config),
        tweak_options: impl FnOnce(&mut ServerOptions),
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = default_config();
        config.store.data_dir = dir.path().to_path_buf();
        config.store.map_size_mb = 1;
        tweak(&mut config);
        let store =
            Arc::new(Store::open(&config.store.data_dir, config.store.map_size_mb).unwrap());
        let gallery =
            Arc::new(Gallery::open(store, pipeline, Settings::from_config(&config)).unwrap());
        let mut options = ServerOptions::from_config(&config);
        tweak_options(&mut options);
        let state = ApiState::new(gallery.clone(), options);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(api::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            gallery,
            config,
            stop: Some(stop),
            runtime: Some(runtime),
            _dir: dir,
        }
    }

    /// Provisions a client as `facegate client add` does; returns its token.
    pub fn add_client(&self, name: &str) -> String {
        self.gallery.accounts().add_client(name, None).unwrap()
    }

    pub fn client(&self, name: &str) -> Client {
        Client {
            addr: self.addr,
            token: self.add_client(name),
            prefix: "/face-api".into(),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub http: u16,
    pub headers: String,
    /// The whole JSON body as sent.
    pub raw: Value,
}

impl Resp {
    /// The body inside the `risetai` envelope (or the flat body).
    pub fn body(&self) -> &Value {
        self.raw.get("risetai").unwrap_or(&self.raw)
    }

    /// The body's status as a number.
    pub fn status(&self) -> u16 {
        self.body()["status"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Sends one HTTP/1.1 request over a new connection and reads the whole answer.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    http_on(
        TcpStream::connect(addr).expect("connect"),
        method,
        path,
        headers,
        body,
    )
}

/// A connection to `addr` from the local address `from` (e.g. 127.0.0.2: another
/// peer address on the loopback interface).
pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    socket.into()
}

/// As [`http`], on a connection already open.
pub fn http_on(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let addr = stream.peer_addr().expect("peer address");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)));
    let headers = String::from_utf8_lossy(&raw[..split]).to_string();
    let http: u16 = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let raw = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    Resp { http, headers, raw }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

/// A client of the Face API with a token.
#[derive(Clone, Debug)]
pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
    pub prefix: String,
}

impl Client {
    pub fn call(&self, method: &str, endpoint: &str, body: &Value) -> Resp {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        http(
            self.addr,
            method,
            &format!("{}/{endpoint}", self.prefix),
            &[
                ("Accesstoken", &self.token),
                ("Content-Type", "application/json"),
            ],
            &bytes,
        )
    }

    pub fn post(&self, endpoint: &str, body: Value) -> Resp {
        self.call("POST", endpoint, &body)
    }

    pub fn create_gallery(&self, id: &str) -> Resp {
        self.post(
            "facegallery/create-facegallery",
            json!({"facegallery_id": id, "trx_id": "t"}),
        )
    }

    pub fn enroll(&self, gallery: &str, user: &str, name: &str, image: &str) -> Resp {
        self.post(
            "facegallery/enroll-face",
            json!({"facegallery_id": gallery, "user_id": user, "user_name": name, "image": image, "trx_id": "t"}),
        )
    }

    pub fn identify(&self, gallery: &str, image: &str) -> Resp {
        self.post(
            "facegallery/identify-face",
            json!({"facegallery_id": gallery, "image": image}),
        )
    }

    pub fn verify(&self, gallery: &str, user: &str, image: &str) -> Resp {
        self.post(
            "facegallery/verify-face",
            json!({"facegallery_id": gallery, "user_id": user, "image": image}),
        )
    }

    pub fn list_faces(&self, gallery: &str) -> Vec<String> {
        let r = self.post("facegallery/list-faces", json!({"facegallery_id": gallery}));
        assert_eq!(r.status(), 200, "{:?}", r.raw);
        let mut ids: Vec<String> = r.body()["faces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["user_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    }
}

pub fn png(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(image.clone())
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
        .unwrap();
    out
}

pub fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(image.clone())
        .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
        .unwrap();
    out
}

pub fn load(name: &str) -> RgbImage {
    image::load_from_memory(&fixture(name)).unwrap().to_rgb8()
}

/// A person holding an ID card: `live` large on the left, `card` small on the right
/// (as a printed card photo on a light card), on a 640x480 grey background.
pub fn ktp_photo(live: &str, card: &str) -> Vec<u8> {
    let mut canvas = RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]));
    let live = imageops::resize(&load(live), 330, 330, imageops::FilterType::CatmullRom);
    imageops::replace(&mut canvas, &live, 20, 75);
    let card_face = imageops::resize(&load(card), 130, 130, imageops::FilterType::CatmullRom);
    let card_bg = RgbImage::from_pixel(240, 160, image::Rgb([225, 225, 235]));
    imageops::replace(&mut canvas, &card_bg, 380, 160);
    imageops::replace(&mut canvas, &card_face, 390, 175);
    png(&canvas)
}

/// A face photo scaled down so the face is smaller than the enrollment minimum.
pub fn small_face(name: &str) -> Vec<u8> {
    let face = imageops::resize(&load(name), 60, 60, imageops::FilterType::CatmullRom);
    let mut canvas = RgbImage::from_pixel(320, 240, image::Rgb([90, 90, 90]));
    imageops::replace(&mut canvas, &face, 130, 90);
    png(&canvas)
}

/// Appends one PNG chunk (length, type, data, CRC).
pub fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
}
