//! `lsrecd run`: the daemon, as systemd runs it.

use std::sync::Arc;

use crate::cli::GlobalArgs;
use crate::exit::{self, CommandError};
use crate::service::notify::Notifier;

pub async fn run(g: &GlobalArgs) -> Result<(), CommandError> {
    let config = super::load_config(&g.config)?;
    let notifier = Notifier::from_env();
    crate::daemon::run(
        Arc::new(config),
        Some(g.config.clone()),
        notifier,
        crate::service::signals::shutdown_signal(),
    )
    .await
    .map_err(|e| CommandError::new(exit::FAILURE, e.to_string()))
}
