//! Following records to their final state, and the retention guard.
//!
//! Channels whose recording state just changed are read at once; every channel with a record
//! not yet final (`TRANSFER_FINISH`, `PROCESSING_FAIL`, `DELETED`) is re-read every
//! `record_poll_interval`. Records not uploaded whose `shouldDeleteTime` is within
//! `retention.warn_before` raise one `expiring` event each, and are uploaded when
//! `retention.upload_bucket` is set. All of this is for configured channels only: the records of
//! other channels in the account are neither stored nor guarded unless `retention.all_channels`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::config::Config;
use crate::livestation::{ApiError, LiveStation, Operation, RecordSet, RecordStatus, Reply};
use crate::store::{ActionOutcome, ActionState, EventKind, Mutation, NewAction, Trigger};

use futures_util::{StreamExt as _, stream};

use super::decide::human_ms;
use super::fence::Call;
use super::view::ChannelView;
use super::{CONCURRENT_CHANNELS, Ctx, EngineError, TickClock};

/// What the follow part remembers between ticks.
#[derive(Debug, Default)]
pub(crate) struct Follower {
    /// Channels whose records must be read at the next opportunity.
    pending: BTreeSet<String>,
    /// When every channel with unfinished records was last read.
    last_record_poll: Option<i64>,
    /// The configured channel the next tick sweeps.
    sweep_next: usize,
}

impl Follower {
    /// The channel's records are read at the next opportunity.
    pub(crate) fn mark(&mut self, channel_id: &str) {
        self.pending.insert(channel_id.to_string());
    }

    /// Whether this tick read all unfinished records (the retention guard runs then).
    pub(crate) fn polled_at(&self, now: i64) -> bool {
        self.last_record_poll == Some(now)
    }

    /// Reads the records of every channel that needs it now (or all unfinished ones when the
    /// record poll interval has passed, or `all` is set) and stores them. With `sweep`, one
    /// configured channel in turn is read too: a recording that began and ended between two
    /// polls (a short stream on an immediateOnAir channel) changes nothing the channel list
    /// shows, and would otherwise never be stored. Every channel is swept within (configured
    /// channels × poll_interval), well inside Live Station's retention. `starting` are the
    /// channels with a start of lsrecd's whose outcome is not known yet: a new recording there
    /// is not reported as someone else's (settling the start tells whose it is).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn follow<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        config: &Config,
        view: &ChannelView,
        starting: &HashSet<String>,
        now: i64,
        all: bool,
        sweep: bool,
    ) -> Result<(), EngineError> {
        let channels = self.plan(ctx, config, view, now, all, sweep).await?;
        let reads = read_records(ctx.api, ctx.clock, channels).await;
        self.store_reads(ctx, starting, reads, now).await
    }

    /// The channels whose records [`Follower::follow`] reads now.
    pub(crate) async fn plan<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        config: &Config,
        view: &ChannelView,
        now: i64,
        all: bool,
        sweep: bool,
    ) -> Result<Vec<String>, EngineError> {
        let interval = config.daemon.record_poll_interval.as_millis() as i64;
        let due = all || self.last_record_poll.is_none_or(|t| now - t >= interval);
        let mut channels = self.pending.clone();
        if due {
            channels.extend(ctx.store.channels_with_unfinished_records().await?);
            self.last_record_poll = Some(now);
        }
        if sweep && !config.channels.is_empty() {
            let n = config.channels.len();
            let id = &config.channels[self.sweep_next % n].id;
            self.sweep_next = (self.sweep_next + 1) % n;
            if view.get(id).is_some() {
                channels.insert(id.clone());
            }
        }
        // Other people's channels are not lsrecd's business unless `retention.all_channels`.
        if !config.retention.all_channels {
            channels.retain(|id| config.channel_with_id(id).is_some());
            self.pending
                .retain(|id| config.channel_with_id(id).is_some());
        }
        Ok(channels.into_iter().collect())
    }

    /// Stores what [`read_records`] read, in channel order.
    pub(crate) async fn store_reads<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        starting: &HashSet<String>,
        mut reads: Vec<RecordRead>,
        now: i64,
    ) -> Result<(), EngineError> {
        reads.sort_by(|a, b| a.0.cmp(&b.0));
        for (channel_id, as_of, read) in reads {
            match read {
                Ok(reply) => {
                    ctx.notes.api_answered();
                    for s in &reply.value.skipped {
                        tracing::warn!(channel_id = %channel_id, entry = %s, "record entry could not be read; skipped");
                    }
                    ctx.notes
                        .entries_skipped(Operation::ListRecords, reply.value.skipped.len());
                    let changes = ctx
                        .store
                        .upsert_records(&reply.value.records, as_of)
                        .await?;
                    for c in changes {
                        report_change(
                            ctx,
                            &channel_id,
                            starting.contains(&channel_id),
                            c.record_id,
                            c.previous_status.as_deref(),
                            &c.status,
                            (as_of, now),
                        )
                        .await?;
                    }
                    self.pending.remove(&channel_id);
                }
                Err(e) => {
                    tracing::warn!(channel_id = %channel_id, error = %e, "could not read records; will try again");
                    ctx.notes.api_error(now, Some(&channel_id), &e).await?;
                }
            }
        }
        Ok(())
    }
}

/// One channel's records as read: the channel, when the read was made, what it returned.
pub(crate) type RecordRead = (String, i64, Result<Reply<RecordSet>, ApiError>);

