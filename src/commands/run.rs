//! `lsrecd run`: the daemon, as systemd runs it.

use std::sync::Arc;

use crate::cli::GlobalArgs;
use crate::daemon::ReloadSource;
use crate::exit::{self, CommandError};
use crate::service::notify::Notifier;
use crate::service::signals::Signals;

pub async fn run(g: &GlobalArgs) -> Result<(), CommandError> {
    let config = super::load_config(&g.config)?;
    // Handlers first: a SIGTERM during start-up must not kill the process mid-write.
    let signals = Signals::install().map_err(|e| {
        CommandError::new(
            exit::FAILURE,
            format!("cannot install signal handlers: {e}"),
        )
    })?;
    let notifier = Notifier::from_env();
    let reload = ReloadSource {
        path: g.config.clone(),
        signal: signals.reload,
        claims: Some(signals.claims),
    };
    let shutdown = async move {
        let signal = signals.shutdown.wait().await;
        tracing::info!(%signal, "shutting down; cloud recordings keep running");
    };
    crate::daemon::run(Arc::new(config), Some(reload), notifier, shutdown)
        .await
        .map_err(|e| CommandError::new(exit::FAILURE, e.to_string()))
}
