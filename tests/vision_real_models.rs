//! The recognition pipeline on real photos with the real models and the real LiteRT
//! runtime (libLiteRt.so from `cross/fetch-litert.sh`; see README).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use facegate::runtime::Runtime;
use facegate::vision::{
    self, DecodeError, FaceSelection, Pipeline, PipelineOptions, DEFAULT_THRESHOLD,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vision")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pipeline() -> Arc<Pipeline> {
    static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();
    PIPELINE
        .get_or_init(|| {
            let runtime =
                Runtime::locate_and_load(None).expect("LiteRT library (run cross/fetch-litert.sh)");
            let options = PipelineOptions {
                models_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models-tflite"),
                workers: 2,
                ..PipelineOptions::default()
            };
            Arc::new(Pipeline::load(&runtime, options).expect("models load"))
        })
        .clone()
}

fn largest_face_embedding(p: &Pipeline, bytes: &[u8]) -> vision::Embedding {
    p.analyze_bytes(bytes, FaceSelection::Largest).unwrap()[0]
        .embedding
        .clone()
}

fn similarity(a: &str, b: &str) -> f32 {
    let p = pipeline();
    let fa = p
        .analyze_bytes(&fixture(a), FaceSelection::Largest)
        .unwrap();
    let fb = p
        .analyze_bytes(&fixture(b), FaceSelection::Largest)
        .unwrap();
    vision::similarity(fa[0].embedding.cosine(&fb[0].embedding))
}

#[test]
fn the_same_person_scores_above_the_default_threshold() {
    for (a, b) in [("amy1.png", "amy2.png"), ("sheldon1.png", "sheldon3.png")] {
        let s = similarity(a, b);
        assert!(s > DEFAULT_THRESHOLD, "{a} vs {b}: {s}");
    }
}

#[test]
fn different_people_score_below_the_default_threshold() {
    for (a, b) in [("amy2.png", "sheldon1.png"), ("penny1.png", "sheldon3.png")] {
        let s = similarity(a, b);
        assert!(s < DEFAULT_THRESHOLD, "{a} vs {b}: {s}");
    }
}

#[test]
fn a_picture_without_a_face_gives_no_face() {
    let faces = pipeline()
        .analyze_bytes(&fixture("white.png"), FaceSelection::All)
        .unwrap();
    assert!(faces.is_empty(), "{} faces", faces.len());
}

#[test]
fn masked_faces_are_flagged_and_unmasked_are_not() {
    let p = pipeline();
    for name in ["masked_real_0129.jpg", "masked_synthetic_101.jpg"] {
        let faces = p
            .analyze_bytes(&fixture(name), FaceSelection::Largest)
            .unwrap();
        assert!(faces[0].masked, "{name}: {}", faces[0].mask_probability);
    }
    let faces = p
        .analyze_bytes(&fixture("amy1.png"), FaceSelection::Largest)
        .unwrap();
    assert!(!faces[0].masked, "amy1: {}", faces[0].mask_probability);
}

#[test]
fn faces_in_a_group_photo_come_largest_first_with_keypoints_inside_their_boxes() {
    let faces = pipeline()
        .analyze_bytes(&fixture("group_640x480.jpg"), FaceSelection::All)
        .unwrap();
    assert!(faces.len() >= 4, "{} faces", faces.len());
    for pair in faces.windows(2) {
        assert!(pair[0].detection.bbox.area() >= pair[1].detection.bbox.area());
    }
    for f in &faces {
        let b = f.detection.bbox;
        let k = f.detection.keypoints;
        for p in [k.right_eye, k.left_eye, k.nose_tip, k.mouth] {
            assert!(
                p.x >= b.x - 2.0
                    && p.x <= b.x + b.width + 2.0
                    && p.y >= b.y - 2.0
                    && p.y <= b.y + b.height + 2.0
            );
        }
        assert!(
            k.right_eye.x < k.left_eye.x,
            "the subject's right eye is on the image's left"
        );
        assert_eq!(
            f.aligned.dimensions(),
            (vision::ALIGNED_SIZE, vision::ALIGNED_SIZE)
        );
    }
}

