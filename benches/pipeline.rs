//! Criterion benchmarks of the recognition pipeline on a 640x480 JPEG with the real
//! models: decode, detect, and the whole analysis of the largest face, single session
//! and single XNNPACK thread. Needs libLiteRt.so (cross/fetch-litert.sh); without it the
//! benchmarks say so and do nothing.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use facegate::runtime::Runtime;
use facegate::vision::{decode_image, DecodeLimits, FaceSelection, Pipeline, PipelineOptions};

fn fixture() -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision/group_640x480.jpg");
    std::fs::read(path).expect("fixture")
}

fn pipeline() -> Option<Pipeline> {
    let runtime = match Runtime::locate_and_load(None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("skipping pipeline benchmarks: {e}");
            return None;
        }
    };
    let options = PipelineOptions {
        models_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models-tflite"),
        ..PipelineOptions::default()
    };
    Some(Pipeline::load(&runtime, options).expect("models"))
}

fn stages(c: &mut Criterion) {
    let bytes = fixture();
    c.bench_function("decode_640x480_jpeg", |b| {
        b.iter(|| decode_image(&bytes, &DecodeLimits::default()).expect("decode"))
    });
    let Some(pipeline) = pipeline() else { return };
    let image = pipeline.decode(&bytes).expect("decode");
    c.bench_function("detect_640x480", |b| {
        b.iter(|| pipeline.detect(&image).expect("detect"))
    });
    c.bench_function("analyze_largest_face_640x480", |b| {
        b.iter(|| {
            pipeline
                .analyze(&image, FaceSelection::Largest)
                .expect("analyze")
        })
    });
    let chip = pipeline
        .analyze(&image, FaceSelection::Largest)
        .expect("analyze")[0]
        .aligned
        .clone();
    c.bench_function("embed_aligned_chip", |b| {
        b.iter(|| pipeline.embed_stored_crop(&chip, None).expect("embed"))
    });
}

criterion_group!(benches, stages);
criterion_main!(benches);
