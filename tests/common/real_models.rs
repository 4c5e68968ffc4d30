//! Shared by the integration-test binaries that load the real models themselves (with
//! options of their own): the LiteRT runtime, loaded once per binary, the models folder
//! and the photos of tests/fixtures/vision and tests/fixtures/mask. Included with `#[path]`.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use facegate::runtime::Runtime;
use facegate::vision::{self, Pipeline, PipelineOptions};

pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::locate_and_load(None).expect("LiteRT library (run cross/fetch-litert.sh)")
    })
}

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models-tflite")
}

/// The pipeline of the models in `dir` with `embedder` as the embedder file and `mask`
/// as the mask classifier (the default file if `None`), other options at their defaults.
pub fn load_models_in(
    dir: &Path,
    embedder: &str,
    mask: Option<&str>,
) -> Result<Pipeline, vision::Error> {
    let defaults = PipelineOptions::default();
    Pipeline::load(
        runtime(),
        PipelineOptions {
            models_dir: dir.to_path_buf(),
            embedder_file: embedder.into(),
            mask_file: mask.map_or(defaults.mask_file.clone(), str::to_string),
            ..defaults
        },
    )
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
