//! The HTTP side of the daemon: one server for the optional `[metrics] listen` and
//! `[callback] listen` addresses, which may be the same address (routes merged) or two.
//!
//! Metrics routes: `GET /metrics`, `GET /healthz` (200 while the process serves), `GET /readyz`
//! (200 or 503 from [`Readiness`]). The callback route lives in [`super::callback`].
//!
//! # Connections
//!
//! Each listener serves HTTP/1.1 with hyper directly (axum's own server has no knobs for the
//! following) and holds every connection to [`ListenerLimits`]:
//!
//! - a cap on open connections, so slow or idle clients can never use up the file descriptors
//!   the API client and the database share. At the cap, a new connection takes the place of the
//!   one that has been waiting longest for a request (idle between requests, or still sending
//!   its request head), which is closed; a connection with a request in progress is never
//!   closed for another. Only when every connection has a request in progress is the new one
//!   closed as soon as it is accepted. So whoever holds connections open without using them
//!   cannot keep a real caller out: the caller's connection is the newest, and the idle ones
//!   go first;
//! - a header-read timeout that runs from the moment a connection opens or its previous answer
//!   was sent: a client that trickles its request head (slowloris) or keeps an idle keep-alive
//!   connection open is cut off after it;
//! - at most so many requests per connection (the last answer says `Connection: close`) and a
//!   maximum connection age, so no connection lives forever;
//! - a bound on the size of a request head.
//!
//! Bodies are the callback route's business (size limit and body timeout, see
//! [`super::callback::CallbackLimits`]). On shutdown the listener closes at once, connections
//! finish their current request, and whatever is still open after [`SHUTDOWN_GRACE`] is cut.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::metrics::{self, Metrics};
use super::readiness::Readiness;

/// How long [`serve`] lets in-flight requests finish after shutdown is requested, so the daemon
/// stays within its 10 s exit budget even with a slow client.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Largest buffer a connection reads into: a request head plus what a pipelining client sends
/// ahead of it.
const MAX_READ_BUFFER: usize = 64 * 1024;

/// How long the accept loop pauses after an accept error other than a connection's own (for
/// example, the process is out of file descriptors), instead of spinning on it.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What one listener allows its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections served at once; a connection beyond it is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How long a connection may take to send a complete request head, from the moment it
    /// opens or its previous answer was sent; also the idle timeout of keep-alive connections.
    pub header_read_timeout: Duration,
    /// Requests served on one connection; the last answer carries `Connection: close`.
    pub max_requests_per_connection: u32,
    /// After this long a connection is closed once its current request is answered (and cut
    /// [`SHUTDOWN_GRACE`] later if that does not happen).
    pub max_connection_age: Duration,
    /// Largest request line plus headers; larger ones get 431.
    pub max_header_bytes: usize,
}

/// [`ListenerLimits::max_connections`] when the file-descriptor limit allows it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(10),
            max_requests_per_connection: 100,
            max_connection_age: Duration::from_secs(10 * 60),
            max_header_bytes: 16 * 1024,
        }
    }
}

impl ListenerLimits {
    /// The defaults, with at most a quarter of the process's file-descriptor limit
    /// (`RLIMIT_NOFILE`, soft) per listener: with two listeners full, half of the descriptors
    /// are still there for the API client, the database and the journal. The systemd unit sets
    /// `LimitNOFILE=16384`, which allows the full [`DEFAULT_MAX_CONNECTIONS`].
    pub fn for_this_process() -> ListenerLimits {
        let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        ListenerLimits::for_fd_limit(soft)
    }

    /// The defaults for a process whose soft `RLIMIT_NOFILE` is `soft` (`None`: unlimited).
    pub fn for_fd_limit(soft: Option<u64>) -> ListenerLimits {
        let budget = soft.map_or(usize::MAX, |n| usize::try_from(n / 4).unwrap_or(usize::MAX));
        ListenerLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS.min(budget).max(1),
            ..ListenerLimits::default()
        }
    }
}

/// `GET /metrics`, `GET /healthz` and `GET /readyz`.
pub fn metrics_router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics).with_state(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz).with_state(readiness))
}

/// Groups routers by listen address: routers on the same address are merged into one, so the
/// daemon binds each distinct address once. Order of first appearance is kept.
///
/// ```
/// # use lsrecd::service::http::group_by_address;
/// let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9464));
/// let grouped = group_by_address([(addr, axum::Router::new()), (addr, axum::Router::new())]);
/// assert_eq!(grouped.len(), 1);
/// ```
pub fn group_by_address(
    routers: impl IntoIterator<Item = (SocketAddr, Router)>,
) -> Vec<(SocketAddr, Router)> {
    let mut grouped: Vec<(SocketAddr, Router)> = Vec::new();
    for (addr, router) in routers {
        match grouped.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(router),
            None => grouped.push((addr, router)),
        }
    }
    grouped
}

/// [`serve_with_limits`] with [`ListenerLimits::default`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_with_limits(listener, router, ListenerLimits::default(), shutdown).await
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish for at most [`SHUTDOWN_GRACE`] and returns.
pub async fn serve_with_limits(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(MAX_READ_BUFFER.max(limits.max_header_bytes))
        .keep_alive(true);
    let http = Arc::new(http);
    let started = Instant::now();
    let mut open = OpenConnections::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refused = Refusals::default();
    tokio::pin!(shutdown);
    tracing::info!(%addr, max_connections = limits.max_connections, "HTTP listener started");

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if open.len() >= limits.max_connections && !open.evict_longest_waiting() {
                        // Every connection has a request in progress. Dropping the stream
                        // closes it now: the client learns at once, and the process holds no
                        // descriptor for it.
                        drop(stream);
                        refused.note(addr, limits.max_connections);
                        continue;
                    }
                    let activity = Arc::new(Activity::new(started));
                    let connection = Connection {
                        http: http.clone(),
                        router: router.clone(),
                        limits,
                        stop: stop_rx.clone(),
                        activity: activity.clone(),
                    };
                    let abort = connections.spawn(connection.serve(stream));
                    open.insert(abort, activity);
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot accept connections");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            // Finished connections are reaped as they go, so the set stays as small as the
            // number of open connections.
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(e) => e.id(),
                };
                open.remove(id);
            }
        }
    }

    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(%addr, grace = ?SHUTDOWN_GRACE, "HTTP connections still open at shutdown; closing");
        connections.abort_all();
    }
    Ok(())
}

