//! The `[sync]` configuration as link settings: broker URL (`mqtt://` plain TCP,
//! `mqtts://` TLS), device id, credentials, TLS files, `sync_seen` retention; and the
//! rumqttc options every connection of ours uses (daemon link, push, snapshots).

use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use super::tls::{TlsClient, TlsFiles};
use super::Error;

/// Settings of the MQTT link.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncOptions {
    pub host: String,
    pub port: u16,
    pub device_id: String,
    pub topic_prefix: String,
    pub username: String,
    pub password: String,
    /// Delay before reconnecting after the broker went away.
    pub reconnect_delay: Duration,
    /// TLS (`mqtts://`); None: plain TCP.
    pub tls: Option<TlsClient>,
    /// Applied op ids are remembered this long (`seen_retention_days`); None: forever.
    pub seen_retention: Option<Duration>,
    /// On the first connection of a device that never received anything, ask the
    /// central server for snapshots of every gallery of its clients.
    pub snapshot_when_empty: bool,
}

fn path(p: &std::path::Path) -> Option<PathBuf> {
    (!p.as_os_str().is_empty()).then(|| p.to_path_buf())
}

impl SyncOptions {
    /// Plain TCP to `host:port`, defaults for the rest (tests and tools).
    pub fn plain(host: &str, port: u16, device_id: &str, topic_prefix: &str) -> SyncOptions {
        SyncOptions {
            host: host.to_string(),
            port,
            device_id: device_id.to_string(),
            topic_prefix: topic_prefix.to_string(),
            username: String::new(),
            password: String::new(),
            reconnect_delay: Duration::from_secs(1),
            tls: None,
            seen_retention: None,
            snapshot_when_empty: false,
        }
    }

    /// None when sync is off (empty url). Reads and checks the TLS files.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<SyncOptions>, Error> {
        let s = &config.sync;
        if s.url.is_empty() {
            return Ok(None);
        }
        let (rest, tls, default_port) = if let Some(rest) = s
            .url
            .strip_prefix("mqtts://")
            .or_else(|| s.url.strip_prefix("ssl://"))
        {
            (rest, true, 8883)
        } else if let Some(rest) = s
            .url
            .strip_prefix("mqtt://")
            .or_else(|| s.url.strip_prefix("tcp://"))
        {
            (rest, false, 1883)
        } else {
            return Err(Error::BadUrl(s.url.clone()));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| Error::BadUrl(s.url.clone()))?),
            None => (rest, default_port),
        };
        if host.is_empty() {
            return Err(Error::BadUrl(s.url.clone()));
        }
        // Empty: the host name, as the default config documents.
        let device_id = if s.device_id.is_empty() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default()
        } else {
            s.device_id.clone()
        };
        if device_id.is_empty() {
            return Err(Error::NoDeviceId);
        }
        if device_id.contains(['/', '+', '#']) {
            return Err(Error::BadDeviceId(device_id));
        }
        let files = TlsFiles {
            ca_file: path(&s.ca_file),
            client_cert: path(&s.client_cert),
            client_key: path(&s.client_key),
        };
        let tls = if tls {
            Some(TlsClient::new(files)?)
        } else {
            if files != TlsFiles::default() {
                return Err(Error::TlsFilesWithoutTls(s.url.clone()));
            }
            None
        };
        Ok(Some(SyncOptions {
            host: host.to_string(),
            port,
            device_id,
            topic_prefix: s.topic_prefix.clone(),
            username: s.username.clone(),
            password: s.password.clone(),
            reconnect_delay: Duration::from_secs(1),
            tls,
            seen_retention: (s.seen_retention_days > 0)
                .then(|| Duration::from_secs(s.seen_retention_days * 86_400)),
            snapshot_when_empty: s.snapshot_when_empty,
        }))
    }

    /// `host:port`, with the scheme, for logs.
    pub fn broker(&self) -> String {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// rumqttc options for a connection with `client_id`: transport and credentials.
    pub fn mqtt(&self, client_id: String) -> MqttOptions {
        let mut mqtt = MqttOptions::new(client_id, self.host.clone(), self.port);
        if let Some(tls) = &self.tls {
            mqtt.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.config.clone(),
            )));
        }
        if !self.username.is_empty() {
            mqtt.set_credentials(self.username.clone(), self.password.clone());
        }
        mqtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::sync::TlsError;

    fn with(url: &str, device: &str) -> Result<Option<SyncOptions>, Error> {
        let mut config = Config::default();
        config.sync.url = url.into();
        config.sync.device_id = device.into();
        SyncOptions::from_config(&config)
    }

    #[test]
    fn an_empty_url_turns_sync_off() {
        assert_eq!(with("", "d").unwrap(), None);
    }

    #[test]
    fn a_broker_url_gives_host_port_and_device() {
        let o = with("mqtt://10.0.0.5:1884", "door-1").unwrap().unwrap();
        assert_eq!((o.host.as_str(), o.port), ("10.0.0.5", 1884));
        assert_eq!(o.device_id, "door-1");
        assert!(o.tls.is_none());
        let o = with("mqtt://broker", "door-1").unwrap().unwrap();
        assert_eq!(o.port, 1883);
        assert_eq!(
            o.seen_retention,
            Some(Duration::from_secs(30 * 86_400)),
            "the documented default retention"
        );
    }

    #[test]
    fn bad_urls_and_wildcard_device_ids_are_configuration_errors() {
        assert!(matches!(with("http://x:1", "d"), Err(Error::BadUrl(_))));
        assert!(matches!(with("mqtt://x:port", "d"), Err(Error::BadUrl(_))));
        assert!(matches!(
            with("mqtt://x:1", "a/b"),
            Err(Error::BadDeviceId(_))
        ));
    }

    #[test]
    fn an_mqtts_url_needs_readable_pem_files_and_defaults_to_port_8883() {
        let mut config = Config::default();
        config.sync.url = "mqtts://broker.example".into();
        config.sync.device_id = "d".into();
        config.sync.ca_file = "/nonexistent/ca.pem".into();
        let err = SyncOptions::from_config(&config).unwrap_err();
        assert!(matches!(err, Error::Tls(TlsError::Read { .. })), "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        // The same files with a plain URL are a mistake, said so.
        config.sync.url = "mqtt://broker.example".into();
        assert!(matches!(
            SyncOptions::from_config(&config),
            Err(Error::TlsFilesWithoutTls(_))
        ));
    }
}
