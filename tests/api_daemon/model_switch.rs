//! A door switched to an operator's embedder with another crop, from outside: enroll
//! over HTTP with the shipped model, stop, `facegate --config OWN reembed`, serve with
//! OWN on the same data folder, identify over HTTP.

use super::*;

/// A models folder: the shipped files, the shipped embedder described with ArcFace's
/// 112 template (another crop, the same 150x150 input), and a config pointing at it.
fn own_model_config(dir: &Path) -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models-tflite");
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for f in [
        "face_detection_short_range.tflite",
        "mask_mnv2_128_int8.tflite",
        "dlib_face_recognition_int8.tflite",
    ] {
        std::fs::copy(repo.join(f), models.join(f)).unwrap();
    }
    std::fs::write(
        models.join("dlib_face_recognition_int8.tflite.toml"),
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
    let config = dir.join("own.toml");
    std::fs::write(
        &config,
        format!(
            "[models]\ndir = \"{}\"\nembedder = \"dlib_face_recognition_int8.tflite\"\n",
            models.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn after_a_switch_to_an_embedder_with_another_crop_reembed_brings_everyone_along() {
    let data = tempfile::tempdir().unwrap();
    let token = admin(data.path(), &["client", "add", "kiosk"]);
    let daemon = Daemon::start(data.path());
    let c = daemon.client(&token);
    assert_eq!(c.create_gallery("door").status(), 200);
    let people = [
        ("amy", "amy"),
        ("raj", "raj"),
        ("penny", "penny"),
        ("howard", "howard"),
    ];
    for (user, file) in people {
        assert_eq!(
            c.enroll("door", user, user, &photo(&format!("{file}1.png")))
                .status(),
            200
        );
    }
    assert!(daemon.terminate().success());

    let own = tempfile::tempdir().unwrap();
    let config = own_model_config(own.path());
    let config = config.to_str().unwrap();
    let out = facegate(data.path(), &["--config", config, "reembed"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("re-embedded 4 template(s) (4 cut from crops of another layout)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 with a crop this model cannot read"),
        "{stdout}"
    );

    let daemon = Daemon::start_with(data.path(), &["--config", config]);
    let c = daemon.client(&token);
    for (user, file) in people {
        let r = c.identify("door", &photo(&format!("{file}2.png")));
        assert_eq!(r.body()["return"][0]["user_id"], user, "{:?}", r.raw);
    }
    assert!(daemon.terminate().success());
}
