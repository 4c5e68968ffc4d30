//! API hit counts (issue 13): counted in memory, saved every `store.hits_flush_secs`.
//! A kill -9 loses only the hits since the last save, and read requests (identify,
//! verify, compare) commit no LMDB transaction at all: `tests/bench/fsync.sh` counts
//! the syncs with strace, these tests check the behaviour behind it.

use std::time::Instant;

use super::*;

/// Writes `text` as a config file in `dir`; its path as `--config` takes it.
fn config_file(dir: &Path, text: &str) -> String {
    let path = dir.join("hits.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The API hits saved in the store for `client`, as `facegate client list` prints
/// them: that command reads the store, so it shows no hit the daemon holds unsaved.
fn saved_hits(data: &Path, client: &str) -> u64 {
    let out = facegate(data, &["client", "list"]).output().unwrap();
    assert!(
        out.status.success(),
        "client list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let column = header.iter().position(|h| *h == "api_hits").unwrap();
    let row = lines
        .find(|l| l.split('\t').next() == Some(client))
        .unwrap_or_else(|| panic!("{client} not listed: {text}"));
    row.split('\t').nth(column).unwrap().parse().unwrap()
}

fn identify_amy(c: &Client) {
    let r = c.identify("door", &photo("amy2.png"));
    assert_eq!(r.body()["return"][0]["user_id"], "amy", "{:?}", r.raw);
}

#[test]
fn a_kill_9_loses_only_the_hits_counted_since_the_last_flush() {
    const QUOTA: u64 = 16;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!("[quota]\napi_hits = {QUOTA}\n[store]\nhits_flush_secs = 1\n"),
    );
    let token = admin(dir.path(), &["client", "add", "kiosk"]);
    let daemon = Daemon::start_with(dir.path(), &["--config", &config]);
    let c = daemon.client(&token);
    assert_eq!(c.create_gallery("door").status(), 200);
    assert_eq!(
        c.enroll("door", "amy", "Amy", &photo("amy1.png")).status(),
        200
    );
    for _ in 0..3 {
        identify_amy(&c);
    }
    // 5 hits; the flush timer saves them within a second (generous bound here).
    let deadline = Instant::now() + Duration::from_secs(20);
    while saved_hits(dir.path(), "kiosk") != 5 {
        assert!(
            Instant::now() < deadline,
            "the 5 hits were never saved with hits_flush_secs = 1"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // 3 more, then kill -9 at once: these may be lost, nothing before them may.
    for _ in 0..3 {
        identify_amy(&c);
    }
    daemon.kill9();

    let saved = saved_hits(dir.path(), "kiosk");
    assert!(
        (5..=8).contains(&saved),
        "{saved} hits saved: the 5 flushed before the kill survive, at most the 3 after it are lost"
    );
    eprintln!("kill -9 lost {} of the 3 unsaved hits", 8 - saved);

    // The store opens and answers after the crash (the index rebuilt from it), and the
    // quota counts exactly the saved hits: QUOTA - saved calls in all, then 403.
    let daemon = Daemon::start_with(dir.path(), &["--config", &config]);
    let c = daemon.client(&token);
    identify_amy(&c);
    let mut allowed = 1;
    let refused = loop {
        let r = c.post("client/get-counters", json!({}));
        if r.status() != 200 || allowed > QUOTA {
            break r;
        }
        allowed += 1;
    };
    assert_eq!(refused.status(), 403, "{:?}", refused.raw);
    assert_eq!(
        allowed,
        QUOTA - saved,
        "calls allowed after the restart, with {saved} hits saved"
    );
    assert!(daemon.terminate().success());
}

/// The id of the last committed LMDB transaction in a data folder, read by this process
/// from its own read-only environment while the daemon has the folder open (LMDB
/// serves several processes through its lock file).
struct LastTxn(heed::Env);

impl LastTxn {
    fn open(data: &Path) -> LastTxn {
        let mut options = heed::EnvOpenOptions::new();
        // SAFETY: MDB_RDONLY with LMDB's lock file, on a local folder, opened once in
        // this process; only `mdb_env_info` is called (it reads the meta pages), no
        // transaction, no data page.
        let env = unsafe { options.flags(heed::EnvFlags::READ_ONLY).open(data) };
        LastTxn(env.unwrap())
    }

    fn id(&self) -> usize {
        self.0.info().last_txn_id
    }
}

#[test]
fn identify_verify_and_compare_commit_no_lmdb_transaction() {
    let dir = tempfile::tempdir().unwrap();
    // A quota, so that every hit's quota check reads the saved counters; a flush
    // period the test cannot reach.
    let config = config_file(
        dir.path(),
        "[quota]\napi_hits = 1000\n[store]\nhits_flush_secs = 3600\n",
    );
    let token = admin(dir.path(), &["client", "add", "kiosk"]);
    let daemon = Daemon::start_with(dir.path(), &["--config", &config]);
    let last_txn = LastTxn::open(dir.path());
    let started = last_txn.id();
    let c = daemon.client(&token);
    assert_eq!(c.create_gallery("door").status(), 200);
    for (user, file) in [("amy", "amy1.png"), ("raj", "raj1.png")] {
        assert_eq!(c.enroll("door", user, user, &photo(file)).status(), 200);
    }
    let enrolled = last_txn.id();
    assert!(
        enrolled > started,
        "the daemon's commits are seen from here"
    );

    let compare = |source: &str, target: &str| {
        c.post(
            "compare-images",
            json!({"source_image": photo(source), "target_image": photo(target)}),
        )
    };
    for _ in 0..8 {
        identify_amy(&c);
        let r = c.verify("door", "amy", &photo("amy2.png"));
        assert_eq!(r.body()["verified"], true, "{:?}", r.raw);
    }
    for _ in 0..3 {
        let r = compare("sheldon2.png", "sheldon1.png");
        assert_eq!(r.body()["verified"], true, "{:?}", r.raw);
        // Misses are reads too.
        assert_eq!(c.identify("door", &photo("penny2.png")).status(), 411);
    }
    // 3 writes, 22 reads and this one: all counted, none saved.
    let r = c.post("client/get-counters", json!({}));
    assert_eq!(r.body()["remaining_limit"]["n_api_hits"], 1000 - 26);
    assert_eq!(
        last_txn.id(),
        enrolled,
        "a read request committed an LMDB write transaction"
    );

    // SIGTERM saves the counted hits: the one commit after the enrollments.
    assert!(daemon.terminate().success());
    assert!(last_txn.id() > enrolled);
    assert_eq!(saved_hits(dir.path(), "kiosk"), 26);
}
