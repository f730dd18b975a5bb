//! The command line (README.md, "Using it"): argument parsing and dispatch to [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit::CommandError;
use crate::logging::LogFormat;

/// Default configuration path when neither `--config` nor `LSRECD_CONFIG` is given.
pub const DEFAULT_CONFIG: &str = "/etc/lsrecd/config.toml";

/// `lsrecd --help` and the DESCRIPTION of the manual page.
const LONG_ABOUT: &str = "\
Recording orchestration daemon for NAVER Cloud Live Station.

Run by systemd as `lsrecd run`, it polls the configured channels through the signed Live Station \
API, starts recordings on cron schedules or whenever a channel goes live, stops them when their \
window ends, follows every record until Live Station is done with it, and keeps all of it in a \
SQLite database that operators query directly. It never starts a recording twice.

Recordings run in Live Station, not in lsrecd: stopping or restarting the daemon does not stop \
them, and a restarted daemon reconciles with what Live Station reports.";

#[derive(Debug, Parser)]
#[command(
    name = "lsrecd",
    version,
    about = "Recording orchestration daemon for NAVER Cloud Live Station",
    long_about = LONG_ABOUT
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Configuration file.
    #[arg(long, global = true, env = "LSRECD_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

impl GlobalArgs {
    pub fn verbosity(&self) -> i8 {
        (self.verbose.min(10) as i8) - (self.quiet.min(10) as i8)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (what systemd runs).
    Run,
    /// Validate the configuration and print the next fire times of every schedule.
    Check(CheckArgs),
    /// Channels, active recordings, next occurrences, failures and expiring records, from the database.
    Status(StatusArgs),
    /// Recordings from the database.
    Records(RecordsArgs),
    /// Claim a channel manually: record it until `lsrecd stop` or its max_duration.
    Start(ManualArgs),
    /// End a manual claim (stops the recording if no other claim holds the channel).
    Stop(ManualArgs),
    /// Check the Live Station account read-only before go-live: credentials, clock, paging,
    /// error statuses, the configured channels and their records.
    Probe(ProbeArgs),
    /// Run a local Live Station emulator.
    Emulator(EmulatorArgs),
    /// Run the emulator and the daemon together with a sample configuration; no account needed.
    Demo(DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write every page to a directory.
    Manpage(ManpageArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManpageArgs {
    /// Write lsrecd.1 and one lsrecd-SUBCOMMAND.1 per subcommand here instead of printing
    /// lsrecd.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// How many fire times to print per schedule.
    #[arg(long, default_value_t = 5)]
    pub next: usize,
    /// Compute fire times after this instant (RFC 3339) instead of now.
    #[arg(long)]
    pub from: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Check everything but the API keys: read no key file, environment variable or systemd
    /// credential (for a machine without the keys, e.g. a configuration repository's CI).
    #[arg(long)]
    pub no_credentials: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show times in UTC instead of daemon.timezone.
    #[arg(long)]
    pub utc: bool,
}

#[derive(Debug, Args)]
pub struct RecordsArgs {
    /// Only records of this channel (id or label).
    #[arg(long)]
    pub channel: Option<String>,
    /// Only records in this status (e.g. RECORDING, TRANSFER_FINISH).
    #[arg(long)]
    pub status: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Show times in UTC instead of daemon.timezone.
    #[arg(long)]
    pub utc: bool,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ManualArgs {
    /// Channel id or label from the configuration.
    pub channel: String,
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Allow a --listen address other machines can reach. The control API then requires the
    /// bearer token printed at start.
    #[arg(long)]
    pub allow_remote: bool,
    /// Access key the emulator accepts.
    #[arg(long, requires = "secret_key")]
    pub access_key: Option<String>,
    /// Secret key the emulator accepts.
    #[arg(long, requires = "access_key")]
    pub secret_key: Option<String>,
    /// Create this many channels at start (ids `ls-emulator-00001`, …).
    #[arg(long, default_value_t = 0)]
    pub channels: usize,
    /// Make the first N of those channels live at start.
    #[arg(long, default_value_t = 0)]
    pub live: usize,
    /// How long records stay in PROCESSING after a recording ends.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub processing: std::time::Duration,
    /// How long an upload (TRANSFER) takes.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub transfer: std::time::Duration,
    /// How long temporary recordings are kept (shouldDeleteTime - createdTime).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3days")]
    pub retention: std::time::Duration,
    /// A seeded share of requests get faults: `[OPS@]KIND=PERCENT[:PARAM=VALUE]...,...`
    /// (repeatable).
    ///
    /// e.g. `status_5xx=20,rate_limit=10:retry_after=1,hold=5` (every operation) or
    /// `start_record+stop_record@late_apply=50:hold_ms=5000`. OPS: list_channels, get_channel,
    /// start_record, stop_record, list_records, get_record, upload (joined with `+`). Kinds:
    /// status_5xx[:status=503], rate_limit[:retry_after=SECS], latency:ms=N,
    /// late_apply[:hold_ms=5000] (held, then applied and answered 504 even if the client gave
    /// up), hold (never answered), apply_then_502, apply_then_hold, apply_then_drop,
    /// malformed_body (applied, then a truncated body). The shares of one operation add up to at
    /// most 100; fault rules set through the control API come first.
    #[arg(long, value_name = "SPEC")]
    pub fault_mix: Vec<String>,
    /// Seed of the fault mix's random draws (default: random, printed at start); the same seed
    /// gives each operation the same sequence of faults.
    #[arg(long, value_name = "N", requires = "fault_mix")]
    pub fault_seed: Option<u64>,
    /// What the channel list's `total` counts: every matching channel, the entries of the
    /// page, or nothing (no `total`). The reference allows each reading.
    #[arg(long, value_enum, default_value = "all")]
    pub total: crate::emulator::TotalMeaning,
    /// HTTP status of the ordinary refusals (`250005 NOT_AVAILABLE` of a start or stop the
    /// channel's state refuses, `250004 NOT_FOUND`); the reference does not give one.
    #[arg(long, value_name = "STATUS", default_value_t = 400, value_parser = clap::value_parser!(u16).range(200..600))]
    pub refusal_status: u16,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. "30s", "5m"); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// daemon.timezone of the sample configuration (IANA name); default: this machine's zone.
    #[arg(long, value_parser = parse_timezone)]
    pub timezone: Option<chrono_tz::Tz>,
    /// Show times in UTC instead of the configuration's zone.
    #[arg(long)]
    pub utc: bool,
}

fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse()
        .map_err(|_| format!("{name:?} is not an IANA time zone name such as Asia/Seoul"))
}

/// Runs the parsed command line and returns the process exit code. `startup_warning` is what
/// went wrong before logging was set up (see [`crate::hardening`]); it is logged first.
pub fn run(cli: Cli, startup_warning: Option<String>) -> u8 {
    // The demo prints what happens from the events table; its logs stay at warnings unless asked.
    let quieter = matches!(cli.command, Command::Demo(_)) as i8;
    crate::logging::init(cli.global.log_format, cli.global.verbosity() - quieter);
    if let Some(warning) = startup_warning {
        tracing::warn!("{warning}");
    }
    // One thread runs everything: the work is waiting on the network and the database (whose
    // connections have threads of their own), and at 10,000 channels a second worker thread
    // cost more in wake-ups and memory than it gave.
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(dispatch(cli)),
        Err(e) => Err(CommandError::new(
            crate::exit::FAILURE,
            format!("cannot start the runtime: {e}"),
        )),
    };
    match result {
        Ok(()) => crate::exit::OK,
        Err(e) => {
            eprintln!("lsrecd: {e}");
            e.code
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CommandError> {
    let g = &cli.global;
    use crate::commands;
    match cli.command {
        Command::Run => commands::run::run(g).await,
        Command::Check(a) => commands::check::run(g, a).await,
        Command::Probe(a) => commands::probe::run(g, a).await,
        Command::Status(a) => commands::report::status(g, a).await,
        Command::Records(a) => commands::report::records(g, a).await,
        Command::Start(a) => commands::manual::start(g, a).await,
        Command::Stop(a) => commands::manual::stop(g, a).await,
        Command::Emulator(a) => commands::emulator::run(g, a).await,
        Command::Demo(a) => commands::demo::run(g, a).await,
        Command::Completions(a) => commands::docs::completions(a),
        Command::Manpage(a) => commands::docs::manpage(a),
    }
}
