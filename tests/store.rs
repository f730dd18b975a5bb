//! The store against real SQLite files: migrations, concurrency, every query, every view, and
//! the queries `docs/database.md` gives operators.

mod store_fixture;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lsrecd::store::{
    ActionOutcome, ActionState, ChannelChanges, EventKind, Mutation, NewAction, NewEvent,
    NewOccurrence, OccurrenceReason, OccurrenceState, RecordFilter, Store, StoreError, Trigger,
    binary_schema_version, keys,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor, Row};
use store_fixture::*;

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("lsrecd.db")
}

/// A raw connection, as an operator's tool (or a test) would open one.
async fn raw(path: &Path, read_only: bool) -> SqliteConnection {
    SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(path)
            .read_only(read_only),
    )
    .await
    .expect("raw connection")
}

async fn scalar_i64(conn: &mut SqliteConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&mut *conn)
        .await
        .expect(sql)
}

fn new_action(channel: &str, operation: Mutation, now: i64) -> NewAction {
    NewAction {
        channel_id: channel.into(),
        operation,
        trigger: Trigger::Live,
        attempt: 1,
        occurrence_id: None,
        record_ids: vec![],
        now,
    }
}

fn occurrence(schedule: &str, fire_time: i64) -> NewOccurrence {
    NewOccurrence {
        schedule: schedule.into(),
        channel_id: STUDIO_A.into(),
        fire_time,
        window_end: Some(fire_time + HOUR),
        state: OccurrenceState::Pending,
        detail: None,
        now: fire_time,
    }
}

// ---------------------------------------------------------------- opening and migrating

#[tokio::test]
async fn opening_a_new_file_creates_the_whole_schema_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        binary_schema_version()
    );
    store.close().await;

    let mut conn = raw(&path, true).await;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    for expected in [
        "channels",
        "records",
        "record_status_history",
        "occurrences",
        "actions",
        "events",
        "owned_recordings",
        "manual_claims",
        "daemon_state",
        "active_recordings",
        "expiring_records",
        "recent_failures",
        "failures",
        "unuploaded_records",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn reopening_an_existing_database_keeps_its_data_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    store.set_state("k", "v", 1).await.unwrap();
    store.close().await;

    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.get_state("k").await.unwrap().as_deref(), Some("v"));
    store.close().await;

    let mut conn = raw(&path, true).await;
    let applied = scalar_i64(&mut conn, "SELECT count(*) FROM _sqlx_migrations").await;
    let distinct = scalar_i64(
        &mut conn,
        "SELECT count(DISTINCT version) FROM _sqlx_migrations",
    )
    .await;
    assert_eq!(applied, distinct);
    assert!(applied >= 1);
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_binary_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    Store::open(&path).await.unwrap().close().await;
    let future = binary_schema_version() + 1_000;
    {
        let mut conn = raw(&path, false).await;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (?1, 'from the future', TRUE, x'00', 0)",
        )
        .bind(future)
        .execute(&mut conn)
        .await
        .unwrap();
        // Fold the WAL into the main file so that the file alone is the database.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();

    for result in [
        Store::open(&path).await.map(|_| ()),
        Store::open_read_only(&path).await.map(|_| ()),
    ] {
        match result {
            Err(StoreError::SchemaTooNew { db, binary }) => {
                assert_eq!(db, future);
                assert_eq!(binary, binary_schema_version());
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }
    let message = Store::open(&path).await.unwrap_err().to_string();
    assert!(message.contains(&future.to_string()), "{message}");
    assert!(
        message.contains(&binary_schema_version().to_string()),
        "{message}"
    );

    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was modified"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
}

#[tokio::test]
async fn a_read_only_store_refuses_writes_and_missing_or_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    match Store::open_read_only(&path).await {
        Err(StoreError::Missing { path: p }) => assert_eq!(p, path),
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(!path.exists(), "a read-only open created the file");

    Store::open(&path).await.unwrap().close().await;
    let ro = Store::open_read_only(&path).await.unwrap();
    assert!(matches!(
        ro.set_state("k", "v", 1).await,
        Err(StoreError::ReadOnly)
    ));
    ro.close().await;

    let foreign = dir.path().join("other.db");
    {
        let mut conn = SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(&foreign)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        conn.execute("CREATE TABLE t (x)").await.unwrap();
        conn.close().await.unwrap();
    }
    assert!(matches!(
        Store::open_read_only(&foreign).await,
        Err(StoreError::NotLsrecdDatabase { .. })
    ));
}

#[tokio::test]
async fn a_reader_holding_a_snapshot_does_not_block_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    let event = |at: i64| NewEvent {
        at,
        kind: EventKind::Started,
        channel_id: None,
        record_id: None,
        message: "m".into(),
    };
    store.add_event(&event(1)).await.unwrap();

    let mut reader = raw(&path, true).await;
    reader.execute("BEGIN").await.unwrap();
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(*) FROM events").await,
        1
    );

    tokio::time::timeout(Duration::from_secs(5), store.add_event(&event(2)))
        .await
        .expect("the writer waited for the reader")
        .unwrap();

    // The reader still sees its snapshot; after it ends, the new row.
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(*) FROM events").await,
        1
    );
    reader.execute("COMMIT").await.unwrap();
    assert_eq!(
        scalar_i64(&mut reader, "SELECT count(*) FROM events").await,
        2
    );
    store.close().await;
}

// ---------------------------------------------------------------- channels

