//! Shared by the integration-test binaries that load the real models themselves (with
//! options of their own): the LiteRT runtime, loaded once per binary, the models folder
//! and the photos of tests/fixtures/vision and tests/fixtures/mask. Included with `#[path]`.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use facegate::runtime::Runtime;

pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::locate_and_load(None).expect("LiteRT library (run cross/fetch-litert.sh)")
    })
}

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models-tflite")
}

/// The bytes of `tests/fixtures/vision/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    read_fixture("vision", name)
}

/// The bytes of `tests/fixtures/mask/<name>` (synthetic-masked photos).
pub fn mask_fixture(name: &str) -> Vec<u8> {
    read_fixture("mask", name)
}

fn read_fixture(folder: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
