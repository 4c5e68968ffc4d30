//! Door rules and actions on the real camera loop (real models, `dir:` frames from real
//! photos): the relay (recording implementation) pulses only for allowed members, every
//! refusal says which rule, and with sync on each opening is an `open` command on the
//! door topic of a real MQTT broker.

use std::sync::Arc;
use std::time::Duration;

use facegate::camera::{Camera, CameraOptions};
use facegate::config::Config;
use facegate::door::{Door, DoorMetrics, DoorOptions, RecordingRelay, Relay};
use facegate::gallery::EnrollRequest;
use facegate::sync::SyncOptions;
use image::RgbImage;

use super::sequence::{background, fixture, walk, write_frames, GAP_FRAMES, WALK_FRAMES};
use super::subscriber::Subscriber;
use super::support::{Enrolled, CLIENT, GALLERY};
use super::{broker, wait_for};

fn masked_leonard() -> (Vec<u8>, RgbImage) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mask/masked_leonard2.jpg");
    let bytes = std::fs::read(path).unwrap();
    let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
    (bytes, image)
}

/// Walk-ups one after the other, alternating sides, with the kiosk tests' gaps.
fn frames(faces: &[RgbImage]) -> Vec<RgbImage> {
    let bg = background();
    let mut frames = vec![bg.clone(); 3];
    for (i, face) in faces.iter().enumerate() {
        let centre_x = if i % 2 == 0 { 190.0 } else { 450.0 };
        frames.extend(walk(face, WALK_FRAMES, centre_x));
        frames.extend(std::iter::repeat_n(bg.clone(), GAP_FRAMES));
    }
    frames
}

/// A door on `gallery` with the rules of `tweak`, a recording relay and no other action.
fn relay_door(
    runtime: &tokio::runtime::Runtime,
    enrolled: &Enrolled,
    tweak: impl FnOnce(&mut Config),
) -> (Door, Arc<RecordingRelay>) {
    let mut config = enrolled.config.clone();
    config.door.mqtt_open = false;
    tweak(&mut config);
    let options = DoorOptions::from_config(&config).unwrap().unwrap();
    let relay = Arc::new(RecordingRelay::default());
    let door = Door::start(
        runtime.handle(),
        enrolled.gallery.clone(),
        options,
        Some(relay.clone() as Arc<dyn Relay>),
        Arc::new(DoorMetrics::default()),
    );
    (door, relay)
}