/// Counts channel row writes independently of the store, with triggers in the file.
async fn count_channel_writes(path: &Path) -> SqliteConnection {
    let mut conn = raw(path, false).await;
    conn.execute(
        "CREATE TABLE test_channel_writes (n INTEGER NOT NULL);
         INSERT INTO test_channel_writes VALUES (0);
         CREATE TRIGGER test_count_insert AFTER INSERT ON channels
             BEGIN UPDATE test_channel_writes SET n = n + 1; END;
         CREATE TRIGGER test_count_update AFTER UPDATE ON channels
             BEGIN UPDATE test_channel_writes SET n = n + 1; END;",
    )
    .await
    .unwrap();
    conn
}

#[tokio::test]
async fn an_idle_poll_of_a_thousand_unchanged_channels_writes_no_channel_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    let mut counter = count_channel_writes(&path).await;
    let seen: Vec<_> = (0..1_000)
        .map(|i| channel(&format!("ls-{i:05}"), "READY", false))
        .collect();
    let configured: HashMap<_, _> = (0..10)
        .map(|i| (format!("ls-{i:05}"), Some(format!("label-{i}"))))
        .collect();

    let first = store
        .observe_channels(&seen, &configured, 1_000)
        .await
        .unwrap();
    assert_eq!(first.rows_written, 1_000);
    assert_eq!(
        scalar_i64(&mut counter, "SELECT n FROM test_channel_writes").await,
        1_000
    );

    let second = store
        .observe_channels(&seen, &configured, 2_000)
        .await
        .unwrap();
    assert_eq!(second.rows_written, 0);
    assert_eq!(second.channels_seen, 1_000);
    assert_eq!(
        scalar_i64(&mut counter, "SELECT n FROM test_channel_writes").await,
        1_000,
        "an unchanged poll wrote channel rows"
    );
    assert_eq!(
        scalar_i64(
            &mut counter,
            "SELECT count(*) FROM channels WHERE observed_at <> 1000"
        )
        .await,
        0
    );
    // The heartbeat moved.
    assert_eq!(
        store.get_state_i64(keys::LAST_POLL_AT).await.unwrap(),
        Some(2_000)
    );

    // One channel going live is one row written, with its new observation time.
    let mut changed = seen.clone();
    changed[7] = channel("ls-00007", "PUBLISHING", false);
    let third = store
        .observe_channels(&changed, &configured, 3_000)
        .await
        .unwrap();
    assert_eq!(third.rows_written, 1);
    let rows = store.channel_rows().await.unwrap();
    let live = rows.iter().find(|c| c.channel_id == "ls-00007").unwrap();
    assert_eq!(live.channel_status.as_deref(), Some("PUBLISHING"));
    assert_eq!(live.observed_at, Some(3_000));
    assert_eq!(live.label.as_deref(), Some("label-7"));
    assert!(live.configured);
    store.close().await;
}

/// A complete observation is compared a few hundred rows at a time: what it finds must not
/// depend on where the chunks end.
#[tokio::test]
async fn a_complete_observation_of_thousands_of_channels_finds_what_one_of_a_few_finds() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    let mut counter = count_channel_writes(&path).await;
    let id = |i: usize| format!("ls-{i:05}");
    let mut seen: Vec<_> = (0..2_400)
        .map(|i| channel(&id(i), "READY", false))
        .collect();
    // The same channel on two pages, far apart.
    seen.push(channel(&id(3), "READY", false));
    // Every other channel configured, and 700 configured ones the API does not list.
    let configured: HashMap<_, _> = (0..3_100)
        .filter(|i| i % 2 == 0 || *i >= 2_400)
        .map(|i| (id(i), None))
        .collect();

    let first = store
        .observe_channels(&seen, &configured, 1_000)
        .await
        .unwrap();
    assert_eq!(first.channels_seen, 2_400);
    assert_eq!(first.rows_written, 3_100);
    assert_eq!(first.missing.len(), 700);
    assert_eq!(first.newly_missing, first.missing);
    assert_eq!(first.missing.first(), Some(&id(2_400)), "sorted");

    // The listing loses the 1,000 unconfigured channels below 2,000, and the 100 configured
    // ones from 1,000 to 1,200; 50 of the missing configured ones come back.
    let listed: Vec<_> = (0..2_450)
        .filter(|i| {
            let unconfigured_gone = *i < 2_000 && i % 2 == 1;
            let configured_gone = (1_000..1_200).contains(i);
            !unconfigured_gone && !configured_gone
        })
        .map(|i| channel(&id(i), "READY", false))
        .collect();
    let before = scalar_i64(&mut counter, "SELECT n FROM test_channel_writes").await;
    let second = store
        .observe_channels(&listed, &configured, 2_000)
        .await
        .unwrap();
    assert_eq!(second.channels_seen, listed.len());
    assert_eq!(second.newly_missing.len(), 100);
    assert_eq!(second.back.len(), 50);
    assert_eq!(second.missing.len(), 700 - 50 + 100);
    let gone_unconfigured = 1_000;
    assert_eq!(second.rows_written, gone_unconfigured + 100 + 50);
    assert_eq!(
        scalar_i64(&mut counter, "SELECT n FROM test_channel_writes").await - before,
        second.rows_written as i64
    );
    assert_eq!(
        scalar_i64(
            &mut counter,
            "SELECT count(*) FROM channels WHERE missing_since = 2000 AND NOT configured"
        )
        .await,
        gone_unconfigured as i64
    );
    store.close().await;
}

