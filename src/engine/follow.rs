//! Following records to their final state, and the retention guard.
//!
//! Channels whose recording state just changed are read at once; every channel with a record
//! not yet final (`TRANSFER_FINISH`, `PROCESSING_FAIL`, `DELETED`) is re-read every
//! `record_poll_interval`. Records not uploaded whose `shouldDeleteTime` is within
//! `retention.warn_before` raise one `expiring` event each, and are uploaded when
//! `retention.upload_bucket` is set.

use std::collections::{BTreeMap, BTreeSet};

use crate::livestation::RecordStatus;
use crate::store::{ActionOutcome, ActionState, NewAction, Operation};

use super::decide::human_ms;
use super::{Engine, EngineError};

/// Reads the records of every channel that needs it now (or all unfinished ones when the record
/// poll interval has passed, or `all` is set) and stores them.
pub(crate) async fn follow_records(
    engine: &mut Engine,
    now: i64,
    all: bool,
) -> Result<(), EngineError> {
    let interval = engine.config.daemon.record_poll_interval.as_millis() as i64;
    let due = all || engine.last_record_poll.is_none_or(|t| now - t >= interval);
    let mut channels: BTreeSet<String> = engine
        .memory
        .iter()
        .filter(|(_, m)| m.follow_now)
        .map(|(id, _)| id.clone())
        .collect();
    if due {
        channels.extend(engine.store.channels_with_unfinished_records().await?);
        engine.last_record_poll = Some(now);
    }
    // One configured channel in turn per tick: a recording that began and ended between two
    // polls (a short stream on an immediateOnAir channel) changes nothing the channel list
    // shows, and would otherwise never be stored. Every channel is swept within
    // (configured channels × poll_interval), well inside Live Station's retention.
    if !all && engine.focus.is_none() && !engine.config.channels.is_empty() {
        let n = engine.config.channels.len();
        let id = &engine.config.channels[engine.sweep_next % n].id;
        engine.sweep_next = (engine.sweep_next + 1) % n;
        if engine.observed.contains_key(id) {
            channels.insert(id.clone());
        }
    }
    for channel_id in channels {
        match engine.client.list_records(&channel_id).await {
            Ok(reply) => {
                for s in &reply.value.skipped {
                    tracing::warn!(channel_id = %channel_id, entry = %s, "record entry could not be read; skipped");
                }
                let changes = engine
                    .store
                    .upsert_records(&reply.value.records, now)
                    .await?;
                for c in changes {
                    report_change(
                        engine,
                        &channel_id,
                        c.record_id,
                        c.previous_status.as_deref(),
                        &c.status,
                        now,
                    )
                    .await?;
                }
                if let Some(m) = engine.memory.get_mut(&channel_id) {
                    m.follow_now = false;
                }
            }
            Err(e) => {
                tracing::warn!(channel_id = %channel_id, error = %e, "could not read records; will try again");
                engine.note_api_error(now, Some(&channel_id), &e).await?;
            }
        }
    }
    Ok(())
}

async fn report_change(
    engine: &Engine,
    channel_id: &str,
    record_id: i64,
    old: Option<&str>,
    new: &str,
    now: i64,
) -> Result<(), EngineError> {
    let status = RecordStatus::parse(new);
    if old.is_none()
        && status == RecordStatus::Recording
        && !engine
            .store
            .owned_recordings_open()
            .await?
            .iter()
            .any(|o| o.channel_id == channel_id)
    {
        // A recording lsrecd did not start (immediateOnAir, the console): followed, never
        // stopped by lsrecd.
        engine
            .event(
                now,
                "tracked",
                Some(channel_id),
                Some(record_id),
                &format!("record {record_id} is recording, started by Live Station or elsewhere; lsrecd follows it and will not stop it"),
            )
            .await?;
    }
    tracing::info!(
        channel_id,
        record_id,
        from = old.unwrap_or("-"),
        to = new,
        "record status"
    );
    match status {
        RecordStatus::TransferFinish => {
            engine
                .event(
                    now,
                    "uploaded",
                    Some(channel_id),
                    Some(record_id),
                    &format!("record {record_id} is in object storage (TRANSFER_FINISH)"),
                )
                .await
        }
        RecordStatus::ProcessingFail => {
            engine
                .event(
                    now,
                    "failed",
                    Some(channel_id),
                    Some(record_id),
                    &format!("record {record_id}: Live Station could not process the recording (PROCESSING_FAIL)"),
                )
                .await
        }
        RecordStatus::TransferFail => {
            engine
                .event(
                    now,
                    "upload_failed",
                    Some(channel_id),
                    Some(record_id),
                    &format!("record {record_id}: the transfer to object storage failed (TRANSFER_FAIL); it can be uploaded again before it is deleted"),
                )
                .await
        }
        RecordStatus::Deleted if old.is_some() => {
            // Reached only without TRANSFER_FINISH: the temporary file is gone, never uploaded.
            engine
                .event(
                    now,
                    "failed",
                    Some(channel_id),
                    Some(record_id),
                    &format!("record {record_id} was deleted by Live Station's retention before it was uploaded"),
                )
                .await
        }
        _ => Ok(()),
    }
}

