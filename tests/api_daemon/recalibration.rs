//! An operator recalibrates their own embedder after people were enrolled with it, from
//! outside: the calibration is part of the template fingerprint, so `facegate calibrate`
//! must not quietly take the door's gallery out of search. It says how many templates
//! (or that the daemon is running) and writes only with --force; then `facegate reembed`
//! brings everyone back.

use super::*;

/// The shipped network as an operator's file with a sidecar of its own.
const OWN_EMBEDDER: &str = "mine.tflite";

/// Its sidecar: dlib's chip and calibration, as MANIFEST.toml describes the shipped file,
/// under a comment of the operator's that calibrate must keep.
fn own_description() -> String {
    format!("# my embedder{}", real_models::SHIPPED_AS_SIDECAR)
}

const PEOPLE: [&str; 4] = ["amy", "raj", "penny", "howard"];

/// The models folder, the config naming it, and an LFW-layout folder with its pairs file
/// (the fixtures: same pairs of four people, different pairs of four others).
struct Own {
    dir: tempfile::TempDir,
}

impl Own {
    fn new() -> Own {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir(&models).unwrap();
        for f in [
            "face_detection_short_range.tflite",
            "mask_mnv2_128_int8.tflite",
        ] {
            std::fs::copy(real_models::models_dir().join(f), models.join(f)).unwrap();
        }
        std::fs::copy(
            real_models::models_dir().join(real_models::SHIPPED_EMBEDDER),
            models.join(OWN_EMBEDDER),
        )
        .unwrap();
        std::fs::write(
            models.join(format!("{OWN_EMBEDDER}.toml")),
            own_description(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("own.toml"),
            format!(
                "[models]\ndir = \"{}\"\nembedder = \"{OWN_EMBEDDER}\"\n",
                models.display()
            ),
        )
        .unwrap();
        let images = dir.path().join("images");
        let people = PEOPLE
            .iter()
            .chain(&["leonard", "stuart", "bernadette", "sheldon"]);
        for person in people {
            std::fs::create_dir_all(images.join(person)).unwrap();
            for n in 1..=2 {
                let from = format!("tests/fixtures/api/{person}{n}.png");
                let to = images.join(person).join(format!("{person}_{n:04}.jpg"));
                std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join(from), to).unwrap();
            }
        }
        std::fs::write(
            dir.path().join("pairs.txt"),
            "4\namy\t1\t2\nraj\t1\t2\npenny\t1\t2\nhoward\t1\t2\n\
             leonard\t1\tstuart\t1\nbernadette\t1\tsheldon\t1\n\
             amy\t1\tpenny\t2\nraj\t2\thoward\t1\n",
        )
        .unwrap();
        Own { dir }
    }

    fn config(&self) -> String {
        self.dir.path().join("own.toml").display().to_string()
    }

    fn sidecar(&self) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join("models")
                .join(format!("{OWN_EMBEDDER}.toml")),
        )
        .unwrap()
    }

    fn calibrate(&self, data: &Path, extra: &[&str]) -> std::process::Output {
        let images = self.dir.path().join("images").display().to_string();
        let pairs = self.dir.path().join("pairs.txt").display().to_string();
        let config = self.config();
        let mut args = vec![
            "--config",
            &config,
            "calibrate",
            "--images",
            &images,
            "--pairs",
            &pairs,
        ];
        args.extend_from_slice(extra);
        facegate(data, &args).output().unwrap()
    }
}

#[test]
fn recalibrating_an_embedder_in_use_asks_for_force_and_reembed_brings_everyone_back() {
    let own = Own::new();
    let config = own.config();
    let data = tempfile::tempdir().unwrap();
    let token = admin(data.path(), &["client", "add", "kiosk"]);
    let daemon = Daemon::start_with(data.path(), &["--config", &config]);
    let c = daemon.client(&token);
    assert_eq!(c.create_gallery("door").status(), 200);
    for user in PEOPLE {
        let r = c.enroll("door", user, user, &photo(&format!("{user}1.png")));
        assert_eq!(r.status(), 200, "{:?}", r.raw);
    }

    // While the daemon serves the data folder.
    let running = own.calibrate(data.path(), &[]);
    let stderr = String::from_utf8_lossy(&running.stderr);
    assert!(!running.status.success(), "{stderr}");
    assert!(stderr.contains("`facegate serve` is running"), "{stderr}");
    assert_eq!(own.sidecar(), own_description());
    assert!(daemon.terminate().success());

    // Stopped: it counts what the new fingerprint would take out of search.
    let stopped = own.calibrate(data.path(), &[]);
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(!stopped.status.success(), "{stderr}");
    assert!(stderr.contains("4 template(s)"), "{stderr}");
    assert!(stderr.contains("facegate reembed"), "{stderr}");
    assert_eq!(own.sidecar(), own_description());

    let forced = own.calibrate(data.path(), &["--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let sidecar = own.sidecar();
    assert!(sidecar.starts_with("# my embedder\n"), "{sidecar}");
    assert!(sidecar.contains("fitted_on = \"pairs.txt: "), "{sidecar}");

    // What the refusal warned of: before reembed, nobody is found.
    let daemon = Daemon::start_with(data.path(), &["--config", &config]);
    let c = daemon.client(&token);
    let r = c.identify("door", &photo("amy2.png"));
    assert_ne!(r.body()["return"][0]["user_id"], "amy", "{:?}", r.raw);
    assert!(daemon.terminate().success());

    let report = admin(data.path(), &["--config", &config, "reembed"]);
    assert!(report.contains("re-embedded 4 template(s)"), "{report}");
    let daemon = Daemon::start_with(data.path(), &["--config", &config]);
    let c = daemon.client(&token);
    for user in PEOPLE {
        let r = c.identify("door", &photo(&format!("{user}2.png")));
        assert_eq!(r.body()["return"][0]["user_id"], user, "{:?}", r.raw);
    }
    assert!(daemon.terminate().success());
}
