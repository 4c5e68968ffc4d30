//! Configuration: the documented default (configs/facegate.toml, embedded), a config
//! file that overrides some of its keys, and environment overrides on top, merged by
//! one pure function over a [`Source`] so tests never touch the process environment.

mod model;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use model::*;

/// The documented default configuration, embedded in the binary.
pub const DEFAULT_TOML: &str = include_str!("../../configs/facegate.toml");

/// Where environment overrides come from.
pub trait Source {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {key}={value}: {message}")]
    Env {
        key: String,
        value: String,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Reads `file` (or only the embedded default) and applies the overrides in `env`.
pub fn load(file: Option<&Path>, env: &dyn Source) -> Result<Config, Error> {
    let text = match file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?),
        None => None,
    };
    let name = file.map(|p| p.display().to_string());
    let mut config = merge(
        text.as_deref(),
        name.as_deref().unwrap_or("<embedded>"),
        env,
    )?;
    config.store.data_dir = resolve_data_dir(&config.store.data_dir, file, env);
    Ok(config)
}

/// A relative `store.data_dir` from a config file (or the default under one) is
/// relative to that file's folder, so `facegate serve` opens the same store from any
/// working directory; from `FACEGATE_DATA_DIR`, or without a file, it is relative to
/// the working directory. The result is absolute (logged at start).
fn resolve_data_dir(dir: &Path, file: Option<&Path>, env: &dyn Source) -> PathBuf {
    let from_env = env
        .get("FACEGATE_DATA_DIR")
        .is_some_and(|v| !v.trim().is_empty());
    let joined = match file.and_then(Path::parent) {
        Some(folder) if dir.is_relative() && !from_env => folder.join(dir),
        _ => dir.to_path_buf(),
    };
    std::path::absolute(&joined).unwrap_or(joined)
}

/// The pure merge: embedded default <- file text <- environment.
pub fn merge(file_text: Option<&str>, file_name: &str, env: &dyn Source) -> Result<Config, Error> {
    let mut table: toml::Table = parse_table(DEFAULT_TOML, "<embedded default>")?;
    if let Some(text) = file_text {
        let overrides = parse_table(text, file_name)?;
        merge_tables(&mut table, overrides);
    }
    let mut config: Config =
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::Parse {
                path: file_name.to_string(),
                message: e.message().to_string(),
            })?;
    apply_env(&mut config, env)?;
    config.validate()?;
    Ok(config)
}

fn parse_table(text: &str, name: &str) -> Result<toml::Table, Error> {
    text.parse::<toml::Table>().map_err(|e| Error::Parse {
        path: name.to_string(),
        message: e.to_string(),
    })
}

