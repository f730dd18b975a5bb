//! The engine against the emulator: each scenario of ARCHITECTURE.md §3–7, driven tick by tick.
//!
//! The engine takes `now` as an argument, so windows, catch-up and retries are tested by passing
//! the instants we want rather than by waiting. The emulator runs on the real clock; the
//! engine's decisions do not depend on it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use lsrecd::config::Config;
use lsrecd::emulator::{
    ChannelSpec, Control, Emulator, EmulatorOptions, Fault, FaultRule, Lifecycle, Operation,
    RecordFormat, RecordType, RunningEmulator,
};
use lsrecd::engine::{Engine, now_ms};
use lsrecd::store::Store;
use sqlx::{Row, ValueRef};

const MIN: i64 = 60_000;

struct Harness {
    dir: tempfile::TempDir,
    _emulator: RunningEmulator,
    control: Control,
    store: Store,
    config: Arc<Config>,
}

impl Harness {
    /// An emulator with `channels`, and a configuration made of the `[api]`/`[daemon]` sections
    /// for it plus `rest` (channels, schedules, other sections).
    async fn new(channels: Vec<ChannelSpec>, rest: &str) -> Harness {
        Self::with(channels, rest, EmulatorOptions::default()).await
    }

    async fn with(channels: Vec<ChannelSpec>, rest: &str, options: EmulatorOptions) -> Harness {
        let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), options.clone())
            .await
            .expect("emulator starts");
        let control = emulator.control();
        for c in channels {
            control.add_channel(c).expect("channel added");
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lsrecd.db");
        let text = format!(
            r#"
[api]
endpoint = "{endpoint}"
access_key = "{access}"
secret_key = "{secret}"
timeout = "2s"
max_rps = 1000

[daemon]
database = "{db}"
timezone = "UTC"
poll_interval = "1s"
record_poll_interval = "5s"

[retry]
max_attempts = 4
initial_backoff = "1s"
max_backoff = "8s"

{rest}
"#,
            endpoint = emulator.base_url(),
            access = options.access_key,
            secret = options.secret_key,
            db = db.display(),
        );
        let config = Config::from_str(&text, &dir.path().join("config.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let store = Store::open(&db).await.expect("store opens");
        Harness {
            dir,
            _emulator: emulator,
            control,
            store,
            config: Arc::new(config),
        }
    }

    /// A new engine, as if lsrecd started at `up_since`.
    async fn engine(&self, up_since: i64) -> Engine {
        let client = lsrecd::daemon::client_for(&self.config).expect("client");
        let mut engine = Engine::new(self.config.clone(), client, self.store.clone(), up_since);
        assert!(
            engine.reconcile(up_since).await.expect("reconcile"),
            "first observation"
        );
        engine
    }

    fn starts(&self) -> u64 {
        self.control.counters().calls_of(Operation::StartRecord)
    }

    fn stops(&self) -> u64 {
        self.control.counters().calls_of(Operation::StopRecord)
    }

    fn duplicates(&self) -> u64 {
        self.control.counters().start_while_recording
    }

    /// Rows of a query, every value as text (`NULL` for null), read the way an operator would.
    async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let url = format!(
            "sqlite://{}?mode=ro",
            self.dir.path().join("lsrecd.db").display()
        );
        let pool = sqlx::SqlitePool::connect(&url)
            .await
            .expect("read-only connection");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let out = rows
            .iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        if row.try_get_raw(i).map(|v| v.is_null()).unwrap_or(true) {
                            "NULL".to_string()
                        } else if let Ok(v) = row.try_get::<i64, _>(i) {
                            v.to_string()
                        } else if let Ok(v) = row.try_get::<f64, _>(i) {
                            v.to_string()
                        } else {
                            row.try_get::<String, _>(i).unwrap_or_default()
                        }
                    })
                    .collect()
            })
            .collect();
        pool.close().await;
        out
    }

    /// A startRecord intent committed as a previous run would have, before its call.
    async fn journal_start(&self, channel_id: &str, trigger: &str, now: i64) -> i64 {
        self.store
            .begin_action(&lsrecd::store::NewAction {
                channel_id: channel_id.into(),
                operation: lsrecd::store::Mutation::StartRecord,
                trigger: lsrecd::store::Trigger::parse(trigger).expect("a trigger"),
                attempt: 1,
                occurrence_id: None,
                record_ids: vec![],
                now,
            })
            .await
            .unwrap()
    }

    async fn one(&self, sql: &str) -> String {
        let rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "{sql} returned {rows:?}");
        rows[0][0].clone()
    }

    fn emulator_record_count(&self) -> usize {
        self.control.all_records().len()
    }
}

/// A fire time in the near future on a whole second, and the 6-field cron that fires daily at it.
fn fire_at(offset_ms: i64) -> (i64, String) {
    let t = DateTime::<Utc>::from_timestamp_millis((now_ms() + offset_ms) / 1000 * 1000).unwrap();
    (
        t.timestamp_millis(),
        format!("{} {} {} * * *", t.second(), t.minute(), t.hour()),
    )
}

fn live_channel(id: &str) -> ChannelSpec {
    ChannelSpec::new(id).live()
}

