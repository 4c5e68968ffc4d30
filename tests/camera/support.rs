//! Camera test support: real models, a real LMDB store in a temp folder with the
//! enrolled people, and the recognizer options the tests use.
#![allow(dead_code)]

use std::sync::Arc;

use facegate::camera::RecognizerOptions;
use facegate::config::Config;
use facegate::gallery::{EnrollRequest, Gallery, Settings};
use facegate::store::Store;

use super::sequence::{fixture_bytes, ENROLLED};

pub const CLIENT: &str = "kiosk";
pub const GALLERY: &str = "door";

#[path = "../common/models.rs"]
mod models;
pub use models::{default_config, pipeline};

/// A gallery in a fresh LMDB folder with `ENROLLED` in `kiosk/door`.
pub struct Enrolled {
    pub gallery: Arc<Gallery>,
    pub config: Config,
    pub token: String,
    pub dir: tempfile::TempDir,
}

impl Enrolled {
    pub fn new(tweak: impl FnOnce(&mut Config)) -> Enrolled {
        let people: Vec<_> = ENROLLED
            .iter()
            .map(|(id, name, photo)| (id.to_string(), name.to_string(), fixture_bytes(photo)))
            .collect();
        Enrolled::with(tweak, &people)
    }

    /// `people` (user_id, user_name, photo bytes) enrolled in `kiosk/door`.
    pub fn with(tweak: impl FnOnce(&mut Config), people: &[(String, String, Vec<u8>)]) -> Enrolled {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = default_config();
        config.store.data_dir = dir.path().join("data");
        config.store.map_size_mb = 4;
        config.camera.gallery = format!("{CLIENT}/{GALLERY}");
        config.sync.device_id = "door-1".into();
        tweak(&mut config);
        let store =
            Arc::new(Store::open(&config.store.data_dir, config.store.map_size_mb).unwrap());
        let gallery =
            Arc::new(Gallery::open(store, pipeline(), Settings::from_config(&config)).unwrap());
        let token = gallery.accounts().add_client(CLIENT, None).unwrap();
        gallery.create_gallery(CLIENT, GALLERY).unwrap();
        for (user_id, user_name, image) in people {
            gallery
                .enroll(
                    CLIENT,
                    &EnrollRequest {
                        gallery: GALLERY,
                        user_id,
                        user_name,
                        image,
                        force: false,
                    },
                )
                .unwrap_or_else(|e| panic!("enroll {user_id}: {e}"));
        }
        Enrolled {
            gallery,
            config,
            token,
            dir,
        }
    }

    pub fn recognizer_options(&self) -> RecognizerOptions {
        RecognizerOptions::from_config(&self.config).expect("camera.gallery")
    }
}
