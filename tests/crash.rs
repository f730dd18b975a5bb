//! kill -9 safety of the real binary (ARCHITECTURE.md §6.3, "Restart = reconcile").
//!
//! An `lsrecd emulator` process serves eight channels: several `record_when_live` ones (one capped
//! by `max_duration`, one recording `ALL` formats, one `MANUAL_UPLOAD`), one recorded by a
//! schedule whose window opens every five seconds, and two `immediateOnAir` ones that Live Station
//! records by itself. Latency on startRecord/stopRecord widens the moments where a call is in
//! flight (a call whose client dies during the latency is never applied: the emulator drops it
//! with the connection); now and then an "apply, then 502", "apply, then drop the connection" or
//! "apply, then never answer" makes Live Station act while lsrecd cannot know it did, and a
//! "late apply" holds a call past the client's timeout and applies it 2.5–4.5 s after it was
//! sent, whether or not the daemon that sent it is still alive.
//!
//! Each round starts `lsrecd run`, lets it work for a random 50–1500 ms while streams start and
//! end at random, then kills it with SIGKILL, checks the database file, and starts it again. A
//! last clean run must catch up with everything the emulator did; it is stopped with SIGTERM and
//! the database and the emulator's counters are checked against invariants that hold whatever
//! moment each kill landed on (see [`check_invariants`]).
//!
//! The short variant runs with the normal suite. The long one is ignored by default:
//!
//! ```sh
//! cargo test --release --test crash -- --ignored --nocapture
//! ```
//!
//! `LSRECD_CRASH_SEED` replays a seed (printed at the start), `LSRECD_CRASH_ROUNDS` overrides the
//! number of rounds. The random choices come from the seed; where the kills land relative to the
//! daemon's work depends on timing too, so a seed narrows a failure down without pinning it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};

use lsrecd::emulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY};
use support::emulator::EmulatorProcess;
use support::process::{Process, lsrecd_command};
use support::{wait_for, write_private};

/// A channel of the scenario: how the emulator has it and how lsrecd is configured for it.
struct ChannelPlan {
    id: &'static str,
    immediate_on_air: bool,
    format: &'static str,
    record_type: &'static str,
    /// The `[[channel]]` lines after `id`.
    config: &'static str,
}

const CHANNELS: &[ChannelPlan] = &[
    ChannelPlan {
        id: "crash-live-1",
        immediate_on_air: false,
        format: "MP4",
        record_type: "AUTO_UPLOAD",
        config: "record_when_live = true",
    },
    ChannelPlan {
        id: "crash-live-2",
        immediate_on_air: false,
        format: "MP4",
        record_type: "AUTO_UPLOAD",
        config: "record_when_live = true",
    },
    ChannelPlan {
        id: "crash-live-all",
        immediate_on_air: false,
        format: "ALL",
        record_type: "AUTO_UPLOAD",
        config: "record_when_live = true",
    },
    ChannelPlan {
        id: "crash-live-manual",
        immediate_on_air: false,
        format: "MP4",
        record_type: "MANUAL_UPLOAD",
        config: "record_when_live = true",
    },
    ChannelPlan {
        id: "crash-capped",
        immediate_on_air: false,
        format: "MP4",
        record_type: "AUTO_UPLOAD",
        config: "record_when_live = true\nmax_duration = \"2s\"",
    },
    ChannelPlan {
        id: "crash-sched",
        immediate_on_air: false,
        format: "MP4",
        record_type: "AUTO_UPLOAD",
        config: "",
    },
    ChannelPlan {
        id: "crash-ioa-live",
        immediate_on_air: true,
        format: "MP4",
        record_type: "AUTO_UPLOAD",
        config: "record_when_live = true",
    },
    ChannelPlan {
        id: "crash-ioa",
        immediate_on_air: true,
        format: "HLS",
        record_type: "AUTO_UPLOAD",
        config: "",
    },
];

/// Record statuses that no longer change within the test (retention is days away).
const SETTLED: &[&str] = &[
    "TRANSFER_FINISH",
    "TRANSFER_READY",
    "PROCESSING_FAIL",
    "TRANSFER_FAIL",
];

