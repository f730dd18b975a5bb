use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = lsrecd::cli::Cli::parse();
    std::process::ExitCode::from(lsrecd::cli::run(cli))
}
