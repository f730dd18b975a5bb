//! The engine: observe, desire, act, follow (PRODUCT.md §1–2).
//!
//! One [`Engine::tick`] is one unit of work: read every channel (one call per 100), store what
//! changed, move schedule occurrences along, derive each configured channel's claims, decide
//! ([`decide::decide`]) and act through the journal ([`act`]), then follow records and guard
//! retention ([`follow`]). [`Engine::run`] repeats ticks at `poll_interval`, sooner when a schedule
//! fires, a retry falls due or a callback hints at a channel.
//!
//! - [`decide`]: the pure decision rule and occurrence state machine.
//! - [`retry`]: backoff timing.
//! - [`act`]: startRecord/stopRecord with intent first, reconciliation of ambiguous outcomes.
//! - [`follow`]: record polling and the retention guard.
//! - [`occurrences`]: schedule occurrences from fire times, with catch-up after downtime.
//! - [`timer`]: tokio-cron-scheduler jobs that wake the engine at fire times.
//! - [`lock`]: the database lock that keeps one engine per database.

pub mod act;
pub mod decide;
pub mod follow;
pub mod lock;
pub mod occurrences;
pub mod retry;
pub mod timer;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::livestation::{Channel, Client};
use crate::store::{EventKind, NewEvent, Store};

use self::decide::{ChannelState, Claim, ClaimSource, Decision, Observed, Owned};
use self::retry::RetryPolicy;

/// Something that should make the engine look now rather than at the next poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A schedule's fire time arrived.
    Fire(String),
    /// A callback says this channel changed.
    Channel(String),
}

/// A configuration reload for a running engine: the new configuration, and a new API client
/// when `[api]` changed.
pub struct Reload {
    pub config: Arc<Config>,
    pub client: Option<Client>,
}

/// Wall-clock milliseconds since the Unix epoch, read at the edge and passed down as `now`.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Engine failures that stop a tick (the API and the store report through these).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// A summary of one tick, for logs, `STATUS=`, metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// The channel list was read.
    pub observed: bool,
    pub channels: usize,
    pub recording: usize,
    pub starts: usize,
    pub stops: usize,
}

/// What the engine remembers about a channel between ticks (the database holds the rest).
#[derive(Clone, Debug, Default)]
pub(crate) struct ChannelMemory {
    /// When the current publishing session was first observed.
    pub live_since: Option<i64>,
    /// A start or stop waiting for its next attempt.
    pub retry: Option<act::RetryState>,
    /// A start was rejected or gave up while the channel looked like this; no new start until it
    /// changes (or the block's time passes).
    pub start_blocked_on: Option<act::StartBlock>,
    /// Claims that began at or before this instant were ended by `max_duration`.
    pub spent_before: Option<i64>,
    /// Records of this channel must be read at the next opportunity.
    pub follow_now: bool,
}

/// The engine. Holds the configuration, the API client and the store; see the module doc.
pub struct Engine {
    pub(crate) config: Arc<Config>,
    pub(crate) client: Client,
    pub(crate) store: Store,
    pub(crate) policy: RetryPolicy,
    /// When this engine started: occurrences that fired before were missed while down.
    pub(crate) up_since: i64,
    pub(crate) memory: HashMap<String, ChannelMemory>,
    /// The last full observation, by channel id.
    pub(crate) observed: HashMap<String, Channel>,
    pub(crate) last_record_poll: Option<i64>,
    pub(crate) metrics: Option<crate::service::metrics::Metrics>,
    /// Act on this channel only (a one-shot `lsrecd start|stop` while no daemon runs).
    pub(crate) focus: Option<String>,
    /// Credentials are being refused: alerted once, quiet until a call succeeds again.
    pub(crate) auth_failing: bool,
    /// The local clock is off from the gateway's by more than a minute: alerted once.
    pub(crate) skew_alerted: bool,
    /// The next window end or `max_duration` cap: a tick is due then, not at the next poll.
    pub(crate) next_deadline: Option<i64>,
    /// When actions and events were last pruned.
    pub(crate) last_prune: Option<i64>,
    /// The configured channel whose records the next tick sweeps.
    pub(crate) sweep_next: usize,
}

/// Wake-ups closer together than this are merged into one tick.
const MIN_TICK_GAP: Duration = Duration::from_millis(500);
/// Skew beyond this is an operator event (the gateway refuses 5 minutes).
const SKEW_ALERT_MS: i64 = 60_000;
/// How often old actions and events are pruned.
const PRUNE_EVERY_MS: i64 = 24 * 3600 * 1000;