#[tokio::test]
async fn a_configured_channel_missing_from_the_api_is_reported_until_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let cfg = configured();
    let both = [
        channel(STUDIO_A, "READY", false),
        channel(STUDIO_B, "READY", false),
    ];

    let s = store.observe_channels(&both, &cfg, 1).await.unwrap();
    assert_eq!(s.newly_missing, vec![AUTO_C.to_string()]);
    assert_eq!(s.missing, vec![AUTO_C.to_string()]);

    let s = store.observe_channels(&both, &cfg, 2).await.unwrap();
    assert!(s.newly_missing.is_empty(), "{s:?}");
    assert_eq!(s.missing, vec![AUTO_C.to_string()]);
    assert_eq!(s.rows_written, 0);

    let s = store
        .observe_channels(&[channel(STUDIO_A, "READY", false)], &cfg, 3)
        .await
        .unwrap();
    assert_eq!(s.newly_missing, vec![STUDIO_B.to_string()]);

    let all = [
        channel(STUDIO_A, "READY", false),
        channel(STUDIO_B, "READY", false),
        channel(AUTO_C, "READY", false),
    ];
    let s = store.observe_channels(&all, &cfg, 4).await.unwrap();
    assert_eq!(s.back, vec![STUDIO_B.to_string(), AUTO_C.to_string()]);
    assert!(s.missing.is_empty());
    let rows = store.channel_rows().await.unwrap();
    assert!(rows.iter().all(|c| c.missing_since.is_none()), "{rows:?}");
    assert_eq!(
        store.resolve_channel("auto-c").await.unwrap().as_deref(),
        Some(AUTO_C)
    );
    assert_eq!(
        store.resolve_channel(STUDIO_B).await.unwrap().as_deref(),
        Some(STUDIO_B)
    );
    assert_eq!(store.resolve_channel("nowhere").await.unwrap(), None);
    store.close().await;
}

// ---------------------------------------------------------------- records

#[tokio::test]
async fn status_history_is_written_on_first_sighting_and_on_real_changes_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let rec = |status: &str| record(1, STUDIO_A, status, 100, Some(900), None);

    let c = store.upsert_records(&[rec("RECORDING")], 10).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].previous_status, None);
    assert!(
        store
            .upsert_records(&[rec("RECORDING")], 20)
            .await
            .unwrap()
            .is_empty()
    );
    let c = store
        .upsert_records(&[rec("PROCESSING")], 30)
        .await
        .unwrap();
    assert_eq!(c[0].previous_status.as_deref(), Some("RECORDING"));
    assert!(
        store
            .upsert_records(&[rec("PROCESSING")], 40)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .upsert_records(&[rec("TRANSFER_READY")], 50)
        .await
        .unwrap();

    let history = store.record_history(1).await.unwrap();
    let seen: Vec<(&str, i64)> = history
        .iter()
        .map(|h| (h.status.as_str(), h.observed_at))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("RECORDING", 10),
            ("PROCESSING", 30),
            ("TRANSFER_READY", 50)
        ]
    );
    let row = store.record(1).await.unwrap();
    assert_eq!(row.first_seen_at, 10);
    assert_eq!(row.status_changed_at, 50);
    assert_eq!(row.last_polled_at, Some(50));
    store.close().await;
}

#[tokio::test]
async fn a_later_response_lacking_a_field_never_erases_the_known_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let url = "https://kr.object.ncloudstorage.com/b/1.mp4";
    store
        .upsert_records(&[record(1, STUDIO_A, "TRANSFER", 100, Some(900), None)], 10)
        .await
        .unwrap();
    assert_eq!(store.record(1).await.unwrap().object_storage_url, None);

    let c = store
        .upsert_records(
            &[record(1, STUDIO_A, "TRANSFER_FINISH", 100, None, Some(url))],
            20,
        )
        .await
        .unwrap();
    assert!(c[0].became_uploaded);
    // A response without shouldDeleteTime and with "-" again.
    store
        .upsert_records(
            &[record(1, STUDIO_A, "TRANSFER_FINISH", 100, None, None)],
            30,
        )
        .await
        .unwrap();

    let row = store.record(1).await.unwrap();
    assert_eq!(row.should_delete_time, Some(900));
    assert_eq!(row.object_storage_url.as_deref(), Some(url));
    assert_eq!(row.file_name.as_deref(), Some("1.mp4"));
    assert_eq!(row.updated_at, 20);
    store.close().await;
}

#[tokio::test]
async fn the_documented_fkr_start_record_response_is_stored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/startRecord-response-fkr.json"),
    )
    .unwrap();
    let set = lsrecd::livestation::model::parse_records(&body).unwrap();
    store.upsert_records(&set.records, 5).await.unwrap();

    let hls = store.record(27196).await.unwrap();
    assert_eq!(hls.record_type, "HLS");
    assert_eq!(hls.channel_id, "ls-20200313162828-G60tN");
    assert_eq!(hls.should_delete_time, Some(1_621_843_688_000));
    assert_eq!(hls.video_bitrate, Some(299_008));
    assert_eq!(hls.video_frame_rate, Some(30.0));
    assert_eq!(hls.audio_codec.as_deref(), Some("AAC"));
    assert_eq!(hls.object_storage_url, None);
    assert_eq!(hls.duration, None);
    let mp4 = store.record(27195).await.unwrap();
    assert_eq!(mp4.record_seq, Some(123_175));
    assert_eq!(mp4.stream_seq, Some(138_717));
    assert_eq!(
        mp4.file_name.as_deref(),
        Some("138717-123175-202105171708.mp4")
    );
    assert!(matches!(
        store.record(1).await,
        Err(StoreError::NotFound { .. })
    ));
    store.close().await;
}

