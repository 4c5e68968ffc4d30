//! The binary's behaviour at its edges: runtime missing, bad configuration, JSON output.

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
