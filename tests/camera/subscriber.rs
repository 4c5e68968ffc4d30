//! A plain MQTT subscriber for the camera and door tests: every (topic, JSON payload)
//! it receives on one filter. Shared by `tests/camera` and `tests/door` (`#[path]`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;

pub struct Subscriber {
    pub received: Arc<Mutex<Vec<(String, Value)>>>,
    pub subscribed: Arc<AtomicBool>,
}

impl Subscriber {
    pub fn start(runtime: &tokio::runtime::Runtime, port: u16, id: &str, filter: String) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(AtomicBool::new(false));
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        // Events carry a face JPEG: above rumqttc's 10 KiB default.
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (r, s) = (received.clone(), subscribed.clone());
        runtime.spawn(async move {
            let (client, mut eventloop) = AsyncClient::new(options, 10);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        let _ = client.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => s.store(true, Ordering::SeqCst),
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        r.lock().unwrap().push((p.topic, value));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Subscriber {
            received,
            subscribed,
        }
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }

    /// The messages whose `op` is `op` (e.g. "recognized", "open").
    pub fn with_op(&self, op: &str) -> Vec<(String, Value)> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|(_, v)| v["op"] == op)
            .cloned()
            .collect()
    }
}
