//! `/metrics` as Prometheus reads it: [`Metrics::render`] parsed by the reference parser of the
//! Prometheus Python client, never by a parser of our own.
//!
//! The names, types and label names are a contract with dashboards and alerts: the first test
//! lists every one of them, so a rename fails here first.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use lsrecd::service::Metrics;
use lsrecd::service::metrics::callback_result;
use support::exposition::{self, Family, value};

/// A registry where every method has been called once.
fn every_metric_touched() -> Metrics {
    let m = Metrics::new();
    m.api_request("list_channels", "ok", Duration::from_millis(20));
    m.api_entries_skipped("list_records", 2);
    m.set_recordings_active(1);
    m.recording_started("live");
    m.time_to_recording("live", 1.5);
    m.set_claims_unrecorded(2);
    m.set_database_available(true);
    m.occurrence("COMPLETED");
    m.set_clock_skew(0.5);
    m.poll_succeeded(1_790_000_000.0);
    m.set_channels(3);
    m.config_reload(true);
    m.retention_warning();
    m.auth_failure();
    m.callback(callback_result::ACCEPTED);
    m.set_ha_role("broadcast-1", true, Some("broadcast-1"));
    m.ha_lease_renewed(tokio::time::Instant::now());
    m.ha_takeover_seen();
    m
}

/// `sample name → (family type, label names)` of every sample.
fn shapes(families: &[Family]) -> BTreeMap<String, (String, Vec<String>)> {
    let mut all = BTreeMap::new();
    for family in families {
        for sample in &family.samples {
            let labels: Vec<String> = sample.labels.keys().cloned().collect();
            let previous = all.insert(sample.name.clone(), (family.kind.clone(), labels.clone()));
            if let Some((_, other)) = previous {
                assert_eq!(other, labels, "{} has two label sets", sample.name);
            }
        }
    }
    all
}

#[test]
fn every_metric_name_type_and_label_name_is_the_one_dashboards_use() {
    let Some(parser) = exposition::parser() else {
        return;
    };
    let families = parser.parse(&every_metric_touched().render());

    let expected: BTreeMap<String, (String, Vec<String>)> = [
        ("lsrecd_build_info", "gauge", &["version"][..]),
        (
            "lsrecd_api_requests_total",
            "counter",
            &["operation", "outcome"],
        ),
        (
            "lsrecd_api_request_duration_seconds_bucket",
            "histogram",
            &["le", "operation"],
        ),
        (
            "lsrecd_api_request_duration_seconds_sum",
            "histogram",
            &["operation"],
        ),
        (
            "lsrecd_api_request_duration_seconds_count",
            "histogram",
            &["operation"],
        ),
        (
            "lsrecd_api_entries_skipped_total",
            "counter",
            &["operation"],
        ),
        ("lsrecd_recordings_active", "gauge", &[]),
        ("lsrecd_recordings_started_total", "counter", &["trigger"]),
        (
            "lsrecd_time_to_recording_seconds_bucket",
            "histogram",
            &["le", "trigger"],
        ),
        (
            "lsrecd_time_to_recording_seconds_sum",
            "histogram",
            &["trigger"],
        ),
        (
            "lsrecd_time_to_recording_seconds_count",
            "histogram",
            &["trigger"],
        ),
        ("lsrecd_claims_unrecorded", "gauge", &[]),
        ("lsrecd_database_available", "gauge", &[]),
        ("lsrecd_occurrences_total", "counter", &["state"]),
        ("lsrecd_clock_skew_seconds", "gauge", &[]),
        (
            "lsrecd_last_successful_poll_timestamp_seconds",
            "gauge",
            &[],
        ),
        ("lsrecd_channels", "gauge", &[]),
        ("lsrecd_config_reloads_total", "counter", &["result"]),
        ("lsrecd_retention_warnings_total", "counter", &[]),
        ("lsrecd_auth_failures_total", "counter", &[]),
        ("lsrecd_callbacks_total", "counter", &["result"]),
        (
            "lsrecd_ha_role",
            "gauge",
            &["ha_instance", "leader", "role"],
        ),
        ("lsrecd_ha_lease_age_seconds", "gauge", &[]),
        ("lsrecd_ha_takeovers_total", "counter", &[]),
    ]
    .into_iter()
    .map(|(name, kind, labels)| {
        (
            name.to_owned(),
            (
                kind.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
            ),
        )
    })
    .collect();
    assert_eq!(shapes(&families), expected);
    for family in &families {
        assert!(!family.help.is_empty(), "{} has no HELP", family.name);
    }
}