/// Recursively overlays `overrides` on `base`: tables merge, other values replace.
fn merge_tables(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn apply_env(config: &mut Config, env: &dyn Source) -> Result<(), Error> {
    let get = |key: &str| env.get(key).filter(|v| !v.trim().is_empty());
    if let Some(v) = get("FACEGATE_LISTEN") {
        config.server.listen = v
            .parse()
            .map_err(|e: std::net::AddrParseError| Error::Env {
                key: "FACEGATE_LISTEN".into(),
                value: v.clone(),
                message: e.to_string(),
            })?;
    }
    if let Some(v) = get("FACEGATE_DATA_DIR") {
        config.store.data_dir = PathBuf::from(v);
    }
    if let Some(v) = get("FACEGATE_LITERT_LIB") {
        config.runtime.library = PathBuf::from(v);
    }
    if let Some(v) = get("FACEGATE_MODELS_DIR") {
        config.models.dir = PathBuf::from(v);
    }
    if let Some(v) = get("FACEGATE_LOG") {
        config.logging.level = v;
    }
    if let Some(v) = get("FACEGATE_LOG_FORMAT") {
        config.logging.format = match v.as_str() {
            "json" => LogFormat::Json,
            "human" => LogFormat::Human,
            _ => {
                return Err(Error::Env {
                    key: "FACEGATE_LOG_FORMAT".into(),
                    value: v,
                    message: "expected human or json".into(),
                })
            }
        };
    }
    // Sync and camera: present but empty means "off", so read them unfiltered.
    if let Some(v) = env.get("FACEGATE_MQTT_URL") {
        config.sync.url = v.trim().to_string();
    }
    if let Some(v) = get("FACEGATE_DEVICE_ID") {
        config.sync.device_id = v;
    }
    if let Some(v) = env.get("FACEGATE_CAMERA") {
        config.camera.source = v.trim().to_string();
    }
    if let Some(v) = get("FACEGATE_CAMERA_GALLERY") {
        config.camera.gallery = v;
    }
    Ok(())
}

/// Resolves a relative models folder: the working directory, then beside the
/// executable (and up to three folders above it, for `target/release/`), then the
/// Debian package's `/usr/share/facegate/models`.
pub fn resolve_models_dir(dir: &Path) -> PathBuf {
    if dir.is_absolute() || dir.is_dir() {
        return dir.to_path_buf();
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        for base in exe_dir.ancestors().take(4) {
            let candidate = base.join(dir);
            if candidate.is_dir() {
                return candidate;
            }
        }
    }
    let packaged = PathBuf::from("/usr/share/facegate/models");
    if packaged.is_dir() {
        return packaged;
    }
    dir.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_default_is_the_documented_default() {
        let config = merge(None, "-", &env(&[])).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn a_relative_data_dir_is_relative_to_the_config_file_unless_it_comes_from_the_environment() {
        let file = Path::new("/etc/facegate/facegate.toml");
        let from_file = resolve_data_dir(Path::new("data"), Some(file), &env(&[]));
        assert_eq!(from_file, PathBuf::from("/etc/facegate/data"));
        let absolute = resolve_data_dir(Path::new("/var/lib/f"), Some(file), &env(&[]));
        assert_eq!(absolute, PathBuf::from("/var/lib/f"));
        let cwd = std::env::current_dir().unwrap();
        let from_env = resolve_data_dir(
            Path::new("d2"),
            Some(file),
            &env(&[("FACEGATE_DATA_DIR", "d2")]),
        );
        assert_eq!(from_env, cwd.join("d2"));
        assert_eq!(
            resolve_data_dir(Path::new("data"), None, &env(&[])),
            cwd.join("data")
        );
    }

    #[test]
    fn file_overrides_only_the_keys_it_names() {
        let config = merge(Some("[server]\nenvelope = \"flat\"\n"), "f", &env(&[])).unwrap();
        assert_eq!(config.server.envelope, Envelope::Flat);
        assert_eq!(config.server.listen, Config::default().server.listen);
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = merge(
            Some("[server]\nlisten = \"127.0.0.1:9000\"\n"),
            "f",
            &env(&[
                ("FACEGATE_LISTEN", "127.0.0.1:18080"),
                ("FACEGATE_DATA_DIR", "/tmp/x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 18080);
        assert_eq!(config.store.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn camera_environment_overrides_are_checked() {
        let config = merge(
            None,
            "-",
            &env(&[
                ("FACEGATE_CAMERA", "dir:/srv/frames"),
                ("FACEGATE_CAMERA_GALLERY", "kiosk/door"),
            ]),
        )
        .unwrap();
        assert_eq!(config.camera.source, "dir:/srv/frames");
        assert_eq!(config.camera.gallery_parts(), Some(("kiosk", "door")));
        // A source needs a CLIENT/GALLERY; unknown source kinds are refused.
        assert!(merge(None, "-", &env(&[("FACEGATE_CAMERA", "v4l:0")])).is_err());
        assert!(merge(
            None,
            "-",
            &env(&[
                ("FACEGATE_CAMERA", "rtsp://cam"),
                ("FACEGATE_CAMERA_GALLERY", "kiosk/door")
            ])
        )
        .is_err());
        assert!(merge(Some("[camera]\nfps = 0\n"), "f", &env(&[])).is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(merge(Some("[server]\nlisen = 1\n"), "f", &env(&[])).is_err());
        assert!(merge(Some("[models]\ndetector = \"tiny\"\n"), "f", &env(&[])).is_err());
        assert!(merge(None, "-", &env(&[("FACEGATE_LISTEN", "nowhere")])).is_err());
        assert!(merge(
            Some("[recognition]\nverify_threshold = 1.5\n"),
            "f",
            &env(&[])
        )
        .is_err());
        for text in [
            "[recognition]\nflip_margin_cosine = nan\n",
            "[recognition]\nmin_face_px = nan\n",
            "[recognition]\nmin_face_px = -1.0\n",
        ] {
            assert!(merge(Some(text), "f", &env(&[])).is_err(), "{text}");
        }
    }
}
