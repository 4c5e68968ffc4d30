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

    /// Retained "online" / "offline" (the last will).
    pub fn status(&self) -> String {
        format!("{}/devices/{}/status", self.prefix, self.device)
    }

    /// Subscriptions: the central's operations for every client, and peer events.
    pub fn subscriptions(&self) -> [String; 2] {
        [
            format!("{}/ops/+", self.prefix),
            format!("{}/devices/+/events", self.prefix),
        ]
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
        assert_eq!(t.classify("other/ops/acme"), None);
    }
}
