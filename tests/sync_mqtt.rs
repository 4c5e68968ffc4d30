//! Fleet sync against a real MQTT broker (rumqttd in-process on a free loopback port),
//! real LMDB stores in temp dirs and the real recognition pipeline. No mocks; waits poll
//! for a condition with a generous bound instead of sleeping a fixed time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use facegate::gallery::{encode_embedding, Applied, Gallery, Op, OpKind, WireTemplate};
use facegate::store::Store;
use facegate::sync::{SyncHandle, SyncOptions};
use facegate::vision::{Face, FaceSelection};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

#[path = "sync_support/broker.rs"]
mod broker;
#[path = "sync_support/device.rs"]
mod device;
#[path = "common/models.rs"]
mod models;
#[path = "common/real_models.rs"]
mod real_models;
use broker::{free_port, start_broker};
use models::pipeline;

const CLIENT: &str = "acme";
const GALLERY: &str = "lobby";
const WAIT: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vision")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn face(name: &str) -> Face {
    pipeline()
        .analyze_bytes(&fixture(name), FaceSelection::Largest)
        .unwrap()
        .remove(0)
}

/// Waits until `condition` holds, polling; panics with `what` after [`WAIT`].
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `progress()` reaches `target`; panics with `what` only when it stops
/// moving for [`WAIT`]. For bulk transfers (a thousand operations, each its own LMDB
/// commit) whose total time depends on how loaded the machine is, but which must never
/// stall.
async fn wait_for_count(what: &str, target: usize, mut progress: impl FnMut() -> usize) {
    let mut last = progress();
    let mut since = Instant::now();
    while last != target {
        assert!(
            since.elapsed() < WAIT,
            "stalled waiting for: {what} ({last} of {target})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = progress();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// The broker of one test, and names unique to that test (so that tests can share an
/// external broker: topic prefix, device and MQTT client ids).
struct Net {
    port: u16,
    prefix: String,
    tag: String,
}

impl Net {
    /// `FACEGATE_TEST_MQTT_PORT` set: the broker already listening on that loopback port
    /// (mosquitto in CI); otherwise a new in-process rumqttd.
    fn start() -> Net {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let port = match std::env::var("FACEGATE_TEST_MQTT_PORT") {
            Ok(p) => p.parse().expect("FACEGATE_TEST_MQTT_PORT"),
            Err(_) => start_broker(),
        };
        let tag = format!(
            "-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        Net {
            port,
            prefix: format!("fg{tag}"),
            tag,
        }
    }

    fn id(&self, name: &str) -> String {
        format!("{name}{}", self.tag)
    }

    fn topic(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }
}

/// A TCP relay in front of the broker that can cut the link (closing every connection
/// and refusing new ones) and restore it: the broker is unreachable for the device.
struct Link {
    port: u16,
    up: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    fn new(broker: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let live = Arc::new(Mutex::new(Vec::new()));
        let (up2, live2) = (up.clone(), live.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                if !up2.load(Ordering::SeqCst) {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", broker)) else {
                    continue;
                };
                let mut live = live2.lock().unwrap();
                live.push(inbound.try_clone().unwrap());
                live.push(outbound.try_clone().unwrap());
                pipe(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                pipe(outbound, inbound);
            }
        });
        Link { port, up, live }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

struct Device {
    gallery: Arc<Gallery>,
    sync: Option<SyncHandle>,
    _dir: Option<tempfile::TempDir>,
}

impl Device {
    fn open(net: &Net, name: &str, port: u16) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let mut device = Device::open_at(&net.id(name), port, dir.path(), &net.prefix);
        device._dir = Some(dir);
        device
    }

    /// [`Device::open`] with its own `pipeline` (a door on another model).
    fn open_on(
        net: &Net,
        name: &str,
        port: u16,
        pipeline: Arc<facegate::vision::Pipeline>,
    ) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let id = net.id(name);
        let clock = Arc::new(facegate::gallery::SystemClock);
        let gallery = device::open_gallery_on(dir.path(), &id, clock, pipeline);
        let mut device = Device::linked(gallery, &id, port, &net.prefix);
        device._dir = Some(dir);
        device
    }

    fn open_at(id: &str, port: u16, path: &Path, prefix: &str) -> Device {
        Device::linked(device::open_gallery(path, id), id, port, prefix)
    }

    fn linked(gallery: Arc<Gallery>, id: &str, port: u16, prefix: &str) -> Device {
        let options = SyncOptions {
            host: "127.0.0.1".into(),
            port,
            device_id: id.into(),
            topic_prefix: prefix.into(),
            username: String::new(),
            password: String::new(),
            reconnect_delay: Duration::from_millis(200),
            tls: None,
            seen_retention: None,
            snapshot_when_empty: false,
        };
        let sync = Some(facegate::sync::start(gallery.clone(), options));
        Device {
            gallery,
            sync,
            _dir: None,
        }
    }

    fn metrics(&self) -> facegate::sync::MetricsSnapshot {
        self.sync.as_ref().unwrap().metrics().snapshot()
    }

    fn outbox(&self) -> u64 {
        self.gallery.outbox_len().unwrap()
    }

    /// user id -> (name, embeddings) of the test gallery.
    fn contents(&self) -> BTreeMap<String, (String, Vec<Vec<f32>>)> {
        self.gallery
            .read_store(|r| {
                let mut out = BTreeMap::new();
                if r.gallery(CLIENT, GALLERY)?.is_none() {
                    return Ok::<_, facegate::store::Error>(out);
                }
                for (id, user) in r.users(CLIENT, GALLERY)? {
                    let templates = r
                        .templates_of(CLIENT, GALLERY, &id)?
                        .into_iter()
                        .map(|(_, t)| t.embedding)
                        .collect();
                    out.insert(id, (user.user_name, templates));
                }
                Ok(out)
            })
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(sync) = self.sync.take() {
            sync.stop(Duration::from_secs(5)).await;
        }
    }
}

/// (topic, payload) of every message received.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A raw MQTT subscriber (persistent session) counting what arrives on `filter`.
struct Consumer {
    received: Received,
    ready: Arc<AtomicBool>,
}

impl Consumer {
    async fn start(port: u16, id: &str, filter: &str) -> Consumer {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let received = Arc::new(Mutex::new(Vec::new()));
        let ready = Arc::new(AtomicBool::new(false));
        let (r, ready2, filter) = (received.clone(), ready.clone(), filter.to_string());
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        ready2.store(true, Ordering::SeqCst)
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        r.lock()
                            .unwrap()
                            .push((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        let c = Consumer { received, ready };
        let ready = c.ready.clone();
        wait_for("consumer subscribed", || ready.load(Ordering::SeqCst)).await;
        c
    }

    fn ops(&self) -> Vec<Op> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, p)| serde_json::from_slice(p).ok())
            .collect()
    }

    fn payloads(&self) -> Vec<Vec<u8>> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| p.clone())
            .collect()
    }
}