#[test]
fn the_pipeline_gives_identical_embeddings_from_several_threads() {
    let p = pipeline();
    let bytes = fixture("amy1.png");
    let reference = largest_face_embedding(&p, &bytes);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (p, bytes) = (p.clone(), bytes.clone());
            std::thread::spawn(move || {
                (0..5)
                    .map(|_| largest_face_embedding(&p, &bytes))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for e in h.join().unwrap() {
            assert_eq!(e, reference);
        }
    }
}

#[test]
fn a_stored_aligned_crop_re_embeds_to_the_same_embedding() {
    let p = pipeline();
    let face = p
        .analyze_bytes(&fixture("sheldon1.png"), FaceSelection::Largest)
        .unwrap()
        .remove(0);
    let (again, points) = p.embed_stored_crop(&face.aligned, None).unwrap();
    assert!(again.cosine(&face.embedding) > 0.9999);
    assert_eq!(points, p.crop_points());
    let (again, _) = p
        .embed_stored_crop(&face.aligned, Some(&p.crop_points()))
        .unwrap();
    assert!(again.cosine(&face.embedding) > 0.9999);
    // The crop enrollment stores: the chip with a margin, cut back out by a
    // whole-pixel shift.
    for photo in ["sheldon1.png", "single_640x480.jpg", "group_640x480.jpg"] {
        let face = p
            .analyze_bytes_to_store(&fixture(photo), FaceSelection::Largest)
            .unwrap()
            .remove(0);
        let stored = face.stored_crop.as_ref().unwrap();
        assert!(stored.image.width() > 150 && stored.image.height() > 150);
        let (again, read_as) = p
            .embed_stored_crop(&stored.image, Some(&stored.points))
            .unwrap();
        assert_eq!(read_as, stored.points);
        eprintln!("{photo}: {}", again.cosine(&face.embedding));
        assert!(again.cosine(&face.embedding) > 0.9999, "{photo}");
    }
}

fn decode_error(bytes: &[u8]) -> DecodeError {
    match pipeline().analyze_bytes(bytes, FaceSelection::All) {
        Err(vision::Error::Decode(e)) => e,
        Err(other) => panic!("expected a decode error, got {other}"),
        Ok(faces) => panic!("expected a decode error, got {} faces", faces.len()),
    }
}

#[test]
fn malformed_inputs_give_typed_errors() {
    let jpeg = fixture("group_640x480.jpg");
    assert_eq!(decode_error(b""), DecodeError::Empty);
    assert_eq!(
        decode_error(b"{\"not\": \"an image\"}"),
        DecodeError::UnsupportedFormat
    );
    assert_eq!(
        decode_error(b"GIF89a\x01\x00\x01\x00\x80\x00\x00"),
        DecodeError::UnsupportedFormat
    );
    assert_eq!(
        decode_error(b"BM\x3a\x00\x00\x00\x00\x00"),
        DecodeError::UnsupportedFormat
    );
    assert!(matches!(
        decode_error(&jpeg[..jpeg.len() / 4]),
        DecodeError::Corrupt(_)
    ));
    assert!(matches!(
        decode_error(&jpeg[..600]),
        DecodeError::Corrupt(_)
    ));
    let mut png = fixture("amy1.png");
    png.truncate(200);
    assert!(matches!(decode_error(&png), DecodeError::Corrupt(_)));
    // A PNG header claiming 20000 x 20000 pixels must be refused without decoding it.
    let mut huge = fixture("white.png");
    huge[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    assert!(matches!(
        decode_error(&huge),
        DecodeError::TooLarge { .. } | DecodeError::Corrupt(_)
    ));
}

#[test]
fn the_mirror_runs_only_for_a_decision_near_its_threshold_and_then_matches_the_template() {
    let p = pipeline();
    let bytes = fixture("single_640x480.jpg");
    let first = |faces: Vec<facegate::vision::Face>| faces.into_iter().next().unwrap().embedding;
    let template = first(p.analyze_bytes(&bytes, FaceSelection::Largest).unwrap());
    let asked = std::cell::Cell::new(0);
    let far = first(
        p.analyze_bytes_deciding(&bytes, FaceSelection::Largest, &|_| {
            asked.set(asked.get() + 1);
            false
        })
        .unwrap(),
    );
    let near = first(
        p.analyze_bytes_deciding(&bytes, FaceSelection::Largest, &|_| true)
            .unwrap(),
    );
    assert_eq!(asked.get(), 1, "the decision is asked once per face");
    // Far from the threshold: the single embedding, close to the template but not it.
    assert!(far != template);
    assert!(far.cosine(&template) > 0.98, "{}", far.cosine(&template));
    // Near: averaged with the mirror, the template's embedding space to rounding.
    assert!(
        near.cosine(&template) > 0.9999,
        "{}",
        near.cosine(&template)
    );
}

/// The pinned embedding of the largest face of a colour photo (most face fixtures are
/// grey, so a channel mix-up anywhere between the decoder and the embedder's input passes
/// every other test; on the LFW development pairs it costs half a point: DevTest 98.6 % ->
/// 98.1 %). Pinned from the shipped pipeline, which scores DevTest 98.6 % (docs/accuracy.md).
const COLOUR_PIN: &str = "single_640x480.embedding.json";

/// `bytes` with red and blue swapped, as PNG.
fn channels_swapped(bytes: &[u8]) -> Vec<u8> {
    let mut img = image::load_from_memory(bytes).unwrap().to_rgb8();
    for px in img.pixels_mut() {
        px.0.swap(0, 2);
    }
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

#[test]
fn a_colour_photo_embeds_as_pinned_and_a_channel_mix_up_does_not() {
    let p = pipeline();
    let bytes = fixture("single_640x480.jpg");
    let got = largest_face_embedding(&p, &bytes);
    let pinned: Vec<f32> = serde_json::from_slice(&fixture(COLOUR_PIN)).unwrap();
    let pinned = vision::Embedding::from_raw(&pinned).unwrap();
    // Bit-identical on x86_64 and ARM by design (docs/accuracy.md); the slack is for
    // float summation order in other CPUs' kernels.
    assert!(
        got.cosine(&pinned) > 0.9999,
        "cosine {} to the pin; if the change is intended and the LFW figures hold, \
         write tests/fixtures/vision/{COLOUR_PIN} as {:?}",
        got.cosine(&pinned),
        got.as_slice()
    );
    // The same photo with red and blue swapped lands far outside that slack (0.985).
    let swapped = largest_face_embedding(&p, &channels_swapped(&bytes));
    assert!(
        swapped.cosine(&pinned) < 0.995,
        "{}",
        swapped.cosine(&pinned)
    );
}
