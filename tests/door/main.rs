//! Door actions (issue 12) with real parts: real models on frames built from real photos,
//! the real camera loop or the real `facegate serve` binary on a `dir:` source, real
//! LMDB in temp folders, a webhook receiver in Python (http.server) that checks the
//! HMAC signature on its own, and a real MQTT broker (rumqttd in-process). The GPIO
//! relay is the recording implementation: these machines have no GPIO chip.

#[path = "../sync_support/broker.rs"]
mod broker;
mod camera_loop;
mod daemon;
mod receiver;
#[path = "../camera/sequence.rs"]
mod sequence;
#[path = "../camera/subscriber.rs"]
mod subscriber;
#[path = "../camera/support.rs"]
mod support;

use std::time::{Duration, Instant};

/// A hang guard, not a timing check.
pub const WAIT: Duration = Duration::from_secs(180);

pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
