//! `lsrecd status` / `lsrecd records`.
use crate::cli::{GlobalArgs, RecordsArgs, StatusArgs};
use crate::exit::CommandError;

pub async fn status(_g: &GlobalArgs, _a: StatusArgs) -> Result<(), CommandError> {
    Err(CommandError::new(
        crate::exit::FAILURE,
        "`status` is not implemented yet",
    ))
}

pub async fn records(_g: &GlobalArgs, _a: RecordsArgs) -> Result<(), CommandError> {
    Err(CommandError::new(
        crate::exit::FAILURE,
        "`records` is not implemented yet",
    ))
}
