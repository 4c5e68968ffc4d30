//! A door camera sees people from a distance: in a 1280x720 frame a face 1.5 m away is
//! about 150 px wide, which BlazeFace short range (the frame read at 128x128) misses or
//! finds with misplaced eyes. The full-range retry (`recognition.far_face_retry_below`)
//! must find and recognise it, with the real models on real photos.

use std::path::Path;

use facegate::runtime::Runtime;
use facegate::vision::{FaceSelection, Pipeline, PipelineOptions, FAR_RETRY_BELOW};
use image::{imageops, Rgb, RgbImage};

fn pipeline(far_face_retry_below: f32) -> Pipeline {
    let runtime =
        Runtime::locate_and_load(None).expect("LiteRT library (run cross/fetch-litert.sh)");
    let options = PipelineOptions {
        models_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("models-tflite"),
        far_face_retry_below,
        ..PipelineOptions::default()
    };
    Pipeline::load(&runtime, options).expect("models load")
}

fn photo(file: &str) -> RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/api")
        .join(file);
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

/// `face` (a 150x150 portrait) in a grey frame of `width` x `height`, a little left of
/// the centre, as a person standing back from the camera.
fn frame(face: &RgbImage, width: u32, height: u32) -> Vec<u8> {
    let mut frame = RgbImage::from_pixel(width, height, Rgb([118, 120, 122]));
    let x = i64::from(width / 2 - 200);
    let y = i64::from(height / 3);
    imageops::overlay(&mut frame, face, x, y);
    let mut bytes = std::io::Cursor::new(Vec::new());
    frame
        .write_to(&mut bytes, image::ImageFormat::Jpeg)
        .expect("encode");
    bytes.into_inner()
}

#[test]
fn a_person_standing_back_in_a_720p_or_1080p_frame_is_found_and_recognised() {
    let with_retry = pipeline(FAR_RETRY_BELOW);
    let without = pipeline(0.0);
    let enrolled = with_retry
        .analyze_bytes(
            &std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/api/sheldon1.png"),
            )
            .unwrap(),
            FaceSelection::Largest,
        )
        .expect("analyse")
        .remove(0)
        .embedding;
    let stranger_face = photo("stuart1.png");
    for (width, height) in [(1000, 562), (1280, 720), (1920, 1080)] {
        let sheldon = frame(&photo("sheldon2.png"), width, height);
        let faces = with_retry
            .analyze_bytes(&sheldon, FaceSelection::Largest)
            .expect("analyse");
        assert_eq!(faces.len(), 1, "{width}x{height}: one face");
        let similarity = with_retry.similarity(faces[0].embedding.cosine(&enrolled));
        assert!(
            similarity >= 0.75,
            "{width}x{height}: Sheldon standing back is Sheldon: {similarity}"
        );
        // Without the retry: at 1280x720 and above no face, or one too misaligned to
        // match (what the retry is for).
        let before = without
            .analyze_bytes(&sheldon, FaceSelection::Largest)
            .expect("analyse");
        let recognised_before = before
            .first()
            .is_some_and(|f| without.similarity(f.embedding.cosine(&enrolled)) >= 0.75);
        assert!(
            width < 1280 || !recognised_before,
            "{width}x{height}: the short-range detector alone recognises him"
        );
        // A stranger standing back is found and is not Sheldon.
        let stuart = with_retry
            .analyze_bytes(
                &frame(&stranger_face, width, height),
                FaceSelection::Largest,
            )
            .expect("analyse");
        assert_eq!(stuart.len(), 1, "{width}x{height}: the stranger's face");
        let similarity = with_retry.similarity(stuart[0].embedding.cosine(&enrolled));
        assert!(
            similarity < 0.75,
            "{width}x{height}: Stuart is not Sheldon: {similarity}"
        );
    }
}