#[tokio::test]
async fn records_are_listed_by_channel_and_status_and_unfinished_channels_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    store
        .upsert_records(
            &[
                record(1, STUDIO_A, "TRANSFER_FINISH", 100, None, Some("u")),
                record(2, STUDIO_A, "RECORDING", 200, None, None),
                record(3, STUDIO_B, "DELETED", 300, None, None),
                record(4, AUTO_C, "TRANSFER_FAIL", 400, None, None),
            ],
            10,
        )
        .await
        .unwrap();
    let ids =
        |rows: Vec<lsrecd::store::RecordRow>| rows.iter().map(|r| r.record_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.records(&RecordFilter::default()).await.unwrap()),
        vec![4, 3, 2, 1]
    );
    let a = RecordFilter {
        channel_id: Some(STUDIO_A.into()),
        ..RecordFilter::default()
    };
    assert_eq!(ids(store.records(&a).await.unwrap()), vec![2, 1]);
    let rec = RecordFilter {
        status: Some("RECORDING".into()),
        ..a.clone()
    };
    assert_eq!(ids(store.records(&rec).await.unwrap()), vec![2]);
    let limited = RecordFilter {
        limit: Some(1),
        ..RecordFilter::default()
    };
    assert_eq!(ids(store.records(&limited).await.unwrap()), vec![4]);
    assert_eq!(
        store.channels_with_unfinished_records().await.unwrap(),
        vec![STUDIO_A.to_string(), AUTO_C.to_string()]
    );
    store.close().await;
}

#[tokio::test]
async fn expiring_records_are_warned_once_and_uploads_requested_once_per_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let now = 10 * DAY;
    store
        .upsert_records(
            &[
                record(1, STUDIO_A, "TRANSFER_READY", 0, Some(now + HOUR), None),
                record(2, STUDIO_A, "TRANSFER_READY", 0, Some(now + 3 * DAY), None),
                record(
                    3,
                    STUDIO_A,
                    "TRANSFER_FINISH",
                    0,
                    Some(now + HOUR),
                    Some("u"),
                ),
                record(4, STUDIO_A, "PROCESSING", 0, Some(now + HOUR), None),
                record(5, STUDIO_A, "DELETED", 0, Some(now - HOUR), None),
            ],
            now - DAY,
        )
        .await
        .unwrap();
    let ids =
        |rows: Vec<lsrecd::store::RecordRow>| rows.iter().map(|r| r.record_id).collect::<Vec<_>>();

    assert_eq!(
        ids(store.expiring_unwarned(now, DAY).await.unwrap()),
        vec![1, 4]
    );
    store.mark_expiry_warned(1, now).await.unwrap();
    assert_eq!(
        ids(store.expiring_unwarned(now, DAY).await.unwrap()),
        vec![4]
    );
    assert!(matches!(
        store.mark_expiry_warned(99, now).await,
        Err(StoreError::NotFound { .. })
    ));

    assert_eq!(
        ids(store.uploadable_expiring(now, DAY).await.unwrap()),
        vec![1]
    );
    store.mark_upload_requested(&[1], now).await.unwrap();
    assert!(
        store
            .uploadable_expiring(now, DAY)
            .await
            .unwrap()
            .is_empty()
    );
    // The upload failed: TRANSFER_FAIL after the request makes it eligible again.
    store
        .upsert_records(
            &[record(
                1,
                STUDIO_A,
                "TRANSFER_FAIL",
                0,
                Some(now + HOUR),
                None,
            )],
            now + MINUTE,
        )
        .await
        .unwrap();
    assert_eq!(
        ids(store.uploadable_expiring(now + MINUTE, DAY).await.unwrap()),
        vec![1]
    );
    store.close().await;
}

// ---------------------------------------------------------------- occurrences

#[tokio::test]
async fn an_occurrence_is_recorded_once_per_schedule_and_fire_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let (id, inserted) = store
        .insert_occurrence(&occurrence("news", 1_000))
        .await
        .unwrap();
    assert!(inserted);
    let (again, inserted) = store
        .insert_occurrence(&occurrence("news", 1_000))
        .await
        .unwrap();
    assert_eq!((again, inserted), (id, false));
    let (other, inserted) = store
        .insert_occurrence(&occurrence("news", 2_000))
        .await
        .unwrap();
    assert!(inserted);
    assert_ne!(other, id);
    store
        .insert_occurrence(&occurrence("sports", 500))
        .await
        .unwrap();

    assert_eq!(store.latest_fire_time("news").await.unwrap(), Some(2_000));
    assert_eq!(store.latest_fire_time("weather").await.unwrap(), None);
    let open: Vec<i64> = store
        .open_occurrences()
        .await
        .unwrap()
        .iter()
        .map(|o| o.fire_time)
        .collect();
    assert_eq!(open, vec![500, 1_000, 2_000]);
    store.close().await;
}

