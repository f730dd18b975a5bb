//! The engine benchmark: `lsrecd run` against the emulator at 1,000 and 10,000 channels.
//!
//! ```text
//! cargo bench --bench engine
//! LSRECD_BENCH_SIZES=1000 cargo bench --bench engine
//! ```
//!
//! It is a command that prints numbers, not a timed test. For each channel count N it starts
//! `lsrecd emulator --listen 127.0.0.1:0` and `lsrecd run` as child processes, adds N channels
//! that are not live, configures all of them with `record_when_live = true` and
//! `poll_interval = "2s"`, and prints one table with these measurements and their targets:
//!
//! - **API calls per poll cycle**, from the emulator's counters over several idle cycles
//!   (all requests, and channel-list pages): target ≤ ceil(N/100) + 1;
//! - **live → startRecord latency**: channels go live one at a time, each at a different point
//!   of the poll cycle (right after a channel listing ends, then later and later into the
//!   interval), and the time from the control call to the emulator receiving startRecord for
//!   that channel is measured: target ≤ one poll interval. The first channel goes live at the
//!   worst moment for a poller, just after its page was read, so its latency is one poll
//!   interval plus the time from reading the list to calling startRecord;
//! - **RSS** of the daemon (`VmRSS` while idle, `VmHWM` at the end): target ≤ 40 MB at 1,000
//!   channels;
//! - **CPU** of the daemon over the idle cycles (utime + stime), as % of one core;
//! - duplicate startRecord calls and the time from SIGTERM to exit, as sanity checks.
//!
//! Both processes run the binary cargo builds for this target (`CARGO_BIN_EXE_lsrecd`): under
//! `cargo bench` that is the optimised `target/release/lsrecd` (the bench profile inherits
//! release), built before the benchmark starts, so the numbers are those of a release build
//! and no second build step is needed.
//!
//! The table marks PASS/FAIL, but the command exits 0 whatever the numbers are; it fails, saying
//! why, only when the run itself broke (a process did not start, answer or stop).
//!
//! `api.max_rps` bounds how fast the ceil(N/100) list pages of a poll can be read: the listing
//! alone takes at least pages / max_rps seconds of every cycle, which the table shows. The
//! default, 50, reads 10,000 channels in 2 s, the whole poll interval.
//!
//! Environment:
//!
//! - `LSRECD_BENCH_SIZES`: comma-separated channel counts (default `1000,10000`);
//! - `LSRECD_BENCH_MAX_RPS`: `api.max_rps` (default 50);
//! - `LSRECD_BENCH_CYCLES`: idle poll cycles measured (default 5);
//! - `LSRECD_BENCH_LIVE`: channels made live one at a time (default 5);
//! - `LSRECD_BENCH_KEEP=1`: keep the working directory (configuration, database, logs).

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use tokio::time::Instant;

use lsrecd::config::credentials::write_private;
use lsrecd::emulator::{Counters, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Operation};
use support::emulator::EmulatorProcess;
use support::process::{LSRECD, Process, lsrecd_command};
use support::wait_for;

