//! The data folder's lock: `facegate serve` holds an exclusive `flock` on
//! `<data_dir>/facegate.lock` while it runs, and commands that must not run beside it
//! (`reembed` and `gallery import`, which write templates behind the daemon's index)
//! take the same lock or refuse. The kernel drops the lock when the process ends, even
//! on kill -9, so a crash never leaves a stale lock behind. Admin commands (`client ...`) do not take
//! it: LMDB serialises their writes with the daemon's.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

pub const LOCK_FILE: &str = "facegate.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    // The cause is in the message, not a `source`: a report that prints the chain
    // would print it twice.
    #[error("{path}: {cause}")]
    Open {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the data folder {0} is a file, not a folder; check store.data_dir / FACEGATE_DATA_DIR"
    )]
    NotAFolder(PathBuf),
    #[error(
        "the data folder {folder} is in use by another facegate process (a running `facegate serve`?); stop it first"
    )]
    Busy { folder: PathBuf },
}

/// Held while alive; dropping it (or the process ending) releases the lock.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
}

impl DataLock {
    /// Takes the lock of `dir` (created if missing), or says who has it.
    pub fn acquire(dir: &Path) -> Result<DataLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let open_err = |cause| LockError::Open {
            path: path.clone(),
            cause,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(LockError::NotAFolder(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir).map_err(open_err)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(open_err)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DataLock { _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(LockError::Busy {
                folder: dir.to_path_buf(),
            }),
            Err(e) => Err(open_err(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataLock::acquire(dir.path()).unwrap();
        let second = DataLock::acquire(dir.path());
        assert!(matches!(second, Err(LockError::Busy { .. })), "{second:?}");
        drop(first);
        DataLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_file_given_as_the_data_folder_is_named_as_such() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = DataLock::acquire(file.path()).unwrap_err();
        assert!(matches!(e, LockError::NotAFolder(_)), "{e:?}");
        assert!(e.to_string().contains("is a file, not a folder"), "{e}");
    }
}