#[tokio::test]
async fn a_live_channel_with_record_when_live_is_recorded_once_with_its_records_stored() {
    let h = Harness::new(
        vec![ChannelSpec::new("ls-a").record_type(RecordType::AutoUpload)],
        "[[channel]]\nid = \"ls-a\"\nlabel = \"studio-a\"\nrecord_when_live = true\n",
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    engine.tick(t0).await.unwrap();
    assert_eq!(h.starts(), 0, "not live: nothing started");

    h.control.go_live("ls-a").unwrap();
    let report = engine.tick(t0 + 1000).await.unwrap();
    assert_eq!(report.starts, 1);
    for i in 2..6 {
        engine.tick(t0 + i * 1000).await.unwrap();
    }
    assert_eq!(h.starts(), 1, "started exactly once");
    assert_eq!(h.duplicates(), 0);
    let record = &h
        .rows("SELECT record_id, status, should_delete_time FROM records")
        .await;
    assert_eq!(record.len(), 1);
    assert_eq!(record[0][1], "RECORDING");
    assert_ne!(record[0][2], "NULL", "should_delete_time kept");
    assert_eq!(
        h.rows("SELECT trigger, state FROM actions WHERE operation = 'startRecord'")
            .await,
        vec![vec!["live".to_string(), "SUCCEEDED".to_string()]]
    );
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'started'")
            .await,
        "1"
    );
    assert_eq!(h.one("SELECT count(*) FROM active_recordings").await, "1");
}

#[tokio::test]
async fn a_schedule_window_starts_and_stops_the_recording_and_completes_the_occurrence() {
    let (fire, cron) = fire_at(10 * MIN);
    let h = Harness::new(
        vec![live_channel("ls-b").format(RecordFormat::All)],
        &format!(
            "[[channel]]\nid = \"ls-b\"\n\n[[schedule]]\nname = \"news\"\nchannel = \"ls-b\"\ncron = \"{cron}\"\nduration = \"30m\"\n"
        ),
    )
    .await;
    let mut engine = h.engine(fire - 5 * MIN).await;
    engine.tick(fire - 5 * MIN).await.unwrap();
    assert_eq!(h.starts(), 0);
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE fire_time = {fire}"
        ))
        .await,
        "PENDING"
    );

    engine.tick(fire + 200).await.unwrap();
    assert_eq!(h.starts(), 1);
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE fire_time = {fire}"
        ))
        .await,
        "RECORDING"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM records").await,
        "2",
        "format ALL: MP4 and HLS"
    );
    assert_eq!(
        h.one("SELECT trigger FROM actions WHERE operation = 'startRecord'")
            .await,
        "schedule:news"
    );

    engine.tick(fire + 15 * MIN).await.unwrap();
    assert_eq!(h.stops(), 0, "window still open");

    engine.tick(fire + 30 * MIN).await.unwrap();
    assert_eq!(h.stops(), 1, "stopped at the window end");
    assert!(!h.control.channel("ls-b").unwrap().is_recording);
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE fire_time = {fire}"
        ))
        .await,
        "COMPLETED"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'stopped'")
            .await,
        "1"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM owned_recordings WHERE stopped_at IS NULL")
            .await,
        "0"
    );
    engine.tick(fire + 31 * MIN).await.unwrap();
    assert_eq!(h.starts(), 1, "no restart after the window");
    assert_eq!(
        h.one("SELECT count(*) FROM occurrences").await,
        "2",
        "ticks write one occurrence ahead, not one per tick"
    );
    // The next day's occurrence is already written, as PENDING.
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE fire_time = {}",
            fire + 24 * 60 * MIN
        ))
        .await,
        "PENDING"
    );
}

#[tokio::test]
async fn an_armed_window_starts_when_the_channel_goes_live_and_is_missed_if_it_never_does() {
    let (fire, cron) = fire_at(10 * MIN);
    let h = Harness::new(
        vec![ChannelSpec::new("ls-c"), ChannelSpec::new("ls-d")],
        &format!(
            "[[channel]]\nid = \"ls-c\"\n[[channel]]\nid = \"ls-d\"\n\n\
             [[schedule]]\nname = \"late-show\"\nchannel = \"ls-c\"\ncron = \"{cron}\"\nduration = \"20m\"\n\n\
             [[schedule]]\nname = \"dark\"\nchannel = \"ls-d\"\ncron = \"{cron}\"\nduration = \"20m\"\n"
        ),
    )
    .await;
    let mut engine = h.engine(fire - MIN).await;
    engine.tick(fire + 100).await.unwrap();
    assert_eq!(h.starts(), 0);
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE schedule = 'late-show' AND fire_time = {fire}"
        ))
        .await,
        "ARMED"
    );

    h.control.go_live("ls-c").unwrap();
    engine.tick(fire + 5 * MIN).await.unwrap();
    assert_eq!(
        h.starts(),
        1,
        "started as soon as it went live inside the window"
    );
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE schedule = 'late-show' AND fire_time = {fire}"
        ))
        .await,
        "RECORDING"
    );

    engine.tick(fire + 20 * MIN).await.unwrap();
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE schedule = 'late-show' AND fire_time = {fire}"
        ))
        .await,
        "COMPLETED"
    );
    let missed = h
        .rows(&format!(
            "SELECT state, detail FROM occurrences WHERE schedule = 'dark' AND fire_time = {fire}"
        ))
        .await;
    assert_eq!(missed[0][0], "MISSED");
    assert_eq!(missed[0][1], "channel was not publishing during the window");
    assert_eq!(
        h.one("SELECT count(*) FROM recent_failures WHERE detail LIKE '%not publishing%'")
            .await,
        "1"
    );
}

