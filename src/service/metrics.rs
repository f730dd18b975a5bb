//! The Prometheus metrics lsrecd exports, rendered in text exposition format 0.0.4.
//!
//! A small hand-written registry: the set of metrics is fixed and known here, so [`Metrics`] has
//! one typed method per thing that happens, and [`Metrics::render`] writes them all. Label values
//! come from lsrecd itself (operation names, triggers, states), never from a request.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the API request duration histogram buckets.
const DURATION_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Results of `lsrecd_callbacks_total{result}`, listed so each series exists from the start.
pub mod callback_result {
    /// A hint was queued for the engine.
    pub const ACCEPTED: &str = "accepted";
    /// The path token did not match.
    pub const BAD_TOKEN: &str = "bad_token";
    /// The body was not a usable callback JSON object.
    pub const MALFORMED: &str = "malformed";
    /// The body exceeded the size limit.
    pub const TOO_LARGE: &str = "too_large";
    /// The request exceeded the rate limit.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The hint queue was full or closed; the hint was dropped (polling still covers it).
    pub const DROPPED: &str = "dropped";
    /// The callback named a channel that is not in the configuration; it was dropped.
    pub const UNKNOWN_CHANNEL: &str = "unknown_channel";

    /// Every result, in rendering order.
    pub const ALL: [&str; 7] = [
        ACCEPTED,
        BAD_TOKEN,
        MALFORMED,
        TOO_LARGE,
        RATE_LIMITED,
        DROPPED,
        UNKNOWN_CHANNEL,
    ];
}

/// Shared handle to the registry. Cloning is cheap; all clones update the same values.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Registry>,
}

#[derive(Debug)]
struct Registry {
    api_requests: CounterVec,
    api_duration: HistogramVec,
    recordings_active: Gauge,
    recordings_started: CounterVec,
    occurrences: CounterVec,
    clock_skew: Gauge,
    last_successful_poll: Gauge,
    channels: Gauge,
    config_reloads: CounterVec,
    retention_warnings: CounterVec,
    auth_failures: CounterVec,
    callbacks: CounterVec,
    build_info: CounterVec,
}

impl Default for Registry {
    fn default() -> Self {
        let config_reloads = CounterVec::new(
            "lsrecd_config_reloads_total",
            "Configuration reloads (SIGHUP), by result.",
            &["result"],
        );
        config_reloads.add(&["success"], 0);
        config_reloads.add(&["failure"], 0);
        let callbacks = CounterVec::new(
            "lsrecd_callbacks_total",
            "Live Station event callbacks received, by result.",
            &["result"],
        );
        for result in callback_result::ALL {
            callbacks.add(&[result], 0);
        }
        let retention_warnings = CounterVec::new(
            "lsrecd_retention_warnings_total",
            "Records found close to their shouldDeleteTime without an upload.",
            &[],
        );
        retention_warnings.add(&[], 0);
        let auth_failures = CounterVec::new(
            "lsrecd_auth_failures_total",
            "API calls rejected as unauthenticated after a fresh signature.",
            &[],
        );
        auth_failures.add(&[], 0);
        let build_info = CounterVec::with_type(
            "lsrecd_build_info",
            "The running lsrecd version; always 1.",
            "gauge",
            &["version"],
        );
        build_info.add(&[env!("CARGO_PKG_VERSION")], 1);

        Registry {
            api_requests: CounterVec::new(
                "lsrecd_api_requests_total",
                "Live Station API requests, by operation and outcome.",
                &["operation", "outcome"],
            ),
            api_duration: HistogramVec::new(
                "lsrecd_api_request_duration_seconds",
                "Live Station API request duration, by operation.",
                "operation",
                &DURATION_BUCKETS,
            ),
            recordings_active: Gauge::new(
                "lsrecd_recordings_active",
                "Recordings currently running on observed channels.",
            ),
            recordings_started: CounterVec::new(
                "lsrecd_recordings_started_total",
                "Recordings lsrecd started, by trigger.",
                &["trigger"],
            ),
            occurrences: CounterVec::new(
                "lsrecd_occurrences_total",
                "Schedule occurrences that reached a state, by state.",
                &["state"],
            ),
            clock_skew: Gauge::new(
                "lsrecd_clock_skew_seconds",
                "Estimated API gateway clock minus local clock, in seconds.",
            ),
            last_successful_poll: Gauge::new(
                "lsrecd_last_successful_poll_timestamp_seconds",
                "Unix time of the last complete channel observation.",
            ),
            channels: Gauge::new("lsrecd_channels", "Channels configured and observed."),
            config_reloads,
            retention_warnings,
            auth_failures,
            callbacks,
            build_info,
        }
    }
}