#[test]
fn a_fresh_registry_parses_and_has_the_series_alerts_expect_at_zero() {
    let Some(parser) = exposition::parser() else {
        return;
    };
    let families = parser.parse(&Metrics::new().render());

    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&families, "lsrecd_build_info", &[("version", version)]),
        1.0
    );
    for result in ["success", "failure"] {
        let series = [("result", result)];
        assert_eq!(
            value(&families, "lsrecd_config_reloads_total", &series),
            0.0
        );
    }
    for result in callback_result::ALL {
        let series = [("result", result)];
        assert_eq!(value(&families, "lsrecd_callbacks_total", &series), 0.0);
    }
    for name in [
        "lsrecd_retention_warnings_total",
        "lsrecd_auth_failures_total",
        "lsrecd_recordings_active",
        "lsrecd_claims_unrecorded",
        "lsrecd_database_available",
        "lsrecd_clock_skew_seconds",
        "lsrecd_last_successful_poll_timestamp_seconds",
        "lsrecd_channels",
    ] {
        assert_eq!(value(&families, name, &[]), 0.0, "{name}");
    }
    for sample in exposition::samples(&families) {
        assert!(sample.name.starts_with("lsrecd_"), "{}", sample.name);
    }
    // Families with no series yet are declared all the same (HELP and TYPE).
    let declared: Vec<(&str, &str)> = families
        .iter()
        .map(|f| (f.name.as_str(), f.kind.as_str()))
        .collect();
    assert_eq!(
        declared,
        [
            ("lsrecd_build_info", "gauge"),
            ("lsrecd_api_requests", "counter"),
            ("lsrecd_api_request_duration_seconds", "histogram"),
            ("lsrecd_api_entries_skipped", "counter"),
            ("lsrecd_recordings_active", "gauge"),
            ("lsrecd_recordings_started", "counter"),
            ("lsrecd_time_to_recording_seconds", "histogram"),
            ("lsrecd_claims_unrecorded", "gauge"),
            ("lsrecd_database_available", "gauge"),
            ("lsrecd_occurrences", "counter"),
            ("lsrecd_clock_skew_seconds", "gauge"),
            ("lsrecd_last_successful_poll_timestamp_seconds", "gauge"),
            ("lsrecd_channels", "gauge"),
            ("lsrecd_config_reloads", "counter"),
            ("lsrecd_retention_warnings", "counter"),
            ("lsrecd_auth_failures", "counter"),
            ("lsrecd_callbacks", "counter"),
            ("lsrecd_ha_role", "gauge"),
            ("lsrecd_ha_lease_age_seconds", "gauge"),
            ("lsrecd_ha_takeovers", "counter"),
        ]
    );
    for family in &families {
        assert!(!family.help.is_empty(), "{} has no HELP", family.name);
    }
}

#[test]
fn counters_with_labels_count_each_combination_separately() {
    let Some(parser) = exposition::parser() else {
        return;
    };
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

    let all = parser.parse(&m.render());

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
    let Some(parser) = exposition::parser() else {
        return;
    };
    let m = Metrics::new();
    m.api_request("listChannels", "ok", Duration::from_millis(40));
    m.api_request("listChannels", "ok", Duration::from_millis(700));
    m.api_request("listChannels", "transient", Duration::from_secs(120));

    let text = m.render();
    let all = parser.parse(&text);

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
    // The bounds are spelled as client_golang spells them, so series match those of Go exporters.
    for le in ["0.05", "1", "2.5", "60", "+Inf"] {
        let spelled = format!("{bucket}{{operation=\"listChannels\",le=\"{le}\"}} ");
        assert!(text.contains(&spelled), "no {spelled:?} in\n{text}");
    }
}