#[tokio::test]
async fn an_occurrence_that_fired_while_lsrecd_was_down_is_caught_up_within_catch_up() {
    let (fire, cron) = fire_at(10 * MIN);
    let h = Harness::new(
        vec![live_channel("ls-e")],
        &format!("[[channel]]\nid = \"ls-e\"\n[[schedule]]\nname = \"s\"\nchannel = \"ls-e\"\ncron = \"{cron}\"\nduration = \"1h\"\ncatch_up = \"5m\"\n"),
    )
    .await;
    {
        let mut before = h.engine(fire - 10 * MIN).await;
        before.tick(fire - 10 * MIN).await.unwrap();
    }
    // lsrecd was down from fire - 10 min until fire + 2 min.
    let mut after = h.engine(fire + 2 * MIN).await;
    after.tick(fire + 2 * MIN).await.unwrap();
    assert_eq!(h.starts(), 1, "caught up");
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE fire_time = {fire}"
        ))
        .await,
        "RECORDING"
    );
}

#[tokio::test]
async fn an_occurrence_that_fired_while_lsrecd_was_down_past_catch_up_is_missed_with_the_reason() {
    let (fire, cron) = fire_at(10 * MIN);
    let h = Harness::new(
        vec![live_channel("ls-f")],
        &format!("[[channel]]\nid = \"ls-f\"\n[[schedule]]\nname = \"s\"\nchannel = \"ls-f\"\ncron = \"{cron}\"\nduration = \"1h\"\ncatch_up = \"5m\"\n"),
    )
    .await;
    {
        let mut before = h.engine(fire - 10 * MIN).await;
        before.tick(fire - 10 * MIN).await.unwrap();
    }
    let mut after = h.engine(fire + 10 * MIN).await;
    after.tick(fire + 10 * MIN).await.unwrap();
    assert_eq!(h.starts(), 0, "not honoured past catch_up");
    let row = h
        .rows(&format!(
            "SELECT state, detail FROM occurrences WHERE fire_time = {fire}"
        ))
        .await;
    assert_eq!(row[0][0], "MISSED");
    assert_eq!(
        row[0][1],
        "lsrecd was not running at the fire time and came back 10m later (beyond catch_up 5m)"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'missed'")
            .await,
        "1"
    );
}

#[tokio::test]
async fn fire_times_missed_during_a_long_outage_each_end_missed() {
    let h = Harness::new(
        vec![live_channel("ls-g")],
        "[[channel]]\nid = \"ls-g\"\n[[schedule]]\nname = \"hourly\"\nchannel = \"ls-g\"\ncron = \"0 * * * *\"\nduration = \"10m\"\n",
    )
    .await;
    let t0 = now_ms() / (60 * MIN) * (60 * MIN) + 30 * MIN; // half past an hour
    {
        let mut before = h.engine(t0).await;
        before.tick(t0).await.unwrap();
    }
    // Down for five hours.
    let back = t0 + 5 * 60 * MIN;
    let mut after = h.engine(back).await;
    after.tick(back).await.unwrap();
    assert_eq!(h.starts(), 0);
    assert_eq!(
        h.one("SELECT count(*) FROM occurrences WHERE state = 'MISSED'")
            .await,
        "5"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM occurrences WHERE state = 'PENDING'")
            .await,
        "1",
        "the next one"
    );
}