impl Engine {
    /// A new engine. Call [`Engine::reconcile`] before the first [`Engine::tick`].
    pub fn new(config: Arc<Config>, client: Client, store: Store, now: i64) -> Engine {
        let policy = policy_of(&config);
        Engine {
            config,
            client,
            store,
            policy,
            up_since: now,
            memory: HashMap::new(),
            observed: HashMap::new(),
            last_record_poll: None,
            metrics: None,
            focus: None,
            auth_failing: false,
            skew_alerted: false,
            next_deadline: None,
            last_prune: None,
            sweep_next: 0,
        }
    }

    /// Reports API calls, recordings and occurrences to these metrics.
    pub fn with_metrics(mut self, metrics: crate::service::metrics::Metrics) -> Engine {
        self.metrics = Some(metrics);
        self
    }

    /// Acts on `channel_id` only: used by a one-shot `lsrecd start|stop` when no daemon runs.
    pub fn focus(mut self, channel_id: &str) -> Engine {
        self.focus = Some(channel_id.to_string());
        self
    }

    /// Replaces the configuration (SIGHUP). Claims of removed schedules end; running recordings
    /// are not stopped by the reload alone — the next tick decides with the new claims.
    /// With `client`, API calls go through it from now on (the `[api]` section changed).
    pub fn reload(&mut self, config: Arc<Config>, client: Option<Client>) {
        if let Some(client) = client {
            self.client = client;
        }
        self.policy = policy_of(&config);
        self.config = config;
    }

    /// Restart = reconcile (PRODUCT.md §2): read all channels and the records of every recording
    /// channel (and of channels with records not yet final), settle every action left unfinished
    /// by a previous run, and only then act. Records of a recording that began and ended while
    /// lsrecd was down are found by the per-tick sweep ([`follow`]) rather than here, so a
    /// restart with thousands of configured channels is not thousands of calls.
    pub async fn reconcile(&mut self, now: i64) -> Result<bool, EngineError> {
        let observed = self.observe(now).await?;
        if !observed {
            return Ok(false);
        }
        act::settle_unfinished_actions(self, now).await?;
        let to_follow: Vec<String> = self
            .observed
            .values()
            .filter(|c| c.is_recording)
            .map(|c| c.channel_id.clone())
            // A one-shot `lsrecd start|stop` reads its own channel's records too.
            .chain(self.focus.clone())
            .collect();
        for id in to_follow {
            self.memory.entry(id).or_default().follow_now = true;
        }
        for id in self.store.channels_with_unfinished_records().await? {
            self.memory.entry(id).or_default().follow_now = true;
        }
        follow::follow_records(self, now, true).await?;
        Ok(true)
    }

    /// One unit of work. Returns what it saw and did.
    pub async fn tick(&mut self, now: i64) -> Result<TickReport, EngineError> {
        let mut report = TickReport {
            observed: self.observe(now).await?,
            ..TickReport::default()
        };
        occurrences::materialize(self, now).await?;
        occurrences::advance(self, now).await?;
        if report.observed {
            act::due_retries(self, now).await?;
            let (starts, stops) = self.act_on_decisions(now).await?;
            report.starts = starts;
            report.stops = stops;
        }
        follow::follow_records(self, now, false).await?;
        follow::retention_guard(self, now).await?;
        report.channels = self.observed.len();
        report.recording = self.observed.values().filter(|c| c.is_recording).count();
        if let Some(m) = &self.metrics {
            m.set_recordings_active(report.recording as u64);
        }
        self.watch_skew(now).await?;
        Ok(report)
    }

    /// Clock skew: a metric always, an operator event once when it passes a minute (signing
    /// uses the corrected time, so lsrecd keeps working until the gateway's 5-minute limit
    /// would be reached without the correction).
    async fn watch_skew(&mut self, now: i64) -> Result<(), EngineError> {
        let Some(skew) = self.client.clock_skew() else {
            return Ok(());
        };
        let ms = skew.num_milliseconds();
        if let Some(m) = &self.metrics {
            m.set_clock_skew(ms as f64 / 1000.0);
        }
        let off = ms.abs() > SKEW_ALERT_MS;
        if off && !self.skew_alerted {
            self.event(now, "clock_skew", None, None, &format!(
                "the local clock is {}s {} the Live Station gateway's; requests are signed with the corrected time, but check NTP",
                ms.abs() / 1000,
                if ms > 0 { "behind" } else { "ahead of" }
            ))
            .await?;
        }
        self.skew_alerted = off;
        Ok(())
    }

