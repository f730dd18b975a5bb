//! `lsrecd start` / `lsrecd stop`.
use crate::cli::{GlobalArgs, ManualArgs};
use crate::exit::CommandError;

pub async fn start(_g: &GlobalArgs, _a: ManualArgs) -> Result<(), CommandError> {
    Err(CommandError::new(
        crate::exit::FAILURE,
        "`start` is not implemented yet",
    ))
}

pub async fn stop(_g: &GlobalArgs, _a: ManualArgs) -> Result<(), CommandError> {
    Err(CommandError::new(
        crate::exit::FAILURE,
        "`stop` is not implemented yet",
    ))
}
