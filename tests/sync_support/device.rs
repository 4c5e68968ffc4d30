//! A device for the sync tests: a real store in a temp dir, the real pipeline, a
//! gallery with the client `acme`, and the sync link with the given options.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate::gallery::{Gallery, OutboxSettings, Quota, Settings};
use facegate::store::Store;
use facegate::sync::{MetricsSnapshot, SyncHandle, SyncOptions};

pub const CLIENT: &str = "acme";
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Device {
    pub gallery: Arc<Gallery>,
    pub sync: Option<SyncHandle>,
    pub dir: tempfile::TempDir,
}

/// The gallery settings of the sync tests: an outbox for `origin` holding `outbox_limit`
/// events.
pub fn settings(origin: &str, outbox_limit: usize, keep_crops: bool) -> Settings {
    Settings {
        verify_threshold: 0.8,
        identify_threshold: 0.8,
        ktp_minimum_similarity: 0.7,
        min_face_px: 40.0,
        flip_margin_cosine: 0.02,
        keep_crops,
        max_templates_per_user: 3,
        quota: Quota::default(),
        visit_history: 100,
        outbox: Some(OutboxSettings {
            origin: origin.into(),
            limit: outbox_limit,
        }),
    }
}

/// A gallery on the store at `path` with the client [`CLIENT`] (added if missing).
pub fn open_gallery(path: &std::path::Path, origin: &str) -> Arc<Gallery> {
    open_gallery_with_clock(path, origin, Arc::new(facegate::gallery::SystemClock))
}

/// [`open_gallery`] whose writes take their time from `clock`.
pub fn open_gallery_with_clock(
    path: &std::path::Path,
    origin: &str,
    clock: Arc<dyn facegate::gallery::Clock>,
) -> Arc<Gallery> {
    open_gallery_on(path, origin, clock, crate::models::pipeline())
}

/// [`open_gallery_with_clock`] on `pipeline` (a device on another model).
pub fn open_gallery_on(
    path: &std::path::Path,
    origin: &str,
    clock: Arc<dyn facegate::gallery::Clock>,
    pipeline: Arc<facegate::vision::Pipeline>,
) -> Arc<Gallery> {
    let store = Arc::new(Store::open(path, 4).unwrap());
    let settings = settings(origin, 100_000, true);
    let gallery = Arc::new(Gallery::open_with_clock(store, pipeline, settings, clock).unwrap());
    if gallery.accounts().list_clients().unwrap().is_empty() {
        gallery.accounts().add_client(CLIENT, None).unwrap();
    }
    gallery
}

impl Device {
    /// A fresh data dir and the link (call inside a tokio runtime).
    pub fn start(mut options: SyncOptions) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let gallery = open_gallery(dir.path(), &options.device_id);
        options.reconnect_delay = Duration::from_millis(200);
        let sync = Some(facegate::sync::start(gallery.clone(), options));
        Device { gallery, sync, dir }
    }

    /// Enrolls the fixture photo `photo` locally as `user_id` in `gallery` of [`CLIENT`].
    pub fn enroll_photo(&self, gallery: &str, user_id: &str, user_name: &str, photo: &Path) {
        self.gallery
            .enroll(
                CLIENT,
                &facegate::gallery::EnrollRequest {
                    gallery,
                    user_id,
                    user_name,
                    image: &std::fs::read(photo).unwrap(),
                    force: true,
                },
            )
            .unwrap();
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.sync.as_ref().unwrap().metrics().snapshot()
    }

    /// user id -> (name, number of templates) of `gallery`.
    pub fn users(&self, gallery: &str) -> BTreeMap<String, (String, usize)> {
        self.gallery
            .read_store(|r| {
                let mut out = BTreeMap::new();
                if r.gallery(CLIENT, gallery)?.is_none() {
                    return Ok::<_, facegate::store::Error>(out);
                }
                for (id, user) in r.users(CLIENT, gallery)? {
                    let n = r.templates_of(CLIENT, gallery, &id)?.len();
                    out.insert(id, (user.user_name, n));
                }
                Ok(out)
            })
            .unwrap()
    }

    pub fn has_gallery(&self, gallery: &str) -> bool {
        self.gallery
            .read_store(|r| r.gallery(CLIENT, gallery))
            .unwrap()
            .is_some()
    }

    pub async fn stop(mut self) {
        if let Some(sync) = self.sync.take() {
            sync.stop(Duration::from_secs(5)).await;
        }
    }
}

/// Waits until `condition` holds, polling; panics with `what` after [`WAIT`].
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A unique suffix for topic prefixes and device ids of one test.
pub fn tag() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}
