//! `lsrecd demo`.
use crate::cli::{DemoArgs, GlobalArgs};
use crate::exit::CommandError;

pub async fn run(_g: &GlobalArgs, _a: DemoArgs) -> Result<(), CommandError> {
    Err(CommandError::new(
        crate::exit::FAILURE,
        "`demo` is not implemented yet",
    ))
}
