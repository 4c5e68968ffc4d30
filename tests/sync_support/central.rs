//! The central side's helpers for the sync tests: the `facegate` binary with a broker,
//! device id and topic prefix, a folder of photos, and a running snapshot server.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::device::{CLIENT, WAIT};

pub const BIN: &str = env!("CARGO_BIN_EXE_facegate");

pub fn broker_port() -> u16 {
    match std::env::var("FACEGATE_TEST_MQTT_PORT") {
        Ok(p) => p.parse().expect("FACEGATE_TEST_MQTT_PORT"),
        Err(_) => crate::broker::start_broker(),
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vision")
        .join(name)
}

/// One test's sync setting: a broker, a topic prefix and device ids of its own (so that
/// tests sharing a broker never hear each other), a work folder, and the central
/// tool's device id. The central-side helpers below, bound to it.
pub struct Scene {
    pub port: u16,
    /// Unique per test: device ids are `{name}-{tag}`.
    pub tag: String,
    pub prefix: String,
    pub work: tempfile::TempDir,
    pub central: String,
}

impl Scene {
    /// A scene whose topic prefix starts with `stem`.
    pub fn new(stem: &str) -> Scene {
        let tag = crate::device::tag();
        Scene {
            port: broker_port(),
            prefix: format!("{stem}-{tag}"),
            work: tempfile::tempdir().unwrap(),
            central: format!("central-{tag}"),
            tag,
        }
    }

    pub fn path(&self) -> &Path {
        self.work.path()
    }

    /// The device id `{name}-{tag}`.
    pub fn device_id(&self, name: &str) -> String {
        format!("{name}-{}", self.tag)
    }

    /// Plain-MQTT sync options of the device `{name}-{tag}` in this scene.
    pub fn device_options(&self, name: &str) -> facegate::sync::SyncOptions {
        facegate::sync::SyncOptions::plain(
            "127.0.0.1",
            self.port,
            &self.device_id(name),
            &self.prefix,
        )
    }

    /// `facegate` as the central tool.
    pub fn central_command(&self) -> Command {
        facegate(self.port, &self.central, &self.prefix, self.path(), &[])
    }

    /// [`push_photos`] as the central tool.
    pub fn push_photos(&self, photos: &Path, export: &Path) {
        push_photos(
            self.port,
            &self.central,
            &self.prefix,
            self.path(),
            photos,
            export,
        );
    }

    /// [`request_snapshot`] as the device `device` (a full device id).
    pub fn request_snapshot(&self, device: &str, gallery: &str) {
        request_snapshot(self.port, device, &self.prefix, self.path(), gallery);
    }

    /// [`SnapshotServer::serve`] of `export` by the central tool.
    pub fn serve_snapshots(&self, export: &Path) -> SnapshotServer {
        SnapshotServer::serve(self.port, &self.central, &self.prefix, self.path(), export)
    }
}

/// A `facegate` command with the broker, a device id and a topic prefix.
pub fn facegate(port: u16, device: &str, prefix: &str, work: &Path, args: &[&str]) -> Command {
    let config = work.join(format!("{device}.toml"));
    std::fs::write(&config, format!("[sync]\ntopic_prefix = \"{prefix}\"\n")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FACEGATE_MQTT_URL", format!("mqtt://127.0.0.1:{port}"))
        .env("FACEGATE_DEVICE_ID", device)
        .env("FACEGATE_DATA_DIR", work.join(format!("data-{device}")))
        .env("FACEGATE_LOG", "warn")
        .arg("--config")
        .arg(&config)
        .args(args);
    cmd
}

/// DIR/amy (two photos, name.txt), DIR/sheldon (one photo), DIR/nobody (a white
/// picture: no face).
pub fn photo_folder(root: &Path) -> PathBuf {
    let dir = root.join("photos");
    for (user, photos) in [
        ("amy", &["amy1.png", "amy2.png"][..]),
        ("sheldon", &["sheldon1.png"][..]),
        ("nobody", &["white.png"][..]),
    ] {
        std::fs::create_dir_all(dir.join(user)).unwrap();
        for p in photos {
            std::fs::copy(fixture(p), dir.join(user).join(p)).unwrap();
        }
    }
    std::fs::write(dir.join("amy/name.txt"), "Amy Farrah Fowler\n").unwrap();
    dir
}

pub fn expected() -> std::collections::BTreeMap<String, (String, usize)> {
    [
        ("amy".to_string(), ("Amy Farrah Fowler".to_string(), 2)),
        ("sheldon".to_string(), ("sheldon".to_string(), 1)),
    ]
    .into_iter()
    .collect()
}

/// Runs `cmd` to its end; panics with its stderr unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `facegate push --photos photos` of gallery `lobby` of [`CLIENT`] as `central`, also
/// written to the export file `export`; panics unless it succeeded.
pub fn push_photos(
    port: u16,
    central: &str,
    prefix: &str,
    work: &Path,
    photos: &Path,
    export: &Path,
) {
    run_ok(
        facegate(port, central, prefix, work, &[])
            .args(["push", "--photos"])
            .arg(photos)
            .args(["--client", CLIENT, "--gallery", "lobby", "--export-to"])
            .arg(export),
    );
}

/// `facegate sync request-snapshot` for `gallery` of [`CLIENT`], as `device`.
pub fn request_snapshot(port: u16, device: &str, prefix: &str, work: &Path, gallery: &str) {
    run_ok(facegate(port, device, prefix, work, &[]).args([
        "sync",
        "request-snapshot",
        "--client",
        CLIENT,
        "--gallery",
        gallery,
    ]));
}

/// `facegate push --serve-snapshots`, until dropped; waits until it listens.
pub struct SnapshotServer(Child);

impl SnapshotServer {
    /// Serves the export file `export` as the central server `central`.
    pub fn serve(port: u16, central: &str, prefix: &str, work: &Path, export: &Path) -> Self {
        let mut cmd = facegate(port, central, prefix, work, &[]);
        cmd.args(["push", "--serve-snapshots", "--from"])
            .arg(export);
        SnapshotServer::start(cmd)
    }

    pub fn start(mut cmd: Command) -> SnapshotServer {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let start = Instant::now();
        loop {
            let line = lines
                .next()
                .expect("snapshot server exited")
                .expect("snapshot server output");
            if line.starts_with("listening for snapshot requests") {
                break;
            }
            assert!(start.elapsed() < WAIT, "snapshot server did not listen");
        }
        // Keep reading its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        SnapshotServer(child)
    }
}

impl Drop for SnapshotServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
