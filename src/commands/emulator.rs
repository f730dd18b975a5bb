//! `lsrecd emulator`.
use crate::cli::{EmulatorArgs, GlobalArgs};
use crate::exit::CommandError;

pub async fn run(_g: &GlobalArgs, _a: EmulatorArgs) -> Result<(), CommandError> {
    Err(CommandError::new(
        crate::exit::FAILURE,
        "`emulator` is not implemented yet",
    ))
}
