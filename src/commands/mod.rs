//! One file per subcommand: each turns arguments into calls on the library and output for a person.

pub mod check;
pub mod demo;
pub mod emulator;
pub mod manual;
pub mod report;
pub mod run;