impl Metrics {
    /// A registry with every metric at its initial value.
    pub fn new() -> Self {
        Self::default()
    }

    /// One finished API request: `operation` such as `listChannels` or `startRecord`, `outcome`
    /// such as `ok`, `transient`, `rate_limited`, `unauthorized`, `rejected`, `malformed`.
    pub fn api_request(&self, operation: &str, outcome: &str, elapsed: Duration) {
        self.inner.api_requests.add(&[operation, outcome], 1);
        self.inner
            .api_duration
            .observe(operation, elapsed.as_secs_f64());
    }

    /// The number of recordings currently running.
    pub fn set_recordings_active(&self, n: u64) {
        self.inner.recordings_active.set(n as f64);
    }

    /// lsrecd started a recording; `trigger` is `live`, `schedule:<name>`, `manual` or
    /// `reconcile`.
    pub fn recording_started(&self, trigger: &str) {
        self.inner.recordings_started.add(&[trigger], 1);
    }

    /// A schedule occurrence entered `state` (`ARMED`, `RECORDING`, `COMPLETED`, `MISSED`,
    /// `FAILED`, …).
    pub fn occurrence(&self, state: &str) {
        self.inner.occurrences.add(&[state], 1);
    }

    /// The latest clock skew estimate, server minus local, in seconds.
    pub fn set_clock_skew(&self, secs: f64) {
        self.inner.clock_skew.set(secs);
    }

    /// A full channel observation succeeded at `at_secs` (Unix seconds).
    pub fn poll_succeeded(&self, at_secs: f64) {
        self.inner.last_successful_poll.set(at_secs);
    }

    /// The number of configured channels.
    pub fn set_channels(&self, n: u64) {
        self.inner.channels.set(n as f64);
    }

    /// A configuration reload finished; `ok` is false when the old configuration stayed.
    pub fn config_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.inner.config_reloads.add(&[result], 1);
    }

    /// A record is close to deletion without an upload.
    pub fn retention_warning(&self) {
        self.inner.retention_warnings.add(&[], 1);
    }

    /// The API rejected a freshly signed request as unauthenticated.
    pub fn auth_failure(&self) {
        self.inner.auth_failures.add(&[], 1);
    }

    /// A callback request ended with `result`, one of [`callback_result`].
    pub fn callback(&self, result: &str) {
        self.inner.callbacks.add(&[result], 1);
    }

    /// Every metric in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let r = &self.inner;
        let mut out = String::with_capacity(4096);
        r.build_info.render(&mut out);
        r.api_requests.render(&mut out);
        r.api_duration.render(&mut out);
        r.recordings_active.render(&mut out);
        r.recordings_started.render(&mut out);
        r.occurrences.render(&mut out);
        r.clock_skew.render(&mut out);
        r.last_successful_poll.render(&mut out);
        r.channels.render(&mut out);
        r.config_reloads.render(&mut out);
        r.retention_warnings.render(&mut out);
        r.auth_failures.render(&mut out);
        r.callbacks.render(&mut out);
        out
    }
}

/// Label values, in the order of the family's label names.
type LabelValues = Vec<String>;

/// A family of integer counters keyed by label values. (`build_info` reuses it as a gauge.)
#[derive(Debug)]
struct CounterVec {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<LabelValues, u64>>,
}

impl CounterVec {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self::with_type(name, help, "counter", labels)
    }

    fn with_type(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        CounterVec {
            name,
            help,
            kind,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn add(&self, values: &[&str], n: u64) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let key = values.iter().map(|v| (*v).to_owned()).collect();
        let mut map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let count = map.entry(key).or_insert(0);
        *count = count.saturating_add(n);
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, self.kind);
        let map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        for (values, count) in map.iter() {
            let pairs: Vec<(&str, &str)> = self
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            sample(out, self.name, &pairs, &count.to_string());
        }
    }
}

/// A single floating-point gauge.
#[derive(Debug)]
struct Gauge {
    name: &'static str,
    help: &'static str,
    bits: AtomicU64,
}

