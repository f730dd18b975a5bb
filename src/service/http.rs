//! The HTTP side of the daemon: one axum server for the optional `[metrics] listen` and
//! `[callback] listen` addresses, which may be the same address (routes merged) or two.
//!
//! Metrics routes: `GET /metrics`, `GET /healthz` (200 while the process serves), `GET /readyz`
//! (200 or 503 from [`Readiness`]). The callback route lives in [`super::callback`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::metrics::{self, Metrics};
use super::readiness::Readiness;

/// How long [`serve`] lets in-flight requests finish after shutdown is requested, so the daemon
/// stays within its 10 s exit budget even with a slow client.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

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

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// for at most [`SHUTDOWN_GRACE`] and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        // An error means the sender is gone, which also means stop.
        let _ = stop_rx.wait_for(|stop| *stop).await;
    });
    let mut server = std::pin::pin!(server.into_future());
    tracing::info!(%addr, "HTTP listener started");

    tokio::select! {
        result = &mut server => return result,
        () = shutdown => {}
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result,
        Err(_elapsed) => {
            tracing::warn!(%addr, grace = ?SHUTDOWN_GRACE, "HTTP connections still open at shutdown; closing");
            Ok(())
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
