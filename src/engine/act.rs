//! Acting: startRecord and stopRecord through the journal, never twice.
//!
//! Every call is preceded by a committed `PENDING` action row and followed by its outcome,
//! committed together with the records the call returned. A failure after the request may have
//! reached Live Station (timeout, reset, 5xx, unreadable body) leaves the action `AMBIGUOUS`;
//! before anything is sent again the channel and its records are re-read, and a recording found
//! there is adopted (`RECONCILED`) instead of started a second time. Backoff is full jitter
//! ([`super::retry`]); a start is never retried past its claim's window.

use crate::livestation::{ApiError, Record, RecordStatus};
use crate::store::{ActionOutcome, ActionState, NewAction, Operation};

use super::decide::{self, OccurrenceState, StopReason};
use super::{Engine, EngineError, now_ms};

/// Start or stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop(StopReason),
}

/// One start or stop the engine is carrying out, possibly over several attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub channel_id: String,
    pub op: Op,
    pub trigger: String,
    pub occurrence_id: Option<i64>,
    /// No attempt at or after this instant (the claim's window end).
    pub deadline: Option<i64>,
    /// 1-based number of the next attempt.
    pub attempt: u32,
    /// When the first attempt was decided.
    pub intent_at: i64,
    /// The previous attempt may have been applied: re-read before sending again.
    pub reconcile_first: bool,
    /// The action row of the previous attempt, settled by reconciliation.
    pub last_action_id: Option<i64>,
}

impl Job {
    pub fn start(
        channel_id: &str,
        trigger: String,
        occurrence_id: Option<i64>,
        deadline: Option<i64>,
        now: i64,
    ) -> Job {
        Job {
            channel_id: channel_id.to_string(),
            op: Op::Start,
            trigger,
            occurrence_id,
            deadline,
            attempt: 1,
            intent_at: now,
            reconcile_first: false,
            last_action_id: None,
        }
    }

    pub fn stop(channel_id: &str, trigger: String, reason: StopReason, now: i64) -> Job {
        Job {
            channel_id: channel_id.to_string(),
            op: Op::Stop(reason),
            trigger,
            occurrence_id: None,
            deadline: None,
            attempt: 1,
            intent_at: now,
            reconcile_first: false,
            last_action_id: None,
        }
    }

    fn operation(&self) -> Operation {
        match self.op {
            Op::Start => Operation::StartRecord,
            Op::Stop(_) => Operation::StopRecord,
        }
    }
}

/// A job waiting for its next attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryState {
    pub job: Job,
    pub next_try_at: i64,
}

/// A start was blocked: by a rejection (until the observation changes) or by exhausted retries
/// (also until `until`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartBlock {
    pub status: String,
    pub is_recording: bool,
    pub until: Option<i64>,
}

/// Runs every retry that is due, unless its reason to exist has gone.
pub(crate) async fn due_retries(engine: &mut Engine, now: i64) -> Result<(), EngineError> {
    let due: Vec<Job> = engine
        .memory
        .values()
        .filter_map(|m| m.retry.as_ref())
        .filter(|r| r.next_try_at <= now)
        .map(|r| r.job.clone())
        .collect();
    for job in due {
        if let Some(m) = engine.memory.get_mut(&job.channel_id) {
            m.retry = None;
        }
        // An unclear outcome is always reconciled; a plain retry only if its reason remains
        // (the claim may have ended, or the channel stopped on its own, while it waited).
        if !job.reconcile_first && !still_wanted(engine, &job, now).await? {
            tracing::info!(channel_id = %job.channel_id, op = ?job.op, "retry dropped: no longer wanted");
            continue;
        }
        attempt(engine, job, now).await?;
    }
    Ok(())
}