/// How long the final clean run may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_daemon_at_random_moments_never_starts_twice_nor_loses_a_record() {
    crash_test(rounds_from_env(8)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long (minutes): cargo test --release --test crash -- --ignored --nocapture"]
async fn two_hundred_kills_at_random_moments_never_start_twice_nor_lose_a_record() {
    crash_test(rounds_from_env(200)).await;
}

/// The narrowest case of a lost record: a channel that records by itself streams and stops
/// entirely while lsrecd is down. Nothing about the channel looks different at restart, yet
/// Live Station has a record lsrecd never saw — unless the restart reads the records of every
/// configured channel, not only of those recording now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_made_and_ended_while_the_daemon_was_down_is_in_the_database_after_restart() {
    let work = Workdir(Some(tempfile::tempdir().expect("temp dir")));
    let dir = work.path().to_path_buf();
    let db = dir.join("lsrecd.db");
    let config = dir.join("config.toml");
    let emu = EmulatorProcess::start(&dir.join("emulator.log")).await;
    let plan = CHANNELS
        .iter()
        .find(|c| c.id == "crash-ioa")
        .expect("the scenario has crash-ioa");
    emu.add_channel(&json!({"id": plan.id, "immediate_on_air": true, "format": plan.format}))
        .await;
    write_private(
        &config,
        &config_text(&emu.base, &db, std::slice::from_ref(plan), ""),
    );

    let mut first = start_daemon(&config, &dir.join("first.log"));
    wait_for(CATCH_UP, "the first observation", async || {
        channel_observed(&db, plan.id).await.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", first.stderr_tail(40)));
    first.kill9();

    emu.set_live(plan.id, true).await;
    emu.set_live(plan.id, false).await;
    assert_eq!(emu.records().await.len(), 1, "the emulator made one record");

    let mut second = start_daemon(&config, &dir.join("second.log"));
    wait_for(
        CATCH_UP,
        "the record made while down to be in the database",
        async || missing_records(&emu, &db).await.is_empty().then_some(()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", second.stderr_tail(40)));
    let status = second
        .terminate(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.stderr_tail(40)));
    assert!(status.success(), "{}", second.stderr_tail(40));
}

/// Whether the database has a row for `channel` from an observation of the API.
async fn channel_observed(db: &Path, channel: &str) -> bool {
    if !db.exists() {
        return false;
    }
    let mut conn = connect(db).await;
    let seen: Option<String> =
        sqlx::query_scalar("SELECT channel_status FROM channels WHERE channel_id = ?1")
            .bind(channel)
            .fetch_optional(&mut conn)
            .await
            .ok()
            .flatten();
    let _ = conn.close().await;
    seen.is_some()
}

fn rounds_from_env(default: u32) -> u32 {
    match std::env::var("LSRECD_CRASH_ROUNDS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("LSRECD_CRASH_ROUNDS={v:?} is not a number")),
        Err(_) => default,
    }
}

fn seed_from_env() -> u64 {
    match std::env::var("LSRECD_CRASH_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("LSRECD_CRASH_SEED={v:?} is not a number")),
        Err(_) => rand::rng().random(),
    }
}

/// What one round did, for the summary at the end.
#[derive(Default)]
struct Round {
    life_ms: u64,
    /// SIGKILL ended the daemon (it was still running, as it always should be).
    killed: bool,
    faults: Vec<&'static str>,
    toggles: Vec<String>,
    start_calls: u64,
    stop_calls: u64,
    recordings: u64,
    records: usize,
}

/// The test directory; kept (and its path printed) when the test fails, for the logs.
struct Workdir(Option<tempfile::TempDir>);

impl Workdir {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("workdir present").path()
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("logs and database kept in {}", dir.keep().display());
        }
    }
}

async fn crash_test(rounds: u32) {
    let seed = seed_from_env();
    println!("crash test: seed {seed} (LSRECD_CRASH_SEED={seed} replays it), {rounds} rounds");
    let mut rng = StdRng::seed_from_u64(seed);
    let work = Workdir(Some(tempfile::tempdir().expect("temp dir")));
    let dir = work.path().to_path_buf();
    let db = dir.join("lsrecd.db");
    let config = dir.join("config.toml");

    let emu = EmulatorProcess::start(&dir.join("emulator.log")).await;
    emu.put(
        "/lifecycle",
        &json!({"processing_ms": 300, "transfer_ms": 300, "retention_ms": 259_200_000u64}),
    )
    .await;
    let mut live: BTreeMap<&'static str, bool> = BTreeMap::new();
    for c in CHANNELS {
        emu.add_channel(&json!({
            "id": c.id,
            "immediate_on_air": c.immediate_on_air,
            "format": c.format,
            "record_type": c.record_type,
        }))
        .await;
        let on = rng.random_bool(0.5);
        if on {
            emu.set_live(c.id, true).await;
        }
        live.insert(c.id, on);
    }
    write_private(&config, &config_text(&emu.base, &db, CHANNELS, SCHEDULE));
    check_config(&config);

    let mut summary: Vec<Round> = Vec::new();
    for n in 1..=rounds {
        let before = emu.counters().await;
        let mut round = Round {
            life_ms: rng.random_range(50..=1500),
            faults: inject_faults(&emu, &mut rng).await,
            ..Round::default()
        };
        let mut offsets: Vec<u64> = (0..rng.random_range(0..=3))
            .map(|_| rng.random_range(0..round.life_ms))
            .collect();
        offsets.sort_unstable();

        let mut daemon = start_daemon(&config, &dir.join(format!("run-{n:03}.log")));
        let began = Instant::now();
        let mut began_this_run = BTreeSet::new();
        for at in offsets {
            tokio::time::sleep_until((began + Duration::from_millis(at)).into()).await;
            let did = toggle(&emu, &mut live, &mut began_this_run, &mut rng).await;
            round.toggles.push(did);
        }
        // Not a wait for a condition: this instant is the random kill moment itself.
        tokio::time::sleep_until((began + Duration::from_millis(round.life_ms)).into()).await;
        if let Some(status) = daemon.exited() {
            panic!(
                "round {n}: lsrecd exited by itself ({status}) before the kill\n{}",
                daemon.stderr_tail(40)
            );
        }
        round.killed = daemon.kill9().signal() == Some(9);

        // The file must be sound after every kill, not only at the end.
        if db.exists() {
            let verdict = integrity(&db).await;
            assert_eq!(verdict, "ok", "round {n}: integrity_check after kill -9");
        }
        if rng.random_bool(0.4) {
            let did = toggle(&emu, &mut live, &mut BTreeSet::new(), &mut rng).await;
            round.toggles.push(format!("{did} (while down)"));
        }
        let after = emu.counters().await;
        round.start_calls = delta(&before, &after, "start_record");
        round.stop_calls = delta(&before, &after, "stop_record");
        round.recordings =
            count(&after, "recordings_started") - count(&before, "recordings_started");
        round.records = emu.records().await.len();
        summary.push(round);
    }

    // The last run is clean: no faults, no churn, and it must catch up with everything.
    emu.clear_faults().await;
    let mut daemon = start_daemon(&config, &dir.join("final.log"));
    wait_for(
        CATCH_UP,
        "every emulator record to be in the database",
        async || missing_records(&emu, &db).await.is_empty().then_some(()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", daemon.stderr_tail(40)));
    // Every stream ends; each recording must then be seen ending, released if lsrecd owned it,
    // and followed to the status it settles in.
    for c in CHANNELS {
        emu.set_live(c.id, false).await;
    }
    wait_for(
        CATCH_UP,
        "every record followed to its settled status",
        async || settled_and_followed(&emu, &db).await.then_some(()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", daemon.stderr_tail(40)));
    // A start interrupted by the last kill is settled once it can no longer take effect
    // (api.timeout + 5 s after it was sent); nothing may stay unsettled after that.
    wait_for(CATCH_UP, "every interrupted action settled", async || {
        (unsettled_actions(&db).await == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", daemon.stderr_tail(40)));
    let status = daemon
        .terminate(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon.stderr_tail(40)));
    assert!(
        status.success(),
        "lsrecd exited with {status} after SIGTERM\n{}",
        daemon.stderr_tail(40)
    );

    print_summary(&summary, &emu, &db).await;
    check_invariants(&emu, &db).await;
}

/// The schedule of the scenario: a window opens every five seconds.
const SCHEDULE: &str = r#"
[[schedule]]
name = "every-5s"
channel = "crash-sched"
cron = "*/5 * * * * *"
duration = "3s"
catch_up = "2s"
"#;

fn config_text(endpoint: &str, db: &Path, channels: &[ChannelPlan], schedules: &str) -> String {
    let mut text = format!(
        r#"[api]
endpoint = "{endpoint}"
region = "KR"
access_key = "{DEFAULT_ACCESS_KEY}"
secret_key = "{DEFAULT_SECRET_KEY}"
timeout = "2s"
max_rps = 200

[daemon]
database = "{db}"
timezone = "UTC"
# The smallest intervals the configuration accepts.
poll_interval = "1s"
record_poll_interval = "1s"

[retry]
max_attempts = 6
initial_backoff = "50ms"
max_backoff = "400ms"
"#,
        db = db.display()
    );
    for c in channels {
        text.push_str(&format!("\n[[channel]]\nid = \"{}\"\n{}\n", c.id, c.config));
    }
    text.push_str(schedules);
    text
}

/// `lsrecd check` accepts the configuration (a typo would make every round fail obscurely).
fn check_config(config: &Path) {
    let out = lsrecd_command()
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .expect("run lsrecd check");
    assert!(
        out.status.success(),
        "lsrecd check rejected the test configuration:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_daemon(config: &Path, log: &Path) -> Process {
    let mut cmd = lsrecd_command();
    cmd.arg("run").arg("--config").arg(config);
    Process::start_logged("lsrecd run", cmd, log)
}

/// Replaces the fault rules with a random set for this round; returns their names.
async fn inject_faults(emu: &EmulatorProcess, rng: &mut StdRng) -> Vec<&'static str> {
    emu.clear_faults().await;
    let mut names = Vec::new();
    // Rules fire in the order added, so the one-shot rules go before the standing latency.
    if rng.random_bool(0.25) {
        emu.add_fault(&json!({"operation": "start_record", "times": 1,
                              "fault": {"kind": "apply_then_502"}}))
            .await;
        names.push("start:apply-then-502");
    }
    if rng.random_bool(0.15) {
        emu.add_fault(&json!({"operation": "start_record", "times": 1,
                              "fault": {"kind": "apply_then_drop"}}))
            .await;
        names.push("start:apply-then-drop");
    }
    if rng.random_bool(0.3) {
        // Applied, then no answer until the client times out: a kill meanwhile lands after
        // Live Station acted and before lsrecd could know.
        emu.add_fault(&json!({"operation": "start_record", "times": 1,
                              "fault": {"kind": "apply_then_hold"}}))
            .await;
        names.push("start:apply-then-hold");
    }
    if rng.random_bool(0.3) {
        // Held past the client's 2 s timeout, then applied whether or not the daemon is still
        // there (answered 504): the start lands after lsrecd gave up on it, perhaps after a
        // kill and a restart, but before it could have concluded that it did not.
        let hold_ms: u64 = rng.random_range(2_500..=4_500);
        emu.add_fault(&json!({"operation": "start_record", "times": 1,
                              "fault": {"kind": "late_apply", "hold_ms": hold_ms}}))
            .await;
        names.push("start:late-apply");
    }
    if rng.random_bool(0.2) {
        emu.add_fault(&json!({"operation": "stop_record", "times": 1,
                              "fault": {"kind": "apply_then_502"}}))
            .await;
        names.push("stop:apply-then-502");
    }
    if rng.random_bool(0.1) {
        emu.add_fault(&json!({"operation": "stop_record", "times": 1,
                              "fault": {"kind": "apply_then_hold"}}))
            .await;
        names.push("stop:apply-then-hold");
    }
    if rng.random_bool(0.1) {
        let hold_ms: u64 = rng.random_range(2_500..=4_500);
        emu.add_fault(&json!({"operation": "stop_record", "times": 1,
                              "fault": {"kind": "late_apply", "hold_ms": hold_ms}}))
            .await;
        names.push("stop:late-apply");
    }
    if rng.random_bool(0.15) {
        emu.add_fault(&json!({"operation": "list_records", "times": 1,
                              "fault": {"kind": "status_5xx", "status": 503}}))
            .await;
        names.push("records:503");
    }
    if rng.random_bool(0.85) {
        let ms: u64 = rng.random_range(100..=300);
        emu.add_fault(&json!({"operation": "start_record",
                              "fault": {"kind": "latency", "ms": ms}}))
            .await;
        names.push("start:latency");
    }
    if rng.random_bool(0.85) {
        let ms: u64 = rng.random_range(100..=300);
        emu.add_fault(&json!({"operation": "stop_record",
                              "fault": {"kind": "latency", "ms": ms}}))
            .await;
        names.push("stop:latency");
    }
    names
}

/// Starts or ends the stream of a random channel; returns what it did.
///
/// An `immediateOnAir` stream that began while this daemon runs is not ended in the same run:
/// a recording that begins and ends between two polls of a running daemon leaves no trace in
/// the channel list, and lsrecd reads its records only when something else makes it look at
/// the channel — a limit of polling, not of crash safety, that this test does not measure.
/// (Streams that begin or end while the daemon is down are fair game: every restart reads the
/// records of every configured channel.)
async fn toggle(
    emu: &EmulatorProcess,
    live: &mut BTreeMap<&'static str, bool>,
    began_this_run: &mut BTreeSet<&'static str>,
    rng: &mut StdRng,
) -> String {
    let c = &CHANNELS[rng.random_range(0..CHANNELS.len())];
    let on = !live[c.id];
    if c.immediate_on_air && !on && began_this_run.contains(c.id) {
        return format!("{} kept live", c.id);
    }
    emu.set_live(c.id, on).await;
    live.insert(c.id, on);
    if on {
        began_this_run.insert(c.id);
    }
    format!("{} {}", c.id, if on { "live" } else { "offline" })
}

fn count(counters: &Value, key: &str) -> u64 {
    counters[key].as_u64().unwrap_or(0)
}

/// Calls of `op` (the counters' spelling, e.g. `start_record`) between two counter snapshots.
fn delta(before: &Value, after: &Value, op: &str) -> u64 {
    let calls = |c: &Value| c["calls"][op].as_u64().unwrap_or(0);
    calls(after).saturating_sub(calls(before))
}

async fn connect(db: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(db).read_only(true))
        .await
        .unwrap_or_else(|e| panic!("cannot open {} read-only: {e}", db.display()))
}

/// `PRAGMA integrity_check`'s answer, joined.
async fn integrity(db: &Path) -> String {
    let mut conn = connect(db).await;
    let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("integrity_check runs");
    let _ = conn.close().await;
    rows.join("; ")
}

/// Record id → (channel, status) in the database, or empty while the schema does not exist yet.
async fn db_records(db: &Path) -> BTreeMap<i64, (String, String)> {
    if !db.exists() {
        return BTreeMap::new();
    }
    let mut conn = connect(db).await;
    let rows = sqlx::query("SELECT record_id, channel_id, status FROM records")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
    let _ = conn.close().await;
    rows.iter()
        .map(|r| (r.get::<i64, _>(0), (r.get(1), r.get(2))))
        .collect()
}

/// Emulator records not (yet) in the database.
/// Actions still `PENDING` or `AMBIGUOUS`.
async fn unsettled_actions(db: &Path) -> i64 {
    let mut conn = connect(db).await;
    sqlx::query_scalar("SELECT count(*) FROM actions WHERE state IN ('PENDING', 'AMBIGUOUS')")
        .fetch_one(&mut conn)
        .await
        .expect("actions readable")
}

async fn missing_records(emu: &EmulatorProcess, db: &Path) -> Vec<i64> {
    let have = db_records(db).await;
    emu.records()
        .await
        .iter()
        .filter_map(|r| r["recordId"].as_i64())
        .filter(|id| !have.contains_key(id))
        .collect()
}

/// Every emulator record is in a settled status, the database has it in that status, and lsrecd
/// holds no recording open (all streams ended).
async fn settled_and_followed(emu: &EmulatorProcess, db: &Path) -> bool {
    let have = db_records(db).await;
    let records = emu.records().await;
    let all_followed = records.iter().all(|r| {
        let status = r["status"].as_str().unwrap_or_default();
        SETTLED.contains(&status)
            && r["recordId"]
                .as_i64()
                .and_then(|id| have.get(&id))
                .is_some_and(|(_, s)| s == status)
    });
    if !all_followed {
        return false;
    }
    let mut conn = connect(db).await;
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM owned_recordings WHERE stopped_at IS NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(-1);
    let _ = conn.close().await;
    open == 0
}

async fn print_summary(summary: &[Round], emu: &EmulatorProcess, db: &Path) {
    println!("round  life_ms  killed  start  stop  recs_started  records  faults / streams");
    for (i, r) in summary.iter().enumerate() {
        println!(
            "{:>5}  {:>7}  {:>6}  {:>5}  {:>4}  {:>12}  {:>7}  [{}] {}",
            i + 1,
            r.life_ms,
            if r.killed { "yes" } else { "NO" },
            r.start_calls,
            r.stop_calls,
            r.recordings,
            r.records,
            r.faults.join(" "),
            r.toggles.join(", ")
        );
    }
    let c = emu.counters().await;
    println!(
        "total: {} kills, {} startRecord, {} stopRecord, {} recordings, {} records, {} faults injected ({} applied late)",
        summary.iter().filter(|r| r.killed).count(),
        delta(&json!({}), &c, "start_record"),
        delta(&json!({}), &c, "stop_record"),
        count(&c, "recordings_started"),
        emu.records().await.len(),
        count(&c, "faults_injected"),
        count(&c, "late_applied"),
    );
    let mut conn = connect(db).await;
    let journal: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT operation, state, count(*) FROM actions GROUP BY operation, state ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await
    .expect("actions readable");
    let after_restart: i64 =
        sqlx::query_scalar("SELECT count(*) FROM actions WHERE error_message LIKE '%restart%'")
            .fetch_one(&mut conn)
            .await
            .expect("actions readable");
    let _ = conn.close().await;
    let journal: Vec<String> = journal
        .iter()
        .map(|(op, state, n)| format!("{op} {state} {n}"))
        .collect();
    println!(
        "journal: {}; {after_restart} settled by a restart's reconciliation",
        journal.join(", ")
    );
}

/// One startRecord action as journaled.
struct StartAction {
    id: i64,
    channel_id: String,
    state: String,
    requested_at: i64,
    finished_at: Option<i64>,
    record_ids: Vec<i64>,
}

/// The invariants, each true whatever moment every kill landed on.
async fn check_invariants(emu: &EmulatorProcess, db: &Path) {
    let counters = emu.counters().await;
    let records = emu.records().await;
    let ioa: BTreeSet<&str> = CHANNELS
        .iter()
        .filter(|c| c.immediate_on_air)
        .map(|c| c.id)
        .collect();

    // 1. The file is sound.
    assert_eq!(
        integrity(db).await,
        "ok",
        "integrity_check after the final run"
    );

    // 2. Never twice: Live Station never received a startRecord for a channel that was
    //    already recording.
    assert_eq!(
        counters["start_while_recording"], 0,
        "duplicate starts by channel: {}",
        counters["start_while_recording_by_channel"]
    );

    // 3. lsrecd never starts (nor stops) a channel that records by itself.
    for id in &ioa {
        assert!(
            counters["start_record_calls"].get(*id).is_none()
                && counters["stop_record_calls"].get(*id).is_none(),
            "startRecord/stopRecord sent to immediateOnAir channel {id}: {counters}"
        );
    }

    let mut conn = connect(db).await;

    // 4. Nothing is left unsettled by a clean run: every action killed mid-call was settled by
    //    a later run's reconciliation once it could no longer take effect.
    let unsettled: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT id, operation, state FROM actions WHERE state IN ('PENDING', 'AMBIGUOUS')",
    )
    .fetch_all(&mut conn)
    .await
    .expect("actions readable");
    assert!(
        unsettled.is_empty(),
        "actions left unsettled: {unsettled:?}"
    );

    // 5. Intent first: every startRecord/stopRecord that reached Live Station was preceded by a
    //    committed action row, so per channel the calls never outnumber the journal's rows.
    let journaled: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT channel_id, operation, count(*) FROM actions GROUP BY channel_id, operation",
    )
    .fetch_all(&mut conn)
    .await
    .expect("actions readable");
    let rows_of = |ch: &str, op: &str| {
        journaled
            .iter()
            .find(|(c, o, _)| c == ch && o == op)
            .map_or(0, |(_, _, n)| *n as u64)
    };
    for (key, op) in [
        ("start_record_calls", "startRecord"),
        ("stop_record_calls", "stopRecord"),
    ] {
        if let Some(calls) = counters[key].as_object() {
            for (ch, n) in calls {
                let n = n.as_u64().unwrap_or(0);
                assert!(
                    n <= rows_of(ch, op),
                    "{n} {op} calls reached Live Station for {ch} but only {} were journaled",
                    rows_of(ch, op)
                );
            }
        }
    }

    // 6. No record lost: every record Live Station made is in the database, on its channel.
    let have = db_records(db).await;
    for r in &records {
        let id = r["recordId"].as_i64().expect("recordId");
        let channel = r["channelId"].as_str().unwrap_or_default();
        match have.get(&id) {
            Some((c, _)) => assert_eq!(c, channel, "record {id} stored on the wrong channel"),
            None => panic!("record {id} of {channel} is not in the database: {r}"),
        }
    }

    // Emulator recordings by channel: record id → recordSeq (one recording per recordSeq).
    let seq_of: BTreeMap<i64, (String, i64)> = records
        .iter()
        .filter_map(|r| {
            Some((
                r["recordId"].as_i64()?,
                (
                    r["channelId"].as_str()?.to_string(),
                    r["recordSeq"].as_i64()?,
                ),
            ))
        })
        .collect();
    let mut recordings_on: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (channel, seq) in seq_of.values() {
        recordings_on
            .entry(channel.clone())
            .or_default()
            .insert(*seq);
    }

    let starts: Vec<StartAction> = sqlx::query(
        "SELECT id, channel_id, state, requested_at, finished_at, record_ids FROM actions
         WHERE operation = 'startRecord' AND state IN ('SUCCEEDED', 'RECONCILED') ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("actions readable")
    .iter()
    .map(|r| StartAction {
        id: r.get(0),
        channel_id: r.get(1),
        state: r.get(2),
        requested_at: r.get(3),
        finished_at: r.get(4),
        record_ids: r
            .get::<Option<String>, _>(5)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
    })
    .collect();

    // 7. A SUCCEEDED start got a 200 from Live Station, which answers 200 only when it begins a
    //    new recording: its records exist on that channel, and no two SUCCEEDED starts name
    //    the same recording.
    let mut claimed: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for a in starts.iter().filter(|a| a.state == "SUCCEEDED") {
        assert!(
            !a.record_ids.is_empty(),
            "startRecord action {} SUCCEEDED without records",
            a.id
        );
        let seqs: BTreeSet<i64> = a
            .record_ids
            .iter()
            .map(|id| {
                let (channel, seq) = seq_of.get(id).unwrap_or_else(|| {
                    panic!("action {} names record {id} Live Station never made", a.id)
                });
                assert_eq!(
                    channel, &a.channel_id,
                    "action {} names record {id} of another channel",
                    a.id
                );
                *seq
            })
            .collect();
        for seq in seqs {
            if let Some(other) = claimed.insert((a.channel_id.clone(), seq), a.id) {
                panic!(
                    "startRecord actions {other} and {} both claim to have started recording {seq} on {}",
                    a.id, a.channel_id
                );
            }
        }
    }

    // 8. A RECONCILED start was adopted because the channel was recording: a recording of that
    //    channel was running at some point between the intent and the settlement.
    for a in starts.iter().filter(|a| a.state == "RECONCILED") {
        let until = a.finished_at.unwrap_or(i64::MAX);
        let overlapping = records.iter().any(|r| {
            r["channelId"] == a.channel_id.as_str()
                && r["recordBeginTime"].as_i64().is_some_and(|b| b <= until)
                && match r["duration"].as_i64() {
                    // `duration` is whole seconds; allow for the rounding.
                    Some(secs) => {
                        r["recordBeginTime"].as_i64().unwrap_or(0) + (secs + 1) * 1000
                            >= a.requested_at
                    }
                    None => true,
                }
        });
        assert!(
            overlapping,
            "startRecord action {} on {} was RECONCILED but no recording ran between {} and {until}",
            a.id, a.channel_id, a.requested_at
        );
    }

    // 9. Every recording lsrecd owns came from a start that took effect, and lsrecd never owned
    //    more recordings on a channel than Live Station made there.
    let owned: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT channel_id, start_action_id FROM owned_recordings")
            .fetch_all(&mut conn)
            .await
            .expect("owned_recordings readable");
    let effective: BTreeSet<i64> = starts.iter().map(|a| a.id).collect();
    let mut owned_on: BTreeMap<&str, usize> = BTreeMap::new();
    for (channel, action) in &owned {
        assert!(
            action.is_some_and(|a| effective.contains(&a)),
            "owned recording on {channel} does not come from a SUCCEEDED/RECONCILED start ({action:?})"
        );
        *owned_on.entry(channel.as_str()).or_default() += 1;
    }
    for (channel, n) in owned_on {
        assert!(
            !ioa.contains(channel),
            "lsrecd owns a recording on immediateOnAir {channel}"
        );
        let made = recordings_on.get(channel).map_or(0, BTreeSet::len);
        assert!(
            n <= made,
            "lsrecd owned {n} recordings on {channel} but Live Station made only {made}"
        );
    }
    let _ = conn.close().await;
}
