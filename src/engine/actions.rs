//! Acting: `startRecord` and `stopRecord` through the journal, never twice.
//!
//! # The journal
//!
//! Before a request is sent, its intent is committed as a `PENDING` `actions` row, stamped with
//! the moment of sending (the rate-limit slot is taken first, so the stamp is not stale however
//! many calls queue behind `api.max_rps`). No intent committed, no request. After the call, its
//! outcome is committed together with the records it returned and the ownership it implies.
//!
//! # Unclear outcomes
//!
//! A request that got no clear answer (a timeout, a reset, a 5xx, an unreadable 2xx) may have
//! taken effect, and may still take effect later: a backend can apply a request after the
//! gateway or the client gave up on it. lsrecd assumes it can land until `api.timeout` +
//! `api.landing_margin` after it was sent ("land-by"), and never concludes it did not before
//! then. Such an action is `AMBIGUOUS`, the channel's job waits, and the first observation of
//! the channel decides:
//!
//! - start: recording → it took effect: `RECONCILED`, the recording is lsrecd's own; not
//!   recording, observed by a request made after land-by → it did not: `FAILED`, and the start is
//!   sent again (records are read then only to label the row, never to decide);
//! - stop: not recording → `RECONCILED`; recording after land-by → `FAILED`, sent again.
//!
//! Any observation counts: a page of the channel list or a single-channel read. After a restart,
//! `PENDING`/`AMBIGUOUS` rows of the previous run become such waiting jobs, with land-by counted
//! from the row (conservatively: a re-signed retry may have left up to one timeout later). After
//! a takeover (`[ha]`), each hand-over note of an earlier leader on a channel this instance does
//! not own becomes such a job too, journaled nowhere here, with land-by counted from the takeover.
//!
//! # The fence
//!
//! Right before a request leaves, after its intent is committed, the fence ([`super::fence`])
//! confirms that this instance may still act. A request it refuses is not sent: the intent is
//! closed `FAILED` ("not sent") and the job dropped; the instance is no longer the leader.
//!
//! # Attempts and stories
//!
//! `retry.max_attempts` bounds how many requests are sent in a burst with exponential backoff;
//! reads (the pre-start read, reconciliation reads) never count. While a claim holds, lsrecd
//! never gives up: after a burst it keeps sending at `retry.max_backoff`, quietly. Each outage is
//! one story: an `outages` row, at most one `failed` event while it lasts (when the burst is used
//! up, or at once for a refusal), and one closing event: `started`/`stopped` with the time and
//! attempts it took, or `unrecorded` when the claim ends first.

use std::collections::{HashMap, HashSet};

use crate::livestation::{
    ApiError, ChannelStatus, LiveStation, Operation, Record, RecordSet, Sent,
};
use crate::store::{
    ActionOutcome, ActionRow, ActionState, EventKind, Mutation, NewAction, NewOutage,
    OccurrenceReason, OccurrenceState, OutageOutcome, Store, StoreError, Trigger,
};

use super::decide::{ChannelState, Decision, StopReason, human_ms};
use super::fence::{Call, Note};
use super::retry::RetryPolicy;
use super::view::ChannelView;
use super::{Ctx, EngineError};

/// A start is sent without reading its channel again when the channel was observed at most
/// this long before (its listing page was just read, or a hint read it on its own): a read
/// would say the same and cost a request slot.
const FRESH_OBSERVATION_MS: i64 = 1_000;

/// How long a request without a clear answer may still take effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Landing {
    /// `api.timeout`, ms.
    pub timeout_ms: i64,
    /// `api.landing_margin`, ms.
    pub margin_ms: i64,
}

impl Landing {
    /// For a request sent at `sent`.
    fn after_send(self, sent: i64) -> i64 {
        sent.saturating_add(self.timeout_ms + self.margin_ms)
    }

    /// For a `PENDING` row of a previous run: its request left at `requested_at`, or (after a
    /// refused signature) up to one timeout later.
    fn after_intent(self, requested_at: i64) -> i64 {
        requested_at.saturating_add(2 * self.timeout_ms + self.margin_ms)
    }

    /// For a request the server answered at `answered` with a 5xx (or a 2xx that could not be
    /// read) after it was sent at `sent`: the gateway let go of it when it answered, and the
    /// backend may still apply it up to `landing_margin` after that — the same allowance a
    /// timeout gets after the client lets go. Never later than [`Landing::after_send`].
    fn after_gateway_answer(self, sent: i64, answered: i64) -> i64 {
        answered
            .saturating_add(self.margin_ms)
            .min(self.after_send(sent))
    }

    /// For an `AMBIGUOUS` row of a previous run, answered at `finished_at`.
    fn after_answer(self, finished_at: i64) -> i64 {
        finished_at.saturating_add(self.timeout_ms + self.margin_ms)
    }
}

/// Start or stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Start,
    Stop(StopReason),
}

impl Op {
    fn mutation(self) -> Mutation {
        match self {
            Op::Start => Mutation::StartRecord,
            Op::Stop(_) => Mutation::StopRecord,
        }
    }

    fn name(self) -> &'static str {
        self.mutation().as_str()
    }

    /// The API operation that sends it.
    fn operation(self) -> Operation {
        match self {
            Op::Start => Operation::StartRecord,
            Op::Stop(_) => Operation::StopRecord,
        }
    }
}

/// What took effect in a step, for the engine's bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    Started,
    Stopped(StopReason),
}

/// A request whose outcome is not known yet.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unclear {
    /// The `actions` rows it settles (one, unless a previous run left several).
    action_ids: Vec<i64>,
    /// When it was sent (engine time, ms).
    sent_at: i64,
    /// No observation requested before this says anything about it.
    land_by: i64,
}

/// The current outage of a job: failures so far.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outage {
    /// The `outages` row, once written.
    row: Option<i64>,
    first_error: String,
    last_error: String,
    /// The one `failed` event of this outage was written.
    told: bool,
}

/// One start or stop being carried out, over as many attempts as it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Job {
    op: Op,
    trigger: Trigger,
    occurrence_id: Option<i64>,
    /// Since when the claim has wanted it (time to recording is counted from here).
    since: i64,
    /// Requests sent for it.
    sends: u32,
    /// Consecutive failed pre-start reads (they back off too, but are not attempts).
    reads_failed: u32,
    /// Nothing is sent before this instant.
    next_at: i64,
    unclear: Option<Unclear>,
    /// Found in the journal at start-up (a previous run's request).
    inherited: bool,
    outage: Option<Outage>,
}

impl Job {
    fn new(op: Op, trigger: Trigger, occurrence_id: Option<i64>, since: i64, now: i64) -> Job {
        Job {
            op,
            trigger,
            occurrence_id,
            since,
            sends: 0,
            reads_failed: 0,
            next_at: now,
            unclear: None,
            inherited: false,
            outage: None,
        }
    }
}

/// A refused start: no new start until the channel's observed state changes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StartBlock {
    status: ChannelStatus,
    is_recording: bool,
}

/// A call that took effect whose outcome could not be written yet.
#[derive(Clone, Debug)]
struct Unwritten {
    channel_id: String,
    action_ids: Vec<i64>,
    outcome: ActionOutcome,
    records: Vec<Record>,
    job: Job,
    at: i64,
}

#[derive(Debug, Default)]
struct Slot {
    job: Option<Job>,
    blocked: Option<StartBlock>,
}

/// The action part of the engine: one slot per channel.
#[derive(Debug)]
pub(crate) struct Actions {
    policy: RetryPolicy,
    landing: Landing,
    slots: HashMap<String, Slot>,
    unwritten: Vec<Unwritten>,
}

impl Actions {
    pub(crate) fn new(policy: RetryPolicy, landing: Landing) -> Actions {
        Actions {
            policy,
            landing,
            slots: HashMap::new(),
            unwritten: Vec::new(),
        }
    }

    /// New `[retry]`/`[api]` settings (a reload); jobs in progress keep their state.
    pub(crate) fn reconfigure(&mut self, policy: RetryPolicy, landing: Landing) {
        self.policy = policy;
        self.landing = landing;
    }

    /// Takes the channel's part out (its slot and its outcomes awaiting a database), to act on
    /// the channel while other channels are acted on: a call that hangs until `api.timeout`
    /// then holds up only its own channel. [`Actions::rejoin`] puts the part back.
    pub(crate) fn detach(&mut self, channel_id: &str) -> Actions {
        let mut part = Actions::new(self.policy, self.landing);
        if let Some(slot) = self.slots.remove(channel_id) {
            part.slots.insert(channel_id.to_string(), slot);
        }
        let (own, rest) = std::mem::take(&mut self.unwritten)
            .into_iter()
            .partition(|u| u.channel_id == channel_id);
        self.unwritten = rest;
        part.unwritten = own;
        part
    }