/// One attempt of `job`. Returns true when the start or stop took effect (directly or as found
/// by reconciliation). Failures schedule the next attempt in the channel's memory.
pub(crate) async fn attempt(
    engine: &mut Engine,
    mut job: Job,
    now: i64,
) -> Result<bool, EngineError> {
    if job.reconcile_first {
        match reconcile(engine, &job, now).await {
            Ok(Some(records)) => {
                return settle_applied(engine, &job, None, &records, now)
                    .await
                    .map(|_| true);
            }
            Ok(None) => {
                if let Some(id) = job.last_action_id {
                    engine
                        .store
                        .finish_action(
                            id,
                            &outcome(
                                ActionState::Failed,
                                None,
                                "not applied (confirmed by reconciliation)",
                            ),
                            &[],
                            now,
                        )
                        .await?;
                }
                job.reconcile_first = false;
                if !still_wanted(engine, &job, now).await? {
                    return Ok(false);
                }
            }
            Err(e) => {
                tracing::warn!(channel_id = %job.channel_id, error = %e, "reconciliation failed; will retry before any resend");
                schedule_retry(engine, job, &e, now).await?;
                return Ok(false);
            }
        }
    }

    if job.op == Op::Start {
        // Read the channel right before starting: a stale list must never cause a second start.
        match engine.client.get_channel(&job.channel_id).await {
            Ok(reply) => {
                let ch = reply.value;
                engine.store.observe_channel(&ch, now).await?;
                let go = ch.channel_status.is_live() && !ch.is_recording && !ch.immediate_on_air;
                engine.observed.insert(ch.channel_id.clone(), ch);
                if !go {
                    return Ok(false);
                }
            }
            Err(e) => {
                schedule_retry(engine, job, &e, now).await?;
                return Ok(false);
            }
        }
    }

    let action_id = engine
        .store
        .begin_action(&NewAction {
            channel_id: job.channel_id.clone(),
            operation: job.operation(),
            trigger: job.trigger.clone(),
            attempt: job.attempt as i64,
            occurrence_id: job.occurrence_id,
            record_ids: Vec::new(),
            now,
        })
        .await?;
    job.last_action_id = Some(action_id);
    let result = match job.op {
        Op::Start => engine.client.start_record(&job.channel_id).await,
        Op::Stop(_) => engine.client.stop_record(&job.channel_id).await,
    };
    let done = now_ms();
    match result {
        Ok(reply) => {
            for s in &reply.value.skipped {
                tracing::warn!(channel_id = %job.channel_id, entry = %s, "record entry could not be read");
            }
            settle_applied(engine, &job, Some(action_id), &reply.value.records, done).await?;
            Ok(true)
        }
        Err(e) if e.maybe_applied() => {
            tracing::warn!(channel_id = %job.channel_id, error = %e, attempt = job.attempt, "outcome unknown; reconciling before any resend");
            engine
                .store
                .finish_action(action_id, &failure(ActionState::Ambiguous, &e), &[], done)
                .await?;
            job.reconcile_first = true;
            match reconcile(engine, &job, done).await {
                Ok(Some(records)) => settle_applied(engine, &job, None, &records, done)
                    .await
                    .map(|_| true),
                Ok(None) => {
                    engine
                        .store
                        .finish_action(action_id, &failure(ActionState::Failed, &e), &[], done)
                        .await?;
                    job.reconcile_first = false;
                    schedule_retry(engine, job, &e, done).await?;
                    Ok(false)
                }
                Err(re) => {
                    tracing::warn!(channel_id = %job.channel_id, error = %re, "reconciliation failed; will retry it before any resend");
                    schedule_retry(engine, job, &e, done).await?;
                    Ok(false)
                }
            }
        }
        Err(e) => {
            engine
                .store
                .finish_action(action_id, &failure(ActionState::Failed, &e), &[], done)
                .await?;
            engine
                .note_api_error(done, Some(&job.channel_id), &e)
                .await?;
            match (&e, job.op) {
                (ApiError::Rejected { .. }, Op::Start) => {
                    block_start(engine, &job.channel_id, None);
                    engine
                        .event(done, "failed", Some(&job.channel_id), None, &format!(
                            "startRecord ({}) rejected by Live Station: {e}; not retried until the channel's state changes",
                            job.trigger
                        ))
                        .await?;
                    if let Some(occ) = job.occurrence_id {
                        note_occurrence(engine, occ, &format!("startRecord rejected: {e}"), done)
                            .await?;
                    }
                    Ok(false)
                }
                (ApiError::Rejected { .. }, Op::Stop(_)) => {
                    // Perhaps it is not recording any more: look before trying again.
                    job.reconcile_first = true;
                    schedule_retry(engine, job, &e, done).await?;
                    Ok(false)
                }
                _ => {
                    schedule_retry(engine, job, &e, done).await?;
                    Ok(false)
                }
            }
        }
    }
}

