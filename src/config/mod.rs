//! Configuration: the TOML file documented key by key in `config.toml.example`, parsed once
//! into typed values.
//!
//! [`Config::load`] reads the file, rejects unknown keys, checks every value and returns typed
//! settings (`Duration`, `Tz`, [`CronSchedule`], [`Secret`]), or a [`ConfigError`] listing each
//! problem as `FILE:LINE:COL: KEY: MESSAGE`.
//!
//! # Layout
//!
//! - `raw`: the file as written (`deny_unknown_fields`, spans on every leaf).
//! - `validate`: raw → typed, with defaults and the rules below.
//! - [`credentials`]: where the API keys come from (file, `*_file`, environment, systemd
//!   credentials) and the [`Env`] lookups tests replace.
//! - [`error`]: [`ConfigError`] and the mapping of byte offsets to lines, columns and keys.
//!
//! # Rules
//!
//! - Durations are humantime strings (`"90s"`, `"1h 30m"`). `api.timeout`,
//!   `retry.initial_backoff`, `retention.warn_before`, `channel.max_duration` and
//!   `schedule.duration` must be above zero; `daemon.poll_interval` and
//!   `daemon.record_poll_interval` at least 1s; `retry.max_backoff` at least
//!   `retry.initial_backoff`; `schedule.catch_up` may be `"0s"` (no catch-up).
//! - `api.endpoint` is an `http`/`https` URL without credentials, query or fragment; trailing
//!   slashes are dropped. `api.region` is `KR` or `FKR` (any case). `api.max_rps` is a number
//!   above zero. `retry.max_attempts` is an integer of at least 1.
//! - Time zones are IANA names (`Asia/Seoul`, `UTC`), matched exactly.
//! - `[[channel]]` ids are unique and made of letters, digits, `-` and `_` (they go into API
//!   paths). Labels are unique, and no label may equal another channel's id, so that a
//!   schedule's `channel` always names exactly one channel.
//! - `[[schedule]]` names are unique; `channel` must be a `[[channel]]` id or label (an id
//!   wins); `cron` must parse and be able to fire at all (`0 0 30 2 *` cannot).
//! - `[callback]` needs `listen` and a `token` of at least 16 characters from `A-Z a-z 0-9 - . _ ~`
//!   (it is a URL path segment); `[metrics]` needs `listen`; both are `IP:PORT`, and differ.
//! - Relative paths (`daemon.database`, `api.*_file`) are relative to the configuration file's
//!   directory.
//! - An inline `api.secret_key` is accepted with a warning (louder when the file can be read by
//!   group or others).
//! - `http://` endpoints are accepted only to this machine (`localhost`, `127.0.0.0/8`, `::1`):
//!   elsewhere the access key and signatures would travel in clear text. `api.allow_insecure_endpoint
//!   = true` allows it, with a warning.
//! - `access_key_file` and `secret_key_file` must not be accessible by group or others (mode
//!   `0600` or stricter); `api.allow_insecure_key_files = true` allows it, with a warning.
//!   systemd credentials are not checked: systemd hands them over privately.
//! - A `metrics.listen` or `callback.listen` that is not a loopback address is accepted with a
//!   warning.
//! - `[ha]` needs `etcd`, a non-empty list of `http`/`https` URLs without credentials, query or
//!   fragment (an `http://` one to another machine is accepted with a warning: anyone on the path
//!   could forge etcd's answers); `ha.key` is a non-empty etcd key without a trailing `/`;
//!   `ha.lease_ttl` is whole seconds, at least 2s (etcd's smallest lease); `ha.instance` is 1–63
//!   of `A-Z a-z 0-9 . _ -`, unique per instance, the host name by default.
//!
//! Warnings are [`Config::warnings`]: logged by [`Config::load`], listed by `lsrecd check`.
//! - [`Config::read_without_keys`] applies every rule except finding the keys: key files, the
//!   environment and systemd credentials are not read (for checking a configuration on a machine
//!   that has no keys, such as the CI of a configuration repository).

