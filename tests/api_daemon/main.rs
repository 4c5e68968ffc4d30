//! The real `facegate` binary: admin commands, restart keeps everything, kill -9 during
//! a stream of enrollments loses no acknowledged enrollment, SIGTERM is graceful.

#[path = "../api_http/support.rs"]
mod support;

#[path = "../common/real_models.rs"]
mod real_models;

mod hardening;
mod hit_counts;
mod import;
mod model_switch;
mod recalibration;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_facegate");

fn facegate(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FACEGATE_DATA_DIR", data)
        .env("FACEGATE_LOG", "warn")
        .args(args);
    cmd
}

/// Runs an admin command; returns the last line of stdout.
fn admin(data: &Path, args: &[&str]) -> String {
    let out = facegate(data, args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    /// Starts `facegate serve` and waits (bounded) until it listens.
    fn start(data: &Path) -> Daemon {
        Daemon::start_with(data, &[])
    }

    /// As `start`, with global arguments before `serve` (e.g. `--config FILE`).
    ///
    /// The daemon binds port 0 and the test learns the port from its systemd readiness
    /// message (`NOTIFY_SOCKET`, "serving on ADDR"): a port picked beforehand could be
    /// taken by another test's daemon in between, and the test would then talk to the
    /// wrong daemon.
    fn start_with(data: &Path, args: &[&str]) -> Daemon {
        let notify_dir = tempfile::tempdir().unwrap();
        let notify_path = notify_dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let args: Vec<&str> = args.iter().copied().chain(["serve"]).collect();
        let child = facegate(data, &args)
            .env("FACEGATE_LISTEN", "127.0.0.1:0")
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let mut buf = [0u8; 512];
        for _ in 0..600 {
            if let Ok(n) = notify.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(addr) = message
                    .lines()
                    .find_map(|l| l.strip_prefix("STATUS=serving on "))
                {
                    daemon.addr = addr.parse().unwrap();
                    assert!(message.contains("READY=1"), "{message}");
                    return daemon;
                }
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("facegate serve exited: {status}");
            }
        }
        let _ = daemon.child.kill();
        panic!("facegate serve did not report ready");
    }

    fn client(&self, token: &str) -> Client {
        Client {
            addr: self.addr,
            token: token.to_string(),
            prefix: "/risetai/face-api".into(),
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn client_commands_provision_list_rotate_and_revoke_tokens_on_a_live_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // Added while the daemon runs: works at once.
    let token = admin(dir.path(), &["client", "add", "kiosk"]);
    assert_eq!(
        token.len(),
        43,
        "the token alone on the last line: {token:?}"
    );
    let c = daemon.client(&token);
    assert_eq!(c.post("client/register", Value::Null).status(), 200);
    let list = facegate(dir.path(), &["client", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("kiosk\t1\tno\t1"));
    let rotated = admin(dir.path(), &["client", "rotate", "kiosk"]);
    assert_eq!(c.post("client/register", Value::Null).status(), 401);
    let c = daemon.client(&rotated);
    assert_eq!(c.post("client/register", Value::Null).status(), 200);
    admin(dir.path(), &["client", "revoke", "kiosk"]);
    assert_eq!(c.post("client/register", Value::Null).status(), 401);
    // A password for the OAuth endpoint, read from stdin.
    let mut add = facegate(dir.path(), &["client", "add", "app", "--password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin.take().unwrap().write_all(b"hunter2\n").unwrap();
    assert!(add.wait_with_output().unwrap().status.success());
    let r = http(
        daemon.addr,
        "POST",
        "/oauth/client/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"client_id=app&password=hunter2",
    );
    assert_eq!(r.http, 200, "{:?}", r.raw);
    assert!(!facegate(dir.path(), &["client", "add", "kiosk"])
        .output()
        .unwrap()
        .status
        .success());
    assert!(daemon.terminate().success());
}

#[test]
fn a_restart_keeps_galleries_faces_counters_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let token = admin(dir.path(), &["client", "add", "kiosk"]);
    let daemon = Daemon::start(dir.path());
    let c = daemon.client(&token);
    assert_eq!(c.create_gallery("door").status(), 200);
    for (user, file) in [
        ("amy", "amy1.png"),
        ("raj", "raj1.png"),
        ("penny", "penny1.png"),
    ] {
        assert_eq!(c.enroll("door", user, user, &photo(file)).status(), 200);
    }
    assert_eq!(
        c.post(
            "facegallery/delete-face",
            json!({"facegallery_id": "door", "user_id": "penny"})
        )
        .status(),
        200
    );
    let counters = c.post("client/get-counters", json!({})).body()["remaining_limit"].clone();
    assert!(daemon.terminate().success(), "SIGTERM exits cleanly");

    let daemon = Daemon::start(dir.path());
    let c = daemon.client(&token);
    assert_eq!(c.list_faces("door"), ["amy", "raj"]);
    let r = c.identify("door", &photo("amy2.png"));
    assert_eq!(
        r.body()["return"][0]["user_id"],
        "amy",
        "index rebuilt from LMDB: {:?}",
        r.raw
    );
    assert_eq!(c.identify("door", &photo("penny2.png")).status(), 411);
    assert_eq!(
        c.post("client/get-counters", json!({})).body()["remaining_limit"],
        counters
    );
    assert!(daemon.terminate().success());
}

#[test]
fn enrollment_survives_kill_9_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let token = admin(dir.path(), &["client", "add", "kiosk"]);
    let daemon = Daemon::start(dir.path());
    let c = daemon.client(&token);
    assert_eq!(c.create_gallery("door").status(), 200);
    let photos = [
        "amy1.png",
        "sheldon1.png",
        "penny1.png",
        "leonard1.png",
        "howard1.png",
        "raj1.png",
    ];
    let images: Vec<String> = photos.iter().map(|p| photo(p)).collect();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    // Two writers streaming enrollments until the daemon dies.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (c, images, acknowledged, done) = (c.clone(), images.clone(), acknowledged.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..400 {
                    let user = format!("w{w}-user{i}@example.com");
                    let image = &images[i % images.len()];
                    let body = json!({"facegallery_id": "door", "user_id": user, "user_name": user, "image": image});
                    let Some(r) = try_post(&c, "facegallery/enroll-face", &body) else { break };
                    if r.status() == 200 {
                        acknowledged.lock().unwrap().push(user);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    while done.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.kill9();
    for w in writers {
        w.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 20);

    let daemon = Daemon::start(dir.path());
    let c = daemon.client(&token);
    let listed = c.list_faces("door");
    for user in &acknowledged {
        assert!(
            listed.contains(user),
            "{user} got 200 but is missing after kill -9"
        );
    }
    // At most the requests in flight at the kill were committed without an answer.
    assert!(listed.len() <= acknowledged.len() + 2);
    let h = http(daemon.addr, "GET", "/healthz", &[], b"");
    assert_eq!(h.raw["templates"], json!(listed.len()));
    // The store takes writes again.
    assert_eq!(
        c.enroll("door", "after", "After", &photo("amy2.png"))
            .status(),
        200
    );
    assert!(daemon.terminate().success());
}

#[test]
fn reembed_makes_faces_enrolled_with_another_model_searchable_again() {
    let dir = tempfile::tempdir().unwrap();
    let token = admin(dir.path(), &["client", "add", "kiosk"]);
    let daemon = Daemon::start(dir.path());
    let c = daemon.client(&token);
    c.create_gallery("door");
    for (user, file) in [("amy", "amy1.png"), ("raj", "raj1.png")] {
        assert_eq!(c.enroll("door", user, user, &photo(file)).status(), 200);
    }
    assert!(daemon.terminate().success());

    // The float embedder is another embedding space: the int8 templates are not searched.
    let float = dir.path().join("float.toml");
    std::fs::write(
        &float,
        "[models]\nembedder = \"dlib_face_recognition_float.tflite\"\n",
    )
    .unwrap();
    let config = float.to_str().unwrap();
    let start_float = || Daemon::start_with(dir.path(), &["--config", config]);
    let daemon = start_float();
    let c = daemon.client(&token);
    assert_eq!(c.identify("door", &photo("amy2.png")).status(), 411);
    assert_eq!(c.list_faces("door"), ["amy", "raj"], "users are kept");
    assert!(daemon.terminate().success());

    let out = admin(dir.path(), &["--config", config, "reembed"]);
    assert!(out.starts_with("re-embedded 2 template(s)"), "{out}");
    let daemon = start_float();
    let c = daemon.client(&token);
    let r = c.identify("door", &photo("amy2.png"));
    assert_eq!(r.body()["return"][0]["user_id"], "amy", "{:?}", r.raw);
    assert!(daemon.terminate().success());
}

/// A POST that returns None when the connection fails (the daemon was killed).
fn try_post(c: &Client, endpoint: &str, body: &Value) -> Option<Resp> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(c.addr).ok()?;
    let bytes = body.to_string();
    let head = format!(
        "POST {}/{endpoint} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccesstoken: {}\r\nContent-Length: {}\r\n\r\n",
        c.prefix,
        c.token,
        bytes.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(bytes.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let http: u16 = String::from_utf8_lossy(&raw[..split])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let raw: Value = serde_json::from_slice(&raw[split + 4..]).ok()?;
    Some(Resp {
        http,
        headers: String::new(),
        raw,
    })
}

#[test]
fn the_hit_quota_holds_across_a_restart_although_reads_write_nothing() {
    // Hits are counted in memory (issue 13) and saved every hits_flush_secs and at
    // shutdown; a long flush period proves the SIGTERM path saves them.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quota.toml");
    std::fs::write(
        &config,
        "[quota]\napi_hits = 6\n[store]\nhits_flush_secs = 3600\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let token = admin(dir.path(), &["client", "add", "kiosk"]);
    let daemon = Daemon::start_with(dir.path(), &["--config", config]);
    let c = daemon.client(&token);
    assert_eq!(c.create_gallery("door").status(), 200);
    assert_eq!(
        c.enroll("door", "amy", "Amy", &photo("amy1.png")).status(),
        200
    );
    assert_eq!(c.identify("door", &photo("amy2.png")).status(), 200);
    // 3 hits so far; get-counters is the 4th.
    let left = |c: &Client| {
        c.post("client/get-counters", json!({})).body()["remaining_limit"]["n_api_hits"].clone()
    };
    assert_eq!(left(&c), 2);
    assert!(daemon.terminate().success());

    let daemon = Daemon::start_with(dir.path(), &["--config", config]);
    let c = daemon.client(&token);
    assert_eq!(
        c.identify("door", &photo("amy2.png")).status(),
        200,
        "5th hit"
    );
    assert_eq!(
        left(&c),
        0,
        "6th hit: the quota counted the hits before the restart"
    );
    assert_eq!(c.identify("door", &photo("amy2.png")).status(), 403);
    assert!(daemon.terminate().success());
}