    /// Once a day: prune finished actions and events older than `daemon.keep_history`.
    async fn housekeeping(&mut self, now: i64) -> Result<(), EngineError> {
        if self.last_prune.is_some_and(|t| now - t < PRUNE_EVERY_MS) {
            return Ok(());
        }
        self.last_prune = Some(now);
        let keep = self.config.daemon.keep_history.as_millis() as i64;
        let pruned = self.store.prune(now - keep).await?;
        if pruned.actions + pruned.events > 0 {
            tracing::info!(
                actions = pruned.actions,
                events = pruned.events,
                "pruned old history"
            );
        }
        Ok(())
    }

    /// Repeats [`Engine::tick`] until `shutdown` resolves. Wakes on `wakes` (schedule fires,
    /// callback hints, manual commands), when a retry or a window end falls due, and at least
    /// every `keepalive` (the systemd watchdog wants to hear from this loop: `on_beat` runs
    /// after every tick with its report, and on every idle wake-up with `None`).
    pub async fn run(
        mut self,
        mut wakes: mpsc::Receiver<Wake>,
        mut reloads: mpsc::Receiver<Reload>,
        mut on_beat: impl FnMut(Option<&TickReport>, i64) + Send,
        keepalive: Option<Duration>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), EngineError> {
        tokio::pin!(shutdown);
        let (fire_tx, mut fires) = mpsc::channel(64);
        let mut timers = timer::FireTimers::start(fire_tx).await;
        let mut next_tick = now_ms();
        let mut last_tick = i64::MIN / 2;
        loop {
            let now = now_ms();
            if now >= next_tick {
                last_tick = now;
                // Shutdown does not wait for a slow call: a tick cut short leaves at most an
                // action in PENDING, which the next start reconciles; recordings keep running.
                let ticked = tokio::select! {
                    r = self.tick(now) => r,
                    _ = &mut shutdown => break,
                };
                match ticked {
                    Ok(report) => on_beat(Some(&report), now),
                    Err(e) => {
                        tracing::error!(error = %e, "tick failed; retrying at the next poll");
                        on_beat(Some(&TickReport::default()), now);
                    }
                }
                if let Err(e) = self.housekeeping(now).await {
                    tracing::warn!(error = %e, "pruning old actions and events failed");
                }
                if let Some(t) = timers.as_mut() {
                    t.arm(&self.config, now).await;
                }
                let after = now_ms();
                next_tick = after + self.next_wake_in(now, after).as_millis() as i64;
            } else {
                on_beat(None, now);
            }
            let mut sleep_for = Duration::from_millis((next_tick - now_ms()).max(0) as u64);
            if let Some(k) = keepalive {
                sleep_for = sleep_for.min(k);
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(sleep_for) => {}
                Some(fire) = fires.recv() => {
                    tracing::debug!(?fire, "schedule fire time");
                    next_tick = now_ms();
                }
                Some(wake) = wakes.recv() => {
                    // A burst (callbacks) becomes one tick, at most one per MIN_TICK_GAP.
                    let mut wake = Some(wake);
                    while let Some(w) = wake {
                        tracing::debug!(?w, "woken");
                        if let Wake::Channel(id) = w {
                            self.memory.entry(id).or_default().follow_now = true;
                        }
                        wake = wakes.try_recv().ok();
                    }
                    next_tick = next_tick.min(now_ms().max(last_tick + MIN_TICK_GAP.as_millis() as i64));
                }
                Some(Reload { config, client }) = reloads.recv() => {
                    self.reload(config, client);
                    if let Some(t) = timers.as_mut() {
                        t.clear().await;
                    }
                    next_tick = now_ms();
                }
            }
        }
        if let Some(t) = timers.take() {
            t.shutdown().await;
        }
        Ok(())
    }

    /// How long until the next tick: one poll interval after the start of the tick that began
    /// at `tick_started` (so the time a tick takes does not stretch the cycle), or sooner for a
    /// due retry, a window end or a `max_duration` cap.
    fn next_wake_in(&self, tick_started: i64, now: i64) -> Duration {
        let due = self
            .memory
            .values()
            .filter_map(|m| m.retry.as_ref().map(|r| r.next_try_at))
            .chain(self.next_deadline.filter(|d| *d > now));
        let next = next_tick_at(tick_started, self.config.daemon.poll_interval, due);
        Duration::from_millis((next - now).clamp(0, i64::MAX) as u64)
    }

