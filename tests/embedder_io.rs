//! An operator's own embedder file, in the forms converters write: channels first
//! (PyTorch through ai-edge-torch or onnx-tf), an open batch dimension (Keras without a
//! fixed batch), full-integer int8 or uint8 inputs and outputs, and a second output of
//! another type before the embedding. Each is the same small network
//! (tests/fixtures/models/make_io_variants.py), run by the real LiteRT runtime through
//! the real pipeline on real photos: every form must give the float NHWC file's
//! embedding, and a description that does not fit is refused at load.

use std::path::{Path, PathBuf};

use facegate::vision::{self, Embedding, FaceSelection, Pipeline};

#[path = "common/real_models.rs"]
mod real_models;
use real_models::load_models_in;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Description of the fixture network: 48x48 RGB in -1..1, 16 values out.
fn description(layout: &str, extra: &str) -> String {
    format!(
        r#"
input_size = [48, 48]
input_layout = "{layout}"
normalisation = {{ kind = "scale_offset", scale = [0.0078431373, 0.0078431373, 0.0078431373], offset = [-1.0, -1.0, -1.0] }}
crop = {{ kind = "arcface_112" }}
output_dim = 16
flip_average = false
{extra}
"#
    )
}

/// The shipped mask classifier.
const MASK: &str = "mask_mnv2_128_int8.tflite";
/// The shipped embedder.
const DLIB: &str = "dlib_face_recognition_int8.tflite";

/// A models folder with the shipped detector and mask model, the fixture `file` as the
/// embedder and `sidecar` as its description.
fn models_dir(file: &str, sidecar: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["face_detection_short_range.tflite", MASK] {
        std::fs::copy(repo("models-tflite").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        repo("tests/fixtures/models").join(file),
        dir.path().join(file),
    )
    .unwrap();
    std::fs::write(dir.path().join(format!("{file}.toml")), sidecar).unwrap();
    dir
}

fn load(file: &str, sidecar: &str) -> Result<Pipeline, vision::Error> {
    let dir = models_dir(file, sidecar);
    load_models_in(dir.path(), file, None)
}

/// The error that refuses `file` with `sidecar` at load.
fn refusal(file: &str, sidecar: &str) -> String {
    load(file, sidecar).unwrap_err().to_string()
}

/// The error that refuses the models in `dir` with `embedder` (and `mask`) at load.
fn refusal_in(dir: &Path, embedder: &str, mask: Option<&str>) -> String {
    load_models_in(dir, embedder, mask).unwrap_err().to_string()
}

/// Asserts that the three photos' embeddings differ (cosine < 0.95 for each pair), so
/// that a comparison with them can fail.
fn assert_tells_the_photos_apart(e: &[Embedding]) {
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        assert!(e[i].cosine(&e[j]) < 0.95, "{i} {j}: {}", e[i].cosine(&e[j]));
    }
}

/// Colour photos (most face fixtures are grey, where a channel mix-up cannot show).
const PHOTOS: [&str; 3] = [
    "tests/fixtures/vision/single_640x480.jpg",
    "tests/fixtures/vision/masked_synthetic_101.jpg",
    "tests/fixtures/api/bbt3.jpg",
];

/// The embedding of the largest face of each photo.
fn embeddings(pipeline: &Pipeline) -> Vec<Embedding> {
    PHOTOS
        .iter()
        .map(|p| {
            let bytes = std::fs::read(repo(p)).unwrap();
            let faces = pipeline
                .analyze_bytes(&bytes, FaceSelection::Largest)
                .unwrap();
            faces[0].embedding.clone()
        })
        .collect()
}

fn reference() -> Vec<Embedding> {
    embeddings(&load("io_nhwc_f32.tflite", &description("nhwc_rgb", "")).unwrap())
}

/// The smallest cosine between the embeddings of the same photo.
fn agreement(a: &[Embedding], b: &[Embedding]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.cosine(y))
        .fold(f32::INFINITY, f32::min)
}

#[test]
fn the_reference_network_tells_the_three_photos_apart() {
    // Otherwise the comparisons below could not fail.
    let e = reference();
    assert_tells_the_photos_apart(&e);
}

