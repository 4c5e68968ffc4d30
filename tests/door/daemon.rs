//! The webhook through the real `facegate serve` (config file passed with
//! FACEGATE_CONFIG, camera on a `dir:` source): signed calls verified by the Python
//! receiver, a receiver down for 30 s then up (every visit delivered once), and a
//! restart with pending calls (delivered by the next daemon).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::broker::free_port;
use super::receiver::Receiver;
use super::sequence::{scene, write_frames, VISITORS};
use super::support::Enrolled;
use super::wait_for;

const BIN: &str = env!("CARGO_BIN_EXE_facegate");
const SECRET: &str = "door-secret-\u{e9}\u{1F511}";

/// An enrolled store and the kiosk scene's frames in a temp folder; the test's own
/// handle on the store is closed before a daemon opens it.
struct Site {
    dir: tempfile::TempDir,
    data: PathBuf,
    frames: PathBuf,
    token: String,
}

impl Site {
    fn new() -> Site {
        let Enrolled {
            gallery,
            config,
            token,
            dir,
        } = Enrolled::new(|_| {});
        drop(gallery);
        let frames = dir.path().join("frames");
        write_frames(&scene(&VISITORS), &frames).unwrap();
        Site {
            data: config.store.data_dir.clone(),
            dir,
            frames,
            token,
        }
    }

    /// A config file: the camera on the scene (or none), the webhook to `port`.
    fn config(&self, name: &str, camera: bool, realtime: bool, port: u16) -> PathBuf {
        let source = if camera {
            format!("dir:{}", self.frames.display())
        } else {
            String::new()
        };
        let text = format!(
            r#"
[sync]
device_id = "door-1"

[camera]
source = {source:?}
gallery = "kiosk/door"
dir_realtime = {realtime}

[door]
webhook_url = "http://127.0.0.1:{port}/hook"
webhook_secret = {SECRET:?}
webhook_retry_min_ms = 500
webhook_retry_max_ms = 2000
"#
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// `facegate serve` with FACEGATE_CONFIG; SIGTERM on drop.
struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    fn start(data: &Path, config: &Path) -> Daemon {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(BIN)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("FACEGATE_CONFIG", config)
            .env("FACEGATE_DATA_DIR", data)
            .env("FACEGATE_LOG", "warn")
            .env("FACEGATE_LISTEN", addr.to_string())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, addr };
        wait_for("facegate serve listening", || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("facegate serve exited: {status}");
            }
            TcpStream::connect(addr).is_ok()
        });
        daemon
    }

    fn get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    /// A counter or gauge of /metrics (0 when absent).
    fn metric(&self, series: &str) -> u64 {
        self.get("/metrics")
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    fn door(&self, action: &str, outcome: &str) -> u64 {
        self.metric(&format!(
            "facegate_door_actions_total{{action=\"{action}\",outcome=\"{outcome}\"}}"
        ))
    }

    /// The first `count` visits the kiosk events replay (with their door lines).
    fn replayed_visits(&self, token: &str, count: usize) -> Vec<Value> {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET /face-api/kiosk/events HTTP/1.1\r\nHost: x\r\nAccesstoken: {token}\r\n\r\n"
        )
        .unwrap();
        let mut visits = Vec::new();
        for line in BufReader::new(stream).lines() {
            let line = line.unwrap();
            if let Some(data) = line.strip_prefix("data:") {
                visits.push(serde_json::from_str(data.trim()).unwrap());
                if visits.len() == count {
                    break;
                }
            }
        }
        visits
    }

    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Already stopped by `terminate` (its pid may belong to someone else now).
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Checks the receiver's calls: each verified, each visit once, the three members.
fn assert_delivered_once(receiver: &Receiver) -> Vec<Value> {
    let calls = receiver.calls();
    assert!(
        calls
            .iter()
            .all(|c| c["verified"] == true && c["path"] == "/hook"),
        "{calls:#?}"
    );
    let mut ids: Vec<u64> = calls
        .iter()
        .map(|c| c["visit"]["visit_id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        calls.len(),
        "a visit was delivered twice: {calls:#?}"
    );
    let mut users: Vec<&str> = calls
        .iter()
        .map(|c| c["visit"]["user_id"].as_str().unwrap())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["amy", "penny", "sheldon"]);
    calls
}