#[tokio::test]
async fn a_final_occurrence_never_changes_state_through_the_store_or_plain_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    let (id, _) = store
        .insert_occurrence(&occurrence("news", 1_000))
        .await
        .unwrap();
    store
        .set_occurrence_state(
            id,
            OccurrenceState::Armed,
            OccurrenceReason::FireTime,
            Some("waiting for live"),
            1_000,
        )
        .await
        .unwrap();
    store
        .set_occurrence_state(
            id,
            OccurrenceState::Missed,
            OccurrenceReason::NotLive,
            Some("never live"),
            2_000,
        )
        .await
        .unwrap();

    match store
        .set_occurrence_state(
            id,
            OccurrenceState::Recording,
            OccurrenceReason::Recording,
            None,
            3_000,
        )
        .await
    {
        Err(StoreError::OccurrenceFinal { state, .. }) => assert_eq!(state, "MISSED"),
        other => panic!("expected OccurrenceFinal, got {other:?}"),
    }
    // Setting the same final state again changes nothing and is not an error.
    store
        .set_occurrence_state(
            id,
            OccurrenceState::Missed,
            OccurrenceReason::NotLive,
            Some("other"),
            4_000,
        )
        .await
        .unwrap();
    let row = store.occurrence(id).await.unwrap();
    assert_eq!(row.state, OccurrenceState::Missed);
    assert_eq!(row.detail.as_deref(), Some("never live"));
    assert_eq!(row.updated_at, 2_000);
    assert!(store.open_occurrences().await.unwrap().is_empty());

    let mut conn = raw(&path, false).await;
    let direct = sqlx::query("UPDATE occurrences SET state = 'PENDING' WHERE id = ?1")
        .bind(id)
        .execute(&mut conn)
        .await;
    assert!(direct.is_err(), "the schema let a final state change");
    store.close().await;
}

#[tokio::test]
async fn a_step_the_occurrence_state_machine_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let (id, _) = store
        .insert_occurrence(&occurrence("news", 1_000))
        .await
        .unwrap();
    assert!(matches!(
        store
            .set_occurrence_state(
                id,
                OccurrenceState::Completed,
                OccurrenceReason::WindowEnded,
                None,
                2_000
            )
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(
        store
            .set_occurrence_state(
                999,
                OccurrenceState::Armed,
                OccurrenceReason::FireTime,
                None,
                2_000
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store
        .set_occurrence_state(
            id,
            OccurrenceState::Recording,
            OccurrenceReason::Recording,
            None,
            2_000,
        )
        .await
        .unwrap();
    store
        .set_occurrence_state(
            id,
            OccurrenceState::Completed,
            OccurrenceReason::WindowEnded,
            Some("window ended"),
            3_000,
        )
        .await
        .unwrap();
    assert_eq!(
        store.occurrence(id).await.unwrap().state,
        OccurrenceState::Completed
    );
    store.close().await;
}

// ---------------------------------------------------------------- actions and ownership

#[tokio::test]
async fn an_intent_then_its_outcome_records_and_ownership_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let (occ, _) = store
        .insert_occurrence(&occurrence("news", 1_000))
        .await
        .unwrap();
    let id = store
        .begin_action(&NewAction {
            occurrence_id: Some(occ),
            trigger: Trigger::Schedule("news".into()),
            ..new_action(STUDIO_A, Mutation::StartRecord, 1_000)
        })
        .await
        .unwrap();
    let pending = store.unfinished_actions().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].state, ActionState::Pending);
    assert_eq!(pending[0].occurrence_id, Some(occ));

    let changes = store
        .finish_action(
            id,
            &ActionOutcome {
                http_status: Some(200),
                open_owned: Some(Trigger::Schedule("news".into())),
                ..ActionOutcome::new(ActionState::Succeeded)
            },
            &[
                record(10, STUDIO_A, "RECORDING", 1_000, Some(9_000), None),
                record(11, STUDIO_A, "RECORDING", 1_000, None, None),
            ],
            1_500,
        )
        .await
        .unwrap();
    assert_eq!(changes.len(), 2);
    assert!(store.unfinished_actions().await.unwrap().is_empty());
    let row = store.action(id).await.unwrap();
    assert_eq!(row.state, ActionState::Succeeded);
    assert_eq!(row.finished_at, Some(1_500));
    assert_eq!(row.http_status, Some(200));
    assert_eq!(row.record_ids, vec![10, 11]);
    assert_eq!(store.record_history(10).await.unwrap().len(), 1);
    let owned = store.owned_recordings_open().await.unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].start_action_id, Some(id));
    assert_eq!(owned[0].trigger, Trigger::Schedule("news".into()));

    // A finished action cannot be finished again.
    assert!(matches!(
        store
            .finish_action(id, &ActionOutcome::new(ActionState::Failed), &[], 2_000)
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));

    // The stop closes ownership in the same transaction.
    let stop = store
        .begin_action(&new_action(STUDIO_A, Mutation::StopRecord, 5_000))
        .await
        .unwrap();
    store
        .finish_action(
            stop,
            &ActionOutcome {
                close_owned: Some("window ended".into()),
                ..ActionOutcome::new(ActionState::Succeeded)
            },
            &[record(10, STUDIO_A, "PROCESSING", 1_000, None, None)],
            5_100,
        )
        .await
        .unwrap();
    assert!(store.owned_recordings_open().await.unwrap().is_empty());
    assert_eq!(store.record(10).await.unwrap().status, "PROCESSING");
    store.close().await;
}

