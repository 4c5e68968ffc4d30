//! The binary's behaviour at its edges: runtime missing, bad configuration, JSON output.

use std::path::{Path, PathBuf};
use std::process::Command;

fn facegate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facegate"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

const A: &str = "tests/fixtures/vision/amy1.png";
const B: &str = "tests/fixtures/vision/amy2.png";

#[test]
fn starting_without_the_litert_library_fails_with_a_message_that_names_the_fix() {
    let out = facegate()
        .args(["compare", A, B])
        .env("FACEGATE_LITERT_LIB", "/nonexistent/libLiteRt.so")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LiteRT library not found"), "{stderr}");
    assert!(stderr.contains("cross/fetch-litert.sh"), "{stderr}");
}

#[test]
fn a_bad_config_file_exits_with_ex_usage() {
    let dir = std::env::temp_dir().join(format!("facegate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[server]\nlisten = \"not an address\"\n").unwrap();
    let out = facegate()
        .args(["--config"])
        .arg(&file)
        .args(["compare", A, B])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_json_reports_similarity_verified_and_masker() {
    let out = facegate()
        .args(["compare", A, B, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let similarity = v["similarity"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&similarity));
    assert_eq!(v["verified"], true);
    assert_eq!(v["masker"], false);
}

#[test]
fn the_embedded_default_config_passes_config_check() {
    let out = facegate().args(["config", "check"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for example in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/configs")).unwrap() {
        let path = example.unwrap().path();
        let out = facegate()
            .arg("--config")
            .arg(&path)
            .args(["config", "check"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_version_lists_the_cargo_features_built_in() {
    let out = facegate().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("facegate 0."), "{text}");
    if cfg!(feature = "camera-v4l") {
        assert!(text.contains("(features: camera-v4l)"), "{text}");
    } else {
        assert!(text.contains("(features: none)"), "{text}");
    }
}

#[test]
fn client_add_with_scope_kiosk_prints_a_kiosk_token_alone_on_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        facegate()
            .args(args)
            .env("FACEGATE_DATA_DIR", dir.path())
            .output()
            .unwrap()
    };
    let full = run(&["client", "add", "door"]);
    assert!(full.status.success(), "{full:?}");
    let kiosk = run(&["client", "add", "door", "--scope", "kiosk"]);
    assert!(kiosk.status.success(), "{kiosk:?}");
    let stdout = String::from_utf8(kiosk.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("kiosk_") && last.len() == 6 + 43,
        "{stdout}"
    );
    assert!(last
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    // A kiosk token for a client that does not exist yet creates it.
    let hall = run(&["client", "add", "hall", "--scope", "kiosk"]);
    assert!(hall.status.success(), "{hall:?}");
    let list = String::from_utf8(run(&["client", "list"]).stdout).unwrap();
    assert!(list.lines().any(|l| l.starts_with("door\t2\t")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("hall\t1\t")), "{list}");
    // No password with a kiosk token; unknown scopes are refused.
    assert!(
        !run(&["client", "add", "x", "--scope", "kiosk", "--password"])
            .status
            .success()
    );
    assert!(!run(&["client", "add", "x", "--scope", "admin"])
        .status
        .success());
}

#[test]
fn eval_identify_names_each_image_without_a_template_and_counts_its_probe_as_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let put = |person: &str, n: u32, bytes: &[u8]| {
        let folder = dir.path().join(person);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{person}_{n:04}.jpg")), bytes).unwrap();
    };
    let fixture = |name: &str| std::fs::read(format!("tests/fixtures/vision/{name}")).unwrap();
    put("Amy", 1, &fixture("amy1.png"));
    put("Amy", 2, &fixture("amy2.png"));
    put("Sheldon", 1, &fixture("sheldon1.png"));
    put("Sheldon", 2, &fixture("sheldon3.png"));
    put("Penny", 1, &fixture("penny1.png"));
    // An operator's folder as it is found: a file that is no image, a JPEG cut short, and
    // a photo without a face.
    put("Broken", 1, b"not an image");
    let photo = fixture("single_640x480.jpg");
    put("Broken", 2, &photo[..photo.len() / 3]);
    put("Wall", 1, &fixture("white.png"));

    let out = facegate()
        .args(["eval", "identify", "--json", "--images"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["failed_images"],
        serde_json::json!([
            "Broken/Broken_0001.jpg",
            "Broken/Broken_0002.jpg",
            "Wall/Wall_0001.jpg"
        ])
    );
    assert_eq!(v["images_without_face"], 3);
    // Amy and Sheldon are found; Broken's probe has no template and counts as a miss.
    assert_eq!(v["probes"], 3);
    assert!(
        (v["rank1"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9,
        "{v}"
    );
    for why in ["not recognized", "truncated", "no face found"] {
        assert!(stderr.contains(why), "stderr lacks {why:?}: {stderr}");
    }
}

#[test]
fn eval_identify_gives_its_report_when_the_embeddings_cache_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let (images, _) = small_lfw(dir.path());
    let run = |cache: &Path| {
        facegate()
            .args(["eval", "identify", "--json", "--images"])
            .arg(&images)
            .arg("--embeddings-cache")
            .arg(cache)
            .output()
            .unwrap()
    };
    // The cache's path is a folder: found only when the embeddings are done.
    let out = run(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--embeddings-cache not written"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["probes"], 2, "{v}");
    // A folder that does not exist: refused before minutes of embedding.
    let out = run(&dir.path().join("no-such-folder/cache.json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_mistyped_data_folder_is_named_and_never_created_by_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let run = |data: &Path, args: &[&str]| {
        facegate()
            .args(args)
            .env("FACEGATE_DATA_DIR", data)
            .env("FACEGATE_LOG", "error")
            .output()
            .unwrap()
    };
    let out_file = dir.path().join("g.json");
    let export = [
        "gallery",
        "export",
        "--client",
        "door",
        "--gallery",
        "staff",
    ];
    let mut export_to = export.map(String::from).to_vec();
    export_to.push(out_file.display().to_string());
    let export_to: Vec<&str> = export_to.iter().map(String::as_str).collect();

    // An export from a folder that is not there: said so, and nothing is created.
    let missing = dir.path().join("typo");
    let out = run(&missing, &export_to);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no facegate store"), "{stderr}");
    assert!(!missing.exists() && !out_file.exists());

    // A store without that gallery: the CLI names client, gallery and folder.
    let data = dir.path().join("data");
    assert!(run(&data, &["client", "add", "door"]).status.success());
    let out = run(&data, &export_to);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("client door has no gallery staff"),
        "{stderr}"
    );

    // A file given as the data folder: one clear sentence, the OS error not twice.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    for args in [
        &export_to[..],
        &["gallery", "import", "x.json"],
        &["client", "list"],
    ] {
        let out = run(&file, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("is a file, not a folder"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("os error"), "{args:?}: {stderr}");
    }
}

/// An LFW-layout folder (`<Name>/<Name>_<NNNN>.jpg`) of fixture photos and a pairs file
/// over it: two people's two photos as same pairs, each against a third as different.
fn small_lfw(dir: &Path) -> (PathBuf, PathBuf) {
    let images = dir.join("images");
    for (person, n, file) in [
        ("Amy", 1, "amy1.png"),
        ("Amy", 2, "amy2.png"),
        ("Sheldon", 1, "sheldon1.png"),
        ("Sheldon", 2, "sheldon3.png"),
        ("Penny", 1, "penny1.png"),
    ] {
        std::fs::create_dir_all(images.join(person)).unwrap();
        std::fs::copy(
            format!("tests/fixtures/vision/{file}"),
            images.join(person).join(format!("{person}_{n:04}.jpg")),
        )
        .unwrap();
    }
    let pairs = dir.join("pairs.txt");
    std::fs::write(
        &pairs,
        "2\nAmy\t1\t2\nSheldon\t1\t2\nAmy\t1\tPenny\t1\nSheldon\t2\tPenny\t1\n",
    )
    .unwrap();
    (images, pairs)
}

/// `facegate calibrate` on `images` and `pairs` with the models in `models` and a data
/// folder in `dir`.
fn calibrate(
    dir: &Path,
    models: &Path,
    images: &Path,
    pairs: &Path,
    extra: &[&str],
) -> std::process::Output {
    facegate()
        .env("FACEGATE_MODELS_DIR", models)
        .env("FACEGATE_DATA_DIR", dir.join("data"))
        .args(["calibrate", "--images"])
        .arg(images)
        .arg("--pairs")
        .arg(pairs)
        .args(extra)
        .output()
        .unwrap()
}

/// A copy of the bundled models folder (what the default config loads) in `dir`, so
/// that a command that writes descriptions can never touch the repository's.
fn bundled_models_copy(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir(&models).unwrap();
    for f in [
        "MANIFEST.toml",
        "face_detection_short_range.tflite",
        "mask_mnv2_128_int8.tflite",
        "dlib_face_recognition_int8.tflite",
    ] {
        std::fs::copy(Path::new("models-tflite").join(f), models.join(f)).unwrap();
    }
    models
}

#[test]
fn eval_lfw_refuses_a_missing_folder_and_names_missing_images() {
    let dir = tempfile::tempdir().unwrap();
    let (images, pairs) = small_lfw(dir.path());
    let out = facegate()
        .args([
            "eval",
            "lfw",
            "--json",
            "--images",
            "/nonexistent/lfw",
            "--pairs",
        ])
        .arg(&pairs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/lfw: no such folder"),
        "{stderr}"
    );

    std::fs::remove_file(images.join("Penny/Penny_0001.jpg")).unwrap();
    let out = facegate()
        .args(["eval", "lfw", "--json", "--images"])
        .arg(&images)
        .arg("--pairs")
        .arg(&pairs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Penny_0001.jpg: missing"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["missing_images"], 1);
    assert_eq!(
        v["failed_images"],
        serde_json::json!(["Penny/Penny_0001.jpg"])
    );
    // Two folds of one pair of each kind, none of them empty.
    assert_eq!(v["folds"], 2);
}

#[test]
fn calibrate_refuses_a_fit_that_cannot_tell_the_same_person_from_two() {
    let dir = tempfile::tempdir().unwrap();
    let models = bundled_models_copy(dir.path());
    let manifest = std::fs::read_to_string(models.join("MANIFEST.toml")).unwrap();
    let (images, _) = small_lfw(dir.path());
    // Mislabelled: the "different" pairs are the very pairs of the "same" block, so no
    // threshold can tell the kinds apart (50 % at best).
    let swapped = dir.path().join("mislabelled.txt");
    std::fs::write(
        &swapped,
        "2\nAmy\t1\t2\nSheldon\t1\t2\nAmy\t1\tAmy\t2\nSheldon\t1\tSheldon\t2\n",
    )
    .unwrap();
    let out = facegate()
        .env("FACEGATE_MODELS_DIR", &models)
        .env("FACEGATE_DATA_DIR", dir.path().join("data"))
        .args(["calibrate", "--force", "--images"])
        .arg(&images)
        .arg("--pairs")
        .arg(&swapped)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot tell the same person"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(models.join("MANIFEST.toml")).unwrap(),
        manifest
    );
}

#[test]
fn calibrate_refuses_a_read_only_description_before_embedding_anything() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let models = bundled_models_copy(dir.path());
    let (images, pairs) = small_lfw(dir.path());
    let manifest = models.join("MANIFEST.toml");
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = std::fs::read_to_string(&manifest).unwrap();
    let run = |extra: &[&str]| calibrate(dir.path(), &models, &images, &pairs, extra);
    // --force overrides the fleet's hazards, not the operator's read-only mode.
    let out = run(&["--force"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is read-only"), "{stderr}");
    assert!(
        !stderr.contains("no face"),
        "refused before any embedding: {stderr}"
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), before);
    // Printing the fit is still allowed.
    assert!(run(&["--dry-run"]).status.success());
}

#[test]
fn calibrate_leaves_the_bundled_manifest_alone_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let models = bundled_models_copy(dir.path());
    let manifest = std::fs::read_to_string(models.join("MANIFEST.toml")).unwrap();
    let (images, pairs) = small_lfw(dir.path());
    let calibrate = |extra: &[&str]| calibrate(dir.path(), &models, &images, &pairs, extra);

    // An integrator tuning the shipped model to their own people: every door of the
    // fleet shares this description, and its calibration is in the template fingerprint.
    let refused = calibrate(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("MANIFEST.toml"), "{stderr}");
    assert!(stderr.contains("verify_threshold"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(models.join("MANIFEST.toml")).unwrap(),
        manifest
    );

    let dry = calibrate(&["--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(v["written_to"], serde_json::Value::Null);
    assert_eq!(v["pairs"], 4);
    // Three people cannot show how a stranger's best match grows with the gallery: the
    // description keeps the default rule, and the operator is told.
    assert_eq!(v["size_shift_per_ln_user"], serde_json::Value::Null);
    assert!(String::from_utf8_lossy(&dry.stderr).contains("size_shift_per_ln_user not fitted"));

    let forced = calibrate(&["--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let written = std::fs::read_to_string(models.join("MANIFEST.toml")).unwrap();
    assert_ne!(written, manifest);
    assert!(written.contains("fitted_on = \"pairs.txt: "), "{written}");
    assert!(!models.join("MANIFEST.toml.tmp").exists());
}

#[test]
fn config_check_reads_the_embedders_description_as_serve_does() {
    let dir = tempfile::tempdir().unwrap();
    let models = bundled_models_copy(dir.path());
    std::fs::copy(
        models.join("dlib_face_recognition_int8.tflite"),
        models.join("mine.tflite"),
    )
    .unwrap();
    let config = dir.path().join("mine.toml");
    std::fs::write(
        &config,
        format!(
            "[models]\ndir = \"{}\"\nembedder = \"mine.tflite\"\n",
            models.display()
        ),
    )
    .unwrap();
    let check = || {
        facegate()
            .arg("--config")
            .arg(&config)
            .args(["config", "check"])
            .output()
            .unwrap()
    };
    // No description at all, then one that does not parse: serve refuses both.
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("mine.tflite: no description"), "{stderr}");
    std::fs::write(
        models.join("mine.tflite.toml"),
        "input_size = [150, 150]\nthreshold = nan\n",
    )
    .unwrap();
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("mine.tflite.toml"), "{stderr}");
    // A description that parses but does not fit the file (dlib's network is 150x150,
    // 128-d): serve refuses it at load, and so does check.
    std::fs::write(
        models.join("mine.tflite.toml"),
        "input_size = [160, 160]\ninput_layout = \"nhwc_rgb\"\n\
         normalisation = { kind = \"per_image_standardisation\" }\n\
         crop = { kind = \"keypoint_square\", scale = 3.2, shift_up = 0.2 }\n\
         output_dim = 128\nflip_average = true\n",
    )
    .unwrap();
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("does not match its description"),
        "{stderr}"
    );
    // A data folder that is a file.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let fine = dir.path().join("fine.toml");
    std::fs::write(&fine, format!("[models]\ndir = \"{}\"\n", models.display())).unwrap();
    let out = facegate()
        .arg("--config")
        .arg(&fine)
        .args(["config", "check"])
        .env("FACEGATE_DATA_DIR", &file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("is a file, not a folder"), "{stderr}");
    // A model file that is not there: the same code as serve's.
    std::fs::remove_file(models.join("mine.tflite")).unwrap();
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("mine.tflite"), "{stderr}");
}