pub mod credentials;
pub mod error;
mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

pub use credentials::{Env, KeySource, ProcessEnv};
pub use error::{ConfigError, Problem};

use crate::livestation::{Credentials, Region};
use crate::schedule::CronSchedule;
use crate::secret::Secret;

/// Default `api.endpoint`.
pub const DEFAULT_ENDPOINT: &str = "https://livestation.apigw.ntruss.com";
/// Default `api.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `api.landing_margin`.
pub const DEFAULT_LANDING_MARGIN: Duration = Duration::from_secs(5);
/// Default `api.max_rps`.
pub const DEFAULT_MAX_RPS: f64 = 5.0;
/// Default `daemon.database`.
pub const DEFAULT_DATABASE: &str = "/var/lib/lsrecd/lsrecd.db";
/// Default `daemon.poll_interval`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Default `daemon.record_poll_interval`.
pub const DEFAULT_RECORD_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Default `daemon.keep_history`.
pub const DEFAULT_KEEP_HISTORY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Default `retry.max_attempts`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Default `retry.initial_backoff`.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Default `retry.max_backoff`.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Default `retention.warn_before`.
pub const DEFAULT_WARN_BEFORE: Duration = Duration::from_secs(24 * 3600);
/// Default `schedule.catch_up`.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(5 * 60);
/// Default `ha.key`.
pub const DEFAULT_HA_KEY: &str = "/lsrecd/leader";
/// Default `ha.lease_ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// Whether loading a configuration finds and reads the API keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keys {
    /// Both keys must be found and readable (what the daemon and the API commands need).
    #[default]
    Required,
    /// Only how the keys are written in the file is checked; no key file, environment variable
    /// or credential is read, and the loaded credentials are empty.
    NotChecked,
}

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[api]`.
    pub api: ApiConfig,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[retry]`.
    pub retry: RetryConfig,
    /// `[retention]`.
    pub retention: RetentionConfig,
    /// `[metrics]`, when present.
    pub metrics: Option<MetricsConfig>,
    /// `[callback]`, when present.
    pub callback: Option<CallbackConfig>,
    /// `[ha]`, when present: active/standby on an etcd lease.
    pub ha: Option<HaConfig>,
    /// Every `[[channel]]`, in file order.
    pub channels: Vec<ChannelConfig>,
    /// Positions in `channels`, in the order of their ids: what [`Config::channel_with_id`]
    /// searches. At 10,000 channels it costs 80 kB, where a map from id to channel would cost a
    /// copy of every id and a table.
    channel_order: Vec<usize>,
    /// Every `[[schedule]]`, in file order.
    pub schedules: Vec<ScheduleConfig>,
    /// The file this was loaded from.
    pub source: PathBuf,
    /// Settings that are allowed but risky (a listener other machines can reach, a cleartext
    /// endpoint or loose key files allowed by an override, an inline secret key), in file order.
    /// [`Config::load`] logs them; `lsrecd check` lists them.
    pub warnings: Vec<Problem>,
}

/// `[api]`: how to reach and authenticate to Live Station.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Scheme and host (and optional path prefix), without a trailing slash.
    pub endpoint: String,
    /// `KR` or `FKR`: path prefix and region header.
    pub region: Region,
    /// Access and secret key.
    pub credentials: Credentials,
    /// Where the access key came from.
    pub access_key_source: KeySource,
    /// Where the secret key came from.
    pub secret_key_source: KeySource,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long after `timeout` a request without a clear answer may still take effect at
    /// Live Station (a backend can apply a request after the gateway gave up on it). Nothing
    /// is concluded about such a request, and nothing sent in its place, before
    /// `timeout + landing_margin` after it left.
    pub landing_margin: Duration,
    /// Client-side rate limit shared by all calls, in requests per second (> 0).
    pub max_rps: f64,
}

