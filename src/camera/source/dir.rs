//! `dir:PATH`: the JPEG and PNG files of a folder in file-name order, then the end of
//! the source. Frame `i` is stamped `start + i / fps` (recorded footage keeps its
//! timing); in real time the source also waits for that moment, otherwise it hands
//! frames over as fast as the loop takes them (replays, tests, benchmarks).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{decode_picture, CaptureOptions, Frame, FrameSource, SourceError};

pub struct DirSource {
    path: PathBuf,
    options: CaptureOptions,
    files: Vec<PathBuf>,
    position: usize,
    started: Option<(Instant, u64)>,
}

impl DirSource {
    pub fn new(path: PathBuf, options: CaptureOptions) -> DirSource {
        DirSource {
            path,
            options,
            files: Vec::new(),
            position: 0,
            started: None,
        }
    }
}

fn is_picture(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        .unwrap_or(false)
}

impl FrameSource for DirSource {
    fn open(&mut self) -> Result<(), SourceError> {
        let folder = |source| SourceError::Folder {
            path: self.path.clone(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(folder)? {
            let path = entry.map_err(folder)?.path();
            if path.is_file() && is_picture(&path) {
                files.push(path);
            }
        }
        files.sort();
        self.files = files;
        Ok(())
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        loop {
            let Some(path) = self.files.get(self.position).cloned() else {
                return Ok(None);
            };
            let (started, started_ms) = *self
                .started
                .get_or_insert_with(|| (Instant::now(), super::unix_ms()));
            let offset =
                Duration::from_secs_f64(self.position as f64 / f64::from(self.options.fps.max(1)));
            if self.options.realtime {
                std::thread::sleep((started + offset).saturating_duration_since(Instant::now()));
            }
            self.position += 1;
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(source) => {
                    return Err(SourceError::Folder {
                        path: path.clone(),
                        source,
                    })
                }
            };
            match decode_picture(&bytes, &self.options) {
                Ok(image) => {
                    return Ok(Some(Frame {
                        image,
                        timestamp_ms: started_ms + offset.as_millis() as u64,
                        captured: Instant::now(),
                    }))
                }
                // One bad file is skipped; reopening would replay the same file.
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "frame skipped"),
            }
        }
    }

    fn paced(&self) -> bool {
        self.options.realtime
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.path.display())
    }
}
