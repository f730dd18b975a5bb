//! The engine: observe, desire, act, follow.
//!
//! One [`Engine::tick`] is one unit of work, the whole pipeline in order:
//!
//! 1. write outcomes a failing database could not take before ([`actions`]);
//! 2. observe: read every channel (one call per 100) into the [`view`], store what changed,
//!    and let each observation settle unclear requests ([`actions`]);
//! 3. move schedule occurrences along ([`occurrences`]);
//! 4. derive each configured channel's claims ([`claims`]), decide ([`decide::decide`], pure)
//!    and act through the journal ([`actions`]), channels with something to send side by side;
//! 5. follow records (read side by side) and guard retention ([`follow`]).
//!
//! [`Engine::run`] repeats ticks at `poll_interval`, sooner when a schedule fires, a retry or a
//! window end falls due, a callback hints at a channel, or the leadership changes.
//!
//! With `[ha]` ([`fence::Leadership`]), a standby runs the same tick without step 4: it observes,
//! moves occurrences, follows records, and keeps `owned_recordings` in step with the leader's
//! hand-over notes. An instance that becomes the leader first takes the notes of the one before
//! as requests that may still land (like a restart's unfinished journal), then acts; one that
//! stops leading drops the jobs it had not sent.
//!
//! Each part owns its state and is handed only what it needs through [`Ctx`] (the API, the
//! store, [`notes`] for events and metrics, the tick's clock). Time comes from the edge: `now`
//! is read once per tick and passed down; requests are stamped with `now` plus the monotonic
//! time elapsed since, so a test that passes its own `now` controls every timestamp.
//!
//! - [`decide`]: the pure decision rule and occurrence state machine.
//! - [`retry`]: backoff timing.
//! - [`view`]: the channels as last observed, with when.
//! - [`claims`]: why each channel should be recording.
//! - [`actions`]: startRecord/stopRecord with intent first; unclear outcomes settled by
//!   observation; one story per outage.
//! - [`follow`]: record polling and the retention guard.
//! - [`occurrences`]: schedule occurrences from fire times, with catch-up after downtime.
//! - [`notes`]: events, metrics, once-only alerts.
//! - [`fence`]: who may act — always, alone; with `[ha]`, the etcd lease holder, checked right
//!   before every state-changing call.
//! - [`timer`]: tokio-cron-scheduler jobs that wake the engine at fire times.
//! - [`lock`]: the database lock that keeps one engine per database.

pub mod actions;
pub mod claims;
pub mod decide;
mod evidence;
pub mod fence;
pub mod follow;
mod hedge;
pub mod lock;
pub mod notes;
pub mod occurrences;
pub mod retry;
pub mod timer;
pub mod view;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{StreamExt as _, stream};
use sync_wrapper::SyncWrapper;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;
use crate::livestation::client::{CHANNEL_PAGE_SIZE, MAX_CHANNEL_PAGES};
use crate::livestation::{
    ApiError, Channel, ChannelPage, Client, ListedPage, ListingProgress, LiveStation, Operation,
    PageShape, Refusal, Reply, urgently,
};
use crate::store::{ChannelChanges, EventKind, Store};

use self::actions::{Actions, Applied, Landing};
use self::claims::Claims;
use self::decide::Decision;
use self::evidence::Evidence;
use self::fence::{Alone, Fence, Leadership, Note, Role};
use self::follow::Follower;
use self::notes::Notes;
use self::retry::RetryPolicy;
use self::view::{Change, ChannelView, Touched};

/// Something that should make the engine look now rather than at the next poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A schedule's fire time arrived.
    Fire(String),
    /// A callback says this channel changed.
    Channel(String),
    /// This instance became the leader, or stopped being it.
    Leadership,
    /// A manual claim was written or ended (`lsrecd start|stop` while the daemon runs).
    Claims,
}

/// A configuration reload for a running engine: the new configuration, and a new API client
/// when `[api]` changed.
pub struct Reload<A = Client> {
    pub config: Arc<Config>,
    pub client: Option<A>,
}

/// Wall-clock milliseconds since the Unix epoch, read at the edge and passed down as `now`.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A page of the channel listing under way, as it came.
enum PageIn {
    Read(ChannelPage),
    /// The page as last listed, replayed: what it held.
    Replayed(PageShape),
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
    /// Pages of the channel list read, and pages whose body was the one last listed, replayed
    /// rather than read (see `ChannelView::replay_page`).
    pub pages_read: usize,
    pub pages_replayed: usize,
    pub channels: usize,
    pub recording: usize,
    pub starts: usize,
    pub stops: usize,
    /// Configured channels a claim wants recording that are not recording.
    pub unrecorded: usize,
    /// Since when (engine time) the database has been failing, when it is.
    pub database_unavailable_since: Option<i64>,
}

/// The tick's clock: `now` as passed in, and the monotonic instant it corresponds to.
pub(crate) struct TickClock {
    now: i64,
    origin: Instant,
}

impl TickClock {
    fn new(now: i64) -> TickClock {
        TickClock {
            now,
            origin: Instant::now(),
        }
    }

    /// Engine time now: `now` plus the time elapsed in the tick.
    pub(crate) fn stamp(&self) -> i64 {
        self.at(Instant::now())
    }

    /// Engine time of a monotonic instant of this tick.
    pub(crate) fn at(&self, instant: Instant) -> i64 {
        let elapsed = instant.saturating_duration_since(self.origin).as_millis();
        self.now
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX / 4))
    }
}

/// What the parts of the engine are handed: everything shared, nothing of each other's state.
pub(crate) struct Ctx<'a, A> {
    pub api: &'a A,
    pub store: &'a Store,
    pub notes: &'a Notes,
    pub clock: &'a TickClock,
    /// Checked right before every state-changing call.
    pub fence: &'a dyn Fence,
}

/// The engine. Generic over the Live Station it talks to (the HTTP [`Client`] in production,
/// an in-memory double in unit tests); see the module doc.
pub struct Engine<A: LiveStation = Client> {
    config: Arc<Config>,
    /// Shared with record reads in flight while hints are served (see `follow_records`).
    api: Arc<A>,
    store: Store,
    notes: Arc<Notes>,
    /// When this engine started: occurrences that fired before were missed while down.
    up_since: i64,
    /// Act on this channel only (a one-shot `lsrecd start|stop` while no daemon runs).
    focus: Option<String>,
    view: ChannelView,
    claims: Claims,
    actions: Actions,
    follower: Follower,
    /// When actions and events were last pruned.
    last_prune: Option<i64>,
    /// The database is failing: since when, and what it said first.
    database_outage: Option<DatabaseOutage>,
    /// Who may act ([`Alone`] without `[ha]`).
    leadership: Arc<dyn Leadership>,
    /// The term this instance took over for and acts in; `None` while it does not lead.
    acting_term: Option<i64>,
    /// The leader term last written to the database (read from it at the first tick).
    known_term: Option<Option<i64>>,
    /// The term for which this instance last wrote that it leads.
    announced: Option<i64>,
    /// The wake-ups, while [`Engine::run`] runs: a tick serves hints between listing pages.
    wakes: Option<mpsc::Receiver<Wake>>,
    /// A wake-up other than a hint arrived during a tick: tick again right after it.
    woken: bool,
    /// When each channel whose request is unclear is read on its own next.
    evidence: Evidence,
    /// When each channel whose start waits for its next attempt is read on its own next (on
    /// the same schedule as `evidence`).
    retries: Evidence,
    /// Reads of single channels under way in the background (see [`Engine::launch_urgent`]),
    /// and their channels.
    reading: SyncWrapper<FuturesUnordered<Reading>>,
    reading_ids: HashSet<String>,
    /// Channels whose state a full pass holds while their calls are in flight (see
    /// [`Engine::act`]), and background reads of them that arrived meanwhile, taken once the
    /// state is back.
    detached: HashSet<String>,
    held_reads: Vec<(Errand, ChannelRead)>,
    /// Record reads under way in the background (see [`Engine::follow_records`]).
    records: SyncWrapper<Option<RecordBatch>>,
}

/// Record reads under way in the background.
struct RecordBatch {
    reads: Pin<Box<dyn Future<Output = Vec<follow::RecordRead>> + Send>>,
    /// The batch reads every unfinished record (the retention guard runs after it).
    polled: bool,
    /// The channels with an unsettled start when the batch was sent (see
    /// [`Follower::store_reads`]).
    starting: HashSet<String>,
}

/// Why a channel is read on its own in the background.
#[derive(Clone, Copy, Debug)]
enum Errand {
    /// Its unclear request can no longer land: what does the channel show?
    Evidence,
    /// Its start's next attempt, due at this time, is to be sent.
    Retry { at: i64 },
}

/// A read of one channel under way in the background.
type Reading = Pin<Box<dyn Future<Output = (Errand, ChannelRead)> + Send>>;

/// Whether [`Engine::act`] serves callback hints while its calls are in flight: not when it
/// acts for a hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Serve {
    Hints,
    Nothing,
}

/// A stretch of ticks the database failed. Nothing is sent whose intent could not be written,
/// so during it lsrecd observes at most; it is told once when it begins (log, metric,
/// readiness) and once when it ends (an event, when the database takes writes again).
#[derive(Clone, Debug)]
struct DatabaseOutage {
    since: i64,
    first_error: String,
    failed_ticks: u32,
    last_logged: i64,
}

/// How often a continuing database outage is logged again.
const DATABASE_OUTAGE_LOG_EVERY_MS: i64 = 60_000;

/// How many channels are acted on (or have their records read) at once. Calls still go out
/// at most `api.max_rps`; this bounds how many can be in flight, so that one call hanging until
/// `api.timeout` does not hold up every other channel of the tick.
pub(crate) const CONCURRENT_CHANNELS: usize = 32;

/// How many times a tick asks for one channel page before it gives the listing up.
const PAGE_ATTEMPTS: u32 = 3;

/// A channel read on its own: the channel, when the read was requested, what it returned.
type ChannelRead = (String, i64, Result<Reply<Channel>, ApiError>);

/// How often old actions and events are pruned.
const PRUNE_EVERY_MS: i64 = 24 * 3600 * 1000;

impl<A: LiveStation> Engine<A> {
    /// A new engine. Call [`Engine::reconcile`] before the first [`Engine::tick`].
    pub fn new(config: Arc<Config>, api: A, store: Store, now: i64) -> Engine<A> {
        Engine {
            actions: Actions::new(policy_of(&config), landing_of(&config)),
            notes: Arc::new(Notes::new(store.clone())),
            config,
            api: Arc::new(api),
            store,
            up_since: now,
            focus: None,
            view: ChannelView::default(),
            claims: Claims::default(),
            follower: Follower::default(),
            last_prune: None,
            database_outage: None,
            leadership: Arc::new(Alone),
            acting_term: None,
            known_term: None,
            announced: None,
            wakes: None,
            woken: false,
            evidence: Evidence::default(),
            retries: Evidence::default(),
            reading: SyncWrapper::new(FuturesUnordered::new()),
            reading_ids: HashSet::new(),
            records: SyncWrapper::new(None),
            detached: HashSet::new(),
            held_reads: Vec::new(),
        }
    }

    /// Acts only while `leadership` allows it (`[ha]`); see the module doc.
    pub fn with_leadership(mut self, leadership: Arc<dyn Leadership>) -> Engine<A> {
        self.leadership = leadership;
        self
    }

