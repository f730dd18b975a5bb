//! One file per subcommand: each turns arguments into calls on the library and output for a person.

pub mod check;
pub mod demo;
pub mod docs;
pub mod emulator;
pub mod manual;
pub mod report;
pub mod run;

use std::path::Path;

use crate::config::Config;
use crate::exit::CommandError;

/// Loads the configuration; an invalid one ends the command with exit 78.
pub(crate) fn load_config(path: &Path) -> Result<Config, CommandError> {
    Config::load(path).map_err(|e| CommandError::config(e.to_string()))
}
