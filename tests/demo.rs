//! `lsrecd demo` as a newcomer runs it: a fixed duration, what it prints, and the database it
//! leaves behind, read with the `sqlite3` command it suggests.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::process::{Process, lsrecd_command};
use support::site::query;

/// The demo's own run time: long enough for a channel to go live and be recorded.
const DURATION: &str = "25s";
/// The demo's run time plus start-up and shutdown of a debug build on a busy machine.
const LIMIT: Duration = Duration::from_secs(45);

/// The value printed after `label` on a line of its own, e.g. `  database:      /tmp/…/lsrecd.db`.
fn printed(stdout: &str, label: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|v| v.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_demo_records_a_live_channel_and_leaves_a_database_to_query() {
    // The demo keeps its directory for the user to look at; here it goes under a directory the
    // test removes.
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut command = lsrecd_command();
    command
        .args(["demo", "--duration", DURATION, "--timezone", "Asia/Seoul"])
        .env("TMPDIR", tmp.path());
    let mut demo = Process::start("lsrecd demo", command);

    let exit = demo.wait_exit(LIMIT).await;
    let stdout = demo.stdout();
    assert_eq!(
        exit.ok().and_then(|s| s.code()),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        demo.stderr()
    );
    assert!(
        stdout.contains("recording started"),
        "no recording started:\n{stdout}"
    );

    let database = PathBuf::from(
        printed(&stdout, "database:").unwrap_or_else(|| panic!("no database line:\n{stdout}")),
    );
    assert!(
        database.starts_with(tmp.path()),
        "the database {} is not in the temporary directory",
        database.display()
    );
    let look =
        printed(&stdout, "look inside:").unwrap_or_else(|| panic!("no sqlite3 command:\n{stdout}"));
    assert!(
        look.starts_with(&format!("sqlite3 -readonly {} ", database.display())),
        "the suggested command does not read the demo's database: {look}"
    );

    let counts = query(
        &database,
        "SELECT count(*), count(should_delete_time) FROM records",
    );
    let (records, with_deletion) = (&counts[0][0], &counts[0][1]);
    assert_ne!(records, "0", "the database has no records");
    assert_eq!(
        records, with_deletion,
        "some records have no should_delete_time"
    );

    // The command as printed works in a shell and shows those records.
    let shown = Command::new("sh")
        .arg("-c")
        .arg(&look)
        .output()
        .expect("sh runs");
    assert!(
        shown.status.success(),
        "{look} failed: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let rows = String::from_utf8_lossy(&shown.stdout).lines().count();
    assert_eq!(rows.to_string(), *records, "{look} printed {rows} rows");

    // Times are in the configured zone, named; should_delete_time also as a date.
    assert!(stdout.contains("times shown in Asia/Seoul"), "{stdout}");
    let started = stdout
        .lines()
        .find(|l| l.contains("recording started"))
        .unwrap_or_default();
    assert!(started.contains(" KST "), "{started}");
    let deletions: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once("should_delete_time=").map(|(_, v)| v))
        .collect();
    assert_eq!(deletions.len().to_string(), *records, "{stdout}");
    for d in deletions {
        let (raw, date) = d
            .split_once(' ')
            .unwrap_or_else(|| panic!("no date in {d:?}"));
        let ms: i64 = raw
            .parse()
            .unwrap_or_else(|_| panic!("{raw:?} is not a number"));
        let expected = chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .with_timezone(&chrono_tz::Tz::Asia__Seoul)
            .format("(%Y-%m-%d %H:%M:%S KST)")
            .to_string();
        assert_eq!(date, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_times_are_in_utc_with_the_flag() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut command = lsrecd_command();
    command
        .args([
            "demo",
            "--duration",
            "1s",
            "--timezone",
            "Asia/Seoul",
            "--utc",
        ])
        .env("TMPDIR", tmp.path());
    let mut demo = Process::start("lsrecd demo", command);
    let exit = demo.wait_exit(LIMIT).await;
    let stdout = demo.stdout();
    assert_eq!(
        exit.ok().and_then(|s| s.code()),
        Some(0),
        "{}",
        demo.stderr()
    );
    assert!(stdout.contains("times shown in UTC"), "{stdout}");
    assert!(!stdout.contains("KST"), "{stdout}");
}
