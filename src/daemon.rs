//! The daemon: wires the configuration, store, client, engine and service glue together, and
//! runs until shutdown. `lsrecd run` and `lsrecd demo` both come through [`run`].
//!
//! Order at start: the configuration is valid (the caller loaded it), the
//! database is migrated, the engine lock is held, the first observation and reconciliation are
//! done — only then `READY=1`. The main loop sends `WATCHDOG=1` and keeps `STATUS=` current.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::engine::fence::Leadership;
use crate::engine::lock::{EngineLock, Holder};
use crate::engine::{Engine, Reload, TickReport, Wake, now_ms};
use crate::ha::Elector;
use crate::livestation::Client;
use crate::livestation::client::ClientConfig;
use crate::service::callback::{CallbackControl, CallbackSettings};
use crate::service::http;
use crate::service::metrics::Metrics;
use crate::service::notify::Notifier;
use crate::service::readiness::Readiness;
use crate::service::signals::Reload as ReloadSignal;
use crate::store::Store;

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("database {path}: {source}")]
    Store {
        path: PathBuf,
        source: crate::store::StoreError,
    },
    #[error(transparent)]
    Lock(#[from] crate::engine::lock::LockError),
    #[error("API client: {0}")]
    Client(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("[ha]: {0}")]
    Ha(#[from] crate::ha::etcd::EtcdError),
}

/// Called by the daemon once a burst of short-lived memory is behind it: after start-up (the
/// parsed configuration file's syntax tree, about 15 MB at 10,000 channels, and the first
/// listing), after every reload, and after every tick that read the whole channel list (100
/// pages parsed and dropped at 10,000 channels). See [`on_memory_to_release`].
static RELEASE_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what the daemon does when memory it freed could go back to the system (see
/// [`RELEASE_MEMORY`]). The `lsrecd` binary gives back the C allocator's free pages: freed
/// memory between blocks still in use otherwise stays with the process for as long as it runs.
/// Only the first call has an effect.
pub fn on_memory_to_release(hook: fn()) {
    let _ = RELEASE_MEMORY.set(hook);
}

fn release_memory() {
    if let Some(hook) = RELEASE_MEMORY.get() {
        hook();
    }
}

/// Takes the engine lock. A one-shot `lsrecd start|stop` holding it lets go within seconds, so
/// that is waited for (up to a minute); another daemon is not.
async fn acquire_lock(database: &std::path::Path) -> Result<EngineLock, DaemonError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut told = false;
    loop {
        match EngineLock::try_acquire(database, Holder::Daemon) {
            Err(e) if e.held_by_command() && tokio::time::Instant::now() < deadline => {
                if !std::mem::replace(&mut told, true) {
                    tracing::info!("waiting for a one-shot lsrecd start/stop to finish: {e}");
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other.map_err(DaemonError::from),
        }
    }
}

/// Builds the API client from `[api]`.
pub fn client_for(config: &Config) -> Result<Client, DaemonError> {
    Client::new(ClientConfig {
        endpoint: config.api.endpoint.clone(),
        region: config.api.region,
        credentials: config.api.credentials.clone(),
        timeout: config.api.timeout,
        max_rps: config.api.max_rps,
    })
    .map_err(|e| DaemonError::Client(e.to_string()))
}

/// Opens (creating and migrating) the database of `config`.
pub async fn open_store(config: &Config) -> Result<Store, DaemonError> {
    let path = config.daemon.database.clone();
    let store = Store::open(&path)
        .await
        .map_err(|source| DaemonError::Store {
            path: path.clone(),
            source,
        })?;
    store
        .limit_size(config.daemon.max_database_size)
        .await
        .map_err(|source| DaemonError::Store { path, source })?;
    Ok(store)
}

/// Where a reload comes from: SIGHUP re-reads `path`; SIGUSR1 (`claims`) says a manual claim
/// changed, and the engine acts on it at once.
pub struct ReloadSource {
    pub path: PathBuf,
    pub signal: ReloadSignal,
    pub claims: Option<crate::service::signals::ClaimsChanged>,
}

/// Runs the daemon until `shutdown` resolves. With `reload`, every SIGHUP re-reads the
/// configuration file; an invalid file keeps the configuration in force.
pub async fn run(
    config: Arc<Config>,
    reload: Option<ReloadSource>,
    notifier: Notifier,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    // The lock first: only its holder creates or migrates the database.
    let _lock = acquire_lock(&config.daemon.database).await?;
    let store = open_store(&config).await?;
    let now = now_ms();
    store
        .set_state(
            crate::store::keys::RETENTION_WARN_BEFORE_MS,
            &config.retention.warn_before.as_millis().to_string(),
            now,
        )
        .await
        .map_err(|source| DaemonError::Store {
            path: config.daemon.database.clone(),
            source,
        })?;
    let metrics = Metrics::new();
    metrics.set_database_available(true);
    let notifier = Arc::new(notifier);
    let keepalive = Keepalive::new(notifier.clone());
    let client = observed_client(&config, &metrics, &keepalive)?;
    let readiness = Readiness::for_poll_interval(config.daemon.poll_interval, 3);
    let (wake_tx, wake_rx) = mpsc::channel::<Wake>(256);
    let (stop_http_tx, stop_http_rx) = tokio::sync::watch::channel(false);
    let stop_claims_rx = stop_http_rx.clone();
    let mut servers = tokio::task::JoinSet::new();
    let callbacks = spawn_listeners(
        &config,
        &metrics,
        &readiness,
        wake_tx.clone(),
        stop_http_rx,
        &mut servers,
    )
    .await?;

    // With [ha], the lease and the campaign start now; the engine acts only once it leads, and
    // never before its first reconciliation.
    let (stop_elector_tx, stop_elector_rx) = tokio::sync::watch::channel(false);
    let elector = match &config.ha {
        Some(ha) => Some(Elector::new(
            ha,
            Some(metrics.clone()),
            Some(wake_tx.clone()),
        )?),
        None => None,
    };
    let elector_task = elector.clone().map(|e| {
        let mut stop = stop_elector_rx.clone();
        tokio::spawn(e.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    });
    let stop_elector = async move {
        let _ = stop_elector_tx.send(true);
        if let Some(task) = elector_task {
            let _ = task.await;
        }
    };

    tokio::pin!(shutdown);
    let mut engine =
        Engine::new(config.clone(), client, store.clone(), now).with_metrics(metrics.clone());
    if let Some(e) = &elector {
        engine = engine.with_leadership(e.clone() as Arc<dyn Leadership>);
    }
    // Reloads are taken from here on: a start-up stuck on refused keys is mended by a SIGHUP.
    let (reload_tx, mut reload_rx) = mpsc::channel::<Reload>(4);
    let mut reload = reload;
    if let Some(mut claims) = reload.as_mut().and_then(|r| r.claims.take()) {
        let wake = wake_tx.clone();
        let mut stop = stop_claims_rx;
        servers.spawn(async move {
            loop {
                tokio::select! {
                    got = claims.recv() => {
                        if got.is_none() {
                            break;
                        }
                        tracing::debug!("SIGUSR1: a manual claim changed");
                        let _ = wake.try_send(Wake::Claims);
                    }
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        });
    }
    let reloader = reload.map(|r| {
        tokio::spawn(reload_on_sighup(
            r,
            config.clone(),
            reload_tx,
            Reloadable {
                metrics: metrics.clone(),
                keepalive: keepalive.clone(),
                readiness: readiness.clone(),
                callbacks: callbacks.clone(),
            },
        ))
    });
    notifier.status("reading channels and reconciling");
    // The first observation and reconciliation, retried until the API answers.
    let startup = async {
        let mut delay = config.retry.initial_backoff;
        loop {
            match engine.reconcile(now_ms()).await {
                Ok(true) => return Ok::<(), DaemonError>(()),
                Ok(false) => notifier.status("waiting for the Live Station API"),
                // Not fatal: the database can come back (a lock released, space freed).
                Err(e) => {
                    tracing::error!(error = %e, "reconciling at start failed on the database; retrying");
                    notifier.status("waiting for the database");
                    store.reopen_writer().await;
                }
            }
            keepalive.beat();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {
                    delay = (delay * 2).min(config.retry.max_backoff);
                }
                Some(r) = reload_rx.recv() => {
                    engine.reload(r.config, r.client);
                    delay = config.retry.initial_backoff;
                }
            }
        }
    };
    let started = tokio::select! {
        r = startup => Some(r),
        _ = &mut shutdown => None,
    };
    if !matches!(started, Some(Ok(()))) {
        if let Some(r) = &reloader {
            r.abort();
        }
        stop_elector.await;
        wind_down(&notifier, &stop_http_tx, &mut servers, &store).await;
        return started.unwrap_or(Ok(()));
    }
    readiness.observed();
    notifier.ready();
    tracing::info!(
        channels = config.channels.len(),
        schedules = config.schedules.len(),
        database = %config.daemon.database.display(),
        "lsrecd is running"
    );
    // Parsing the configuration and the first listing are behind: their memory can go.
    release_memory();

    let status_notifier = notifier.clone();
    let beat_keepalive = keepalive.clone();
    let role_of = elector.clone();
    let on_beat = move |report: Option<&TickReport>, now: i64| {
        beat_keepalive.beat();
        if let Some(report) = report {
            if report.observed {
                readiness.observed();
                // The listing's pages were parsed and dropped.
                release_memory();
            }
            let mut line = status_line(report, now);
            if let Some(s) = role_of.as_ref().and_then(|e| e.status()) {
                line.push_str(&role_phrase(&s));
            }
            readiness.database_failing(report.database_unavailable_since.is_some());
            status_notifier.status(&line);
        }
    };
    let every = notifier.watchdog_interval();
    let result = engine
        .run(wake_rx, reload_rx, on_beat, every, shutdown)
        .await;
    if let Some(r) = reloader {
        r.abort();
    }
    stop_elector.await;
    wind_down(&notifier, &stop_http_tx, &mut servers, &store).await;
    result.map_err(DaemonError::from)
}

/// `; leader` or `; standby, leader NAME`, for `STATUS=`.
fn role_phrase(s: &crate::engine::fence::LeadershipStatus) -> String {
    match (s.leader, &s.holder) {
        (true, _) => "; leader".to_string(),
        (false, Some(holder)) if *holder != s.instance => format!("; standby, leader {holder}"),
        (false, _) => "; standby, no leader".to_string(),
    }
}

/// `STOPPING=1`, the HTTP endpoints closed, the database closed. Cloud recordings are left
/// running: stopping lsrecd stops no recording.
async fn wind_down(
    notifier: &Notifier,
    stop_http: &tokio::sync::watch::Sender<bool>,
    servers: &mut tokio::task::JoinSet<()>,
    store: &Store,
) {
    notifier.stopping();
    let _ = stop_http.send(true);
    while servers.join_next().await.is_some() {}
    store.close().await;
}

/// `WATCHDOG=1`, at most every 250 ms, from the main loop and from answered API calls.
#[derive(Clone)]
struct Keepalive {
    notifier: Arc<Notifier>,
    last: Arc<std::sync::atomic::AtomicI64>,
}

impl Keepalive {
    fn new(notifier: Arc<Notifier>) -> Keepalive {
        Keepalive {
            notifier,
            last: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        }
    }

    fn beat(&self) {
        use std::sync::atomic::Ordering;
        let now = now_ms();
        let last = self.last.load(Ordering::Relaxed);
        if now - last >= 250
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.notifier.watchdog();
        }
    }
}

fn status_line(report: &TickReport, now: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(now)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default();
    if let Some(since) = report.database_unavailable_since {
        let since = chrono::DateTime::from_timestamp_millis(since)
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_default();
        format!("database failing since {since} UTC; sending nothing until it takes writes")
    } else if report.observed {
        format!(
            "{} channels, {} recording, last poll {at} UTC",
            report.channels, report.recording
        )
    } else {
        format!(
            "{} channels, {} recording, poll failed at {at} UTC",
            report.channels, report.recording
        )
    }
}

/// Binds and serves the metrics and callback listeners; returns the handle that changes the
/// callback settings on reload, when callbacks are served.
async fn spawn_listeners(
    config: &Arc<Config>,
    metrics: &Metrics,
    readiness: &Readiness,
    wake_tx: mpsc::Sender<Wake>,
    stop: tokio::sync::watch::Receiver<bool>,
    servers: &mut tokio::task::JoinSet<()>,
) -> Result<Option<CallbackControl>, DaemonError> {
    let metrics_router = config.metrics.as_ref().map(|m| {
        (
            m.listen,
            http::metrics_router(metrics.clone(), readiness.clone()),
        )
    });
    let mut control = None;
    let callback_router = match (&config.callback, CallbackSettings::from_config(config)) {
        (Some(c), Some(settings)) => {
            let (hint_tx, mut hint_rx) = mpsc::channel::<crate::service::Hint>(256);
            let wake = wake_tx.clone();
            servers.spawn(async move {
                while let Some(hint) = hint_rx.recv().await {
                    let _ = wake.try_send(Wake::Channel(hint.channel_id));
                }
            });
            let (router, handle) =
                crate::service::callback::callback_router(settings, hint_tx, metrics.clone());
            control = Some(handle);
            Some((c.listen, router))
        }
        _ => None,
    };
    let routers = http::group_by_address(metrics_router.into_iter().chain(callback_router));
    let limits = http::ListenerLimits::for_this_process();
    for (addr, router) in routers {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen { addr, source })?;
        tracing::info!(%addr, "HTTP endpoint listening");
        let mut stop = stop.clone();
        servers.spawn(async move {
            let served = http::serve_with_limits(listener, router, limits, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
            if let Err(e) = served {
                tracing::error!(%addr, error = %e, "HTTP endpoint failed");
            }
        });
    }
    Ok(control)
}

/// The API client for `config`, reporting each call to the metrics and the watchdog.
fn observed_client(
    config: &Config,
    metrics: &Metrics,
    keepalive: &Keepalive,
) -> Result<Client, DaemonError> {
    let client = client_for(config)?;
    let (metrics, keepalive) = (metrics.clone(), keepalive.clone());
    client.observe_calls(Arc::new(move |operation, outcome, elapsed| {
        metrics.api_request(operation, outcome, elapsed);
        // Each answered call is progress: a long tick (many pages, retries) is not a stuck one.
        keepalive.beat();
    }));
    Ok(client)
}

/// Whether two `[api]` sections would build different clients.
fn api_changed(a: &Config, b: &Config) -> bool {
    let (a, b) = (&a.api, &b.api);
    a.endpoint != b.endpoint
        || a.region != b.region
        || a.timeout != b.timeout
        || a.max_rps != b.max_rps
        || a.credentials.access_key != b.credentials.access_key
        || a.credentials.secret_key != b.credentials.secret_key
}

/// What a reload updates besides the engine's configuration.
struct Reloadable {
    metrics: Metrics,
    keepalive: Keepalive,
    readiness: Readiness,
    /// The callback route's settings, when callbacks are served.
    callbacks: Option<CallbackControl>,
}

/// Re-reads the configuration on every SIGHUP; an invalid file keeps the old configuration.
/// A changed `[api]` (rotated keys, another endpoint) gets a new client; the callback token and
/// the channels callbacks may name are replaced at once (the old token stops working); settings
/// that need a restart (the database, the listeners) are reported and keep their old values
/// until then.
async fn reload_on_sighup(
    source: ReloadSource,
    mut current: Arc<Config>,
    tx: mpsc::Sender<Reload>,
    with: Reloadable,
) {
    let ReloadSource {
        path,
        signal: mut hup,
        claims: _,
    } = source;
    let Reloadable {
        metrics,
        keepalive,
        readiness,
        callbacks,
    } = with;
    while hup.recv().await.is_some() {
        let loaded = Config::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                let client = if api_changed(&current, &config) {
                    Some(
                        observed_client(&config, &metrics, &keepalive)
                            .map_err(|e| e.to_string())?,
                    )
                } else {
                    None
                };
                Ok((config, client))
            });
        match loaded {
            Ok((config, client)) => {
                if config.daemon.database != current.daemon.database {
                    tracing::warn!("daemon.database changed: it takes effect at the next restart");
                }
                if config.metrics.as_ref().map(|m| m.listen)
                    != current.metrics.as_ref().map(|m| m.listen)
                    || config.callback.as_ref().map(|c| c.listen)
                        != current.callback.as_ref().map(|c| c.listen)
                {
                    tracing::warn!(
                        "metrics/callback listen addresses take effect at the next restart"
                    );
                }
                if config.ha != current.ha {
                    tracing::warn!("[ha] changed: it takes effect at the next restart");
                }
                let config = Arc::new(config);
                if let Some(callbacks) = &callbacks {
                    apply_callback_settings(callbacks, &current, &config);
                }
                tracing::info!(path = %path.display(), new_client = client.is_some(), "configuration reloaded");
                release_memory();
                metrics.config_reload(true);
                readiness.set_max_age(config.daemon.poll_interval * 3);
                current = config.clone();
                if tx.send(Reload { config, client }).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(
                    "configuration reload failed, the previous configuration stays in force: {e}"
                );
                metrics.config_reload(false);
            }
        }
    }
}

/// Points the running callback route at the reloaded token and channels; without `[callback]`
/// it refuses every callback until the restart closes the listener.
fn apply_callback_settings(callbacks: &CallbackControl, old: &Config, new: &Arc<Config>) {
    match CallbackSettings::from_config(new) {
        Some(settings) => {
            let token_changed = old
                .callback
                .as_ref()
                .is_none_or(|c| c.token != settings.token);
            callbacks.update(settings);
            if token_changed {
                tracing::info!("callback token replaced; the previous one no longer works");
            }
        }
        None => {
            callbacks.disable();
            tracing::warn!(
                "[callback] was removed: callbacks are refused from now on, and the listener \
                 closes at the next restart"
            );
        }
    }
}
