//! A door switched to an operator's embedder with another crop, from outside: enroll
//! over HTTP with the shipped model, stop, `facegate --config OWN reembed`, serve with
//! OWN on the same data folder, identify over HTTP.

use super::*;

/// A config pointing at the shipped embedder described with ArcFace's template
/// (`real_models::arcface_template_models`, kept alive by the caller).
fn own_model_config(models: &Path, dir: &Path) -> std::path::PathBuf {
    let config = dir.join("own.toml");
    std::fs::write(
        &config,
        format!(
            "[models]\ndir = \"{}\"\nembedder = \"{}\"\n",
            models.display(),
            real_models::SHIPPED_EMBEDDER
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
    let models = real_models::arcface_template_models();
    let config = own_model_config(models.path(), own.path());
    let config = config.to_str().unwrap();
    // One line on stdout, the report; the progress bar goes to stderr.
    let report = admin(data.path(), &["--config", config, "reembed"]);
    assert!(
        report.contains("re-embedded 4 template(s) (4 cut from crops of another layout)"),
        "{report}"
    );
    assert!(
        report.contains("0 with a crop this model cannot read"),
        "{report}"
    );

    let daemon = Daemon::start_with(data.path(), &["--config", config]);
    let c = daemon.client(&token);
    for (user, file) in people {
        let r = c.identify("door", &photo(&format!("{file}2.png")));
        assert_eq!(r.body()["return"][0]["user_id"], user, "{:?}", r.raw);
    }
    assert!(daemon.terminate().success());
}