    /// Puts back a part taken with [`Actions::detach`], with whatever happened to it.
    pub(crate) fn rejoin(&mut self, part: Actions) {
        self.slots.extend(part.slots);
        self.unwritten.extend(part.unwritten);
    }

    /// Whether a step on the channel may call the API: something is to be started or stopped,
    /// or a job is in progress.
    pub(crate) fn may_call(&self, channel_id: &str, desired: Option<&Decision>) -> bool {
        matches!(
            desired,
            Some(Decision::Start { .. } | Decision::Stop { .. })
        ) || self.slots.get(channel_id).is_some_and(|s| s.job.is_some())
    }

    /// Whether a refused start blocks new starts on the channel.
    pub(crate) fn start_blocked(&self, channel_id: &str) -> bool {
        self.slots
            .get(channel_id)
            .is_some_and(|s| s.blocked.is_some())
    }

    /// When a job next needs the engine: a retry falling due, or an unclear request that can
    /// no longer land.
    ///
    /// An unclear request counts until it can no longer land; after that its channel is read on
    /// its own on the schedule of [`super::evidence`], not at every tick.
    pub(crate) fn next_due(&self, now: i64) -> Option<i64> {
        self.slots
            .values()
            .filter_map(|s| s.job.as_ref())
            .filter_map(|j| match &j.unclear {
                Some(u) => (u.land_by > now).then_some(u.land_by),
                None => Some(j.next_at),
            })
            .min()
    }

