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

/// A models folder with the shipped detector, mask classifier and embedder, the embedder
/// described with ArcFace's 112 template (a sidecar) instead of dlib's chip: another
/// crop at the same 150x150 input, so a crop cut for the shipped model and fed as it is
/// would pass unnoticed. For the model-switch tests.
pub fn arcface_template_models() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "face_detection_short_range.tflite",
        "mask_mnv2_128_int8.tflite",
        SHIPPED_EMBEDDER,
    ] {
        std::fs::copy(models_dir().join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join(format!("{SHIPPED_EMBEDDER}.toml")),
        r#"
input_size = [150, 150]
input_layout = "nhwc_rgb"
normalisation = { kind = "scale_offset", scale = [1.0, 1.0, 1.0], offset = [0.0, 0.0, 0.0] }
crop = { kind = "arcface_112" }
output_dim = 128
flip_average = true
"#,
    )
    .unwrap();
    dir
}

/// The shipped embedder's file name.
pub const SHIPPED_EMBEDDER: &str = "dlib_face_recognition_int8.tflite";

/// The shipped embedder's description (as MANIFEST.toml gives it) in sidecar form, for
/// a copy of the shipped file played as an operator's own.
pub const SHIPPED_AS_SIDECAR: &str = r#"
input_size = [150, 150]
input_layout = "nhwc_rgb"
normalisation = { kind = "scale_offset", scale = [1.0, 1.0, 1.0], offset = [0.0, 0.0, 0.0] }
crop = { kind = "dlib_chip", padding = 0.25 }
output_dim = 128
flip_average = true
similarity = { threshold_cosine = 0.917, zero_cosine = 0.5 }
"#;
