//! Files the commands write for an operator to keep (exports, descriptions): written
//! beside the target, synced, then renamed over it, so a power cut on an SD card leaves
//! the old file or the new one, never a truncated one in its place.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Writes `path` through `fill`, replacing any file there only once the new one is
/// complete and on disk.
pub fn replace_durably(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = sibling_tmp(path);
    let result = (|| {
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
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
}