#[tokio::test]
async fn an_immediate_on_air_channel_is_tracked_but_never_started() {
    let h = Harness::new(
        vec![ChannelSpec::new("ls-h").immediate_on_air(true)],
        "[[channel]]\nid = \"ls-h\"\nrecord_when_live = true\n",
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    h.control.go_live("ls-h").unwrap();
    for i in 1..5 {
        engine.tick(t0 + i * 1000).await.unwrap();
    }
    assert_eq!(h.starts(), 0, "never startRecord on immediateOnAir");
    assert_eq!(
        h.one("SELECT count(*) FROM records WHERE status = 'RECORDING'")
            .await,
        "1"
    );
    h.control.go_offline("ls-h").unwrap();
    engine.tick(t0 + 10_000).await.unwrap();
    assert_eq!(h.stops(), 0, "never stops what it did not start");
    assert_eq!(h.one("SELECT status FROM records").await, "PROCESSING");
}

#[tokio::test]
async fn a_manual_claim_records_until_it_is_ended() {
    let h = Harness::new(
        vec![live_channel("ls-i")],
        "[[channel]]\nid = \"ls-i\"\nlabel = \"desk\"\n",
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    engine.tick(t0).await.unwrap();
    assert_eq!(h.starts(), 0);
    h.store.add_manual_claim("ls-i", t0 + 500).await.unwrap();
    engine.tick(t0 + 1000).await.unwrap();
    assert_eq!(h.starts(), 1);
    assert_eq!(
        h.one("SELECT trigger FROM actions WHERE operation = 'startRecord'")
            .await,
        "manual"
    );
    engine.tick(t0 + 2000).await.unwrap();
    assert_eq!(h.stops(), 0);
    h.store
        .end_manual_claim("ls-i", "test", t0 + 2500)
        .await
        .unwrap();
    engine.tick(t0 + 3000).await.unwrap();
    assert_eq!(h.stops(), 1);
    assert_eq!(
        h.one("SELECT count(*) FROM owned_recordings WHERE stopped_at IS NULL")
            .await,
        "0"
    );
}

#[tokio::test]
async fn max_duration_stops_the_recording_and_the_same_claim_does_not_restart_it() {
    let h = Harness::new(
        vec![live_channel("ls-j")],
        "[[channel]]\nid = \"ls-j\"\nrecord_when_live = true\nmax_duration = \"1m\"\n",
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    engine.tick(t0).await.unwrap();
    assert_eq!(h.starts(), 1);
    engine.tick(t0 + 30_000).await.unwrap();
    assert_eq!(h.stops(), 0);
    engine.tick(t0 + 61_000).await.unwrap();
    assert_eq!(h.stops(), 1);
    for i in 62..70 {
        engine.tick(t0 + i * 1000).await.unwrap();
    }
    assert_eq!(
        h.starts(),
        1,
        "the live claim is spent until the channel goes live again"
    );
    assert!(
        h.one("SELECT message FROM events WHERE kind = 'stopped'")
            .await
            .contains("max_duration")
    );
    // A new publishing session is a new claim.
    h.control.go_offline("ls-j").unwrap();
    engine.tick(t0 + 80_000).await.unwrap();
    h.control.go_live("ls-j").unwrap();
    engine.tick(t0 + 81_000).await.unwrap();
    assert_eq!(h.starts(), 2);
}

/// Runs ticks one second apart until `done` holds or 200 ticks pass; returns the last `now`.
async fn tick_until(engine: &mut Engine, mut now: i64, mut done: impl FnMut() -> bool) -> i64 {
    for _ in 0..200 {
        if done() {
            return now;
        }
        engine.tick(now).await.unwrap();
        now += 1000;
    }
    panic!("condition not reached after 200 ticks");
}

#[tokio::test]
async fn transient_failures_are_retried_and_the_recording_starts_exactly_once() {
    let h = Harness::new(
        vec![live_channel("ls-k")],
        "[[channel]]\nid = \"ls-k\"\nrecord_when_live = true\n",
    )
    .await;
    h.control.add_fault(
        FaultRule::new(Operation::StartRecord, Fault::Status5xx { status: 503 }).times(2),
    );
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    tick_until(&mut engine, t0, || {
        h.control.channel("ls-k").unwrap().is_recording
    })
    .await;
    assert_eq!(h.starts(), 3, "two 503s, then success");
    assert_eq!(h.duplicates(), 0);
    let states = h
        .rows("SELECT attempt, state FROM actions WHERE operation = 'startRecord' ORDER BY id")
        .await;
    assert_eq!(
        states.last().unwrap(),
        &vec!["3".to_string(), "SUCCEEDED".to_string()]
    );
    assert_eq!(states.len(), 3);
}

#[tokio::test]
async fn a_429_waits_at_least_retry_after_before_the_next_attempt() {
    let h = Harness::new(
        vec![live_channel("ls-l")],
        "[[channel]]\nid = \"ls-l\"\nrecord_when_live = true\n",
    )
    .await;
    h.control.add_fault(
        FaultRule::new(
            Operation::StartRecord,
            Fault::RateLimit {
                retry_after_secs: Some(5),
            },
        )
        .times(1),
    );
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    tick_until(&mut engine, t0, || {
        h.control.channel("ls-l").unwrap().is_recording
    })
    .await;
    let times = h
        .rows("SELECT requested_at FROM actions WHERE operation = 'startRecord' ORDER BY id")
        .await;
    assert_eq!(times.len(), 2);
    let gap = times[1][0].parse::<i64>().unwrap() - times[0][0].parse::<i64>().unwrap();
    assert!(
        gap >= 5000,
        "second attempt {gap} ms after the 429 with Retry-After: 5"
    );
    assert_eq!(h.duplicates(), 0);
}

/// Faults after which the start may or may not have been applied: never a second start.
async fn ambiguous_start_is_reconciled_not_resent(fault: Fault) {
    let h = Harness::new(
        vec![live_channel("ls-m")],
        "[[channel]]\nid = \"ls-m\"\nrecord_when_live = true\n",
    )
    .await;
    h.control
        .add_fault(FaultRule::new(Operation::StartRecord, fault.clone()).times(1));
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    for i in 0..12 {
        engine.tick(t0 + i * 1000).await.unwrap();
    }
    assert!(h.control.channel("ls-m").unwrap().is_recording, "{fault:?}");
    assert_eq!(
        h.starts(),
        1,
        "{fault:?}: the ambiguous call was not resent"
    );
    assert_eq!(h.duplicates(), 0, "{fault:?}");
    assert_eq!(
        h.one("SELECT state FROM actions WHERE operation = 'startRecord'")
            .await,
        "RECONCILED",
        "{fault:?}"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM owned_recordings WHERE stopped_at IS NULL")
            .await,
        "1"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM records").await,
        h.emulator_record_count().to_string(),
        "every record stored"
    );
}

#[tokio::test]
async fn apply_then_502_is_reconciled_without_a_second_start() {
    ambiguous_start_is_reconciled_not_resent(Fault::ApplyThen502).await;
}

#[tokio::test]
async fn a_malformed_start_answer_is_reconciled_without_a_second_start() {
    ambiguous_start_is_reconciled_not_resent(Fault::MalformedBody).await;
}

#[tokio::test]
async fn a_start_that_times_out_after_applying_is_reconciled_without_a_second_start() {
    ambiguous_start_is_reconciled_not_resent(Fault::ApplyThenHold).await;
}

#[tokio::test]
async fn a_start_that_timed_out_without_applying_is_sent_again_after_reconciliation() {
    let h = Harness::new(
        vec![live_channel("ls-n")],
        "[[channel]]\nid = \"ls-n\"\nrecord_when_live = true\n",
    )
    .await;
    h.control
        .add_fault(FaultRule::new(Operation::StartRecord, Fault::Hold).times(1));
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    tick_until(&mut engine, t0, || {
        h.control.channel("ls-n").unwrap().is_recording
    })
    .await;
    assert_eq!(h.starts(), 2);
    assert_eq!(h.duplicates(), 0);
    let states = h
        .rows("SELECT state FROM actions WHERE operation = 'startRecord' ORDER BY id")
        .await;
    assert_eq!(
        states,
        vec![vec!["FAILED".to_string()], vec!["SUCCEEDED".to_string()]]
    );
}

#[tokio::test]
async fn a_malformed_channel_list_is_survived_and_nothing_is_decided_on_it() {
    let h = Harness::new(
        vec![live_channel("ls-o")],
        "[[channel]]\nid = \"ls-o\"\nrecord_when_live = true\n",
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    // Three answers in a row cannot be read: the page is given up for this tick.
    h.control
        .add_fault(FaultRule::new(Operation::ListChannels, Fault::MalformedBody).times(3));
    let report = engine.tick(t0).await.unwrap();
    assert!(!report.observed);
    assert_eq!(h.starts(), 0);
    let report = engine.tick(t0 + 1000).await.unwrap();
    assert!(report.observed);
    assert_eq!(h.starts(), 1);
}

#[tokio::test]
async fn a_page_that_fails_is_asked_for_again_within_the_tick() {
    let h = Harness::new(
        vec![live_channel("ls-o2")],
        "[[channel]]\nid = \"ls-o2\"\nrecord_when_live = true\n",
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    h.control.add_fault(
        FaultRule::new(Operation::ListChannels, Fault::Status5xx { status: 503 }).times(2),
    );
    let before = h.control.counters().calls_of(Operation::ListChannels);
    let report = engine.tick(t0).await.unwrap();
    assert!(report.observed, "the third answer went through");
    assert_eq!(
        h.control.counters().calls_of(Operation::ListChannels) - before,
        3
    );
    assert_eq!(
        h.starts(),
        1,
        "and the channel was started in the same tick"
    );
}

#[tokio::test]
async fn an_unclear_start_is_settled_by_reading_its_channel_alone_while_the_listing_fails() {
    let h = Harness::new(
        vec![live_channel("ls-o3")],
        "[[channel]]\nid = \"ls-o3\"\nrecord_when_live = true\n",
    )
    .await;
    // The first start gets a 503 (not applied, but lsrecd cannot know); from then on every
    // page of the channel list fails.
    h.control.add_fault(
        FaultRule::new(Operation::StartRecord, Fault::Status5xx { status: 503 }).times(1),
    );
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    engine.tick(t0).await.unwrap();
    assert_eq!(h.starts(), 1);
    h.control.add_fault(
        FaultRule::new(Operation::ListChannels, Fault::Status5xx { status: 503 }).times(1000),
    );
    // Past land-by (the answer + the 5 s landing margin): the channel is read on its own,
    // seen live and not recording, and started again, although no listing goes through.
    let report = engine.tick(t0 + 6_000).await.unwrap();
    assert!(!report.observed, "the listing failed");
    assert!(h.control.channel("ls-o3").unwrap().is_recording);
    assert_eq!(h.starts(), 2);
    assert_eq!(h.duplicates(), 0);
    let states = h
        .rows("SELECT state FROM actions WHERE operation = 'startRecord' ORDER BY id")
        .await;
    assert_eq!(
        states,
        vec![vec!["FAILED".to_string()], vec!["SUCCEEDED".to_string()]]
    );
}

#[tokio::test]
async fn a_rejected_start_is_not_retried_until_the_channel_changes() {
    let h = Harness::new(
        vec![live_channel("ls-p")],
        "[[channel]]\nid = \"ls-p\"\nrecord_when_live = true\n",
    )
    .await;
    h.control.add_fault(
        FaultRule::new(
            Operation::StartRecord,
            Fault::LiveStationError {
                error: lsrecd::emulator::LiveStationError::not_available("channel"),
            },
        )
        .times(1),
    );
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    for i in 0..10 {
        engine.tick(t0 + i * 1000).await.unwrap();
    }
    assert_eq!(h.starts(), 1, "a 4xx is not retried while nothing changed");
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'failed'")
            .await,
        "1"
    );
    h.control.go_offline("ls-p").unwrap();
    engine.tick(t0 + 11_000).await.unwrap();
    h.control.go_live("ls-p").unwrap();
    engine.tick(t0 + 12_000).await.unwrap();
    assert_eq!(h.starts(), 2, "retried once the observation changed");
    assert!(h.control.channel("ls-p").unwrap().is_recording);
}

async fn gateway_clock_off_by(offset: chrono::TimeDelta) {
    let h = Harness::new(
        vec![live_channel("ls-q")],
        "[[channel]]\nid = \"ls-q\"\nrecord_when_live = true\n",
    )
    .await;
    h.control.set_clock_offset(offset);
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    engine.tick(t0).await.unwrap();
    assert!(
        h.control.channel("ls-q").unwrap().is_recording,
        "offset {offset}"
    );
    assert_eq!(h.starts(), 1);
    engine.tick(t0 + 1000).await.unwrap();
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'clock_skew'")
            .await,
        "1",
        "one operator event while the skew lasts"
    );
}

#[tokio::test]
async fn a_gateway_clock_minutes_ahead_does_not_stop_recordings() {
    gateway_clock_off_by(chrono::TimeDelta::minutes(7)).await;
}

#[tokio::test]
async fn a_gateway_clock_minutes_behind_does_not_stop_recordings() {
    gateway_clock_off_by(chrono::TimeDelta::minutes(-9)).await;
}

#[tokio::test]
async fn records_are_followed_to_their_final_status_with_history() {
    let options = EmulatorOptions {
        lifecycle: Lifecycle {
            processing: Duration::from_millis(50),
            transfer: Duration::from_millis(50),
            ..Lifecycle::default()
        },
        ..EmulatorOptions::default()
    };
    let h = Harness::with(
        vec![live_channel("ls-r").record_type(RecordType::AutoUpload)],
        "[[channel]]\nid = \"ls-r\"\nrecord_when_live = true\n",
        options,
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    engine.tick(t0).await.unwrap();
    h.control.go_offline("ls-r").unwrap();
    let mut now = t0 + 1000;
    engine.tick(now).await.unwrap();
    h.control.advance(Duration::from_secs(1));
    // Records are re-read every record_poll_interval (5 s) until final.
    for _ in 0..4 {
        now += 5000;
        engine.tick(now).await.unwrap();
    }
    assert_eq!(h.one("SELECT status FROM records").await, "TRANSFER_FINISH");
    assert_ne!(
        h.one("SELECT object_storage_url FROM records").await,
        "NULL"
    );
    let history: Vec<String> = h
        .rows("SELECT status FROM record_status_history ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(history.first().map(String::as_str), Some("RECORDING"));
    assert_eq!(history.last().map(String::as_str), Some("TRANSFER_FINISH"));
    assert!(history.contains(&"PROCESSING".to_string()), "{history:?}");
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'uploaded'")
            .await,
        "1"
    );
    let calls = h.control.counters().calls_of(Operation::ListRecords);
    for _ in 0..3 {
        now += 5000;
        engine.tick(now).await.unwrap();
    }
    assert_eq!(
        h.control.counters().calls_of(Operation::ListRecords),
        calls + 3,
        "final records are not polled: only the one-channel-per-tick sweep reads records"
    );
}

#[tokio::test]
async fn an_expiring_record_not_uploaded_is_warned_about_and_uploaded_when_a_bucket_is_set() {
    let options = EmulatorOptions {
        lifecycle: Lifecycle {
            processing: Duration::from_millis(50),
            transfer: Duration::from_millis(50),
            retention: Duration::from_secs(3600),
        },
        ..EmulatorOptions::default()
    };
    let h = Harness::with(
        vec![live_channel("ls-s").record_type(RecordType::ManualUpload)],
        "[retention]\nwarn_before = \"2h\"\nupload_bucket = \"archive\"\n\n[[channel]]\nid = \"ls-s\"\nrecord_when_live = true\n",
        options,
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    h.store
        .set_state("retention.warn_before_ms", "7200000", t0)
        .await
        .unwrap();
    engine.tick(t0).await.unwrap();
    assert_eq!(
        h.one("SELECT count(*) FROM expiring_records").await,
        "1",
        "recording, deleted in 1 h, not uploaded"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'expiring'")
            .await,
        "1"
    );
    h.control.go_offline("ls-s").unwrap();
    h.control.advance(Duration::from_secs(1));
    let mut now = t0;
    for _ in 0..4 {
        now += 5000;
        engine.tick(now).await.unwrap();
    }
    assert_eq!(
        h.control.counters().calls_of(Operation::Upload),
        1,
        "upload requested once"
    );
    assert_eq!(
        h.one("SELECT trigger FROM actions WHERE operation = 'upload'")
            .await,
        "retention"
    );
    h.control.advance(Duration::from_secs(1));
    for _ in 0..2 {
        now += 5000;
        engine.tick(now).await.unwrap();
    }
    assert_eq!(h.one("SELECT status FROM records").await, "TRANSFER_FINISH");
    assert_eq!(h.one("SELECT count(*) FROM expiring_records").await, "0");
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'expiring'")
            .await,
        "1",
        "warned once"
    );
}

#[tokio::test]
async fn a_recording_lsrecd_did_not_start_is_never_stopped() {
    let (fire, cron) = fire_at(10 * MIN);
    let h = Harness::new(
        vec![ChannelSpec::new("ls-t")],
        &format!("[[channel]]\nid = \"ls-t\"\n[[schedule]]\nname = \"s\"\nchannel = \"ls-t\"\ncron = \"{cron}\"\nduration = \"10m\"\n"),
    )
    .await;
    let mut engine = h.engine(fire - MIN).await;
    engine.tick(fire + 100).await.unwrap();
    // Someone else starts the recording (the console, another tool).
    h.control.go_live("ls-t").unwrap();
    let other = lsrecd::daemon::client_for(&h.config).unwrap();
    other.start_record("ls-t").await.unwrap();
    engine.tick(fire + MIN).await.unwrap();
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE fire_time = {fire}"
        ))
        .await,
        "RECORDING"
    );
    engine.tick(fire + 10 * MIN).await.unwrap();
    assert_eq!(h.stops(), 0, "not ours to stop");
    assert_eq!(h.starts(), 1, "only the other party's start");
    assert_eq!(h.duplicates(), 0);
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE fire_time = {fire}"
        ))
        .await,
        "COMPLETED"
    );
}