impl Gauge {
    fn new(name: &'static str, help: &'static str) -> Self {
        Gauge {
            name,
            help,
            bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    fn set(&self, value: f64) {
        self.bits.store(value.to_bits(), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "gauge");
        let value = f64::from_bits(self.bits.load(Ordering::Relaxed));
        sample(out, self.name, &[], &format_float(value));
    }
}

/// Histograms keyed by one label.
#[derive(Debug)]
struct HistogramVec {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    bounds: &'static [f64],
    values: Mutex<BTreeMap<String, Histogram>>,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Per-bucket counts (not cumulative), one per bound.
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl HistogramVec {
    fn new(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        bounds: &'static [f64],
    ) -> Self {
        HistogramVec {
            name,
            help,
            label,
            bounds,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn observe(&self, label_value: &str, value: f64) {
        let mut map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let h = map
            .entry(label_value.to_owned())
            .or_insert_with(|| Histogram {
                buckets: vec![0; self.bounds.len()],
                ..Histogram::default()
            });
        if let Some(i) = self.bounds.iter().position(|&bound| value <= bound) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += value;
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let map = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket_name = format!("{}_bucket", self.name);
        for (label_value, h) in map.iter() {
            let mut cumulative = 0u64;
            for (bound, n) in self.bounds.iter().zip(&h.buckets) {
                cumulative += n;
                let le = format_float(*bound);
                let pairs = [(self.label, label_value.as_str()), ("le", le.as_str())];
                sample(out, &bucket_name, &pairs, &cumulative.to_string());
            }
            let pairs = [(self.label, label_value.as_str()), ("le", "+Inf")];
            sample(out, &bucket_name, &pairs, &h.count.to_string());
            let pairs = [(self.label, label_value.as_str())];
            sample(
                out,
                &format!("{}_sum", self.name),
                &pairs,
                &format_float(h.sum),
            );
            sample(
                out,
                &format!("{}_count", self.name),
                &pairs,
                &h.count.to_string(),
            );
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label_value(value));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Label values escape backslash, double quote and line feed (exposition format 0.0.4).
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// HELP text escapes backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go-style float spelling that Prometheus parses: `+Inf`, `-Inf`, `NaN`, else Rust's shortest
/// round-tripping decimal.
fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed sample line: name, labels in order, value.
    #[derive(Debug, PartialEq)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    /// A strict parser for the sample lines this module writes (and the exposition format
    /// allows): `name{label="value",...} number`, with `\\`, `\"` and `\n` escapes.
    fn parse_line(line: &str) -> Sample {
        let mut chars = line.chars().peekable();
        let mut name = String::new();
        while let Some(c) = chars.next_if(|&c| c != '{' && c != ' ') {
            assert!(
                c.is_ascii_alphanumeric() || c == '_' || c == ':',
                "bad metric name in {line:?}"
            );
            name.push(c);
        }
        let mut labels = Vec::new();
        if chars.next_if_eq(&'{').is_some() {
            while chars.next_if_eq(&'}').is_none() {
                let label: String = chars.by_ref().take_while(|&c| c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "unquoted label value in {line:?}");
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some('"') => break,
                        Some(c) => value.push(c),
                        None => panic!("unterminated label value in {line:?}"),
                    }
                }
                labels.push((label, value));
                chars.next_if_eq(&',');
            }
        }
        assert_eq!(chars.next(), Some(' '), "no space before value in {line:?}");
        let value: String = chars.collect();
        let value = match value.as_str() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        Sample {
            name,
            labels,
            value,
        }
    }

    fn samples(text: &str) -> Vec<Sample> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(parse_line)
            .collect()
    }

    fn find<'a>(all: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
        all.iter().find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && s.labels
                    .iter()
                    .zip(labels)
                    .all(|((k, v), (k2, v2))| k == k2 && v == v2)
        })
    }

    fn value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        find(all, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in {all:#?}"))
            .value
    }

    #[test]
    fn every_line_of_a_fresh_registry_parses_and_has_help_and_type() {
        let text = Metrics::new().render();

        let all = samples(&text);
        assert!(!all.is_empty());
        for s in &all {
            let family = s
                .name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "no TYPE for {}",
                s.name
            );
            assert!(text.contains(&format!("# HELP {family} ")));
            assert!(s.name.starts_with("lsrecd_"));
        }
        assert_eq!(value(&all, "lsrecd_auth_failures_total", &[]), 0.0);
        assert_eq!(
            value(
                &all,
                "lsrecd_config_reloads_total",
                &[("result", "failure")]
            ),
            0.0
        );
    }

