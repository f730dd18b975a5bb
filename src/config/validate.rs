//! Raw → typed: defaults, value checks and cross-references, collecting every problem with
//! its position before giving up. The rules are listed in the [`super`] module documentation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use toml::{Spanned, Value};

use super::credentials::{self, Env, KeySource};
use super::error::{self, ConfigError, Positions, Problem};
use super::raw::{Leaf, RawApi, RawConfig, RawDaemon, RawHa, RawRetention, RawRetry};
use super::*;
use crate::livestation::client::is_loopback;
use crate::livestation::{Credentials, Region};
use crate::schedule::CronSchedule;
use crate::secret::Secret;

/// The smallest value a duration setting accepts.
#[derive(Clone, Copy)]
enum Min {
    /// `0s` is fine.
    Zero,
    /// Must be above zero.
    AboveZero,
    /// At least this long.
    AtLeast(Duration),
}

pub(super) fn validate(
    text: &str,
    path: &Path,
    env: &dyn Env,
    keys: Keys,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text)
        .map_err(|e| ConfigError::new(path, vec![error::from_toml(text, &e)]))?;
    let mut v = Validator {
        positions: Positions::new(text),
        base: path.parent().filter(|p| !p.as_os_str().is_empty()),
        problems: Vec::new(),
        warnings: Vec::new(),
        keys,
    };
    let api = v.api(raw.api.as_ref(), env);
    if let Some(leaf) = raw
        .api
        .as_ref()
        .and_then(|a| a.get_ref().secret_key.as_ref())
    {
        let message = match credentials::loose_mode(path) {
            Some(mode) => format!(
                "is inline in a file that group or others can access (mode {mode:04o}); \
                 chmod 600 the file, or move the key to secret_key_file or a systemd credential"
            ),
            None => "is inline in the configuration file; prefer secret_key_file or a systemd \
                     credential"
                .to_string(),
        };
        v.warn(leaf.span(), "api.secret_key", message);
    }
    let daemon = v.daemon(raw.daemon.as_ref().map(Spanned::get_ref));
    let retry = v.retry(raw.retry.as_ref().map(Spanned::get_ref));
    let retention = v.retention(raw.retention.as_ref().map(Spanned::get_ref));
    let metrics = raw.metrics.as_ref().and_then(|m| {
        let listen = v.listen(&m.get_ref().listen, "metrics.listen", m.span())?;
        Some(MetricsConfig { listen })
    });
    let callback = raw.callback.as_ref().and_then(|c| {
        let listen = v.listen(&c.get_ref().listen, "callback.listen", c.span());
        let token = v.token(&c.get_ref().token, c.span());
        Some(CallbackConfig {
            listen: listen?,
            token: token?,
        })
    });
    if let (Some(m), Some(c), Some(raw_c)) = (&metrics, &callback, &raw.callback)
        && m.listen == c.listen
    {
        let span = raw_c
            .get_ref()
            .listen
            .as_ref()
            .map_or(raw_c.span(), Spanned::span);
        v.fail(
            span,
            "callback.listen",
            format!("{} is also metrics.listen; use another port", c.listen),
        );
    }
    let ha = raw.ha.as_ref().and_then(|h| v.ha(h.get_ref(), h.span()));
    let channels = v.channels(&raw.channel);
    let schedules = v.schedules(&raw.schedule, &channels, daemon.timezone);

    let mut problems = v.problems;
    let mut warnings = v.warnings;
    warnings.sort_by_key(|p| (p.line, p.column));
    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.line, p.column));
        return Err(ConfigError::new(path, problems));
    }
    match api {
        Some(api) => Ok(Config {
            api,
            daemon,
            retry,
            retention,
            metrics,
            callback,
            ha,
            channel_order: Config::order_of(&channels),
            channels,
            schedules,
            source: path.to_path_buf(),
            warnings,
        }),
        // Unreachable in practice: a missing part of [api] always records a problem.
        None => Err(ConfigError::unreadable(
            path,
            "the [api] settings are incomplete".into(),
        )),
    }
}

