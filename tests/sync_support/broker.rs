//! A real MQTT broker for the sync tests: rumqttd in-process on a free loopback port,
//! optionally with TLS (rustls) and username/password authentication.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Options of an in-process broker.
#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    /// PEM certificate chain and key: the listener speaks TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Accepted username -> password; None: anonymous.
    pub auth: Option<HashMap<String, String>>,
}

/// Starts rumqttd on a free loopback port (it runs until the test process ends).
pub fn start_broker() -> u16 {
    start_broker_with(&BrokerOptions::default())
}

/// As [`start_broker`] with TLS and/or authentication. A port taken by another test
/// between choosing and binding it is retried with another port.
pub fn start_broker_with(options: &BrokerOptions) -> u16 {
    for _ in 0..5 {
        let port = free_port();
        let config = config(port, options);
        std::thread::spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            let _ = broker.start();
        });
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return port;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("broker did not start");
}

fn config(port: u16, options: &BrokerOptions) -> rumqttd::Config {
    let mut v4 = HashMap::new();
    v4.insert(
        "1".to_string(),
        rumqttd::ServerSettings {
            name: "v4-1".into(),
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            tls: options
                .tls
                .as_ref()
                .map(|(cert, key)| rumqttd::TlsConfig::Rustls {
                    capath: None,
                    certpath: cert.display().to_string(),
                    keypath: key.display().to_string(),
                }),
            next_connection_delay_ms: 1,
            connections: rumqttd::ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: 4 << 20,
                max_inflight_count: 500,
                auth: options.auth.clone(),
                external_auth: None,
                dynamic_filters: true,
            },
        },
    );
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(v4),
        ..Default::default()
    }
}

/// Whether the mosquitto tool `program` (`mosquitto`, `mosquitto_passwd`) can run here.
/// Missing is a test failure when `FACEGATE_REQUIRE_MOSQUITTO` is set (CI), else the
/// caller skips its mosquitto part.
pub fn mosquitto_installed(program: &str, probe_arg: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg(probe_arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    assert!(
        found || std::env::var_os("FACEGATE_REQUIRE_MOSQUITTO").is_none(),
        "mosquitto is required (apt-get install mosquitto)"
    );
    found
}
