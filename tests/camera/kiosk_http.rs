//! The whole kiosk path over real HTTP on 127.0.0.1: a camera on the folder source
//! replays walk-ups, visits are stored, and a screen receives them over Server-Sent
//! Events (late connection, Last-Event-ID, live), plus the live frame and metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use facegate::api::{self, ApiState, KioskHooks, ServerOptions};
use facegate::camera::{Camera, CameraOptions};
use facegate::store::VisitRecord;
use serde_json::Value;

use super::sequence::{scene, write_frames, VISITORS};
use super::support::Enrolled;

struct Kiosk {
    addr: SocketAddr,
    enrolled: Enrolled,
    camera: Arc<Camera>,
    frames: usize,
    _runtime: tokio::runtime::Runtime,
}

impl Kiosk {
    /// Replays the test scene through a camera on `dir:` (as fast as the loop takes
    /// frames) and serves the API; returns once the camera has processed every frame.
    fn start() -> Kiosk {
        let frames = scene(&VISITORS);
        let count = frames.len();
        let enrolled = Enrolled::new(|c| c.camera.dir_realtime = false);
        let dir = enrolled.dir.path().join("frames");
        write_frames(&frames, &dir).unwrap();
        let mut config = enrolled.config.clone();
        config.camera.source = format!("dir:{}", dir.display());
        let options = CameraOptions::from_config(&config).unwrap().unwrap();
        let camera = Arc::new(Camera::start(enrolled.gallery.clone(), options).unwrap());
        let (live, metrics) = (camera.clone(), camera.clone());
        let hooks = KioskHooks {
            live_frame: Some((
                camera.client().to_string(),
                Arc::new(move || live.live_jpeg()),
            )),
            metrics: Some(Arc::new(move || metrics.metrics_text())),
        };
        let state = ApiState::with_kiosk(
            enrolled.gallery.clone(),
            ServerOptions::from_config(&config),
            hooks,
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(api::serve(listener, state, std::future::pending()));
        // The replay takes a few seconds; poll (a hang guard, not a timing check).
        for _ in 0..6000 {
            if camera.is_idle() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(camera.is_idle(), "the camera did not finish the replay");
        Kiosk {
            addr,
            enrolled,
            camera,
            frames: count,
            _runtime: runtime,
        }
    }

    fn connect(&self, path: &str, headers: &[(&str, &str)]) -> BufReader<TcpStream> {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        BufReader::new(stream)
    }

    /// Status code and headers (lower-cased names) of a response.
    fn head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let code = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        (code, headers)
    }

    fn get(&self, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut reader = self.connect(path, &[("Connection", "close")]);
        let (code, headers) = Kiosk::head(&mut reader);
        let mut body = Vec::new();
        reader.read_to_end(&mut body).unwrap();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        (code, headers, if chunked { dechunk(&body) } else { body })
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 4 + size..];
    }
}

/// Reads SSE events (id, JSON data) from a response body until `n` arrived. The body
/// is chunked: chunk-size lines are not `id:`/`data:` lines, so they are skipped.
fn events(reader: &mut BufReader<TcpStream>, n: usize) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut id = None;
    let mut line = String::new();
    while out.len() < n {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream closed");
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("id:") {
            id = Some(v.trim().parse().unwrap());
        } else if let Some(v) = l.strip_prefix("data:") {
            out.push((
                id.take().expect("id before data"),
                serde_json::from_str(v.trim()).unwrap(),
            ));
        }
    }
    out
}

fn user_ids(events: &[(u64, Value)]) -> Vec<Value> {
    events.iter().map(|(_, e)| e["user_id"].clone()).collect()
}

