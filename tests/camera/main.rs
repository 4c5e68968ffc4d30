//! Camera kiosk mode with real parts: real models on frames built from real photos,
//! real LMDB in temp folders, a real MJPEG stream and real HTTP on 127.0.0.1.

mod kiosk_http;
mod mjpeg;
mod replay;
mod sequence;
mod support;