async fn publisher(port: u16, id: &str) -> AsyncClient {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    client
}

fn central_upsert(user_id: &str, model: &str, face: &Face, crop: bool, version: u64) -> Op {
    Op {
        v: 1,
        op_id: format!("central-{user_id}-{version}-{model}-{crop}"),
        origin: "central".into(),
        version,
        ts: 1,
        client: CLIENT.into(),
        gallery: GALLERY.into(),
        model: model.into(),
        kind: OpKind::UpsertUser {
            user_id: user_id.into(),
            user_name: format!("name of {user_id}"),
            templates: vec![WireTemplate {
                embedding: encode_embedding(&face.embedding.0),
                crop: None,
                crop_points: None,
                masked: false,
            }],
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_at_one_device_is_identified_at_the_other_and_not_echoed() {
    let net = Net::start();
    let port = net.port;
    let a = Device::open(&net, "door-a", port);
    let b = Device::open(&net, "door-b", port);
    wait_for("both connected", || {
        a.metrics().subscribed && b.metrics().subscribed
    })
    .await;

    a.gallery.create_gallery(CLIENT, GALLERY).unwrap();
    let amy = face("amy1.png");
    a.gallery
        .enroll_face(CLIENT, GALLERY, "amy", "Amy", &amy)
        .unwrap();
    wait_for("amy at door-b", || b.contents().contains_key("amy")).await;

    let probe = face("amy2.png");
    let found = b
        .gallery
        .search_index(CLIENT, GALLERY, &probe.embedding.0, 1)
        .unwrap()
        .into_iter()
        .next();
    assert_eq!(
        found.map(|m| m.user_id.to_string()),
        Some("amy".to_string())
    );
    assert_eq!(a.contents(), b.contents());
    wait_for("door-a outbox drained", || a.outbox() == 0).await;
    // door-b applied two operations and wrote nothing of its own: no echo.
    assert_eq!(b.metrics().applied, 2);
    assert_eq!(b.outbox(), 0);
    assert_eq!(a.metrics().applied, 0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_on_another_crop_identifies_whom_a_shipped_model_door_enrolled() {
    // A fleet mid-switch: door-a still on the shipped model, door-b on an embedder that
    // cuts another chip from the same 150x150 input. Amy enrolled at door-a reaches
    // door-b through the broker with her crop and its face points, and door-b cuts its
    // own chip from them.
    let net = Net::start();
    let models = real_models::arcface_template_models();
    let own = Arc::new(
        real_models::load_models_in(models.path(), real_models::SHIPPED_EMBEDDER, None).unwrap(),
    );
    assert_ne!(own.fingerprint(), pipeline().fingerprint());
    let a = Device::open(&net, "door-a", net.port);
    let b = Device::open_on(&net, "door-b", net.port, own.clone());
    wait_for("both connected", || {
        a.metrics().subscribed && b.metrics().subscribed
    })
    .await;

    a.gallery.create_gallery(CLIENT, GALLERY).unwrap();
    a.gallery
        .enroll(
            CLIENT,
            &facegate::gallery::EnrollRequest {
                gallery: GALLERY,
                user_id: "amy",
                user_name: "Amy",
                image: &fixture("amy1.png"),
                force: true,
            },
        )
        .unwrap();
    wait_for("amy at door-b", || b.contents().contains_key("amy")).await;
    let points = |d: &Device| {
        d.gallery
            .read_store(|r| r.templates_of(CLIENT, GALLERY, "amy"))
            .unwrap()[0]
            .1
            .crop_points
    };
    assert!(points(&a).is_some());
    assert_eq!(
        points(&b),
        points(&a),
        "stored with the points it came with"
    );
    let probe = own
        .analyze_bytes(&fixture("amy2.png"), FaceSelection::Largest)
        .unwrap()
        .remove(0)
        .embedding;
    let found = b
        .gallery
        .search_index(CLIENT, GALLERY, &probe.0, 1)
        .unwrap()
        .remove(0);
    assert_eq!(&*found.user_id, "amy");
    assert!(found.cosine > 0.95, "{}", found.cosine);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_made_while_the_broker_is_unreachable_arrive_once_after_it_returns() {
    let n: usize = std::env::var("FACEGATE_SYNC_TEST_ENROLLMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let net = Net::start();
    let port = net.port;
    let link = Link::new(port);
    let consumer = Consumer::start(
        port,
        &net.id("central-consumer"),
        &net.topic(&format!("devices/{}/events", net.id("door-a"))),
    )
    .await;
    let a = Device::open(&net, "door-a", link.port);
    let b = Device::open(&net, "door-b", port);
    wait_for("both connected", || {
        a.metrics().subscribed && b.metrics().subscribed
    })
    .await;
    a.gallery.create_gallery(CLIENT, GALLERY).unwrap();
    let amy = face("amy1.png");

    link.cut();
    wait_for("door-a sees the link down", || !a.metrics().connected).await;
    for i in 0..n {
        a.gallery
            .enroll_face(CLIENT, GALLERY, &format!("user-{i:04}"), "Someone", &amy)
            .unwrap();
        if i == n / 2 {
            // The local API keeps working; the outbox holds what was not acknowledged.
            assert!(a.outbox() as usize > i);
        }
    }
    assert!(a.outbox() as usize >= n);
    link.restore();

    wait_for_count("door-a outbox drained", 0, || a.outbox() as usize).await;
    wait_for_count("every event at the consumer", n + 1, || {
        let mut ids: Vec<String> = consumer.ops().into_iter().map(|o| o.op_id).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    })
    .await;
    wait_for_count("door-b has everyone", n, || b.contents().len()).await;

    let ops = consumer.ops();
    let mut ids: Vec<&str> = ops.iter().map(|o| o.op_id.as_str()).collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    eprintln!(
        "events: {} distinct, {} received (QoS 1 redeliveries: {})",
        ids.len(),
        total,
        total - ids.len()
    );
    assert_eq!(ids.len(), n + 1);
    // Events arrive in the order they were made (the outbox drains oldest first).
    let users: Vec<String> = ops
        .iter()
        .filter_map(|o| match &o.kind {
            OpKind::UpsertUser { user_id, .. } => Some(user_id.clone()),
            _ => None,
        })
        .collect();
    let mut first_seen: Vec<&String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for u in &users {
        if seen.insert(u) {
            first_seen.push(u);
        }
    }
    assert!(
        first_seen.windows(2).all(|w| w[0] < w[1]),
        "an event arrived before an older one"
    );

    // No operation applied twice: door-b applied each distinct op once.
    wait_for("door-b applied all", || {
        b.metrics().applied as usize == n + 1
    })
    .await;
    let m = b.metrics();
    assert_eq!(m.applied as usize, n + 1);
    assert_eq!(a.contents(), b.contents());
    assert_eq!(b.outbox(), 0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retained_status_is_online_while_connected_and_offline_when_the_link_drops() {
    let net = Net::start();
    let port = net.port;
    let link = Link::new(port);
    let a = Device::open(&net, "door-s", link.port);
    wait_for("connected", || a.metrics().subscribed).await;
    let status = net.topic(&format!("devices/{}/status", net.id("door-s")));
    let watcher = Consumer::start(port, &net.id("status-watch-1"), &status).await;
    wait_for("online", || {
        watcher.payloads().last().map(|p| p.as_slice()) == Some(br#"{"state":"online"}"#.as_slice())
    })
    .await;
    link.cut();
    wait_for("offline (last will)", || {
        watcher.payloads().last().map(|p| p.as_slice())
            == Some(br#"{"state":"offline"}"#.as_slice())
    })
    .await;
    link.restore();
    wait_for("online again", || {
        watcher.payloads().last().map(|p| p.as_slice()) == Some(br#"{"state":"online"}"#.as_slice())
    })
    .await;
    // Retained: a subscriber that comes later gets it too.
    let late = Consumer::start(port, &net.id("status-watch-2"), &status).await;
    wait_for("late subscriber sees online", || {
        !late.payloads().is_empty()
    })
    .await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_are_rejected_counted_and_the_device_keeps_applying() {
    let net = Net::start();
    let port = net.port;
    let a = Device::open(&net, "door-h", port);
    wait_for("connected", || a.metrics().subscribed).await;
    let central = publisher(port, &net.id("central")).await;
    let ops = net.topic(&format!("ops/{CLIENT}"));
    let amy = face("amy1.png");
    let fingerprint = pipeline().fingerprint().to_string();

    central
        .publish(&ops, QoS::AtLeastOnce, false, b"{not json".to_vec())
        .await
        .unwrap();
    let mut unknown =
        serde_json::to_value(central_upsert("x", &fingerprint, &amy, false, 1)).unwrap();
    unknown["op"] = "format_disk".into();
    central
        .publish(
            &ops,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&unknown).unwrap(),
        )
        .await
        .unwrap();
    central
        .publish(&ops, QoS::AtLeastOnce, false, vec![b' '; 2 << 20])
        .await
        .unwrap();
    let mut other = central_upsert("x", &fingerprint, &amy, false, 2);
    other.client = "someone-else".into();
    central
        .publish(
            &ops,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&other).unwrap(),
        )
        .await
        .unwrap();
    // Another model and no crop: refused, reported as an event.
    let foreign = central_upsert("mallory", "another-model", &amy, false, 3);
    central
        .publish(
            &ops,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&foreign).unwrap(),
        )
        .await
        .unwrap();
    let good = central_upsert("amy", &fingerprint, &amy, false, 4);
    central
        .publish(
            &ops,
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&good).unwrap(),
        )
        .await
        .unwrap();

    wait_for("amy applied", || a.contents().contains_key("amy")).await;
    wait_for("all counted", || {
        let m = a.metrics();
        m.rejected == 4 && m.refused == 1
    })
    .await;
    assert!(!a.contents().contains_key("mallory"));
    assert!(!a.contents().contains_key("x"));
    a.stop().await;
}

/// The crop-carrying operation waits for the device's one inference session (held by
/// the test, as a long camera frame would hold it) while the device enrolls someone:
/// the enrollment's event must reach the broker meanwhile, and the operation is applied
/// and acknowledged once the session is free, however many times its wait for a
/// session timed out meanwhile (never refused for a busy kiosk). A link that applied
/// operations inside its event loop published nothing until the operation gave up,
/// and then refused it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_keeps_publishing_while_an_operation_waits_for_an_inference_session() {
    use facegate::runtime::Runtime;
    use facegate::vision::{AdmissionLimits, Pipeline};
    let net = Net::start();
    let config = models::default_config();
    let runtime = Runtime::locate_and_load(config.runtime_library()).expect("LiteRT");
    let mut options = config.pipeline_options();
    options.workers = 1;
    options.idle_request_threads = 1;
    options.admission = AdmissionLimits {
        queue: 4,
        timeout: Duration::from_millis(300),
    };
    let own_pipeline = Arc::new(Pipeline::load(&runtime, options).expect("models"));
    let dir = tempfile::tempdir().unwrap();
    let id = net.id("door-busy");
    let store = Arc::new(Store::open(dir.path(), 4).unwrap());
    let settings = device::settings(&id, 100_000, true);
    let gallery = Arc::new(Gallery::open(store, own_pipeline.clone(), settings).unwrap());
    gallery.accounts().add_client(CLIENT, None).unwrap();
    gallery.create_gallery(CLIENT, GALLERY).unwrap();
    let sync = facegate::sync::start(
        gallery.clone(),
        SyncOptions {
            host: "127.0.0.1".into(),
            port: net.port,
            device_id: id.clone(),
            topic_prefix: net.prefix.clone(),
            username: String::new(),
            password: String::new(),
            reconnect_delay: Duration::from_millis(200),
            tls: None,
            seen_retention: None,
            snapshot_when_empty: false,
        },
    );
    let metrics = || sync.metrics().snapshot();
    wait_for("connected", || metrics().subscribed).await;
    wait_for("create event published", || {
        gallery.outbox_len().unwrap() == 0
    })
    .await;

    let held = own_pipeline.hold_session().unwrap();
    let amy = face("amy1.png");
    let mut foreign = central_upsert("u-crop", "another-model", &amy, true, 1);
    if let OpKind::UpsertUser { templates, .. } = &mut foreign.kind {
        templates[0].crop = Some(facegate_crop_jpeg(&amy));
    }
    let central = publisher(net.port, &net.id("central")).await;
    central
        .publish(
            net.topic(&format!("ops/{CLIENT}")),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&foreign).unwrap(),
        )
        .await
        .unwrap();
    wait_for("operation received", || metrics().received >= 1).await;

    gallery
        .enroll_face(CLIENT, GALLERY, "local", "Local", &face("sheldon1.png"))
        .unwrap();
    wait_for("local enrollment published", || {
        gallery.outbox_len().unwrap() == 0
    })
    .await;
    assert_eq!(
        metrics().applied,
        0,
        "the operation still waits for the session"
    );
    // Held past several of the 300 ms admission deadlines.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(metrics().applied + metrics().refused, 0, "{:?}", metrics());

    drop(held);
    wait_for("operation applied", || metrics().applied == 1).await;
    assert_eq!(metrics().refused, 0);
    let users: Vec<String> = gallery
        .list_faces(CLIENT, GALLERY)
        .unwrap()
        .into_iter()
        .map(|(user_id, _)| user_id)
        .collect();
    assert!(users.contains(&"u-crop".to_string()), "{users:?}");
    assert_eq!(metrics().connects, 1, "the link never dropped");
    sync.stop(Duration::from_secs(5)).await;
}

fn open_plain(dir: &Path) -> Gallery {
    let store = Arc::new(Store::open(dir, 4).unwrap());
    let g = Gallery::open(store, pipeline(), device::settings("door-x", 3, false)).unwrap();
    g.accounts().add_client(CLIENT, None).unwrap();
    g
}

#[test]
fn a_stale_operation_never_overwrites_a_newer_one_and_an_op_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let g = open_plain(dir.path());
    let fp = pipeline().fingerprint().to_string();
    let amy = face("amy1.png");
    let newer = central_upsert("u", &fp, &amy, false, 200);
    let mut older = central_upsert("u", &fp, &face("sheldon1.png"), false, 100);
    if let OpKind::UpsertUser { user_name, .. } = &mut older.kind {
        *user_name = "old name".into();
    }
    assert_eq!(g.apply_op(&newer).unwrap(), Applied::Applied);
    assert_eq!(g.apply_op(&newer).unwrap(), Applied::Duplicate);
    assert_eq!(g.apply_op(&older).unwrap(), Applied::Stale);
    let name = g
        .read_store(|r| r.user(CLIENT, GALLERY, "u"))
        .unwrap()
        .unwrap()
        .user_name;
    assert_eq!(name, "name of u");
    // Applied operations are not written to the outbox (no echo).
    assert_eq!(g.outbox_len().unwrap(), 0);
}

#[test]
fn a_deleted_user_is_not_brought_back_by_an_older_upsert() {
    let dir = tempfile::tempdir().unwrap();
    let g = open_plain(dir.path());
    let fp = pipeline().fingerprint().to_string();
    let amy = face("amy1.png");
    g.apply_op(&central_upsert("u", &fp, &amy, false, 100))
        .unwrap();
    let delete = Op {
        op_id: "del-1".into(),
        version: 300,
        kind: OpKind::DeleteUser {
            user_id: "u".into(),
        },
        ..central_upsert("u", &fp, &amy, false, 300)
    };
    assert_eq!(g.apply_op(&delete).unwrap(), Applied::Applied);
    let late = central_upsert("u", &fp, &amy, false, 200);
    assert_eq!(g.apply_op(&late).unwrap(), Applied::Stale);
    assert!(g
        .read_store(|r| r.user(CLIENT, GALLERY, "u"))
        .unwrap()
        .is_none());
}

#[test]
fn only_a_gallery_deletion_makes_older_user_operations_stale() {
    let dir = tempfile::tempdir().unwrap();
    let g = open_plain(dir.path());
    let fp = pipeline().fingerprint().to_string();
    let amy = face("amy1.png");
    let gallery_op = |id: &str, version: u64, kind: OpKind| Op {
        op_id: id.into(),
        version,
        kind,
        ..central_upsert("-", &fp, &amy, false, version)
    };
    assert_eq!(
        g.apply_op(&gallery_op("create", 1000, OpKind::CreateGallery))
            .unwrap(),
        Applied::Applied
    );
    // Made before the gallery's creation reached this device: still applies.
    assert_eq!(
        g.apply_op(&central_upsert("u", &fp, &amy, false, 500))
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(
        g.apply_op(&gallery_op("delete", 2000, OpKind::DeleteGallery))
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(
        g.apply_op(&central_upsert("v", &fp, &amy, false, 1500))
            .unwrap(),
        Applied::Stale
    );
    assert!(g.galleries(CLIENT).unwrap().is_empty());
    assert_eq!(
        g.apply_op(&central_upsert("w", &fp, &amy, false, 2500))
            .unwrap(),
        Applied::Applied
    );
    assert_eq!(g.list_faces(CLIENT, GALLERY).unwrap().len(), 1);
}

#[test]
fn an_op_from_another_model_with_a_crop_is_reembedded_and_without_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = open_plain(dir.path());
    let amy = face("amy1.png");
    let without = central_upsert("u1", "another-model", &amy, false, 1);
    assert!(matches!(g.apply_op(&without).unwrap(), Applied::Refused(_)));
    // Reported back as a `refused` event.
    let report: Op = serde_json::from_slice(&g.outbox_after(0, 10).unwrap()[0].1).unwrap();
    assert!(
        matches!(report.kind, OpKind::Refused { ref refused_op_id, .. } if *refused_op_id == without.op_id)
    );

    let mut with = central_upsert("u2", "another-model", &amy, true, 2);
    let jpeg = facegate_crop_jpeg(&amy);
    if let OpKind::UpsertUser { templates, .. } = &mut with.kind {
        templates[0].crop = Some(jpeg);
        templates[0].embedding = encode_embedding(&[0.5; 8]);
    }
    assert_eq!(g.apply_op(&with).unwrap(), Applied::Applied);
    let found = g
        .search_index(CLIENT, GALLERY, &face("amy2.png").embedding.0, 1)
        .unwrap()
        .into_iter()
        .next();
    assert_eq!(found.map(|m| m.user_id.to_string()), Some("u2".to_string()));
}

/// The aligned crop of a face as base64 JPEG, as a device with crops kept sends it.
fn facegate_crop_jpeg(face: &Face) -> String {
    use base64::Engine;
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
        .encode_image(&face.aligned)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn the_outbox_is_bounded_and_drops_its_oldest_event_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let g = open_plain(dir.path());
    g.create_gallery(CLIENT, GALLERY).unwrap();
    let amy = face("amy1.png");
    for i in 0..5 {
        g.enroll_face(CLIENT, GALLERY, &format!("u{i}"), "n", &amy)
            .unwrap();
    }
    // limit 3: six events made, three kept (the newest), three dropped.
    let kept = g.outbox_after(0, 10).unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!(g.outbox_dropped(), 3);
    let last: Op = serde_json::from_slice(&kept[2].1).unwrap();
    assert!(matches!(last.kind, OpKind::UpsertUser { ref user_id, .. } if user_id == "u4"));
}

/// Set for the child process of the kill test: "DATA_DIR PORT DEVICE_ID PREFIX".
const CHILD_ENV: &str = "FACEGATE_SYNC_TEST_CHILD";

/// Runs a device until it is killed, when started by the kill test; otherwise nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_process_for_the_kill_test() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(' ').collect();
    let device = Device::open_at(
        parts[2],
        parts[1].parse().unwrap(),
        Path::new(parts[0]),
        parts[3],
    );
    let _device = device;
    std::future::pending::<()>().await;
}

fn users_in(store: &Store) -> Vec<(String, usize)> {
    store
        .read(|r| {
            let mut out = Vec::new();
            if r.gallery(CLIENT, GALLERY)?.is_none() {
                return Ok::<_, facegate::store::Error>(out);
            }
            for (id, _) in r.users(CLIENT, GALLERY)? {
                let n = r.templates_of(CLIENT, GALLERY, &id)?.len();
                out.push((id, n));
            }
            Ok(out)
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_killed_while_applying_a_batch_converges_after_restart() {
    const N: usize = 400;
    let net = Net::start();
    let port = net.port;
    let dir = tempfile::tempdir().unwrap();
    let status = net.topic(&format!("devices/{}/status", net.id("door-k")));
    let watcher = Consumer::start(port, &net.id("kill-status-watch"), &status).await;
    let spawn = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "device_process_for_the_kill_test", "--nocapture"])
            .env(
                CHILD_ENV,
                format!(
                    "{} {port} {} {}",
                    dir.path().display(),
                    net.id("door-k"),
                    net.prefix
                ),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let online = br#"{"state":"online"}"#.as_slice();
    let mut child = spawn();
    wait_for("child online", || {
        watcher.payloads().last().map(|p| p.as_slice()) == Some(online)
    })
    .await;
    // The same LMDB environment, read from this process (LMDB is multi-process).
    let store = Store::open(dir.path(), 4).unwrap();

    let central = publisher(port, &net.id("central-kill")).await;
    let fp = pipeline().fingerprint().to_string();
    let amy = face("amy1.png");
    let ops = net.topic(&format!("ops/{CLIENT}"));
    for i in 0..N {
        let op = central_upsert(&format!("user-{i:04}"), &fp, &amy, false, 10 + i as u64);
        central
            .publish(
                &ops,
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&op).unwrap(),
            )
            .await
            .unwrap();
    }
    wait_for("child applying the batch", || {
        users_in(&store).len() >= N / 10
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = users_in(&store).len();
    eprintln!("killed with {at_kill} of {N} operations applied");

    let mut child = spawn();
    wait_for("every user after restart", || users_in(&store).len() == N).await;
    // Each upsert applied as one transaction: one template per user, the face counter
    // counts each user once.
    assert!(users_in(&store).iter().all(|(_, n)| *n == 1));
    let faces = store.read(|r| r.counters(CLIENT)).unwrap().faces;
    assert_eq!(faces as usize, N);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A mosquitto process of this test, with persistence, that can be stopped and started
/// again on the same port.
struct Mosquitto {
    conf: PathBuf,
    child: Option<std::process::Child>,
    port: u16,
}

impl Mosquitto {
    /// None when mosquitto is not installed (and `FACEGATE_REQUIRE_MOSQUITTO` is unset).
    fn new(dir: &Path) -> Option<Mosquitto> {
        if !broker::mosquitto_installed("mosquitto", "-h") {
            return None;
        }
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n\
                 persistence true\npersistence_location {}/\nmax_queued_messages 100000\n",
                dir.display()
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            conf,
            child: None,
            port,
        };
        m.start();
        Some(m)
    }

    fn start(&mut self) {
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < WAIT, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (mosquitto saves its sessions and queued messages), then waits.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            child.wait().unwrap();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_made_while_the_broker_is_stopped_arrive_once_after_it_restarts() {
    const N: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = Mosquitto::new(dir.path()) else {
        eprintln!("SKIPPED: mosquitto not installed");
        return;
    };
    let mut net = Net::start();
    net.port = broker.port;
    let port = net.port;
    let events = net.topic(&format!("devices/{}/events", net.id("door-a")));
    let consumer = Consumer::start(port, &net.id("central-consumer"), &events).await;
    let a = Device::open(&net, "door-a", port);
    let b = Device::open(&net, "door-b", port);
    wait_for("both subscribed", || {
        a.metrics().subscribed && b.metrics().subscribed
    })
    .await;
    a.gallery.create_gallery(CLIENT, GALLERY).unwrap();
    wait_for("gallery at door-b", || {
        b.gallery.galleries(CLIENT).unwrap().len() == 1
    })
    .await;

    broker.stop();
    wait_for("door-a sees the broker gone", || !a.metrics().connected).await;
    let amy = face("amy1.png");
    for i in 0..N {
        a.gallery
            .enroll_face(CLIENT, GALLERY, &format!("user-{i:04}"), "Someone", &amy)
            .unwrap();
    }
    assert!(a.outbox() as usize >= N);
    broker.start();

    wait_for_count("door-a outbox drained", 0, || a.outbox() as usize).await;
    let distinct = || {
        let mut ids: Vec<String> = consumer.ops().into_iter().map(|o| o.op_id).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    wait_for_count("every event at the consumer", N + 1, distinct).await;
    wait_for_count("door-b has everyone", N, || b.contents().len()).await;
    let received = consumer.ops().len();
    eprintln!(
        "broker restart: {} distinct events, {received} received",
        distinct()
    );
    assert_eq!(b.metrics().applied as usize, N + 1);
    assert_eq!(a.contents(), b.contents());
    a.stop().await;
    b.stop().await;
}
