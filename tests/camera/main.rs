//! Camera kiosk mode with real parts: real models on frames built from real photos,
//! real LMDB in temp folders, a real MJPEG stream, real HTTP on 127.0.0.1 and a real
//! MQTT broker.

mod kiosk_http;
mod mjpeg;
mod mqtt_events;
mod replay;
mod scenes;
mod sequence;
mod subscriber;
mod support;
