//! Process exit codes (sysexits where one fits) and the error type commands return.

use std::fmt;

/// Success.
pub const OK: u8 = 0;
/// Any other failure.
pub const FAILURE: u8 = 1;
/// Bad command-line usage (clap uses 2 as well).
pub const USAGE: u8 = 2;
/// EX_UNAVAILABLE: the API could not be reached by a one-shot command.
pub const UNAVAILABLE: u8 = 69;
/// EX_PROTOCOL: the API answered in a way the command could not make sense of.
pub const PROTOCOL: u8 = 76;
/// EX_NOPERM: the API refused the credentials or their permissions.
pub const NOPERM: u8 = 77;
/// EX_CONFIG: the configuration is invalid.
pub const CONFIG: u8 = 78;

/// An error that ends a command with a specific exit code and a message for a person.
#[derive(Debug)]
pub struct CommandError {
    pub code: u8,
    pub message: String,
}

impl CommandError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CommandError {
            code,
            message: message.into(),
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(CONFIG, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(UNAVAILABLE, message)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CommandError {}

impl From<anyhow::Error> for CommandError {
    fn from(e: anyhow::Error) -> Self {
        CommandError::new(FAILURE, format!("{e:#}"))
    }
}
