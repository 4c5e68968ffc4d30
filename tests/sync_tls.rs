//! Sync over TLS and with broker credentials, against real brokers: rumqttd in-process
//! with its rustls listener (certificates made at test time), and mosquitto (when
//! installed; required with FACEGATE_REQUIRE_MOSQUITTO=1) for mutual TLS and a
//! `mosquitto_passwd` password file.

#[path = "sync_support/broker.rs"]
mod broker;
#[path = "sync_support/device.rs"]
mod device;
#[path = "common/models.rs"]
mod models;
#[path = "sync_support/pki.rs"]
mod pki;

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use broker::{free_port, start_broker_with, BrokerOptions};
use device::{tag, wait_for, Device, CLIENT};
use facegate::gallery::{Op, OpKind, PROTOCOL_VERSION};
use facegate::sync::{SyncOptions, TlsError};
use pki::Pki;

/// Options from a `[sync]` section, through the real config path.
fn options(url: &str, device: &str, prefix: &str, extra: &[(&str, &str)]) -> SyncOptions {
    let mut text =
        format!("[sync]\nurl = \"{url}\"\ndevice_id = \"{device}\"\ntopic_prefix = \"{prefix}\"\n");
    for (k, v) in extra {
        text += &format!("{k} = \"{v}\"\n");
    }
    let config = facegate::config::merge(Some(&text), "test", &HashMap::<String, String>::new())
        .expect("config");
    SyncOptions::from_config(&config)
        .expect("sync options")
        .unwrap()
}

fn create_gallery(gallery: &str) -> Op {
    Op {
        v: PROTOCOL_VERSION,
        op_id: uuid::Uuid::new_v4().to_string(),
        origin: "central".into(),
        version: 1,
        ts: 1,
        client: CLIENT.into(),
        gallery: gallery.into(),
        model: "m".into(),
        kind: OpKind::CreateGallery,
    }
}

fn tls_broker(pki: &Pki, auth: Option<(&str, &str)>) -> u16 {
    start_broker_with(&BrokerOptions {
        tls: Some((pki.server_cert.clone(), pki.server_key.clone())),
        auth: auth.map(|(u, p)| HashMap::from([(u.to_string(), p.to_string())])),
    })
}

