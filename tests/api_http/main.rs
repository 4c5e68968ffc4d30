//! The Face API over real HTTP on 127.0.0.1, with the real models on real photos and
//! a real LMDB store in a temp folder, served in-process on port 0.

mod admission;
mod compat;
mod endpoints;
mod hardening;
mod robustness;
mod scopes;
mod status_codes;
mod support;
