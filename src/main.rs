use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before anything else: files created from here on are private, and the key variables
    // leave the environment (this may re-execute the program; see `lsrecd::hardening`).
    lsrecd::hardening::restrict_umask();
    let moved = lsrecd::hardening::move_keys_out_of_environment();
    let cli = lsrecd::cli::Cli::parse();
    std::process::ExitCode::from(lsrecd::cli::run(cli, moved.err()))
}
