//! The central side of sync, end to end with the real binary, a real broker (rumqttd
//! in-process, or `FACEGATE_TEST_MQTT_PORT`), real stores and models:
//! `facegate push --photos`, snapshots (`facegate push --serve-snapshots` and
//! `facegate sync request-snapshot`), the bounded memory of op ids, and a daemon that
//! the broker refuses (logged, counted on /metrics, the API still serving). Snapshots
//! and pushes that remove users (`gallery_state`): sync_gallery_state.rs.

#[path = "sync_support/broker.rs"]
mod broker;
#[path = "sync_support/central.rs"]
mod central;
#[path = "sync_support/device.rs"]
mod device;
#[path = "common/models.rs"]
mod models;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use central::{expected, fixture, photo_folder, Scene, BIN};
use device::{open_gallery, open_gallery_with_clock, tag, wait_for, Device, CLIENT, WAIT};
use facegate::gallery::{read_export, Applied, ManualClock, OpKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facegate_push_from_a_folder_of_photos_reaches_a_device_and_skips_photos_without_a_face() {
    let scene = Scene::new("fgc");
    let device = Device::start(scene.device_options("door"));
    wait_for("device subscribed", || device.metrics().subscribed).await;
    let photos = photo_folder(scene.path());
    let export = scene.path().join("lobby.jsonl");
    let out = scene
        .central_command()
        .args(["push", "--photos"])
        .arg(&photos)
        .args(["--client", CLIENT, "--gallery", "lobby", "--export-to"])
        .arg(&export)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "push failed: {stderr}");
    assert!(
        stderr.contains("white.png: skipped (no face found)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nobody: skipped (no usable photo)"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pushed 3 operation(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_for("pushed users at the device", || {
        device.users("lobby") == expected()
    })
    .await;
    // The templates are the photos' faces: the device identifies Amy from another photo.
    let bytes = std::fs::read(fixture("amy2.png")).unwrap();
    let found = device.gallery.identify(CLIENT, "lobby", &bytes).unwrap();
    assert_eq!(found.expect("a match").user_id, "amy");
    // The export file holds the same operations, and ends with the gallery's state
    // (not pushed without --replace).
    let (header, ops) = read_export(BufReader::new(std::fs::File::open(&export).unwrap())).unwrap();
    assert_eq!((header.users, ops.len()), (2, 4));
    assert!(matches!(
        &ops[3].kind,
        OpKind::GalleryState { users } if users.len() == 2
    ));
    device.stop().await;

    // A folder without any face pushes nothing and says so.
    let empty = scene.path().join("empty");
    std::fs::create_dir_all(empty.join("nobody")).unwrap();
    std::fs::copy(fixture("white.png"), empty.join("nobody/white.png")).unwrap();
    let out = scene
        .central_command()
        .args(["push", "--photos"])
        .arg(&empty)
        .args(["--client", CLIENT, "--gallery", "lobby"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to push"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_a_fresh_data_dir_converges_after_a_snapshot_request() {
    let scene = Scene::new("fgs");
    // The central publishes the gallery while no device listens: nobody gets it.
    let export = scene.path().join("lobby.jsonl");
    scene.push_photos(&photo_folder(scene.path()), &export);

    let device = Device::start(scene.device_options("door"));
    wait_for("device subscribed", || device.metrics().subscribed).await;
    assert!(!device.has_gallery("lobby"), "the device missed the push");
    // Made here after the export: newer than the snapshot's Sheldon, which must not
    // overwrite it.
    device.gallery.create_gallery(CLIENT, "lobby").unwrap();
    device.enroll_photo(
        "lobby",
        "sheldon",
        "Sheldon (enrolled here)",
        &fixture("sheldon3.png"),
    );
    let mut expected = expected();
    expected.insert("sheldon".into(), ("Sheldon (enrolled here)".into(), 1));

    let _server = scene.serve_snapshots(&export);
    let request = || scene.request_snapshot(&scene.device_id("door"), "lobby");
    request();
    wait_for("device converged from the snapshot", || {
        device.users("lobby") == expected
    })
    .await;
    // Amy and the gallery state (which lists Sheldon: nothing removed) applied; the
    // gallery creation and Sheldon are older than the local state.
    wait_for("whole snapshot handled", || {
        device.metrics().applied + device.metrics().stale == 4
    })
    .await;
    assert_eq!((device.metrics().applied, device.metrics().stale), (2, 2));

    // Asking again changes nothing: the same operations are duplicates.
    request();
    wait_for("second snapshot handled", || {
        device.metrics().duplicates == 4
    })
    .await;
    assert_eq!(device.users("lobby"), expected);
    assert_eq!(device.metrics().applied, 2);
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_received_anything_asks_for_snapshots_by_itself() {
    let scene = Scene::new("fga");
    let export = scene.path().join("lobby.jsonl");
    scene.push_photos(&photo_folder(scene.path()), &export);
    let _server = scene.serve_snapshots(&export);

    let mut options = scene.device_options("door");
    options.snapshot_when_empty = true;
    let device = Device::start(options);
    wait_for("device converged without being told", || {
        device.users("lobby") == expected()
    })
    .await;
    device.stop().await;
}

#[test]
fn remembered_op_ids_are_forgotten_after_the_retention_and_a_redelivery_stays_stale() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_at(1_800_000_000_000));
    let gallery = open_gallery_with_clock(dir.path(), "door", clock.clone());
    let op = create_gallery_op("op-1");
    assert_eq!(gallery.apply_op(&op).unwrap(), Applied::Applied);
    assert_eq!(gallery.apply_op(&op).unwrap(), Applied::Duplicate);
    assert_eq!(gallery.seen_len().unwrap(), 1);
    // A day's retention keeps it for a day, to the millisecond.
    let day = Duration::from_secs(86_400);
    clock.advance(day - Duration::from_millis(1));
    assert_eq!(gallery.prune_seen(day).unwrap(), 0);
    clock.advance(Duration::from_millis(2));
    assert_eq!(gallery.prune_seen(day).unwrap(), 1);
    assert_eq!(gallery.seen_len().unwrap(), 0);
    // Forgotten, yet not applied twice: its version is not newer than the stored one.
    assert_eq!(gallery.apply_op(&op).unwrap(), Applied::Stale);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_forgets_op_ids_older_than_the_retention_when_it_starts() {
    let scene = Scene::new("fgr");
    let clock = Arc::new(ManualClock::starting_at(1_800_000_000_000));
    let gallery = open_gallery_with_clock(scene.path(), "door", clock.clone());
    for i in 0..3 {
        let mut op = create_gallery_op(&format!("op-{i}"));
        op.gallery = format!("g{i}");
        assert_eq!(gallery.apply_op(&op).unwrap(), Applied::Applied);
    }
    // Seen two hours ago, kept for one.
    clock.advance(Duration::from_secs(2 * 3600));
    let mut options = scene.device_options("door");
    options.seen_retention = Some(Duration::from_secs(3600));
    let sync = facegate::sync::start(gallery.clone(), options);
    wait_for("op ids pruned at start", || {
        sync.metrics().snapshot().seen_pruned == 3
    })
    .await;
    assert_eq!(gallery.seen_len().unwrap(), 0);
    sync.stop(Duration::from_secs(5)).await;
}

#[test]
fn an_operation_for_a_client_unknown_on_this_device_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = open_gallery(dir.path(), "door");
    let mut op = create_gallery_op("op-other-client");
    op.client = "globex".into();
    assert!(matches!(
        gallery.apply_op(&op).unwrap(),
        Applied::Refused(facegate::gallery::Refusal::UnknownClient(c)) if c == "globex"
    ));
    assert!(gallery.galleries(CLIENT).unwrap().is_empty());
    // Reported back: one `refused` event waits in the outbox.
    assert_eq!(gallery.outbox_len().unwrap(), 1);
}

fn create_gallery_op(op_id: &str) -> facegate::gallery::Op {
    facegate::gallery::Op {
        v: facegate::gallery::PROTOCOL_VERSION,
        op_id: op_id.into(),
        origin: "central".into(),
        version: 5,
        ts: 1,
        client: CLIENT.into(),
        gallery: "lobby".into(),
        model: "m".into(),
        kind: facegate::gallery::OpKind::CreateGallery,
    }
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|b| b.1).unwrap_or("");
    (status, body.to_string())
}

#[test]
fn a_daemon_with_a_wrong_broker_password_logs_why_and_keeps_serving_the_api() {
    let port = broker::start_broker_with(&broker::BrokerOptions {
        tls: None,
        auth: Some(HashMap::from([("door".to_string(), "s3cret".to_string())])),
    });
    let t = tag();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("door.toml");
    std::fs::write(
        &config,
        format!("[sync]\ntopic_prefix = \"fgp-{t}\"\nusername = \"door\"\npassword = \"nope\"\n"),
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", broker::free_port());
    let mut child = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FACEGATE_MQTT_URL", format!("mqtt://127.0.0.1:{port}"))
        .env("FACEGATE_DEVICE_ID", format!("door-{t}"))
        .env("FACEGATE_DATA_DIR", work.path().join("data"))
        .env("FACEGATE_LISTEN", &listen)
        .env("FACEGATE_LOG", "info")
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut log = Vec::new();
    while !log
        .iter()
        .any(|l: &String| l.contains("check [sync] username and password"))
    {
        assert!(
            start.elapsed() < WAIT,
            "no clear error logged:\n{}",
            log.join("\n")
        );
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            log.push(line);
        }
    }
    // The API still serves, and /metrics shows the link down with failed attempts.
    let (status, _) = http_get(&listen, "/healthz");
    assert_eq!(status, 200);
    let (status, metrics) = http_get(&listen, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nfacegate_sync_connected 0\n"),
        "{metrics}"
    );
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("facegate_sync_connection_errors_total "))
        .expect("connection errors on /metrics")
        .parse()
        .unwrap();
    assert!(errors >= 1);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}
