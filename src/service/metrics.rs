//! The Prometheus metrics lsrecd exports, served in text exposition format 0.0.4.
//!
//! The registry, the metric types and the encoding are `prometheus-client`'s. This module owns the
//! set of metrics: their names, types, help texts and label names, which dashboards and alerts
//! depend on (`tests/metrics.rs` lists every name and label so that a rename fails loudly), and
//! [`Metrics`], with one typed method per thing that happens. Label values come from lsrecd
//! itself (operation names, triggers, states), never from a request.
//!
//! What stays hand-written is that typed layer: one method per event keeps each label's name and
//! its set of values in one place, and creates at zero the series an alert expects from the start;
//! and [`Declared`], because the crate leaves a family out until its first series while the
//! `# HELP`/`# TYPE` lines of every family have always been there.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s output: the Prometheus text format 0.0.4, which
/// every Prometheus version scrapes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The prefix of every metric name.
const PREFIX: &str = "lsrecd";

/// Upper bounds (seconds) of the API request duration histogram buckets.
const DURATION_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Upper bounds (seconds) of the time-to-recording histogram buckets.
const TIME_TO_RECORDING_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

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

/// Results of `lsrecd_config_reloads_total{result}`.
const RELOAD_RESULTS: [&str; 2] = ["success", "failure"];

/// `{operation, outcome}` of `lsrecd_api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    operation: String,
    outcome: String,
}

/// `{operation}` of `lsrecd_api_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}

/// `{trigger}` of `lsrecd_recordings_started_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabel {
    trigger: String,
}

/// `{trigger}` of `lsrecd_time_to_recording_seconds`: the trigger's kind (`live`, `schedule`,
/// `manual`), without a schedule's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerKindLabel {
    trigger: &'static str,
}

/// `{state}` of `lsrecd_occurrences_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// `{result}` of `lsrecd_config_reloads_total` and `lsrecd_callbacks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

impl ResultLabel {
    fn new(result: &str) -> Self {
        ResultLabel {
            result: result.to_owned(),
        }
    }
}

/// `{version}` of `lsrecd_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// `{ha_instance, role, leader}` of `lsrecd_ha_role` (not `instance`, which Prometheus gives the
/// scrape target).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HaRoleLabels {
    ha_instance: String,
    role: &'static str,
    leader: String,
}

