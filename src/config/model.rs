//! The configuration's shape. Every key is documented in configs/facegate.toml; the
//! `Default` impls must equal that file (a test checks it).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Error;
use crate::vision::{
    Alignment, ChipJitter, DecodeLimits, DetectorKind, PipelineOptions, ScoreNormalisation,
};

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub models: ModelsConfig,
    pub recognition: RecognitionConfig,
    pub images: ImagesConfig,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub quota: QuotaConfig,
    pub logging: LoggingConfig,
    pub sync: SyncConfig,
    pub camera: CameraConfig,
    pub door: DoorConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    pub library: PathBuf,
    pub threads_per_model: usize,
    /// 0: the machine's core count.
    pub idle_request_threads: usize,
    /// The idle-machine session's caller and LiteRT workers on distinct cores.
    pub pin_idle_request_threads: bool,
    pub workers: usize,
    pub queue: usize,
    pub queue_timeout_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            library: PathBuf::new(),
            threads_per_model: 1,
            idle_request_threads: 0,
            pin_idle_request_threads: true,
            workers: 2,
            queue: 64,
            queue_timeout_ms: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    pub dir: PathBuf,
    pub detector: DetectorKind,
    pub embedder: String,
    pub mask: String,
    /// The face landmark network of `recognition.alignment = "face_mesh"`.
    pub landmarks: String,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: PathBuf::from("models-tflite"),
            detector: DetectorKind::ShortRange,
            embedder: "dlib_face_recognition_int8.tflite".into(),
            mask: "mask_mnv2_128_int8.tflite".into(),
            landmarks: crate::vision::FACE_MESH_FILE.into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecognitionConfig {
    pub min_detector_score: f32,
    pub detector_zoom_out: f32,
    pub far_face_retry_below: f32,
    pub verify_threshold: f32,
    pub identify_threshold: f32,
    pub ktp_minimum_similarity: f32,
    pub mask_threshold: f32,
    pub mask_margin: f32,
    pub chip_padding: f32,
    /// Which points align the face: "keypoints" (BlazeFace's) or "face_mesh" (dlib's
    /// five points from `models.landmarks`).
    pub alignment: Alignment,
    pub flip_average: bool,
    /// Test-time augmentation: extra chips cut with the alignment moved slightly, whose
    /// embeddings are averaged with the aligned chip's (src/vision/jitter.rs).
    pub test_time_chips: Vec<ChipJitter>,
    pub flip_margin_cosine: f32,
    pub min_face_px: f32,
    /// Open-set scoring of identify matches: "none" (calibrated similarity of the
    /// cosine), "gallery_size" (lowered with the gallery's size; the default) or "gallery_cohort"
    /// (also against the search's runner-up users); src/vision/open_set.rs.
    pub identify_score_normalisation: IdentifyScoreNormalisation,
    /// Runner-up users that make the cohort of "gallery_cohort".
    pub identify_cohort_size: usize,
}

/// `recognition.identify_score_normalisation`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IdentifyScoreNormalisation {
    None,
    GalleryCohort,
    GallerySize,
}

