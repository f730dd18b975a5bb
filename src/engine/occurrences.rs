//! Schedule occurrences: one row per (schedule, fire time), created ahead as `PENDING` and moved
//! along by [`super::decide::advance_occurrence`]. After downtime, every fire time that passed
//! is written too, so each one ends in exactly one final state ("what was not recorded and why"
//! is one query).

use chrono::{DateTime, Utc};

use crate::store::{NewOccurrence, OccurrenceState};

use super::decide::{self, Observed, Occurrence};
use super::{Engine, EngineError};

/// How far back fire times missed while down are written (older ones are not listed one by one).
const CATCH_UP_HORIZON_MS: i64 = 7 * 24 * 3600 * 1000;
/// At most this many missed fire times per schedule are written at once.
const MAX_BACKFILL: usize = 1000;

/// Writes the next occurrence of every schedule and any fire times that passed since the last
/// one written (downtime), as `PENDING`; [`advance`] then arms them or marks them missed.
pub(crate) async fn materialize(engine: &mut Engine, now: i64) -> Result<(), EngineError> {
    let config = engine.config.clone();
    for s in &config.schedules {
        let latest = engine.store.latest_fire_time(&s.name).await?;
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
            let (_, inserted) = engine
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
pub(crate) async fn advance(engine: &mut Engine, now: i64) -> Result<(), EngineError> {
    let config = engine.config.clone();
    for row in engine.store.open_occurrences().await? {
        let state = row.state;
        let schedule = config.schedules.iter().find(|s| s.name == row.schedule);
        // A schedule removed by a reload: its claims end, except that a show already being
        // recorded keeps its window, so a configuration edit does not cut a recording short.
        if schedule.is_none() && state != OccurrenceState::Recording {
            let detail = "schedule removed from the configuration";
            set(
                engine,
                row.id,
                &row.schedule,
                &row.channel_id,
                OccurrenceState::Missed,
                detail,
                now,
            )
            .await?;
            continue;
        }
        let catch_up = schedule.map(|s| s.catch_up.as_millis() as i64).unwrap_or(0);
        let observed = engine.observed.get(&row.channel_id).map(|c| Observed {
            status: c.channel_status.clone(),
            is_recording: c.is_recording,
            immediate_on_air: c.immediate_on_air,
        });
        let occ = Occurrence {
            state,
            fire_time: row.fire_time,
            window_end: row.window_end,
        };
        let mut current = occ.clone();
        // PENDING → ARMED → RECORDING can happen in one tick.
        for _ in 0..3 {
            let Some((next, detail)) = decide::advance_occurrence(
                &current,
                observed.as_ref(),
                catch_up,
                engine.up_since,
                now,
            ) else {
                break;
            };
            // A window that ends after Live Station refused the start failed; it was not
            // merely missed for want of a stream.
            let (next, detail) = match (&row.detail, next) {
                (Some(last), OccurrenceState::Missed) if last.starts_with("startRecord") => (
                    OccurrenceState::Failed,
                    format!("window ended without a recording; {last}"),
                ),
                _ => (next, detail),
            };
            set(
                engine,
                row.id,
                &row.schedule,
                &row.channel_id,
                next,
                &detail,
                now,
            )
            .await?;
            current.state = next;
            if next.is_final() {
                break;
            }
        }
    }
    Ok(())
}

async fn set(
    engine: &mut Engine,
    id: i64,
    schedule: &str,
    channel_id: &str,
    state: OccurrenceState,
    detail: &str,
    now: i64,
) -> Result<(), EngineError> {
    engine
        .store
        .set_occurrence_state(id, state, Some(detail), now)
        .await?;
    if let Some(m) = &engine.metrics {
        m.occurrence(state.as_str());
    }
    match state {
        OccurrenceState::Missed => {
            engine
                .event(
                    now,
                    "missed",
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
