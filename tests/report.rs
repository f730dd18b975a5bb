//! `lsrecd status` and `lsrecd records`, run as the real binary against a database built here.

mod store_fixture;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};
use store_fixture::*;
use support::process::lsrecd_command;

struct Sample {
    dir: tempfile::TempDir,
    db: PathBuf,
}

/// The sample database, closed (as after the daemon stopped).
async fn sample() -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lsrecd.db");
    sample_database(&db, now_ms()).await.close().await;
    Sample { dir, db }
}

/// The binary with a configuration that does not exist and `LSRECD_DATABASE` set to `db`.
fn lsrecd(dir: &Path, db: Option<&Path>) -> Command {
    let mut c = lsrecd_command();
    c.arg("--config").arg(dir.join("absent-config.toml"));
    match db {
        Some(db) => c.env("LSRECD_DATABASE", db),
        None => c.env_remove("LSRECD_DATABASE"),
    };
    c
}

fn run(mut c: Command, args: &[&str]) -> Output {
    c.args(args).output().expect("run lsrecd")
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok_stdout(out)).expect("stdout is JSON")
}

fn record_ids(v: &Value) -> Vec<i64> {
    v["records"]
        .as_array()
        .expect("records array")
        .iter()
        .map(|r| r["record_id"].as_i64().expect("record_id"))
        .collect()
}