#[test]
fn a_channels_first_file_gives_the_channels_last_files_embedding() {
    let nchw = load("io_nchw_f32.tflite", &description("nchw_rgb", "")).unwrap();
    let got = embeddings(&nchw);
    assert!(agreement(&got, &reference()) > 0.9999, "{got:?}");
    // Read with the wrong channel order, the same file gives other vectors.
    let bgr = load("io_nchw_f32.tflite", &description("nchw_bgr", "")).unwrap();
    assert!(agreement(&embeddings(&bgr), &reference()) < 0.999);
}

#[test]
fn a_file_with_an_open_batch_dimension_runs_as_a_batch_of_one() {
    let dynamic = load("io_dynamic_batch_f32.tflite", &description("nhwc_rgb", "")).unwrap();
    assert!(agreement(&embeddings(&dynamic), &reference()) > 0.9999);
}

#[test]
fn full_integer_files_take_inputs_quantized_as_litert_quantizes_them() {
    // The same integer network with float edges: LiteRT's own QUANTIZE op fills its
    // int8 input. facegate's quantization of the chip must give the same embedding
    // (rounding half away from zero instead of to even, as XNNPACK does, gave
    // 0.99976 here: the chip's values of this network fall on rounding ties).
    let float_edges =
        embeddings(&load("io_int8_float_io.tflite", &description("nhwc_rgb", "")).unwrap());
    let reference = reference();
    for file in ["io_int8.tflite", "io_uint8.tflite"] {
        let quantized = load(file, &description("nhwc_rgb", "")).unwrap();
        let got = embeddings(&quantized);
        assert!(agreement(&got, &float_edges) > 0.999999, "{file}: {got:?}");
        // And close to the float network (what int8 costs this small network).
        assert!(agreement(&got, &reference) > 0.98, "{file}: {got:?}");
    }
}

#[test]
fn the_embedding_output_is_chosen_by_name_when_the_model_has_several() {
    let file = "io_int64_extra_output.tflite";
    // Without a name the first output (512 int64 values) is taken, and refused with
    // every output listed.
    let err = refusal(file, &description("nhwc_rgb", ""));
    assert!(err.contains("has 512 values"), "{err}");
    assert!(
        err.contains("\"StatefulPartitionedCall_1:0\" [1, 16] float32"),
        "{err}"
    );
    assert!(err.contains("output = "), "{err}");
    let named = description("nhwc_rgb", "output = \"StatefulPartitionedCall_1:0\"");
    let pipeline = load(file, &named).unwrap();
    assert!(agreement(&embeddings(&pipeline), &reference()) > 0.9999);
    let wrong = description("nhwc_rgb", "output = \"embedding\"");
    let err = refusal(file, &wrong);
    assert!(err.contains("no output named \"embedding\""), "{err}");
}

#[test]
fn a_layout_that_does_not_fit_the_file_is_refused_at_load_with_both_shapes() {
    let err = refusal("io_nchw_f32.tflite", &description("nhwc_rgb", ""));
    assert!(
        err.contains("input shape is [1, 3, 48, 48], described: [1, 48, 48, 3]"),
        "{err}"
    );
    let err = refusal("io_nhwc_f32.tflite", &description("nchw_rgb", ""));
    assert!(err.contains("described: [1, 3, 48, 48]"), "{err}");
    assert!(err.contains("NCHW"), "{err}");
}

#[test]
fn a_quantized_mask_model_is_refused_at_load_naming_its_input_type() {
    // An operator's full-integer file as the mask classifier: refused before serving.
    let dir = models_dir("io_uint8.tflite", &description("nhwc_rgb", ""));
    let err = refusal_in(dir.path(), "io_uint8.tflite", Some("io_uint8.tflite"));
    assert!(err.contains("io_uint8.tflite"), "{err}");
    assert!(err.contains("mask classifier"), "{err}");
}

