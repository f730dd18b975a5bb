//! A site: a temporary directory with a private configuration file for an emulator and the
//! database it names, the binary run against it the way an operator or systemd would, and the
//! database read with `sqlite3 -readonly` the way operators read it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use super::process::{Process, lsrecd_command};
use super::write_private;

/// The access key the emulators of [`super::emulator::emulator`] accept.
pub const ACCESS_KEY: &str = "LSRECD-BINARY-TEST-ACCESS";
/// The secret key they accept; distinctive so that a leak is easy to find.
pub const SECRET_KEY: &str = "bin-test-secret-Vq7Rw2Zx9Kp4";

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
    pub fn spawn(&self, args: &[&str], envs: &[(&str, OsString)]) -> Process {
        Process::start(
            &format!("lsrecd {}", args.join(" ")),
            self.command(args, envs),
        )
    }

    /// Runs a one-shot `lsrecd ARGS` to its end (killed, and the test failed, after `limit`).
    pub async fn run(&self, args: &[&str], limit: Duration) -> Finished {
        let mut child = self.spawn(args, &[]);
        let status = child
            .wait_exit(limit)
            .await
            .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", child.stderr()));
        Finished {
            status,
            elapsed: child.started().elapsed(),
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
