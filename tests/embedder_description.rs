//! Embedder descriptions with the real LiteRT runtime and real model files: a model that
//! does not match its description is refused when the pipeline loads, with an error
//! that names the mismatch; a matching one loads, and its description is part of the
//! template fingerprint.

use std::path::{Path, PathBuf};

use facegate::vision::{self, FaceSelection, Pipeline};

#[path = "common/real_models.rs"]
mod real_models;
use real_models::{load_models_in, SHIPPED_AS_SIDECAR as DLIB_LIKE};

const DLIB: &str = "dlib_face_recognition_int8.tflite";
/// Another shipped network (mask classifier: 128x128 input, 2 outputs), used as an
/// operator's "embedder" that is not what its description says.
const NOT_AN_EMBEDDER: &str = "mask_mnv2_128_int8.tflite";

fn shipped(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models-tflite")
        .join(file)
}

/// A models folder holding the shipped detector and mask model, `file` as an operator's
/// embedder (a copy of the shipped `source`) and, if given, its sidecar description.
fn models_dir(source: &str, file: &str, sidecar: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["face_detection_short_range.tflite", NOT_AN_EMBEDDER] {
        std::fs::copy(shipped(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(shipped(source), dir.path().join(file)).unwrap();
    if let Some(text) = sidecar {
        std::fs::write(dir.path().join(format!("{file}.toml")), text).unwrap();
    }
    dir
}

fn load(dir: &Path, embedder: &str) -> Result<Pipeline, vision::Error> {
    load_models_in(dir, embedder, None)
}

#[test]
fn a_model_whose_input_size_differs_from_its_description_is_refused_at_load() {
    let dir = models_dir(NOT_AN_EMBEDDER, "mine.tflite", Some(DLIB_LIKE));
    let err = load(dir.path(), "mine.tflite").unwrap_err().to_string();
    assert!(err.contains("mine.tflite"), "{err}");
    assert!(err.contains("does not match its description"), "{err}");
    assert!(
        err.contains("input shape is [1, 128, 128, 3], described: [1, 150, 150, 3]"),
        "{err}"
    );
}

#[test]
fn a_model_whose_output_dimension_differs_from_its_description_is_refused_at_load() {
    // Right input (128x128), wrong output: the mask model gives 2 values, not 128.
    let sidecar = DLIB_LIKE.replace("[150, 150]", "[128, 128]");
    let dir = models_dir(NOT_AN_EMBEDDER, "mine.tflite", Some(&sidecar));
    let err = load(dir.path(), "mine.tflite").unwrap_err().to_string();
    assert!(
        err.contains("has 2 values (shape [1, 2]), described: output_dim = 128"),
        "{err}"
    );
    // The dlib network with a 512-d description is refused the same way.
    let sidecar = DLIB_LIKE.replace("output_dim = 128", "output_dim = 512");
    let dir = models_dir(DLIB, "mine.tflite", Some(&sidecar));
    let err = load(dir.path(), "mine.tflite").unwrap_err().to_string();
    assert!(err.contains("has 128 values"), "{err}");
    assert!(err.contains("output_dim = 512"), "{err}");
}

#[test]
fn a_model_without_a_description_is_refused_and_told_where_to_put_one() {
    let dir = models_dir(DLIB, "mine.tflite", None);
    let err = load(dir.path(), "mine.tflite").unwrap_err().to_string();
    assert!(err.contains("no description"), "{err}");
    assert!(err.contains("mine.tflite.toml"), "{err}");
}

#[test]
fn an_operators_file_with_a_matching_sidecar_embeds_and_its_calibration_is_fingerprinted() {
    let photo =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision/amy1.png"));
    let dir = models_dir(DLIB, "mine.tflite", Some(DLIB_LIKE));
    let mine = load(dir.path(), "mine.tflite").unwrap();
    let shipped_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models-tflite");
    let shipped = load(&shipped_dir, DLIB).unwrap();
    // Same bytes, same description as the manifest's: the same embedding space.
    assert_eq!(mine.fingerprint(), shipped.fingerprint());
    if let Ok(photo) = photo {
        let a = mine.analyze_bytes(&photo, FaceSelection::Largest).unwrap();
        let b = shipped
            .analyze_bytes(&photo, FaceSelection::Largest)
            .unwrap();
        assert_eq!(a[0].embedding, b[0].embedding);
    }
    // Another calibration: another fingerprint, and the similarity follows it.
    let recalibrated = DLIB_LIKE.replace("threshold_cosine = 0.917", "threshold_cosine = 0.9");
    let dir2 = models_dir(DLIB, "mine.tflite", Some(&recalibrated));
    let other = load(dir2.path(), "mine.tflite").unwrap();
    assert_ne!(other.fingerprint(), shipped.fingerprint());
    assert!((other.similarity(0.9) - 0.75).abs() < 1e-6);
    assert!(shipped.similarity(0.9) < 0.75);
}
