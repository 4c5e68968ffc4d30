//! Two `facegate serve` processes and a central publisher on one real broker: an
//! enrollment made over HTTP at one daemon is identified at the other; a push from the
//! central reaches both.

#[path = "../sync_support/broker.rs"]
mod broker;
#[path = "../api_http/support.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use facegate::gallery::{encode_embedding, Op, OpKind, WireTemplate};
use facegate::vision::FaceSelection;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_facegate");
const WAIT: Duration = Duration::from_secs(60);

fn facegate(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FACEGATE_DATA_DIR", data)
        .env("FACEGATE_LOG", "warn")
        .args(args);
    cmd
}

fn add_client(data: &Path, name: &str) -> String {
    let out = facegate(data, &["client", "add", name]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string()
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    fn start(data: &Path, config: &Path, mqtt_port: u16, device: &str) -> Daemon {
        let addr: SocketAddr = format!("127.0.0.1:{}", broker::free_port())
            .parse()
            .unwrap();
        let child = facegate(data, &["--config", config.to_str().unwrap(), "serve"])
            .env("FACEGATE_LISTEN", addr.to_string())
            .env("FACEGATE_MQTT_URL", format!("mqtt://127.0.0.1:{mqtt_port}"))
            .env("FACEGATE_DEVICE_ID", device)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child, addr };
        let start = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("facegate serve exited: {status}");
            }
            assert!(start.elapsed() < WAIT, "facegate serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn client(&self, token: &str) -> Client {
        Client {
            addr: self.addr,
            token: token.to_string(),
            prefix: "/risetai/face-api".into(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn identifies(c: &Client, gallery: &str, photo_name: &str, user: &str) -> bool {
    let r = c.identify(gallery, &photo(photo_name));
    r.status() == 200 && r.body()["return"][0]["user_id"] == user
}

#[test]
fn an_enrollment_at_one_daemon_is_identified_at_the_other_and_a_central_push_reaches_both() {
    let port = match std::env::var("FACEGATE_TEST_MQTT_PORT") {
        Ok(p) => p.parse().unwrap(),
        Err(_) => broker::start_broker(),
    };
    let tag = format!("{}", std::process::id());
    let prefix = format!("fgd-{tag}");
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("facegate.toml");
    std::fs::write(&config, format!("[sync]\ntopic_prefix = \"{prefix}\"\n")).unwrap();
    let (data_a, data_b) = (work.path().join("a"), work.path().join("b"));
    let token_a = add_client(&data_a, "acme");
    let token_b = add_client(&data_b, "acme");
    let a = Daemon::start(&data_a, &config, port, &format!("door-a-{tag}"));
    let b = Daemon::start(&data_b, &config, port, &format!("door-b-{tag}"));
    let (ca, cb) = (a.client(&token_a), b.client(&token_b));

    // Both connected and subscribed: a gallery created at A appears at B.
    assert_eq!(ca.create_gallery("door").status(), 200);
    wait_for("gallery at B", || {
        cb.post(
            "facegallery/list-faces",
            serde_json::json!({"facegallery_id": "door"}),
        )
        .status()
            == 200
    });
    assert_eq!(
        ca.enroll("door", "amy", "Amy", &photo("amy1.png")).status(),
        200
    );
    wait_for("amy identified at B", || {
        identifies(&cb, "door", "amy2.png", "amy")
    });

    // The central server pushes a user (embedding and crop) to every device.
    let face = pipeline()
        .analyze_bytes(&fixture("penny1.png"), FaceSelection::Largest)
        .unwrap()
        .remove(0);
    let mut crop = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut crop, 95)
        .encode_image(&face.aligned)
        .unwrap();
    let op = Op {
        v: 1,
        op_id: format!("central-penny-{tag}"),
        origin: "central".into(),
        version: 1,
        ts: 1,
        client: "acme".into(),
        gallery: "door".into(),
        model: pipeline().fingerprint().into(),
        kind: OpKind::UpsertUser {
            user_id: "penny".into(),
            user_name: "Penny".into(),
            templates: vec![WireTemplate {
                embedding: encode_embedding(&face.embedding.0),
                crop: Some(base64::engine::general_purpose::STANDARD.encode(&crop)),
                crop_points: None,
                masked: false,
            }],
        },
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut options = MqttOptions::new(format!("central-{tag}"), "127.0.0.1", port);
        options.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        client
            .publish(
                format!("{prefix}/ops/acme"),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&op).unwrap(),
            )
            .await
            .unwrap();
        // Until the broker acknowledged the publish.
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < WAIT, "no PUBACK from the broker");
            if let Ok(rumqttc::Event::Incoming(rumqttc::Incoming::PubAck(_))) =
                eventloop.poll().await
            {
                break;
            }
        }
    });
    wait_for("penny identified at A", || {
        identifies(&ca, "door", "penny2.png", "penny")
    });
    wait_for("penny identified at B", || {
        identifies(&cb, "door", "penny2.png", "penny")
    });
    assert_eq!(ca.list_faces("door"), ["amy", "penny"]);
    assert_eq!(cb.list_faces("door"), ["amy", "penny"]);

    // /metrics carries the links' counters: A published its gallery and enrollment, B
    // applied them and the central push.
    let counter = |daemon: &Daemon, name: &str| -> f64 {
        let text = http(daemon.addr, "GET", "/metrics", &[], b"").raw;
        let text = text.as_str().expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(counter(&a, "facegate_sync_connected"), 1.0);
    assert_eq!(counter(&b, "facegate_sync_connected"), 1.0);
    assert!(counter(&a, "facegate_sync_published_total") >= 2.0);
    assert!(counter(&b, "facegate_sync_applied_total") >= 3.0);
    assert!(counter(&b, "facegate_sync_received_total") >= 3.0);

    // Exports of both devices (taken while they run) hold the same users and embeddings,
    // and importing one into a new device gives the same gallery again.
    let export_a = export(&data_a, &config, &work.path().join("a.fgx"));
    let export_b = export(&data_b, &config, &work.path().join("b.fgx"));
    assert_eq!(export_a.len(), 2);
    assert_eq!(export_a, export_b);
    let data_c = work.path().join("c");
    add_client(&data_c, "acme");
    let out = facegate(&data_c, &["gallery", "import"])
        .arg(work.path().join("a.fgx"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        export(&data_c, &config, &work.path().join("c.fgx")),
        export_a
    );
}

/// (user id, name, embeddings) of gallery acme/door, from `facegate gallery export`.
fn export(data: &Path, config: &Path, file: &Path) -> Vec<(String, String, Vec<String>)> {
    let out = facegate(
        data,
        &[
            "--config",
            config.to_str().unwrap(),
            "gallery",
            "export",
            "--client",
            "acme",
            "--gallery",
            "door",
        ],
    )
    .arg(file)
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = std::io::BufReader::new(std::fs::File::open(file).unwrap());
    let (header, ops) = facegate::gallery::read_export(reader).unwrap();
    // create_gallery, one upsert_user per user, and last the gallery_state.
    assert_eq!(header.users, ops.len() - 2);
    assert!(matches!(
        ops.last().map(|op| &op.kind),
        Some(OpKind::GalleryState { users }) if users.len() == header.users
    ));
    ops.into_iter()
        .filter_map(|op| match op.kind {
            OpKind::UpsertUser {
                user_id,
                user_name,
                templates,
            } => Some((
                user_id,
                user_name,
                templates.into_iter().map(|t| t.embedding).collect(),
            )),
            _ => None,
        })
        .collect()
}