#[tokio::test]
async fn a_failure_while_storing_the_outcome_leaves_the_intent_pending_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    let id = store
        .begin_action(&new_action(STUDIO_A, Mutation::StartRecord, 1_000))
        .await
        .unwrap();
    // Make the second record's insert fail half-way through the transaction.
    {
        let mut conn = raw(&path, false).await;
        conn.execute(
            "CREATE TRIGGER test_reject BEFORE INSERT ON records WHEN NEW.record_id = 21
             BEGIN SELECT RAISE(ABORT, 'rejected by test'); END;",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let result = store
        .finish_action(
            id,
            &ActionOutcome {
                open_owned: Some(Trigger::Live),
                ..ActionOutcome::new(ActionState::Succeeded)
            },
            &[
                record(20, STUDIO_A, "RECORDING", 1_000, None, None),
                record(21, STUDIO_A, "RECORDING", 1_000, None, None),
            ],
            1_500,
        )
        .await;
    assert!(result.is_err());
    assert_eq!(store.action(id).await.unwrap().state, ActionState::Pending);
    assert!(matches!(
        store.record(20).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.owned_recordings_open().await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test]
async fn an_ambiguous_action_stays_unfinished_until_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let id = store
        .begin_action(&new_action(STUDIO_A, Mutation::StartRecord, 1_000))
        .await
        .unwrap();
    store
        .finish_action(
            id,
            &ActionOutcome {
                error_message: Some("timed out after 10s".into()),
                ..ActionOutcome::new(ActionState::Ambiguous)
            },
            &[],
            1_100,
        )
        .await
        .unwrap();
    assert_eq!(
        store.unfinished_actions().await.unwrap()[0].state,
        ActionState::Ambiguous
    );
    store
        .finish_action(
            id,
            &ActionOutcome {
                open_owned: Some(Trigger::Live),
                ..ActionOutcome::new(ActionState::Reconciled)
            },
            &[record(30, STUDIO_A, "RECORDING", 1_050, None, None)],
            2_000,
        )
        .await
        .unwrap();
    assert!(store.unfinished_actions().await.unwrap().is_empty());
    assert_eq!(store.owned_recordings_open().await.unwrap().len(), 1);
    assert!(matches!(
        store
            .finish_action(999, &ActionOutcome::new(ActionState::Failed), &[], 1)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    store.close().await;
}

#[tokio::test]
async fn a_recording_is_owned_since_a_time_when_one_was_open_then_or_has_been_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    assert!(!store.owned_recording_since(STUDIO_A, 0).await.unwrap());
    store
        .open_owned_recording(STUDIO_A, &Trigger::Live, None, 100)
        .await
        .unwrap();
    store
        .close_owned_recording(STUDIO_A, "ended", 200)
        .await
        .unwrap();
    // Read at 150 (or before it opened, and stored after): owned meanwhile. Read after it
    // ended: not lsrecd's.
    assert!(store.owned_recording_since(STUDIO_A, 150).await.unwrap());
    assert!(store.owned_recording_since(STUDIO_A, 50).await.unwrap());
    assert!(store.owned_recording_since(STUDIO_A, 200).await.unwrap());
    assert!(!store.owned_recording_since(STUDIO_A, 201).await.unwrap());
    assert!(!store.owned_recording_since(STUDIO_B, 0).await.unwrap());
    store
        .open_owned_recording(STUDIO_A, &Trigger::Manual, None, 300)
        .await
        .unwrap();
    assert!(store.owned_recording_since(STUDIO_A, 1_000).await.unwrap());
    store.close().await;
}

#[tokio::test]
async fn each_channel_has_at_most_one_open_owned_recording_and_one_open_manual_claim() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    assert!(
        store
            .open_owned_recording(STUDIO_A, &Trigger::Live, None, 1)
            .await
            .unwrap()
    );
    assert!(
        !store
            .open_owned_recording(STUDIO_A, &Trigger::Manual, None, 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .open_owned_recording(STUDIO_B, &Trigger::Manual, None, 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .close_owned_recording(STUDIO_A, "stopped", 3)
            .await
            .unwrap()
    );
    assert!(
        !store
            .close_owned_recording(STUDIO_A, "stopped", 4)
            .await
            .unwrap()
    );
    assert!(
        store
            .open_owned_recording(STUDIO_A, &Trigger::Live, None, 5)
            .await
            .unwrap()
    );
    let open = store.owned_recordings_open().await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].started_at, 5);

    assert!(store.add_manual_claim(STUDIO_A, 1).await.unwrap());
    assert!(!store.add_manual_claim(STUDIO_A, 2).await.unwrap());
    assert_eq!(store.active_manual_claims().await.unwrap().len(), 1);
    assert!(
        store
            .end_manual_claim(STUDIO_A, "lsrecd stop", 3)
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_manual_claim(STUDIO_A, "lsrecd stop", 4)
            .await
            .unwrap()
    );
    assert!(store.active_manual_claims().await.unwrap().is_empty());
    assert!(store.add_manual_claim(STUDIO_A, 5).await.unwrap());
    store.close().await;
}

// ---------------------------------------------------------------- events, state, pruning

#[tokio::test]
async fn pruning_removes_old_finished_actions_and_events_but_never_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let old_done = store
        .begin_action(&new_action(STUDIO_A, Mutation::StopRecord, 100))
        .await
        .unwrap();
    store
        .finish_action(
            old_done,
            &ActionOutcome::new(ActionState::Succeeded),
            &[record(1, STUDIO_A, "PROCESSING", 50, None, None)],
            110,
        )
        .await
        .unwrap();
    let old_pending = store
        .begin_action(&new_action(STUDIO_B, Mutation::StartRecord, 100))
        .await
        .unwrap();
    let old_owner = store
        .begin_action(&new_action(AUTO_C, Mutation::StartRecord, 100))
        .await
        .unwrap();
    store
        .finish_action(
            old_owner,
            &ActionOutcome {
                open_owned: Some(Trigger::Live),
                ..ActionOutcome::new(ActionState::Succeeded)
            },
            &[],
            110,
        )
        .await
        .unwrap();
    let recent = store
        .begin_action(&new_action(STUDIO_A, Mutation::StartRecord, 5_000))
        .await
        .unwrap();
    for at in [100, 5_000] {
        store
            .add_event(&NewEvent {
                at,
                kind: EventKind::Tracked,
                channel_id: None,
                record_id: None,
                message: format!("at {at}"),
            })
            .await
            .unwrap();
    }

    let stats = store.prune(1_000).await.unwrap();
    assert_eq!((stats.actions, stats.events), (1, 1));
    assert!(matches!(
        store.action(old_done).await,
        Err(StoreError::NotFound { .. })
    ));
    store.action(old_pending).await.unwrap();
    store.action(old_owner).await.unwrap();
    store.action(recent).await.unwrap();
    store.record(1).await.unwrap();
    assert_eq!(store.record_history(1).await.unwrap().len(), 1);
    let events = store.events_since(0).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "tracked");
    store.close().await;
}