    #[test]
    fn counters_with_labels_count_each_combination_separately() {
        let m = Metrics::new();
        m.api_request("listChannels", "ok", Duration::from_millis(20));
        m.api_request("listChannels", "ok", Duration::from_millis(30));
        m.api_request("startRecord", "transient", Duration::from_secs(3));
        m.recording_started("schedule:morning-news");
        m.recording_started("live");
        m.recording_started("live");
        m.occurrence("MISSED");
        m.config_reload(true);
        m.config_reload(false);
        m.config_reload(false);
        m.retention_warning();
        m.auth_failure();
        m.callback(callback_result::ACCEPTED);

        let all = samples(&m.render());

        let requests = "lsrecd_api_requests_total";
        assert_eq!(
            value(
                &all,
                requests,
                &[("operation", "listChannels"), ("outcome", "ok")]
            ),
            2.0
        );
        assert_eq!(
            value(
                &all,
                requests,
                &[("operation", "startRecord"), ("outcome", "transient")]
            ),
            1.0
        );
        let started = "lsrecd_recordings_started_total";
        assert_eq!(value(&all, started, &[("trigger", "live")]), 2.0);
        assert_eq!(
            value(&all, started, &[("trigger", "schedule:morning-news")]),
            1.0
        );
        assert_eq!(
            value(&all, "lsrecd_occurrences_total", &[("state", "MISSED")]),
            1.0
        );
        let reloads = "lsrecd_config_reloads_total";
        assert_eq!(value(&all, reloads, &[("result", "success")]), 1.0);
        assert_eq!(value(&all, reloads, &[("result", "failure")]), 2.0);
        assert_eq!(value(&all, "lsrecd_retention_warnings_total", &[]), 1.0);
        assert_eq!(value(&all, "lsrecd_auth_failures_total", &[]), 1.0);
        assert_eq!(
            value(&all, "lsrecd_callbacks_total", &[("result", "accepted")]),
            1.0
        );
        assert_eq!(
            value(&all, "lsrecd_callbacks_total", &[("result", "dropped")]),
            0.0
        );
    }

    #[test]
    fn the_duration_histogram_has_cumulative_buckets_sum_and_count_per_operation() {
        let m = Metrics::new();
        m.api_request("listChannels", "ok", Duration::from_millis(40));
        m.api_request("listChannels", "ok", Duration::from_millis(700));
        m.api_request("listChannels", "transient", Duration::from_secs(120));

        let all = samples(&m.render());

        let bucket = "lsrecd_api_request_duration_seconds_bucket";
        let op = ("operation", "listChannels");
        assert_eq!(value(&all, bucket, &[op, ("le", "0.05")]), 1.0);
        assert_eq!(value(&all, bucket, &[op, ("le", "0.5")]), 1.0);
        assert_eq!(value(&all, bucket, &[op, ("le", "1")]), 2.0);
        assert_eq!(value(&all, bucket, &[op, ("le", "60")]), 2.0);
        assert_eq!(value(&all, bucket, &[op, ("le", "+Inf")]), 3.0);
        assert_eq!(
            value(&all, "lsrecd_api_request_duration_seconds_count", &[op]),
            3.0
        );
        let sum = value(&all, "lsrecd_api_request_duration_seconds_sum", &[op]);
        assert!((sum - 120.74).abs() < 1e-9, "sum {sum}");
    }

    #[test]
    fn gauges_report_the_last_value_set() {
        let m = Metrics::new();
        m.set_recordings_active(3);
        m.set_recordings_active(2);
        m.set_channels(12);
        m.set_clock_skew(-61.5);
        m.poll_succeeded(1_790_000_000.25);

        let all = samples(&m.render());

        assert_eq!(value(&all, "lsrecd_recordings_active", &[]), 2.0);
        assert_eq!(value(&all, "lsrecd_channels", &[]), 12.0);
        assert_eq!(value(&all, "lsrecd_clock_skew_seconds", &[]), -61.5);
        assert_eq!(
            value(&all, "lsrecd_last_successful_poll_timestamp_seconds", &[]),
            1_790_000_000.25
        );
    }

    #[test]
    fn label_values_with_quotes_backslashes_and_newlines_are_escaped_and_round_trip() {
        let m = Metrics::new();
        let nasty = "schedule:a\"b\\c\nd";
        m.recording_started(nasty);

        let text = m.render();

        assert!(text.contains(r#"trigger="schedule:a\"b\\c\nd""#), "{text}");
        assert_eq!(text.lines().filter(|l| l.contains("a\\\"b")).count(), 1);
        let all = samples(&text);
        assert_eq!(
            value(
                &all,
                "lsrecd_recordings_started_total",
                &[("trigger", nasty)]
            ),
            1.0
        );
    }

    #[test]
    fn clones_share_one_registry() {
        let m = Metrics::new();
        let clone = m.clone();
        clone.auth_failure();

        let all = samples(&m.render());

        assert_eq!(value(&all, "lsrecd_auth_failures_total", &[]), 1.0);
    }

    #[test]
    fn special_floats_use_the_spelling_prometheus_parses() {
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(60.0), "60");
    }
}
