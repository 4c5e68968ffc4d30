//! Test-time chips (`recognition.test_time_chips`, issue #14) with the real models on
//! real photos: the embedding is the mean of its chips' embeddings, it differs from the
//! aligned chip's alone, identify/verify's on-demand path gives the template's embedding
//! when near, the fingerprint keeps the spaces apart, and bad settings are refused.

#[path = "common/real_models.rs"]
mod real_models;

use std::collections::HashMap;

use facegate::config::{merge, Config, Error as ConfigError};
use facegate::vision::{ChipJitter, Embedding, FaceSelection, Pipeline, PipelineOptions};
use real_models::{fixture, models_dir, runtime};

fn chips() -> Vec<ChipJitter> {
    vec![
        ChipJitter {
            shift_x: 0.02,
            ..ChipJitter::default()
        },
        ChipJitter {
            rotate_degrees: -3.0,
            scale: 0.97,
            ..ChipJitter::default()
        },
    ]
}

fn pipeline(test_time_chips: Vec<ChipJitter>) -> Pipeline {
    let options = PipelineOptions {
        models_dir: models_dir(),
        test_time_chips,
        ..PipelineOptions::default()
    };
    Pipeline::load(runtime(), options).expect("models load")
}

fn embedding(p: &Pipeline, name: &str) -> Embedding {
    p.analyze_bytes(&fixture(name), FaceSelection::Largest)
        .unwrap()
        .remove(0)
        .embedding
}

fn sum(parts: &[Vec<f32>]) -> Vec<f32> {
    let mut total = vec![0.0; parts[0].len()];
    for part in parts {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    total
}

#[test]
fn the_embedding_is_the_mean_of_its_chips_and_differs_from_the_aligned_chip_alone() {
    let plain = pipeline(Vec::new());
    let tta = pipeline(chips());
    for name in ["amy1.png", "sheldon1.png", "single_640x480.jpg"] {
        let image = tta.decode(&fixture(name)).unwrap();
        let detection = tta.detect(&image).unwrap().remove(0);
        let parts = tta
            .chip_embedding_sums(&image, &detection)
            .unwrap()
            .unwrap();
        assert_eq!(parts.len(), 3, "{name}: the aligned chip and two more");
        // The aligned chip's part is the plain pipeline's embedding.
        let aligned = Embedding::from_raw(&parts[0]).unwrap();
        let single = embedding(&plain, name);
        assert!(aligned.cosine(&single) > 0.99999, "{name}");
        // Each moved chip shows the face a little differently, but still the face.
        for part in &parts[1..] {
            let c = Embedding::from_raw(part).unwrap().cosine(&aligned);
            assert!(c < 0.9995 && c > 0.9, "{name}: moved chip's cosine {c}");
        }
        let mean = Embedding::from_raw(&sum(&parts)).unwrap();
        let with_chips = embedding(&tta, name);
        assert!(mean.cosine(&with_chips) > 0.99999, "{name}");
        assert!(
            with_chips.cosine(&single) < 0.9999,
            "{name}: chips changed nothing"
        );
    }
}

#[test]
fn the_on_demand_path_gives_the_single_chip_when_far_and_the_full_average_when_near() {
    let tta = pipeline(chips());
    let plain = pipeline(Vec::new());
    let bytes = fixture("penny1.png");
    let deciding = |near: bool| {
        tta.analyze_bytes_deciding(&bytes, FaceSelection::Largest, &|_| near)
            .unwrap()
            .remove(0)
            .embedding
    };
    let template = embedding(&tta, "penny1.png");
    assert!(deciding(true).cosine(&template) > 0.99999);
    // Far from the threshold: one embedder run on the aligned chip, as without chips.
    let far = deciding(false);
    let single = plain
        .analyze_bytes_deciding(&bytes, FaceSelection::Largest, &|_| false)
        .unwrap()
        .remove(0)
        .embedding;
    assert!(far.cosine(&single) > 0.99999);
    assert!(far.cosine(&template) < 0.9999);
}

#[test]
fn test_time_chips_change_the_fingerprint() {
    let plain = pipeline(Vec::new());
    let tta = pipeline(chips());
    assert_ne!(plain.fingerprint(), tta.fingerprint());
    // The order of the chips does not change the embedding, but the fingerprint is
    // made of the list as written: a different list is a different setting.
    let other = pipeline(chips()[..1].to_vec());
    assert_ne!(other.fingerprint(), tta.fingerprint());
    assert_eq!(pipeline(chips()).fingerprint(), tta.fingerprint());
}

fn parse_config(text: &str) -> Result<Config, ConfigError> {
    merge(Some(text), "test.toml", &HashMap::<String, String>::new())
}

#[test]
fn the_config_reads_chips_and_refuses_bad_ones() {
    let config = parse_config(
        "[recognition]\ntest_time_chips = [{ shift_x = 0.02 }, { rotate_degrees = -3, scale = 0.97 }]\n",
    )
    .unwrap();
    assert_eq!(config.pipeline_options().test_time_chips, chips());
    assert!(parse_config("")
        .unwrap()
        .recognition
        .test_time_chips
        .is_empty());
    for (bad, says) in [
        ("[{ shift_x = 0.5 }]", "shift_x"),
        ("[{ scale = 2.0 }]", "scale"),
        ("[{ rotate_degrees = 45 }]", "rotate_degrees"),
        ("[{ }]", "moves nothing"),
        ("[{ shift = 0.02 }]", "shift"),
    ] {
        let message = parse_config(&format!("[recognition]\ntest_time_chips = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(message.contains(says), "{bad}: {message}");
    }
    let seventeen = vec!["{ shift_x = 0.01 }"; 17].join(", ");
    let message = parse_config(&format!("[recognition]\ntest_time_chips = [{seventeen}]\n"))
        .unwrap_err()
        .to_string();
    assert!(message.contains("at most 16"), "{message}");
}