#[tokio::test]
async fn state_values_are_replaced_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    assert_eq!(store.get_state("k").await.unwrap(), None);
    store.set_state("k", "1", 1).await.unwrap();
    store.set_state("k", "2", 2).await.unwrap();
    assert_eq!(store.get_state("k").await.unwrap().as_deref(), Some("2"));
    assert_eq!(store.get_state_i64("k").await.unwrap(), Some(2));
    store.close().await;
}

// ---------------------------------------------------------------- views and the status report

#[tokio::test]
async fn every_operator_view_shows_the_sample_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let now = now_ms();
    sample_database(&path, now).await.close().await;
    let mut conn = raw(&path, true).await;

    let active = sqlx::query("SELECT * FROM active_recordings")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(active.len(), 1);
    let a = &active[0];
    assert_eq!(a.get::<i64, _>("record_id"), REC_LIVE);
    assert_eq!(
        a.get::<Option<String>, _>("label").as_deref(),
        Some("studio-a")
    );
    assert_eq!(a.get::<i64, _>("owned"), 1);
    assert_eq!(
        a.get::<Option<String>, _>("owned_trigger").as_deref(),
        Some("schedule:morning-news")
    );
    let minutes = a.get::<i64, _>("running_minutes");
    assert!((19..=21).contains(&minutes), "{minutes}");
    assert!(a.get::<String, _>("record_begin_utc").ends_with('Z'));

    let expiring = sqlx::query("SELECT * FROM expiring_records")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(expiring.len(), 1);
    assert_eq!(expiring[0].get::<i64, _>("record_id"), REC_EXPIRING);
    let hours = expiring[0].get::<f64, _>("hours_left");
    assert!((2.8..=3.0).contains(&hours), "{hours}");

    let failures = sqlx::query("SELECT * FROM recent_failures")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let sources: Vec<(String, String)> = failures
        .iter()
        .map(|f| (f.get("source"), f.get("what")))
        .collect();
    assert_eq!(failures.len(), 3, "{sources:?}");
    assert_eq!(sources[0], ("event".into(), "channel_missing".into()));
    assert!(sources[1].1.starts_with("stopRecord FAILED"), "{sources:?}");
    assert!(
        sources[2].1.starts_with("evening-news MISSED"),
        "{sources:?}"
    );
    let detail: String = failures[1].get("detail");
    assert_eq!(detail, "HTTP 400 error 250005 Recording not available.");
}

#[tokio::test]
async fn the_status_report_gathers_every_section_for_the_given_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let now = now_ms();
    let store = sample_database(&path, now).await;
    let r = store.status_report(now).await.unwrap();
    assert_eq!(r.generated_at, now);
    assert_eq!(r.schema_version, binary_schema_version());
    assert_eq!(r.last_poll_at, Some(now - 30 * MINUTE));
    assert_eq!(r.channels.len(), 3);
    assert_eq!(r.active_recordings.len(), 1);
    assert_eq!(r.active_recordings[0].running_minutes, Some(20));
    assert!(r.active_recordings[0].owned);
    assert_eq!(r.occurrences.len(), 1);
    assert_eq!(r.occurrences[0].state, OccurrenceState::Recording);
    assert_eq!(r.manual_claims.len(), 1);
    assert_eq!(r.recent_failures.len(), 3);
    assert_eq!(r.expiring_records.len(), 1);
    assert_eq!(r.expiring_records[0].hours_left, 3.0);

    // Eight days later the failures have aged out, and the records are past their deletion.
    let later = store.status_report(now + 8 * DAY).await.unwrap();
    assert!(later.recent_failures.is_empty());
    assert_eq!(later.expiring_records[0].record_id, REC_EXPIRING);
    assert!(later.expiring_records.iter().all(|e| e.hours_left < 0.0));
    store.close().await;
}

// ---------------------------------------------------------------- the operator documentation

/// Every ```sql block of docs/database.md.
fn documented_queries() -> Vec<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/database.md"))
            .expect("docs/database.md exists");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sql") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn sqlite3_available() -> bool {
    std::process::Command::new("sqlite3")
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn every_query_in_the_database_reference_runs_as_written() {
    let queries = documented_queries();
    assert!(
        queries.len() >= 5,
        "only {} sql blocks found",
        queries.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = sample_database(&path, now_ms()).await;

    let mut produced_rows = 0;
    for q in &queries {
        if sqlite3_available() {
            let out = std::process::Command::new("sqlite3")
                .arg("-readonly")
                .arg("-bail")
                .arg(&path)
                .arg(q.trim())
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "query failed:\n{q}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if !out.stdout.is_empty() {
                produced_rows += 1;
            }
        } else {
            let mut conn = raw(&path, true).await;
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(q.clone()))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("query failed:\n{q}\n{e}"));
            if !rows.is_empty() {
                produced_rows += 1;
            }
        }
    }
    // The sample data answers most questions; a query that never returns anything is suspect.
    assert!(
        produced_rows * 2 >= queries.len(),
        "only {produced_rows} of {} documented queries returned rows",
        queries.len()
    );
    store.close().await;
}

