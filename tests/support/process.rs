//! The `lsrecd` binary (or any command) as a child process: stdin closed, stdout and stderr
//! captured line by line (and appended to a log file when asked), signals sent with `kill(1)`,
//! and the process killed when its handle is dropped, so a failing test leaves nothing running.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{TimedOut, wait_for};

/// The binary under test (under `cargo bench`, the optimised build).
pub const LSRECD: &str = env!("CARGO_BIN_EXE_lsrecd");

/// Environment variables lsrecd reads; a child gets none of them from the caller's environment.
const LSRECD_ENV: &[&str] = &[
    "LSRECD_CONFIG",
    "LSRECD_DATABASE",
    "LSRECD_ACCESS_KEY",
    "LSRECD_SECRET_KEY",
    "CREDENTIALS_DIRECTORY",
    "RUST_LOG",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
];

/// The `lsrecd` binary with none of the variables it reads inherited from the caller.
pub fn lsrecd_command() -> Command {
    let mut command = Command::new(LSRECD);
    for name in LSRECD_ENV {
        command.env_remove(name);
    }
    command
}

/// Text a child wrote, collected by a reader thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<String>>);

impl Captured {
    /// Reads `stream` line by line into the buffer (and `log`, if any) until it closes.
    fn collect(
        &self,
        stream: impl Read + Send + 'static,
        log: Option<Arc<Mutex<File>>>,
    ) -> JoinHandle<()> {
        let sink = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(log) = &log {
                    let mut file = log.lock().unwrap_or_else(PoisonError::into_inner);
                    let _ = writeln!(file, "{line}");
                }
                let mut text = sink.lock().unwrap_or_else(PoisonError::into_inner);
                text.push_str(&line);
                text.push('\n');
            }
        })
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A running child process; dropping it kills (SIGKILL) and reaps the process if it still runs.
pub struct Process {
    name: String,
    child: Child,
    started: Instant,
    stdout: Captured,
    stderr: Captured,
    readers: Vec<JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` with stdin closed and its output captured; `name` is for messages.
    pub fn start(name: &str, command: Command) -> Process {
        Self::spawn(name, command, None)
    }

    /// [`Process::start`], with every line of stdout and stderr also appended to `log`.
    pub fn start_logged(name: &str, command: Command, log: &Path) -> Process {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open the log {}: {e}", log.display()));
        Self::spawn(name, command, Some(Arc::new(Mutex::new(file))))
    }

    fn spawn(name: &str, mut command: Command, log: Option<Arc<Mutex<File>>>) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = Captured::default();
        let stderr = Captured::default();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(stdout.collect(out, log.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(stderr.collect(err, log));
        }
        Process {
            name: name.to_owned(),
            child,
            started: Instant::now(),
            stdout,
            stderr,
            readers,
            exited: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When the process was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Sends a signal with `kill -NAME PID` (`TERM`, `HUP`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill(1): {e}"));
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
            if self.exited.is_some() {
                // The pipes close with the process: read what is left before answering.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
            }
        }
        self.exited
    }

    /// Waits at most `within` for the process to end by itself.
    pub async fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus, TimedOut> {
        let what = format!("{} to exit", self.name);
        wait_for(within, &what, async || self.exited()).await
    }

    /// SIGTERM, then waits at most `within` for the process to end.
    pub async fn terminate(&mut self, within: Duration) -> Result<ExitStatus, TimedOut> {
        self.signal("TERM");
        self.wait_exit(within).await
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap. The status says whether the process
    /// was still running when the signal came.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        // An error here means it has exited already; `wait` reports how.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("cannot reap {}: {e}", self.name));
        self.exited = Some(status);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The last `lines` lines of stderr, for failure messages.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = self.stderr();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits at most `within` for stderr to contain `needle`.
    pub async fn wait_stderr(&self, needle: &str, within: Duration) -> Result<(), TimedOut> {
        let what = format!("{needle:?} in the stderr of {}", self.name);
        wait_for(within, &what, async || {
            self.stderr().contains(needle).then_some(())
        })
        .await
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