#[tokio::test]
async fn status_json_describes_channels_recordings_occurrences_failures_and_expiring_records() {
    let s = sample().await;
    let v = json(&run(
        lsrecd(s.dir.path(), Some(&s.db)),
        &["status", "--json"],
    ));

    assert_eq!(v["format"], 1);
    assert!(v["generated_at"].as_i64().is_some());
    assert!(v["last_poll_at"].as_i64().is_some());
    assert_eq!(v["channels_seen"], 2);
    assert_eq!(v["warn_before_ms"], DAY);

    let channels = v["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 3);
    let studio_a = channels
        .iter()
        .find(|c| c["label"] == "studio-a")
        .expect("studio-a listed");
    assert_eq!(studio_a["channel_status"], "PUBLISHING");
    assert_eq!(studio_a["is_recording"], true);
    let auto_c = channels.iter().find(|c| c["label"] == "auto-c").unwrap();
    assert!(auto_c["missing_since"].as_i64().is_some());

    let active = v["active_recordings"].as_array().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["record_id"], REC_LIVE);
    assert_eq!(active[0]["owned"], true);
    assert_eq!(active[0]["owned_trigger"], "schedule:morning-news");
    let minutes = active[0]["running_minutes"].as_i64().unwrap();
    assert!((19..=21).contains(&minutes), "{minutes}");

    let occurrences = v["occurrences"].as_array().unwrap();
    assert_eq!(occurrences.len(), 1);
    assert_eq!(occurrences[0]["schedule"], "morning-news");
    assert_eq!(occurrences[0]["state"], "RECORDING");

    assert_eq!(v["manual_claims"].as_array().unwrap().len(), 1);

    let outages = v["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1);
    assert_eq!(outages[0]["channel_id"], STUDIO_B);
    assert_eq!(outages[0]["operation"], "startRecord");
    assert_eq!(outages[0]["trigger"], "manual");
    assert_eq!(outages[0]["attempts"], 3);

    let failures = v["recent_failures"].as_array().unwrap();
    let sources: Vec<&str> = failures
        .iter()
        .map(|f| f["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, vec!["event", "action", "occurrence"]);
    assert_eq!(
        failures[1]["detail"],
        "HTTP 400 error 250005 Recording not available."
    );

    let expiring = v["expiring_records"].as_array().unwrap();
    assert_eq!(expiring.len(), 1);
    assert_eq!(expiring[0]["record_id"], REC_EXPIRING);
    assert_eq!(expiring[0]["label"], "studio-b");
    let hours = expiring[0]["hours_left"].as_f64().unwrap();
    assert!((2.8..=3.0).contains(&hours), "{hours}");
}

#[tokio::test]
async fn status_prints_every_section_as_a_table() {
    let s = sample().await;
    let text = ok_stdout(&run(lsrecd(s.dir.path(), Some(&s.db)), &["status"]));
    for expected in [
        "last poll",
        "CHANNELS (3)",
        "ACTIVE RECORDINGS (1)",
        "lsrecd (schedule:morning-news)",
        "OCCURRENCES (not final) (1)",
        "MANUAL CLAIMS (1)",
        "SHOULD BE RECORDING, IS NOT (1)",
        "5 min ago",
        "HTTP 503 Endpoint Error",
        "RECENT FAILURES (7 days) (3)",
        "stopRecord FAILED",
        "EXPIRING, NOT UPLOADED (within 24 h) (1)",
        "MISSING from the API",
        "studio-b",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[tokio::test]
async fn records_json_filters_by_label_id_and_status() {
    let s = sample().await;
    let all = json(&run(
        lsrecd(s.dir.path(), Some(&s.db)),
        &["records", "--json"],
    ));
    assert_eq!(all["format"], 1);
    assert_eq!(record_ids(&all), vec![REC_LIVE, REC_UPLOADED, REC_EXPIRING]);

    let b = json(&run(
        lsrecd(s.dir.path(), Some(&s.db)),
        &["records", "--channel", "studio-b", "--json"],
    ));
    assert_eq!(record_ids(&b), vec![REC_UPLOADED, REC_EXPIRING]);
    let uploaded = &b["records"][0];
    assert_eq!(uploaded["status"], "TRANSFER_FINISH");
    assert_eq!(
        uploaded["object_storage_url"],
        "https://kr.object.ncloudstorage.com/b/30003.mp4"
    );
    assert_eq!(b["records"][1]["object_storage_url"], Value::Null);
    assert!(b["records"][1]["should_delete_time"].as_i64().is_some());

    let ready = json(&run(
        lsrecd(s.dir.path(), Some(&s.db)),
        &[
            "records",
            "--channel",
            STUDIO_B,
            "--status",
            "transfer_ready",
            "--json",
        ],
    ));
    assert_eq!(record_ids(&ready), vec![REC_EXPIRING]);

    let none = json(&run(
        lsrecd(s.dir.path(), Some(&s.db)),
        &[
            "records",
            "--channel",
            "studio-a",
            "--status",
            "DELETED",
            "--json",
        ],
    ));
    assert_eq!(record_ids(&none), Vec::<i64>::new());
}

#[tokio::test]
async fn records_prints_a_table_with_channel_labels() {
    let s = sample().await;
    let text = ok_stdout(&run(
        lsrecd(s.dir.path(), Some(&s.db)),
        &["records", "--channel", "studio-b"],
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("RECORD"), "{text}");
    assert!(
        lines[1].contains("30003") && lines[1].contains("studio-b"),
        "{text}"
    );
    assert!(
        lines[1].contains("TRANSFER_FINISH") && lines[1].contains("yes"),
        "{text}"
    );
    assert!(
        lines[2].contains("30002") && lines[2].contains("no"),
        "{text}"
    );
}

#[tokio::test]
async fn the_database_path_is_read_from_the_configuration_file() {
    let s = sample().await;
    let config = s.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nregion = \"KR\"\n\n[daemon]\ndatabase = {:?}\ntimezone = \"Asia/Seoul\"\n",
            s.db.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut c = lsrecd_command();
    c.arg("--config").arg(&config);
    let v = json(&run(c, &["records", "--json"]));
    assert_eq!(record_ids(&v).len(), 3);
}

/// `ms` as the text reports print it in `zone`, computed here independently of lsrecd.
fn shown(ms: i64, zone: chrono_tz::Tz) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

#[tokio::test]
async fn text_reports_show_times_in_the_daemon_timezone_named_or_in_utc_with_the_flag() {
    let s = sample().await;
    let config = s.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ndatabase = {:?}\ntimezone = \"Asia/Seoul\"\n",
            s.db.to_str().unwrap()
        ),
    )
    .unwrap();
    let reports = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lsrecd"));
        c.arg("--config").arg(&config).env_remove("LSRECD_DATABASE");
        ok_stdout(&run(c, args))
    };
    let v: Value = serde_json::from_str(&reports(&["records", "--json"])).unwrap();
    let live = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["record_id"] == REC_LIVE)
        .expect("the live record");
    let begin = live["record_begin_time"].as_i64().expect("a begin time");

    let seoul = shown(begin, chrono_tz::Tz::Asia__Seoul);
    assert!(seoul.ends_with(" KST"), "{seoul}");
    let text = reports(&["records", "--channel", "studio-a"]);
    assert!(text.contains(&seoul), "{seoul:?} not in:\n{text}");
    let status = reports(&["status"]);
    let first = status.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("lsrecd status at ") && first.ends_with(" KST (Asia/Seoul)"),
        "{status}"
    );
    assert!(status.contains(&seoul), "{seoul:?} not in:\n{status}");

    let utc = shown(begin, chrono_tz::Tz::UTC);
    assert!(utc.ends_with(" UTC"), "{utc}");
    let text = reports(&["records", "--channel", "studio-a", "--utc"]);
    assert!(text.contains(&utc) && !text.contains("KST"), "{text}");
    let status = reports(&["status", "--utc"]);
    assert!(
        status
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with(" UTC (UTC)"),
        "{status}"
    );
    assert!(status.contains(&utc) && !status.contains("KST"), "{status}");
}

#[tokio::test]
async fn a_missing_database_is_a_clear_error_with_exit_status_1_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nowhere.db");
    for args in [&["status"][..], &["records", "--json"][..]] {
        let out = run(lsrecd(dir.path(), Some(&db)), args);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("nowhere.db") && err.contains("does not exist"),
            "{err}"
        );
        assert!(err.contains("LSRECD_DATABASE"), "{err}");
        assert!(out.stdout.is_empty());
    }
    assert!(!db.exists());
}