/// The start or stop took effect: commit the outcome with the records, update ownership,
/// occurrences, events and metrics.
async fn settle_applied(
    engine: &mut Engine,
    job: &Job,
    action_id: Option<i64>,
    records: &[Record],
    now: i64,
) -> Result<(), EngineError> {
    let reconciled = action_id.is_none();
    let id = match action_id.or(job.last_action_id) {
        Some(id) => id,
        None => {
            engine
                .store
                .begin_action(&NewAction {
                    channel_id: job.channel_id.clone(),
                    operation: job.operation(),
                    trigger: "reconcile".to_string(),
                    attempt: job.attempt as i64,
                    occurrence_id: job.occurrence_id,
                    record_ids: Vec::new(),
                    now,
                })
                .await?
        }
    };
    let state = if reconciled {
        ActionState::Reconciled
    } else {
        ActionState::Succeeded
    };
    let mut out = outcome(
        state,
        Some(200),
        if reconciled {
            "applied (found by reconciliation)"
        } else {
            ""
        },
    );
    if reconciled {
        out.http_status = None;
    }
    match job.op {
        Op::Start => out.open_owned = Some(job.trigger.clone()),
        Op::Stop(reason) => out.close_owned = Some(reason.as_str().to_string()),
    }
    engine.store.finish_action(id, &out, records, now).await?;
    let mem = engine.memory.entry(job.channel_id.clone()).or_default();
    mem.retry = None;
    mem.follow_now = true;
    let ids = record_ids(records);
    match job.op {
        Op::Start => {
            if let Some(obs) = engine.observed.get_mut(&job.channel_id) {
                obs.is_recording = true;
            }
            if let Some(occ) = job.occurrence_id
                && let Err(e) = engine
                    .store
                    .set_occurrence_state(
                        occ,
                        OccurrenceState::Recording,
                        Some("recording started"),
                        now,
                    )
                    .await
            {
                tracing::debug!(occurrence = occ, error = %e, "occurrence not moved to RECORDING");
            }
            if let Some(m) = &engine.metrics {
                m.recording_started(&job.trigger);
            }
            engine
                .event(
                    now,
                    "started",
                    Some(&job.channel_id),
                    records.first().map(|r| r.record_id),
                    &format!(
                        "recording started ({}){}; records {ids}",
                        job.trigger,
                        if reconciled {
                            ", confirmed by reconciliation after an unclear answer"
                        } else {
                            ""
                        }
                    ),
                )
                .await?;
        }
        Op::Stop(reason) => {
            if let Some(obs) = engine.observed.get_mut(&job.channel_id) {
                obs.is_recording = false;
            }
            if reason == StopReason::MaxDuration {
                engine
                    .memory
                    .entry(job.channel_id.clone())
                    .or_default()
                    .spent_before = Some(now);
                engine
                    .store
                    .end_manual_claim(&job.channel_id, "max_duration reached", now)
                    .await?;
            }
            engine
                .event(
                    now,
                    "stopped",
                    Some(&job.channel_id),
                    records.first().map(|r| r.record_id),
                    &format!("recording stopped ({}); records {ids}", reason.as_str()),
                )
                .await?;
        }
    }
    Ok(())
}