/// Warns once per record about an upcoming deletion of a file not uploaded, and requests the
/// upload when a bucket is configured. Runs at the record poll cadence.
pub(crate) async fn retention_guard(engine: &mut Engine, now: i64) -> Result<(), EngineError> {
    if engine.last_record_poll != Some(now) {
        return Ok(());
    }
    let warn_before = engine.config.retention.warn_before.as_millis() as i64;
    for r in engine.store.expiring_unwarned(now, warn_before).await? {
        let left = r
            .should_delete_time
            .map(|t| human_ms(t - now))
            .unwrap_or_default();
        engine
            .event(
                now,
                "expiring",
                Some(&r.channel_id),
                Some(r.record_id),
                &format!(
                    "record {} ({}, {}) is not uploaded and Live Station deletes it in {left}",
                    r.record_id, r.record_type, r.status
                ),
            )
            .await?;
        if let Some(m) = &engine.metrics {
            m.retention_warning();
        }
        engine.store.mark_expiry_warned(r.record_id, now).await?;
    }
    let Some(bucket) = engine.config.retention.upload_bucket.clone() else {
        return Ok(());
    };
    let mut by_channel: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in engine.store.uploadable_expiring(now, warn_before).await? {
        by_channel
            .entry(r.channel_id.clone())
            .or_default()
            .push(r.record_id);
    }
    for (channel_id, ids) in by_channel {
        let action_id = engine
            .store
            .begin_action(&NewAction {
                channel_id: channel_id.clone(),
                operation: Operation::Upload,
                trigger: "retention".to_string(),
                attempt: 1,
                occurrence_id: None,
                record_ids: ids.clone(),
                now,
            })
            .await?;
        match engine.client.upload(&bucket, &ids, None).await {
            Ok(_) => {
                engine
                    .store
                    .finish_action(
                        action_id,
                        &ActionOutcome {
                            http_status: Some(200),
                            ..ActionOutcome::new(ActionState::Succeeded)
                        },
                        &[],
                        now,
                    )
                    .await?;
                engine.store.mark_upload_requested(&ids, now).await?;
                engine
                    .memory
                    .entry(channel_id.clone())
                    .or_default()
                    .follow_now = true;
                engine
                    .event(now, "upload_requested", Some(&channel_id), ids.first().copied(), &format!(
                        "upload of records {ids:?} to bucket {bucket} requested before Live Station deletes them"
                    ))
                    .await?;
            }
            Err(e) => {
                engine
                    .store
                    .finish_action(
                        action_id,
                        &ActionOutcome {
                            http_status: e.http_status(),
                            error_code: e.error_code().map(str::to_string),
                            error_message: Some(e.to_string()),
                            ..ActionOutcome::new(ActionState::Failed)
                        },
                        &[],
                        now,
                    )
                    .await?;
                engine
                    .event(
                        now,
                        "upload_failed",
                        Some(&channel_id),
                        ids.first().copied(),
                        &format!("upload of records {ids:?} to bucket {bucket} failed: {e}; trying again at the next record poll"),
                    )
                    .await?;
            }
        }
    }
    Ok(())
}