    /// The channels whose start may be sent again at `now` (not waiting for an unclear
    /// request). Stops wait for a full pass, which knows every occurrence's state.
    pub(crate) fn starts_due(&self, now: i64) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| {
                s.job
                    .as_ref()
                    .is_some_and(|j| j.op == Op::Start && j.unclear.is_none() && j.next_at <= now)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The channels whose start waits for its next attempt (not for an unclear request), each
    /// with the time that attempt is due.
    pub(crate) fn start_retries(&self) -> Vec<(String, i64)> {
        self.slots
            .iter()
            .filter_map(|(id, s)| {
                let job = s.job.as_ref()?;
                (job.op == Op::Start && job.unclear.is_none()).then(|| (id.clone(), job.next_at))
            })
            .collect()
    }

    /// The channels with an unclear request, each with the time it can no longer land.
    pub(crate) fn unclear(&self) -> Vec<(String, i64)> {
        self.slots
            .iter()
            .filter_map(|(id, s)| Some((id.clone(), s.job.as_ref()?.unclear.as_ref()?.land_by)))
            .collect()
    }

    /// Channels with a job waiting for an observation.
    pub(crate) fn awaiting_observation(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.job.as_ref().is_some_and(|j| j.unclear.is_some()))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Channels with a start whose outcome is not known yet.
    pub(crate) fn unsettled_starts(&self) -> HashSet<String> {
        self.slots
            .iter()
            .filter(|(_, s)| {
                s.job
                    .as_ref()
                    .is_some_and(|j| j.op == Op::Start && j.unclear.is_some())
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Forgets the slots with neither a job nor a block, which say nothing more than no slot
    /// (so that at rest, [`Actions::busy`] asks an empty map).
    pub(crate) fn forget_idle(&mut self) {
        self.slots
            .retain(|_, s| s.job.is_some() || s.blocked.is_some());
    }

    /// Whether the channel has a job or a block: a step must see it even when nothing is
    /// wanted (to end the job's story).
    pub(crate) fn busy(&self, channel_id: &str) -> bool {
        self.slots
            .get(channel_id)
            .is_some_and(|s| s.job.is_some() || s.blocked.is_some())
    }

    /// Channels with a job or a block: those an observation may settle or unblock.
    pub(crate) fn watched(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.job.is_some() || s.blocked.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Writes outcomes that could not be written before, then does what follows them (the
    /// event, the occurrence). Stops at the first failure.
    pub(crate) async fn flush_unwritten<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
    ) -> Result<Vec<(String, Applied)>, EngineError> {
        let mut done = Vec::new();
        while let Some(u) = self.unwritten.first() {
            for (i, id) in u.action_ids.iter().enumerate() {
                let records: &[Record] = if i == 0 { &u.records } else { &[] };
                match ctx
                    .store
                    .finish_action(*id, &u.outcome, records, u.at)
                    .await
                {
                    Ok(_) => {}
                    // Written by an earlier round of this loop that failed half-way.
                    Err(StoreError::InvalidTransition { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if u.action_ids.is_empty() {
                match (&u.outcome.open_owned, &u.outcome.close_owned) {
                    (Some(trigger), _) => {
                        ctx.store
                            .open_owned_recording(&u.channel_id, trigger, None, u.at)
                            .await?;
                    }
                    (_, Some(reason)) => {
                        ctx.store
                            .close_owned_recording(&u.channel_id, reason, u.at)
                            .await?;
                    }
                    _ => {}
                }
            }
            let u = self.unwritten.remove(0);
            tracing::info!(channel_id = %u.channel_id, "outcome written after the database recovered");
            let applied = after_applied(
                ctx,
                &u.channel_id,
                &u.job,
                u.outcome.state,
                &u.records,
                u.at,
            )
            .await?;
            done.push((u.channel_id, applied));
        }
        Ok(done)
    }

    /// After a restart: every action the previous run left `PENDING` or `AMBIGUOUS` becomes a
    /// job waiting for an observation made after its request could last land. Uploads are
    /// closed as unknown (the retention guard checks again).
    pub(crate) async fn load_unfinished(
        &mut self,
        store: &Store,
        now: i64,
    ) -> Result<(), EngineError> {
        for row in store.unfinished_actions().await? {
            let op = match row.operation {
                Mutation::StartRecord => Op::Start,
                Mutation::StopRecord => Op::Stop(StopReason::ClaimsEnded),
                Mutation::Upload => {
                    store
                        .finish_action(
                            row.id,
                            &outcome(
                                ActionState::Failed,
                                "outcome unknown (interrupted); the retention guard will check again",
                            ),
                            &[],
                            now,
                        )
                        .await?;
                    continue;
                }
            };
            let land_by = match (row.state, row.finished_at) {
                (ActionState::Ambiguous, Some(answered)) => self.landing.after_answer(answered),
                _ => self.landing.after_intent(row.requested_at),
            };
            let slot = self.slots.entry(row.channel_id.clone()).or_default();
            match &mut slot.job {
                Some(job) if job.op.mutation() == op.mutation() => {
                    if let Some(u) = &mut job.unclear {
                        u.action_ids.push(row.id);
                        u.sent_at = u.sent_at.min(row.requested_at);
                        u.land_by = u.land_by.max(land_by);
                    }
                }
                Some(_) => {
                    // A start and a stop both unsettled: only the latest one matters for what
                    // the channel does now; the older one's outcome stays unknown.
                    tracing::warn!(channel_id = %row.channel_id, action_id = row.id, "two different unsettled actions on one channel; the later one is followed");
                    replace_job(slot, &row, op, land_by, store, now).await?;
                }
                None => replace_job(slot, &row, op, land_by, store, now).await?,
            }
        }
        Ok(())
    }

    /// Takes the latest observation of the channel into account: it may unblock a refused
    /// start, and settle an unclear request (see the module doc).
    pub(crate) async fn observed<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        view: &mut ChannelView,
        channel_id: &str,
        now: i64,
    ) -> Result<Option<Applied>, EngineError> {
        let Some(seen) = view.get(channel_id).cloned() else {
            return Ok(None);
        };
        let Some(slot) = self.slots.get_mut(channel_id) else {
            return Ok(None);
        };
        if slot.blocked.as_ref().is_some_and(|b| {
            b.status != seen.channel.channel_status || b.is_recording != seen.channel.is_recording
        }) {
            slot.blocked = None;
        }
        let Some(job) = slot.job.clone() else {
            return Ok(None);
        };
        let Some(unclear) = job.unclear.clone() else {
            return Ok(None);
        };
        let recording = seen.channel.is_recording;
        let took_effect = match job.op {
            Op::Start => recording,
            Op::Stop(_) => !recording,
        };
        if took_effect {
            let message = if job.inherited {
                "applied (observed after restart)"
            } else {
                "applied (observed after an unclear answer)"
            };
            let settle = Settle {
                action_ids: unclear.action_ids.clone(),
                state: ActionState::Reconciled,
                message,
            };
            let applied = self
                .applied(ctx, view, channel_id, job, settle, &[], now)
                .await?;
            return Ok(Some(applied));
        }
        if seen.as_of < unclear.land_by {
            return Ok(None);
        }
        // It did not take effect, or a start took effect and its recording already ended.
        // While the channel publishes, the start is sent again either way (and the follower
        // stores whatever records there are), so it is not held back for a records read: that
        // read only changes the label. Once the channel stopped publishing, records tell.
        let ended_since = match job.op {
            Op::Start if seen.channel.channel_status.is_live() => false,
            Op::Start => match self.began_since(ctx, channel_id, unclear.sent_at).await {
                Some(began) => began,
                // Nothing is wanted from a channel that does not publish: settle it later.
                None => return Ok(None),
            },
            Op::Stop(_) => false,
        };
        let out = if ended_since {
            outcome(
                ActionState::Reconciled,
                "applied; the recording had already ended when the channel was next observed",
            )
        } else {
            outcome(
                ActionState::Failed,
                match job.op {
                    Op::Start => {
                        "not applied: the channel was observed not recording after the request could no longer take effect"
                    }
                    Op::Stop(_) => {
                        "not applied: the channel was observed still recording after the request could no longer take effect"
                    }
                },
            )
        };
        for id in &unclear.action_ids {
            ctx.store.finish_action(*id, &out, &[], now).await?;
        }
        let slot = self.slot(channel_id);
        match slot.job.as_mut() {
            // Sent again when due, if still wanted.
            Some(j) if !j.inherited && !ended_since => j.unclear = None,
            // A previous run's request, or a recording that happened: decided afresh.
            _ => {
                if let Some(row) = job.outage.as_ref().and_then(|o| o.row) {
                    ctx.store
                        .close_outage(row, OutageOutcome::Done, i64::from(job.sends), now)
                        .await?;
                }
                slot.job = None;
            }
        }
        Ok(None)
    }

    /// The channel of an unclear request does not exist any more (404): nothing can be
    /// recording there, so the request did not (or no longer) take effect.
    pub(crate) async fn channel_gone<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        channel_id: &str,
        e: &ApiError,
        now: i64,
    ) -> Result<(), EngineError> {
        let Some(job) = self.slots.get_mut(channel_id).and_then(|s| s.job.take()) else {
            return Ok(());
        };
        if let Some(unclear) = &job.unclear {
            let out = outcome(
                ActionState::Failed,
                "not applied: the channel does not exist any more",
            );
            for id in &unclear.action_ids {
                ctx.store.finish_action(*id, &out, &[], now).await?;
            }
        }
        tracing::warn!(channel_id, error = %e, "the channel of an unsettled request is gone");
        self.abandon(ctx, channel_id, job, false, now).await
    }

    /// Whether the channel's records show a recording begun since `sent_at`; `None` when they
    /// cannot be read.
    async fn began_since<A: LiveStation>(
        &self,
        ctx: &Ctx<'_, A>,
        channel_id: &str,
        sent_at: i64,
    ) -> Option<bool> {
        let as_of = ctx.clock.stamp();
        match ctx.api.list_records(channel_id).await {
            Ok(reply) => {
                ctx.notes.api_answered();
                let records = reply.value.records;
                let began = started_since(ctx, &records, sent_at).await;
                if let Err(e) = ctx.store.upsert_records(&records, as_of).await {
                    tracing::warn!(channel_id, error = %e, "records read to settle a start could not be stored");
                }
                Some(began)
            }
            Err(e) => {
                tracing::debug!(channel_id, error = %e, "records unreadable while settling a start");
                None
            }
        }
    }

    /// One step for a channel: `desired` is what the decision rule wants (computed as if no
    /// start were blocked and nothing were in flight). Starts or ends a job, sends when one is
    /// due, waits while a request is unclear, and closes the story of a job whose reason ended.
    pub(crate) async fn step<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        view: &mut ChannelView,
        state: &ChannelState,
        desired: Option<Decision>,
        now: i64,
    ) -> Result<Option<Applied>, EngineError> {
        let id = state.channel_id.as_str();
        if self.unwritten.iter().any(|u| u.channel_id == id) {
            return Ok(None);
        }
        // A slot is made only for a job: an idle channel costs no entry.
        let current = self.slots.get(id).and_then(|s| s.job.clone());
        if current.as_ref().is_some_and(|j| j.unclear.is_some()) {
            // Never anything new while a request may still take effect.
            return Ok(None);
        }
        let wanted = match &desired {
            Some(Decision::Start {
                trigger,
                occurrence_id,
                since,
                ..
            }) => Some(Job::new(
                Op::Start,
                trigger.clone(),
                *occurrence_id,
                *since,
                now,
            )),
            Some(Decision::Stop { reason }) => {
                // Journaled under the trigger that started the recording it ends.
                let trigger = state
                    .owned
                    .as_ref()
                    .map_or(Trigger::Reconcile, |o| o.trigger.clone());
                Some(Job::new(Op::Stop(*reason), trigger, None, now, now))
            }
            Some(Decision::Release) | None => None,
        };
        let recording = state.observed.as_ref().is_some_and(|o| o.is_recording);
        let job = match (current, wanted) {
            (Some(mut job), Some(w)) if job.op.mutation() == w.op.mutation() => {
                // The same job goes on; the claim behind it may have changed.
                job.op = w.op;
                if job.op == Op::Start {
                    job.trigger = w.trigger;
                    job.occurrence_id = w.occurrence_id;
                }
                job
            }
            (current, wanted) => {
                if let Some(old) = current {
                    self.slot(id).job = None;
                    self.abandon(ctx, id, old, recording, now).await?;
                }
                if let Some(Decision::Release) = desired {
                    release(ctx, id, now).await?;
                }
                match wanted {
                    Some(job) => job,
                    None => return Ok(None),
                }
            }
        };
        self.slot(id).job = Some(job.clone());
        if (job.op == Op::Start && self.start_blocked(id)) || now < job.next_at {
            return Ok(None);
        }
        self.send(ctx, view, id, job, now).await
    }

    /// The fence refused the request whose intent is `action_id`: nothing was sent. The intent
    /// is closed, and the job dropped with its story (this instance no longer acts).
    async fn fenced<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        id: &str,
        job: Job,
        action_id: i64,
        fenced: &super::fence::Fenced,
        now: i64,
    ) -> Result<Option<Applied>, EngineError> {
        tracing::warn!(channel_id = id, operation = job.op.name(), reason = %fenced, "not sent: this instance may no longer act");
        self.slot(id).job = None;
        let done = ctx.clock.stamp().max(now);
        ctx.store
            .finish_action(
                action_id,
                &outcome(ActionState::Failed, &format!("not sent: {fenced}")),
                &[],
                done,
            )
            .await?;
        if let Some(row) = job.outage.as_ref().and_then(|o| o.row) {
            ctx.store
                .close_outage(row, OutageOutcome::Abandoned, i64::from(job.sends), done)
                .await?;
        }
        Ok(None)
    }

    /// This instance stops acting (it lost the leadership). Jobs waiting to send are dropped,
    /// their outages closed as abandoned without an event (the new leader tells its own story);
    /// requests that may still land keep their jobs, and observations settle them as usual.
    pub(crate) async fn stand_down(&mut self, store: &Store, now: i64) -> Result<(), EngineError> {
        let idle: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.job.as_ref().is_some_and(|j| j.unclear.is_none()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            let Some(job) = self.slot(&id).job.take() else {
                continue;
            };
            if let Some(row) = job.outage.as_ref().and_then(|o| o.row) {
                store
                    .close_outage(row, OutageOutcome::Abandoned, i64::from(job.sends), now)
                    .await?;
            }
        }
        Ok(())
    }

    /// After a takeover: each note of an earlier leader becomes a start that may still land
    /// until `land_by`, unless the channel already has a job. Returns how many did.
    pub(crate) fn inherit(&mut self, notes: &[Note], land_by: i64, now: i64) -> usize {
        let mut inherited = 0;
        for note in notes {
            let slot = self.slot(&note.channel_id);
            if slot.job.is_some() {
                continue;
            }
            let mut job = Job::new(Op::Start, note.trigger.clone(), None, note.at, now);
            job.inherited = true;
            job.unclear = Some(Unclear {
                action_ids: Vec::new(),
                sent_at: note.at,
                land_by,
            });
            slot.job = Some(job);
            inherited += 1;
        }
        inherited
    }

    /// Channels with a start in progress, with the claim and since when it wants recording: a
    /// leader keeps a hand-over note on each.
    pub(crate) fn starting(&self) -> Vec<(String, Trigger, i64)> {
        self.slots
            .iter()
            .filter_map(|(id, s)| {
                let job = s.job.as_ref().filter(|j| j.op == Op::Start)?;
                Some((id.clone(), job.trigger.clone(), job.since))
            })
            .collect()
    }

    fn slot(&mut self, channel_id: &str) -> &mut Slot {
        self.slots.entry(channel_id.to_string()).or_default()
    }

    /// Sends the job's request (after a fresh read of the channel, for a start).
    async fn send<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        view: &mut ChannelView,
        id: &str,
        mut job: Job,
        now: i64,
    ) -> Result<Option<Applied>, EngineError> {
        if !ctx.fence.may_act() {
            return Ok(None);
        }
        let fresh = view
            .get(id)
            .filter(|seen| ctx.clock.stamp() - seen.as_of <= FRESH_OBSERVATION_MS)
            .map(|seen| {
                let ch = &seen.channel;
                ch.channel_status.is_live() && !ch.is_recording && !ch.immediate_on_air
            });
        if job.op == Op::Start
            && let Some(go) = fresh
        {
            // Just read (its listing page, or on its own for a hint): as good as a read now.
            if !go {
                self.slot(id).job = Some(job);
                return Ok(None);
            }
        } else if job.op == Op::Start {
            // A listing can be a poll old: read the channel right before starting it (asked
            // again beside the first when slow: see `hedge`).
            let after = super::hedge::hedge_after(std::time::Duration::from_millis(
                u64::try_from(self.landing.timeout_ms).unwrap_or(0),
            ));
            let read = super::hedge::hedged(
                || {
                    let as_of = ctx.clock.stamp();
                    let call = ctx.api.get_channel(id);
                    async move { call.await.map(|reply| (as_of, reply)) }
                },
                after,
            )
            .await;
            match read {
                Ok((as_of, reply)) => {
                    ctx.notes.api_answered();
                    let ch = reply.value;
                    ctx.store.observe_channel(&ch, now).await?;
                    let go =
                        ch.channel_status.is_live() && !ch.is_recording && !ch.immediate_on_air;
                    view.apply(ch.borrowed(), as_of, now);
                    job.reads_failed = 0;
                    self.slot(id).job = Some(job);
                    if !go {
                        // The next decision sees the fresh state.
                        return Ok(None);
                    }
                    job = self.slot(id).job.clone().expect("just set");
                }
                Err(e) => {
                    ctx.notes.api_error(now, Some(id), &e).await?;
                    job.reads_failed += 1;
                    job.next_at = now + self.backoff(job.reads_failed, &e);
                    self.note_failure(ctx, id, &mut job, &e, false, now).await?;
                    self.slot(id).job = Some(job);
                    return Ok(None);
                }
            }
        }

        let permit = ctx.api.ready().await;
        let requested_at = ctx.clock.stamp();
        let action_id = ctx
            .store
            .begin_action(&NewAction {
                channel_id: id.to_string(),
                operation: job.op.mutation(),
                trigger: job.trigger.clone(),
                attempt: i64::from(job.sends + 1),
                occurrence_id: job.occurrence_id,
                record_ids: Vec::new(),
                now: requested_at,
            })
            .await?;
        let call = Call {
            operation: job.op.mutation(),
            channel_id: id,
            trigger: &job.trigger,
            at: requested_at,
        };
        if let Err(fenced) = ctx.fence.check(call).await {
            return self.fenced(ctx, id, job, action_id, &fenced, now).await;
        }
        job.sends += 1;
        let Sent { result, last_sent } = match job.op {
            Op::Start => ctx.api.start_record(id, permit).await,
            Op::Stop(_) => ctx.api.stop_record(id, permit).await,
        };
        let sent_at = last_sent.map_or(requested_at, |at| ctx.clock.at(at));
        let done = ctx.clock.stamp().max(now);
        match result {
            Ok(reply) => {
                ctx.notes.api_answered();
                let RecordSet { records, skipped } = reply.value;
                for s in &skipped {
                    tracing::warn!(channel_id = id, entry = %s, "record entry could not be read");
                }
                ctx.notes.entries_skipped(job.op.operation(), skipped.len());
                self.slot(id).job = Some(job.clone());
                let settle = Settle {
                    action_ids: vec![action_id],
                    state: ActionState::Succeeded,
                    message: "",
                };
                let applied = self
                    .applied(ctx, view, id, job, settle, &records, done)
                    .await?;
                Ok(Some(applied))
            }
            Err(e) if e.maybe_applied() => {
                tracing::warn!(channel_id = id, error = %e, attempt = job.sends, "outcome unknown; waiting for an observation before anything is sent again");
                // Held in memory before anything is written: even if the database fails now,
                // nothing is sent on this channel until the request is settled.
                let land_by = match &e {
                    ApiError::Transient {
                        http_status: Some(_),
                        ..
                    }
                    | ApiError::Malformed { .. } => {
                        self.landing.after_gateway_answer(sent_at, done)
                    }
                    // A timeout or a broken connection: nobody answered.
                    _ => self.landing.after_send(sent_at),
                };
                job.unclear = Some(Unclear {
                    action_ids: vec![action_id],
                    sent_at,
                    land_by,
                });
                job.next_at = done + self.backoff(job.sends, &e);
                self.slot(id).job = Some(job.clone());
                ctx.store
                    .finish_action(action_id, &failure(ActionState::Ambiguous, &e), &[], done)
                    .await?;
                self.note_failure(ctx, id, &mut job, &e, true, done).await?;
                self.slot(id).job = Some(job);
                Ok(None)
            }
            Err(e) => {
                job.next_at = done + self.backoff(job.sends, &e);
                self.slot(id).job = Some(job.clone());
                ctx.store
                    .finish_action(action_id, &failure(ActionState::Failed, &e), &[], done)
                    .await?;
                ctx.notes.api_error(done, Some(id), &e).await?;
                match (&e, job.op) {
                    (ApiError::Rejected { .. }, Op::Start) => {
                        let blocked = view.get(id).map(|s| StartBlock {
                            status: s.channel.channel_status.clone(),
                            is_recording: s.channel.is_recording,
                        });
                        self.slot(id).blocked = blocked.or(Some(StartBlock {
                            status: ChannelStatus::Unknown(String::new()),
                            is_recording: false,
                        }));
                        if let Some(occ) = job.occurrence_id {
                            note_occurrence(
                                ctx.store,
                                occ,
                                OccurrenceReason::StartRejected,
                                &format!("startRecord rejected: {e}"),
                                done,
                            )
                            .await?;
                        }
                    }
                    (ApiError::Rejected { .. }, Op::Stop(_)) => {
                        // Perhaps it is not recording any more: look before sending again.
                        job.unclear = Some(Unclear {
                            action_ids: Vec::new(),
                            sent_at,
                            land_by: sent_at,
                        });
                    }
                    _ => {}
                }
                self.slot(id).job = Some(job.clone());
                self.note_failure(ctx, id, &mut job, &e, true, done).await?;
                self.slot(id).job = Some(job);
                Ok(None)
            }
        }
    }

    /// The wait after the `n`-th failure: exponential with full jitter within a burst of
    /// `max_attempts`, `max_backoff` after it; never shorter than a `Retry-After`.
    fn backoff(&self, n: u32, e: &ApiError) -> i64 {
        let floor = match e {
            ApiError::RateLimited { retry_after, .. } => *retry_after,
            // A repeated authentication failure is an alert, not a retry storm.
            ApiError::Unauthorized { .. } => Some(self.policy.max_backoff),
            _ => None,
        };
        let wait = if n < self.policy.max_attempts {
            self.policy.delay(n, rand::random(), floor)
        } else {
            floor.map_or(self.policy.max_backoff, |f| f.max(self.policy.max_backoff))
        };
        i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Adds a failure to the job's outage: the row is opened or updated, and the one `failed`
    /// event is written when the burst is used up (or at once for a refused start).
    async fn note_failure<A: LiveStation>(
        &self,
        ctx: &Ctx<'_, A>,
        id: &str,
        job: &mut Job,
        e: &ApiError,
        sent: bool,
        now: i64,
    ) -> Result<(), EngineError> {
        let what = if sent {
            e.to_string()
        } else {
            format!("reading the channel before {}: {e}", job.op.name())
        };
        let outage = match &mut job.outage {
            Some(o) => {
                o.last_error = what;
                o
            }
            None => job.outage.insert(Outage {
                row: None,
                first_error: what.clone(),
                last_error: what,
                told: false,
            }),
        };
        match outage.row {
            Some(row) => {
                ctx.store
                    .update_outage(row, i64::from(job.sends), &outage.last_error, now)
                    .await?
            }
            None => {
                outage.row = Some(
                    ctx.store
                        .open_outage(&NewOutage {
                            channel_id: id.to_string(),
                            operation: job.op.mutation(),
                            trigger: job.trigger.clone(),
                            since: job.since,
                            attempts: i64::from(job.sends),
                            first_error: outage.first_error.clone(),
                            now,
                        })
                        .await?,
                )
            }
        }
        let rejected = matches!(e, ApiError::Rejected { .. }) && job.op == Op::Start;
        if outage.told || !(rejected || job.sends >= self.policy.max_attempts) {
            return Ok(());
        }
        outage.told = true;
        let message = if rejected {
            format!(
                "startRecord ({}) rejected by Live Station: {e}; not retried until the channel's state changes",
                job.trigger
            )
        } else {
            format!(
                "{} ({}) has not succeeded after {} attempt(s) in {}: first error: {}; latest: {}; lsrecd keeps trying every {} while {}",
                job.op.name(),
                job.trigger,
                job.sends,
                human_ms(now - job.since),
                outage.first_error,
                outage.last_error,
                humantime::format_duration(self.policy.max_backoff),
                match job.op {
                    Op::Start => "the claim holds",
                    Op::Stop(_) => "the recording runs",
                }
            )
        };
        ctx.notes
            .event(now, EventKind::Failed, Some(id), None, &message)
            .await?;
        if let (Op::Start, Some(occ)) = (job.op, job.occurrence_id)
            && !rejected
        {
            note_occurrence(
                ctx.store,
                occ,
                OccurrenceReason::StartFailed,
                &format!("startRecord keeps failing: {e}"),
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// The job's reason ended before it took effect: close its story. A start whose channel
    /// records anyway (started elsewhere) is not an unrecorded claim.
    async fn abandon<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        id: &str,
        job: Job,
        recording: bool,
        now: i64,
    ) -> Result<(), EngineError> {
        let Some(outage) = job.outage else {
            return Ok(());
        };
        let recorded = job.op == Op::Start && recording;
        if let Some(row) = outage.row {
            let how = if recorded {
                OutageOutcome::Done
            } else {
                OutageOutcome::Abandoned
            };
            ctx.store
                .close_outage(row, how, i64::from(job.sends), now)
                .await?;
        }
        match job.op {
            Op::Start if !recorded => {
                let message = format!(
                    "the claim ({}) ended {} after it began, without a recording: {} attempt(s); first error: {}; latest: {}",
                    job.trigger,
                    human_ms(now - job.since),
                    job.sends,
                    outage.first_error,
                    outage.last_error
                );
                ctx.notes
                    .event(now, EventKind::Unrecorded, Some(id), None, &message)
                    .await
            }
            Op::Start => Ok(()),
            // The recording ended by itself (the release that follows says so), or a claim
            // holds it again.
            Op::Stop(_) => {
                tracing::info!(
                    channel_id = id,
                    attempts = job.sends,
                    "stopRecord no longer needed"
                );
                Ok(())
            }
        }
    }

    /// The start or stop took effect: commit the outcome with the records and the ownership
    /// change, then close the outage and tell. If the commit fails, the outcome is kept and
    /// written before anything else happens on the channel.
    #[allow(clippy::too_many_arguments)]
    async fn applied<A: LiveStation>(
        &mut self,
        ctx: &Ctx<'_, A>,
        view: &mut ChannelView,
        id: &str,
        job: Job,
        settle: Settle,
        records: &[Record],
        now: i64,
    ) -> Result<Applied, EngineError> {
        let mut out = outcome(settle.state, settle.message);
        if settle.state == ActionState::Succeeded {
            out.http_status = Some(200);
        }
        match job.op {
            Op::Start => out.open_owned = Some(job.trigger.clone()),
            Op::Stop(reason) => out.close_owned = Some(reason.as_str().to_string()),
        }
        self.slot(id).job = None;
        view.set_recording(id, job.op == Op::Start);
        let written = match settle.action_ids.split_first() {
            Some((first, rest)) => {
                let mut result = ctx.store.finish_action(*first, &out, records, now).await;
                for other in rest {
                    if result.is_ok() {
                        result = ctx.store.finish_action(*other, &out, &[], now).await;
                    }
                }
                result.map(|_| ())
            }
            // Nothing journaled carries it (a refused stop found to have stopped after all).
            None => match job.op {
                Op::Start => ctx
                    .store
                    .open_owned_recording(id, &job.trigger, None, now)
                    .await
                    .map(|_| ()),
                Op::Stop(reason) => ctx
                    .store
                    .close_owned_recording(id, reason.as_str(), now)
                    .await
                    .map(|_| ()),
            },
        };
        if let Err(e) = written {
            // The call took effect: that must not be lost.
            self.unwritten.push(Unwritten {
                channel_id: id.to_string(),
                action_ids: settle.action_ids,
                outcome: out,
                records: records.to_vec(),
                job,
                at: now,
            });
            return Err(e.into());
        }
        after_applied(ctx, id, &job, settle.state, records, now).await
    }
}

/// How an applied call is journaled.
struct Settle {
    /// The rows it settles; empty when none carries it.
    action_ids: Vec<i64>,
    state: ActionState,
    message: &'static str,
}

/// What follows a committed start or stop: the outage closed, the occurrence moved, metrics,
/// the event.
async fn after_applied<A: LiveStation>(
    ctx: &Ctx<'_, A>,
    id: &str,
    job: &Job,
    state: ActionState,
    records: &[Record],
    now: i64,
) -> Result<Applied, EngineError> {
    if let Some(row) = job.outage.as_ref().and_then(|o| o.row) {
        ctx.store
            .close_outage(row, OutageOutcome::Done, i64::from(job.sends), now)
            .await?;
    }
    let ids = if records.is_empty() {
        "are read next".to_string()
    } else {
        record_ids(records)
    };
    let observed = if state == ActionState::Reconciled {
        ", confirmed by observation after an unclear answer"
    } else {
        ""
    };
    match job.op {
        Op::Start => {
            if let Some(occ) = job.occurrence_id
                && let Err(e) = ctx
                    .store
                    .set_occurrence_state(
                        occ,
                        OccurrenceState::Recording,
                        OccurrenceReason::Recording,
                        Some("recording started"),
                        now,
                    )
                    .await
            {
                tracing::debug!(occurrence = occ, error = %e, "occurrence not moved to RECORDING");
            }
            if let Some(m) = ctx.notes.metrics() {
                m.recording_started(&job.trigger.as_text());
                if !job.inherited {
                    m.time_to_recording(
                        job.trigger.kind(),
                        (now - job.since).max(0) as f64 / 1000.0,
                    );
                }
            }
            let (kind, text) = if job.inherited {
                (
                    EventKind::Adopted,
                    format!(
                        "startRecord of a previous run (or of an earlier leader) took effect; recording adopted ({}); records {ids}",
                        job.trigger
                    ),
                )
            } else {
                let attempts = match job.sends {
                    0 | 1 => String::new(),
                    n => format!(" and {n} attempts"),
                };
                (
                    EventKind::Started,
                    format!(
                        "recording started ({}) {} after the claim began{attempts}{observed}; records {ids}",
                        job.trigger,
                        human_ms(now - job.since),
                    ),
                )
            };
            ctx.notes
                .event(
                    now,
                    kind,
                    Some(id),
                    records.first().map(|r| r.record_id),
                    &text,
                )
                .await?;
            Ok(Applied::Started)
        }
        Op::Stop(reason) => {
            if reason == StopReason::MaxDuration {
                ctx.store
                    .end_manual_claim(id, "max_duration reached", now)
                    .await?;
            }
            let attempts = match job.sends {
                0 | 1 => String::new(),
                n => format!(" after {n} attempts"),
            };
            ctx.notes
                .event(
                    now,
                    EventKind::Stopped,
                    Some(id),
                    records.first().map(|r| r.record_id),
                    &format!(
                        "recording stopped ({}){attempts}{observed}; records {ids}",
                        reason.as_str()
                    ),
                )
                .await?;
            Ok(Applied::Stopped(reason))
        }
    }
}

/// Makes `row` (a previous run's unfinished action) the channel's job.
async fn replace_job(
    slot: &mut Slot,
    row: &ActionRow,
    op: Op,
    land_by: i64,
    store: &Store,
    now: i64,
) -> Result<(), EngineError> {
    if let Some(old) = slot.job.take()
        && let Some(u) = old.unclear
    {
        for id in u.action_ids {
            store
                .finish_action(
                    id,
                    &outcome(
                        ActionState::Failed,
                        "outcome unknown; superseded by a later action on the channel",
                    ),
                    &[],
                    now,
                )
                .await?;
        }
    }
    let mut job = Job::new(
        op,
        row.trigger.clone(),
        row.occurrence_id,
        row.requested_at,
        now,
    );
    job.sends = u32::try_from(row.attempt.max(1)).unwrap_or(1);
    job.inherited = true;
    job.unclear = Some(Unclear {
        action_ids: vec![row.id],
        sent_at: row.requested_at,
        land_by,
    });
    slot.job = Some(job);
    Ok(())
}

/// The recording lsrecd started has ended by itself (the stream stopped, or someone else
/// stopped it): close the bookkeeping.
async fn release<A: LiveStation>(ctx: &Ctx<'_, A>, id: &str, now: i64) -> Result<(), EngineError> {
    ctx.store
        .close_owned_recording(id, "channel stopped recording", now)
        .await?;
    ctx.notes
        .event(
            now,
            EventKind::Ended,
            Some(id),
            None,
            "recording ended without a stop from lsrecd (the stream stopped or it was stopped elsewhere)",
        )
        .await
}

/// Whether a record on the channel began at or after `since` (engine time), in the server's
/// clock: the trace a start sent at `since` leaves even when its recording has ended since. The
/// skew estimate comes from one-second `Date` headers, hence the 1.5 s allowance; a record lsrecd
/// had already seen before `since` belongs to an earlier recording, whatever its time says.
async fn started_since<A: LiveStation>(ctx: &Ctx<'_, A>, records: &[Record], since: i64) -> bool {
    let skew = ctx
        .api
        .clock_skew()
        .map(|d| d.num_milliseconds())
        .unwrap_or(0);
    for r in records {
        if r.record_begin_time.is_none_or(|t| t < since + skew - 1_500) {
            continue;
        }
        match ctx.store.record(r.record_id).await {
            Ok(known) if known.first_seen_at < since => continue,
            // Unknown before the request (or unreadable: then "applied", which never resends).
            _ => return true,
        }
    }
    false
}

/// Keeps an open occurrence's state and replaces its reason and detail (why it is not recording
/// yet).
async fn note_occurrence(
    store: &Store,
    id: i64,
    reason: OccurrenceReason,
    detail: &str,
    now: i64,
) -> Result<(), EngineError> {
    let row = store.occurrence(id).await?;
    if !row.state.is_final() {
        store
            .set_occurrence_state(id, row.state, reason, Some(detail), now)
            .await?;
    }
    Ok(())
}

fn outcome(state: ActionState, message: &str) -> ActionOutcome {
    ActionOutcome {
        error_message: (!message.is_empty()).then(|| message.to_string()),
        ..ActionOutcome::new(state)
    }
}

fn failure(state: ActionState, e: &ApiError) -> ActionOutcome {
    ActionOutcome {
        http_status: e.http_status(),
        error_code: e.error_code().map(str::to_string),
        error_message: Some(e.to_string()),
        ..ActionOutcome::new(state)
    }
}

/// "27195 MP4, 27196 HLS", or "(none returned)".
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

#[cfg(test)]
mod tests {
    //! The action part against the in-memory Live Station, with engine time passed explicitly:
    //! every outcome class of a start, and what the journal and the events say about it.

    use std::time::Duration;

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::engine::decide::{self, Claim, ClaimSource, Owned};
    use crate::engine::fence::{Fence, Fenced, Pending};
    use crate::engine::notes::Notes;
    use crate::engine::{Ctx, TickClock};
    use crate::livestation::Operation;
    use crate::livestation::memory::{self, Behaviour, MemoryLiveStation};

    const CH: &str = "ls-unit";
    /// `api.timeout` 2 s + `api.landing_margin` 5 s, and the few milliseconds a step takes
    /// between the start of its tick and the moment its request leaves.
    const LAND: i64 = 7_000 + 100;

    struct Bench {
        _dir: tempfile::TempDir,
        store: Store,
        api: Arc<MemoryLiveStation>,
        notes: Notes,
        view: ChannelView,
        actions: Actions,
        /// Whether a live claim holds the channel.
        claim: bool,
        fence: Arc<FakeFence>,
        /// How old the observation is when it is taken (ms): 0 is a page just read; older
        /// ones make a start read the channel first.
        listing_age: i64,
    }

    /// A fence under the test's control. It records what it was asked and, at that moment,
    /// whether the call's intent was committed and how many mutating calls had been sent.
    #[derive(Default)]
    struct FakeFence {
        refuse: AtomicBool,
        standby: AtomicBool,
        asked: Mutex<Vec<Asked>>,
        /// The store and API to look at when asked.
        watch: Mutex<Option<(Store, Arc<MemoryLiveStation>)>>,
    }

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Asked {
        operation: Mutation,
        channel_id: String,
        trigger: String,
        intent_pending: bool,
        sent_before: u64,
    }

    impl Fence for FakeFence {
        fn may_act(&self) -> bool {
            !self.standby.load(Ordering::SeqCst)
        }

        fn check<'a>(&'a self, call: Call<'a>) -> Pending<'a, Result<(), Fenced>> {
            Box::pin(async move {
                let watch = self.watch.lock().unwrap().clone();
                let (intent_pending, sent_before) = match watch {
                    Some((store, api)) => (
                        store
                            .unfinished_actions()
                            .await
                            .expect("actions")
                            .iter()
                            .any(|a| {
                                a.state == ActionState::Pending && a.operation == call.operation
                            }),
                        api.calls(Operation::StartRecord) + api.calls(Operation::StopRecord),
                    ),
                    None => (false, 0),
                };
                self.asked.lock().unwrap().push(Asked {
                    operation: call.operation,
                    channel_id: call.channel_id.to_string(),
                    trigger: call.trigger.as_text(),
                    intent_pending,
                    sent_before,
                });
                if self.refuse.load(Ordering::SeqCst) {
                    Err(Fenced::Superseded)
                } else {
                    Ok(())
                }
            })
        }
    }

    impl Bench {
        async fn new(max_attempts: u32) -> Bench {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open(&dir.path().join("unit.db"))
                .await
                .expect("database");
            let api = Arc::new(MemoryLiveStation::new(0));
            api.add_channel(CH, true);
            let fence = Arc::new(FakeFence::default());
            *fence.watch.lock().unwrap() = Some((store.clone(), api.clone()));
            let policy = RetryPolicy {
                max_attempts,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(4),
            };
            let landing = Landing {
                timeout_ms: 2_000,
                margin_ms: 5_000,
            };
            Bench {
                notes: Notes::new(store.clone()),
                store,
                _dir: dir,
                api,
                view: ChannelView::default(),
                listing_age: 0,
                actions: Actions::new(policy, landing),
                claim: true,
                fence,
            }
        }

        /// Live Station is observed at `now` (as a page of the channel list would).
        async fn observe(&mut self, now: i64) -> Option<Applied> {
            self.api.set_time(now);
            let ch = self.api.channel(CH).expect("the channel exists");
            self.view.apply(ch.borrowed(), now - self.listing_age, now);
            let clock = TickClock::new(now);
            let ctx = Ctx {
                api: &self.api,
                store: &self.store,
                notes: &self.notes,
                clock: &clock,
                fence: self.fence.as_ref(),
            };
            self.actions
                .observed(&ctx, &mut self.view, CH, now)
                .await
                .expect("observed")
        }

        /// One decision and step for the channel.
        async fn step(&mut self, now: i64) -> Option<Applied> {
            self.api.set_time(now);
            let owned = self
                .store
                .owned_recordings_open()
                .await
                .expect("owned")
                .into_iter()
                .find(|o| o.channel_id == CH)
                .map(|o| Owned {
                    trigger: o.trigger,
                    started_at: o.started_at,
                });
            let state = ChannelState {
                channel_id: CH.into(),
                observed: self.view.get(CH).map(|s| s.observed()),
                owned,
                claims: if self.claim {
                    vec![Claim {
                        source: ClaimSource::Live,
                        start: 0,
                        end: None,
                    }]
                } else {
                    vec![]
                },
                max_duration_ms: None,
                spent_before: None,
                start_blocked: false,
            };
            let desired = decide::decide(&state, now);
            let clock = TickClock::new(now);
            let ctx = Ctx {
                api: &self.api,
                store: &self.store,
                notes: &self.notes,
                clock: &clock,
                fence: self.fence.as_ref(),
            };
            self.actions
                .step(&ctx, &mut self.view, &state, desired, now)
                .await
                .expect("step")
        }

        /// What the engine does in a tick for one channel: observe, then decide and act.
        async fn tick(&mut self, now: i64) -> Option<Applied> {
            let settled = self.observe(now).await;
            let acted = self.step(now).await;
            settled.or(acted)
        }

        /// `(operation, state, attempt)` of every journaled action, in order.
        async fn journal(&self) -> Vec<(String, String, i64)> {
            sqlx::query_as("SELECT operation, state, attempt FROM actions ORDER BY id")
                .fetch_all(self.store.reader())
                .await
                .expect("actions")
        }

        async fn events(&self, kind: EventKind) -> Vec<String> {
            sqlx::query_scalar("SELECT message FROM events WHERE kind = ?1 ORDER BY id")
                .bind(kind.as_str())
                .fetch_all(self.store.reader())
                .await
                .expect("events")
        }

        async fn owned(&self) -> usize {
            self.store
                .owned_recordings_open()
                .await
                .expect("owned")
                .len()
        }

        async fn open_outages(&self) -> usize {
            self.store.open_outages().await.expect("outages").len()
        }
    }

    fn start(state: &str, attempt: i64) -> (String, String, i64) {
        ("startRecord".into(), state.into(), attempt)
    }

    #[tokio::test]
    async fn a_start_on_a_channel_just_observed_is_sent_without_reading_it_again() {
        let mut b = Bench::new(4).await;
        assert_eq!(b.tick(1_000).await, Some(Applied::Started));
        assert_eq!(b.api.calls(Operation::GetChannel), 0);
        assert_eq!(b.journal().await, vec![start("SUCCEEDED", 1)]);
    }

    #[tokio::test]
    async fn a_start_on_a_channel_just_observed_recording_is_not_sent() {
        let mut b = Bench::new(4).await;
        // Recording already when observed (someone else's start): nothing is sent.
        let permit = b.api.ready().await;
        let _ = b.api.start_record(CH, permit).await;
        b.claim = true;
        b.tick(1_000).await;
        assert_eq!(
            b.api.calls(Operation::StartRecord),
            1,
            "only the one made here"
        );
    }

    #[tokio::test]
    async fn a_start_that_succeeds_is_journaled_owned_and_told_once() {
        let mut b = Bench::new(4).await;
        b.listing_age = 2_000;
        assert_eq!(b.tick(1_000).await, Some(Applied::Started));
        assert_eq!(b.journal().await, vec![start("SUCCEEDED", 1)]);
        assert_eq!(b.owned().await, 1);
        assert_eq!(b.api.calls(Operation::GetChannel), 1, "the pre-start read");
        let started = b.events(EventKind::Started).await;
        assert_eq!(started.len(), 1);
        // The claim began when the channel was first seen publishing, in this very tick.
        assert!(
            started[0].contains("0s after the claim began"),
            "{started:?}"
        );
        // Recording now: nothing more is sent.
        b.tick(2_000).await;
        assert_eq!(b.api.calls(Operation::StartRecord), 1);
    }

    #[tokio::test]
    async fn a_refused_start_is_told_once_and_not_sent_again_until_the_channel_changes() {
        let mut b = Bench::new(4).await;
        b.api
            .script(Operation::StartRecord, Behaviour::Fail(memory::rejected()));
        for t in 1..=10 {
            b.tick(t * 1_000).await;
        }
        assert_eq!(b.journal().await, vec![start("FAILED", 1)]);
        assert_eq!(b.events(EventKind::Failed).await.len(), 1);
        assert_eq!(
            b.open_outages().await,
            1,
            "a claim that should record and does not"
        );
        b.api.set_publishing(CH, false);
        b.tick(11_000).await;
        b.api.set_publishing(CH, true);
        assert_eq!(b.tick(12_000).await, Some(Applied::Started));
        assert_eq!(b.api.starts_applied(), 1);
        assert_eq!(
            b.events(EventKind::Unrecorded).await.len(),
            1,
            "the first claim ended"
        );
        assert_eq!(b.open_outages().await, 0);
    }

    #[tokio::test]
    async fn an_unclear_start_that_took_effect_is_adopted_by_the_next_observation_not_resent() {
        let mut b = Bench::new(4).await;
        b.api.script(
            Operation::StartRecord,
            Behaviour::ApplyThenFail(memory::server_error(502)),
        );
        assert_eq!(b.tick(1_000).await, None);
        assert_eq!(b.journal().await, vec![start("AMBIGUOUS", 1)]);
        assert_eq!(b.tick(2_000).await, Some(Applied::Started));
        assert_eq!(b.journal().await, vec![start("RECONCILED", 1)]);
        assert_eq!(b.api.calls(Operation::StartRecord), 1);
        assert_eq!(b.api.starts_while_recording(), 0);
        assert_eq!(
            b.owned().await,
            1,
            "lsrecd's own: stopped when the claim ends"
        );
        assert_eq!(
            b.events(EventKind::Failed).await.len(),
            0,
            "not an outage worth a page"
        );
        assert_eq!(b.open_outages().await, 0);
    }

    #[tokio::test]
    async fn an_unclear_start_that_did_not_take_effect_is_sent_again_only_after_it_could_no_longer_land()
     {
        let mut b = Bench::new(4).await;
        b.api
            .script(Operation::StartRecord, Behaviour::Fail(memory::timeout()));
        b.tick(1_000).await;
        // Every observation before land-by shows it not recording; nothing is sent.
        for t in 2..=7 {
            b.tick(t * 1_000).await;
            assert_eq!(b.api.calls(Operation::StartRecord), 1, "at {t} s");
        }
        assert_eq!(b.journal().await, vec![start("AMBIGUOUS", 1)]);
        // Requested at or after 1 s + 7 s: it can no longer land.
        assert_eq!(b.tick(1_000 + LAND).await, Some(Applied::Started));
        assert_eq!(
            b.journal().await,
            vec![start("FAILED", 1), start("SUCCEEDED", 2)]
        );
        assert_eq!(b.api.starts_applied(), 1);
        assert!(
            b.events(EventKind::Started).await[0].contains("and 2 attempts"),
            "{:?}",
            b.events(EventKind::Started).await
        );
    }

    #[tokio::test]
    async fn an_unclear_start_answered_by_a_5xx_can_no_longer_land_a_margin_after_the_answer() {
        let mut b = Bench::new(4).await;
        b.api.script(
            Operation::StartRecord,
            Behaviour::Fail(memory::server_error(503)),
        );
        b.tick(1_000).await;
        // Answered at once: the gateway let go of it then; the backend may apply it within
        // `landing_margin` (5 s) of that, not a client timeout later.
        for t in 2..=5 {
            b.tick(t * 1_000).await;
            assert_eq!(b.api.calls(Operation::StartRecord), 1, "at {t} s");
        }
        assert_eq!(b.tick(1_000 + 5_000 + 100).await, Some(Applied::Started));
        assert_eq!(
            b.journal().await,
            vec![start("FAILED", 1), start("SUCCEEDED", 2)]
        );
    }

    #[tokio::test]
    async fn a_start_that_lands_after_the_client_gave_up_is_adopted_not_duplicated() {
        let mut b = Bench::new(4).await;
        b.api.script(
            Operation::StartRecord,
            Behaviour::FailThenApplyLater(memory::server_error(504)),
        );
        b.tick(1_000).await;
        for t in 2..=5 {
            b.tick(t * 1_000).await;
        }
        assert_eq!(b.api.calls(Operation::StartRecord), 1);
        // The backend applies it 5 s after it was sent, well after the client's timeout.
        assert_eq!(b.api.land_late_requests(), 1);
        assert_eq!(b.tick(6_000).await, Some(Applied::Started));
        for t in 7..=20 {
            b.tick(t * 1_000).await;
        }
        assert_eq!(b.api.calls(Operation::StartRecord), 1);
        assert_eq!(b.api.starts_while_recording(), 0);
        assert_eq!(b.journal().await, vec![start("RECONCILED", 1)]);
        assert_eq!(b.owned().await, 1);
    }

    #[tokio::test]
    async fn a_started_recording_that_already_ended_when_observed_is_journaled_as_applied() {
        let mut b = Bench::new(4).await;
        b.api.script(
            Operation::StartRecord,
            Behaviour::FailThenApplyLater(memory::timeout()),
        );
        b.tick(1_000).await;
        b.api.set_time(3_000);
        b.api.land_late_requests();
        // The stream ends before lsrecd looks again: the record is the only trace.
        b.api.set_publishing(CH, false);
        b.tick(1_000 + LAND).await;
        assert_eq!(b.journal().await, vec![start("RECONCILED", 1)]);
        assert_eq!(b.api.starts_applied(), 1);
    }

    #[tokio::test]
    async fn reads_are_not_attempts_and_a_used_up_burst_is_told_once_then_retried_quietly() {
        let mut b = Bench::new(3).await;
        b.listing_age = 2_000;
        b.api.script(
            Operation::GetChannel,
            Behaviour::Fail(memory::server_error(503)),
        );
        b.api.script(
            Operation::GetChannel,
            Behaviour::Fail(memory::server_error(503)),
        );
        for _ in 0..5 {
            b.api.script(
                Operation::StartRecord,
                Behaviour::Fail(memory::rate_limited(Duration::from_secs(1))),
            );
        }
        let mut now = 1_000;
        while b.api.starts_applied() == 0 {
            b.tick(now).await;
            now += 500;
            assert!(now < 120_000, "never recorded");
        }
        let journal = b.journal().await;
        assert_eq!(
            journal.len(),
            6,
            "five refused sends and the one that worked: {journal:?}"
        );
        assert!(journal[..5].iter().all(|(_, s, _)| s == "FAILED"));
        assert_eq!(journal[5], start("SUCCEEDED", 6));
        let failed = b.events(EventKind::Failed).await;
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].contains("after 3 attempt(s)"), "{failed:?}");
        assert!(
            failed[0].contains("reading the channel"),
            "first error kept: {failed:?}"
        );
        let started = b.events(EventKind::Started).await;
        assert!(started[0].contains("and 6 attempts"), "{started:?}");
        assert_eq!(b.open_outages().await, 0);
        let outage: (String, i64) = sqlx::query_as("SELECT outcome, attempts FROM outages")
            .fetch_one(b.store.reader())
            .await
            .expect("one outage");
        assert_eq!(outage, ("done".to_string(), 6));
    }

    #[tokio::test]
    async fn a_claim_that_ends_while_its_start_keeps_failing_closes_its_story_once() {
        let mut b = Bench::new(2).await;
        for _ in 0..20 {
            b.api.script(
                Operation::StartRecord,
                Behaviour::Fail(memory::rate_limited(Duration::from_secs(1))),
            );
        }
        for t in 1..=20 {
            b.tick(t * 1_000).await;
        }
        assert_eq!(b.events(EventKind::Failed).await.len(), 1);
        b.claim = false;
        b.tick(21_000).await;
        b.tick(22_000).await;
        assert_eq!(b.events(EventKind::Unrecorded).await.len(), 1);
        assert_eq!(b.events(EventKind::Failed).await.len(), 1);
        assert_eq!(b.open_outages().await, 0);
    }

    #[tokio::test]
    async fn a_previous_runs_unfinished_start_holds_the_channel_until_it_can_no_longer_land() {
        let mut b = Bench::new(4).await;
        let id = b
            .store
            .begin_action(&NewAction {
                channel_id: CH.into(),
                operation: Mutation::StartRecord,
                trigger: Trigger::Live,
                attempt: 1,
                occurrence_id: None,
                record_ids: vec![],
                now: 1_000,
            })
            .await
            .expect("intent");
        b.actions
            .load_unfinished(&b.store, 2_000)
            .await
            .expect("loaded");
        // PENDING: its request may have left up to one timeout after the intent.
        for t in 2..=9 {
            b.tick(t * 1_000).await;
            assert_eq!(b.api.calls(Operation::StartRecord), 0, "at {t} s");
        }
        // The first observation requested after 1 s + 2 × 2 s + 5 s settles it, and the claim
        // is served in the same tick, once.
        assert_eq!(b.tick(1_000 + 2_000 + 7_000).await, Some(Applied::Started));
        assert_eq!(
            b.store.action(id).await.expect("row").state,
            ActionState::Failed
        );
        assert_eq!(
            b.journal().await,
            vec![start("FAILED", 1), start("SUCCEEDED", 1)]
        );
        assert_eq!(b.api.starts_applied(), 1);
    }

    #[tokio::test]
    async fn a_previous_runs_start_found_recording_is_adopted() {
        let mut b = Bench::new(4).await;
        b.store
            .begin_action(&NewAction {
                channel_id: CH.into(),
                operation: Mutation::StartRecord,
                trigger: Trigger::Manual,
                attempt: 1,
                occurrence_id: None,
                record_ids: vec![],
                now: 1_000,
            })
            .await
            .expect("intent");
        // The call reached Live Station, then the process died.
        let permit = b.api.ready().await;
        let _ = b.api.start_record(CH, permit).await;
        b.actions
            .load_unfinished(&b.store, 2_000)
            .await
            .expect("loaded");
        assert_eq!(b.tick(2_000).await, Some(Applied::Started));
        assert_eq!(b.journal().await, vec![start("RECONCILED", 1)]);
        assert_eq!(b.events(EventKind::Adopted).await.len(), 1);
        assert_eq!(b.api.starts_applied(), 1);
    }

    #[tokio::test]
    async fn the_fence_is_asked_after_the_intent_is_committed_and_before_the_request_leaves() {
        let mut b = Bench::new(4).await;
        assert_eq!(b.tick(1_000).await, Some(Applied::Started));
        let asked = b.fence.asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            vec![Asked {
                operation: Mutation::StartRecord,
                channel_id: CH.into(),
                trigger: "live".into(),
                intent_pending: true,
                sent_before: 0,
            }]
        );
        b.claim = false;
        assert_eq!(
            b.tick(2_000).await,
            Some(Applied::Stopped(StopReason::ClaimsEnded))
        );
        let asked = b.fence.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[1].operation, Mutation::StopRecord);
        assert!(asked[1].intent_pending);
        assert_eq!(asked[1].sent_before, 1, "only the start had left");
    }

    #[tokio::test]
    async fn a_start_the_fence_refuses_is_not_sent_and_its_intent_is_closed_as_not_sent() {
        let mut b = Bench::new(4).await;
        b.fence.refuse.store(true, Ordering::SeqCst);
        assert_eq!(b.tick(1_000).await, None);
        assert_eq!(b.api.calls(Operation::StartRecord), 0);
        assert_eq!(b.journal().await, vec![start("FAILED", 1)]);
        let message: Option<String> =
            sqlx::query_scalar("SELECT error_message FROM actions ORDER BY id LIMIT 1")
                .fetch_one(b.store.reader())
                .await
                .expect("the intent");
        assert_eq!(
            message.as_deref(),
            Some("not sent: the leader key is no longer this instance's")
        );
        assert_eq!(b.events(EventKind::Failed).await.len(), 0, "not an outage");
        assert_eq!(b.open_outages().await, 0);
        // Allowed again (leading once more): the claim is served by a new job.
        b.fence.refuse.store(false, Ordering::SeqCst);
        assert_eq!(b.tick(2_000).await, Some(Applied::Started));
        assert_eq!(b.api.starts_applied(), 1);
    }

    #[tokio::test]
    async fn an_instance_that_may_not_act_neither_journals_nor_reads_nor_sends() {
        let mut b = Bench::new(4).await;
        b.fence.standby.store(true, Ordering::SeqCst);
        assert_eq!(b.tick(1_000).await, None);
        assert_eq!(b.journal().await, vec![]);
        assert_eq!(b.api.calls(Operation::GetChannel), 0);
        assert_eq!(b.api.calls(Operation::StartRecord), 0);
        assert!(b.fence.asked.lock().unwrap().is_empty());
    }

    fn note(at: i64) -> Note {
        Note {
            channel_id: CH.into(),
            trigger: Trigger::Schedule("news".into()),
            at,
            instance: "other".into(),
        }
    }

    #[tokio::test]
    async fn an_earlier_leaders_start_is_awaited_until_it_can_no_longer_land_then_sent_once() {
        let mut b = Bench::new(4).await;
        assert_eq!(b.actions.inherit(&[note(500)], 6_000, 1_000), 1);
        for t in 1..=5 {
            assert_eq!(b.tick(t * 1_000).await, None, "at {t} s");
        }
        assert_eq!(b.api.calls(Operation::StartRecord), 0);
        assert_eq!(
            b.journal().await,
            vec![],
            "nothing of this instance's was sent"
        );
        assert_eq!(b.tick(6_000).await, Some(Applied::Started));
        assert_eq!(b.api.starts_applied(), 1);
        assert_eq!(b.journal().await, vec![start("SUCCEEDED", 1)]);
    }

    #[tokio::test]
    async fn an_earlier_leaders_start_that_took_effect_is_adopted_not_sent_again() {
        let mut b = Bench::new(4).await;
        // The earlier leader's request reached Live Station.
        let permit = b.api.ready().await;
        let _ = b.api.start_record(CH, permit).await;
        b.actions.inherit(&[note(500)], 60_000, 1_000);
        assert_eq!(b.tick(1_000).await, Some(Applied::Started));
        assert_eq!(b.api.calls(Operation::StartRecord), 1);
        assert_eq!(
            b.owned().await,
            1,
            "stopped by this instance when the claim ends"
        );
        let adopted = b.events(EventKind::Adopted).await;
        assert_eq!(adopted.len(), 1);
        assert!(adopted[0].contains("schedule:news"), "{adopted:?}");
        b.claim = false;
        assert_eq!(
            b.tick(2_000).await,
            Some(Applied::Stopped(StopReason::ClaimsEnded))
        );
    }

    #[tokio::test]
    async fn standing_down_drops_jobs_waiting_to_send_and_keeps_requests_that_may_land() {
        let mut b = Bench::new(4).await;
        b.api.script(
            Operation::StartRecord,
            Behaviour::Fail(memory::rate_limited(Duration::from_secs(1))),
        );
        b.tick(1_000).await;
        assert_eq!(b.open_outages().await, 1);
        assert_eq!(b.actions.starting().len(), 1);
        b.actions
            .stand_down(&b.store, 2_000)
            .await
            .expect("stand down");
        assert!(b.actions.starting().is_empty());
        assert_eq!(b.open_outages().await, 0, "closed, as abandoned");
        assert_eq!(b.events(EventKind::Unrecorded).await.len(), 0);

        // A request that may still land keeps its job through a stand-down.
        b.api.script(
            Operation::StartRecord,
            Behaviour::FailThenApplyLater(memory::server_error(504)),
        );
        b.tick(3_000).await;
        assert_eq!(b.actions.awaiting_observation(), vec![CH.to_string()]);
        b.actions
            .stand_down(&b.store, 4_000)
            .await
            .expect("stand down");
        assert_eq!(b.actions.awaiting_observation(), vec![CH.to_string()]);
        b.fence.standby.store(true, Ordering::SeqCst);
        b.api.set_time(8_000);
        b.api.land_late_requests();
        assert_eq!(b.observe(8_000).await, Some(Applied::Started));
        assert_eq!(b.api.starts_applied(), 1);
    }
}
