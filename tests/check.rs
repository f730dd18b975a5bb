//! `lsrecd check` as a user runs it: the real binary on fixture files, its stdout, stderr and
//! exit status.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::process::lsrecd_command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config/check")
        .join(name)
}

/// Runs `lsrecd --config CONFIG check ARGS` with credentials in the environment and nothing
/// else from the caller's environment that lsrecd reads.
fn check(config: &Path, args: &[&str]) -> Output {
    lsrecd_command()
        .arg("--config")
        .arg(config)
        .arg("check")
        .args(args)
        .env("LSRECD_ACCESS_KEY", "test-access-key")
        .env("LSRECD_SECRET_KEY", "test-secret-key")
        .output()
        .expect("the lsrecd binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn json_output_lists_the_next_fire_times_of_each_schedule_in_its_zone() {
    let out = check(
        &fixture("two-zones.toml"),
        &[
            "--json",
            "--next",
            "3",
            "--from",
            "2026-03-06T12:00:00+09:00",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("stdout is JSON");
    let schedules = json["schedules"].as_array().expect("a schedules array");
    assert_eq!(schedules.len(), 2);

    let news = &schedules[0];
    assert_eq!(news["name"], "morning-news");
    assert_eq!(news["channel"], "ls-20200313162828-G60tN");
    assert_eq!(news["label"], "studio-a");
    assert_eq!(news["timezone"], "Asia/Seoul");
    assert_eq!(news["cron"], "0 9 * * mon-fri");
    assert_eq!(news["duration"], "1h");
    assert_eq!(
        news["next"],
        serde_json::json!([
            "2026-03-09T09:00:00+09:00",
            "2026-03-10T09:00:00+09:00",
            "2026-03-11T09:00:00+09:00"
        ])
    );

    // 2026-03-08 is the spring-forward day in New York: 02:30 does not exist that night.
    let night = &schedules[1];
    assert_eq!(night["channel"], "ls-20250814000000-PZohi");
    assert_eq!(night["timezone"], "America/New_York");
    assert_eq!(night["duration"], serde_json::Value::Null);
    assert_eq!(
        night["next"],
        serde_json::json!([
            "2026-03-06T02:30:00-05:00",
            "2026-03-07T02:30:00-05:00",
            "2026-03-08T03:00:00-04:00"
        ])
    );
}

#[test]
fn text_output_is_a_table_of_schedules_and_fire_times() {
    let out = check(
        &fixture("two-zones.toml"),
        &["--next", "2", "--from", "2026-11-26T12:00:00+09:00"],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("valid (2 channels, 2 schedules)"), "{text}");
    let header = text
        .lines()
        .find(|l| l.starts_with("SCHEDULE"))
        .unwrap_or_else(|| panic!("no table header in:\n{text}"));
    for column in ["CHANNEL", "CRON", "TIMEZONE", "DURATION", "NEXT"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(text.contains("2026-11-27T09:00:00+09:00"), "{text}");
    assert!(text.contains("2026-11-30T09:00:00+09:00"), "{text}");
    assert!(!text.contains("test-secret-key"), "{text}");
}

#[test]
fn a_configuration_without_schedules_says_so() {
    let config = fixture("no-schedules.toml");
    let json = check(&config, &["--json"]);
    assert_eq!(json.status.code(), Some(0), "stderr: {}", stderr(&json));
    let value: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(
        value,
        serde_json::json!({ "warnings": [], "schedules": [] })
    );

    let text = check(&config, &[]);
    assert_eq!(text.status.code(), Some(0));
    assert!(
        stdout(&text).contains("No schedules configured."),
        "{}",
        stdout(&text)
    );
}

#[test]
fn a_listener_other_machines_can_reach_is_a_warning_not_an_error() {
    let config = fixture("remote-listeners.toml");
    let expected = format!(
        "{}:3:10: metrics.listen: 0.0.0.0:9464 accepts connections from other machines",
        config.display()
    );

    let text = check(&config, &[]);
    let json = check(&config, &["--json"]);

    assert_eq!(text.status.code(), Some(0), "stderr: {}", stderr(&text));
    assert!(
        stdout(&text).contains(&format!("warning: {expected}")),
        "{}",
        stdout(&text)
    );
    assert_eq!(json.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let warnings = value["warnings"].as_array().expect("a warnings array");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap_or_default()
            .starts_with(&expected),
        "{warnings:?}"
    );
}

#[test]
fn an_invalid_configuration_exits_78_naming_file_line_column_and_key() {
    let config = fixture("invalid-reference.toml");
    let out = check(&config, &["--json"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(&out));
    let expected = format!(
        "{}:7:11: schedule[0].channel: \"studio-z\" is not a [[channel]] id or label (known: studio-a)",
        config.display()
    );
    assert!(stderr(&out).contains(&expected), "stderr: {}", stderr(&out));
}

#[test]
fn a_missing_configuration_file_exits_78() {
    let out = check(Path::new("/nonexistent/lsrecd/config.toml"), &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("/nonexistent/lsrecd/config.toml: cannot read"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn missing_credentials_exit_78() {
    let out = lsrecd_command()
        .arg("--config")
        .arg(fixture("no-schedules.toml"))
        .arg("check")
        .output()
        .expect("the lsrecd binary runs");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("api.access_key: no access key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unparsable_from_is_a_usage_error_with_exit_2() {
    let out = check(&fixture("two-zones.toml"), &["--from", "next tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("RFC 3339"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn the_shipped_example_passes_check() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let out = check(
        &example,
        &[
            "--json",
            "--next",
            "1",
            "--from",
            "2026-11-26T12:00:00+09:00",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        value["schedules"][0]["next"],
        serde_json::json!(["2026-11-27T09:00:00+09:00"])
    );
}

/// `lsrecd check --no-credentials ARGS` with no key anywhere in its environment.
fn check_without_keys(config: &Path, args: &[&str]) -> Output {
    lsrecd_command()
        .arg("--config")
        .arg(config)
        .args(["check", "--no-credentials"])
        .args(args)
        .output()
        .expect("the lsrecd binary runs")
}

#[test]
fn no_credentials_checks_syntax_and_schedules_without_any_key() {
    let out = check_without_keys(
        &fixture("two-zones.toml"),
        &["--next", "1", "--from", "2026-03-06T12:00:00+09:00"],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("keys not checked (--no-credentials)"),
        "{text}"
    );
    assert!(text.contains("2026-03-09T09:00:00+09:00"), "{text}");

    // A key file named in the file but absent on this machine is not read either.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[api]\naccess_key_file = \"/etc/lsrecd/absent-access\"\nsecret_key_file = \"absent-secret\"\n",
    )
    .unwrap();
    let out = check_without_keys(&config, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    // Without the flag the same file fails on the missing key file: the unit's ExecStartPre.
    let out = check(&config, &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("api.access_key_file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_credentials_still_rejects_an_invalid_configuration_with_exit_78() {
    let out = check_without_keys(&fixture("invalid-reference.toml"), &[]);
    assert_eq!(out.status.code(), Some(78), "stdout: {}", stdout(&out));
    assert!(
        stderr(&out).contains("schedule[0].channel"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_packaged_configuration_passes_check_as_installed_and_with_its_examples_uncommented() {
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml");
    let out = check(&packaged, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(value["schedules"], serde_json::json!([]));
    let out = check_without_keys(&packaged, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));

    // The commented [[channel]] and [[schedule]] examples are valid once uncommented.
    let text = std::fs::read_to_string(&packaged).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let edited = dir.path().join("config.toml");
    std::fs::write(&edited, uncommented).unwrap();
    let out = check(&edited, &["--json", "--from", "2026-11-26T12:00:00+09:00"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let value: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(value["schedules"][0]["name"], "morning-news");
    assert_eq!(
        value["schedules"][0]["next"][0],
        "2026-11-27T09:00:00+09:00"
    );
}