/// Accept errors that concern one connection only (it was reset before it was accepted).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The connections a listener holds open: what each is doing, and how to close it.
#[derive(Default)]
struct OpenConnections {
    open: HashMap<tokio::task::Id, (AbortHandle, Arc<Activity>)>,
    evicted: u64,
}

impl OpenConnections {
    fn len(&self) -> usize {
        self.open.len()
    }

    fn insert(&mut self, abort: AbortHandle, activity: Arc<Activity>) {
        self.open.insert(abort.id(), (abort, activity));
    }

    fn remove(&mut self, id: tokio::task::Id) {
        self.open.remove(&id);
    }

    /// Closes the connection that has been waiting longest for a request (none in progress);
    /// false when every connection has a request in progress.
    fn evict_longest_waiting(&mut self) -> bool {
        let victim = self
            .open
            .iter()
            .filter_map(|(id, (_, activity))| Some((activity.waiting_since()?, *id)))
            .min()
            .map(|(_, id)| id);
        let Some((abort, _)) = victim.and_then(|id| self.open.remove(&id)) else {
            return false;
        };
        // The task is dropped at its next poll, and the socket with it.
        abort.abort();
        self.evicted += 1;
        if self.evicted.is_power_of_two() {
            tracing::info!(
                evicted = self.evicted,
                "HTTP connection limit reached; the connections waiting longest for a request are closed for new ones"
            );
        }
        true
    }
}

/// What a connection is doing: requests in progress, and since when it has been waiting for
/// one (milliseconds from the listener's start).
struct Activity {
    started: Instant,
    in_progress: AtomicU32,
    waiting_since_ms: AtomicU64,
}

impl Activity {
    fn new(started: Instant) -> Activity {
        let activity = Activity {
            started,
            in_progress: AtomicU32::new(0),
            waiting_since_ms: AtomicU64::new(0),
        };
        activity.idle();
        activity
    }

    /// Since when the connection has been waiting for a request; `None` while one is in
    /// progress.
    fn waiting_since(&self) -> Option<u64> {
        (self.in_progress.load(Ordering::Acquire) == 0)
            .then(|| self.waiting_since_ms.load(Ordering::Acquire))
    }

    fn idle(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.waiting_since_ms.store(ms, Ordering::Release);
    }
}

/// A request in progress on a connection, until dropped (answered, or cut).
struct InProgress(Arc<Activity>);

impl InProgress {
    fn begin(activity: Arc<Activity>) -> InProgress {
        activity.in_progress.fetch_add(1, Ordering::AcqRel);
        InProgress(activity)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.idle();
        self.0.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Warns about connections closed at the cap, at most once a minute per listener.
#[derive(Default)]
struct Refusals {
    since_warning: u64,
    warned_at: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, addr: SocketAddr, cap: usize) {
        self.since_warning += 1;
        let due = self
            .warned_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
        if due {
            tracing::warn!(
                %addr,
                max_connections = cap,
                refused = self.since_warning,
                "HTTP connection limit reached with a request in progress on every connection; new connections are closed at once"
            );
            self.warned_at = Some(Instant::now());
            self.since_warning = 0;
        }
    }
}

/// One accepted connection and what it needs.
struct Connection {
    http: Arc<hyper::server::conn::http1::Builder>,
    router: Router,
    limits: ListenerLimits,
    stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
}

impl Connection {
    async fn serve(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let served = Arc::new(AtomicU32::new(0));
        let (router, max_requests) = (self.router, self.limits.max_requests_per_connection);
        let activity = self.activity;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let number = served.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            let in_progress = InProgress::begin(activity.clone());
            let call = router.clone().oneshot(request);
            async move {
                let _in_progress = in_progress;
                let mut response = call
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                if number >= max_requests {
                    // hyper closes the connection after an answer that says so.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = self.http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let mut stop = self.stop;
        let stopped = async move {
            // A dropped sender also means stop.
            let _ = stop.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopped);
        let deadline = tokio::time::sleep(self.limits.max_connection_age);
        tokio::pin!(deadline);
        let mut closing = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        // Timeouts, resets and malformed requests: the client's business.
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                    return;
                }
                () = &mut stopped, if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = &mut deadline => {
                    if closing {
                        // Too old and still not done with its last request: cut.
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                    deadline.as_mut().reset(Instant::now() + SHUTDOWN_GRACE);
                }
            }
        }
    }
}

async fn render_metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, String) {
    let state = readiness.state();
    let status = if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{state}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listener_gets_at_most_a_quarter_of_the_descriptor_limit() {
        let cap = |soft| ListenerLimits::for_fd_limit(soft).max_connections;
        assert_eq!(cap(Some(1024)), 256, "a shell's usual soft limit");
        assert_eq!(cap(Some(16384)), 4096, "the unit's LimitNOFILE");
        assert_eq!(cap(Some(1 << 20)), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(cap(None), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(cap(Some(0)), 1);
    }
}
