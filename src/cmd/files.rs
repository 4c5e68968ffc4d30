//! Files the commands write for an operator to keep (exports, descriptions): written
//! beside the target, synced, then renamed over it, so a power cut on an SD card leaves
//! the old file or the new one, never a truncated one in its place.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The file [`replace_durably`] replaces for `path`: a symlink's target, else `path`.
pub fn replaced_file(path: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Writes `path` through `fill`, replacing any file there only once the new one is
/// complete and on disk.
pub fn replace_durably(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // A symlinked file is replaced where it lives (the link stays), and keeps its mode
    // and, where this user may set it, its owner.
    let target = replaced_file(path);
    let path = target.as_path();
    let old = std::fs::metadata(path).ok();
    let tmp = sibling_tmp(path);
    let result = (|| {
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        if let Some(old) = &old {
            use std::os::unix::fs::MetadataExt;
            file.set_permissions(old.permissions())
                .with_context(|| tmp.display().to_string())?;
            // Only root may give a file away; anyone else keeps their own file.
            let _ = std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()));
        }
        let mut out = BufWriter::new(&file);
        fill(&mut out)?;
        out.flush()
            .and_then(|()| file.sync_all())
            .with_context(|| tmp.display().to_string())?;
        std::fs::rename(&tmp, path).with_context(|| path.display().to_string())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // The rename itself is durable once the folder is.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| dir.display().to_string())
}

/// `<name>.tmp` next to `path` (same file system, so the rename is atomic).
fn sibling_tmp(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.fgx");
        std::fs::write(&path, "old").unwrap();
        let err = replace_durably(&path, |out| {
            out.write_all(b"half")?;
            anyhow::bail!("disk full")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert!(!dir.path().join("backup.fgx.tmp").exists());

        replace_durably(&path, |out| Ok(out.write_all(b"new")?)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert!(!dir.path().join("backup.fgx.tmp").exists());
    }

    #[test]
    fn a_symlinked_file_is_replaced_where_it_lives_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("mine.tflite.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        replace_durably(&link, |out| Ok(out.write_all(b"new")?)).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
