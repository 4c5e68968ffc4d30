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

use central::{
    broker_port, expected, facegate, fixture, photo_folder, push_photos, request_snapshot,
    SnapshotServer,
};
use device::{tag, wait_for, Device, CLIENT};
use facegate::gallery::{read_export, Applied, OpKind};
use facegate::sync::SyncOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_removes_a_user_deleted_centrally_and_keeps_one_enrolled_after_it() {
    let port = broker_port();
    let t = tag();
    let prefix = format!("fgd-{t}");
    let work = tempfile::tempdir().unwrap();
    let central = format!("central-{t}");
    let door = format!("door-{t}");
    let device = Device::start(SyncOptions::plain("127.0.0.1", port, &door, &prefix));
    wait_for("device subscribed", || device.metrics().subscribed).await;

    // First publication: Amy and Sheldon reach the device.
    let photos = photo_folder(work.path());
    let before = work.path().join("lobby-before.jsonl");
    push_photos(port, &central, &prefix, work.path(), &photos, &before);
    wait_for("first publication at the device", || {
        device.users("lobby") == expected()
    })
    .await;

    // The central drops Sheldon. Its new state is published under another topic prefix,
    // where the device does not listen: the device misses the removal.
    std::fs::remove_dir_all(photos.join("sheldon")).unwrap();
    let after = work.path().join("lobby-after.jsonl");
    let elsewhere = format!("{prefix}-elsewhere");
    push_photos(port, &central, &elsewhere, work.path(), &photos, &after);
    assert!(device.users("lobby").contains_key("sheldon"));

    // Enrolled here after the central's new state: newer than the snapshot, kept.
    device.enroll_photo("lobby", "leonard", "Leonard", &fixture("sheldon3.png"));
    let mut expected = expected();
    expected.remove("sheldon");
    expected.insert("leonard".into(), ("Leonard".into(), 1));

    let _server = SnapshotServer::serve(port, &central, &prefix, work.path(), &after);
    let request = || request_snapshot(port, &door, &prefix, work.path(), "lobby");
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
    late.op_id = format!("late-{t}");
    assert_eq!(device.gallery.apply_op(&late).unwrap(), Applied::Stale);
    assert_eq!(device.users("lobby"), expected);
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_removes_users_it_lacks_only_with_replace() {
    let port = broker_port();
    let t = tag();
    let prefix = format!("fgx-{t}");
    let work = tempfile::tempdir().unwrap();
    let central = format!("central-{t}");
    let device = Device::start(SyncOptions::plain(
        "127.0.0.1",
        port,
        &format!("door-{t}"),
        &prefix,
    ));
    wait_for("device subscribed", || device.metrics().subscribed).await;
    let photos = photo_folder(work.path());
    let push = |replace: bool| {
        let mut cmd = facegate(port, &central, &prefix, work.path(), &[]);
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
