//! facegate: a face-recognition daemon for camera kiosks.
//!
//! Layers (dependencies point down only):
//! `api`, `camera`, `sync`, `door` -> `gallery` -> `vision`, `index`, `store`; `vision` -> `runtime`.
//! Nothing below `gallery` knows HTTP, MQTT or the camera.

#![deny(unsafe_code)]

pub mod api;
pub mod camera;
pub mod config;
pub mod door;
pub mod gallery;
pub mod index;
pub mod runtime;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod vision;
