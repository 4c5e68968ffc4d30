//! `facegate push --photos DIR`: a gallery from a folder of photos, one sub-folder per
//! user (`DIR/<user_id>/*.jpg|jpeg|png`, optional `DIR/<user_id>/name.txt` holding the
//! display name, else the folder name), through the real recognition pipeline.
//!
//! A photo without a usable face (none found, smaller than `recognition.min_face_px`,
//! unreadable) is reported on stderr and skipped; a user without any usable photo is
//! skipped too. At most `store.max_templates_per_user` photos per user are used (in
//! file-name order).

use std::path::{Path, PathBuf};

use anyhow::Context;
use facegate::config::Config;
use facegate::gallery::{wire_template, CentralUser};
use facegate::vision::{FaceSelection, Pipeline};

/// What reading the folder gave.
pub struct Photos {
    pub users: Vec<CentralUser>,
    pub photos_used: usize,
    pub photos_skipped: usize,
    pub users_skipped: usize,
}

fn is_photo(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort();
    Ok(entries)
}

pub fn read(config: &Config, pipeline: &Pipeline, dir: &Path) -> anyhow::Result<Photos> {
    let folders: Vec<PathBuf> = sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    let keep = config.store.max_templates_per_user;
    let min_px = config.recognition.min_face_px;
    let mut out = Photos {
        users: Vec::new(),
        photos_used: 0,
        photos_skipped: 0,
        users_skipped: 0,
    };
    for (i, folder) in folders.iter().enumerate() {
        let user_id = folder
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("folder name {} is not UTF-8", folder.display()))?
            .to_string();
        let user_name = match std::fs::read_to_string(folder.join("name.txt")) {
            Ok(name) if !name.trim().is_empty() => name.trim().to_string(),
            _ => user_id.clone(),
        };
        let mut templates = Vec::new();
        for photo in sorted_entries(folder)?.into_iter().filter(|p| is_photo(p)) {
            if templates.len() >= keep {
                eprintln!(
                    "  {}: skipped (store.max_templates_per_user = {keep} already used)",
                    photo.display()
                );
                out.photos_skipped += 1;
                continue;
            }
            let faces = std::fs::read(&photo)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| {
                    Ok(pipeline.analyze_bytes_to_store(&bytes, FaceSelection::Largest)?)
                });
            let problem = match faces.as_deref() {
                Err(e) => Some(format!("{e:#}")),
                Ok([]) => Some("no face found".to_string()),
                Ok([face, ..]) if face.quality.face_px < min_px => Some(format!(
                    "face of {:.0} px is below recognition.min_face_px = {min_px}",
                    face.quality.face_px
                )),
                Ok([face, ..]) => {
                    templates.push(wire_template(face, pipeline.crop_points())?);
                    None
                }
            };
            match problem {
                Some(why) => {
                    eprintln!("  {}: skipped ({why})", photo.display());
                    out.photos_skipped += 1;
                }
                None => out.photos_used += 1,
            }
        }
        eprintln!(
            "[{}/{}] {user_id} ({user_name}): {} template(s)",
            i + 1,
            folders.len(),
            templates.len()
        );
        if templates.is_empty() {
            eprintln!("  {user_id}: skipped (no usable photo)");
            out.users_skipped += 1;
            continue;
        }
        out.users.push(CentralUser {
            user_id,
            user_name,
            templates,
        });
    }
    Ok(out)
}