/// Channels per page of the channel list, as the daemon reads it.
const PAGE_SIZE: usize = 100;
/// The daemon's poll interval in every run.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Resident memory target at 1,000 channels.
const RSS_TARGET_KIB: u64 = 40 * 1024;
/// The channel count the RSS target applies to.
const RSS_TARGET_CHANNELS: usize = 1000;
/// How long the daemon may take to exit after SIGTERM (systemd/README.md).
const STOP_TARGET: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("engine bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("engine bench: cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_all(&settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine bench: the run broke: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What to measure, from the environment.
#[derive(Debug)]
struct Settings {
    sizes: Vec<usize>,
    max_rps: f64,
    cycles: u64,
    live: usize,
    keep: bool,
    /// The `lsrecd` binary to run.
    binary: PathBuf,
    /// Clock ticks per second of `/proc/<pid>/stat`.
    clock_ticks: u64,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let sizes = match std::env::var("LSRECD_BENCH_SIZES") {
            Ok(s) => s
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| anyhow!("LSRECD_BENCH_SIZES: {n:?} is not a channel count"))
                })
                .collect::<Result<Vec<_>>>()?,
            Err(_) => vec![1000, 10_000],
        };
        let max_rps: f64 = env_number("LSRECD_BENCH_MAX_RPS", 50.0)?;
        ensure!(
            max_rps.is_finite() && max_rps > 0.0,
            "LSRECD_BENCH_MAX_RPS must be above zero"
        );
        let cycles: u64 = env_number("LSRECD_BENCH_CYCLES", 5)?;
        ensure!(cycles > 0, "LSRECD_BENCH_CYCLES must be at least 1");
        let live: usize = env_number("LSRECD_BENCH_LIVE", 5)?;
        ensure!(live > 0, "LSRECD_BENCH_LIVE must be at least 1");
        if let Some(&n) = sizes.iter().find(|&&n| n < live) {
            bail!("{n} channels are fewer than the {live} to make live (LSRECD_BENCH_LIVE)");
        }
        Ok(Settings {
            sizes,
            max_rps,
            cycles,
            live,
            keep: std::env::var("LSRECD_BENCH_KEEP").is_ok_and(|v| v == "1"),
            binary: PathBuf::from(LSRECD),
            clock_ticks: clock_ticks(),
        })
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow!("{name}: {v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// `getconf CLK_TCK`, or 100 (the value on every Linux architecture lsrecd targets).
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

async fn run_all(settings: &Settings) -> Result<()> {
    println!(
        "lsrecd engine benchmark: {} ({} channel counts; poll_interval {}; max_rps {})",
        settings.binary.display(),
        settings.sizes.len(),
        humantime::format_duration(POLL_INTERVAL),
        settings.max_rps
    );
    for &n in &settings.sizes {
        let dir = tempfile::Builder::new()
            .prefix("lsrecd-bench-")
            .tempdir()
            .context("cannot create a working directory")?;
        let result = measure(settings, n, dir.path()).await;
        if settings.keep {
            println!("  working directory kept: {}", dir.keep().display());
        }
        let report = result.with_context(|| format!("{n} channels"))?;
        print!("{}", report.table(settings));
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

/// Everything measured at one channel count.
struct Report {
    channels: usize,
    pages: u64,
    first_poll: Duration,
    idle: Idle,
    latencies: Vec<Duration>,
    duplicates: u64,
    starts_missing: usize,
    peak_kib: u64,
    stop: Duration,
    emulator_cpu_percent: f64,
}

/// The idle window: several poll cycles with no channel live.
struct Idle {
    cycles: f64,
    requests_per_cycle: f64,
    list_calls_per_cycle: f64,
    period: Duration,
    rss_kib: u64,
    cpu_percent: f64,
    window: Duration,
}

async fn measure(settings: &Settings, n: usize, dir: &Path) -> Result<Report> {
    let pages = n.div_ceil(PAGE_SIZE) as u64;
    // One cycle may take the poll interval, the listing at max_rps, and some slack.
    let cycle_bound =
        POLL_INTERVAL + Duration::from_secs_f64(pages as f64 / settings.max_rps * 2.0 + 5.0);

    let emulator = Emulator(EmulatorProcess::start(&dir.join("emulator.log")).await);
    let ids = emulator.0.add_channels(n, "bench").await;
    ensure!(
        ids.len() == n,
        "the emulator added {} channels, not {n}",
        ids.len()
    );
    let config = write_config(dir, &emulator.0.base, &ids, settings.max_rps)?;

    let spawned = Instant::now();
    let mut daemon = start_daemon(&config, dir);
    let emulator_cpu_start = cpu_ticks(emulator.0.process.pid())?;
    let emulator_clock_start = Instant::now();

    // Ready: the first full observation (the reconciliation at start) has read every page.
    emulator
        .wait_for(
            &mut daemon,
            cycle_bound * 2,
            "the first channel listing",
            |c| list_calls(c) >= pages,
        )
        .await?;
    let first_poll = spawned.elapsed();

    // The first tick lists again right after the reconciliation; the window starts when the
    // listing after that begins, and ends when the one `cycles` later begins.
    let c0 = emulator
        .wait_for(
            &mut daemon,
            cycle_bound * 2,
            "the third channel listing",
            |c| list_calls(c) > 2 * pages,
        )
        .await?;
    let t0 = Instant::now();
    let cpu0 = cpu_ticks(daemon.pid())?;
    let end_after = list_calls(&c0) + settings.cycles * pages;
    let c1 = emulator
        .wait_for(
            &mut daemon,
            cycle_bound * (settings.cycles as u32 + 1),
            "the idle poll cycles",
            |c| list_calls(c) >= end_after,
        )
        .await?;
    let window = t0.elapsed();
    let cpu1 = cpu_ticks(daemon.pid())?;
    let memory = memory_kib(daemon.pid())?;
    let cycles = (list_calls(&c1) - list_calls(&c0)) as f64 / pages as f64;
    let idle = Idle {
        cycles,
        requests_per_cycle: (c1.requests - c0.requests) as f64 / cycles,
        list_calls_per_cycle: (list_calls(&c1) - list_calls(&c0)) as f64 / cycles,
        period: window.div_f64(cycles),
        rss_kib: memory.rss,
        cpu_percent: cpu_percent(cpu1 - cpu0, settings.clock_ticks, window),
        window,
    };

    // Live → startRecord, one channel at a time, each going live `i / live` of a poll interval
    // after a channel listing has been read completely.
    let mut latencies = Vec::with_capacity(settings.live);
    let mut went_live = Vec::with_capacity(settings.live);
    for i in 0..settings.live {
        let id = &ids[i * n / settings.live];
        let listed = list_calls(&emulator.counters().await?);
        let listing_done = (listed / pages + 1) * pages;
        emulator
            .wait_for(&mut daemon, cycle_bound * 2, "a channel listing", |c| {
                list_calls(c) >= listing_done
            })
            .await?;
        // Not waiting for a condition: this places the go-live at a chosen point of the cycle.
        tokio::time::sleep(phase(i, settings.live)).await;
        let live_at = Instant::now();
        emulator.0.set_live(id, true).await;
        emulator
            .wait_for(
                &mut daemon,
                cycle_bound * 2,
                &format!("startRecord on {id}"),
                |c| c.start_record_calls_on(id) > 0,
            )
            .await?;
        latencies.push(live_at.elapsed());
        went_live.push(id.clone());
    }

    let last = emulator.counters().await?;
    let starts_missing = went_live
        .iter()
        .filter(|id| last.start_record_calls_on(id) == 0)
        .count();
    let peak_kib = memory_kib(daemon.pid())?.peak;
    let emulator_cpu = cpu_ticks(emulator.0.process.pid())? - emulator_cpu_start;
    let emulator_cpu_percent = cpu_percent(
        emulator_cpu,
        settings.clock_ticks,
        emulator_clock_start.elapsed(),
    );

    let stop = terminate(&mut daemon, STOP_TARGET * 2).await?;
    let mut emulator = emulator.0.process;
    terminate(&mut emulator, Duration::from_secs(10)).await?;
    Ok(Report {
        channels: n,
        pages,
        first_poll,
        idle,
        latencies,
        duplicates: last.start_while_recording,
        starts_missing,
        peak_kib,
        stop,
        emulator_cpu_percent,
    })
}

impl Report {
    fn table(&self, settings: &Settings) -> String {
        let poll_s = POLL_INTERVAL.as_secs_f64();
        let calls_target = self.pages + 1;
        let listing_floor = self.pages as f64 / settings.max_rps;
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let min = sorted.first().copied().unwrap_or_default();
        let max = sorted.last().copied().unwrap_or_default();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
        let rss_row = if self.channels == RSS_TARGET_CHANNELS {
            (
                format!("<= {} MB", RSS_TARGET_KIB / 1024),
                mark(self.idle.rss_kib <= RSS_TARGET_KIB && self.peak_kib <= RSS_TARGET_KIB),
            )
        } else {
            (
                format!("({} MB at {RSS_TARGET_CHANNELS})", RSS_TARGET_KIB / 1024),
                "",
            )
        };

        let mut t = String::new();
        let _ = writeln!(
            t,
            "\n== {} channels: {} list pages per poll, poll_interval {poll_s} s, max_rps {} ==",
            self.channels, self.pages, settings.max_rps
        );
        let _ = writeln!(
            t,
            "   max_rps {} makes each listing take at least {listing_floor:.2} s ({:.0}% of the \
             poll interval); a higher max_rps lists faster but spends the account's API rate",
            settings.max_rps,
            listing_floor / poll_s * 100.0
        );
        let _ = writeln!(
            t,
            "   {:<34} {:<36} {:<16} result",
            "measure", "value", "target"
        );
        let mut row = |name: &str, value: String, target: String, result: &str| {
            let line = format!("   {name:<34} {value:<36} {target:<16} {result}");
            let _ = writeln!(t, "{}", line.trim_end());
        };
        row(
            "first full poll after start",
            format!("{:.2} s", self.first_poll.as_secs_f64()),
            String::new(),
            "",
        );
        row(
            "API calls per poll cycle",
            format!(
                "{:.1} ({:.1} list pages)",
                self.idle.requests_per_cycle, self.idle.list_calls_per_cycle
            ),
            format!("<= {calls_target}"),
            mark(self.idle.requests_per_cycle <= calls_target as f64),
        );
        row(
            "poll cycle period",
            format!(
                "{:.2} s over {:.1} cycles",
                self.idle.period.as_secs_f64(),
                self.idle.cycles
            ),
            format!("{poll_s} s"),
            "",
        );
        row(
            &format!("live -> startRecord ({} channels)", self.latencies.len()),
            format!(
                "min {:.2} / median {:.2} / max {:.2} s",
                min.as_secs_f64(),
                median.as_secs_f64(),
                max.as_secs_f64()
            ),
            format!("<= {poll_s} s"),
            mark(max <= POLL_INTERVAL && self.starts_missing == 0),
        );
        row(
            "  each: went live after a listing",
            by_phase(&self.latencies),
            String::new(),
            "",
        );
        row(
            "RSS idle (VmRSS) / peak (VmHWM)",
            format!(
                "{:.1} MB / {:.1} MB",
                self.idle.rss_kib as f64 / 1024.0,
                self.peak_kib as f64 / 1024.0
            ),
            rss_row.0,
            rss_row.1,
        );
        row(
            "CPU idle, % of one core",
            format!(
                "{:.1} % over {:.1} s",
                self.idle.cpu_percent,
                self.idle.window.as_secs_f64()
            ),
            String::new(),
            "",
        );
        row(
            "duplicate startRecord calls",
            self.duplicates.to_string(),
            "0".to_string(),
            mark(self.duplicates == 0),
        );
        row(
            "SIGTERM -> exit",
            format!("{:.2} s", self.stop.as_secs_f64()),
            format!("<= {} s", STOP_TARGET.as_secs()),
            mark(self.stop <= STOP_TARGET),
        );
        row(
            "emulator CPU (for scale)",
            format!("{:.1} % of one core", self.emulator_cpu_percent),
            String::new(),
            "",
        );
        t
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// How long after a complete listing the `i`-th of `live` channels goes live.
fn phase(i: usize, live: usize) -> Duration {
    POLL_INTERVAL.mul_f64(i as f64 / live as f64)
}

/// `+0.0s: 2.03s, +0.4s: 1.64s, …`: each latency after the phase its channel went live at.
fn by_phase(latencies: &[Duration]) -> String {
    latencies
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let at = phase(i, latencies.len()).as_secs_f64();
            format!("+{at:.1}s: {:.2}s", d.as_secs_f64())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends SIGTERM and waits up to `grace` for `process` to exit successfully; returns how long it
/// took.
async fn terminate(process: &mut Process, grace: Duration) -> Result<Duration> {
    let asked = Instant::now();
    let status = process
        .terminate(grace)
        .await
        .map_err(|e| anyhow!("{e}{}", log_tail(process)))?;
    ensure!(
        status.success(),
        "exited with {status} after SIGTERM{}",
        log_tail(process)
    );
    Ok(asked.elapsed())
}

/// The last lines a process logged, to explain a failure.
fn log_tail(process: &Process) -> String {
    format!(
        "; last lines it logged:\n    {}",
        process.stderr_tail(15).replace('\n', "\n    ")
    )
}

/// Writes the daemon's configuration (mode 0600: it holds the emulator's keys inline).
fn write_config(dir: &Path, base: &str, ids: &[String], max_rps: f64) -> Result<PathBuf> {
    let path = dir.join("config.toml");
    let database = dir.join("lsrecd.db");
    let mut text = String::with_capacity(64 * ids.len() + 512);
    let _ = writeln!(
        text,
        "[api]\nendpoint = \"{base}\"\nregion = \"KR\"\naccess_key = \"{DEFAULT_ACCESS_KEY}\"\n\
         secret_key = \"{DEFAULT_SECRET_KEY}\"\nmax_rps = {max_rps:?}\n\n\
         [daemon]\ndatabase = \"{}\"\ntimezone = \"UTC\"\npoll_interval = \"{}\"\n",
        database.display(),
        humantime::format_duration(POLL_INTERVAL)
    );
    for id in ids {
        let _ = writeln!(
            text,
            "[[channel]]\nid = \"{id}\"\nrecord_when_live = true\n"
        );
    }
    write_private(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Starts `lsrecd --config CONFIG run`, logging to `daemon.log` beside the configuration.
fn start_daemon(config: &Path, dir: &Path) -> Process {
    let mut command = lsrecd_command();
    command.arg("--config").arg(config).arg("run");
    Process::start_logged("lsrecd run", command, &dir.join("daemon.log"))
}

/// Channel-list calls the emulator has served.
fn list_calls(counters: &Counters) -> u64 {
    counters.calls_of(Operation::ListChannels)
}

/// The emulator process and the counters this benchmark reads from it.
struct Emulator(EmulatorProcess);

impl Emulator {
    async fn counters(&self) -> Result<Counters> {
        serde_json::from_value(self.0.counters().await).context("reading the emulator's counters")
    }

    /// Reads the counters until `done` holds, and returns them. Fails if `within` passes first
    /// or `daemon` exits.
    async fn wait_for(
        &self,
        daemon: &mut Process,
        within: Duration,
        what: &str,
        done: impl Fn(&Counters) -> bool,
    ) -> Result<Counters> {
        let outcome = wait_for(within, what, async || {
            let counters = match self.counters().await {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            };
            if done(&counters) {
                return Some(Ok(counters));
            }
            let status = daemon.exited()?;
            Some(Err(anyhow!("lsrecd run exited early with {status}")))
        })
        .await;
        match outcome {
            Ok(Ok(counters)) => Ok(counters),
            Ok(Err(e)) => Err(anyhow!("{e}{}", log_tail(daemon))),
            Err(timed_out) => Err(anyhow!("{timed_out}{}", log_tail(daemon))),
        }
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) may hold spaces and parentheses; fields after it do not.
    let (_, rest) = text
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("{path}: field {} is not a number", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

fn cpu_percent(ticks: u64, ticks_per_second: u64, over: Duration) -> f64 {
    let cpu = ticks as f64 / ticks_per_second as f64;
    cpu / over.as_secs_f64().max(f64::EPSILON) * 100.0
}

/// Resident memory now and at its highest, in KiB.
struct Memory {
    rss: u64,
    peak: u64,
}

fn memory_kib(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let field = |name: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("{path}: no {name}"))
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        peak: field("VmHWM:")?,
    })
}