/// `lsrecd_ha_lease_age_seconds`: computed when scraped from the instant of the last renewal, so
/// a stuck renewal shows as a growing age rather than a frozen value. No sample without `[ha]`.
#[derive(Clone, Debug, Default)]
struct LeaseAge(Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

impl EncodeMetric for LeaseAge {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let renewed = *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match renewed {
            Some(at) => encoder.encode_gauge(&at.elapsed().as_secs_f64()),
            None => Ok(()),
        }
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// A gauge holding a float (the default gauge holds an integer).
type FloatGauge = Gauge<f64, AtomicU64>;

/// A histogram family whose members all get [`DURATION_BUCKETS`].
type DurationFamily = Family<OperationLabel, Histogram, fn() -> Histogram>;

/// A histogram family whose members all get [`TIME_TO_RECORDING_BUCKETS`].
type TimeToRecordingFamily = Family<TriggerKindLabel, Histogram, fn() -> Histogram>;

/// A family whose `# HELP` and `# TYPE` lines are written even before its first series.
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    // `is_empty` keeps its default, `false`: never left out.
}

/// Shared handle to the registry. Cloning is cheap; all clones update the same values.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// The registry (which renders) and a handle on each metric in it (which the methods update).
struct Inner {
    registry: Registry,
    api_requests: Family<ApiLabels, Counter>,
    api_duration: DurationFamily,
    api_entries_skipped: Family<OperationLabel, Counter>,
    recordings_active: Gauge,
    recordings_started: Family<TriggerLabel, Counter>,
    time_to_recording: TimeToRecordingFamily,
    claims_unrecorded: Gauge,
    database_available: Gauge,
    occurrences: Family<StateLabel, Counter>,
    clock_skew: FloatGauge,
    last_successful_poll: FloatGauge,
    channels: Gauge,
    config_reloads: Family<ResultLabel, Counter>,
    retention_warnings: Counter,
    auth_failures: Counter,
    callbacks: Family<ResultLabel, Counter>,
    ha_role: Family<HaRoleLabels, Gauge>,
    ha_lease_age: LeaseAge,
    ha_takeovers: Counter,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Inner {
    fn default() -> Self {
        let inner = Inner {
            registry: Registry::with_prefix(PREFIX),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            api_entries_skipped: Family::default(),
            recordings_active: Gauge::default(),
            recordings_started: Family::default(),
            time_to_recording: Family::new_with_constructor(|| {
                Histogram::new(TIME_TO_RECORDING_BUCKETS)
            }),
            claims_unrecorded: Gauge::default(),
            database_available: Gauge::default(),
            occurrences: Family::default(),
            clock_skew: FloatGauge::default(),
            last_successful_poll: FloatGauge::default(),
            channels: Gauge::default(),
            config_reloads: Family::default(),
            retention_warnings: Counter::default(),
            auth_failures: Counter::default(),
            callbacks: Family::default(),
            ha_role: Family::default(),
            ha_lease_age: LeaseAge::default(),
            ha_takeovers: Counter::default(),
        };
        // Series an alert watches exist at zero from the start, so `increase()` sees the first
        // event and an absent series means a broken scrape rather than "nothing happened".
        for result in RELOAD_RESULTS {
            drop(
                inner
                    .config_reloads
                    .get_or_create(&ResultLabel::new(result)),
            );
        }
        for result in callback_result::ALL {
            drop(inner.callbacks.get_or_create(&ResultLabel::new(result)));
        }
        inner.register()
    }
}

impl Inner {
    /// Registers every metric under its exported name (the prefix is added, and counters get
    /// `_total`, when encoding), in the order the output lists them.
    fn register(mut self) -> Self {
        let r = &mut self.registry;
        // Exported as `lsrecd_build_info{version}`, a gauge that is always 1.
        r.register(
            "build",
            "The running lsrecd version; always 1",
            Info::new(VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        r.register(
            "api_requests",
            "Live Station API requests, by operation and outcome",
            Declared(self.api_requests.clone()),
        );
        r.register(
            "api_request_duration_seconds",
            "Live Station API request duration, by operation",
            Declared(self.api_duration.clone()),
        );
        r.register(
            "api_entries_skipped",
            "Entries of Live Station answers (channels, records) that could not be read and were skipped, by operation",
            Declared(self.api_entries_skipped.clone()),
        );
        r.register(
            "recordings_active",
            "Recordings currently running on observed channels",
            self.recordings_active.clone(),
        );
        r.register(
            "recordings_started",
            "Recordings lsrecd started, by trigger",
            Declared(self.recordings_started.clone()),
        );
        r.register(
            "time_to_recording_seconds",
            "Time from a claim wanting a recording (channel seen live, window open, manual start) to the recording confirmed, by trigger kind",
            Declared(self.time_to_recording.clone()),
        );
        r.register(
            "claims_unrecorded",
            "Configured channels a claim wants recording, publishing, and not recording after the last tick",
            self.claims_unrecorded.clone(),
        );
        r.register(
            "database_available",
            "1 while the database takes lsrecd's writes; 0 before it is opened and while it fails (no start or stop is sent then)",
            self.database_available.clone(),
        );
        r.register(
            "occurrences",
            "Schedule occurrences that reached a state, by state",
            Declared(self.occurrences.clone()),
        );
        r.register(
            "clock_skew_seconds",
            "Estimated API gateway clock minus local clock, in seconds",
            self.clock_skew.clone(),
        );
        r.register(
            "last_successful_poll_timestamp_seconds",
            "Unix time of the last complete channel observation",
            self.last_successful_poll.clone(),
        );
        r.register(
            "channels",
            "Channels configured and observed",
            self.channels.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result",
            Declared(self.config_reloads.clone()),
        );
        r.register(
            "retention_warnings",
            "Records found close to their shouldDeleteTime without an upload",
            self.retention_warnings.clone(),
        );
        r.register(
            "auth_failures",
            "API calls rejected as unauthenticated after a fresh signature",
            self.auth_failures.clone(),
        );
        r.register(
            "callbacks",
            "Live Station event callbacks received, by result",
            Declared(self.callbacks.clone()),
        );
        r.register(
            "ha_role",
            "With [ha]: 1 for this instance's role (leader or standby) and the instance it sees holding the leader key (empty when none or unknown)",
            Declared(self.ha_role.clone()),
        );
        r.register(
            "ha_lease_age_seconds",
            "With [ha]: seconds since this instance's etcd lease was last renewed (a leader stops acting at half the lease TTL)",
            self.ha_lease_age.clone(),
        );
        r.register(
            "ha_takeovers",
            "With [ha]: changes of leader this instance has seen (its own takeovers included)",
            self.ha_takeovers.clone(),
        );
        self
    }
}

/// A count for an integer gauge (counts beyond `i64::MAX` do not occur; they would saturate).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// A registry with every metric at its initial value.
    pub fn new() -> Self {
        Self::default()
    }

    /// One finished API request: `operation` such as `list_channels` or `start_record`,
    /// `outcome` such as `ok`, `transient`, `rate_limited`, `unauthorized`, `rejected`,
    /// `malformed`. Counts `lsrecd_api_requests_total{operation,outcome}` and observes
    /// `lsrecd_api_request_duration_seconds{operation}`.
    pub fn api_request(&self, operation: &str, outcome: &str, elapsed: Duration) {
        self.inner
            .api_requests
            .get_or_create(&ApiLabels {
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.inner
            .api_duration
            .get_or_create(&OperationLabel {
                operation: operation.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// `n` entries of an answer to `operation` could not be read and were skipped
    /// (`lsrecd_api_entries_skipped_total{operation}`).
    pub fn api_entries_skipped(&self, operation: &str, n: u64) {
        self.inner
            .api_entries_skipped
            .get_or_create(&OperationLabel {
                operation: operation.to_owned(),
            })
            .inc_by(n);
    }

    /// The number of recordings currently running (`lsrecd_recordings_active`).
    pub fn set_recordings_active(&self, n: u64) {
        self.inner.recordings_active.set(gauge_value(n));
    }

    /// lsrecd started a recording; `trigger` is `live`, `schedule:<name>`, `manual` or
    /// `reconcile` (`lsrecd_recordings_started_total{trigger}`).
    pub fn recording_started(&self, trigger: &str) {
        self.inner
            .recordings_started
            .get_or_create(&TriggerLabel {
                trigger: trigger.to_owned(),
            })
            .inc();
    }

    /// A recording lsrecd asked for was confirmed `secs` after its claim began; `kind` is the
    /// trigger's kind (`live`, `schedule`, `manual`)
    /// (`lsrecd_time_to_recording_seconds{trigger}`).
    pub fn time_to_recording(&self, kind: &'static str, secs: f64) {
        self.inner
            .time_to_recording
            .get_or_create(&TriggerKindLabel { trigger: kind })
            .observe(secs);
    }

    /// Channels that should be recording and are not, after the last tick
    /// (`lsrecd_claims_unrecorded`).
    pub fn set_claims_unrecorded(&self, n: u64) {
        self.inner.claims_unrecorded.set(gauge_value(n));
    }

    /// Whether the database takes writes (`lsrecd_database_available`).
    pub fn set_database_available(&self, available: bool) {
        self.inner.database_available.set(i64::from(available));
    }

    /// A schedule occurrence entered `state` (`ARMED`, `RECORDING`, `COMPLETED`, `MISSED`,
    /// `FAILED`, …) (`lsrecd_occurrences_total{state}`).
    pub fn occurrence(&self, state: &str) {
        self.inner
            .occurrences
            .get_or_create(&StateLabel {
                state: state.to_owned(),
            })
            .inc();
    }

    /// The latest clock skew estimate, server minus local, in seconds
    /// (`lsrecd_clock_skew_seconds`).
    pub fn set_clock_skew(&self, secs: f64) {
        self.inner.clock_skew.set(secs);
    }

    /// A full channel observation succeeded at `at_secs` (Unix seconds)
    /// (`lsrecd_last_successful_poll_timestamp_seconds`).
    pub fn poll_succeeded(&self, at_secs: f64) {
        self.inner.last_successful_poll.set(at_secs);
    }

    /// The number of configured channels (`lsrecd_channels`).
    pub fn set_channels(&self, n: u64) {
        self.inner.channels.set(gauge_value(n));
    }

    /// A configuration reload finished; `ok` is false when the old configuration stayed
    /// (`lsrecd_config_reloads_total{result="success"|"failure"}`).
    pub fn config_reload(&self, ok: bool) {
        let [success, failure] = RELOAD_RESULTS;
        let result = if ok { success } else { failure };
        self.inner
            .config_reloads
            .get_or_create(&ResultLabel::new(result))
            .inc();
    }

    /// A record is close to deletion without an upload (`lsrecd_retention_warnings_total`).
    pub fn retention_warning(&self) {
        self.inner.retention_warnings.inc();
    }

    /// The API rejected a freshly signed request as unauthenticated
    /// (`lsrecd_auth_failures_total`).
    pub fn auth_failure(&self) {
        self.inner.auth_failures.inc();
    }

    /// A callback request ended with `result`, one of [`callback_result`]
    /// (`lsrecd_callbacks_total{result}`).
    pub fn callback(&self, result: &str) {
        self.inner
            .callbacks
            .get_or_create(&ResultLabel::new(result))
            .inc();
    }

    /// With `[ha]`: this instance's role and the holder of the leader key it sees
    /// (`lsrecd_ha_role{ha_instance,role,leader}`, one series at 1).
    pub fn set_ha_role(&self, instance: &str, leader: bool, holder: Option<&str>) {
        let labels = HaRoleLabels {
            ha_instance: instance.to_owned(),
            role: if leader { "leader" } else { "standby" },
            leader: holder.unwrap_or_default().to_owned(),
        };
        if self.inner.ha_role.get(&labels).is_none() {
            self.inner.ha_role.clear();
        }
        self.inner.ha_role.get_or_create(&labels).set(1);
    }

    /// With `[ha]`: this instance's lease was renewed at `at` (`lsrecd_ha_lease_age_seconds`).
    pub fn ha_lease_renewed(&self, at: tokio::time::Instant) {
        *self
            .inner
            .ha_lease_age
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }

    /// With `[ha]`: this instance saw a new leader term (`lsrecd_ha_takeovers_total`).
    pub fn ha_takeover_seen(&self) {
        self.inner.ha_takeovers.inc();
    }

    /// Every metric in Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // The encoder fails only when its writer does, and writing to a String cannot fail.
        if let Err(e) = prometheus_text::encode(&mut out, &self.inner.registry) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }
}