struct Validator<'a> {
    positions: Positions<'a>,
    base: Option<&'a Path>,
    problems: Vec<Problem>,
    /// Allowed but risky settings, reported at load and by `lsrecd check`.
    warnings: Vec<Problem>,
    keys: Keys,
}

/// `"512MiB"` → bytes; `None` when the text is not a number with a known unit.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn type_name(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("date-time {d}"),
        Value::Array(_) => "an array".into(),
        Value::Table(_) => "a table".into(),
    }
}

impl Validator<'_> {
    fn fail(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let p = self.positions.problem(span, Some(key.to_string()), message);
        self.problems.push(p);
    }

    fn warn(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let p = self.positions.problem(span, Some(key.to_string()), message);
        self.warnings.push(p);
    }

    fn line_of(&self, span: &Range<usize>) -> usize {
        self.positions.line_column(span.start).0
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        match self.base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// A non-empty (after trimming) string, or a problem.
    fn text<'s>(&mut self, leaf: &'s Spanned<String>, key: &str) -> Option<&'s str> {
        let s = leaf.get_ref().trim();
        if s.is_empty() {
            self.fail(leaf.span(), key, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn duration(&mut self, leaf: &Leaf<Value>, key: &str, default: Duration, min: Min) -> Duration {
        let Some(leaf) = leaf else {
            return default;
        };
        let Value::String(s) = leaf.get_ref() else {
            let hint = match leaf.get_ref() {
                Value::Integer(i) => format!(" (for seconds write \"{i}s\")"),
                _ => String::new(),
            };
            self.fail(
                leaf.span(),
                key,
                format!(
                    "expected a duration string such as \"90s\" or \"1h 30m\", found {}{hint}",
                    type_name(leaf.get_ref())
                ),
            );
            return default;
        };
        let d = match humantime::parse_duration(s.trim()) {
            Ok(d) => d,
            Err(_) if s.trim().starts_with('-') => {
                self.fail(
                    leaf.span(),
                    key,
                    format!("{s:?}: a duration cannot be negative"),
                );
                return default;
            }
            Err(e) => {
                self.fail(
                    leaf.span(),
                    key,
                    format!("{s:?} is not a duration ({e}); write e.g. \"90s\" or \"1h 30m\""),
                );
                return default;
            }
        };
        let problem = match min {
            Min::Zero => None,
            Min::AboveZero if d.is_zero() => Some("must be above zero".to_string()),
            Min::AtLeast(m) if d < m => Some(format!(
                "must be at least {}, not {s:?}",
                humantime::format_duration(m)
            )),
            _ => None,
        };
        if let Some(p) = problem {
            self.fail(leaf.span(), key, p);
        }
        d
    }

    fn timezone(&mut self, leaf: &Spanned<String>, key: &str) -> Option<Tz> {
        let name = leaf.get_ref().trim();
        if let Ok(tz) = name.parse::<Tz>() {
            return Some(tz);
        }
        let suggestion = chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(name))
            .map(|tz| format!("; did you mean {:?}?", tz.name()))
            .unwrap_or_else(|| " (e.g. \"Asia/Seoul\", \"UTC\")".to_string());
        self.fail(
            leaf.span(),
            key,
            format!("{name:?} is not an IANA time zone name{suggestion}"),
        );
        None
    }

    fn listen(
        &mut self,
        leaf: &Leaf<String>,
        key: &str,
        table: Range<usize>,
    ) -> Option<SocketAddr> {
        let Some(leaf) = leaf else {
            self.fail(
                table,
                key,
                "is required (an IP:PORT such as \"127.0.0.1:9464\")",
            );
            return None;
        };
        match leaf.get_ref().trim().parse::<SocketAddr>() {
            Ok(a) => {
                if !a.ip().is_loopback() {
                    self.warn(
                        leaf.span(),
                        key,
                        format!(
                            "{a} accepts connections from other machines; bind 127.0.0.1 and \
                             put a TLS reverse proxy or a firewall in front if they need it"
                        ),
                    );
                }
                Some(a)
            }
            Err(_) => {
                self.fail(
                    leaf.span(),
                    key,
                    format!(
                        "{:?} is not an IP address and port (e.g. \"127.0.0.1:9464\", \"[::1]:9464\")",
                        leaf.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn token(&mut self, leaf: &Leaf<Secret>, table: Range<usize>) -> Option<Secret> {
        const KEY: &str = "callback.token";
        let Some(leaf) = leaf else {
            self.fail(
                table,
                KEY,
                "is required: the secret path segment of POST /callback/{token}",
            );
            return None;
        };
        let token = leaf.get_ref().expose().trim();
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        if !token.chars().all(allowed) {
            self.fail(
                leaf.span(),
                KEY,
                "may contain only letters, digits and - . _ ~ (it is a URL path segment)",
            );
            return None;
        }
        if token.chars().count() < 16 {
            self.fail(
                leaf.span(),
                KEY,
                format!(
                    "must be at least 16 characters long (it has {}); e.g. `openssl rand -hex 16`",
                    token.chars().count()
                ),
            );
            return None;
        }
        Some(Secret::new(token))
    }

    fn api(&mut self, section: Option<&Spanned<RawApi>>, env: &dyn Env) -> Option<ApiConfig> {
        let default = RawApi::default();
        let raw = section.map_or(&default, Spanned::get_ref);
        let header = section.map(Spanned::span);

        let allow_insecure_endpoint = raw
            .allow_insecure_endpoint
            .as_ref()
            .is_some_and(|b| *b.get_ref());
        let allow_insecure_key_files = raw
            .allow_insecure_key_files
            .as_ref()
            .is_some_and(|b| *b.get_ref());
        let endpoint = match &raw.endpoint {
            None => DEFAULT_ENDPOINT.to_string(),
            Some(leaf) => self
                .endpoint(leaf, allow_insecure_endpoint)
                .unwrap_or_default(),
        };
        let region = match &raw.region {
            None => Region::Kr,
            Some(leaf) => Region::parse(leaf.get_ref().trim()).unwrap_or_else(|| {
                self.fail(
                    leaf.span(),
                    "api.region",
                    format!(
                        "{:?} is not a region; use \"KR\" or \"FKR\"",
                        leaf.get_ref()
                    ),
                );
                Region::Kr
            }),
        };
        let timeout = self.duration(&raw.timeout, "api.timeout", DEFAULT_TIMEOUT, Min::AboveZero);
        let landing_margin = self.duration(
            &raw.landing_margin,
            "api.landing_margin",
            DEFAULT_LANDING_MARGIN,
            Min::Zero,
        );
        let max_rps = match &raw.max_rps {
            None => DEFAULT_MAX_RPS,
            Some(leaf) => {
                let n = match leaf.get_ref() {
                    Value::Integer(i) => Some(*i as f64),
                    Value::Float(f) => Some(*f),
                    _ => None,
                };
                match n {
                    Some(n) if n.is_finite() && n > 0.0 => n,
                    Some(_) => {
                        self.fail(leaf.span(), "api.max_rps", "must be a number above zero");
                        DEFAULT_MAX_RPS
                    }
                    None => {
                        let found = type_name(leaf.get_ref());
                        self.fail(
                            leaf.span(),
                            "api.max_rps",
                            format!("expected a number (requests per second), found {found}"),
                        );
                        DEFAULT_MAX_RPS
                    }
                }
            }
        };
        let access = self.key(
            &raw.access_key,
            &raw.access_key_file,
            "access_key",
            credentials::ACCESS_KEY_ENV,
            header.clone(),
            allow_insecure_key_files,
            env,
        );
        let secret = self.key(
            &raw.secret_key,
            &raw.secret_key_file,
            "secret_key",
            credentials::SECRET_KEY_ENV,
            header,
            allow_insecure_key_files,
            env,
        );
        let ((access_key, access_key_source), (secret_key, secret_key_source)) = (access?, secret?);
        Some(ApiConfig {
            endpoint,
            region,
            credentials: Credentials {
                access_key,
                secret_key,
            },
            access_key_source,
            secret_key_source,
            timeout,
            landing_margin,
            max_rps,
        })
    }

    fn endpoint(&mut self, leaf: &Spanned<String>, allow_insecure: bool) -> Option<String> {
        const KEY: &str = "api.endpoint";
        let text = leaf.get_ref().trim().trim_end_matches('/');
        let problem = match reqwest::Url::parse(text) {
            Err(e) => Some(format!("{text:?} is not a URL ({e})")),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => Some(format!(
                "{text:?} must start with https:// (or http:// for a local emulator)"
            )),
            Ok(u) if u.host_str().is_none() => Some(format!("{text:?} has no host")),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                Some("must not contain a user name or password".to_string())
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                Some(format!("{text:?} must not have a query or fragment"))
            }
            // The access key and a signature valid for five minutes travel in every request.
            Ok(u) if u.scheme() == "http" && !is_loopback(&u) => {
                if allow_insecure {
                    self.warn(
                        leaf.span(),
                        KEY,
                        format!(
                            "{text:?} sends the access key and request signatures in clear \
                             text (allowed by api.allow_insecure_endpoint)"
                        ),
                    );
                    None
                } else {
                    Some(format!(
                        "{text:?} would send the access key and request signatures in clear \
                         text: use https://, or http:// only to this machine (127.0.0.1, ::1, \
                         localhost), or set api.allow_insecure_endpoint = true"
                    ))
                }
            }
            Ok(_) => None,
        };
        match problem {
            Some(p) => {
                self.fail(leaf.span(), KEY, p);
                None
            }
            None => Some(text.to_string()),
        }
    }

    /// One API key, by the precedence in [`super::credentials`].
    #[allow(clippy::too_many_arguments)]
    fn key(
        &mut self,
        inline: &Leaf<Secret>,
        file: &Leaf<String>,
        name: &str,
        var: &'static str,
        header: Option<Range<usize>>,
        allow_insecure_file: bool,
        env: &dyn Env,
    ) -> Option<(Secret, KeySource)> {
        let inline_key = format!("api.{name}");
        let file_key = format!("api.{name}_file");
        match (inline, file) {
            (Some(_), Some(f)) => {
                self.fail(
                    f.span(),
                    &file_key,
                    format!("set either {name} or {name}_file, not both"),
                );
                None
            }
            (Some(i), None) => {
                let key = i.get_ref().expose().trim();
                if key.is_empty() {
                    self.fail(i.span(), &inline_key, "must not be empty");
                    return None;
                }
                Some((Secret::new(key), KeySource::Inline))
            }
            (None, Some(f)) => {
                let written = self.text(f, &file_key)?;
                let path = self.resolve(written);
                if self.keys == Keys::NotChecked {
                    return Some((Secret::new(""), KeySource::NotChecked));
                }
                match credentials::read_key_file(&path) {
                    Ok(secret) => {
                        if let Some(mode) = credentials::loose_mode(&path) {
                            let shown = path.display();
                            if !allow_insecure_file {
                                self.fail(
                                    f.span(),
                                    &file_key,
                                    format!(
                                        "can be accessed by group or others (mode {mode:04o}): \
                                         {shown}; chmod 600 it, or set \
                                         api.allow_insecure_key_files = true"
                                    ),
                                );
                                return None;
                            }
                            self.warn(
                                f.span(),
                                &file_key,
                                format!(
                                    "can be accessed by group or others (mode {mode:04o}, \
                                     allowed by api.allow_insecure_key_files): {shown}"
                                ),
                            );
                        }
                        Some((secret, KeySource::File(path)))
                    }
                    Err(e) => {
                        self.fail(f.span(), &file_key, e);
                        None
                    }
                }
            }
            (None, None) if self.keys == Keys::NotChecked => {
                Some((Secret::new(""), KeySource::NotChecked))
            }
            (None, None) => {
                let span = header.unwrap_or(0..0);
                match credentials::from_environment(env, var, name) {
                    Some(Ok(found)) => Some(found),
                    Some(Err(e)) => {
                        self.fail(span, &inline_key, e);
                        None
                    }
                    None => {
                        self.fail(
                            span,
                            &inline_key,
                            format!(
                                "no {} key: set {name}_file (or {name}) in [api], the {var} \
                                 environment variable, or a systemd credential named {name} \
                                 ($CREDENTIALS_DIRECTORY/{name})",
                                name.trim_end_matches("_key")
                            ),
                        );
                        None
                    }
                }
            }
        }
    }

    fn daemon(&mut self, raw: Option<&RawDaemon>) -> DaemonConfig {
        let default = RawDaemon::default();
        let raw = raw.unwrap_or(&default);
        let database = match &raw.database {
            None => PathBuf::from(DEFAULT_DATABASE),
            Some(leaf) => self
                .text(leaf, "daemon.database")
                .map(|p| self.resolve(p))
                .unwrap_or_default(),
        };
        let timezone = match &raw.timezone {
            None => Tz::UTC,
            Some(leaf) => self.timezone(leaf, "daemon.timezone").unwrap_or(Tz::UTC),
        };
        let second = Min::AtLeast(Duration::from_secs(1));
        DaemonConfig {
            database,
            timezone,
            poll_interval: self.duration(
                &raw.poll_interval,
                "daemon.poll_interval",
                DEFAULT_POLL_INTERVAL,
                second,
            ),
            record_poll_interval: self.duration(
                &raw.record_poll_interval,
                "daemon.record_poll_interval",
                DEFAULT_RECORD_POLL_INTERVAL,
                second,
            ),
            keep_history: self.duration(
                &raw.keep_history,
                "daemon.keep_history",
                DEFAULT_KEEP_HISTORY,
                Min::AtLeast(Duration::from_secs(3600)),
            ),
            max_database_size: raw
                .max_database_size
                .as_ref()
                .and_then(|leaf| self.size(leaf, "daemon.max_database_size")),
        }
    }

    /// A size in bytes: an integer, or a string with a unit (`"512MiB"`, `"2GB"`, `"64KiB"`);
    /// at least 64 KiB.
    fn size(&mut self, leaf: &Spanned<Value>, key: &str) -> Option<u64> {
        const MIN: u64 = 64 * 1024;
        let bytes = match leaf.get_ref() {
            Value::Integer(i) => u64::try_from(*i).ok(),
            Value::String(text) => parse_size(text),
            other => {
                let found = type_name(other);
                self.fail(
                    leaf.span(),
                    key,
                    format!(
                        "expected a size such as \"512MiB\" or a number of bytes, found {found}"
                    ),
                );
                return None;
            }
        };
        match bytes {
            Some(b) if b >= MIN => Some(b),
            Some(_) => {
                self.fail(leaf.span(), key, "must be at least 64KiB");
                None
            }
            None => {
                self.fail(
                    leaf.span(),
                    key,
                    "expected a size such as \"512MiB\", \"2GiB\" or \"64KiB\" (units: B, KB, MB, GB, KiB, MiB, GiB)",
                );
                None
            }
        }
    }

    fn retry(&mut self, raw: Option<&RawRetry>) -> RetryConfig {
        let default = RawRetry::default();
        let raw = raw.unwrap_or(&default);
        let max_attempts = match &raw.max_attempts {
            None => DEFAULT_MAX_ATTEMPTS,
            Some(leaf) => match leaf.get_ref() {
                Value::Integer(i) if *i >= 1 && *i <= i64::from(u32::MAX) => *i as u32,
                Value::Integer(_) => {
                    self.fail(leaf.span(), "retry.max_attempts", "must be at least 1");
                    DEFAULT_MAX_ATTEMPTS
                }
                other => {
                    let found = type_name(other);
                    self.fail(
                        leaf.span(),
                        "retry.max_attempts",
                        format!("expected an integer, found {found}"),
                    );
                    DEFAULT_MAX_ATTEMPTS
                }
            },
        };
        let initial_backoff = self.duration(
            &raw.initial_backoff,
            "retry.initial_backoff",
            DEFAULT_INITIAL_BACKOFF,
            Min::AboveZero,
        );
        let max_backoff = self.duration(
            &raw.max_backoff,
            "retry.max_backoff",
            DEFAULT_MAX_BACKOFF,
            Min::AboveZero,
        );
        if max_backoff < initial_backoff {
            // Point at whichever of the two the file sets (max_backoff first).
            let span = raw
                .max_backoff
                .as_ref()
                .or(raw.initial_backoff.as_ref())
                .map_or(0..0, Spanned::span);
            self.fail(
                span,
                "retry.max_backoff",
                format!(
                    "({}) must be at least retry.initial_backoff ({})",
                    humantime::format_duration(max_backoff),
                    humantime::format_duration(initial_backoff)
                ),
            );
        }
        RetryConfig {
            max_attempts,
            initial_backoff,
            max_backoff,
        }
    }

    fn retention(&mut self, raw: Option<&RawRetention>) -> RetentionConfig {
        let default = RawRetention::default();
        let raw = raw.unwrap_or(&default);
        RetentionConfig {
            warn_before: self.duration(
                &raw.warn_before,
                "retention.warn_before",
                DEFAULT_WARN_BEFORE,
                Min::AboveZero,
            ),
            upload_bucket: raw
                .upload_bucket
                .as_ref()
                .and_then(|b| self.text(b, "retention.upload_bucket").map(str::to_string)),
            all_channels: raw.all_channels.as_ref().is_some_and(|b| *b.get_ref()),
        }
    }

    fn ha(&mut self, raw: &RawHa, table: Range<usize>) -> Option<HaConfig> {
        let etcd = match &raw.etcd {
            None => {
                self.fail(
                    table.clone(),
                    "ha.etcd",
                    "is required: the etcd client URLs, e.g. [\"http://10.0.0.5:2379\"]",
                );
                None
            }
            Some(leaf) => self.etcd_endpoints(leaf),
        };
        let key = match &raw.key {
            None => Some(DEFAULT_HA_KEY.to_string()),
            Some(leaf) => self.text(leaf, "ha.key").and_then(|k| {
                if k.ends_with('/') {
                    self.fail(
                        leaf.span(),
                        "ha.key",
                        format!(
                            "{k:?} must not end with '/' (hand-over notes live under {k}notes/)"
                        ),
                    );
                    None
                } else {
                    Some(k.to_string())
                }
            }),
        };
        let lease_ttl = self.duration(
            &raw.lease_ttl,
            "ha.lease_ttl",
            DEFAULT_LEASE_TTL,
            Min::AtLeast(Duration::from_secs(2)),
        );
        if let Some(leaf) = &raw.lease_ttl
            && lease_ttl.subsec_nanos() != 0
        {
            self.fail(
                leaf.span(),
                "ha.lease_ttl",
                "must be whole seconds (etcd leases count in seconds)",
            );
        }
        let instance = match &raw.instance {
            Some(leaf) => self
                .text(leaf, "ha.instance")
                .map(str::to_string)
                .filter(|name| {
                    let ok = valid_instance(name);
                    if !ok {
                        self.fail(
                            leaf.span(),
                            "ha.instance",
                            format!("{name:?} must be 1 to 63 of A-Z a-z 0-9 . _ -"),
                        );
                    }
                    ok
                }),
            None => match host_name() {
                Some(name) if valid_instance(&name) => Some(name),
                other => {
                    self.fail(
                        table,
                        "ha.instance",
                        format!(
                            "is required: the host name {:?} cannot serve as the instance name \
                             (1 to 63 of A-Z a-z 0-9 . _ -)",
                            other.unwrap_or_default()
                        ),
                    );
                    None
                }
            },
        };
        Some(HaConfig {
            etcd: etcd?,
            key: key?,
            lease_ttl,
            instance: instance?,
        })
    }

    /// `ha.etcd`: a non-empty array of etcd client URLs.
    fn etcd_endpoints(&mut self, leaf: &Spanned<Value>) -> Option<Vec<String>> {
        const KEY: &str = "ha.etcd";
        let Value::Array(items) = leaf.get_ref() else {
            self.fail(
                leaf.span(),
                KEY,
                format!(
                    "expected an array of URLs such as [\"http://10.0.0.5:2379\"], found {}",
                    type_name(leaf.get_ref())
                ),
            );
            return None;
        };
        if items.is_empty() {
            self.fail(leaf.span(), KEY, "must name at least one etcd client URL");
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("{KEY}[{i}]");
            let Value::String(text) = item else {
                self.fail(
                    leaf.span(),
                    &key,
                    format!("expected a URL string, found {}", type_name(item)),
                );
                continue;
            };
            let text = text.trim().trim_end_matches('/');
            let problem = match reqwest::Url::parse(text) {
                Err(e) => Some(format!("{text:?} is not a URL ({e})")),
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    Some(format!("{text:?} must start with http:// or https://"))
                }
                Ok(u) if u.host_str().is_none() => Some(format!("{text:?} has no host")),
                Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                    Some("must not contain a user name or password".to_string())
                }
                Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                    Some(format!("{text:?} must not have a query or fragment"))
                }
                Ok(u) => {
                    if u.scheme() == "http" && !is_loopback(&u) {
                        self.warn(
                            leaf.span(),
                            &key,
                            format!(
                                "{text:?} is plain http to another machine: anyone on the path \
                                 could forge etcd's answers and make two instances act; prefer \
                                 https:// or a private network"
                            ),
                        );
                    }
                    None
                }
            };
            match problem {
                Some(p) => self.fail(leaf.span(), &key, p),
                None => out.push(text.to_string()),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    fn channels(&mut self, raw: &[Spanned<super::raw::RawChannel>]) -> Vec<ChannelConfig> {
        // name -> (what it is, index, line) for duplicate and ambiguity checks.
        let mut ids: HashMap<String, (usize, usize)> = HashMap::new();
        let mut labels: HashMap<String, (usize, usize)> = HashMap::new();
        let mut out = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let c = entry.get_ref();
            let key = |field: &str| format!("channel[{i}].{field}");
            let Some(id_leaf) = &c.id else {
                self.fail(
                    entry.span(),
                    &key("id"),
                    "is required (the Live Station channel id, e.g. \"ls-20200313162828-G60tN\")",
                );
                continue;
            };
            let Some(id) = self.text(id_leaf, &key("id")) else {
                continue;
            };
            if !id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                self.fail(
                    id_leaf.span(),
                    &key("id"),
                    format!("{id:?} may contain only letters, digits, '-' and '_'"),
                );
                continue;
            }
            let line = self.line_of(&id_leaf.span());
            if let Some((j, at)) = ids.get(id) {
                self.fail(
                    id_leaf.span(),
                    &key("id"),
                    format!("{id:?} is already the id of channel[{j}] (line {at})"),
                );
            } else if let Some((j, at)) = labels.get(id).filter(|(j, _)| *j != i) {
                self.fail(
                    id_leaf.span(),
                    &key("id"),
                    format!("{id:?} is already the label of channel[{j}] (line {at}); a schedule naming it would be ambiguous"),
                );
            } else {
                ids.insert(id.to_string(), (i, line));
            }
            let label = match &c.label {
                None => None,
                Some(leaf) => {
                    let label = self.text(leaf, &key("label"));
                    let line = self.line_of(&leaf.span());
                    match label {
                        Some(l) => {
                            if let Some((j, at)) = labels.get(l) {
                                self.fail(
                                    leaf.span(),
                                    &key("label"),
                                    format!(
                                        "{l:?} is already the label of channel[{j}] (line {at})"
                                    ),
                                );
                            } else if let Some((j, at)) = ids.get(l).filter(|(j, _)| *j != i) {
                                self.fail(
                                    leaf.span(),
                                    &key("label"),
                                    format!("{l:?} is already the id of channel[{j}] (line {at}); a schedule naming it would be ambiguous"),
                                );
                            } else {
                                labels.insert(l.to_string(), (i, line));
                            }
                            Some(l.to_string())
                        }
                        None => None,
                    }
                }
            };
            let max_duration = c.max_duration.as_ref().map(|_| {
                self.duration(
                    &c.max_duration,
                    &key("max_duration"),
                    Duration::ZERO,
                    Min::AboveZero,
                )
            });
            out.push(ChannelConfig {
                id: id.to_string(),
                label,
                record_when_live: c.record_when_live.as_ref().is_some_and(|b| *b.get_ref()),
                max_duration,
            });
        }
        // Kept for the daemon's lifetime: no room for more.
        out.shrink_to_fit();
        out
    }

    fn schedules(
        &mut self,
        raw: &[Spanned<super::raw::RawSchedule>],
        channels: &[ChannelConfig],
        default_tz: Tz,
    ) -> Vec<ScheduleConfig> {
        let mut names: HashMap<String, (usize, usize)> = HashMap::new();
        let mut out = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let s = entry.get_ref();
            let key = |field: &str| format!("schedule[{i}].{field}");
            let name = match &s.name {
                None => {
                    self.fail(
                        entry.span(),
                        &key("name"),
                        "is required (a unique name for this schedule)",
                    );
                    None
                }
                Some(leaf) => self.text(leaf, &key("name")).and_then(|n| {
                    let line = self.line_of(&leaf.span());
                    if let Some((j, at)) = names.get(n) {
                        self.fail(
                            leaf.span(),
                            &key("name"),
                            format!("{n:?} is already the name of schedule[{j}] (line {at})"),
                        );
                        None
                    } else {
                        names.insert(n.to_string(), (i, line));
                        Some(n.to_string())
                    }
                }),
            };
            let channel_id = match &s.channel {
                None => {
                    self.fail(
                        entry.span(),
                        &key("channel"),
                        "is required (a [[channel]] id or label)",
                    );
                    None
                }
                Some(leaf) => self
                    .text(leaf, &key("channel"))
                    .and_then(|c| self.channel_ref(c, leaf.span(), &key("channel"), channels)),
            };
            let cron = match &s.cron {
                None => {
                    self.fail(
                        entry.span(),
                        &key("cron"),
                        "is required (e.g. \"0 9 * * mon-fri\")",
                    );
                    None
                }
                Some(leaf) => match CronSchedule::parse(leaf.get_ref()) {
                    Ok(c) if c.can_fire() => Some(c),
                    Ok(c) => {
                        self.fail(
                            leaf.span(),
                            &key("cron"),
                            format!("{:?} never fires: no calendar date matches its day-of-month and month", c.as_str()),
                        );
                        None
                    }
                    Err(e) => {
                        self.fail(
                            leaf.span(),
                            &key("cron"),
                            format!("{:?}: {e}", leaf.get_ref()),
                        );
                        None
                    }
                },
            };
            let timezone = match &s.timezone {
                None => Some(default_tz),
                Some(leaf) => self.timezone(leaf, &key("timezone")),
            };
            let duration = s.duration.as_ref().map(|_| {
                self.duration(
                    &s.duration,
                    &key("duration"),
                    Duration::ZERO,
                    Min::AboveZero,
                )
            });
            let catch_up =
                self.duration(&s.catch_up, &key("catch_up"), DEFAULT_CATCH_UP, Min::Zero);
            if let (Some(name), Some(channel_id), Some(cron), Some(timezone)) =
                (name, channel_id, cron, timezone)
            {
                out.push(ScheduleConfig {
                    name,
                    channel_id,
                    cron,
                    timezone,
                    duration,
                    catch_up,
                });
            }
        }
        out
    }

    fn channel_ref(
        &mut self,
        written: &str,
        span: Range<usize>,
        key: &str,
        channels: &[ChannelConfig],
    ) -> Option<String> {
        if let Some(c) = channels.iter().find(|c| c.id == written).or_else(|| {
            channels
                .iter()
                .find(|c| c.label.as_deref() == Some(written))
        }) {
            return Some(c.id.clone());
        }
        let message = if channels.is_empty() {
            format!(
                "{written:?} is not a [[channel]] id or label (there are no [[channel]] entries)"
            )
        } else {
            const SHOWN: usize = 8;
            let mut known: Vec<&str> = channels
                .iter()
                .take(SHOWN)
                .map(|c| c.label.as_deref().unwrap_or(&c.id))
                .collect();
            if channels.len() > SHOWN {
                known.push("…");
            }
            format!(
                "{written:?} is not a [[channel]] id or label (known: {})",
                known.join(", ")
            )
        };
        self.fail(span, key, message);
        None
    }
}

/// 1 to 63 of `A-Z a-z 0-9 . _ -`: a host name's characters, safe as an etcd value and a
/// metric label.
fn valid_instance(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// This machine's host name (`uname -n`).
fn host_name() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.trim().to_string();
    (!name.is_empty()).then_some(name)
}
