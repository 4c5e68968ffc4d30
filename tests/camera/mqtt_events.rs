//! Recognition results as device events over a real MQTT broker (rumqttd in-process on
//! a free loopback port, or the broker on `FACEGATE_TEST_MQTT_PORT`): a `facegate serve`
//! daemon with the `dir:` camera source and sync on publishes one `recognized` event
//! per visit on its events topic; a subscriber receives them, and a second device that
//! receives them too leaves its gallery unchanged (ignored, not rejected or refused).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use facegate::gallery::{Gallery, Settings};
use facegate::store::Store;
use facegate::sync::{SyncHandle, SyncOptions};
use serde_json::Value;

use super::sequence::{scene, write_frames, VISITORS};
use super::subscriber::Subscriber;
use super::support::{default_config, pipeline, Enrolled, CLIENT, GALLERY};

#[path = "../sync_support/broker.rs"]
mod broker;

const BIN: &str = env!("CARGO_BIN_EXE_facegate");
const WAIT: Duration = Duration::from_secs(120);

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `facegate serve` on a data folder and config file, with sync on; stopped on drop.
struct Daemon(Child);

impl Daemon {
    fn start(data: &Path, config: &Path, mqtt_port: u16, device: &str) -> Daemon {
        let addr: SocketAddr = format!("127.0.0.1:{}", broker::free_port())
            .parse()
            .unwrap();
        let child = Command::new(BIN)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("FACEGATE_DATA_DIR", data)
            .env("FACEGATE_LOG", "warn")
            .env("FACEGATE_LISTEN", addr.to_string())
            .env("FACEGATE_MQTT_URL", format!("mqtt://127.0.0.1:{mqtt_port}"))
            .env("FACEGATE_DEVICE_ID", device)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut daemon = Daemon(child);
        wait_for("facegate serve listening", || {
            if let Ok(Some(status)) = daemon.0.try_wait() {
                panic!("facegate serve exited: {status}");
            }
            std::net::TcpStream::connect(addr).is_ok()
        });
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// A second device (in-process gallery and sync link) that knows the same client and
/// gallery, so that it would apply the events if they were gallery operations.
fn second_device(
    runtime: &tokio::runtime::Runtime,
    port: u16,
    prefix: &str,
    device: &str,
) -> (Arc<Gallery>, SyncHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = default_config();
    config.store.data_dir = dir.path().join("data");
    config.store.map_size_mb = 4;
    config.sync.url = format!("mqtt://127.0.0.1:{port}");
    config.sync.device_id = device.into();
    config.sync.topic_prefix = prefix.into();
    let store = Arc::new(Store::open(&config.store.data_dir, 4).unwrap());
    let gallery =
        Arc::new(Gallery::open(store, pipeline(), Settings::from_config(&config)).unwrap());
    gallery.accounts().add_client(CLIENT, None).unwrap();
    gallery.create_gallery(CLIENT, GALLERY).unwrap();
    let options = SyncOptions::from_config(&config).unwrap().unwrap();
    let _entered = runtime.enter();
    let handle = facegate::sync::start(gallery.clone(), options);
    (gallery, handle, dir)
}

#[test]
fn a_camera_daemon_publishes_recognized_events_that_another_device_ignores() {
    let port = match std::env::var("FACEGATE_TEST_MQTT_PORT") {
        Ok(p) => p.parse().unwrap(),
        Err(_) => broker::start_broker(),
    };
    let tag = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let prefix = format!("fgcam-{tag}");
    let (door, other) = (format!("door-cam-{tag}"), format!("door-b-{tag}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Enrolled with sync off: the outbox holds only what the camera adds.
    let enrolled = Enrolled::new(|_| {});
    let work = enrolled.dir.path().to_path_buf();
    let data = enrolled.config.store.data_dir.clone();
    drop(enrolled.gallery);
    let frames = work.join("frames");
    write_frames(&scene(&VISITORS), &frames).unwrap();
    let config = work.join("facegate.toml");
    std::fs::write(
        &config,
        format!(
            "[camera]\nsource = \"dir:{}\"\ngallery = \"{CLIENT}/{GALLERY}\"\ndir_realtime = false\n\n[sync]\ntopic_prefix = \"{prefix}\"\n",
            frames.display()
        ),
    )
    .unwrap();

    let subscriber = Subscriber::start(
        &runtime,
        port,
        &format!("watcher-{tag}"),
        format!("{prefix}/devices/+/events"),
    );
    let (b, b_sync, _b_dir) = second_device(&runtime, port, &prefix, &other);
    wait_for("subscriptions", || {
        subscriber.subscribed.load(Ordering::SeqCst)
            && b_sync.metrics().subscribed.load(Ordering::SeqCst)
    });

    let _daemon = Daemon::start(&data, &config, port, &door);
    wait_for("four recognized events", || {
        subscriber.with_op("recognized").len() >= 4
    });
    let events = subscriber.with_op("recognized");
    let who: Vec<Value> = events.iter().map(|(_, e)| e["user_id"].clone()).collect();
    assert_eq!(
        who,
        [
            Value::from("amy"),
            Value::from("sheldon"),
            Value::Null,
            Value::from("penny")
        ],
        "one event per visit, in order; the stranger as null"
    );
    for (topic, e) in &events {
        assert_eq!(topic, &format!("{prefix}/devices/{door}/events"));
        assert_eq!(e["v"], 1);
        assert_eq!(e["origin"], door.as_str());
        assert_eq!(
            (e["client"].as_str(), e["gallery"].as_str()),
            (Some(CLIENT), Some(GALLERY))
        );
        assert!(!e["op_id"].as_str().unwrap().is_empty());
        assert_eq!(e["mask"], false);
        let version = e["version"].as_u64().unwrap();
        assert_eq!(e["ts"].as_u64().unwrap(), version / 1000, "{e}");
        let similarity = e["similarity"].as_f64().unwrap();
        if e["user_id"].is_null() {
            assert!(e["user_name"].is_null());
            assert!(similarity < 0.75, "{e}");
        } else {
            assert!(similarity >= 0.75, "{e}");
        }
        let face = base64::engine::general_purpose::STANDARD
            .decode(e["face_jpeg"].as_str().expect("face_jpeg"))
            .unwrap();
        assert!(face.starts_with(&[0xFF, 0xD8]), "a JPEG face");
        assert!(face.len() <= facegate::gallery::MAX_EVENT_FACE_BYTES);
    }
    assert_eq!(events[0].1["user_name"], "Amy Farrah Fowler");

    // The other device received them (subscribed to peer events) and ignored them.
    wait_for("the second device saw the events", || {
        b_sync.metrics().snapshot().ignored >= 4
    });
    let m = b_sync.metrics().snapshot();
    assert_eq!((m.applied, m.rejected, m.refused), (0, 0, 0), "{m:?}");
    let (users, galleries, visits) = b
        .read_store(|r| {
            Ok::<_, facegate::store::Error>((
                r.users(CLIENT, GALLERY)?,
                r.galleries(CLIENT)?,
                r.visits_len()?,
            ))
        })
        .unwrap();
    assert!(users.is_empty(), "no user appeared: {users:?}");
    assert_eq!(galleries, [GALLERY.to_string()]);
    assert_eq!(visits, 0, "events are not visits of this device");
    assert!(
        subscriber.with_op("refused").is_empty(),
        "nobody refused the events"
    );
    runtime.block_on(b_sync.stop(Duration::from_secs(3)));
}