#[tokio::test]
async fn reports_run_while_the_daemon_holds_the_write_lock() {
    let s = sample().await;
    // The daemon's store is open and another writer holds the write lock mid-transaction.
    let daemon = lsrecd::store::Store::open(&s.db).await.unwrap();
    let mut writer = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&s.db))
        .await
        .unwrap();
    writer.execute("BEGIN IMMEDIATE").await.unwrap();
    writer.execute("DELETE FROM records").await.unwrap();

    let v = json(&run(
        lsrecd(s.dir.path(), Some(&s.db)),
        &["records", "--json"],
    ));
    assert_eq!(
        record_ids(&v).len(),
        3,
        "the report saw uncommitted changes"
    );
    ok_stdout(&run(lsrecd(s.dir.path(), Some(&s.db)), &["status"]));

    writer.execute("ROLLBACK").await.unwrap();
    writer.close().await.unwrap();
    daemon.close().await;
}

/// Whether the tests run as root, whom file modes do not restrict.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .expect("id(1) runs")
}

/// `lsrecd ARGS` as a user the file modes set by the test restrict: the current user, or, when
/// the tests run as root, `nobody` through `runuser` (util-linux).
fn restricted_lsrecd(args: &[&str]) -> Command {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", env!("CARGO_BIN_EXE_lsrecd")]);
        c
    } else {
        lsrecd_command()
    };
    c.args(args);
    c
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn a_user_who_may_only_read_the_file_and_its_directory_gets_a_report() {
    let s = sample().await;
    chmod(s.dir.path(), 0o755);
    let state_dir = s.dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let db = state_dir.join("lsrecd.db");
    std::fs::rename(&s.db, &db).unwrap();
    chmod(&db, 0o444);
    chmod(&state_dir, 0o555);
    let before = std::fs::read(&db).unwrap();

    let as_reader = |args: &[&str]| {
        let mut c = restricted_lsrecd(&[]);
        c.arg("--config")
            .arg(s.dir.path().join("absent.toml"))
            .env_remove("LSRECD_CONFIG")
            .env("LSRECD_DATABASE", &db)
            .args(args);
        c.output().expect("run lsrecd as a read-only user")
    };

    // The daemon is not running: no -wal or -shm, and the reader cannot create them.
    let v = json(&as_reader(&["records", "--json"]));
    assert_eq!(record_ids(&v).len(), 3);
    ok_stdout(&as_reader(&["status"]));
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert!(!state_dir.join("lsrecd.db-wal").exists());

    // The daemon is running: its -wal and -shm exist, readable but not writable by the reader.
    chmod(&state_dir, 0o755);
    chmod(&db, 0o644);
    let daemon = lsrecd::store::Store::open(&db).await.unwrap();
    daemon.add_manual_claim(AUTO_C, now_ms()).await.unwrap();
    let side_files = [
        state_dir.join("lsrecd.db-wal"),
        state_dir.join("lsrecd.db-shm"),
    ];
    for f in &side_files {
        chmod(f, 0o444);
    }
    chmod(&state_dir, 0o555);
    let v = json(&as_reader(&["status", "--json"]));
    assert_eq!(v["manual_claims"].as_array().unwrap().len(), 2);
    chmod(&state_dir, 0o755);
    for f in &side_files {
        chmod(f, 0o644);
    }
    daemon.close().await;
}