    /// Reads every channel (paged), stores what changed, and refreshes the in-memory view.
    /// Returns false when the API could not be read (nothing is decided on stale data).
    async fn observe(&mut self, now: i64) -> Result<bool, EngineError> {
        let reply = match self.client.list_channels().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "channel list failed; not acting this tick");
                self.note_api_error(now, None, &e).await?;
                return Ok(false);
            }
        };
        self.auth_failing = false;
        let page = reply.value;
        for skipped in &page.skipped {
            tracing::warn!(entry = %skipped, "channel entry could not be read; skipped");
        }
        let configured: Vec<(String, Option<String>)> = self
            .config
            .channels
            .iter()
            .map(|c| (c.id.clone(), c.label.clone()))
            .collect();
        let summary = self
            .store
            .observe_channels(&page.channels, &configured, now)
            .await?;
        for id in &summary.newly_missing {
            self.event(
                now,
                "channel_missing",
                Some(id),
                None,
                &format!("configured channel {id} was not returned by the Live Station API"),
            )
            .await?;
        }
        for id in &summary.back {
            self.event(
                now,
                "channel_back",
                Some(id),
                None,
                &format!("configured channel {id} is returned by the API again"),
            )
            .await?;
        }
        let mut seen = HashSet::new();
        for ch in page.channels {
            seen.insert(ch.channel_id.clone());
            let prev = self.observed.get(&ch.channel_id);
            let mem = self.memory.entry(ch.channel_id.clone()).or_default();
            let live = ch.channel_status.is_live();
            match (live, mem.live_since) {
                (true, None) => mem.live_since = Some(now),
                (false, Some(_)) => mem.live_since = None,
                _ => {}
            }
            let changed = prev.is_none_or(|p| {
                p.is_recording != ch.is_recording || p.channel_status != ch.channel_status
            });
            if changed && (prev.is_some() || ch.is_recording) {
                mem.follow_now = true;
            }
            if let Some(block) = &mem.start_blocked_on
                && (block.status.as_str() != ch.channel_status.as_str()
                    || block.is_recording != ch.is_recording
                    || block.until.is_some_and(|until| now >= until))
            {
                mem.start_blocked_on = None;
            }
            self.observed.insert(ch.channel_id.clone(), ch);
        }
        self.observed.retain(|id, _| seen.contains(id));
        if let Some(m) = &self.metrics {
            m.poll_succeeded(now as f64 / 1000.0);
            m.set_channels(self.observed.len() as u64);
        }
        Ok(true)
    }

    /// Derives claims, decides for every configured channel, and acts.
    async fn act_on_decisions(&mut self, now: i64) -> Result<(usize, usize), EngineError> {
        let states = self.channel_states(now).await?;
        let (mut starts, mut stops) = (0, 0);
        for state in states {
            let Some(decision) = decide::decide(&state, now) else {
                continue;
            };
            match decision {
                Decision::Start {
                    trigger,
                    occurrence_id,
                    deadline,
                } => {
                    let job =
                        act::Job::start(&state.channel_id, trigger, occurrence_id, deadline, now);
                    if act::attempt(self, job, now).await? {
                        starts += 1;
                    }
                }
                Decision::Stop { reason } => {
                    // Journaled under the trigger that started the recording it ends.
                    let trigger = state
                        .owned
                        .as_ref()
                        .map(|o| o.trigger.clone())
                        .unwrap_or_else(|| "reconcile".to_string());
                    let job = act::Job::stop(&state.channel_id, trigger, reason, now);
                    if act::attempt(self, job, now).await? {
                        stops += 1;
                    }
                }
                Decision::Release => {
                    act::release(self, &state.channel_id, now).await?;
                }
            }
        }
        Ok((starts, stops))
    }

    /// The decision inputs of every configured channel.
    async fn channel_states(&mut self, now: i64) -> Result<Vec<ChannelState>, EngineError> {
        let owned: HashMap<String, Owned> = self
            .store
            .owned_recordings_open()
            .await?
            .into_iter()
            .map(|o| {
                (
                    o.channel_id.clone(),
                    Owned {
                        trigger: o.trigger,
                        started_at: o.started_at,
                    },
                )
            })
            .collect();
        let mut claims: HashMap<String, Vec<Claim>> = HashMap::new();
        for occ in self.store.open_occurrences().await? {
            if matches!(
                occ.state,
                decide::OccurrenceState::Armed | decide::OccurrenceState::Recording
            ) {
                claims
                    .entry(occ.channel_id.clone())
                    .or_default()
                    .push(Claim {
                        source: ClaimSource::Schedule {
                            name: occ.schedule.clone(),
                            occurrence_id: occ.id,
                        },
                        start: occ.fire_time,
                        end: occ.window_end,
                    });
            }
        }
        for mc in self.store.active_manual_claims().await? {
            claims
                .entry(mc.channel_id.clone())
                .or_default()
                .push(Claim {
                    source: ClaimSource::Manual,
                    start: mc.requested_at,
                    end: None,
                });
        }
        let mut states = Vec::with_capacity(self.config.channels.len());
        let mut next_deadline: Option<i64> = None;
        let mut consider = |t: i64| {
            if t > now {
                next_deadline = Some(next_deadline.map_or(t, |d: i64| d.min(t)));
            }
        };

        for cc in &self.config.channels {
            if self.focus.as_ref().is_some_and(|f| f != &cc.id) {
                continue;
            }
            let observed = self.observed.get(&cc.id);
            let mem = self.memory.entry(cc.id.clone()).or_default();
            let mut channel_claims = claims.remove(&cc.id).unwrap_or_default();
            if cc.record_when_live
                && let Some(obs) = observed
                && obs.channel_status.is_live()
            {
                channel_claims.push(Claim {
                    source: ClaimSource::Live,
                    start: mem.live_since.unwrap_or(now),
                    end: None,
                });
            }
            for c in &channel_claims {
                if let Some(end) = c.end {
                    consider(end);
                }
            }
            if let (Some(o), Some(max)) = (owned.get(&cc.id), cc.max_duration) {
                consider(o.started_at + max.as_millis() as i64);
            }
            states.push(ChannelState {
                channel_id: cc.id.clone(),
                observed: observed.map(|o| Observed {
                    status: o.channel_status.clone(),
                    is_recording: o.is_recording,
                    immediate_on_air: o.immediate_on_air,
                }),
                owned: owned.get(&cc.id).cloned(),
                claims: channel_claims,
                max_duration_ms: cc.max_duration.map(|d| d.as_millis() as i64),
                spent_before: mem.spent_before,
                busy: mem.retry.is_some(),
                start_blocked: mem.start_blocked_on.is_some(),
            });
        }
        self.next_deadline = next_deadline;
        Ok(states)
    }

    /// Records an operator event (events table + log).
    pub(crate) async fn event(
        &self,
        now: i64,
        kind: &str,
        channel_id: Option<&str>,
        record_id: Option<i64>,
        message: &str,
    ) -> Result<(), EngineError> {
        tracing::info!(
            kind,
            channel_id = channel_id.unwrap_or("-"),
            record_id,
            "{message}"
        );
        self.store
            .add_event(&NewEvent {
                at: now,
                kind: EventKind::parse(kind),
                channel_id: channel_id.map(str::to_string),
                record_id,
                message: message.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Alerts that need a person (authentication failures) become events; the rest is logged.
    pub(crate) async fn note_api_error(
        &mut self,
        now: i64,
        channel_id: Option<&str>,
        e: &crate::livestation::ApiError,
    ) -> Result<(), EngineError> {
        if let crate::livestation::ApiError::Unauthorized { .. } = e {
            if let Some(m) = &self.metrics {
                m.auth_failure();
            }
            if std::mem::replace(&mut self.auth_failing, true) {
                return Ok(());
            }
            self.event(now, "auth_failure", channel_id, None, &format!(
                "Live Station rejected lsrecd's credentials after a re-signed retry: {e}. Check the access/secret key and the clock (NTP)."
            ))
            .await?;
        }
        Ok(())
    }
}

fn policy_of(config: &Config) -> RetryPolicy {
    RetryPolicy {
        max_attempts: config.retry.max_attempts,
        initial_backoff: config.retry.initial_backoff,
        max_backoff: config.retry.max_backoff,
    }
}

/// When the tick after the one that started at `tick_started` is due: one poll interval after
/// that start, or the earliest retry if sooner. Counting from the start keeps the cycle at
/// `poll` however long a tick takes (reading 10,000 channels takes a while).
fn next_tick_at(tick_started: i64, poll: Duration, retries: impl Iterator<Item = i64>) -> i64 {
    let next = tick_started.saturating_add(i64::try_from(poll.as_millis()).unwrap_or(i64::MAX));
    retries.fold(next, i64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_poll_is_one_interval_after_the_start_of_the_last_tick_however_long_it_took() {
        let poll = Duration::from_secs(2);
        assert_eq!(next_tick_at(10_000, poll, std::iter::empty()), 12_000);
    }

    #[test]
    fn a_retry_due_before_the_next_poll_brings_the_next_tick_forward() {
        let poll = Duration::from_secs(2);
        assert_eq!(
            next_tick_at(10_000, poll, [13_000, 10_500].into_iter()),
            10_500
        );
    }
}
