//! Logging set-up, and readiness reports to systemd ([`notify`]).

pub mod notify;