#[test]
fn gauges_report_the_last_value_set() {
    let Some(parser) = exposition::parser() else {
        return;
    };
    let m = Metrics::new();
    m.set_recordings_active(3);
    m.set_recordings_active(2);
    m.set_channels(12);
    m.set_clock_skew(-61.5);
    m.poll_succeeded(1_790_000_000.25);

    let all = parser.parse(&m.render());

    assert_eq!(value(&all, "lsrecd_recordings_active", &[]), 2.0);
    assert_eq!(value(&all, "lsrecd_channels", &[]), 12.0);
    assert_eq!(value(&all, "lsrecd_clock_skew_seconds", &[]), -61.5);
    assert_eq!(
        value(&all, "lsrecd_last_successful_poll_timestamp_seconds", &[]),
        1_790_000_000.25
    );
}

#[test]
fn the_ha_role_is_one_series_naming_the_leader_and_the_lease_age_grows_until_renewed() {
    let Some(parser) = exposition::parser() else {
        return;
    };
    let m = Metrics::new();
    let renewed = tokio::time::Instant::now() - Duration::from_secs(3);
    m.ha_lease_renewed(renewed);
    m.set_ha_role("b", false, Some("a"));
    m.set_ha_role("b", true, Some("b"));
    let all = parser.parse(&m.render());
    let roles: Vec<_> = exposition::samples(&all)
        .into_iter()
        .filter(|s| s.name == "lsrecd_ha_role")
        .collect();
    assert_eq!(roles.len(), 1, "the old role is gone: {roles:?}");
    assert_eq!(
        value(
            &all,
            "lsrecd_ha_role",
            &[("ha_instance", "b"), ("role", "leader"), ("leader", "b")]
        ),
        1.0
    );
    let age = value(&all, "lsrecd_ha_lease_age_seconds", &[]);
    assert!((3.0..10.0).contains(&age), "{age}");
    m.ha_lease_renewed(tokio::time::Instant::now());
    let age = value(
        &parser.parse(&m.render()),
        "lsrecd_ha_lease_age_seconds",
        &[],
    );
    assert!(age < 1.0, "{age}");
}

#[test]
fn special_floats_use_the_spelling_prometheus_parses() {
    let Some(parser) = exposition::parser() else {
        return;
    };
    let m = Metrics::new();
    for (set, text) in [
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ] {
        m.set_clock_skew(set);
        let rendered = m.render();
        assert!(
            rendered.contains(&format!("\nlsrecd_clock_skew_seconds {text}\n")),
            "{rendered}"
        );
        let read = value(&parser.parse(&rendered), "lsrecd_clock_skew_seconds", &[]);
        assert!(
            read == set || (read.is_nan() && set.is_nan()),
            "{set} read back as {read}"
        );
    }
}

#[test]
fn label_values_with_quotes_backslashes_and_newlines_are_escaped_and_round_trip() {
    let Some(parser) = exposition::parser() else {
        return;
    };
    let m = Metrics::new();
    let nasty = "schedule:a\"b\\c\nd";
    m.recording_started(nasty);

    let text = m.render();

    assert!(text.contains(r#"trigger="schedule:a\"b\\c\nd""#), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("a\\\"b")).count(), 1);
    let all = parser.parse(&text);
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
    let Some(parser) = exposition::parser() else {
        return;
    };
    let m = Metrics::new();
    let clone = m.clone();
    clone.auth_failure();

    let all = parser.parse(&m.render());

    assert_eq!(value(&all, "lsrecd_auth_failures_total", &[]), 1.0);
}