/// Re-reads the channel and its records. `Some(records)` when the job's effect is there
/// (start: the channel records; stop: it does not), `None` when it is not.
async fn reconcile(
    engine: &mut Engine,
    job: &Job,
    now: i64,
) -> Result<Option<Vec<Record>>, ApiError> {
    let ch = engine.client.get_channel(&job.channel_id).await?.value;
    let records = engine
        .client
        .list_records(&job.channel_id)
        .await?
        .value
        .records;
    if let Err(e) = engine.store.observe_channel(&ch, now).await {
        tracing::error!(error = %e, "could not store channel observation");
    }
    if let Err(e) = engine.store.upsert_records(&records, now).await {
        tracing::error!(error = %e, "could not store records");
    }
    let current: Vec<Record> = match job.op {
        Op::Start => records
            .into_iter()
            .filter(|r| r.status == RecordStatus::Recording)
            .collect(),
        Op::Stop(_) => records,
    };
    let applied = match job.op {
        // The flag, or a recording begun since the intent.
        Op::Start => ch.is_recording || started_since(engine, &current, job.intent_at).await,
        Op::Stop(_) => !ch.is_recording,
    };
    engine.observed.insert(ch.channel_id.clone(), ch);
    Ok(applied.then_some(current))
}

/// Whether a start/stop job still has a reason after its previous attempt was found not applied.
async fn still_wanted(engine: &mut Engine, job: &Job, now: i64) -> Result<bool, EngineError> {
    let states = engine.channel_states(now).await?;
    let Some(mut state) = states.into_iter().find(|s| s.channel_id == job.channel_id) else {
        return Ok(false);
    };
    state.busy = false;
    Ok(matches!(
        (decide::decide(&state, now), job.op),
        (Some(decide::Decision::Start { .. }), Op::Start)
            | (Some(decide::Decision::Stop { .. }), Op::Stop(_))
    ))
}

/// Plans the next attempt, or gives up (start: event, occurrence FAILED, start blocked for a
/// while; stop: alert and keep trying at the slowest pace — a recording that never stops is
/// worse than a noisy log).
async fn schedule_retry(
    engine: &mut Engine,
    mut job: Job,
    e: &ApiError,
    now: i64,
) -> Result<(), EngineError> {
    let retry_after = match e {
        ApiError::RateLimited { retry_after, .. } => *retry_after,
        // A repeated authentication failure is an alert, not a retry storm.
        ApiError::Unauthorized { .. } => Some(engine.policy.max_backoff),
        _ => None,
    };
    let unit: f64 = rand::random();
    let deadline = match job.op {
        Op::Start => job.deadline,
        Op::Stop(_) => None,
    };
    match engine
        .policy
        .next_try(job.attempt, now, unit, retry_after, deadline)
    {
        Some(at) => {
            tracing::info!(channel_id = %job.channel_id, attempt = job.attempt, error = %e, retry_in_ms = at - now, "will retry");
            job.attempt += 1;
            let channel_id = job.channel_id.clone();
            engine.memory.entry(channel_id).or_default().retry = Some(RetryState {
                job,
                next_try_at: at,
            });
        }
        None => match job.op {
            Op::Start => {
                let why = if job.deadline.is_some_and(|d| now >= d)
                    || job.attempt < engine.policy.max_attempts
                {
                    "the window ended"
                } else {
                    "retries exhausted"
                };
                engine
                    .event(
                        now,
                        "failed",
                        Some(&job.channel_id),
                        None,
                        &format!(
                            "startRecord ({}) failed after {} attempt(s), {why}: {e}",
                            job.trigger, job.attempt
                        ),
                    )
                    .await?;
                if let Some(occ) = job.occurrence_id {
                    let detail = format!(
                        "startRecord failed after {} attempt(s), {why}: {e}",
                        job.attempt
                    );
                    if let Err(e) = engine
                        .store
                        .set_occurrence_state(occ, OccurrenceState::Failed, Some(&detail), now)
                        .await
                    {
                        tracing::debug!(occurrence = occ, error = %e, "occurrence not moved to FAILED");
                    }
                }
                if job.reconcile_first {
                    // Never resend while the last outcome is unknown: keep reconciling.
                    job.attempt = engine.policy.max_attempts;
                    let at = now + engine.policy.max_backoff.as_millis() as i64;
                    let channel_id = job.channel_id.clone();
                    engine.memory.entry(channel_id).or_default().retry = Some(RetryState {
                        job,
                        next_try_at: at,
                    });
                } else {
                    let until = now + engine.policy.max_backoff.as_millis() as i64;
                    block_start(engine, &job.channel_id, Some(until));
                }
            }
            Op::Stop(_) => {
                engine
                    .event(
                        now,
                        "failed",
                        Some(&job.channel_id),
                        None,
                        &format!(
                            "stopRecord failed {} time(s): {e}; still trying every {}",
                            job.attempt,
                            humantime::format_duration(engine.policy.max_backoff)
                        ),
                    )
                    .await?;
                job.attempt += 1;
                let at = now + engine.policy.max_backoff.as_millis() as i64;
                let channel_id = job.channel_id.clone();
                engine.memory.entry(channel_id).or_default().retry = Some(RetryState {
                    job,
                    next_try_at: at,
                });
            }
        },
    }
    Ok(())
}