/// Reads the records of `channels` side by side (a read hanging until `api.timeout` holds up no
/// other channel's). Each is stamped with when it was made, not with the tick's start: a start
/// sent earlier in the tick must not find its own record "seen before it was sent".
pub(crate) async fn read_records<A: LiveStation>(
    api: &A,
    clock: &TickClock,
    channels: Vec<String>,
) -> Vec<RecordRead> {
    stream::iter(channels)
        .map(|channel_id| async move {
            let as_of = clock.stamp();
            let read = api.list_records(&channel_id).await;
            (channel_id, as_of, read)
        })
        .buffered(CONCURRENT_CHANNELS)
        .collect()
        .await
}

/// The ids of the configured channels.
fn configured_ids(config: &Config) -> HashSet<&str> {
    config.channels.iter().map(|c| c.id.as_str()).collect()
}

async fn report_change<A: LiveStation>(
    ctx: &Ctx<'_, A>,
    channel_id: &str,
    starting: bool,
    record_id: i64,
    old: Option<&str>,
    new: &str,
    (as_of, now): (i64, i64),
) -> Result<(), EngineError> {
    let status = RecordStatus::parse(new);
    // Owned when read, not only now: the read may be stored after lsrecd's recording ended.
    if old.is_none()
        && status == RecordStatus::Recording
        && !starting
        && !ctx.store.owned_recording_since(channel_id, as_of).await?
    {
        // A recording lsrecd did not start (immediateOnAir, the console): followed, never
        // stopped by lsrecd.
        ctx.notes
            .event(
                now,
                EventKind::Tracked,
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
            ctx.notes
                .event(
                    now,
                    EventKind::Uploaded,
                    Some(channel_id),
                    Some(record_id),
                    &format!("record {record_id} is in object storage (TRANSFER_FINISH)"),
                )
                .await
        }
        RecordStatus::ProcessingFail => {
            ctx.notes
                .event(
                    now,
                    EventKind::Failed,
                    Some(channel_id),
                    Some(record_id),
                    &format!("record {record_id}: Live Station could not process the recording (PROCESSING_FAIL)"),
                )
                .await
        }
        RecordStatus::TransferFail => {
            ctx.notes
                .event(
                    now,
                    EventKind::UploadFailed,
                    Some(channel_id),
                    Some(record_id),
                    &format!("record {record_id}: the transfer to object storage failed (TRANSFER_FAIL); it can be uploaded again before it is deleted"),
                )
                .await
        }
        RecordStatus::Deleted if old.is_some() => {
            // Reached only without TRANSFER_FINISH: the temporary file is gone, never uploaded.
            ctx.notes
                .event(
                    now,
                    EventKind::Failed,
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
/// upload when a bucket is configured and this instance `acting` (a standby only warns). Runs
/// at the record poll cadence.
pub(crate) async fn retention_guard<A: LiveStation>(
    ctx: &Ctx<'_, A>,
    config: &Config,
    follower: &mut Follower,
    acting: bool,
    now: i64,
) -> Result<(), EngineError> {
    let warn_before = config.retention.warn_before.as_millis() as i64;
    let configured = configured_ids(config);
    let covered =
        |channel_id: &str| config.retention.all_channels || configured.contains(channel_id);
    for r in ctx.store.expiring_unwarned(now, warn_before).await? {
        if !covered(&r.channel_id) {
            continue;
        }
        let left = r
            .should_delete_time
            .map(|t| human_ms(t - now))
            .unwrap_or_default();
        ctx.notes
            .event(
                now,
                EventKind::Expiring,
                Some(&r.channel_id),
                Some(r.record_id),
                &format!(
                    "record {} ({}, {}) is not uploaded and Live Station deletes it in {left}",
                    r.record_id, r.record_type, r.status
                ),
            )
            .await?;
        if let Some(m) = ctx.notes.metrics() {
            m.retention_warning();
        }
        ctx.store.mark_expiry_warned(r.record_id, now).await?;
    }
    let Some(bucket) = config.retention.upload_bucket.as_deref().filter(|_| acting) else {
        return Ok(());
    };
    let mut by_channel: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in ctx.store.uploadable_expiring(now, warn_before).await? {
        if !covered(&r.channel_id) {
            continue;
        }
        by_channel
            .entry(r.channel_id.clone())
            .or_default()
            .push(r.record_id);
    }
    for (channel_id, ids) in by_channel {
        let action_id = ctx
            .store
            .begin_action(&NewAction {
                channel_id: channel_id.clone(),
                operation: Mutation::Upload,
                trigger: Trigger::Retention,
                attempt: 1,
                occurrence_id: None,
                record_ids: ids.clone(),
                now,
            })
            .await?;
        let call = Call {
            operation: Mutation::Upload,
            channel_id: &channel_id,
            trigger: &Trigger::Retention,
            at: now,
        };
        if let Err(fenced) = ctx.fence.check(call).await {
            tracing::warn!(channel_id = %channel_id, reason = %fenced, "upload not sent: this instance may no longer act");
            let not_sent = ActionOutcome {
                error_message: Some(format!("not sent: {fenced}")),
                ..ActionOutcome::new(ActionState::Failed)
            };
            ctx.store
                .finish_action(action_id, &not_sent, &[], now)
                .await?;
            return Ok(());
        }
        match ctx.api.upload(bucket, &ids).await {
            Ok(_) => {
                ctx.notes.api_answered();
                ctx.store
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
                ctx.store.mark_upload_requested(&ids, now).await?;
                follower.mark(&channel_id);
                ctx.notes
                    .event(now, EventKind::UploadRequested, Some(&channel_id), ids.first().copied(), &format!(
                        "upload of records {ids:?} to bucket {bucket} requested before Live Station deletes them"
                    ))
                    .await?;
            }
            Err(e) => {
                ctx.store
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
                ctx.notes
                    .event(
                        now,
                        EventKind::UploadFailed,
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
