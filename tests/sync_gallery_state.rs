//! A gallery's full state (`gallery_state`, docs/sync.md), end to end with the real
//! binary, a real broker (rumqttd in-process, or `FACEGATE_TEST_MQTT_PORT`), real stores
//! and models: a snapshot removes the users a device missed the removal of, keeps those
//! enrolled after it, is idempotent and not undone by an older upsert; `push --replace`.

#[path = "sync_support/broker.rs"]
mod broker;
#[path = "sync_support/central.rs"]
mod central;
#[path = "sync_support/device.rs"]
mod device;
#[path = "common/models.rs"]
mod models;

use std::io::BufReader;

use central::{expected, fixture, photo_folder, push_photos, Scene};
use device::{wait_for, Device, CLIENT};
use facegate::gallery::{read_export, Applied, OpKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_removes_a_user_deleted_centrally_and_keeps_one_enrolled_after_it() {
    let scene = Scene::new("fgd");
    let device = Device::start(scene.device_options("door"));
    wait_for("device subscribed", || device.metrics().subscribed).await;

    // First publication: Amy and Sheldon reach the device.
    let photos = photo_folder(scene.path());
    let before = scene.path().join("lobby-before.jsonl");
    scene.push_photos(&photos, &before);
    wait_for("first publication at the device", || {
        device.users("lobby") == expected()
    })
    .await;

    // The central drops Sheldon. Its new state is published under another topic prefix,
    // where the device does not listen: the device misses the removal.
    std::fs::remove_dir_all(photos.join("sheldon")).unwrap();
    let after = scene.path().join("lobby-after.jsonl");
    let elsewhere = format!("{}-elsewhere", scene.prefix);
    push_photos(
        scene.port,
        &scene.central,
        &elsewhere,
        scene.path(),
        &photos,
        &after,
    );
    assert!(device.users("lobby").contains_key("sheldon"));

    // Enrolled here after the central's new state: newer than the snapshot, kept.
    device.enroll_photo("lobby", "leonard", "Leonard", &fixture("sheldon3.png"));
    let mut expected = expected();
    expected.remove("sheldon");
    expected.insert("leonard".into(), ("Leonard".into(), 1));

    let _server = scene.serve_snapshots(&after);
    let request = || scene.request_snapshot(&scene.device_id("door"), "lobby");
    request();
    wait_for("Sheldon removed by the snapshot, Leonard kept", || {
        device.users("lobby") == expected
    })
    .await;
    let faces = || {
        device
            .gallery
            .accounts()
            .list_clients()
            .unwrap()
            .into_iter()
            .find(|c| c.name == CLIENT)
            .map(|c| c.faces)
    };
    assert_eq!(faces(), Some(2));
    let sheldon_photo = std::fs::read(fixture("sheldon1.png")).unwrap();
    let found = device
        .gallery
        .identify(CLIENT, "lobby", &sheldon_photo)
        .unwrap();
    assert_ne!(
        found.map(|m| m.user_id).as_deref(),
        Some("sheldon"),
        "the index still holds the removed user"
    );

    // The same snapshot again: its three operations are duplicates, nothing changes.
    let duplicates = device.metrics().duplicates;
    request();
    wait_for("second snapshot handled", || {
        device.metrics().duplicates == duplicates + 3
    })
    .await;
    assert_eq!(device.users("lobby"), expected);

    // Sheldon's older upsert arriving late (reissued with a new op id) stays removed.
    let (_, ops) = read_export(BufReader::new(std::fs::File::open(&before).unwrap())).unwrap();
    let mut late = ops
        .into_iter()
        .find(|op| matches!(&op.kind, OpKind::UpsertUser { user_id, .. } if user_id == "sheldon"))
        .expect("Sheldon in the first export");
    late.op_id = format!("late-{}", scene.tag);
    assert_eq!(device.gallery.apply_op(&late).unwrap(), Applied::Stale);
    assert_eq!(device.users("lobby"), expected);
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_removes_users_it_lacks_only_with_replace() {
    let scene = Scene::new("fgx");
    let device = Device::start(scene.device_options("door"));
    wait_for("device subscribed", || device.metrics().subscribed).await;
    let photos = photo_folder(scene.path());
    let push = |replace: bool| {
        let mut cmd = scene.central_command();
        cmd.args(["push", "--photos"]).arg(&photos).args([
            "--client",
            CLIENT,
            "--gallery",
            "lobby",
        ]);
        if replace {
            cmd.arg("--replace");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(push(false).contains("pushed 3 operation(s)"));
    wait_for("first push at the device", || {
        device.users("lobby") == expected()
    })
    .await;

    // Without --replace, a push without Sheldon leaves him on the device.
    std::fs::remove_dir_all(photos.join("sheldon")).unwrap();
    let applied = device.metrics().applied;
    assert!(push(false).contains("pushed 2 operation(s)"));
    wait_for("second push applied", || {
        device.metrics().applied == applied + 2
    })
    .await;
    assert_eq!(device.users("lobby"), expected());

    // With --replace, the gallery_state follows and removes him.
    let stdout = push(true);
    assert!(stdout.contains("pushed 3 operation(s)"), "{stdout}");
    let mut expected = expected();
    expected.remove("sheldon");
    wait_for("Sheldon removed by the replacing push", || {
        device.users("lobby") == expected
    })
    .await;
    device.stop().await;
}
