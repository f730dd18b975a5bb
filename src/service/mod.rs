//! Service glue: systemd notify and watchdog, signals, metrics and callbacks.
//!
//! # Layout
//!
//! - [`notify`]: `READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1` to `$NOTIFY_SOCKET`.
//! - [`signals`]: SIGTERM/SIGINT end the daemon, SIGHUP reloads.
//! - [`metrics`]: the Prometheus registry and its text rendering.
//! - [`readiness`]: the flag behind `/readyz`.
//! - [`http`]: the HTTP server for `/metrics`, `/healthz`, `/readyz` and callbacks, with its
//!   connection limits.
//! - [`callback`]: `POST /callback/{token}`, turned into [`Hint`]s for the engine.
//!
//! The unit file and install notes are in `systemd/` at the top of the repository.

pub mod callback;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod readiness;
pub mod signals;

pub use callback::{
    CallbackControl, CallbackLimits, CallbackSettings, Hint, callback_router,
    callback_router_with_limits,
};
pub use http::{ListenerLimits, group_by_address, metrics_router, serve, serve_with_limits};
pub use metrics::Metrics;
pub use notify::Notifier;
pub use readiness::{Readiness, ReadyState};
pub use signals::{Signals, StopSignal};