#[test]
fn a_late_screen_gets_the_recent_visits_then_live_ones_and_resumes_after_last_event_id() {
    let kiosk = Kiosk::start();
    // Without a token: 401, nothing streamed.
    let (code, _, _) = kiosk.get("/face-api/kiosk/events");
    assert_eq!(code, 401);
    let (code, _, _) = kiosk.get("/face-api/kiosk/events?access_token=not-a-token");
    assert_eq!(code, 401);

    // Late screen, a kiosk token in the query (as EventSource sends it; a full-power
    // token is refused there).
    let kiosk_token = kiosk
        .enrolled
        .gallery
        .accounts()
        .add_kiosk_token("kiosk")
        .unwrap();
    let path = format!("/face-api/kiosk/events?access_token={kiosk_token}");
    let mut screen = kiosk.connect(&path, &[]);
    let (code, headers) = Kiosk::head(&mut screen);
    assert_eq!(code, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")));
    let recent = events(&mut screen, 4);
    assert_eq!(
        user_ids(&recent),
        [
            Value::from("amy"),
            Value::from("sheldon"),
            Value::Null,
            Value::from("penny")
        ]
    );
    let first = &recent[0].1;
    assert_eq!(first["user_name"], "Amy Farrah Fowler");
    assert_eq!(first["device_id"], "door-1");
    assert_eq!(first["mask"], false);
    assert!(first["similarity"].as_f64().unwrap() >= 0.75);
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(!first["face_jpeg"].as_str().unwrap().is_empty());
    assert!(recent[2].1["user_name"].is_null());

    // A live visit reaches the connected screen.
    let live = kiosk
        .enrolled
        .gallery
        .record_visit(
            VisitRecord {
                client: "kiosk".into(),
                gallery: "door".into(),
                device_id: "door-1".into(),
                user_id: Some("penny".into()),
                user_name: Some("Penny".into()),
                similarity: 0.9,
                mask: true,
                timestamp_ms: recent[3].1["timestamp_ms"].as_u64().unwrap() + 1,
                face_jpeg: Vec::new(),
            },
            true,
        )
        .unwrap();
    let next = events(&mut screen, 1);
    assert_eq!(next[0].0, live.id);
    assert_eq!(next[0].1["mask"], true);

    // A reconnecting screen (header token, under the /risetai prefix) resumes after
    // the last event it saw.
    let mut again = kiosk.connect(
        "/risetai/face-api/kiosk/events",
        &[
            ("Accesstoken", kiosk.enrolled.token.as_str()),
            ("Last-Event-ID", &recent[1].0.to_string()),
        ],
    );
    assert_eq!(Kiosk::head(&mut again).0, 200);
    let resumed = events(&mut again, 3);
    let ids: Vec<u64> = resumed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [recent[2].0, recent[3].0, live.id]);
}

#[test]
fn the_kiosk_page_live_frame_and_camera_metrics_are_served() {
    let kiosk = Kiosk::start();
    let (code, headers, body) = kiosk.get("/kiosk");
    assert_eq!(code, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/html")));
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("EventSource") && page.contains("Welcome, "));

    let token = kiosk
        .enrolled
        .gallery
        .accounts()
        .add_kiosk_token("kiosk")
        .unwrap();
    let (code, headers, body) =
        kiosk.get(&format!("/face-api/kiosk/frame.jpg?access_token={token}"));
    assert_eq!(code, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v == "image/jpeg"));
    let frame = image::load_from_memory(&body).unwrap();
    assert_eq!((frame.width(), frame.height()), (640, 480));
    assert_eq!(kiosk.get("/face-api/kiosk/frame.jpg").0, 401);
    // Another client never sees this camera.
    let other = kiosk
        .enrolled
        .gallery
        .accounts()
        .add_kiosk_token("other")
        .unwrap();
    assert_eq!(
        kiosk
            .get(&format!("/face-api/kiosk/frame.jpg?access_token={other}"))
            .0,
        404
    );

    let (code, _, body) = kiosk.get("/metrics");
    assert_eq!(code, 200);
    let text = String::from_utf8(body).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing in {text}"))
    };
    assert_eq!(
        value("facegate_camera_frames_processed_total "),
        kiosk.frames as f64
    );
    assert_eq!(
        value("facegate_camera_frames_captured_total "),
        kiosk.frames as f64
    );
    assert_eq!(
        value("facegate_camera_frames_dropped_total "),
        0.0,
        "dir_realtime = false drops nothing"
    );
    assert_eq!(value("facegate_camera_visits_total{kind=\"known\"} "), 3.0);
    assert_eq!(
        value("facegate_camera_visits_total{kind=\"unknown\"} "),
        1.0
    );
    assert_eq!(value("facegate_camera_event_latency_seconds_count "), 4.0);
    assert!(text.contains("facegate_camera_fps "));
    let _ = &kiosk.camera;
}