/// Stays disconnected for a while, counting failed attempts.
async fn never_connects(device: &Device) {
    wait_for("failed connection attempts", || {
        device.metrics().connection_errors >= 2
    })
    .await;
    assert!(!device.metrics().connected);
    assert_eq!(device.metrics().connects, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_connects_over_tls_with_its_ca_file_and_applies_a_central_push() {
    let pki = Pki::new();
    let port = tls_broker(&pki, None);
    let t = tag();
    let ca = pki.ca.display().to_string();
    let url = format!("mqtts://127.0.0.1:{port}");
    let prefix = format!("fgtls-{t}");
    let device = Device::start(options(
        &url,
        &format!("door-{t}"),
        &prefix,
        &[("ca_file", &ca)],
    ));
    wait_for("connected over TLS", || device.metrics().subscribed).await;
    let central = options(&url, &format!("central-{t}"), &prefix, &[("ca_file", &ca)]);
    let sent = facegate::sync::push(&central, &[create_gallery("tls")], Duration::from_secs(30))
        .await
        .expect("push over TLS");
    assert_eq!(sent, 1);
    wait_for("gallery pushed over TLS", || device.has_gallery("tls")).await;
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_refused_and_counted() {
    let pki = Pki::new();
    let port = tls_broker(&pki, None);
    let t = tag();
    let other = pki.other_ca.display().to_string();
    let device = Device::start(options(
        &format!("mqtts://127.0.0.1:{port}"),
        &format!("door-{t}"),
        &format!("fgtls-{t}"),
        &[("ca_file", &other)],
    ));
    never_connects(&device).await;
    device.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_the_right_one_connects() {
    let pki = Pki::new();
    let port = tls_broker(&pki, Some(("door", "s3cret")));
    let t = tag();
    let ca = pki.ca.display().to_string();
    let url = format!("mqtts://127.0.0.1:{port}");
    let wrong = Device::start(options(
        &url,
        &format!("door-a-{t}"),
        &format!("fgtls-{t}"),
        &[("ca_file", &ca), ("username", "door"), ("password", "nope")],
    ));
    let right = Device::start(options(
        &url,
        &format!("door-b-{t}"),
        &format!("fgtls-{t}"),
        &[
            ("ca_file", &ca),
            ("username", "door"),
            ("password", "s3cret"),
        ],
    ));
    wait_for("right password connects", || right.metrics().subscribed).await;
    never_connects(&wrong).await;
    wrong.stop().await;
    right.stop().await;
}

#[test]
fn unreadable_or_invalid_pem_files_are_configuration_errors_naming_the_file() {
    let pki = Pki::new();
    let junk = pki.dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let sync = |extra: &str| {
        let text = format!("[sync]\nurl = \"mqtts://broker.example\"\ndevice_id = \"d\"\n{extra}");
        let config =
            facegate::config::merge(Some(&text), "test", &HashMap::<String, String>::new())
                .unwrap();
        SyncOptions::from_config(&config)
    };
    let err = sync(&format!("ca_file = \"{}\"\n", junk.display())).unwrap_err();
    assert!(
        matches!(
            err,
            facegate::sync::Error::Tls(TlsError::NoCertificate { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("junk.pem"), "{err}");
    let err = sync(&format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.ca.display()
    ))
    .unwrap_err();
    assert!(
        matches!(err, facegate::sync::Error::Tls(TlsError::NoKey(_))),
        "{err}"
    );
    let ok = sync(&format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    ))
    .unwrap()
    .unwrap();
    assert_eq!(ok.port, 8883);
    assert!(ok.tls.is_some());
}

#[test]
fn config_check_names_a_bad_ca_file_exits_64_and_never_prints_the_password() {
    let work = tempfile::tempdir().unwrap();
    let junk = work.path().join("fleet-ca.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let config = work.path().join("facegate.toml");
    let write = |ca: &Path| {
        std::fs::write(
            &config,
            format!(
                "[sync]\nurl = \"mqtts://broker.example\"\ndevice_id = \"d\"\n\
                 username = \"door\"\npassword = \"hunter2\"\nca_file = \"{}\"\n",
                ca.display()
            ),
        )
        .unwrap();
    };
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("--config")
            .arg(&config)
            .args(["config", "check"])
            .output()
            .unwrap()
    };
    write(&junk);
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("fleet-ca.pem"), "{stderr}");
    let pki = Pki::new();
    write(&pki.ca);
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("<redacted>") && !stdout.contains("hunter2"),
        "{stdout}"
    );
}

/// mosquitto with TLS, client certificates required and a password file; None when
/// mosquitto is not installed (and FACEGATE_REQUIRE_MOSQUITTO is unset).
struct Mosquitto {
    child: std::process::Child,
    port: u16,
}

impl Mosquitto {
    fn start(pki: &Pki, dir: &Path) -> Option<Mosquitto> {
        if !broker::mosquitto_installed("mosquitto_passwd", "--help") {
            return None;
        }
        let passwords = dir.join("passwords");
        let made = std::process::Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwords)
            .args(["door", "s3cret"])
            .status()
            .unwrap();
        assert!(made.success(), "mosquitto_passwd");
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 require_certificate true\nallow_anonymous false\npassword_file {}\n\
                 user root\nlog_dest file {}\n",
                pki.ca.display(),
                pki.server_cert.display(),
                pki.server_key.display(),
                passwords.display(),
                dir.join("mosquitto.log").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Mosquitto { child, port })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_with_client_certificates_and_a_password_file_accepts_only_the_right_device() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let Some(broker) = Mosquitto::start(&pki, work.path()) else {
        eprintln!("SKIPPED: mosquitto not installed");
        return;
    };
    let t = tag();
    let url = format!("mqtts://localhost:{}", broker.port);
    let prefix = format!("fgm-{t}");
    let (ca, cert, key) = (
        pki.ca.display().to_string(),
        pki.client_cert.display().to_string(),
        pki.client_key.display().to_string(),
    );
    let mtls = [
        ("ca_file", ca.as_str()),
        ("client_cert", cert.as_str()),
        ("client_key", key.as_str()),
        ("username", "door"),
    ];
    let with_password = |p: &'static str| {
        let mut v = mtls.to_vec();
        v.push(("password", p));
        v
    };
    let good = Device::start(options(
        &url,
        &format!("door-a-{t}"),
        &prefix,
        &with_password("s3cret"),
    ));
    let wrong_password = Device::start(options(
        &url,
        &format!("door-b-{t}"),
        &prefix,
        &with_password("nope"),
    ));
    let no_certificate = Device::start(options(
        &url,
        &format!("door-c-{t}"),
        &prefix,
        &[
            ("ca_file", ca.as_str()),
            ("username", "door"),
            ("password", "s3cret"),
        ],
    ));
    wait_for("mutual TLS + password connects", || {
        good.metrics().subscribed
    })
    .await;
    let central = options(
        &url,
        &format!("central-{t}"),
        &prefix,
        &with_password("s3cret"),
    );
    facegate::sync::push(&central, &[create_gallery("mtls")], Duration::from_secs(30))
        .await
        .expect("push with mutual TLS");
    wait_for("gallery pushed", || good.has_gallery("mtls")).await;
    never_connects(&wrong_password).await;
    never_connects(&no_certificate).await;
    for d in [good, wrong_password, no_certificate] {
        d.stop().await;
    }
}