#[tokio::test]
async fn refused_credentials_raise_one_alert_not_a_storm() {
    let options = EmulatorOptions {
        secret_key: "the-real-secret".into(),
        ..EmulatorOptions::default()
    };
    let h = Harness::with(
        vec![live_channel("ls-u")],
        "[[channel]]\nid = \"ls-u\"\nrecord_when_live = true\n",
        options,
    )
    .await;
    // The harness wrote the emulator's secret; a client with another one is refused.
    let mut config = (*h.config).clone();
    config.api.credentials.secret_key = lsrecd::secret::Secret::new("a-wrong-secret");
    let client = lsrecd::daemon::client_for(&config).unwrap();
    let t0 = now_ms();
    let mut engine = Engine::new(Arc::new(config), client, h.store.clone(), t0);
    assert!(!engine.reconcile(t0).await.unwrap());
    for i in 1..5 {
        let report = engine.tick(t0 + i * 1000).await.unwrap();
        assert!(!report.observed);
    }
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'auth_failure'")
            .await,
        "1"
    );
    assert_eq!(
        h.control.counters().auth_failures,
        10,
        "each of 5 polls signed once, then re-signed once"
    );
    assert_eq!(h.starts(), 0);
}

#[tokio::test]
async fn a_configured_channel_the_api_does_not_return_is_reported_not_crashed_on() {
    let h = Harness::new(
        vec![live_channel("ls-v")],
        "[[channel]]\nid = \"ls-v\"\nrecord_when_live = true\n[[channel]]\nid = \"ls-gone\"\nrecord_when_live = true\n",
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    engine.tick(t0).await.unwrap();
    engine.tick(t0 + 1000).await.unwrap();
    assert_eq!(h.starts(), 1, "the other channel is still served");
    assert_eq!(
        h.one(
            "SELECT count(*) FROM events WHERE kind = 'channel_missing' AND channel_id = 'ls-gone'"
        )
        .await,
        "1"
    );
}

#[tokio::test]
async fn after_a_crash_between_the_call_and_the_commit_the_recording_is_adopted_not_restarted() {
    let h = Harness::new(
        vec![live_channel("ls-w")],
        "[[channel]]\nid = \"ls-w\"\nrecord_when_live = true\n",
    )
    .await;
    let t0 = now_ms();
    // A previous run committed its intent and the call reached Live Station, then the process died.
    let action = h.journal_start("ls-w", "live", t0).await;
    let client = lsrecd::daemon::client_for(&h.config).unwrap();
    client.start_record("ls-w").await.unwrap();

    let mut engine = h.engine(t0 + 5000).await;
    for i in 0..5 {
        engine.tick(t0 + 5000 + i * 1000).await.unwrap();
    }
    assert_eq!(h.starts(), 1, "adopted, not started again");
    assert_eq!(h.duplicates(), 0);
    assert_eq!(
        h.one(&format!("SELECT state FROM actions WHERE id = {action}"))
            .await,
        "RECONCILED"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM records").await,
        "1",
        "the record the API knows is stored"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE kind = 'adopted'")
            .await,
        "1"
    );
    // It is ours: when the live claim ends it is stopped.
    h.control.go_offline("ls-w").unwrap();
    engine.tick(t0 + 20_000).await.unwrap();
    assert_eq!(
        h.one("SELECT count(*) FROM owned_recordings WHERE stopped_at IS NULL")
            .await,
        "0"
    );
}

#[tokio::test]
async fn an_interrupted_start_is_settled_only_once_it_can_no_longer_take_effect() {
    let h = Harness::new(
        vec![live_channel("ls-x")],
        "[[channel]]\nid = \"ls-x\"\nrecord_when_live = true\n",
    )
    .await;
    let t0 = now_ms();
    // A previous run committed its intent and died before (or while) sending the call.
    let action = h.journal_start("ls-x", "live", t0).await;
    let mut engine = h.engine(t0 + 1000).await;
    engine.tick(t0 + 1000).await.unwrap();
    engine.tick(t0 + 3000).await.unwrap();
    let state = format!("SELECT state FROM actions WHERE id = {action}");
    assert_eq!(
        h.one(&state).await,
        "PENDING",
        "may still be in flight: its request may have left up to one api.timeout (2s) after the \
         intent (a re-signed retry), and can land until api.timeout + landing_margin (5s) after that"
    );
    assert_eq!(
        h.starts(),
        0,
        "nothing is sent while the old request could still land"
    );
    engine.tick(t0 + 7100).await.unwrap();
    assert_eq!(h.one(&state).await, "PENDING", "still inside 2 × 2s + 5s");
    assert_eq!(h.starts(), 0);
    engine.tick(t0 + 9100).await.unwrap();
    assert_eq!(h.one(&state).await, "FAILED");
    assert_eq!(h.starts(), 1, "then the claim is served, once");
    assert_eq!(h.duplicates(), 0);
}

#[tokio::test]
async fn a_removed_schedule_ends_its_claims_at_reload_but_a_running_show_keeps_its_window() {
    let (fire, cron) = fire_at(10 * MIN);
    let h = Harness::new(
        vec![live_channel("ls-y")],
        &format!("[[channel]]\nid = \"ls-y\"\n[[schedule]]\nname = \"gone\"\nchannel = \"ls-y\"\ncron = \"{cron}\"\nduration = \"1h\"\n"),
    )
    .await;
    let mut engine = h.engine(fire - MIN).await;
    engine.tick(fire + 100).await.unwrap();
    assert_eq!(h.starts(), 1);
    let mut reloaded = (*h.config).clone();
    reloaded.schedules.clear();
    engine.reload(Arc::new(reloaded), None);
    engine.tick(fire + MIN).await.unwrap();
    assert_eq!(
        h.stops(),
        0,
        "a reload alone does not stop a running recording"
    );
    let next_day = fire + 24 * 60 * MIN;
    let row = h
        .rows(&format!(
            "SELECT state, detail FROM occurrences WHERE fire_time = {next_day}"
        ))
        .await;
    assert_eq!(
        row[0],
        vec![
            "MISSED".to_string(),
            "schedule removed from the configuration".to_string()
        ]
    );
    engine.tick(fire + 60 * MIN).await.unwrap();
    assert_eq!(h.stops(), 1, "stopped at the end of its window");
    assert_eq!(
        h.one(&format!(
            "SELECT state FROM occurrences WHERE fire_time = {fire}"
        ))
        .await,
        "COMPLETED"
    );
    assert_eq!(h.starts(), 1);
}

#[tokio::test]
async fn a_recording_that_began_and_ended_between_two_polls_is_still_stored() {
    let h = Harness::new(
        vec![
            ChannelSpec::new("ls-z").immediate_on_air(true),
            ChannelSpec::new("ls-z2"),
        ],
        "[[channel]]\nid = \"ls-z\"\n[[channel]]\nid = \"ls-z2\"\n",
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    engine.tick(t0).await.unwrap();
    // A short stream the channel list never shows: live and offline between two polls.
    h.control.go_live("ls-z").unwrap();
    h.control.go_offline("ls-z").unwrap();
    for i in 1..=2 {
        engine.tick(t0 + i * 1000).await.unwrap();
    }
    assert_eq!(
        h.one("SELECT count(*) FROM records WHERE channel_id = 'ls-z'")
            .await,
        "1",
        "found by the sweep within (configured channels × poll_interval)"
    );
}

#[tokio::test]
async fn a_window_whose_start_live_station_refused_ends_failed_with_the_refusal() {
    let (fire, cron) = fire_at(10 * MIN);
    let h = Harness::new(
        vec![live_channel("ls-r2")],
        &format!("[[channel]]\nid = \"ls-r2\"\n[[schedule]]\nname = \"s\"\nchannel = \"ls-r2\"\ncron = \"{cron}\"\nduration = \"10m\"\n"),
    )
    .await;
    h.control.set_fault(
        Operation::StartRecord,
        Fault::LiveStationError {
            error: lsrecd::emulator::LiveStationError::not_available("channel"),
        },
    );
    let mut engine = h.engine(fire - MIN).await;
    engine.tick(fire + 100).await.unwrap();
    engine.tick(fire + 5 * MIN).await.unwrap();
    assert_eq!(
        h.starts(),
        1,
        "refused once, not retried while nothing changed"
    );
    engine.tick(fire + 10 * MIN).await.unwrap();
    let row = h
        .rows(&format!(
            "SELECT state, detail FROM occurrences WHERE fire_time = {fire}"
        ))
        .await;
    assert_eq!(row[0][0], "FAILED");
    assert!(
        row[0][1].starts_with("window ended without a recording; startRecord rejected"),
        "{}",
        row[0][1]
    );
}

/// A configured channel and another one in the same account that records by itself
/// (immediateOnAir), both with records Live Station deletes within the warning; the bucket set.
async fn mine_and_theirs(all_channels: bool) -> (Harness, Engine) {
    let options = EmulatorOptions {
        lifecycle: Lifecycle {
            processing: Duration::from_millis(50),
            transfer: Duration::from_millis(50),
            retention: Duration::from_secs(3600),
        },
        ..EmulatorOptions::default()
    };
    let h = Harness::with(
        vec![
            live_channel("ls-mine").record_type(RecordType::ManualUpload),
            live_channel("ls-theirs")
                .immediate_on_air(true)
                .record_type(RecordType::ManualUpload),
        ],
        &format!(
            "[retention]\nwarn_before = \"2h\"\nupload_bucket = \"archive\"\nall_channels = {all_channels}\n\n\
             [[channel]]\nid = \"ls-mine\"\nrecord_when_live = true\n"
        ),
        options,
    )
    .await;
    let t0 = now_ms();
    let mut engine = h.engine(t0).await;
    let mut now = t0;
    engine.tick(now).await.unwrap();
    h.control.go_offline("ls-mine").unwrap();
    h.control.go_offline("ls-theirs").unwrap();
    h.control.advance(Duration::from_secs(1));
    for _ in 0..6 {
        now += 5000;
        engine.tick(now).await.unwrap();
    }
    (h, engine)
}

#[tokio::test]
async fn records_of_channels_not_configured_are_neither_stored_nor_uploaded() {
    let (h, _engine) = mine_and_theirs(false).await;
    assert_eq!(
        h.one("SELECT count(*) FROM records WHERE channel_id = 'ls-theirs'")
            .await,
        "0"
    );
    assert_eq!(
        h.one("SELECT count(*) FROM events WHERE channel_id = 'ls-theirs'")
            .await,
        "0"
    );
    assert_eq!(
        h.one("SELECT group_concat(DISTINCT channel_id) FROM actions WHERE operation = 'upload'")
            .await,
        "ls-mine",
        "only the configured channel's record is uploaded"
    );
    assert_eq!(h.control.counters().calls_of(Operation::Upload), 1);
    assert!(
        h.control
            .records("ls-theirs")
            .iter()
            .all(|r| r.object_storage_url.is_none()),
        "their record was not uploaded to our bucket"
    );
}

#[tokio::test]
async fn with_retention_all_channels_other_channels_records_are_stored_and_guarded_too() {
    let (h, _engine) = mine_and_theirs(true).await;
    assert_eq!(
        h.one("SELECT count(*) FROM records WHERE channel_id = 'ls-theirs'")
            .await,
        "1"
    );
    assert_eq!(h.control.counters().calls_of(Operation::Upload), 2);
}