/// `[daemon]`.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// SQLite database path (made absolute against the config file's directory if relative).
    pub database: PathBuf,
    /// Default time zone for schedules (UTC when unset).
    pub timezone: Tz,
    /// How often all channels are read.
    pub poll_interval: Duration,
    /// How often records not in a final state are re-read.
    pub record_poll_interval: Duration,
    /// Finished `actions` and `events` older than this are pruned (daily); `records`, their
    /// history and occurrences are never pruned.
    pub keep_history: Duration,
    /// The database may not grow beyond this many bytes (`None`: only the disk limits it).
    /// Reaching it is handled like a full disk: lsrecd keeps running and sends nothing whose
    /// intent it cannot write.
    pub max_database_size: Option<u64>,
}

/// `[retry]`: exponential backoff with full jitter.
#[derive(Clone, Debug)]
pub struct RetryConfig {
    /// Attempts per action, the first included (>= 1).
    pub max_attempts: u32,
    /// Backoff cap of the first retry.
    pub initial_backoff: Duration,
    /// Largest backoff (>= `initial_backoff`).
    pub max_backoff: Duration,
}

/// `[retention]`.
#[derive(Clone, Debug)]
pub struct RetentionConfig {
    /// Warn when a record not yet uploaded will be deleted within this long.
    pub warn_before: Duration,
    /// Object Storage bucket to upload expiring records to, if any.
    pub upload_bucket: Option<String>,
    /// Also store, follow, warn about and upload the records of channels that are not
    /// configured (other people's recordings in the same account). Off by default.
    pub all_channels: bool,
}

/// `[metrics]`.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

/// `[callback]`.
#[derive(Clone, Debug)]
pub struct CallbackConfig {
    /// Address receiving Live Station callbacks.
    pub listen: SocketAddr,
    /// The path segment of `POST /callback/{token}`.
    pub token: Secret,
}

/// `[ha]`: several instances observe, the holder of an etcd lease acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaConfig {
    /// etcd client URLs (`http://10.0.0.5:2379`), without a trailing slash, tried in order.
    pub etcd: Vec<String>,
    /// The key the leader holds; hand-over notes live under `{key}/notes/`.
    pub key: String,
    /// TTL of this instance's lease (whole seconds). A leader stops acting when it has not
    /// renewed its lease for half of it.
    pub lease_ttl: Duration,
    /// This instance's name in etcd, events and metrics (the host name by default).
    pub instance: String,
}

/// One `[[channel]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Live Station channel id.
    pub id: String,
    /// Optional unique name schedules and commands may use instead of the id.
    pub label: Option<String>,
    /// Record whenever the channel is publishing.
    pub record_when_live: bool,
    /// Cap on any recording lsrecd starts on this channel.
    pub max_duration: Option<Duration>,
}

/// One `[[schedule]]`.
#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    /// Unique name (`schedule:<name>` in the database).
    pub name: String,
    /// The channel id (resolved from the id or label written in the file).
    pub channel_id: String,
    /// When occurrences fire.
    pub cron: CronSchedule,
    /// The schedule's own zone, else `daemon.timezone`, else UTC.
    pub timezone: Tz,
    /// Window length; `None`: until the channel stops publishing.
    pub duration: Option<Duration>,
    /// How late after its fire time a missed occurrence is still started.
    pub catch_up: Duration,
}

impl Config {
    /// The configured channel with this id (found in O(log n)).
    pub fn channel_with_id(&self, id: &str) -> Option<&ChannelConfig> {
        let at = self
            .channel_order
            .binary_search_by(|&i| self.channels[i].id.as_str().cmp(id))
            .ok()?;
        Some(&self.channels[self.channel_order[at]])
    }