    /// Reports API calls, recordings and occurrences to these metrics.
    pub fn with_metrics(mut self, metrics: crate::service::metrics::Metrics) -> Engine<A> {
        // Before the engine runs, nothing else holds the notes.
        let mut notes = Notes::new(self.store.clone());
        notes.set_metrics(metrics);
        self.notes = Arc::new(notes);
        self
    }

    /// Acts on `channel_id` only: used by a one-shot `lsrecd start|stop` when no daemon runs.
    pub fn focus(mut self, channel_id: &str) -> Engine<A> {
        self.focus = Some(channel_id.to_string());
        self
    }

    /// Replaces the configuration (SIGHUP). Claims of removed schedules end; running recordings
    /// are not stopped by the reload alone — the next tick decides with the new claims.
    /// With `api`, calls go through it from now on (the `[api]` section changed).
    pub fn reload(&mut self, config: Arc<Config>, api: Option<A>) {
        if let Some(api) = api {
            self.api = Arc::new(api);
        }
        self.actions
            .reconfigure(policy_of(&config), landing_of(&config));
        self.view.touch_all();
        self.config = config;
    }

    /// Restart = reconcile: read all channels, take every action a previous run left
    /// unfinished as a request that may still land (settled by observations, never resent
    /// before), and read the records of every recording channel and of channels with records
    /// not yet final. Records of a recording that began and ended while lsrecd was down are
    /// found by the per-tick sweep rather than here, so a restart with thousands of configured
    /// channels is not thousands of calls. Returns false when the API could not be read.
    pub async fn reconcile(&mut self, now: i64) -> Result<bool, EngineError> {
        let clock = TickClock::new(now);
        self.actions.load_unfinished(&self.store, now).await?;
        let mut report = TickReport::default();
        if !self.observe(&clock, &mut report, now, false).await? {
            return Ok(false);
        }
        self.observe_unlisted(&clock, &mut report, now).await?;
        if self.leadership.role() == Role::Standby {
            // Before the records are read: a recording the leader started is lsrecd's.
            self.mirror_leader(now).await?;
        }
        let recording: Vec<String> = self
            .config
            .channels
            .iter()
            .filter(|c| self.view.is_recording(&c.id))
            .map(|c| c.id.clone())
            // A one-shot `lsrecd start|stop` reads its own channel's records too.
            .chain(self.focus.clone())
            .collect();
        for id in recording {
            self.follower.mark(&id);
        }
        for id in self.store.channels_with_unfinished_records().await? {
            self.follower.mark(&id);
        }
        let ctx = Ctx {
            api: &*self.api,
            store: &self.store,
            notes: &self.notes,
            clock: &clock,
            fence: self.leadership.as_ref(),
        };
        self.follower
            .follow(
                &ctx,
                &self.config,
                &self.view,
                &self.actions.unsettled_starts(),
                now,
                true,
                false,
            )
            .await?;
        Ok(true)
    }

