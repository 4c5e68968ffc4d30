//! The recognition loop's tuning, from `[camera]` (see configs/facegate.toml).

/// The loop's tuning, from `[camera]` (see configs/facegate.toml).
#[derive(Clone, Debug, PartialEq)]
pub struct RecognizerOptions {
    pub client: String,
    pub gallery: String,
    pub device_id: String,
    pub detect_every: u32,
    pub min_face_px: f32,
    pub track_iou: f32,
    pub track_timeout_ms: u64,
    pub decide_frames: u32,
    pub debounce_ms: u64,
    pub unknown_interval_ms: u64,
    /// Re-identifications of a track found unknown (0: report unknown at once).
    pub unknown_retries: u32,
    /// A frame is clearly better when its candidate score is at least this many times
    /// the score of the frame last identified.
    pub unknown_retry_gain: f32,
    /// The unknown visit is reported at the latest this long (frame time) after the
    /// track was first identified as unknown.
    pub unknown_retry_ms: u64,
    /// Attach the face JPEG to the `recognized` sync event.
    pub publish_face: bool,
    /// Check that a track still shows the same face (see [`TrackCheck`]); `None`:
    /// tracks by position only.
    pub track_check: Option<TrackCheck>,
}

/// When and how a track's face is compared with the face the track started with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackCheck {
    /// Below this similarity (calibrated, 0..1) the face is another person's.
    pub same_face: f32,
    /// Check at least every this many detection frames while the face is in view.
    pub every_frames: u32,
    /// At most this many checks per frame (the loop's cost bound).
    pub per_frame: u32,
    /// Chips less sharp than this tell nothing (see `vision::chip_sharpness`).
    pub min_sharpness: f32,
}

impl RecognizerOptions {
    /// From the configuration; `None` when `camera.gallery` is not CLIENT/GALLERY.
    pub fn from_config(config: &crate::config::Config) -> Option<RecognizerOptions> {
        let c = &config.camera;
        let (client, gallery) = c.gallery_parts()?;
        Some(RecognizerOptions {
            client: client.to_string(),
            gallery: gallery.to_string(),
            device_id: device_id(&config.sync.device_id),
            detect_every: c.detect_every.max(1),
            min_face_px: c.min_face_px,
            track_iou: c.track_iou,
            track_timeout_ms: c.track_timeout_ms,
            decide_frames: c.decide_frames.max(1),
            debounce_ms: c.debounce_secs.saturating_mul(1000),
            unknown_interval_ms: c.unknown_interval_secs.saturating_mul(1000),
            unknown_retries: c.unknown_retries.min(5),
            unknown_retry_gain: c.unknown_retry_gain.max(1.0),
            unknown_retry_ms: c.unknown_retry_ms,
            publish_face: c.publish_face,
            track_check: (c.track_check_frames > 0).then_some(TrackCheck {
                same_face: c.track_same_face,
                every_frames: c.track_check_frames,
                per_frame: c.track_checks_per_frame.max(1),
                min_sharpness: c.track_min_sharpness,
            }),
        })
    }
}

/// `sync.device_id`, or the host name when it is empty.
pub fn device_id(configured: &str) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "facegate".into())
}
