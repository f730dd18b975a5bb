//! A database with something in every table and view, shared by `tests/store.rs` and
//! `tests/report.rs`. Times are relative to the real clock, because the operator views compute
//! "now" from SQLite's clock.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use lsrecd::livestation::{Channel, Record};
use lsrecd::store::{
    ActionOutcome, ActionState, EventKind, Mutation, NewAction, NewEvent, NewOccurrence, NewOutage,
    OccurrenceReason, OccurrenceState, Store, Trigger, keys,
};
use serde_json::json;

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

pub const STUDIO_A: &str = "ls-20250814000000-AAAAA";
pub const STUDIO_B: &str = "ls-20250814000000-BBBBB";
pub const AUTO_C: &str = "ls-20250814000000-CCCCC";

/// The record recording now on studio-a (started by lsrecd).
pub const REC_LIVE: i64 = 30_001;
/// A record of yesterday on studio-b, not uploaded, expiring within the warning.
pub const REC_EXPIRING: i64 = 30_002;
/// A record of yesterday on studio-b, uploaded.
pub const REC_UPLOADED: i64 = 30_003;

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub fn channel(id: &str, status: &str, recording: bool) -> Channel {
    serde_json::from_value(json!({
        "channelId": id,
        "channelName": format!("name of {id}"),
        "channelStatus": status,
        "isRecording": recording,
        "immediateOnAir": false,
        "record": {"type": "MANUAL_UPLOAD", "format": "MP4"},
        "createdTime": 1_755_151_200_000_i64,
    }))
    .expect("a channel literal parses")
}

/// A record as the API returns it; `should_delete` and `url` may be absent.
pub fn record(
    id: i64,
    channel_id: &str,
    status: &str,
    begin: i64,
    should_delete: Option<i64>,
    url: Option<&str>,
) -> Record {
    let mut v = json!({
        "recordType": "MP4",
        "channelId": channel_id,
        "status": status,
        "recordSeq": id - 30_000,
        "streamSeq": 7,
        "recordBeginTime": begin,
        "createdTime": begin,
        "fileName": format!("{id}.mp4"),
        "uploadPath": format!("live-station/record/{channel_id}/{id}.mp4"),
        "objectStorageUrl": url.unwrap_or("-"),
    });
    if let Some(t) = should_delete {
        v["shouldDeleteTime"] = json!(t);
    }
    let mut r: Record = serde_json::from_value(v).expect("a record literal parses");
    r.record_id = id;
    r
}

/// The configured channels, with their labels.
pub fn configured() -> HashMap<String, Option<String>> {
    HashMap::from([
        (STUDIO_A.to_string(), Some("studio-a".to_string())),
        (STUDIO_B.to_string(), Some("studio-b".to_string())),
        (AUTO_C.to_string(), Some("auto-c".to_string())),
    ])
}