    /// One unit of work (see the module doc). Returns what it saw and did.
    pub async fn tick(&mut self, now: i64) -> Result<TickReport, EngineError> {
        let clock = TickClock::new(now);
        let mut report = TickReport::default();
        let acting = self.follow_leadership(now).await?;
        {
            let ctx = Ctx {
                api: &*self.api,
                store: &self.store,
                notes: &self.notes,
                clock: &clock,
                fence: self.leadership.as_ref(),
            };
            for (id, applied) in self.actions.flush_unwritten(&ctx).await? {
                note_applied(
                    (&mut self.claims, &mut self.follower),
                    &mut report,
                    &id,
                    applied,
                    now,
                );
            }
        }
        self.take_held_reads(&clock).await?;
        // A channel whose unclear request can no longer land is read on its own first: the
        // listing may take long, or fail.
        self.seek_evidence(&clock, &mut report, now).await?;
        report.observed = self.observe(&clock, &mut report, now, acting).await?;
        if !report.observed && acting {
            // The listing failed: what is due is not held back for it. The channels with a
            // start to send again are read on their own and started, as for a hint.
            let due = self.actions.starts_due(now);
            if !due.is_empty() {
                tracing::debug!(channels = ?due, "the listing failed; reading channels with a start due on their own");
                self.read_alone_and_act(due, &clock, &mut report, now, None)
                    .await?;
            }
        }
        self.serve_waiting_hints(&clock).await?;
        if report.observed {
            self.observe_unlisted(&clock, &mut report, now).await?;
        }
        {
            let ctx = Ctx {
                api: &*self.api,
                store: &self.store,
                notes: &self.notes,
                clock: &clock,
                fence: self.leadership.as_ref(),
            };
            occurrences::materialize(&ctx, &self.config, now).await?;
            occurrences::advance(&ctx, &self.config, &self.view, self.up_since, now).await?;
        }
        self.serve_waiting_hints(&clock).await?;
        if report.observed && acting {
            self.act(&clock, &mut report, now, None, Serve::Hints)
                .await?;
            self.serve_waiting_hints(&clock).await?;
            self.keep_notes().await?;
        } else if report.observed && self.leadership.role() == Role::Standby {
            self.mirror_leader(now).await?;
        }
        self.follow_records(&clock, now, acting).await?;
        report.channels = self.view.len();
        report.recording = self.view.recording();
        if let Some(m) = self.notes.metrics()
            && report.observed
            && acting
        {
            m.set_recordings_active(report.recording as u64);
            m.set_claims_unrecorded(report.unrecorded as u64);
        }
        if let Some(skew) = self.api.clock_skew() {
            self.notes.clock_skew(now, skew.num_milliseconds()).await?;
        }
        Ok(report)
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
        wakes: mpsc::Receiver<Wake>,
        mut reloads: mpsc::Receiver<Reload<A>>,
        mut on_beat: impl FnMut(Option<&TickReport>, i64) + Send,
        keepalive: Option<Duration>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), EngineError> {
        tokio::pin!(shutdown);
        self.wakes = Some(wakes);
        let (fire_tx, mut fires) = mpsc::channel(64);
        let mut timers = timer::FireTimers::start(fire_tx).await;
        let mut next_tick = now_ms();
        loop {
            let now = now_ms();
            if now >= next_tick {
                self.woken = false;
                // Shutdown does not wait for a slow call: a tick cut short leaves at most an
                // action in PENDING, which the next start reconciles; recordings keep running.
                let ticked = tokio::select! {
                    r = self.tick(now) => r,
                    _ = &mut shutdown => break,
                };
                match ticked {
                    Ok(mut report) => {
                        self.database_answered(now).await;
                        report.database_unavailable_since =
                            self.database_outage.as_ref().map(|o| o.since);
                        on_beat(Some(&report), now);
                    }
                    Err(e) => {
                        let since = self.database_failed(now, &e);
                        self.store.reopen_writer().await;
                        let report = TickReport {
                            database_unavailable_since: Some(since),
                            ..TickReport::default()
                        };
                        on_beat(Some(&report), now);
                    }
                }
                if let Err(e) = self.housekeeping(now).await {
                    tracing::warn!(error = %e, "pruning old actions and events failed");
                }
                if let Some(t) = timers.as_mut() {
                    t.arm(&self.config, now).await;
                }
                let after = now_ms();
                next_tick = if self.woken {
                    after
                } else {
                    after + self.next_wake_in(now, after).as_millis() as i64
                };
            } else if self.urgent_due().is_some_and(|at| at <= now) {
                self.launch_urgent(now);
            } else {
                on_beat(None, now);
            }
            // A channel due a read of its own wakes the loop before the next tick.
            let wake_at = self.urgent_due().map_or(next_tick, |at| at.min(next_tick));
            let mut sleep_for = Duration::from_millis((wake_at - now_ms()).max(0) as u64);
            if let Some(k) = keepalive {
                sleep_for = sleep_for.min(k);
            }
            let Some(wakes) = self.wakes.as_mut() else {
                break;
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(sleep_for) => {}
                Some(fire) = fires.recv() => {
                    tracing::debug!(?fire, "schedule fire time");
                    next_tick = now_ms();
                }
                Some(read) = self.reading.get_mut().next(), if !self.reading_ids.is_empty() => {
                    let clock = TickClock::new(now_ms());
                    let taken = tokio::select! {
                        r = urgently(self.finish_read(read, &clock)) => r,
                        _ = &mut shutdown => break,
                    };
                    if let Err(e) = taken {
                        self.database_failed(clock.now, &e);
                        self.store.reopen_writer().await;
                    }
                }
                batch = batch_done(self.records.get_mut()) => {
                    let clock = TickClock::new(now_ms());
                    let taken = tokio::select! {
                        r = self.finish_records(batch, &clock) => r,
                        _ = &mut shutdown => break,
                    };
                    if let Err(e) = taken {
                        self.database_failed(clock.now, &e);
                        self.store.reopen_writer().await;
                    }
                }
                Some(wake) = wakes.recv() => {
                    // Hints are served at once, a burst together; a schedule fire or a change
                    // of leadership brings the next tick forward.
                    let mut hinted = Vec::new();
                    let mut wake = Some(wake);
                    while let Some(w) = wake {
                        tracing::debug!(?w, "woken");
                        match w {
                            Wake::Channel(id) => {
                                if !hinted.contains(&id) {
                                    hinted.push(id);
                                }
                            }
                            Wake::Leadership | Wake::Fire(_) => next_tick = now_ms(),
                            // A manual start is served like a hint, at once; a stop (and
                            // anything else) by a tick right away.
                            Wake::Claims => {
                                match self.store.active_manual_claims().await {
                                    Ok(claims) => {
                                        for claim in claims {
                                            if !hinted.contains(&claim.channel_id) {
                                                hinted.push(claim.channel_id);
                                            }
                                        }
                                    }
                                    Err(e) => tracing::warn!(error = %e, "manual claims unreadable; the next tick reads them"),
                                }
                                next_tick = now_ms();
                            }
                        }
                        wake = self.wakes.as_mut().and_then(|w| w.try_recv().ok());
                    }
                    if !hinted.is_empty() {
                        let now = now_ms();
                        let (clock, mut report) = (TickClock::new(now), TickReport::default());
                        let served = tokio::select! {
                            r = urgently(self.hint(hinted, &clock, &mut report, now)) => r,
                            _ = &mut shutdown => break,
                        };
                        if let Err(e) = served {
                            self.database_failed(now, &e);
                            self.store.reopen_writer().await;
                        }
                    }
                }
                Some(Reload { config, client }) = reloads.recv() => {
                    if let Err(e) = self.store.limit_size(config.daemon.max_database_size).await {
                        tracing::warn!(error = %e, "daemon.max_database_size could not be applied; the previous limit stays");
                    }
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

    /// A tick failed on the database. The first failure of an outage is logged as an error and
    /// shown by the metric; later ones at most once a minute. Returns when the outage began.
    fn database_failed(&mut self, now: i64, e: &EngineError) -> i64 {
        let outage = match &mut self.database_outage {
            Some(outage) => {
                outage.failed_ticks += 1;
                if now - outage.last_logged >= DATABASE_OUTAGE_LOG_EVERY_MS {
                    outage.last_logged = now;
                    tracing::warn!(
                        error = %e,
                        failed_ticks = outage.failed_ticks,
                        since_secs = (now - outage.since) / 1000,
                        "the database is still failing; nothing is sent whose intent cannot be written"
                    );
                }
                outage
            }
            None => {
                tracing::error!(
                    error = %e,
                    "the database is failing; no start or stop is sent until its intent can be \
                     written again (recordings already running keep running); retrying every tick"
                );
                if let Some(m) = self.notes.metrics() {
                    m.set_database_available(false);
                }
                self.database_outage.insert(DatabaseOutage {
                    since: now,
                    first_error: e.to_string(),
                    failed_ticks: 1,
                    last_logged: now,
                })
            }
        };
        outage.since
    }

    /// A tick went through: an outage, if there was one, is over; it is written down as one
    /// event (kept for the next tick if even that write fails).
    async fn database_answered(&mut self, now: i64) {
        let Some(outage) = &self.database_outage else {
            return;
        };
        let message = format!(
            "the database failed for {} s ({} ticks) and takes writes again; no start or stop \
             was sent meanwhile whose intent could not be written. First error: {}",
            (now - outage.since) / 1000,
            outage.failed_ticks,
            outage.first_error
        );
        match self
            .notes
            .event(now, EventKind::DatabaseUnavailable, None, None, &message)
            .await
        {
            Ok(()) => {
                self.database_outage = None;
                if let Some(m) = self.notes.metrics() {
                    m.set_database_available(true);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the end of a database outage could not be written yet");
            }
        }
    }

    /// How long until the next tick: one poll interval after the start of the tick that began
    /// at `tick_started` (so the time a tick takes does not stretch the cycle), or sooner for a
    /// due retry, a request that can no longer land, a window end or a `max_duration` cap.
    fn next_wake_in(&self, tick_started: i64, now: i64) -> Duration {
        let due = self
            .actions
            .next_due(now)
            .into_iter()
            .chain(self.claims.next_deadline().filter(|d| *d > now));
        let next = next_tick_at(tick_started, self.config.daemon.poll_interval, due);
        Duration::from_millis((next - now).clamp(0, i64::MAX) as u64)
    }

    /// Reads every channel page by page. Each page goes into the view at once, settles what its
    /// observations can, and — when this instance acts — starts what its channels' claims want,
    /// so a channel early in the listing is not held back by the pages after it; callback hints
    /// that arrived meanwhile are served between pages. Once the listing is complete, what
    /// changed is stored. Returns false when the API could not be read (nothing more is decided
    /// on what this tick has not read).
    async fn observe(
        &mut self,
        clock: &TickClock,
        report: &mut TickReport,
        now: i64,
        acting: bool,
    ) -> Result<bool, EngineError> {
        let mut listing = ListingProgress::default();
        self.view.begin_listing();
        let mut settled: HashSet<String> = HashSet::new();
        let mut page_no = 1;
        loop {
            let page_started = Instant::now();
            let mut known = self.view.known_page(page_no);
            let mut failures = 0;
            let (page, as_of) = loop {
                // Hints are served while the page is on its way (what they read is newer than
                // the page, which then changes nothing for their channels: see
                // `ChannelView::apply`). The page is as of when the request that answered was
                // sent.
                let (api, after) = (Arc::clone(&self.api), self.hedge_after());
                let fetch = async move {
                    hedge::hedged(
                        || {
                            let as_of = clock.stamp();
                            let call = api.list_channels_page(page_no, CHANNEL_PAGE_SIZE, known);
                            async move { call.await.map(|reply| (as_of, reply)) }
                        },
                        after,
                    )
                    .await
                };
                let (fetched, _, failed) = self.serving_hints(clock, fetch, &HashSet::new()).await;
                if let Some(e) = failed {
                    return Err(e);
                }
                match fetched {
                    Ok((as_of, reply)) => match reply.value {
                        ListedPage::Read(page) => break (PageIn::Read(page), as_of),
                        ListedPage::Unchanged => match self.view.replay_page(page_no, as_of) {
                            Some(shape) => break (PageIn::Replayed(shape), as_of),
                            // A hint changed the view while the page was on its way: it is
                            // read again, and read this time.
                            None => known = None,
                        },
                    },
                    Err(e)
                        if failures + 1 < PAGE_ATTEMPTS
                            && (e.is_retryable() || matches!(e, ApiError::Malformed { .. })) =>
                    {
                        // A page is asked for again soon, as a page: the pages already read
                        // stand, and one failure does not cost a poll interval.
                        failures += 1;
                        let wait = evidence::wait_after(failures, rand::random());
                        tracing::info!(error = %e, page_no, attempt = failures, "channel page failed; asking for it again in {wait} ms");
                        self.notes.api_error(now, None, &e).await?;
                        self.serve_hints_until(
                            clock,
                            Instant::now() + Duration::from_millis(wait.max(0) as u64),
                        )
                        .await?;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, page_no, attempts = PAGE_ATTEMPTS, "channel list failed; not acting on what this tick has not read");
                        self.notes.api_error(now, None, &e).await?;
                        return Ok(false);
                    }
                }
            };
            let mut moved = HashSet::new();
            let complete = match page {
                PageIn::Read(page) => {
                    report.pages_read += 1;
                    let (follower, config) = (&mut self.follower, &self.config);
                    let fresh = self
                        .view
                        .apply_page(page_no, &page, as_of, now, |ch, change| {
                            if change == Change::Changed
                                || (change == Change::New && ch.is_recording)
                            {
                                follower.mark(ch.channel_id);
                            }
                            if change != Change::Same
                                && config.channel_with_id(ch.channel_id).is_some()
                            {
                                moved.insert(ch.channel_id.to_owned());
                            }
                        });
                    for skipped in &page.skipped {
                        tracing::warn!(page_no, entry = %skipped, "channel entry could not be read; skipped");
                    }
                    self.notes
                        .entries_skipped(Operation::ListChannels, page.skipped.len());
                    listing.count(page_no, page.shape(), fresh)
                }
                // Listed as last time: every channel on it, and nothing new or changed.
                PageIn::Replayed(shape) => {
                    report.pages_replayed += 1;
                    listing.count(page_no, shape, shape.channels)
                }
            };
            let on_page: Vec<String> = self
                .actions
                .watched()
                .into_iter()
                .filter(|id| self.view.listed(id) && !settled.contains(id))
                .collect();
            for id in on_page {
                self.settle(clock, report, &id, now).await?;
                settled.insert(id);
            }
            if acting && !moved.is_empty() {
                self.act(clock, report, now, Some(&moved), Serve::Hints)
                    .await?;
            }
            if complete {
                break;
            }
            if page_no == MAX_CHANNEL_PAGES {
                tracing::warn!(
                    pages = page_no,
                    "stopped listing channels after {MAX_CHANNEL_PAGES} pages"
                );
                break;
            }
            page_no += 1;
            self.serve_hints_until(clock, page_started + self.listing_pace())
                .await?;
        }
        self.notes.api_answered();
        self.view.retain_listed();
        tracing::debug!(
            read = report.pages_read,
            replayed = report.pages_replayed,
            "channel list complete"
        );
        self.serve_waiting_hints(clock).await?;
        self.store_channels(now).await?;
        if let Some(m) = self.notes.metrics() {
            m.poll_succeeded(now as f64 / 1000.0);
            m.set_channels(self.view.len() as u64);
        }
        Ok(true)
    }

    /// Stores the channels as the view holds them after a complete listing: the rows of the
    /// channels touched since they were last stored (all of them, the first time after a start
    /// or a reload), the configured channels missing from it or back in it, and the heartbeat.
    async fn store_channels(&mut self, now: i64) -> Result<(), EngineError> {
        let touched = self.view.take_touched();
        let stored = match &touched {
            Touched::All => self
                .store
                .observe_channels(self.view.channels(), &*self.config, now)
                .await
                .map(Some),
            // The same channels as the same values as when last stored: only the heartbeat.
            touched if touched.is_empty() => self
                .store
                .poll_heartbeat(self.view.len(), now)
                .await
                .map(|()| None),
            Touched::These(ids) => {
                let mut changes = ChannelChanges::default();
                for id in ids {
                    match (self.view.get(id), self.config.channel_with_id(id)) {
                        (Some(seen), _) => changes.changed.push(&seen.channel),
                        (None, Some(c)) => changes.absent.push((c.id.as_str(), &c.label)),
                        (None, None) => changes.gone.push(id.as_str()),
                    }
                }
                self.store
                    .observe_channel_changes(changes, &*self.config, self.view.len(), now)
                    .await
                    .map(Some)
            }
        };
        let summary = match stored {
            Ok(Some(summary)) => summary,
            Ok(None) => return Ok(()),
            Err(e) => {
                // Not stored: the next listing stores them.
                self.view.touch(touched);
                return Err(e.into());
            }
        };
        for id in &summary.newly_missing {
            self.notes
                .event(
                    now,
                    EventKind::ChannelMissing,
                    Some(id),
                    None,
                    &format!("configured channel {id} was not returned by the Live Station API"),
                )
                .await?;
        }
        for id in &summary.back {
            self.notes
                .event(
                    now,
                    EventKind::ChannelBack,
                    Some(id),
                    None,
                    &format!("configured channel {id} is returned by the API again"),
                )
                .await?;
        }
        Ok(())
    }

    /// Reads the records that need it (see [`Follower::plan`]) and stores them. While the
    /// engine runs, the reads go on in the background: a read that hangs until `api.timeout`,
    /// or a `429` on one of them, holds up neither the next listing nor a start. The batch is
    /// taken when it is complete, at a moment no start of the engine is in flight (see
    /// [`Engine::finish_records`]); no new batch is planned before. A one-shot run reads and
    /// stores them in the tick, serving hints meanwhile.
    async fn follow_records(
        &mut self,
        clock: &TickClock,
        now: i64,
        acting: bool,
    ) -> Result<(), EngineError> {
        if self.records.get_mut().is_some() {
            return Ok(());
        }
        let channels = {
            let ctx = Ctx {
                api: &*self.api,
                store: &self.store,
                notes: &self.notes,
                clock,
                fence: self.leadership.as_ref(),
            };
            self.follower
                .plan(
                    &ctx,
                    &self.config,
                    &self.view,
                    now,
                    false,
                    self.focus.is_none(),
                )
                .await?
        };
        let polled = self.follower.polled_at(now);
        if self.wakes.is_some() {
            if channels.is_empty() && !polled {
                return Ok(());
            }
            let api = Arc::clone(&self.api);
            let (origin_now, origin) = (clock.stamp(), Instant::now());
            let reads = Box::pin(async move {
                let clock = TickClock {
                    now: origin_now,
                    origin,
                };
                follow::read_records(&*api, &clock, channels).await
            });
            *self.records.get_mut() = Some(RecordBatch {
                reads,
                polled,
                starting: self.actions.unsettled_starts(),
            });
            return Ok(());
        }
        self.serve_waiting_hints(clock).await?;
        let reads = self.read_records_serving_hints(clock, channels).await?;
        self.store_records(clock, reads, polled, HashSet::new(), acting, now)
            .await
    }

    /// Takes a batch of record reads [`Engine::follow_records`] sent in the background.
    async fn finish_records(
        &mut self,
        (reads, polled, starting): (Vec<follow::RecordRead>, bool, HashSet<String>),
        clock: &TickClock,
    ) -> Result<(), EngineError> {
        let now = clock.stamp();
        let acting = self.acting();
        self.store_records(clock, reads, polled, starting, acting, now)
            .await
    }

    /// Stores record reads; after a full record poll, the retention guard looks at them.
    async fn store_records(
        &mut self,
        clock: &TickClock,
        reads: Vec<follow::RecordRead>,
        polled: bool,
        mut starting: HashSet<String>,
        acting: bool,
        now: i64,
    ) -> Result<(), EngineError> {
        let ctx = Ctx {
            api: &*self.api,
            store: &self.store,
            notes: &self.notes,
            clock,
            fence: self.leadership.as_ref(),
        };
        // After the hints: a start they sent is settled or known before records are told.
        // A start unsettled when the reads were sent counts too: its record may be among them.
        starting.extend(self.actions.unsettled_starts());
        self.follower
            .store_reads(&ctx, &starting, reads, now)
            .await?;
        if polled {
            follow::retention_guard(&ctx, &self.config, &mut self.follower, acting, now).await?;
        }
        Ok(())
    }

    /// Reads records (see [`follow::read_records`]) while serving callback hints as they
    /// arrive: every record poll interval every unfinished record is read, which at `max_rps`
    /// can take seconds, and a hint is not to wait for it. The reads share the API client, not
    /// the engine's state; they take request slots behind a hint's (`Client` gives background
    /// reads the slots nobody waits for).
    async fn read_records_serving_hints(
        &mut self,
        clock: &TickClock,
        channels: Vec<String>,
    ) -> Result<Vec<follow::RecordRead>, EngineError> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let api = Arc::clone(&self.api);
        let reads = async move { follow::read_records(&*api, clock, channels).await };
        let (reads, _, failed) = self.serving_hints(clock, reads, &HashSet::new()).await;
        failed.map_or(Ok(reads), Err)
    }

    /// Awaits `work` while serving the callback hints that arrive, but for channels in
    /// `except` (whose state `work` holds): those are returned, to be served after it. A hint
    /// that fails (a database write) ends the serving, and its error is returned with the
    /// outcome of `work`, which always runs to its end: it holds what was sent.
    async fn serving_hints<T>(
        &mut self,
        clock: &TickClock,
        work: impl Future<Output = T>,
        except: &HashSet<String>,
    ) -> (T, Vec<String>, Option<EngineError>) {
        tokio::pin!(work);
        let mut deferred: Vec<String> = Vec::new();
        loop {
            let urgent = self.urgent_at(clock);
            let Some(wakes) = self.wakes.as_mut() else {
                return (work.await, deferred, None);
            };
            let first = tokio::select! {
                biased;
                wake = wakes.recv() => match wake {
                    Some(wake) => wake,
                    None => return (work.await, deferred, None),
                },
                done = &mut work => return (done, deferred, None),
                _ = sleep_until_opt(urgent) => {
                    self.launch_urgent(clock.stamp());
                    continue;
                }
                Some(read) = self.reading.get_mut().next(), if !self.reading_ids.is_empty() => {
                    if let Err(e) = Box::pin(self.finish_read(read, clock)).await {
                        return (work.await, deferred, Some(e));
                    }
                    continue;
                }
                // Not while `work` holds channels' state (the starts of a full pass): a start
                // in flight is not known as unsettled, and its record would look foreign.
                batch = batch_done(self.records.get_mut()), if except.is_empty() => {
                    if let Err(e) = Box::pin(self.finish_records(batch, clock)).await {
                        return (work.await, deferred, Some(e));
                    }
                    continue;
                }
            };
            let (later, now_ids): (Vec<String>, Vec<String>) = self
                .take_hints(first)
                .into_iter()
                .partition(|id| except.contains(id));
            for id in later {
                if !deferred.contains(&id) {
                    deferred.push(id);
                }
            }
            if now_ids.is_empty() {
                continue;
            }
            let now = clock.stamp();
            let served = Box::pin(urgently(self.hint(
                now_ids,
                clock,
                &mut TickReport::default(),
                now,
            )))
            .await;
            if let Err(e) = served {
                return (work.await, deferred, Some(e));
            }
        }
    }

    /// Lets the channel's latest observation settle or unblock its action.
    async fn settle(
        &mut self,
        clock: &TickClock,
        report: &mut TickReport,
        id: &str,
        now: i64,
    ) -> Result<(), EngineError> {
        let ctx = Ctx {
            api: &*self.api,
            store: &self.store,
            notes: &self.notes,
            clock,
            fence: self.leadership.as_ref(),
        };
        if let Some(applied) = self.actions.observed(&ctx, &mut self.view, id, now).await? {
            note_applied(
                (&mut self.claims, &mut self.follower),
                report,
                id,
                applied,
                now,
            );
        }
        Ok(())
    }

    /// Whether this instance may act now: always alone; with `[ha]`, while it leads the term
    /// it took over for.
    fn acting(&self) -> bool {
        match self.leadership.role() {
            Role::Alone => true,
            Role::Leader { term } => self.acting_term == Some(term),
            Role::Standby => false,
        }
    }

    /// How long a read that decides something (a channel page, a channel on its own) may take
    /// before it is asked again beside the first (see [`hedge`]).
    fn hedge_after(&self) -> Duration {
        hedge::hedge_after(self.config.api.timeout)
    }

    /// The time between the starts of two listing pages: two request slots of `api.max_rps`,
    /// so that the listing takes at most half of the request budget and a hint arriving during
    /// it finds slots free for its read and its start.
    fn listing_pace(&self) -> Duration {
        Duration::try_from_secs_f64(2.0 / self.config.api.max_rps).unwrap_or(Duration::ZERO)
    }

    /// Waits until `until` (the next listing page), serving callback hints as they arrive.
    async fn serve_hints_until(
        &mut self,
        clock: &TickClock,
        until: Instant,
    ) -> Result<(), EngineError> {
        loop {
            let urgent = self.urgent_at(clock).filter(|at| *at < until);
            let Some(wakes) = self.wakes.as_mut() else {
                tokio::time::sleep_until(until).await;
                return Ok(());
            };
            let first = tokio::select! {
                biased;
                wake = wakes.recv() => match wake {
                    Some(wake) => wake,
                    // Nobody can wake the engine any more: nothing to serve.
                    None => {
                        tokio::time::sleep_until(until).await;
                        return Ok(());
                    }
                },
                _ = tokio::time::sleep_until(until) => return Ok(()),
                _ = sleep_until_opt(urgent) => {
                    self.launch_urgent(clock.stamp());
                    continue;
                }
                Some(read) = self.reading.get_mut().next(), if !self.reading_ids.is_empty() => {
                    Box::pin(self.finish_read(read, clock)).await?;
                    continue;
                }
                batch = batch_done(self.records.get_mut()) => {
                    Box::pin(self.finish_records(batch, clock)).await?;
                    continue;
                }
            };
            self.serve_hints(clock, first).await?;
        }
    }

    /// When a channel falls due a read of its own that is not under way: a channel whose
    /// unclear request can no longer land (see [`evidence`]), or one whose start's next attempt
    /// is due. `None` when there is none, or while this instance does not act, or when nobody
    /// can wake the engine (a one-shot run does its steps in order).
    fn urgent_due(&self) -> Option<i64> {
        if self.wakes.is_none() || !self.acting() {
            return None;
        }
        let idle = |list: Vec<(String, i64)>| -> Vec<(String, i64)> {
            list.into_iter()
                .filter(|(id, _)| !self.reading_ids.contains(id))
                .collect()
        };
        let evidence = self.evidence.next_at(&idle(self.actions.unclear()));
        let retry = self.retries.next_at(&idle(self.actions.start_retries()));
        evidence.into_iter().chain(retry).min()
    }

    /// [`Engine::urgent_due`] as an instant of the tick's clock.
    fn urgent_at(&self, clock: &TickClock) -> Option<Instant> {
        let at = self.urgent_due()?;
        let wait = u64::try_from(at - clock.stamp()).unwrap_or(0);
        Some(Instant::now() + Duration::from_millis(wait))
    }

    /// Sends the reads [`Engine::urgent_due`] found due, in the background: whatever the
    /// engine waits for (a listing page, the starts of a full pass, record reads, the next
    /// tick), it takes each read as it arrives ([`Engine::finish_read`]). A read that hangs
    /// until `api.timeout` then holds up nothing but its own channel.
    fn launch_urgent(&mut self, now: i64) {
        let unclear = self.actions.unclear();
        self.evidence.retain(&unclear);
        let retries = self.actions.start_retries();
        self.retries.retain(&retries);
        let mut due: Vec<(String, Errand)> = self
            .evidence
            .due(&unclear, now)
            .into_iter()
            .map(|id| (id, Errand::Evidence))
            .collect();
        for id in self.retries.due(&retries, now) {
            if let Some((_, at)) = retries.iter().find(|(other, _)| *other == id) {
                due.push((id, Errand::Retry { at: *at }));
            }
        }
        for (id, errand) in due {
            if !self.reading_ids.insert(id.clone()) {
                continue;
            }
            match errand {
                Errand::Evidence => {
                    tracing::debug!(channel_id = %id, "reading a channel with an unsettled request on its own")
                }
                Errand::Retry { .. } => {
                    tracing::debug!(channel_id = %id, "reading a channel whose start is due again on its own")
                }
            }
            let (api, after, origin) = (Arc::clone(&self.api), self.hedge_after(), Instant::now());
            self.reading.get_mut().push(Box::pin(async move {
                let stamp = || now + i64::try_from(origin.elapsed().as_millis()).unwrap_or(0);
                let read = hedge::hedged(
                    || {
                        let as_of = stamp();
                        let call = api.get_channel(&id);
                        async move { call.await.map(|reply| (as_of, reply)) }
                    },
                    after,
                )
                .await;
                let (as_of, read) = match read {
                    Ok((as_of, reply)) => (as_of, Ok(reply)),
                    Err(e) => (now, Err(e)),
                };
                (errand, (id, as_of, read))
            }));
        }
    }

    /// Takes the background reads held while their channels' state was with a call in flight,
    /// once it is back.
    async fn take_held_reads(&mut self, clock: &TickClock) -> Result<(), EngineError> {
        let held = std::mem::take(&mut self.held_reads);
        let (ready, still): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|(_, read)| !self.detached.contains(&read.0));
        self.held_reads = still;
        for read in ready {
            urgently(self.finish_read(read, clock)).await?;
        }
        Ok(())
    }

    /// Takes a read sent by [`Engine::launch_urgent`]: it moves its channel's schedule and
    /// settles, or is acted on, as a hint's read is ([`Engine::take_reads`]).
    async fn finish_read(
        &mut self,
        (errand, read): (Errand, ChannelRead),
        clock: &TickClock,
    ) -> Result<(), EngineError> {
        let id = read.0.clone();
        if self.detached.contains(&id) {
            // Its state is with a call in flight: what the read shows waits for it.
            self.held_reads.push((errand, read));
            return Ok(());
        }
        let now = clock.stamp();
        self.reading_ids.remove(&id);
        let failed = read.2.is_err();
        let idle = i64::try_from(self.config.daemon.poll_interval.as_millis()).unwrap_or(i64::MAX);
        match errand {
            Errand::Evidence => self.evidence.read(&id, failed, now, idle, rand::random()),
            Errand::Retry { .. } => self.retries.read(&id, failed, now, idle, rand::random()),
        }
        self.take_reads(vec![read], clock, &mut TickReport::default(), now)
            .await?;
        if let Errand::Retry { at } = errand {
            // The start was sent again (or its job ended): the next attempt has its own time.
            let still = self.actions.start_retries();
            if !still
                .iter()
                .any(|(other, next)| *other == id && *next == at)
            {
                self.retries.forget(&id);
            }
        }
        Ok(())
    }

    /// Serves the hints waiting in the wake-up channel, if any, without waiting for more:
    /// between the steps of a tick that do not serve hints themselves, so that a hint waits
    /// for one step at most.
    async fn serve_waiting_hints(&mut self, clock: &TickClock) -> Result<(), EngineError> {
        let Some(first) = self.wakes.as_mut().and_then(|w| w.try_recv().ok()) else {
            return Ok(());
        };
        self.serve_hints(clock, first).await
    }

    /// Serves a hint and the others waiting in the wake-up channel (during a tick).
    async fn serve_hints(&mut self, clock: &TickClock, first: Wake) -> Result<(), EngineError> {
        let ids = self.take_hints(first);
        if ids.is_empty() {
            return Ok(());
        }
        let now = clock.stamp();
        urgently(self.hint(ids, clock, &mut TickReport::default(), now)).await
    }

    /// The channels hinted by `first` and the other wake-ups waiting in the channel, each once;
    /// other wake-ups seen on the way ask for another tick right after this one.
    fn take_hints(&mut self, first: Wake) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        let mut next = Some(first);
        while let Some(wake) = next.take() {
            next = self.wakes.as_mut().and_then(|w| w.try_recv().ok());
            match wake {
                Wake::Channel(id) => {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                Wake::Fire(_) | Wake::Leadership | Wake::Claims => self.woken = true,
            }
        }
        ids
    }

    /// A hint (a callback) that these channels changed: each configured one is read on its own
    /// (`getChannel`, side by side, one read per channel) and what its claims want started is
    /// started at once, without waiting for the next listing. Stops and everything else are
    /// left to the next tick, which sees the whole picture (a window's end, the next
    /// occurrence). Channels not in the configuration are ignored. A standby only notes them.
    pub(crate) async fn hint(
        &mut self,
        ids: Vec<String>,
        clock: &TickClock,
        report: &mut TickReport,
        now: i64,
    ) -> Result<(), EngineError> {
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|id| {
                let known = self.config.channel_with_id(id).is_some();
                if !known {
                    tracing::debug!(channel_id = %id, "hint for a channel not in the configuration; ignored");
                }
                known
            })
            .collect();
        for id in &ids {
            self.follower.mark(id);
        }
        if ids.is_empty() || !self.acting() {
            return Ok(());
        }
        let reads = self.read_each(ids, clock).await;
        self.take_reads(reads, clock, report, now).await
    }

    /// Reads the channels whose unclear request can no longer land and that are due a read
    /// (see [`evidence`]), each on its own, and lets what they show settle the requests; what
    /// is then wanted is sent at once (a start sent again when the channel publishes and does
    /// not record), as for a hint.
    async fn seek_evidence(
        &mut self,
        clock: &TickClock,
        report: &mut TickReport,
        now: i64,
    ) -> Result<(), EngineError> {
        let unclear = self.actions.unclear();
        self.evidence.retain(&unclear);
        let due = self.evidence.due(&unclear, now);
        if due.is_empty() {
            return Ok(());
        }
        if self.wakes.is_some() {
            // Running: the reads go on in the background and are taken as they arrive.
            self.launch_urgent(now);
            return Ok(());
        }
        tracing::debug!(channels = ?due, "reading channels with unsettled requests on their own");
        let idle = i64::try_from(self.config.daemon.poll_interval.as_millis()).unwrap_or(i64::MAX);
        self.read_alone_and_act(due, clock, report, now, Some(idle))
            .await
    }

    /// Reads each of `ids` on its own (`getChannel`, side by side) and takes each read as it
    /// arrives ([`Engine::take_reads`]), so a read that hangs until `api.timeout` holds up only
    /// its own channel. With `evidence` (the wait after a read that settles nothing), each read
    /// also moves that channel's evidence schedule.
    async fn read_alone_and_act(
        &mut self,
        ids: Vec<String>,
        clock: &TickClock,
        report: &mut TickReport,
        now: i64,
        evidence: Option<i64>,
    ) -> Result<(), EngineError> {
        let (api, after) = (Arc::clone(&self.api), self.hedge_after());
        let mut reads = stream::iter(ids)
            .map(|id| read_alone(&api, id, clock, after))
            .buffer_unordered(CONCURRENT_CHANNELS);
        while let Some(read) = reads.next().await {
            if let Some(idle) = evidence {
                self.evidence
                    .read(&read.0, read.2.is_err(), now, idle, rand::random());
            }
            self.take_reads(vec![read], clock, report, now).await?;
        }
        Ok(())
    }

    /// Reads each channel on its own (`getChannel`), side by side, one read per channel.
    async fn read_each(&self, ids: Vec<String>, clock: &TickClock) -> Vec<ChannelRead> {
        stream::iter(ids)
            .map(|id| read_alone(&self.api, id, clock, self.hedge_after()))
            .buffered(CONCURRENT_CHANNELS)
            .collect()
            .await
    }

    /// Takes what [`read_alone`] read: each observation goes into the view and settles
    /// what it can (a channel that does not exist any more ends its unclear request), then —
    /// when this instance acts — the channels read are acted on at once. Stops and everything
    /// else are left to the next tick.
    async fn take_reads(
        &mut self,
        reads: Vec<ChannelRead>,
        clock: &TickClock,
        report: &mut TickReport,
        now: i64,
    ) -> Result<(), EngineError> {
        let mut read = HashSet::new();
        let mut observed = Vec::new();
        for (id, as_of, result) in reads {
            match result {
                Ok(reply) => {
                    self.notes.api_answered();
                    observed.push(reply.value.clone());
                    self.view.apply(reply.value.borrowed(), as_of, now);
                    self.settle(clock, report, &id, now).await?;
                    read.insert(id);
                }
                Err(e) if e.refusal() == Some(Refusal::NotFound) && self.actions.busy(&id) => {
                    let ctx = Ctx {
                        api: &*self.api,
                        store: &self.store,
                        notes: &self.notes,
                        clock,
                        fence: self.leadership.as_ref(),
                    };
                    self.actions.channel_gone(&ctx, &id, &e, now).await?;
                }
                Err(e) => {
                    tracing::warn!(channel_id = %id, error = %e, "could not read the channel on its own; trying again soon, and the next poll sees it");
                    self.notes.api_error(now, Some(&id), &e).await?;
                }
            }
        }
        if !read.is_empty() && self.acting() {
            // Within a hint: the others wait for it.
            self.act(clock, report, now, Some(&read), Serve::Nothing)
                .await?;
        }
        // The rows operators read are written after acting: the start waits for its own
        // intent to be written, not for these.
        for channel in &observed {
            self.store.observe_channel(channel, now).await?;
        }
        Ok(())
    }

    /// Channels with an unclear request that the listing did not return are read one by one
    /// (a listing can be truncated; a channel can be gone).
    async fn observe_unlisted(
        &mut self,
        clock: &TickClock,
        report: &mut TickReport,
        now: i64,
    ) -> Result<(), EngineError> {
        let ctx = Ctx {
            api: &*self.api,
            store: &self.store,
            notes: &self.notes,
            clock,
            fence: self.leadership.as_ref(),
        };
        for id in self.actions.awaiting_observation() {
            if self.view.get(&id).is_some() {
                continue;
            }
            let as_of = clock.stamp();
            match self.api.get_channel(&id).await {
                Ok(reply) => {
                    self.notes.api_answered();
                    self.store.observe_channel(&reply.value, now).await?;
                    self.view.apply(reply.value.borrowed(), as_of, now);
                    if let Some(applied) = self
                        .actions
                        .observed(&ctx, &mut self.view, &id, now)
                        .await?
                    {
                        note_applied(
                            (&mut self.claims, &mut self.follower),
                            report,
                            &id,
                            applied,
                            now,
                        );
                    }
                }
                Err(e) if e.refusal() == Some(Refusal::NotFound) => {
                    self.actions.channel_gone(&ctx, &id, &e, now).await?;
                }
                Err(e) => {
                    tracing::warn!(channel_id = %id, error = %e, "could not read a channel with an unsettled request; trying again at the next tick");
                    self.notes.api_error(now, Some(&id), &e).await?;
                }
            }
        }
        Ok(())
    }

    /// Follows the leadership: writes what this instance knows of it to the database (with a
    /// `takeover` event when the leader's term changed), takes over or stands down when its role
    /// changed, and says whether this tick acts.
    async fn follow_leadership(&mut self, now: i64) -> Result<bool, EngineError> {
        let role = self.leadership.role();
        if let Some(status) = self.leadership.status() {
            self.record_leadership(&status, now).await?;
        }
        match role {
            Role::Alone => Ok(true),
            Role::Leader { term } if self.acting_term == Some(term) => Ok(true),
            Role::Leader { term } => self.take_over(term, now).await,
            Role::Standby => {
                if self.acting_term.take().is_some() {
                    self.announced = None;
                    self.actions.stand_down(&self.store, now).await?;
                    let why = self
                        .leadership
                        .status()
                        .and_then(|s| s.standby_reason)
                        .unwrap_or_else(|| "it no longer holds the lease".into());
                    self.notes
                        .event(
                            now,
                            EventKind::LeadershipLost,
                            None,
                            None,
                            &format!("this instance stopped acting: {why}; requests already sent are settled by observation, nothing more is sent"),
                        )
                        .await?;
                }
                Ok(false)
            }
        }
    }

    /// Writes the leadership facts `lsrecd status` shows, and a `takeover` event when the term
    /// differs from the one last written.
    async fn record_leadership(
        &mut self,
        status: &fence::LeadershipStatus,
        now: i64,
    ) -> Result<(), EngineError> {
        use crate::store::keys;
        let known = match self.known_term {
            Some(known) => known,
            None => {
                let known = self.store.get_state_i64(keys::HA_TERM).await?;
                self.known_term = Some(known);
                known
            }
        };
        let mut pairs = vec![
            (keys::HA_INSTANCE, status.instance.clone()),
            (
                keys::HA_ROLE,
                if status.leader { "leader" } else { "standby" }.to_string(),
            ),
            (
                keys::HA_LEASE_RENEWED_AT,
                status
                    .lease_renewed_at
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ),
            (
                keys::HA_STANDBY_REASON,
                status.standby_reason.clone().unwrap_or_default(),
            ),
        ];
        if let (Some(term), Some(holder)) = (status.term, &status.holder)
            && known != Some(term)
        {
            let before = self
                .store
                .get_state(keys::HA_LEADER)
                .await?
                .filter(|l| !l.is_empty());
            let from = match &before {
                Some(b) => format!(", taking over from {b}"),
                None => String::new(),
            };
            let message = if *holder == status.instance {
                self.announced = Some(term);
                format!("this instance ({holder}) is the leader now (term {term}){from}")
            } else {
                format!("{holder} is the leader now (term {term}){from}; this instance stands by")
            };
            self.notes
                .event(now, EventKind::Takeover, None, None, &message)
                .await?;
            if let Some(m) = self.notes.metrics() {
                m.ha_takeover_seen();
            }
            pairs.push((keys::HA_TERM, term.to_string()));
            pairs.push((keys::HA_LEADER, holder.clone()));
            pairs.push((keys::HA_TERM_SEEN_AT, now.to_string()));
            self.known_term = Some(Some(term));
        }
        self.store.set_states(&pairs, now).await?;
        Ok(())
    }

    /// Becoming the leader of `term`: every hand-over note on a channel this instance does not
    /// own becomes a start of an earlier leader that may still land (ARCHITECTURE.md §6.3: a
    /// takeover is a restart without the journal). This tick's observation settles them before
    /// anything is decided. Returns false when the notes could not be read (not acting yet).
    async fn take_over(&mut self, term: i64, now: i64) -> Result<bool, EngineError> {
        let handover = match self.leadership.handover().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "leader, but the hand-over notes cannot be read; not acting yet");
                return Ok(false);
            }
        };
        let owned: HashSet<String> = self
            .store
            .owned_recordings_open()
            .await?
            .into_iter()
            .map(|o| o.channel_id)
            .collect();
        let foreign: Vec<Note> = handover
            .notes
            .into_iter()
            .filter(|n| !owned.contains(&n.channel_id))
            .collect();
        // An earlier leader sent nothing during the last `silent_for_ms` before this instance
        // could take over, and a request of its may land up to 2 × timeout + margin after its
        // intent (a re-signed retry included).
        let landing = landing_of(&self.config);
        let land_by =
            now + (2 * landing.timeout_ms + landing.margin_ms - handover.silent_for_ms).max(0);
        let inherited = self.actions.inherit(&foreign, land_by, now);
        tracing::info!(
            term,
            notes = foreign.len(),
            inherited,
            owned = owned.len(),
            "taking over: an earlier leader's starts are settled by observation before anything is sent"
        );
        self.acting_term = Some(term);
        if self.announced != Some(term) {
            // The same term again (its lease lapsed and was renewed): no new leader, but this
            // instance acts again from here on.
            self.announced = Some(term);
            let instance = self
                .leadership
                .status()
                .map(|s| s.instance)
                .unwrap_or_default();
            self.notes
                .event(
                    now,
                    EventKind::Takeover,
                    None,
                    None,
                    &format!("this instance ({instance}) acts again as the leader (term {term}) now that its lease is renewed"),
                )
                .await?;
        }
        Ok(true)
    }

    /// The leader keeps a hand-over note on every channel it owns a recording on or is
    /// starting. A failure is logged and tried again next tick.
    async fn keep_notes(&mut self) -> Result<(), EngineError> {
        if self.leadership.role() == Role::Alone {
            return Ok(());
        }
        let mut wanted: Vec<Note> = self
            .store
            .owned_recordings_open()
            .await?
            .into_iter()
            .map(|o| Note {
                channel_id: o.channel_id,
                trigger: o.trigger,
                at: o.started_at,
                instance: String::new(),
            })
            .collect();
        for (channel_id, trigger, since) in self.actions.starting() {
            if !wanted.iter().any(|n| n.channel_id == channel_id) {
                wanted.push(Note {
                    channel_id,
                    trigger,
                    at: since,
                    instance: String::new(),
                });
            }
        }
        if let Err(e) = self.leadership.keep_notes(&wanted).await {
            tracing::warn!(error = %e, "hand-over notes not updated; trying again next tick");
        }
        Ok(())
    }

    /// A standby's `owned_recordings` follow the leader's notes: a noted channel that records
    /// is lsrecd's (so it is never reported as someone else's recording, and is stopped at its
    /// end if this instance takes over); an open row without a note was ended by the leader.
    async fn mirror_leader(&mut self, now: i64) -> Result<(), EngineError> {
        let notes = match self.leadership.handover().await {
            Ok(h) => h.notes,
            Err(e) => {
                tracing::debug!(error = %e, "hand-over notes unreadable; ownership not mirrored this tick");
                return Ok(());
            }
        };
        let owned = self.store.owned_recordings_open().await?;
        for note in &notes {
            let recording = self
                .view
                .get(&note.channel_id)
                .is_some_and(|s| s.channel.is_recording);
            if recording && !owned.iter().any(|o| o.channel_id == note.channel_id) {
                self.store
                    .open_owned_recording(&note.channel_id, &note.trigger, None, note.at)
                    .await?;
            }
        }
        for o in owned {
            if !notes.iter().any(|n| n.channel_id == o.channel_id) {
                self.store
                    .close_owned_recording(
                        &o.channel_id,
                        "no longer lsrecd's: ended under the leader",
                        now,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Derives claims, decides for every configured channel, and acts. With `only`, for those
    /// channels alone and starts alone (a page just read, a hint): the rest waits for the tick's
    /// full pass, which knows every occurrence's state.
    async fn act(
        &mut self,
        clock: &TickClock,
        report: &mut TickReport,
        now: i64,
        only: Option<&HashSet<String>>,
        serve: Serve,
    ) -> Result<(), EngineError> {
        self.actions.forget_idle();
        let states = self
            .claims
            .derive(
                &self.store,
                &self.config,
                &self.view,
                claims::Scope {
                    focus: self.focus.as_deref(),
                    only,
                    busy: &|id| self.actions.busy(id),
                },
                now,
            )
            .await?;
        // The context is the engine's shared parts, not the engine: hints are served (with the
        // engine) while the calls of a full pass are in flight.
        let (api, store, notes, fence) = (
            Arc::clone(&self.api),
            self.store.clone(),
            Arc::clone(&self.notes),
            Arc::clone(&self.leadership),
        );
        let ctx = Ctx {
            api: &*api,
            store: &store,
            notes: &notes,
            clock,
            fence: fence.as_ref(),
        };
        // Channels that may call the API are acted on side by side, each with its own part of
        // the action state and of the view, so that a call hanging until `api.timeout` delays
        // only its own channel; the others (nothing to send) in place.
        let mut parts = Vec::new();
        let mut decided = Vec::new();
        let mut failed = None;
        for state in states {
            let desired = decide::decide(&state, now);
            if only.is_some() && !matches!(desired, Some(Decision::Start { .. })) {
                continue;
            }
            if self.actions.may_call(&state.channel_id, desired.as_ref()) {
                let actions = self.actions.detach(&state.channel_id);
                let view = self.view.detach(&state.channel_id);
                parts.push((state, desired, actions, view));
                continue;
            }
            match self
                .actions
                .step(&ctx, &mut self.view, &state, desired.clone(), now)
                .await
            {
                Ok(applied) => decided.push((state, desired, applied)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            // Nothing more is sent in a tick whose database writes fail.
            for (_, _, actions, view) in parts {
                self.actions.rejoin(actions);
                self.view.rejoin(view);
            }
            return Err(e);
        }
        let in_flight: HashSet<String> = parts
            .iter()
            .map(|(state, ..)| state.channel_id.clone())
            .collect();
        self.detached.extend(in_flight.iter().cloned());
        let acted = stream::iter(parts)
            .map(|(state, desired, mut actions, mut view)| {
                let ctx = &ctx;
                async move {
                    let applied = actions
                        .step(ctx, &mut view, &state, desired.clone(), now)
                        .await;
                    (state, desired, applied, actions, view)
                }
            })
            .buffered(CONCURRENT_CHANNELS)
            .collect::<Vec<_>>();
        // A full pass can send many calls, a request slot each: hints for other channels are
        // served meanwhile; those for a channel in flight wait for its call to be put back.
        let (acted, deferred, hint_failed) = if serve == Serve::Hints {
            self.serving_hints(clock, acted, &in_flight).await
        } else {
            (acted.await, Vec::new(), None)
        };
        // Every part is put back, whatever happened to the others: a part holds what was sent.
        for (state, desired, applied, actions, view) in acted {
            self.detached.remove(&state.channel_id);
            self.actions.rejoin(actions);
            self.view.rejoin(view);
            match applied {
                Ok(applied) => decided.push((state, desired, applied)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = hint_failed {
            failed.get_or_insert(e);
        }
        if !deferred.is_empty() && failed.is_none() {
            let now = clock.stamp();
            Box::pin(urgently(self.hint(deferred, clock, report, now))).await?;
        }
        if failed.is_none() {
            Box::pin(self.take_held_reads(clock)).await?;
        }
        for (state, desired, applied) in decided {
            if let Some(applied) = applied {
                note_applied(
                    (&mut self.claims, &mut self.follower),
                    report,
                    &state.channel_id,
                    applied,
                    now,
                );
            }
            // Still wanting a recording after acting: a claim that is not served (yet).
            if only.is_none()
                && matches!(desired, Some(Decision::Start { .. }))
                && !self
                    .view
                    .get(&state.channel_id)
                    .is_some_and(|s| s.channel.is_recording)
            {
                report.unrecorded += 1;
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Waits for the record reads under way in the background to complete (forever when there
/// are none), and takes them with whether they were a full record poll and the channels with
/// an unsettled start when they were sent.
async fn batch_done(
    records: &mut Option<RecordBatch>,
) -> (Vec<follow::RecordRead>, bool, HashSet<String>) {
    let Some(batch) = records.as_mut() else {
        return std::future::pending().await;
    };
    let reads = batch.reads.as_mut().await;
    let (polled, starting) = (batch.polled, std::mem::take(&mut batch.starting));
    *records = None;
    (reads, polled, starting)
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Counts what took effect, has its records read, and lets the claims know of a
/// `max_duration` stop.
/// Reads one channel on its own (`getChannel`), stamped with when the read was requested.
async fn read_alone<A: LiveStation>(
    api: &A,
    id: String,
    clock: &TickClock,
    hedge_after: Duration,
) -> ChannelRead {
    let read = hedge::hedged(
        || {
            let as_of = clock.stamp();
            let call = api.get_channel(&id);
            async move { call.await.map(|reply| (as_of, reply)) }
        },
        hedge_after,
    )
    .await;
    match read {
        Ok((as_of, reply)) => (id, as_of, Ok(reply)),
        Err(e) => (id, clock.stamp(), Err(e)),
    }
}

fn note_applied(
    (claims, follower): (&mut Claims, &mut Follower),
    report: &mut TickReport,
    channel_id: &str,
    applied: Applied,
    now: i64,
) {
    // The records of what just started or stopped are read at the next opportunity.
    follower.mark(channel_id);
    match applied {
        Applied::Started => report.starts += 1,
        Applied::Stopped(reason) => {
            report.stops += 1;
            if reason == decide::StopReason::MaxDuration {
                claims.spend(channel_id, now);
            }
        }
    }
}

fn policy_of(config: &Config) -> RetryPolicy {
    RetryPolicy {
        max_attempts: config.retry.max_attempts,
        initial_backoff: config.retry.initial_backoff,
        max_backoff: config.retry.max_backoff,
    }
}

fn landing_of(config: &Config) -> Landing {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    Landing {
        timeout_ms: ms(config.api.timeout),
        margin_ms: ms(config.api.landing_margin),
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
    use crate::livestation::client::{Permit, Reply, Sent};
    use crate::livestation::memory::{self, Behaviour, MemoryLiveStation};
    use crate::livestation::{ApiError, Channel, ListedPage, Operation, PageDigest, RecordSet};
    use crate::store::ActionState;

    const CH: &str = "ls-unit";

    /// The in-memory Live Station as over a network: reads of one channel take
    /// `read_latency`, and the calls listed in `held` wait until the test opens `gate`.
    struct Network {
        inner: Arc<MemoryLiveStation>,
        read_latency: Duration,
        held: Vec<(Operation, &'static str)>,
        gate: Arc<tokio::sync::Semaphore>,
        /// Held calls that have arrived (and wait, or waited, at the gate).
        arrived: Arc<std::sync::atomic::AtomicUsize>,
        /// Every call in the order it was made: `list 2`, `get a`, `start a`, …
        log: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Network {
        fn new(inner: Arc<MemoryLiveStation>) -> Network {
            Network {
                inner,
                read_latency: Duration::ZERO,
                held: Vec::new(),
                gate: Arc::new(tokio::sync::Semaphore::new(0)),
                arrived: Arc::default(),
                log: Arc::default(),
            }
        }

        fn note(&self, call: String) {
            self.log.lock().expect("the log").push(call);
        }

        async fn pass(&self, op: Operation, channel_id: &str) {
            if self.held.iter().any(|(o, c)| *o == op && *c == channel_id) {
                self.arrived
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = self.gate.acquire().await.map(|p| p.forget());
            }
        }
    }

    impl LiveStation for Network {
        async fn list_channels_page(
            &self,
            page_no: u32,
            page_size: u32,
            known: Option<PageDigest>,
        ) -> Result<Reply<ListedPage>, ApiError> {
            self.note(format!("list {page_no}"));
            if page_no == 1 {
                self.pass(Operation::ListChannels, "page 1").await;
            }
            self.inner
                .list_channels_page(page_no, page_size, known)
                .await
        }

        async fn get_channel(&self, channel_id: &str) -> Result<Reply<Channel>, ApiError> {
            self.note(format!("get {channel_id}"));
            // Latency of the call, not a wait for a condition.
            tokio::time::sleep(self.read_latency).await;
            self.inner.get_channel(channel_id).await
        }

        async fn list_records(&self, channel_id: &str) -> Result<Reply<RecordSet>, ApiError> {
            self.pass(Operation::ListRecords, channel_id).await;
            self.inner.list_records(channel_id).await
        }

        async fn ready(&self) -> Permit {
            self.inner.ready().await
        }

        async fn start_record(&self, channel_id: &str, permit: Permit) -> Sent<RecordSet> {
            self.note(format!("start {channel_id}"));
            self.pass(Operation::StartRecord, channel_id).await;
            self.inner.start_record(channel_id, permit).await
        }

        async fn stop_record(&self, channel_id: &str, permit: Permit) -> Sent<RecordSet> {
            self.inner.stop_record(channel_id, permit).await
        }

        async fn upload(
            &self,
            bucket: &str,
            record_ids: &[i64],
        ) -> Result<Reply<serde_json::Value>, ApiError> {
            self.inner.upload(bucket, record_ids).await
        }

        fn clock_skew(&self) -> Option<chrono::TimeDelta> {
            self.inner.clock_skew()
        }
    }

    /// Checks `condition` every 10 ms for up to 5 s.
    async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        condition()
    }

    fn config(dir: &std::path::Path) -> Arc<Config> {
        config_with(dir, &[CH])
    }

    fn config_with(dir: &std::path::Path, channels: &[&str]) -> Arc<Config> {
        let mut text = format!(
            r#"[api]
endpoint = "http://127.0.0.1:9"
region = "KR"
access_key = "UNIT-ACCESS"
secret_key = "unit-secret"
timeout = "2s"
landing_margin = "5s"

[daemon]
database = "{db}"
poll_interval = "1s"
"#,
            db = dir.join("unit.db").display()
        );
        for id in channels {
            text.push_str(&format!(
                "\n[[channel]]\nid = \"{id}\"\nrecord_when_live = true\n"
            ));
        }
        Arc::new(Config::from_str(&text, &dir.join("config.toml")).expect("a valid configuration"))
    }

    #[tokio::test]
    async fn a_start_with_a_lost_answer_whose_record_is_read_in_its_own_tick_is_lsrecds_even_once_it_ended()
     {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("unit.db"))
            .await
            .expect("database");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        api.add_channel(CH, true);
        // The start takes effect, but its answer is lost.
        api.script(
            Operation::StartRecord,
            Behaviour::ApplyThenFail(memory::server_error(502)),
        );
        let network = Network {
            read_latency: Duration::from_millis(50),
            ..Network::new(api.clone())
        };
        let mut engine = Engine::new(config(dir.path()), network, store.clone(), 1_000);
        assert!(engine.reconcile(1_000).await.expect("reconcile"));
        // The start leaves after the pre-start read, some 50 ms into the tick; the same tick's
        // sweep reads the channel's records and stores the new one.
        engine.tick(1_000).await.expect("tick");
        assert_eq!(api.starts_applied(), 1);
        let state: String = sqlx::query_scalar("SELECT state FROM actions")
            .fetch_one(store.reader())
            .await
            .expect("one action");
        assert_eq!(state, "AMBIGUOUS");
        let tracked: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE kind = 'tracked'")
            .fetch_one(store.reader())
            .await
            .expect("events");
        assert_eq!(
            tracked, 0,
            "the recording may be lsrecd's own: not someone else's"
        );
        // The stream ends before lsrecd looks again; it looks once the start can no longer land.
        api.set_publishing(CH, false);
        engine.tick(1_000 + 7_500).await.expect("tick");
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT state, error_message FROM actions")
                .fetch_all(store.reader())
                .await
                .expect("actions");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            rows[0].0,
            ActionState::Reconciled.as_str(),
            "the recording it made is lsrecd's: {rows:?}"
        );
        let unrecorded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE kind = 'unrecorded'")
                .fetch_one(store.reader())
                .await
                .expect("events");
        assert_eq!(unrecorded, 0, "the claim was recorded");
        assert_eq!(api.calls(Operation::StartRecord), 1);
    }

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

    #[tokio::test]
    async fn a_start_that_hangs_on_one_channel_does_not_hold_up_the_start_of_another() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("unit.db"))
            .await
            .expect("database");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        api.add_channel("a", true);
        api.add_channel("b", true);
        let network = Network {
            held: vec![(Operation::StartRecord, "a")],
            ..Network::new(api.clone())
        };
        let gate = network.gate.clone();
        let mut engine = Engine::new(
            config_with(dir.path(), &["a", "b"]),
            network,
            store.clone(),
            1_000,
        );
        assert!(engine.reconcile(1_000).await.expect("reconcile"));
        // While the start on "a" hangs (until the test opens the gate), "b" is started.
        let watch = async {
            let b_started = eventually(|| api.channel("b").is_some_and(|c| c.is_recording)).await;
            gate.add_permits(1);
            b_started
        };
        let (ticked, b_started) = tokio::join!(engine.tick(1_000), watch);
        let report = ticked.expect("tick");
        assert!(b_started, "b waited for a's start to be answered");
        assert_eq!(report.starts, 2);
        assert_eq!(api.starts_applied(), 2);
        let journal: Vec<(String, String)> =
            sqlx::query_as("SELECT channel_id, state FROM actions ORDER BY channel_id")
                .fetch_all(store.reader())
                .await
                .expect("actions");
        assert_eq!(
            journal,
            [
                ("a".into(), "SUCCEEDED".into()),
                ("b".into(), "SUCCEEDED".into())
            ]
        );
    }

    #[tokio::test]
    async fn records_of_several_channels_are_read_side_by_side() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("unit.db"))
            .await
            .expect("database");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        for id in ["a", "b"] {
            api.add_channel(id, true);
            // Recording (started elsewhere): a restart reads their records.
            let permit = api.ready().await;
            let _ = api.start_record(id, permit).await;
        }
        let network = Network {
            held: vec![(Operation::ListRecords, "a"), (Operation::ListRecords, "b")],
            ..Network::new(api.clone())
        };
        let (gate, arrived) = (network.gate.clone(), network.arrived.clone());
        let mut engine = Engine::new(
            config_with(dir.path(), &["a", "b"]),
            network,
            store.clone(),
            1_000,
        );
        // The restart reads both channels' records; both reads are in flight at once.
        let watch = async {
            let both = eventually(|| arrived.load(std::sync::atomic::Ordering::SeqCst) == 2).await;
            gate.add_permits(2);
            both
        };
        let (reconciled, both) = tokio::join!(engine.reconcile(1_000), watch);
        assert!(reconciled.expect("reconcile"));
        assert!(both, "the second read waited for the first");
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
            .fetch_one(store.reader())
            .await
            .expect("records");
        assert_eq!(stored, 2);
    }

    /// `n` channels `c000`, `c001`, … (three pages from 201 on), all configured.
    fn many(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i:03}")).collect()
    }

    async fn engine_with(
        dir: &std::path::Path,
        ids: &[String],
        api: &Arc<MemoryLiveStation>,
    ) -> (Engine<Network>, Arc<std::sync::Mutex<Vec<String>>>, Store) {
        let store = Store::open(&dir.join("unit.db")).await.expect("database");
        for id in ids {
            api.add_channel(id, false);
        }
        let network = Network::new(api.clone());
        let log = network.log.clone();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let engine = Engine::new(config_with(dir, &refs), network, store.clone(), 1_000);
        (engine, log, store)
    }

    fn position(log: &[String], call: &str) -> usize {
        log.iter()
            .position(|c| c == call)
            .unwrap_or_else(|| panic!("no {call:?} in {log:?}"))
    }

    #[tokio::test]
    async fn a_channel_on_the_first_page_is_started_before_the_second_page_is_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        let ids = many(250);
        let (mut engine, log, _store) = engine_with(dir.path(), &ids, &api).await;
        assert!(engine.reconcile(1_000).await.expect("reconcile"));
        api.set_publishing("c005", true);
        api.set_publishing("c240", true);
        log.lock().expect("log").clear();
        let report = engine.tick(2_000).await.expect("tick");
        let log = log.lock().expect("log").clone();
        assert!(
            position(&log, "start c005") < position(&log, "list 2"),
            "{log:?}"
        );
        assert!(
            position(&log, "list 3") < position(&log, "start c240"),
            "{log:?}"
        );
        assert_eq!(report.starts, 2);
        assert_eq!(api.calls(Operation::StartRecord), 2, "each started once");
        // The tick's full pass after the listing sends nothing more.
        engine.tick(3_000).await.expect("tick");
        assert_eq!(api.calls(Operation::StartRecord), 2);
    }

    #[tokio::test]
    async fn pages_listed_as_last_time_are_replayed_and_a_changed_page_is_read_and_acted_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        let ids = many(250);
        let (mut engine, log, store) = engine_with(dir.path(), &ids, &api).await;
        assert!(engine.reconcile(1_000).await.expect("reconcile"));
        // The listing after the first one finds nothing changed: its pages are remembered.
        let report = engine.tick(2_000).await.expect("tick");
        assert_eq!((report.pages_read, report.pages_replayed), (3, 0));
        log.lock().expect("log").clear();
        let report = engine.tick(3_000).await.expect("tick");
        assert_eq!((report.pages_read, report.pages_replayed), (0, 3));
        assert_eq!(report.channels, 250);
        assert_eq!(
            *log.lock().expect("log"),
            ["list 1", "list 2", "list 3"],
            "one request per page, as when they are read"
        );
        // c240 goes live: its page is read, and the channel started from it.
        api.set_publishing("c240", true);
        log.lock().expect("log").clear();
        let report = engine.tick(4_000).await.expect("tick");
        assert_eq!((report.pages_read, report.pages_replayed), (1, 2));
        assert_eq!(report.starts, 1);
        assert_eq!(
            *log.lock().expect("log"),
            ["list 1", "list 2", "list 3", "start c240"]
        );
        let status: String =
            sqlx::query_scalar("SELECT channel_status FROM channels WHERE channel_id = 'c240'")
                .fetch_one(store.reader())
                .await
                .expect("channel row");
        assert_eq!(status, "PUBLISHING");
        // Its page changed again (it is recording now): read until a listing changes nothing,
        // then replayed, and nothing is started twice.
        let mut replayed_from = None;
        for t in 5..12 {
            let report = engine.tick(t * 1_000).await.expect("tick");
            if report.pages_replayed == 3 {
                replayed_from = Some(t);
                break;
            }
        }
        assert!(replayed_from.is_some(), "the listing never settled");
        assert_eq!(api.calls(Operation::StartRecord), 1);
        assert!(engine.view.is_recording("c240"));
    }

    #[tokio::test]
    async fn a_hint_reads_its_channel_alone_and_starts_it_without_a_listing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        let ids = many(250);
        let (mut engine, log, store) = engine_with(dir.path(), &ids, &api).await;
        assert!(engine.reconcile(1_000).await.expect("reconcile"));
        engine.tick(1_000).await.expect("tick");
        api.set_publishing("c222", true);
        log.lock().expect("log").clear();
        let clock = TickClock::new(2_000);
        engine
            .hint(
                vec!["c222".into(), "not-configured".into()],
                &clock,
                &mut TickReport::default(),
                2_000,
            )
            .await
            .expect("hint");
        assert_eq!(
            *log.lock().expect("log"),
            ["get c222", "start c222"],
            "one read, one start, no listing, nothing for a channel lsrecd does not manage"
        );
        let journal: Vec<(String, String)> =
            sqlx::query_as("SELECT channel_id, state FROM actions")
                .fetch_all(store.reader())
                .await
                .expect("actions");
        assert_eq!(journal, [("c222".into(), "SUCCEEDED".into())]);
        // The next poll sees it recording and sends nothing.
        engine.tick(3_000).await.expect("tick");
        assert_eq!(api.calls(Operation::StartRecord), 1);
    }

    /// 250 channels (three pages), the first page of every listing held at a gate. After
    /// `listings` listings (reconcile's the first), c240, on the last page, goes live and is
    /// hinted while the first page of the next one hangs; the gate opens once it is started.
    /// Returns the calls of that tick, in order, and its report.
    async fn hint_while_page_1_hangs(
        listings: u32,
    ) -> (Vec<String>, TickReport, Arc<MemoryLiveStation>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("unit.db"))
            .await
            .expect("database");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        let ids = many(250);
        for id in &ids {
            api.add_channel(id, false);
        }
        let network = Network {
            held: vec![(Operation::ListChannels, "page 1")],
            ..Network::new(api.clone())
        };
        let (gate, arrived, log) = (
            network.gate.clone(),
            network.arrived.clone(),
            network.log.clone(),
        );
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut engine = Engine::new(config_with(dir.path(), &refs), network, store, 1_000);
        // The first pages of the listings before go through.
        gate.add_permits(listings as usize);
        assert!(engine.reconcile(1_000).await.expect("reconcile"));
        for n in 1..listings {
            engine.tick(1_000 * (1 + i64::from(n))).await.expect("tick");
        }
        let (tx, rx) = mpsc::channel(8);
        engine.wakes = Some(rx);
        log.lock().expect("log").clear();
        let watch = async {
            let held = eventually(|| {
                arrived.load(std::sync::atomic::Ordering::SeqCst) == listings as usize + 1
            })
            .await;
            api.set_publishing("c240", true);
            tx.send(Wake::Channel("c240".into())).await.expect("sent");
            let started = eventually(|| api.channel("c240").is_some_and(|c| c.is_recording)).await;
            // Page 1, and page 1 again should it be asked for twice.
            gate.add_permits(2);
            (held, started)
        };
        let now = 1_000 * (1 + i64::from(listings));
        let (ticked, (held, started)) = tokio::join!(engine.tick(now), watch);
        let report = ticked.expect("tick");
        assert!(held, "the listing began");
        assert!(started, "the hint waited for the page");
        let log = log.lock().expect("log").clone();
        (log, report, api)
    }

    #[tokio::test]
    async fn a_hint_that_arrives_during_a_listing_is_served_while_the_page_is_on_its_way() {
        let (log, _, api) = hint_while_page_1_hangs(1).await;
        assert_eq!(
            &log[..4],
            ["list 1", "get c240", "start c240", "list 2"],
            "{log:?}"
        );
        assert_eq!(api.calls(Operation::StartRecord), 1, "{log:?}");
    }

    /// A page that comes back as last listed cannot be replayed when a hint changed the view
    /// while it was on its way: it is asked for again and read.
    #[tokio::test]
    async fn a_page_unchanged_while_a_hint_changed_the_view_is_read_again() {
        // After two listings, the pages are known.
        let (log, report, api) = hint_while_page_1_hangs(2).await;
        assert_eq!(
            log,
            [
                "list 1",
                "get c240",
                "start c240",
                "list 1",
                "list 2",
                "list 3"
            ],
            "page 1, unchanged, is asked for again; pages 2 and 3 are read as well"
        );
        assert_eq!((report.pages_read, report.pages_replayed), (3, 0));
        assert_eq!(report.channels, 250);
        assert_eq!(api.calls(Operation::StartRecord), 1);
    }

    #[tokio::test]
    async fn a_hint_is_served_while_a_call_of_the_full_pass_hangs_and_its_own_channel_after() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("unit.db"))
            .await
            .expect("database");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        api.add_channel("a", true);
        api.add_channel("b", false);
        let network = Network {
            held: vec![(Operation::StartRecord, "a")],
            ..Network::new(api.clone())
        };
        let (gate, arrived, log) = (
            network.gate.clone(),
            network.arrived.clone(),
            network.log.clone(),
        );
        let mut engine = Engine::new(
            config_with(dir.path(), &["a", "b"]),
            network,
            store.clone(),
            1_000,
        );
        assert!(engine.reconcile(1_000).await.expect("reconcile"));
        let (tx, rx) = mpsc::channel(8);
        engine.wakes = Some(rx);
        // While the start on "a" hangs (until the test opens the gate), "b" goes live and is
        // hinted, and so is "a" itself.
        let watch = async {
            let held = eventually(|| arrived.load(std::sync::atomic::Ordering::SeqCst) == 1).await;
            api.set_publishing("b", true);
            tx.send(Wake::Channel("b".into())).await.expect("sent");
            tx.send(Wake::Channel("a".into())).await.expect("sent");
            let b_started = eventually(|| api.channel("b").is_some_and(|c| c.is_recording)).await;
            gate.add_permits(1);
            (held, b_started)
        };
        let (ticked, (held, b_started)) = tokio::join!(engine.tick(1_000), watch);
        ticked.expect("tick");
        assert!(held, "the start on a was sent");
        assert!(
            b_started,
            "the hint for b waited for a's start to be answered"
        );
        let log = log.lock().expect("log").clone();
        let b_start = position(&log, "start b");
        assert_eq!(position(&log, "get b") + 1, b_start, "{log:?}");
        assert!(
            log[b_start..].contains(&"get a".to_string()),
            "a's hint is served once its start is answered: {log:?}"
        );
        assert_eq!(api.calls(Operation::StartRecord), 2, "{log:?}");
        assert_eq!(api.starts_applied(), 2);
    }

    #[tokio::test]
    async fn a_read_of_its_own_that_arrives_while_the_channels_start_is_in_flight_waits_for_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("unit.db"))
            .await
            .expect("database");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        api.add_channel("a", true);
        let network = Network {
            held: vec![(Operation::StartRecord, "a")],
            ..Network::new(api.clone())
        };
        let (gate, arrived) = (network.gate.clone(), network.arrived.clone());
        let mut engine = Engine::new(config_with(dir.path(), &["a"]), network, store, 1_000);
        assert!(engine.reconcile(1_000).await.expect("reconcile"));
        let (_tx, rx) = mpsc::channel(8);
        engine.wakes = Some(rx);
        // A read of "a" on its own, already answered (live, not recording), is waiting to be
        // taken when the tick's full pass sends a's start and waits for its answer.
        let read = api.get_channel("a").await;
        engine.reading_ids.insert("a".into());
        engine.reading.get_mut().push(Box::pin(async move {
            (Errand::Evidence, ("a".to_string(), 1_000, read))
        }));
        let watch = async {
            let held = eventually(|| arrived.load(std::sync::atomic::Ordering::SeqCst) == 1).await;
            gate.add_permits(1);
            held
        };
        let (ticked, held) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(10), engine.tick(1_000)),
            watch
        );
        assert!(held, "the start on a was sent");
        ticked
            .expect("the tick ends: no second start waits at the gate")
            .expect("tick");
        assert_eq!(api.calls(Operation::StartRecord), 1, "one start, not two");
        assert_eq!(api.starts_applied(), 1);
        assert!(engine.held_reads.is_empty(), "the held read was taken");
        assert!(engine.reading_ids.is_empty());
    }

    #[tokio::test]
    async fn a_standby_takes_a_hint_as_a_note_and_calls_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let api = Arc::new(MemoryLiveStation::new(1_000));
        let ids = many(3);
        let (engine, log, _store) = engine_with(dir.path(), &ids, &api).await;
        let mut engine = engine.with_leadership(Arc::new(Standing));
        api.set_publishing("c001", true);
        let clock = TickClock::new(2_000);
        engine
            .hint(
                vec!["c001".into()],
                &clock,
                &mut TickReport::default(),
                2_000,
            )
            .await
            .expect("hint");
        assert!(log.lock().expect("log").is_empty());
    }

    /// Leadership that always stands by.
    struct Standing;

    impl Fence for Standing {
        fn may_act(&self) -> bool {
            false
        }

        fn check<'a>(
            &'a self,
            _call: fence::Call<'a>,
        ) -> fence::Pending<'a, Result<(), fence::Fenced>> {
            Box::pin(async { Err(fence::Fenced::NotLeader) })
        }
    }

    impl Leadership for Standing {
        fn role(&self) -> Role {
            Role::Standby
        }

        fn status(&self) -> Option<fence::LeadershipStatus> {
            None
        }

        fn handover(&self) -> fence::Pending<'_, Result<fence::Handover, fence::Fenced>> {
            Box::pin(async { Err(fence::Fenced::NotLeader) })
        }

        fn keep_notes<'a>(
            &'a self,
            _wanted: &'a [Note],
        ) -> fence::Pending<'a, Result<(), fence::Fenced>> {
            Box::pin(async { Err(fence::Fenced::NotLeader) })
        }
    }
}
