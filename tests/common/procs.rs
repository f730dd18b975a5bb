//! Running the real `lsrecd` binary as child processes: the emulator (`lsrecd emulator`) driven
//! through its HTTP control API, and daemons that can be killed with SIGKILL or stopped with
//! SIGTERM. Every child is killed when its guard is dropped, so a failing test leaves nothing
//! running. Include with `#[path = "common/procs.rs"] mod procs;`.
#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const LSRECD: &str = env!("CARGO_BIN_EXE_lsrecd");

/// How often a condition is re-checked while waiting for it.
const POLL: Duration = Duration::from_millis(25);

/// Polls `check` until it returns `Some`, or panics with `what` once `timeout` has passed.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: Option<PathBuf>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stderr (and stdout unless piped already) appended to
    /// `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> ChildGuard {
        let err = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", log.display()));
        let out = err.try_clone().expect("log file handle can be cloned");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            name: name.to_string(),
            child: Some(child),
            log: Some(log.to_path_buf()),
        }
    }

    /// The process id (0 once reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status if the process has already exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap. Returns the status, which says
    /// whether the process was still running when the signal came.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("process not reaped yet");
        // An error here means it has exited already; `wait` reports how.
        let _ = child.kill();
        child.wait().expect("wait for the killed process")
    }

    /// SIGTERM through `kill -TERM PID`, then waits up to `timeout` for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill(1)");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("process not reaped yet");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the process") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?} of SIGTERM\n{}",
                self.name,
                self.log_tail(40)
            );
            std::thread::sleep(POLL);
        }
    }

    /// The last `lines` lines of the process's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        match &self.log {
            Some(p) => tail(p, lines),
            None => String::new(),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last `lines` lines of a text file (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Writes `text` to `path` with mode 0600 (a config holding keys must not be readable by others).
pub fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("config written");
}

/// `lsrecd emulator --listen 127.0.0.1:0` as a child process, and its control API.
pub struct EmulatorProcess {
    pub guard: ChildGuard,
    /// `http://127.0.0.1:PORT`, the `api.endpoint` to configure.
    pub base: String,
    http: reqwest::Client,
}

impl EmulatorProcess {
    /// Starts the emulator and reads its address from the first line it prints. Its stderr goes
    /// to `log`.
    pub fn start(log: &Path) -> EmulatorProcess {
        let err = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", log.display()));
        let mut child = Command::new(LSRECD)
            .args(["emulator", "--listen", "127.0.0.1:0"])
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start lsrecd emulator");
        let stdout = child.stdout.take().expect("stdout is piped");
        let guard = ChildGuard {
            name: "lsrecd emulator".to_string(),
            child: Some(child),
            log: Some(log.to_path_buf()),
        };
        // The first line comes from a reader thread so that waiting for it has a deadline; the
        // thread then drains the rest so the emulator never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            for _ in lines {}
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("the emulator printed no address\n{}", guard.log_tail(20)));
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first emulator line {first:?}"))
            .trim()
            .to_string();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        EmulatorProcess { guard, base, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_emulator{path}", self.base)
    }

    async fn expect_ok(&self, what: &str, r: reqwest::RequestBuilder) -> String {
        let reply = r
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: control request failed: {e}"));
        let status = reply.status();
        let text = reply.text().await.unwrap_or_default();
        assert!(status.is_success(), "{what}: HTTP {status}: {text}");
        text
    }

    /// `GET /_emulator{path}` as JSON.
    pub async fn get(&self, path: &str) -> Value {
        let text = self.expect_ok(path, self.http.get(self.url(path))).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
    }

    /// `POST /_emulator{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) {
        self.expect_ok(path, self.http.post(self.url(path)).json(body))
            .await;
    }

    /// `PUT /_emulator{path}` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) {
        self.expect_ok(path, self.http.put(self.url(path)).json(body))
            .await;
    }

    /// `DELETE /_emulator{path}`.
    pub async fn delete(&self, path: &str) {
        self.expect_ok(path, self.http.delete(self.url(path))).await;
    }

    /// Adds a channel from a `ChannelSpec`-shaped JSON object.
    pub async fn add_channel(&self, spec: &Value) {
        self.post("/channels", spec).await;
    }

    /// The stream on `id` starts (`live`) or ends.
    pub async fn set_live(&self, id: &str, live: bool) {
        let what = if live { "live" } else { "offline" };
        let path = format!("/channels/{id}/{what}");
        self.expect_ok(&path, self.http.post(self.url(&path))).await;
    }

    /// Adds a fault rule (`FaultRule`-shaped JSON).
    pub async fn add_fault(&self, rule: &Value) {
        self.post("/faults", rule).await;
    }

    /// Removes every fault rule.
    pub async fn clear_faults(&self) {
        self.delete("/faults").await;
    }

    /// The counters (`Counters`-shaped JSON).
    pub async fn counters(&self) -> Value {
        self.get("/counters").await
    }

    /// Every record the emulator has made, deleted ones included.
    pub async fn records(&self) -> Vec<Value> {
        match self
            .get("/records")
            .await
            .get_mut("records")
            .map(Value::take)
        {
            Some(Value::Array(records)) => records,
            other => panic!("unexpected records answer: {other:?}"),
        }
    }
}
