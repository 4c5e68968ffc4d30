//! Camera test support: real models, a real LMDB store in a temp folder with the
//! enrolled people, and the recognizer options the tests use.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use facegate::camera::RecognizerOptions;
use facegate::config::{self, Config};
use facegate::gallery::{EnrollRequest, Gallery, Settings};
use facegate::runtime::Runtime;
use facegate::store::Store;
use facegate::vision::{Pipeline, PipelineOptions};

use super::sequence::{fixture_bytes, ENROLLED};

pub const CLIENT: &str = "kiosk";
pub const GALLERY: &str = "door";

pub fn default_config() -> Config {
    config::merge(None, "-", &HashMap::<String, String>::new()).expect("default config")
}

/// One pipeline per test binary (loading models takes a while).
pub fn pipeline() -> Arc<Pipeline> {
    static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();
    PIPELINE
        .get_or_init(|| {
            let config = default_config();
            let runtime = Runtime::locate_and_load(config.runtime_library()).expect("LiteRT");
            let options = PipelineOptions {
                workers: 2,
                ..config.pipeline_options()
            };
            Arc::new(Pipeline::load(&runtime, options).expect("models"))
        })
        .clone()
}

/// A gallery in a fresh LMDB folder with `ENROLLED` in `kiosk/door`.
pub struct Enrolled {
    pub gallery: Arc<Gallery>,
    pub config: Config,
    pub token: String,
    pub dir: tempfile::TempDir,
}

impl Enrolled {
    pub fn new(tweak: impl FnOnce(&mut Config)) -> Enrolled {
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
        for (user_id, user_name, photo) in ENROLLED {
            let image = fixture_bytes(photo);
            gallery
                .enroll(
                    CLIENT,
                    &EnrollRequest {
                        gallery: GALLERY,
                        user_id,
                        user_name,
                        image: &image,
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