#[test]
fn a_receiver_down_for_30_s_gets_every_visit_once_when_it_is_back() {
    let site = Site::new();
    let port = free_port();
    // Real time (10 fps, the interface the acceptance checks use): the scene plays for
    // 13 s while nothing listens on the webhook's port.
    let daemon = Daemon::start(&site.data, &site.config("door.toml", true, true, port));
    let started = Instant::now();
    wait_for("three calls queued and the stranger refused", || {
        daemon.door("webhook", "queued") == 3 && daemon.door("webhook", "refused") == 1
    });
    assert_eq!(daemon.door("webhook", "done"), 0);
    std::thread::sleep(Duration::from_secs(30).saturating_sub(started.elapsed()));
    assert_eq!(daemon.metric("facegate_door_webhook_pending"), 3);
    assert!(daemon.metric("facegate_door_webhook_failed_attempts_total") >= 3);
    let receiver = Receiver::start(port, SECRET, site.dir.path());
    wait_for("every call delivered", || {
        daemon.metric("facegate_door_webhook_pending") == 0 && receiver.calls().len() >= 3
    });
    // Several retry periods more: a call sent twice would show now.
    std::thread::sleep(Duration::from_secs(5));
    let calls = assert_delivered_once(&receiver);
    assert_eq!(calls.len(), 3);
    assert_eq!(daemon.door("webhook", "done"), 3);
    // Calls go out in order: while the receiver was down the oldest one was retried.
    assert_eq!(daemon.door("webhook", "failed"), 1);
    for call in &calls {
        let v = &call["visit"];
        assert_eq!(v["facegallery_id"], "door");
        assert_eq!(v["device_id"], "door-1");
        assert_eq!(v["masker"], false);
        assert!(v["similarity"].as_f64().unwrap() >= 0.8, "{v}");
        assert!(v["at"].as_str().unwrap().ends_with('Z'), "{v}");
        assert!(v["user_name"].is_string(), "{v}");
    }
    eprintln!(
        "door webhook: {} calls delivered once each, signatures verified by the Python receiver",
        calls.len()
    );

    // Each visit's record, as the kiosk screen gets it, says what the door did.
    let visits = daemon.replayed_visits(&site.token, 4);
    for v in &visits {
        let door: Vec<(String, String)> = v["door"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["outcome"].as_str().unwrap().to_string(),
                    l["detail"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if v["user_id"].is_null() {
            assert_eq!(door, [("refused".into(), "unknown face".into())], "{v}");
        } else {
            let outcomes: Vec<&str> = door.iter().map(|(o, _)| o.as_str()).collect();
            assert!(
                outcomes == ["queued", "failed", "done"] || outcomes == ["queued", "done"],
                "{door:?}"
            );
            assert!(
                door.last().unwrap().1.starts_with("delivered (HTTP 200)"),
                "{door:?}"
            );
        }
    }
    daemon.terminate();
}

#[test]
fn calls_pending_at_a_restart_are_delivered_by_the_next_daemon() {
    let site = Site::new();
    let port = free_port();
    let first = Daemon::start(&site.data, &site.config("first.toml", true, false, port));
    wait_for("three calls queued", || {
        first.door("webhook", "queued") == 3
    });
    assert_eq!(first.metric("facegate_door_webhook_pending"), 3);
    first.terminate();

    let receiver = Receiver::start(port, SECRET, site.dir.path());
    // No camera this time: only the queue from before the restart.
    let second = Daemon::start(&site.data, &site.config("second.toml", false, false, port));
    wait_for("the pending calls delivered", || {
        second.door("webhook", "done") == 3 && receiver.calls().len() >= 3
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(assert_delivered_once(&receiver).len(), 3);
    assert_eq!(second.metric("facegate_door_webhook_pending"), 0);
    assert_eq!(second.door("webhook", "queued"), 0);
    second.terminate();
}

#[test]
fn a_receiver_with_another_secret_refuses_every_call_and_nothing_is_dropped() {
    let site = Site::new();
    let port = free_port();
    let receiver = Receiver::start(port, "not-the-secret", site.dir.path());
    let daemon = Daemon::start(&site.data, &site.config("door.toml", true, false, port));
    // The queue is sent in order: the oldest call is retried while it is refused.
    wait_for("three calls queued and refused attempts", || {
        daemon.door("webhook", "queued") == 3 && receiver.calls().len() >= 3
    });
    assert!(receiver.calls().iter().all(|c| c["verified"] == false));
    assert_eq!(daemon.door("webhook", "done"), 0);
    assert_eq!(daemon.metric("facegate_door_webhook_pending"), 3);
    daemon.terminate();
}
