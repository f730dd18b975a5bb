//! Shared test code for running the real `lsrecd` binary against an in-process emulator the way an
//! operator or systemd would: a private configuration file, the child process with its output
//! captured (and killed if the test fails), a fake `NOTIFY_SOCKET`, signals sent with `kill`, and
//! the database read with `sqlite3 -readonly`. Include with
//! `#[path = "common/binary.rs"] mod binary;`.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lsrecd::emulator::{ChannelSpec, EmulatorOptions, Operation, RunningEmulator};

/// The access key the test emulator accepts.
pub const ACCESS_KEY: &str = "LSRECD-BINARY-TEST-ACCESS";
/// The secret key the test emulator accepts; distinctive so that a leak is easy to find.
pub const SECRET_KEY: &str = "bin-test-secret-Vq7Rw2Zx9Kp4";

/// How often a condition is re-checked while waiting for it.
const POLL: Duration = Duration::from_millis(50);

/// Environment variables lsrecd reads; a child gets none of them from the test's environment.
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

/// An emulator on a free port that accepts [`ACCESS_KEY`]/[`SECRET_KEY`], with `channels` added.
pub async fn emulator(channels: Vec<ChannelSpec>) -> RunningEmulator {
    let options = EmulatorOptions {
        access_key: ACCESS_KEY.to_string(),
        secret_key: SECRET_KEY.to_string(),
        ..EmulatorOptions::default()
    };
    let addr = "127.0.0.1:0".parse().expect("a literal socket address");
    let emulator = lsrecd::emulator::Emulator::start(addr, options)
        .await
        .expect("the emulator binds a free port");
    let control = emulator.control();
    for spec in channels {
        control.add_channel(spec).expect("a new channel id");
    }
    emulator
}

/// How many channel-list calls `emulator` has served.
pub fn list_calls(emulator: &RunningEmulator) -> u64 {
    emulator
        .control()
        .counters()
        .calls_of(Operation::ListChannels)
}

/// Whether the emulator says `channel_id` is recording.
pub fn is_recording(emulator: &RunningEmulator, channel_id: &str) -> bool {
    emulator
        .control()
        .channel(channel_id)
        .is_some_and(|c| c.is_recording)
}

/// A loopback port nobody listens on right now: bound and released again.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// An `http://` URL nothing listens on.
pub fn closed_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A configuration for `endpoint` and `database` with fast polling and retries, followed by
/// `channels` (raw `[[channel]]`/`[[schedule]]` tables).
pub fn config_text(endpoint: &str, database: &Path, channels: &str) -> String {
    format!(
        r#"[api]
endpoint = "{endpoint}"
region = "KR"
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
timeout = "3s"
max_rps = 50

[daemon]
database = "{database}"
timezone = "UTC"
poll_interval = "1s"
record_poll_interval = "1s"

[retry]
max_attempts = 3
initial_backoff = "200ms"
max_backoff = "1s"

{channels}"#,
        database = database.display(),
    )
}

/// A `[[channel]]` table.
pub fn channel_table(id: &str, label: &str, record_when_live: bool) -> String {
    format!(
        "[[channel]]\nid = \"{id}\"\nlabel = \"{label}\"\nrecord_when_live = {record_when_live}\n\n"
    )
}

/// Writes `text` to `path` with mode 0600 (it holds a secret key), replacing what was there.
pub fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// The `lsrecd` binary with none of the variables it reads inherited from the test's environment.
pub fn lsrecd_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lsrecd"));
    for name in LSRECD_ENV {
        command.env_remove(name);
    }
    command
}

/// A temporary directory holding a configuration file and the database it names.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub database: PathBuf,
}

impl Site {
    /// A fresh directory with `config.toml` (mode 0600) for `endpoint` and `channels`.
    pub fn new(endpoint: &str, channels: &str) -> Site {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config.toml");
        let database = dir.path().join("lsrecd.db");
        write_private(&config, &config_text(endpoint, &database, channels));
        Site {
            dir,
            config,
            database,
        }
    }

    /// Replaces the configuration file's text.
    pub fn rewrite(&self, text: &str) {
        write_private(&self.config, text);
    }

    /// `lsrecd --config <config> ARGS` with a clean environment plus `envs`.
    pub fn command(&self, args: &[&str], envs: &[(&str, OsString)]) -> Command {
        let mut command = lsrecd_command();
        command.arg("--config").arg(&self.config).args(args);
        for (name, value) in envs {
            command.env(name, value);
        }
        command
    }

    /// Starts `lsrecd ARGS` in the background.
    pub fn spawn(&self, args: &[&str], envs: &[(&str, OsString)]) -> Lsrecd {
        Lsrecd::start(self.command(args, envs))
    }

