//! Topic names (docs/sync.md).

/// The topics of one device under a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    pub prefix: String,
    pub device: String,
}

/// Where an incoming message came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `{prefix}/ops/{client}`: the central server's operations for one client.
    Central { client: String },
    /// `{prefix}/devices/{device}/events`: a peer device's own changes.
    Peer { device: String },
    /// `{prefix}/devices/{us}/snapshot`: a snapshot the central server sends us.
    Snapshot,
}

impl Topics {
    pub fn new(prefix: &str, device: &str) -> Topics {
        Topics {
            prefix: prefix.trim_end_matches('/').to_string(),
            device: device.to_string(),
        }
    }

    /// This device's events (its local changes and refusal reports).
    pub fn events(&self) -> String {
        format!("{}/devices/{}/events", self.prefix, self.device)
    }

    /// This device's door commands (`open`, src/door): what door controllers and home
    /// automation subscribe to.
    pub fn door(&self) -> String {
        format!("{}/devices/{}/door", self.prefix, self.device)
    }

    /// Retained "online" / "offline" (the last will).
    pub fn status(&self) -> String {
        format!("{}/devices/{}/status", self.prefix, self.device)
    }

    /// Subscriptions: the central's operations for every client, peer events, and the
    /// snapshots sent to us.
    pub fn subscriptions(&self) -> [String; 3] {
        [
            format!("{}/ops/+", self.prefix),
            format!("{}/devices/+/events", self.prefix),
            self.snapshot(),
        ]
    }

    /// This device's requests to the central server (snapshot requests).
    pub fn requests(&self) -> String {
        format!("{}/devices/{}/requests", self.prefix, self.device)
    }

    /// Every device's requests (what the central server subscribes to).
    pub fn all_requests(&self) -> String {
        format!("{}/devices/+/requests", self.prefix)
    }

    /// Snapshots sent by the central server to this device.
    pub fn snapshot(&self) -> String {
        format!("{}/devices/{}/snapshot", self.prefix, self.device)
    }

    /// Snapshots for `device`.
    pub fn snapshot_for(&self, device: &str) -> String {
        format!("{}/devices/{device}/snapshot", self.prefix)
    }

    /// The device of a request topic.
    pub fn request_device<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic
            .strip_prefix(&self.prefix)?
            .strip_prefix("/devices/")?;
        let device = rest.strip_suffix("/requests")?;
        (!device.is_empty() && !device.contains('/')).then_some(device)
    }

    /// Operations from the central server for `client`.
    pub fn ops_for(&self, client: &str) -> String {
        format!("{}/ops/{}", self.prefix, client)
    }

    pub fn classify(&self, topic: &str) -> Option<Source> {
        let rest = topic.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["ops", client] if !client.is_empty() => Some(Source::Central {
                client: client.to_string(),
            }),
            ["devices", device, "events"] if !device.is_empty() => Some(Source::Peer {
                device: device.to_string(),
            }),
            ["devices", device, "snapshot"] if *device == self.device => Some(Source::Snapshot),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_classified_by_their_shape() {
        let t = Topics::new("fg/", "door-1");
        assert_eq!(t.events(), "fg/devices/door-1/events");
        assert_eq!(t.door(), "fg/devices/door-1/door");
        assert_eq!(t.classify("fg/devices/door-2/door"), None);
        assert_eq!(
            t.classify("fg/ops/acme"),
            Some(Source::Central {
                client: "acme".into()
            })
        );
        assert_eq!(
            t.classify("fg/devices/door-2/events"),
            Some(Source::Peer {
                device: "door-2".into()
            })
        );
        assert_eq!(t.classify("fg/devices/door-2/status"), None);
        assert_eq!(
            t.classify("fg/devices/door-1/snapshot"),
            Some(Source::Snapshot)
        );
        assert_eq!(t.classify("fg/devices/door-2/snapshot"), None);
        assert_eq!(
            t.request_device("fg/devices/door-2/requests"),
            Some("door-2")
        );
        assert_eq!(t.request_device("fg/devices/door-2/events"), None);
        assert_eq!(t.classify("other/ops/acme"), None);
    }
}
