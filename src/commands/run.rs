//! `lsrecd run`.
use crate::cli::GlobalArgs;
use crate::exit::CommandError;

pub async fn run(_g: &GlobalArgs) -> Result<(), CommandError> {
    Err(CommandError::new(
        crate::exit::FAILURE,
        "`run` is not implemented yet",
    ))
}
