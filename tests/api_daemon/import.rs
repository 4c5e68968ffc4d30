//! Moving a gallery to another door with `facegate gallery export` / `import`, from
//! outside: the export may be taken while the daemon serves; the import must not run
//! behind a serving daemon, whose index would not see the imported users until its next
//! start while the command reported them applied.

use super::*;

#[test]
fn an_import_waits_for_the_daemon_to_stop_and_the_next_start_finds_everyone() {
    let work = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (work.path().join("a"), work.path().join("b"));
    let token_a = admin(&data_a, &["client", "add", "kiosk"]);
    let token_b = admin(&data_b, &["client", "add", "kiosk"]);
    let a = Daemon::start(&data_a);
    let ca = a.client(&token_a);
    assert_eq!(ca.create_gallery("door").status(), 200);
    for user in ["amy", "raj"] {
        assert_eq!(
            ca.enroll("door", user, user, &photo(&format!("{user}1.png")))
                .status(),
            200
        );
    }
    let file = work.path().join("door.fgx");
    let file_arg = file.to_str().unwrap();
    let export = [
        "gallery",
        "export",
        "--client",
        "kiosk",
        "--gallery",
        "door",
        file_arg,
    ];
    assert!(admin(&data_a, &export).contains("exported 2 user(s)"));
    assert!(a.terminate().success());

    let b = Daemon::start(&data_b);
    let refused = facegate(&data_b, &["gallery", "import", file_arg])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("stop it first"), "{stderr}");
    let cb = b.client(&token_b);
    assert_ne!(
        cb.identify("door", &photo("amy2.png")).body()["return"][0]["user_id"],
        "amy"
    );
    assert!(b.terminate().success());

    let report = admin(&data_b, &["gallery", "import", file_arg]);
    assert!(report.starts_with("applied "), "{report}");
    assert!(report.ends_with(" 0 refused"), "{report}");
    let b = Daemon::start(&data_b);
    let cb = b.client(&token_b);
    for user in ["amy", "raj"] {
        let r = cb.identify("door", &photo(&format!("{user}2.png")));
        assert_eq!(r.body()["return"][0]["user_id"], user, "{:?}", r.raw);
    }
    assert!(b.terminate().success());
    assert!(!work.path().join("door.fgx.tmp").exists());
}
