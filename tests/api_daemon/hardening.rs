//! The daemon as deployed on a building's network: HTTPS only when a certificate is
//! configured (optionally with client certificates), and `reembed` refusing to run
//! beside a daemon that serves the same data folder.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use super::*;

#[path = "../sync_support/pki.rs"]
mod pki;

/// One HTTPS request (rustls on ring, trusting the test CA); the raw answer.
fn https_get(
    daemon: &Daemon,
    pki: &pki::Pki,
    path: &str,
    client_cert: bool,
) -> std::io::Result<String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(&pki.ca).unwrap();
    for c in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if client_cert {
        let cert = std::fs::read(&pki.client_cert).unwrap();
        let key = std::fs::read(&pki.client_key).unwrap();
        let chain = rustls_pemfile::certs(&mut &cert[..])
            .map(|c| c.unwrap())
            .collect();
        let key = rustls_pemfile::private_key(&mut &key[..]).unwrap().unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(daemon.addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // A server closing without close_notify after a complete answer is fine.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn tls_config(dir: &Path, pki: &pki::Pki, client_ca: bool) -> std::path::PathBuf {
    let mut text = format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        pki.server_cert, pki.server_key
    );
    if client_ca {
        text += &format!("tls_client_ca = {:?}\n", pki.ca);
    }
    let path = dir.join("tls.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn with_a_certificate_the_api_is_served_over_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::new();
    let config = tls_config(dir.path(), &pki, false);
    let daemon = Daemon::start_with(dir.path(), &["--config", config.to_str().unwrap()]);
    let answer = https_get(&daemon, &pki, "/healthz", false).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Plain HTTP on the same port: no HTTP answer, the handshake fails.
    let mut plain = TcpStream::connect(daemon.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("HTTP/1.1 200"));
    assert!(daemon.terminate().success());
}

#[test]
fn with_a_client_ca_a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::new();
    let config = tls_config(dir.path(), &pki, true);
    let daemon = Daemon::start_with(dir.path(), &["--config", config.to_str().unwrap()]);
    let with = https_get(&daemon, &pki, "/healthz", true).unwrap();
    assert!(with.starts_with("HTTP/1.1 200"), "{with}");
    let without = https_get(&daemon, &pki, "/healthz", false);
    assert!(
        without.as_ref().map_or(true, |a| !a.contains("200")),
        "{without:?}"
    );
    assert!(daemon.terminate().success());
}

#[test]
fn reembed_refuses_while_a_daemon_serves_the_same_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let out = facegate(dir.path(), &["reembed"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another facegate process"),
        "{stderr}"
    );
    assert!(daemon.terminate().success());
    let out = facegate(dir.path(), &["reembed"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reembed_on_a_folder_without_a_store_refuses_and_writes_nothing() {
    // A mistyped FACEGATE_DATA_DIR, or a folder of photos.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("amy1.png"), fixture("amy1.png")).unwrap();
    let out = facegate(dir.path(), &["reembed"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("no facegate store"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["amy1.png"]);
}

#[test]
fn a_relative_data_dir_is_found_from_the_config_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("facegate.toml");
    std::fs::write(&config, "[store]\ndata_dir = \"store\"\n").unwrap();
    // From another working directory, without FACEGATE_DATA_DIR.
    let out = Command::new(BIN)
        .current_dir(std::env::temp_dir())
        .env_remove("FACEGATE_DATA_DIR")
        .env("FACEGATE_LOG", "warn")
        .args([
            "--config",
            config.to_str().unwrap(),
            "client",
            "add",
            "kiosk",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("store").join("data.mdb").exists());
}