/// Builds the sample database at `path` as of `now` and returns the open store.
pub async fn sample_database(path: &Path, now: i64) -> Store {
    let store = Store::open(path).await.expect("open a new database");
    store
        .set_state(keys::RETENTION_WARN_BEFORE_MS, &DAY.to_string(), now)
        .await
        .expect("set the retention warning");

    // Channels: studio-a live and recording, studio-b idle, auto-c configured but missing.
    store
        .observe_channels(
            &[
                channel(STUDIO_A, "PUBLISHING", true),
                channel(STUDIO_B, "READY", false),
            ],
            &configured(),
            now - 30 * MINUTE,
        )
        .await
        .expect("observe channels");

    // Yesterday on studio-b: one record expiring soon, one uploaded.
    let yesterday = now - DAY;
    store
        .upsert_records(
            &[
                record(REC_EXPIRING, STUDIO_B, "RECORDING", yesterday, None, None),
                record(REC_UPLOADED, STUDIO_B, "RECORDING", yesterday, None, None),
            ],
            yesterday,
        )
        .await
        .expect("first sighting");
    store
        .upsert_records(
            &[
                record(
                    REC_EXPIRING,
                    STUDIO_B,
                    "TRANSFER_READY",
                    yesterday,
                    Some(now + 3 * HOUR),
                    None,
                ),
                record(
                    REC_UPLOADED,
                    STUDIO_B,
                    "TRANSFER_FINISH",
                    yesterday,
                    Some(now + 3 * HOUR),
                    Some("https://kr.object.ncloudstorage.com/b/30003.mp4"),
                ),
            ],
            yesterday + HOUR,
        )
        .await
        .expect("later sighting");

    // A scheduled show on studio-a, started by lsrecd 20 minutes ago.
    let fire = now - 20 * MINUTE;
    let (occ, _) = store
        .insert_occurrence(&NewOccurrence {
            schedule: "morning-news".into(),
            channel_id: STUDIO_A.into(),
            fire_time: fire,
            window_end: Some(fire + HOUR),
            state: OccurrenceState::Pending,
            detail: None,
            now: fire,
        })
        .await
        .expect("insert occurrence");
    let start = store
        .begin_action(&NewAction {
            channel_id: STUDIO_A.into(),
            operation: Mutation::StartRecord,
            trigger: Trigger::Schedule("morning-news".into()),
            attempt: 1,
            occurrence_id: Some(occ),
            record_ids: vec![],
            now: fire,
        })
        .await
        .expect("begin action");
    store
        .finish_action(
            start,
            &ActionOutcome {
                open_owned: Some(Trigger::Schedule("morning-news".into())),
                http_status: Some(200),
                ..ActionOutcome::new(ActionState::Succeeded)
            },
            &[record(
                REC_LIVE,
                STUDIO_A,
                "RECORDING",
                fire,
                Some(fire + 7 * DAY),
                None,
            )],
            fire + 1_000,
        )
        .await
        .expect("finish action");
    store
        .set_occurrence_state(
            occ,
            OccurrenceState::Recording,
            OccurrenceReason::Recording,
            None,
            fire + 1_000,
        )
        .await
        .expect("occurrence recording");

    // Yesterday's evening show was missed; a stop attempt failed an hour ago.
    let (missed, _) = store
        .insert_occurrence(&NewOccurrence {
            schedule: "evening-news".into(),
            channel_id: STUDIO_B.into(),
            fire_time: yesterday,
            window_end: Some(yesterday + HOUR),
            state: OccurrenceState::Pending,
            detail: None,
            now: yesterday,
        })
        .await
        .expect("insert occurrence");
    store
        .set_occurrence_state(
            missed,
            OccurrenceState::Missed,
            OccurrenceReason::NotLive,
            Some("channel never went live inside the window"),
            yesterday + HOUR,
        )
        .await
        .expect("occurrence missed");
    let stop = store
        .begin_action(&NewAction {
            channel_id: STUDIO_B.into(),
            operation: Mutation::StopRecord,
            trigger: Trigger::Manual,
            attempt: 3,
            occurrence_id: None,
            record_ids: vec![],
            now: now - HOUR,
        })
        .await
        .expect("begin action");
    store
        .finish_action(
            stop,
            &ActionOutcome {
                http_status: Some(400),
                error_code: Some("250005".into()),
                error_message: Some("Recording not available.".into()),
                ..ActionOutcome::new(ActionState::Failed)
            },
            &[],
            now - HOUR,
        )
        .await
        .expect("finish action");
    store
        .add_event(&NewEvent {
            at: now - 30 * MINUTE,
            kind: EventKind::ChannelMissing,
            channel_id: Some(AUTO_C.into()),
            record_id: None,
            message: "auto-c is configured but not in the channel list".into(),
        })
        .await
        .expect("add event");
    store
        .add_event(&NewEvent {
            at: now - 20 * MINUTE,
            kind: EventKind::Started,
            channel_id: Some(STUDIO_A.into()),
            record_id: Some(REC_LIVE),
            message: "recording started for schedule morning-news".into(),
        })
        .await
        .expect("add event");
    store
        .add_manual_claim(STUDIO_B, now - 5 * MINUTE)
        .await
        .expect("manual claim");
    // The manual claim has not been served: three starts failed since it began.
    store
        .open_outage(&NewOutage {
            channel_id: STUDIO_B.into(),
            operation: Mutation::StartRecord,
            trigger: Trigger::Manual,
            since: now - 5 * MINUTE,
            attempts: 3,
            first_error: "HTTP 503 Endpoint Error".into(),
            now: now - 4 * MINUTE,
        })
        .await
        .expect("open outage");
    store
}
