//! Schedule occurrences: one row per (schedule, fire time), created ahead as `PENDING` and moved
//! along by [`super::decide::advance_occurrence`]. After downtime, every fire time that passed
//! is written too, so each one ends in exactly one final state ("what was not recorded and why"
//! is one query).

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::livestation::LiveStation;
use crate::store::{EventKind, NewOccurrence, OccurrenceReason, OccurrenceState};

use super::decide::{self, Occurrence};
use super::view::ChannelView;
use super::{Ctx, EngineError};

/// How far back fire times missed while down are written (older ones are not listed one by one).
const CATCH_UP_HORIZON_MS: i64 = 7 * 24 * 3600 * 1000;
/// At most this many missed fire times per schedule are written at once.
const MAX_BACKFILL: usize = 1000;

/// Writes the next occurrence of every schedule and any fire times that passed since the last
/// one written (downtime), as `PENDING`; [`advance`] then arms them or marks them missed.
pub(crate) async fn materialize<A: LiveStation>(
    ctx: &Ctx<'_, A>,
    config: &Config,
    now: i64,
) -> Result<(), EngineError> {
    for s in &config.schedules {
        let latest = ctx.store.latest_fire_time(&s.name).await?;
        if latest.is_some_and(|t| t > now) {
            continue; // the next occurrence is already written
        }
        let catch_up = s.catch_up.as_millis() as i64;
        let from = match latest {
            Some(t) => t.max(now - CATCH_UP_HORIZON_MS),
            // A new schedule: only a fire time within catch_up can still be honoured.
            None => now - catch_up - 1,
        };
        let mut cursor = ms_to_utc(from);
        let mut written = 0;
        // Every fire time after `from` up to and including the first one in the future.
        while let Some(next) = s.cron.next_after(cursor, s.timezone) {
            let fire = next.timestamp_millis();
            if written >= MAX_BACKFILL && fire <= now {
                cursor = next;
                continue;
            }
            let (_, inserted) = ctx
                .store
                .insert_occurrence(&NewOccurrence {
                    schedule: s.name.clone(),
                    channel_id: s.channel_id.clone(),
                    fire_time: fire,
                    window_end: s.duration.map(|d| fire + d.as_millis() as i64),
                    state: OccurrenceState::Pending,
                    detail: None,
                    now,
                })
                .await?;
            if inserted {
                written += 1;
            }
            if fire > now {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

/// Moves every open occurrence along; ends those of schedules no longer configured.
/// `up_since` is when this engine started: fire times before it passed while lsrecd was down.
pub(crate) async fn advance<A: LiveStation>(
    ctx: &Ctx<'_, A>,
    config: &Config,
    view: &ChannelView,
    up_since: i64,
    now: i64,
) -> Result<(), EngineError> {
    for row in ctx.store.open_occurrences().await? {
        let state = row.state;
        let schedule = config.schedules.iter().find(|s| s.name == row.schedule);
        // A schedule removed by a reload: its claims end, except that a show already being
        // recorded keeps its window, so a configuration edit does not cut a recording short.
        if schedule.is_none() && state != OccurrenceState::Recording {
            let detail = "schedule removed from the configuration";
            set(
                ctx,
                &row,
                OccurrenceState::Missed,
                OccurrenceReason::ScheduleRemoved,
                detail,
                now,
            )
            .await?;
            continue;
        }
        let catch_up = schedule.map(|s| s.catch_up.as_millis() as i64).unwrap_or(0);
        let observed = view.get(&row.channel_id).map(|s| s.observed());
        let occ = Occurrence {
            state,
            fire_time: row.fire_time,
            window_end: row.window_end,
        };
        let mut current = occ.clone();
        // PENDING → ARMED → RECORDING can happen in one tick.
        for _ in 0..3 {
            let Some((next, reason, detail)) =
                decide::advance_occurrence(&current, observed.as_ref(), catch_up, up_since, now)
            else {
                break;
            };
            // A window that ends after Live Station refused the start, or while the start kept
            // failing, failed; it was not merely missed for want of a stream.
            let (next, reason, detail) = match (row.reason, next) {
                (
                    Some(why @ (OccurrenceReason::StartRejected | OccurrenceReason::StartFailed)),
                    OccurrenceState::Missed,
                ) => (
                    OccurrenceState::Failed,
                    why,
                    format!(
                        "window ended without a recording; {}",
                        row.detail.as_deref().unwrap_or("the start failed")
                    ),
                ),
                _ => (next, reason, detail),
            };
            set(ctx, &row, next, reason, &detail, now).await?;
            current.state = next;
            if next.is_final() {
                break;
            }
        }
    }
    Ok(())
}

async fn set<A: LiveStation>(
    ctx: &Ctx<'_, A>,
    row: &crate::store::OccurrenceRow,
    state: OccurrenceState,
    reason: OccurrenceReason,
    detail: &str,
    now: i64,
) -> Result<(), EngineError> {
    let (schedule, channel_id) = (row.schedule.as_str(), row.channel_id.as_str());
    ctx.store
        .set_occurrence_state(row.id, state, reason, Some(detail), now)
        .await?;
    if let Some(m) = ctx.notes.metrics() {
        m.occurrence(state.as_str());
    }
    match state {
        OccurrenceState::Missed => {
            ctx.notes
                .event(
                    now,
                    EventKind::Missed,
                    Some(channel_id),
                    None,
                    &format!("schedule {schedule}: occurrence missed: {detail}"),
                )
                .await?
        }
        OccurrenceState::Armed => {
            tracing::info!(schedule, channel_id, "occurrence armed: {detail}");
        }
        _ => tracing::info!(
            schedule,
            channel_id,
            state = state.as_str(),
            "occurrence: {detail}"
        ),
    }
    Ok(())
}

fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now)
}