#[test]
fn the_door_opens_for_allowed_members_only_and_every_refusal_says_why() {
    let port = broker::start_broker();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let enrolled = Enrolled::new(|c| {
        c.camera.dir_realtime = false;
        c.sync.url = format!("mqtt://127.0.0.1:{port}");
        c.door.gpio_chip = "recording".into();
        c.door.gpio_pulse_ms = 50;
        c.door.users = vec!["amy".into(), "penny".into(), "leonard".into()];
    });
    // Leonard is a member, enrolled (and seen) with a mask.
    let (masked_bytes, masked_face) = masked_leonard();
    enrolled
        .gallery
        .enroll(
            CLIENT,
            &EnrollRequest {
                gallery: GALLERY,
                user_id: "leonard",
                user_name: "Leonard Hofstadter",
                image: &masked_bytes,
                force: true,
            },
        )
        .unwrap();
    let opens = Subscriber::start(
        &runtime,
        port,
        "door-watcher",
        "facegate/devices/door-1/#".into(),
    );
    wait_for("subscribed", || opens.is_subscribed());
    let sync = {
        let _entered = runtime.enter();
        let options = SyncOptions::from_config(&enrolled.config).unwrap().unwrap();
        facegate::sync::start(enrolled.gallery.clone(), options)
    };

    // The door under test: members amy, penny, leonard; relay and MQTT.
    let options = DoorOptions::from_config(&enrolled.config).unwrap().unwrap();
    assert_eq!(
        options.mqtt_topic.as_deref(),
        Some("facegate/devices/door-1/door")
    );
    let relay = Arc::new(RecordingRelay::default());
    let door = Door::start(
        runtime.handle(),
        enrolled.gallery.clone(),
        options,
        Some(relay.clone() as Arc<dyn Relay>),
        Arc::new(DoorMetrics::default()),
    );
    // Doors with one rule each that refuses everyone (every user allowed otherwise).
    let (strict, strict_relay) = relay_door(&runtime, &enrolled, |c| {
        c.door.users.clear();
        c.door.min_similarity = 0.9999;
    });
    let now_min = (facegate::store::now_ms() / 60_000 % 1440) as u32;
    let hm = |m: u32| format!("{:02}:{:02}", m % 1440 / 60, m % 60);
    let (closed, closed_relay) = relay_door(&runtime, &enrolled, |c| {
        c.door.users.clear();
        c.door.time_windows = vec![format!("{}-{}", hm(now_min + 120), hm(now_min + 180))];
    });
    let (lobby, lobby_relay) = relay_door(&runtime, &enrolled, |c| {
        c.door.users.clear();
        c.door.galleries = vec!["kiosk/lobby".into()];
    });
    // A door whose relay fails (as a missing chip would).
    let (broken, broken_relay) = relay_door(&runtime, &enrolled, |c| c.door.users.clear());
    broken_relay.fail_with(Some("no such chip"));

    let dir = enrolled.dir.path().join("frames");
    let faces = [
        fixture("amy2.png"),
        fixture("sheldon2.png"),
        fixture("stuart1.png"),
        masked_face,
        fixture("penny2.png"),
    ];
    write_frames(&frames(&faces), &dir).unwrap();
    let mut config = enrolled.config.clone();
    config.camera.source = format!("dir:{}", dir.display());
    let camera = Camera::start(
        enrolled.gallery.clone(),
        CameraOptions::from_config(&config).unwrap().unwrap(),
    )
    .unwrap();
    wait_for("the camera replayed the scene", || camera.is_idle());

    let visits = enrolled.gallery.visits_after(0, 100).unwrap();
    let who: Vec<(Option<&str>, bool)> = visits
        .iter()
        .map(|v| (v.record.user_id.as_deref(), v.record.mask))
        .collect();
    assert_eq!(
        who,
        [
            (Some("amy"), false),
            (Some("sheldon"), false),
            (None, false),
            (Some("leonard"), true),
            (Some("penny"), false),
        ]
    );
    let m = door.metrics().clone();
    wait_for("every door decided every visit", || {
        m.get("relay", "done") + m.get("relay", "refused") == 5
            && m.get("mqtt", "queued") + m.get("mqtt", "refused") == 5
            && [&strict, &closed, &lobby]
                .iter()
                .all(|d| d.metrics().get("relay", "refused") == 5)
            && broken.metrics().get("relay", "failed") + broken.metrics().get("relay", "refused")
                == 5
    });
    // The door under test: amy and penny.
    assert_eq!(relay.pulses(), [Duration::from_millis(50); 2]);
    assert_eq!((m.get("relay", "done"), m.get("relay", "refused")), (2, 3));
    assert_eq!((m.get("mqtt", "queued"), m.get("mqtt", "refused")), (2, 3));
    let lines = |i: usize| -> Vec<String> {
        enrolled
            .gallery
            .door_lines(visits[i].id)
            .unwrap()
            .iter()
            .map(|l| format!("{} {}: {}", l.action, l.outcome, l.detail))
            .collect()
    };
    let has = |i: usize, text: &str| {
        let l = lines(i);
        assert!(
            l.iter().any(|l| l.contains(text)),
            "visit {i}: {text:?} not in {l:#?}"
        );
    };
    has(
        0,
        "relay done: recording relay pulsed 50 ms for Amy Farrah Fowler (amy)",
    );
    has(
        0,
        "mqtt queued: open for Amy Farrah Fowler (amy) on facegate/devices/door-1/door",
    );
    has(1, "relay refused: user sheldon does not open this door");
    has(1, "mqtt refused: user sheldon does not open this door");
    has(2, "relay refused: unknown face");
    has(3, "relay refused: masked face (allow_masked = false)");
    has(
        4,
        "relay done: recording relay pulsed 50 ms for Penny (penny)",
    );
    // The other doors: one rule each.
    has(0, "relay refused: similarity");
    has(0, "relay refused: outside the door's time windows");
    has(
        0,
        "relay refused: gallery kiosk/door does not open this door",
    );
    has(0, "relay failed: GPIO recording line 0: no such chip");
    for r in [&strict_relay, &closed_relay, &lobby_relay, &broken_relay] {
        assert!(r.pulses().is_empty());
    }
    assert_eq!(broken.metrics().get("relay", "failed"), 3);
    // The stranger is refused as unknown by every door, whatever its other rules.
    assert!(
        lines(2)
            .iter()
            .all(|l| l.ends_with("refused: unknown face")),
        "{:?}",
        lines(2)
    );

    // One `open` command per opening, on the door topic (never on the events topic).
    wait_for("two open commands published", || {
        opens.with_op("open").len() >= 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let received = opens.messages();
    let open = opens.with_op("open");
    assert_eq!(open.len(), 2, "{open:#?}");
    for ((topic, v), visit) in open.iter().zip([&visits[0], &visits[4]]) {
        assert_eq!(topic, "facegate/devices/door-1/door");
        assert_eq!(v["visit_id"], visit.id);
        assert_eq!(v["user_id"].as_str(), visit.record.user_id.as_deref());
        assert_eq!(v["origin"], "door-1");
        assert!(v["expires_at_ms"].as_u64().unwrap() > visit.record.timestamp_ms);
    }
    assert!(received
        .iter()
        .filter(|(t, _)| t.ends_with("/events"))
        .all(|(_, v)| v["op"] != "open"));

    camera.stop();
    runtime.block_on(async {
        for d in [door, strict, closed, lobby, broken] {
            d.stop(Duration::from_secs(2)).await;
        }
        sync.stop(Duration::from_secs(3)).await;
    });
}

/// The daemon recorded Amy's visit and lost power before the door acted on it. At the
/// next start the door queues the visit's webhook call (attendance is not lost), does
/// not pulse the relay late, says so in the visit's record, and a further restart does
/// not act on it again.
#[test]
fn a_visit_recorded_before_a_power_cut_gets_its_webhook_at_restart_and_no_late_opening() {
    use facegate::store::VisitRecord;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = broker::free_port();
    let enrolled = Enrolled::new(|c| {
        c.door.gpio_chip = "recording".into();
        c.door.gpio_pulse_ms = 50;
        c.door.webhook_url = format!("http://127.0.0.1:{port}/hook");
        c.door.webhook_secret = "door-secret".into();
        c.door.webhook_retry_min_ms = 50;
    });
    let receiver = super::receiver::Receiver::start(port, "door-secret", enrolled.dir.path());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let visit = enrolled
        .gallery
        .record_visit(
            VisitRecord {
                client: CLIENT.into(),
                gallery: GALLERY.into(),
                device_id: "door-1".into(),
                user_id: Some("amy".into()),
                user_name: Some("Amy".into()),
                similarity: 0.93,
                mask: false,
                timestamp_ms: now_ms - 2_000,
                face_jpeg: Vec::new(),
            },
            false,
        )
        .unwrap();

    for restart in 0..2 {
        let (door, relay) = relay_door(&runtime, &enrolled, |_| {});
        wait_for("the visit's webhook and relay lines", || {
            let lines = enrolled.gallery.door_lines(visit.id).unwrap();
            let has = |a: &str| lines.iter().any(|l| l.action == a);
            has("relay") && has("webhook")
        });
        wait_for("the call delivered", || !receiver.calls().is_empty());
        // Time for a wrongly repeated call to arrive (a hang guard's worth is not
        // needed: the sender retries every 50 ms).
        std::thread::sleep(Duration::from_millis(500));
        let calls = receiver.calls();
        assert_eq!(calls.len(), 1, "restart {restart}: {calls:?}");
        assert_eq!(calls[0]["verified"], true);
        assert_eq!(calls[0]["visit"]["user_id"], "amy", "{calls:?}");
        assert!(relay.pulses().is_empty(), "the door is not opened late");
        let lines = enrolled.gallery.door_lines(visit.id).unwrap();
        let relay_lines: Vec<_> = lines.iter().filter(|l| l.action == "relay").collect();
        assert_eq!(relay_lines.len(), 1, "{lines:?}");
        assert_eq!(relay_lines[0].outcome, "skipped", "{lines:?}");
        runtime.block_on(door.stop(Duration::from_secs(5)));
    }
}
