//! What the tests and the engine benchmark share: waiting for a condition, private files, the
//! `lsrecd` binary as a child process, the emulator (in process, or as `lsrecd emulator`), a site
//! directory with a configuration and a database read through `sqlite3`, a fake systemd notify
//! socket, an independently signed HTTP caller, a forwarding proxy, a Prometheus text parser, and
//! a real etcd for the high-availability tests.
//!
//! Every test file includes it with `mod support;`; the benchmark with
//! `#[path = "../tests/support/mod.rs"] mod support;`. Not every file uses every part.
#![allow(dead_code)]

pub mod emulator;
pub mod etcd;
pub mod exposition;
pub mod notify;
pub mod process;
pub mod proxy;
pub mod signed;
pub mod site;
pub mod tools;

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often [`wait_for`] checks its condition again.
const POLL: Duration = Duration::from_millis(25);

/// A condition that did not hold in time: what was awaited and for how long.
#[derive(Clone, PartialEq, Eq)]
pub struct TimedOut {
    pub what: String,
    pub within: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}",
            self.within, self.what
        )
    }
}

/// Shown by `unwrap()`: the same sentence as `Display`.
impl fmt::Debug for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for TimedOut {}

/// Checks `check` every few milliseconds until it gives a value, or fails once `within` has
/// passed; `what` names the condition for the failure message ("READY=1", "the first poll").
/// The condition is checked once more at the deadline, so a slow check cannot starve it.
pub async fn wait_for<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let deadline = Instant::now() + within;
    loop {
        let last = Instant::now() >= deadline;
        if let Some(value) = check().await {
            return Ok(value);
        }
        if last {
            return Err(TimedOut {
                what: what.to_owned(),
                within,
            });
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// Writes `text` to `path` with mode 0600 (it holds keys), replacing what was there; the
/// library's own function, failing the caller on error.
pub fn write_private(path: &Path, text: &str) {
    lsrecd::config::credentials::write_private(path, text)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Raises this process's soft file-descriptor limit to at least `needed` (within the hard
/// limit), for tests that hold thousands of connections open; the daemons they start inherit
/// it.
pub fn raise_fd_limit(needed: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return;
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= needed,
        "this test holds {needed} file descriptors; the hard limit (ulimit -Hn) is {hard}"
    );
    setrlimit(
        Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(needed),
            maximum: limit.maximum,
        },
    )
    .expect("raise the soft file-descriptor limit");
}