#[test]
fn a_file_that_is_not_tflite_is_refused_as_such() {
    // An ONNX file under a .tflite name, as an operator may try first.
    let dir = models_dir("io_nhwc_f32.tflite", &description("nhwc_rgb", ""));
    let onnx = b"\x08\x07\x12\x07pytorch\x1a\x052.1.0:\xa4\x01\n\x05input";
    std::fs::write(dir.path().join("mine.onnx.tflite"), onnx).unwrap();
    std::fs::write(
        dir.path().join("mine.onnx.tflite.toml"),
        description("nhwc_rgb", ""),
    )
    .unwrap();
    let err = refusal_in(dir.path(), "mine.onnx.tflite", None);
    assert!(err.contains("mine.onnx.tflite"), "{err}");
    assert!(err.contains("not a TensorFlow Lite file"), "{err}");
}

#[test]
fn a_chip_that_is_not_square_is_cut_and_embedded() {
    // 40 wide, 48 high (as 96x112 SphereFace-family models): the template's square of
    // the chip's height, centred (src/vision/align.rs); a description with width and
    // height swapped is refused with both shapes.
    let file = "io_nhwc_f32_40x48.tflite";
    let narrow = description("nhwc_rgb", "").replace("[48, 48]", "[40, 48]");
    let e = embeddings(&load(file, &narrow).unwrap());
    assert_tells_the_photos_apart(&e);
    let swapped = description("nhwc_rgb", "").replace("[48, 48]", "[48, 40]");
    let err = refusal(file, &swapped);
    assert!(
        err.contains("input shape is [1, 48, 40, 3], described: [1, 40, 48, 3]"),
        "{err}"
    );
}

#[test]
fn the_shipped_embedders_stored_crop_is_recut_to_another_embedders_chip() {
    // `reembed` or a replica after a switch from the shipped embedder (dlib's 150x150
    // chip) to this 48x48 network with ArcFace's template: the 48x48 chip is cut from
    // the stored crop, and must match the one cut from the photo.
    let shipped = real_models::load_models_in(&real_models::models_dir(), DLIB, None).unwrap();
    let small = load("io_nhwc_f32.tflite", &description("nhwc_rgb", "")).unwrap();
    for photo in PHOTOS {
        let bytes = std::fs::read(repo(photo)).unwrap();
        let face = shipped
            .analyze_bytes_to_store(&bytes, FaceSelection::Largest)
            .unwrap()
            .remove(0);
        let stored = face.stored_crop.clone().unwrap();
        let direct = small
            .analyze_bytes(&bytes, FaceSelection::Largest)
            .unwrap()
            .remove(0)
            .embedding;
        let (recut, read_as) = small
            .embed_stored_crop(&stored.image, Some(&stored.points))
            .unwrap();
        assert_eq!(read_as, stored.points);
        // What crops were before they had a margin and points: the bare 150x150 chip,
        // read as dlib's. ArcFace's template reaches above the chip: black there.
        let (bare_chip, read_as) = small.embed_stored_crop(&face.aligned, None).unwrap();
        assert_eq!(read_as, shipped.crop_points());
        // Read wrongly: the whole chip as this network's template (ArcFace's points
        // scaled to 150 px), as if it had been cut for it.
        let as_arcface = vision::CropPoints(small.crop_points().0.map(|p| vision::Point {
            x: p.x * 150.0 / 48.0,
            y: p.y * 150.0 / 48.0,
        }));
        let (wrong, _) = small
            .embed_stored_crop(&face.aligned, Some(&as_arcface))
            .unwrap();
        let [recut, bare_chip, wrong] = [recut, bare_chip, wrong].map(|e| e.cosine(&direct));
        eprintln!("{photo}: recut {recut}, from the bare chip {bare_chip}, read as cut for this network {wrong}");
        assert!(recut > 0.99, "{photo}: {recut}");
        assert!(bare_chip > wrong + 0.05, "{photo}: {bare_chip} {wrong}");
    }
}

#[test]
fn an_unrecorded_crop_of_an_unknown_size_is_refused_naming_both_sizes() {
    let small = load("io_nhwc_f32.tflite", &description("nhwc_rgb", "")).unwrap();
    let err = small
        .embed_stored_crop(&image::RgbImage::new(112, 112), None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            vision::Error::StoredChipLayout {
                found: (112, 112),
                expected: (48, 48)
            }
        ),
        "{err}"
    );
}