fn block_start(engine: &mut Engine, channel_id: &str, until: Option<i64>) {
    let (status, is_recording) = engine
        .observed
        .get(channel_id)
        .map(|c| (c.channel_status.as_str().to_string(), c.is_recording))
        .unwrap_or_default();
    engine
        .memory
        .entry(channel_id.to_string())
        .or_default()
        .start_blocked_on = Some(StartBlock {
        status,
        is_recording,
        until,
    });
}

/// The recording lsrecd started has ended by itself (the stream stopped, or someone else stopped
/// it): close the bookkeeping and read its records.
pub(crate) async fn release(
    engine: &mut Engine,
    channel_id: &str,
    now: i64,
) -> Result<(), EngineError> {
    engine
        .store
        .close_owned_recording(channel_id, "channel stopped recording", now)
        .await?;
    engine
        .memory
        .entry(channel_id.to_string())
        .or_default()
        .follow_now = true;
    engine
        .event(now, "ended", Some(channel_id), None, "recording ended without a stop from lsrecd (the stream stopped or it was stopped elsewhere)")
        .await
}

/// After a restart: settle every action a previous run left `PENDING` or `AMBIGUOUS`, from the
/// fresh observation and the channel's records, before anything new is decided. A start that
/// could still land (sent less than `api.timeout` + 5 s ago) is held and reconciled later.
pub(crate) async fn settle_unfinished_actions(
    engine: &mut Engine,
    now: i64,
) -> Result<(), EngineError> {
    for action in engine.store.unfinished_actions().await? {
        let Some(ch) = engine.observed.get(&action.channel_id).cloned() else {
            let out = outcome(
                ActionState::Failed,
                None,
                "channel not returned by the API at restart",
            );
            engine
                .store
                .finish_action(action.id, &out, &[], now)
                .await?;
            continue;
        };
        let records = match engine.client.list_records(&action.channel_id).await {
            Ok(r) => r.value.records,
            Err(e) => {
                tracing::warn!(channel_id = %action.channel_id, error = %e, "cannot read records to settle an unfinished action; will try again at the next start");
                continue;
            }
        };
        let began_since = action.operation == Operation::StartRecord
            && !ch.is_recording
            && started_since(engine, &records, action.requested_at).await;
        let out = match action.operation {
            Operation::StartRecord if ch.is_recording => ActionOutcome {
                open_owned: Some(action.trigger.clone()),
                ..outcome(
                    ActionState::Reconciled,
                    None,
                    "applied (found recording after restart)",
                )
            },
            Operation::StartRecord if began_since => outcome(
                ActionState::Reconciled,
                None,
                "applied; the recording had already ended at restart",
            ),
            Operation::StartRecord if now < action.requested_at + in_flight_limit(engine) => {
                engine.store.upsert_records(&records, now).await?;
                hold_until_settled(engine, &action);
                continue;
            }
            Operation::StartRecord => outcome(
                ActionState::Failed,
                None,
                "not applied (channel not recording at restart)",
            ),
            Operation::StopRecord if ch.is_recording => outcome(
                ActionState::Failed,
                None,
                "not applied (channel still recording at restart)",
            ),
            Operation::StopRecord => ActionOutcome {
                close_owned: Some("stopped before restart".to_string()),
                ..outcome(
                    ActionState::Reconciled,
                    None,
                    "applied (channel not recording at restart)",
                )
            },
            Operation::Upload => outcome(
                ActionState::Failed,
                None,
                "outcome unknown (interrupted); the retention guard will check again",
            ),
        };
        engine
            .store
            .finish_action(action.id, &out, &records, now)
            .await?;
        if out.open_owned.is_some() {
            let current: Vec<Record> = records
                .into_iter()
                .filter(|r| r.status == RecordStatus::Recording)
                .collect();
            engine
                .event(now, "adopted", Some(&action.channel_id), current.first().map(|r| r.record_id), &format!(
                    "startRecord of a previous run took effect; recording adopted ({}), records {}",
                    action.trigger,
                    record_ids(&current)
                ))
                .await?;
        }
    }
    Ok(())
}