#[tokio::test]
async fn writes_fail_as_on_a_full_disk_at_max_database_size_and_resume_when_it_is_raised() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&db_path(&dir)).await.unwrap();
    let now = now_ms();
    store.limit_size(Some(64 * 1024)).await.unwrap();

    // Events until one does not fit in the pages the file has.
    let mut written = 0;
    let full = loop {
        let event = NewEvent {
            at: now,
            kind: EventKind::Ended,
            channel_id: Some(STUDIO_A.into()),
            record_id: None,
            message: "x".repeat(1_000),
        };
        match store.add_event(&event).await {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 10_000, "a 64 KiB cap never filled");
    };
    assert!(full.to_string().contains("full"), "{full}");

    // The failed commit does not wedge the connection: with the cap lifted, writes go on.
    store.limit_size(None).await.unwrap();
    store
        .add_event(&NewEvent {
            at: now,
            kind: EventKind::Ended,
            channel_id: Some(STUDIO_A.into()),
            record_id: None,
            message: "after".into(),
        })
        .await
        .expect("a write once the cap is lifted");
    let mut conn = raw(&db_path(&dir), true).await;
    assert_eq!(
        scalar_i64(&mut conn, "SELECT count(*) FROM events").await,
        written + 1
    );
    assert_eq!(
        scalar_i64(
            &mut conn,
            "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"
        )
        .await,
        1
    );
}

/// docs/database.md, read as an operator reads it.
fn database_doc() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/database.md"))
        .expect("docs/database.md exists")
}

#[test]
fn every_event_kind_and_occurrence_reason_is_documented_and_failures_are_marked() {
    let doc = database_doc();
    for kind in EventKind::ALL {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` ", kind.as_str())))
            .unwrap_or_else(|| panic!("event kind {} is not in docs/database.md", kind.as_str()));
        assert_eq!(
            row.contains("` * |"),
            kind.is_failure(),
            "docs/database.md marks {} wrongly as a failure (or not)",
            kind.as_str()
        );
    }
    for reason in OccurrenceReason::ALL {
        assert!(
            doc.contains(&format!("`{}`", reason.as_str())),
            "occurrence reason {} is not in docs/database.md",
            reason.as_str()
        );
    }
}

#[tokio::test]
async fn changes_since_the_last_observation_write_only_their_rows_and_report_what_went_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).await.unwrap();
    let mut counter = count_channel_writes(&path).await;
    let cfg = configured();
    let all = [
        channel(STUDIO_A, "READY", false),
        channel(STUDIO_B, "READY", false),
        channel(AUTO_C, "READY", false),
        channel("ls-unconfigured", "READY", false),
    ];
    let first = store.observe_channels(&all, &cfg, 1_000).await.unwrap();
    assert_eq!(first.rows_written, 4);

    // Studio A goes live, Studio B leaves the listing, the unconfigured channel too.
    let live = channel(STUDIO_A, "PUBLISHING", false);
    let no_label = None;
    let changes = ChannelChanges {
        changed: vec![&live],
        absent: vec![(STUDIO_B, cfg.get(STUDIO_B).unwrap_or(&no_label))],
        gone: vec!["ls-unconfigured"],
    };
    let s = store
        .observe_channel_changes(changes, &cfg, 2, 2_000)
        .await
        .unwrap();
    assert_eq!(s.rows_written, 3, "{s:?}");
    assert_eq!(s.channels_seen, 2);
    assert_eq!(s.newly_missing, vec![STUDIO_B.to_string()]);
    assert_eq!(
        scalar_i64(&mut counter, "SELECT n FROM test_channel_writes").await,
        7
    );
    let rows = store.channel_rows().await.unwrap();
    let row = |id: &str| rows.iter().find(|r| r.channel_id == id).unwrap().clone();
    assert_eq!(row(STUDIO_A).channel_status.as_deref(), Some("PUBLISHING"));
    assert_eq!(row(STUDIO_A).observed_at, Some(2_000));
    assert_eq!(row(STUDIO_A).label, cfg[STUDIO_A]);
    assert_eq!(row(STUDIO_B).missing_since, Some(2_000));
    assert!(row(STUDIO_B).configured);
    assert_eq!(row("ls-unconfigured").missing_since, Some(2_000));
    assert!(!row("ls-unconfigured").configured);
    assert_eq!(
        row(AUTO_C).observed_at,
        Some(1_000),
        "not named, not touched"
    );

    // Studio B is back; nothing else is read or written.
    let back = channel(STUDIO_B, "READY", false);
    let changes = ChannelChanges {
        changed: vec![&back],
        ..ChannelChanges::default()
    };
    let s = store
        .observe_channel_changes(changes, &cfg, 3, 3_000)
        .await
        .unwrap();
    assert_eq!(s.back, vec![STUDIO_B.to_string()]);
    assert_eq!(s.rows_written, 1);
    assert_eq!(
        store
            .channel_rows()
            .await
            .unwrap()
            .iter()
            .find(|r| r.channel_id == STUDIO_B)
            .unwrap()
            .missing_since,
        None
    );
    store.close().await;
}