impl Default for RecognitionConfig {
    fn default() -> Self {
        RecognitionConfig {
            min_detector_score: 0.5,
            detector_zoom_out: 1.6,
            far_face_retry_below: crate::vision::FAR_RETRY_BELOW,
            verify_threshold: 0.75,
            identify_threshold: 0.75,
            ktp_minimum_similarity: 0.75,
            mask_threshold: 0.5,
            mask_margin: 0.5,
            chip_padding: 0.25,
            alignment: Alignment::Keypoints,
            flip_average: true,
            test_time_chips: Vec::new(),
            flip_margin_cosine: 0.02,
            min_face_px: 80.0,
            identify_score_normalisation: IdentifyScoreNormalisation::GallerySize,
            identify_cohort_size: 10,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    pub max_side: u32,
    pub max_pixels: u64,
    /// Memory one picture's decoding may take, in MiB (decoder output with 16-bit
    /// samples and palette expansion, RGB copy, rotation, progressive JPEG planes).
    #[serde(default = "default_max_decode_mb")]
    pub max_decode_mb: u64,
}

fn default_max_decode_mb() -> u64 {
    crate::vision::DEFAULT_MAX_DECODE_BYTES / (1024 * 1024)
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            max_side: 12_000,
            max_pixels: 50_000_000,
            max_decode_mb: default_max_decode_mb(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    Risetai,
    Flat,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HttpStatusRule {
    Mirror,
    #[serde(rename = "always_200")]
    Always200,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub body_limit_bytes: usize,
    pub envelope: Envelope,
    pub http_status: HttpStatusRule,
    pub shutdown_grace_secs: u64,
    /// Open connections at most; beyond it the longest-idle one is closed to admit a
    /// new one, or the new one when none is idle.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections from one peer address at most.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// A connection without a complete request head within this is closed.
    #[serde(default = "default_header_timeout_secs")]
    pub header_timeout_secs: u64,
    /// A request body not received in full within this answers 408.
    #[serde(default = "default_body_timeout_secs")]
    pub body_timeout_secs: u64,
    /// PEM certificate chain and key: the API is served over TLS only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: with TLS, clients must present a certificate it signed.
    #[serde(default)]
    pub tls_client_ca: Option<PathBuf>,
}

fn default_max_connections() -> usize {
    1024
}

fn default_max_connections_per_ip() -> usize {
    128
}

fn default_header_timeout_secs() -> u64 {
    10
}

fn default_body_timeout_secs() -> u64 {
    30
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 7_340_032,
            envelope: Envelope::Risetai,
            http_status: HttpStatusRule::Mirror,
            shutdown_grace_secs: 10,
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            header_timeout_secs: default_header_timeout_secs(),
            body_timeout_secs: default_body_timeout_secs(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub map_size_mb: usize,
    pub keep_crops: bool,
    pub max_templates_per_user: usize,
    pub hits_flush_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("data"),
            map_size_mb: 64,
            keep_crops: true,
            max_templates_per_user: 5,
            hits_flush_secs: 5,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub api_hits: u64,
    pub faces: u64,
    pub galleries: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Human,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    pub url: String,
    pub device_id: String,
    pub topic_prefix: String,
    pub username: String,
    pub password: String,
    pub ca_file: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub outbox_limit: usize,
    pub seen_retention_days: u64,
    pub snapshot_when_empty: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            url: String::new(),
            device_id: String::new(),
            topic_prefix: "facegate".into(),
            username: String::new(),
            password: String::new(),
            ca_file: PathBuf::new(),
            client_cert: PathBuf::new(),
            client_key: PathBuf::new(),
            outbox_limit: 100_000,
            seen_retention_days: 30,
            snapshot_when_empty: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub source: String,
    pub gallery: String,
    pub fps: u32,
    pub width: u32,
    pub height: u32,
    pub dir_realtime: bool,
    pub detect_every: u32,
    pub min_face_px: f32,
    pub track_iou: f32,
    pub track_timeout_ms: u64,
    pub decide_frames: u32,
    pub debounce_secs: u64,
    pub unknown_interval_secs: u64,
    pub unknown_retries: u32,
    pub unknown_retry_gain: f32,
    pub unknown_retry_ms: u64,
    pub publish_face: bool,
    pub history: usize,
    pub replay_secs: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    pub track_same_face: f32,
    pub track_check_frames: u32,
    pub track_checks_per_frame: u32,
    pub track_min_sharpness: f32,
}

/// `camera.track_min_sharpness`: see configs/facegate.toml (how it was chosen).
const TRACK_MIN_SHARPNESS: f32 = 0.03;

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            source: String::new(),
            gallery: String::new(),
            fps: 10,
            width: 640,
            height: 480,
            dir_realtime: true,
            detect_every: 1,
            min_face_px: 125.0,
            track_iou: 0.3,
            track_timeout_ms: 1000,
            decide_frames: 5,
            debounce_secs: 60,
            unknown_interval_secs: 10,
            unknown_retries: 2,
            unknown_retry_gain: 1.2,
            unknown_retry_ms: 2000,
            publish_face: true,
            history: 1000,
            replay_secs: 300,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            track_same_face: 0.75,
            track_check_frames: 5,
            track_checks_per_frame: 2,
            track_min_sharpness: TRACK_MIN_SHARPNESS,
        }
    }
}

/// What a recognized visit makes happen at the door (src/door; checked by
/// `door::DoorOptions::from_config`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DoorConfig {
    pub galleries: Vec<String>,
    pub users: Vec<String>,
    pub min_similarity: f32,
    pub allow_masked: bool,
    pub time_windows: Vec<String>,
    pub utc_offset: String,
    pub webhook_url: String,
    pub webhook_secret: String,
    pub webhook_timeout_ms: u64,
    pub webhook_retry_min_ms: u64,
    pub webhook_retry_max_ms: u64,
    pub webhook_queue_limit: usize,
    pub gpio_chip: String,
    pub gpio_line: u32,
    pub gpio_active_low: bool,
    pub gpio_pulse_ms: u64,
    pub mqtt_open: bool,
    pub mqtt_open_ttl_secs: u64,
}

impl Default for DoorConfig {
    fn default() -> Self {
        DoorConfig {
            galleries: Vec::new(),
            users: Vec::new(),
            min_similarity: 0.8,
            allow_masked: false,
            time_windows: Vec::new(),
            utc_offset: "+00:00".into(),
            webhook_url: String::new(),
            webhook_secret: String::new(),
            webhook_timeout_ms: 5000,
            webhook_retry_min_ms: 1000,
            webhook_retry_max_ms: 30_000,
            webhook_queue_limit: 10_000,
            gpio_chip: String::new(),
            gpio_line: 0,
            gpio_active_low: false,
            gpio_pulse_ms: 1000,
            mqtt_open: true,
            mqtt_open_ttl_secs: 10,
        }
    }
}

impl CameraConfig {
    /// `camera.gallery` split into (client, gallery).
    pub fn gallery_parts(&self) -> Option<(&str, &str)> {
        let (client, gallery) = self.gallery.split_once('/')?;
        (!client.is_empty() && !gallery.is_empty()).then_some((client, gallery))
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), Error> {
        let unit = |name: &str, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::Invalid(format!("{name} = {v} must be within 0..1")))
            }
        };
        let r = &self.recognition;
        unit("recognition.min_detector_score", r.min_detector_score)?;
        unit("recognition.verify_threshold", r.verify_threshold)?;
        unit("recognition.identify_threshold", r.identify_threshold)?;
        unit(
            "recognition.ktp_minimum_similarity",
            r.ktp_minimum_similarity,
        )?;
        unit("recognition.mask_threshold", r.mask_threshold)?;
        unit("recognition.far_face_retry_below", r.far_face_retry_below)?;
        if !(0.0..=4.0).contains(&r.detector_zoom_out) {
            return Err(Error::Invalid(
                "recognition.detector_zoom_out must be 0..4 (<= 1: no retry)".into(),
            ));
        }
        if !(0.0..=2.0).contains(&r.mask_margin) || !(0.0..=1.0).contains(&r.chip_padding) {
            return Err(Error::Invalid(
                "recognition.mask_margin must be 0..2 and chip_padding 0..1".into(),
            ));
        }
        // `>=` is false for NaN, which every range check above refuses too.
        let non_negative = |v: f32| v >= 0.0 && v.is_finite();
        if !non_negative(r.flip_margin_cosine) || !non_negative(r.min_face_px) {
            return Err(Error::Invalid(
                "recognition.flip_margin_cosine and min_face_px must be finite and >= 0".into(),
            ));
        }
        if r.alignment == Alignment::FaceMesh && self.models.landmarks.trim().is_empty() {
            return Err(Error::Invalid(
                "recognition.alignment = \"face_mesh\" needs models.landmarks (a face landmark \
                 .tflite file)"
                    .into(),
            ));
        }
        if r.test_time_chips.len() > crate::vision::MAX_TEST_TIME_CHIPS {
            return Err(Error::Invalid(format!(
                "recognition.test_time_chips has {} chips, at most {} are allowed (each one \
                 or two more embedder runs per face)",
                r.test_time_chips.len(),
                crate::vision::MAX_TEST_TIME_CHIPS
            )));
        }
        for (i, chip) in r.test_time_chips.iter().enumerate() {
            if let Some(problem) = chip.problem() {
                return Err(Error::Invalid(format!(
                    "recognition.test_time_chips[{i}] = {chip:?}: {problem}"
                )));
            }
        }
        if !(2..=1000).contains(&r.identify_cohort_size) {
            return Err(Error::Invalid(
                "recognition.identify_cohort_size must be 2..1000".into(),
            ));
        }
        if self.runtime.workers == 0 || self.runtime.threads_per_model == 0 {
            return Err(Error::Invalid(
                "runtime.workers and runtime.threads_per_model must be at least 1".into(),
            ));
        }
        let c = &self.camera;
        if !c.source.is_empty() {
            if !["dir:", "mjpeg:", "v4l:"]
                .iter()
                .any(|p| c.source.starts_with(p))
            {
                return Err(Error::Invalid(format!(
                    "camera.source = {:?}: expected dir:PATH, mjpeg:URL or v4l:INDEX",
                    c.source
                )));
            }
            if c.gallery_parts().is_none() {
                return Err(Error::Invalid(format!(
                    "camera.gallery = {:?}: expected CLIENT/GALLERY",
                    c.gallery
                )));
            }
        }
        if c.fps == 0 || c.detect_every == 0 || c.decide_frames == 0 || c.history == 0 {
            return Err(Error::Invalid(
                "camera.fps, detect_every, decide_frames and history must be at least 1".into(),
            ));
        }
        if c.unknown_retries > 5 || !(1.0..=4.0).contains(&c.unknown_retry_gain) {
            return Err(Error::Invalid(
                "camera.unknown_retries must be 0..5 and unknown_retry_gain within 1..4".into(),
            ));
        }
        if !(0.0..=1.0).contains(&c.track_iou) || c.width == 0 || c.height == 0 {
            return Err(Error::Invalid(
                "camera.track_iou must be within 0..1 and width, height at least 1".into(),
            ));
        }
        if self.store.hits_flush_secs == 0 {
            return Err(Error::Invalid(
                "store.hits_flush_secs must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&c.track_same_face)
            || c.track_min_sharpness.is_nan()
            || c.track_min_sharpness < 0.0
        {
            return Err(Error::Invalid(
                "camera.track_same_face must be within 0..1 and track_min_sharpness at least 0"
                    .into(),
            ));
        }
        if self.store.max_templates_per_user == 0 {
            return Err(Error::Invalid(
                "store.max_templates_per_user must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The vision pipeline's options from this configuration.
    pub fn pipeline_options(&self) -> PipelineOptions {
        let r = &self.recognition;
        PipelineOptions {
            models_dir: super::resolve_models_dir(&self.models.dir),
            detector: self.models.detector,
            embedder_file: self.models.embedder.clone(),
            mask_file: self.models.mask.clone(),
            landmarks_file: self.models.landmarks.clone(),
            alignment: r.alignment,
            threads_per_model: self.runtime.threads_per_model,
            idle_request_threads: match self.runtime.idle_request_threads {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
            pin_idle_request_threads: self.runtime.pin_idle_request_threads,
            workers: self.runtime.workers,
            admission: crate::vision::AdmissionLimits {
                queue: self.runtime.queue,
                timeout: std::time::Duration::from_millis(self.runtime.queue_timeout_ms),
            },
            min_detector_score: r.min_detector_score,
            detector_zoom_out: r.detector_zoom_out,
            far_face_retry_below: r.far_face_retry_below,
            mask_threshold: r.mask_threshold,
            mask_margin: r.mask_margin,
            chip_padding: r.chip_padding,
            flip_average: r.flip_average,
            test_time_chips: r.test_time_chips.clone(),
            score_normalisation: match r.identify_score_normalisation {
                IdentifyScoreNormalisation::None => ScoreNormalisation::None,
                IdentifyScoreNormalisation::GalleryCohort => ScoreNormalisation::GalleryCohort {
                    cohort: r.identify_cohort_size,
                },
                IdentifyScoreNormalisation::GallerySize => ScoreNormalisation::GallerySize,
            },
            decode_limits: DecodeLimits {
                max_side: self.images.max_side,
                max_pixels: self.images.max_pixels,
                max_decode_bytes: self.images.max_decode_mb.saturating_mul(1024 * 1024),
            },
        }
    }

    /// The configured LiteRT library, if one is set.
    pub fn runtime_library(&self) -> Option<&std::path::Path> {
        (!self.runtime.library.as_os_str().is_empty()).then_some(self.runtime.library.as_path())
    }
}