/// The previous run's start may still be on its way through Live Station: nothing is decided
/// on the channel until it can no longer take effect, then it is reconciled like any unclear
/// outcome.
fn hold_until_settled(engine: &mut Engine, action: &crate::store::ActionRow) {
    let job = Job {
        channel_id: action.channel_id.clone(),
        op: Op::Start,
        trigger: action.trigger.clone(),
        occurrence_id: action.occurrence_id,
        deadline: None,
        attempt: action.attempt.max(1) as u32 + 1,
        intent_at: action.requested_at,
        reconcile_first: true,
        last_action_id: Some(action.id),
    };
    let next_try_at = action.requested_at + in_flight_limit(engine);
    engine
        .memory
        .entry(action.channel_id.clone())
        .or_default()
        .retry = Some(RetryState { job, next_try_at });
}

/// How long after it was sent a request can still take effect: the client timeout plus a margin.
fn in_flight_limit(engine: &Engine) -> i64 {
    engine.config.api.timeout.as_millis() as i64 + 5_000
}

/// Whether a record on the channel began at or after `since`, in the server's clock: the trace
/// a start sent at `since` leaves even when its recording has ended since. The skew estimate
/// comes from one-second `Date` headers, hence the 1.5 s allowance; a record lsrecd had already
/// seen before `since` belongs to an earlier recording, whatever its time says.
async fn started_since(engine: &Engine, records: &[Record], since: i64) -> bool {
    let skew = engine
        .client
        .clock_skew()
        .map(|d| d.num_milliseconds())
        .unwrap_or(0);
    for r in records {
        if r.record_begin_time.is_none_or(|t| t < since + skew - 1_500) {
            continue;
        }
        match engine.store.record(r.record_id).await {
            Ok(known) if known.first_seen_at < since => continue,
            // Unknown before the intent (or unreadable: then "applied", which never resends).
            _ => return true,
        }
    }
    false
}

/// Keeps an open occurrence's state and replaces its detail (why it is not recording yet).
async fn note_occurrence(
    engine: &Engine,
    id: i64,
    detail: &str,
    now: i64,
) -> Result<(), EngineError> {
    let row = engine.store.occurrence(id).await?;
    if !row.state.is_final() {
        engine
            .store
            .set_occurrence_state(id, row.state, Some(detail), now)
            .await?;
    }
    Ok(())
}

fn outcome(state: ActionState, http_status: Option<u16>, message: &str) -> ActionOutcome {
    ActionOutcome {
        state,
        http_status,
        error_code: None,
        error_message: (!message.is_empty()).then(|| message.to_string()),
        open_owned: None,
        close_owned: None,
    }
}

fn failure(state: ActionState, e: &ApiError) -> ActionOutcome {
    ActionOutcome {
        state,
        http_status: e.http_status(),
        error_code: e.error_code().map(str::to_string),
        error_message: Some(e.to_string()),
        open_owned: None,
        close_owned: None,
    }
}

pub(crate) fn record_ids(records: &[Record]) -> String {
    if records.is_empty() {
        return "(none returned)".to_string();
    }
    records
        .iter()
        .map(|r| format!("{} {}", r.record_id, r.record_type))
        .collect::<Vec<_>>()
        .join(", ")
}
