//! `lsrecd check`.
use crate::cli::{CheckArgs, GlobalArgs};
use crate::exit::CommandError;

pub async fn run(_g: &GlobalArgs, _a: CheckArgs) -> Result<(), CommandError> {
    Err(CommandError::new(
        crate::exit::FAILURE,
        "`check` is not implemented yet",
    ))
}
