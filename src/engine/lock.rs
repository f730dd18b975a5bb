//! One engine per database: an exclusive lock on `<database>.lock`, held for the engine's life
//! and released by the kernel even on kill -9.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct EngineLock {
    _file: File,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another lsrecd engine is running on this database (lock {0} is held)")]
    Held(PathBuf),
    #[error("cannot open lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl EngineLock {
    /// The lock file beside the database.
    pub fn path_for(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_os_string();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock without waiting.
    pub fn try_acquire(database: &Path) -> Result<EngineLock, LockError> {
        let path = Self::path_for(database);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::Io {
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(EngineLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held(path)),
            Err(std::fs::TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let first = EngineLock::try_acquire(&db).unwrap();
        assert!(matches!(
            EngineLock::try_acquire(&db),
            Err(LockError::Held(_))
        ));
        drop(first);
        EngineLock::try_acquire(&db).unwrap();
    }
}
