//! The mask classifier and the detector's zoom-out retry with the real models, on
//! synthetic-masked faces-small photos (tests/fixtures/mask/README.md).

#[path = "common/real_models.rs"]
mod real_models;

use std::sync::OnceLock;

use facegate::vision::{FaceSelection, Pipeline, PipelineOptions};
use real_models::{mask_fixture as fixture, models_dir, runtime};

fn load(options: PipelineOptions) -> Pipeline {
    let options = PipelineOptions {
        models_dir: models_dir(),
        ..options
    };
    Pipeline::load(runtime(), options).expect("models load")
}

/// The default pipeline: the default mask model, threshold, margin and zoom-out retry.
fn default_pipeline() -> &'static Pipeline {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| load(PipelineOptions::default()))
}

const MASKED: [&str; 3] = [
    "masked_leonard2.jpg",
    "masked_bernadette3.jpg",
    "masked_raj1.jpg",
];
const UNMASKED: [&str; 2] = ["howard1.png", "stuart2.png"];
const TIGHT_MASKED: [&str; 3] = [
    "masked_tight_bernadette2.jpg",
    "masked_tight_leonard5.jpg",
    "masked_tight_stuart5.jpg",
];

#[test]
fn masked_faces_are_flagged_masked() {
    for name in MASKED {
        let faces = default_pipeline()
            .analyze_bytes(&fixture(name), FaceSelection::Largest)
            .unwrap();
        assert_eq!(faces.len(), 1, "{name}");
        assert!(faces[0].masked, "{name}: {}", faces[0].mask_probability);
    }
}

#[test]
fn unmasked_faces_are_not_flagged() {
    for name in UNMASKED {
        let faces = default_pipeline()
            .analyze_bytes(&fixture(name), FaceSelection::Largest)
            .unwrap();
        assert_eq!(faces.len(), 1, "{name}");
        assert!(!faces[0].masked, "{name}: {}", faces[0].mask_probability);
    }
}

#[test]
fn a_masked_face_filling_the_frame_is_found_only_by_zooming_out() {
    let no_retry = load(PipelineOptions {
        detector_zoom_out: 1.0,
        ..PipelineOptions::default()
    });
    for name in TIGHT_MASKED {
        let bytes = fixture(name);
        let missed = no_retry
            .analyze_bytes(&bytes, FaceSelection::Largest)
            .unwrap();
        assert!(missed.is_empty(), "{name}: found without the retry");
        let faces = default_pipeline()
            .analyze_bytes(&bytes, FaceSelection::Largest)
            .unwrap();
        assert_eq!(faces.len(), 1, "{name}: not found with the retry");
        let image = default_pipeline().decode(&bytes).unwrap();
        let (w, h) = (image.width() as f32, image.height() as f32);
        let b = faces[0].detection.bbox;
        // The face fills the picture: its box covers most of it and maps back inside.
        assert!(b.width > 0.6 * w && b.height > 0.6 * h, "{name}: {b:?}");
        assert!(
            b.center().x > 0.0 && b.center().x < w && b.center().y < h,
            "{name}"
        );
        assert!(faces[0].masked, "{name}: {}", faces[0].mask_probability);
    }
}
