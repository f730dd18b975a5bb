//! One engine per database: an exclusive lock on `<database>.lock`, held for the engine's life
//! and released by the kernel even on kill -9. The holder writes who it is into the file
//! (`daemon <pid>` or `command <pid>`), so a daemon that finds the lock held by a one-shot
//! `lsrecd start|stop` waits for it instead of giving up.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Who holds the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// `lsrecd run` (or the demo).
    Daemon,
    /// A one-shot `lsrecd start|stop` acting while no daemon runs.
    Command,
}

impl Holder {
    fn as_str(self) -> &'static str {
        match self {
            Holder::Daemon => "daemon",
            Holder::Command => "command",
        }
    }
}

/// The held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct EngineLock {
    _file: File,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another lsrecd engine is running on this database (lock {path} is held by {})", holder.as_deref().unwrap_or("another process"))]
    Held {
        path: PathBuf,
        /// What the holder wrote: `daemon <pid>` or `command <pid>`.
        holder: Option<String>,
    },
    #[error("cannot open lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LockError {
    /// The process id of the daemon holding the lock, when a daemon holds it.
    pub fn daemon_pid(&self) -> Option<i32> {
        match self {
            LockError::Held {
                holder: Some(h), ..
            } => h.strip_prefix("daemon ")?.trim().parse().ok(),
            _ => None,
        }
    }

    /// Held by a one-shot command, which lets go within seconds.
    pub fn held_by_command(&self) -> bool {
        matches!(self, LockError::Held { holder: Some(h), .. } if h.starts_with("command"))
    }
}

impl EngineLock {
    /// The lock file beside the database.
    pub fn path_for(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_os_string();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock without waiting, and records `holder` in the file.
    pub fn try_acquire(database: &Path, holder: Holder) -> Result<EngineLock, LockError> {
        let path = Self::path_for(database);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(io)?;
                writeln!(file, "{} {}", holder.as_str(), std::process::id()).map_err(io)?;
                Ok(EngineLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held {
                holder: std::fs::read_to_string(&path)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
                path,
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let first = EngineLock::try_acquire(&db, Holder::Daemon).unwrap();
        let err = EngineLock::try_acquire(&db, Holder::Daemon).unwrap_err();
        assert!(!err.held_by_command());
        assert!(
            err.to_string()
                .contains(&format!("daemon {}", std::process::id())),
            "{err}"
        );
        drop(first);
        let second = EngineLock::try_acquire(&db, Holder::Command).unwrap();
        assert!(
            EngineLock::try_acquire(&db, Holder::Daemon)
                .unwrap_err()
                .held_by_command()
        );
        drop(second);
    }
}