    /// The positions of `channels` in the order of their ids.
    pub(super) fn order_of(channels: &[ChannelConfig]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..channels.len()).collect();
        order.sort_unstable_by(|&a, &b| channels[a].id.cmp(&channels[b].id));
        order
    }

    /// Reads and validates the configuration file at `path`, taking credentials from the
    /// process environment where the file does not name them, and logs its
    /// [`warnings`](Config::warnings).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &ProcessEnv)
    }

    /// [`Config::load`] with explicit environment lookups.
    pub fn load_with_env(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let config = Config::read_with_env(path, env)?;
        for warning in &config.warnings {
            tracing::warn!("{}", error::located(path, warning));
        }
        Ok(config)
    }

    /// [`Config::load`] without logging the warnings, for a caller that shows them itself.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        Config::read_with_env(path, &ProcessEnv)
    }

    /// [`Config::read`] with explicit environment lookups.
    pub fn read_with_env(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = Config::read_text(path)?;
        Config::from_str_with_env(&text, path, env)
    }

    /// [`Config::read`] without looking for the API keys ([`Keys::NotChecked`]): key files, the
    /// environment and systemd credentials are not read, and the credentials are empty. For
    /// reporting on a configuration, never for calling the API.
    pub fn read_without_keys(path: &Path) -> Result<Config, ConfigError> {
        let text = Config::read_text(path)?;
        Config::from_str_without_keys(&text, path)
    }

    /// The file's text, wiped when dropped (it may hold keys).
    fn read_text(path: &Path) -> Result<zeroize::Zeroizing<String>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::unreadable(path, format!("cannot read the configuration file: {e}"))
        })?;
        Ok(zeroize::Zeroizing::new(text))
    }

    /// Each warning as `FILE:LINE:COL: KEY: MESSAGE`, the way errors are printed.
    pub fn warning_lines(&self) -> Vec<String> {
        self.warnings
            .iter()
            .map(|w| error::located(&self.source, w))
            .collect()
    }

    /// Validates configuration text; `path` names it in errors and anchors relative paths.
    /// Credentials not in the text come from the process environment.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::from_str_with_env(text, path, &ProcessEnv)
    }

    /// [`Config::from_str`] with explicit environment lookups.
    pub fn from_str_with_env(
        text: &str,
        path: &Path,
        env: &dyn Env,
    ) -> Result<Config, ConfigError> {
        validate::validate(text, path, env, Keys::Required)
    }

    /// [`Config::from_str`] with [`Keys::NotChecked`]: the text alone decides.
    pub fn from_str_without_keys(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let no_env: [(&str, &str); 0] = [];
        validate::validate(text, path, &no_env, Keys::NotChecked)
    }

    /// The channel with this id, else the one with this label.
    pub fn channel(&self, id_or_label: &str) -> Option<&ChannelConfig> {
        self.channel_with_id(id_or_label).or_else(|| {
            self.channels
                .iter()
                .find(|c| c.label.as_deref() == Some(id_or_label))
        })
    }

    /// The schedule with this name.
    pub fn schedule(&self, name: &str) -> Option<&ScheduleConfig> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects formatted log output.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn logs_of(f: impl FnOnce()) -> String {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn write_config(mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "[api]\naccess_key = \"ak-123\"\nsecret_key = \"sk-SHOULD-NOT-APPEAR\"\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        (dir, path)
    }

    #[cfg(unix)]
    #[test]
    fn an_inline_secret_key_in_a_group_readable_file_is_warned_about_without_the_key() {
        let (_dir, path) = write_config(0o640);
        let no_env: [(&str, &str); 0] = [];
        let logs = logs_of(|| {
            Config::load_with_env(&path, &no_env).unwrap();
        });
        assert!(logs.contains("WARN"), "{logs}");
        assert!(logs.contains("group or others"), "{logs}");
        assert!(logs.contains("(mode 0640)"), "{logs}");
        assert!(logs.contains(&path.display().to_string()), "{logs}");
        assert!(!logs.contains("SHOULD-NOT-APPEAR"), "{logs}");
    }

    #[test]
    fn an_inline_secret_key_in_a_private_file_still_gets_a_gentle_warning() {
        let (_dir, path) = write_config(0o600);
        let no_env: [(&str, &str); 0] = [];
        let logs = logs_of(|| {
            Config::load_with_env(&path, &no_env).unwrap();
        });
        assert!(logs.contains("prefer secret_key_file"), "{logs}");
        assert!(!logs.contains("group or others"), "{logs}");
        assert!(!logs.contains("SHOULD-NOT-APPEAR"), "{logs}");
    }

    #[test]
    fn channels_are_found_by_id_whatever_their_order_in_the_file() {
        let path = Path::new("/nonexistent/lsrecd/config.toml");
        let mut text = String::new();
        for i in [5, 3, 9, 1, 7, 2] {
            text.push_str(&format!(
                "[[channel]]\nid = \"ls-{i}\"\nlabel = \"studio-{i}\"\n"
            ));
        }
        let c = Config::from_str_without_keys(&text, path).unwrap();
        for i in [5, 3, 9, 1, 7, 2] {
            let found = c
                .channel_with_id(&format!("ls-{i}"))
                .map(|c| c.label.clone());
            assert_eq!(found, Some(Some(format!("studio-{i}"))));
        }
        for absent in ["ls-0", "ls-4", "ls-10", "studio-3", ""] {
            assert!(c.channel_with_id(absent).is_none(), "{absent}");
        }
        assert_eq!(c.channel("studio-3").map(|c| c.id.as_str()), Some("ls-3"));
        assert_eq!(c.channel("ls-3").map(|c| c.id.as_str()), Some("ls-3"));
    }

    #[test]
    fn keys_from_the_environment_cause_no_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "").unwrap();
        let env = [("LSRECD_ACCESS_KEY", "a"), ("LSRECD_SECRET_KEY", "s")];
        let logs = logs_of(|| {
            Config::load_with_env(&path, &env).unwrap();
        });
        assert!(logs.is_empty(), "{logs}");
    }

    #[test]
    fn without_keys_no_key_is_needed_and_no_key_file_is_read() {
        let path = Path::new("/nonexistent/lsrecd/config.toml");
        let c = Config::from_str_without_keys("", path).unwrap();
        assert_eq!(c.api.access_key_source, KeySource::NotChecked);
        assert_eq!(c.api.secret_key_source, KeySource::NotChecked);
        assert_eq!(c.api.credentials.secret_key.expose(), "");

        let files = "[api]\naccess_key_file = \"absent/access_key\"\nsecret_key_file = \"/absent/secret_key\"\n";
        let c = Config::from_str_without_keys(files, path).unwrap();
        assert_eq!(c.api.secret_key_source, KeySource::NotChecked);
        // The same file with keys required names the unreadable file.
        let e = Config::from_str_with_env(files, path, &[("", ""); 0]).unwrap_err();
        assert!(e.to_string().contains("/absent/secret_key"), "{e}");
    }

    #[test]
    fn without_keys_the_rest_of_the_file_is_still_checked() {
        let path = Path::new("/etc/lsrecd/config.toml");
        let both = "[api]\nsecret_key = \"x\"\nsecret_key_file = \"k\"\n";
        let e = Config::from_str_without_keys(both, path).unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let empty_file_name = "[api]\nsecret_key_file = \" \"\n";
        let e = Config::from_str_without_keys(empty_file_name, path).unwrap_err();
        assert!(e.to_string().contains("api.secret_key_file"), "{e}");
        let bad_cron = "[[channel]]\nid = \"a\"\n[[schedule]]\nname = \"n\"\nchannel = \"a\"\ncron = \"0 25 * * *\"\n";
        let e = Config::from_str_without_keys(bad_cron, path).unwrap_err();
        assert!(e.to_string().contains("schedule[0].cron"), "{e}");
    }
}