    /// Runs a one-shot `lsrecd ARGS` to its end (killed, and the test failed, after `limit`).
    pub async fn run(&self, args: &[&str], limit: Duration) -> Finished {
        let mut child = self.spawn(args, &[]);
        let Some(status) = child.wait_exit(limit).await else {
            panic!(
                "lsrecd {args:?} still running after {limit:?}; stderr:\n{}",
                child.stderr()
            );
        };
        Finished {
            status,
            elapsed: child.started.elapsed(),
            stdout: child.stdout(),
            stderr: child.stderr(),
        }
    }

    /// `sqlite3 -readonly` on the database: the rows of `sql`, each a list of column texts
    /// (`NULL` for null).
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        query(&self.database, sql)
    }

    /// [`Site::query`] that gives nothing instead of failing, for use in waits: the database and
    /// its tables appear only once the daemon has started.
    pub fn rows(&self, sql: &str) -> Option<Vec<Vec<String>>> {
        try_query(&self.database, sql).ok()
    }
}

/// A one-shot command that ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

/// `sqlite3 -readonly DATABASE SQL`, the rows split into column texts; fails the test if
/// sqlite3 does.
pub fn query(database: &Path, sql: &str) -> Vec<Vec<String>> {
    try_query(database, sql).unwrap_or_else(|e| panic!("sqlite3 {sql:?} failed: {e}"))
}

/// [`query`], or sqlite3's complaint (e.g. while the daemon has not created the database yet).
pub fn try_query(database: &Path, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let output = Command::new("sqlite3")
        .arg("-readonly")
        .arg("-batch")
        .args(["-separator", "\u{1f}", "-nullvalue", "NULL"])
        .arg(database)
        .arg(sql)
        .output()
        .map_err(|e| format!("sqlite3 does not run: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split('\u{1f}').map(str::to_owned).collect())
        .collect())
}

/// Checks `condition` every few milliseconds until it gives a value or `limit` passes.
pub async fn wait_for<T>(limit: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Text a child wrote, collected by a reader thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<String>>);

impl Captured {
    fn collect(&self, stream: impl Read + Send + 'static) -> JoinHandle<()> {
        let sink = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
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

/// A running `lsrecd`; dropping it kills the process if it still runs.
pub struct Lsrecd {
    child: Child,
    started: Instant,
    stdout: Captured,
    stderr: Captured,
    readers: Vec<JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

impl Lsrecd {
    /// Starts `command` with its stdout and stderr captured.
    pub fn start(mut command: Command) -> Lsrecd {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the lsrecd binary starts");
        let stdout = Captured::default();
        let stderr = Captured::default();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(stdout.collect(out));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(stderr.collect(err));
        }
        Lsrecd {
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

    /// Sends a signal with `kill -NAME PID` (`TERM`, `HUP`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
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

    /// Waits at most `limit` for the process to end.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_for(limit, || self.exited()).await
    }

    /// Everything written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits at most `limit` for stderr to contain `needle`.
    pub async fn wait_stderr(&self, needle: &str, limit: Duration) -> bool {
        wait_for(limit, || self.stderr().contains(needle).then_some(()))
            .await
            .is_some()
    }
}

impl Drop for Lsrecd {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One datagram that reached the fake notify socket.
#[derive(Clone, Debug)]
pub struct Notice {
    /// The message, e.g. `READY=1`.
    pub text: String,
    /// When it arrived.
    pub at: Instant,
    /// What the sampler given to [`NotifySocket::bind`] returned as it arrived.
    pub sample: u64,
}

/// A fake systemd notify socket: a datagram socket in a temporary directory and a thread that
/// records every message with the time and a sample of test state at arrival.
pub struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    notices: Arc<Mutex<Vec<Notice>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifySocket {
    /// Binds the socket; `sample` is called as each message arrives.
    pub fn bind(sample: impl Fn() -> u64 + Send + 'static) -> NotifySocket {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        let notices = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let notices = notices.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let notice = Notice {
                        text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                        at: Instant::now(),
                        sample: sample(),
                    };
                    notices
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(notice);
                }
            })
        };
        NotifySocket {
            _dir: dir,
            path,
            notices,
            stop,
            thread: Some(thread),
        }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn path(&self) -> OsString {
        self.path.clone().into_os_string()
    }

    /// Every message so far, in arrival order.
    pub fn notices(&self) -> Vec<Notice> {
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first message equal to `text`.
    pub fn first(&self, text: &str) -> Option<Notice> {
        self.notices().into_iter().find(|n| n.text == text)
    }

    /// How many messages equal `text`.
    pub fn count(&self, text: &str) -> usize {
        self.notices().iter().filter(|n| n.text == text).count()
    }

    /// The texts of the `STATUS=` messages, without the key.
    pub fn statuses(&self) -> Vec<String> {
        self.notices()
            .into_iter()
            .filter_map(|n| n.text.strip_prefix("STATUS=").map(str::to_owned))
            .collect()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
