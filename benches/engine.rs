//! The engine benchmark: `lsrecd run` against `lsrecd emulator` at 100, 1,000 and 10,000
//! channels, beside a naive poller on the same emulator; writes `BENCHMARKS.md`.
//!
//! ```text
//! cargo bench --bench engine                          # all sizes, rewrites BENCHMARKS.md
//! LSRECD_BENCH_SIZES=1000 cargo bench --bench engine  # one size, printed only
//! ```
//!
//! It is a command that prints numbers, not a timed test. For each channel count N it starts
//! `lsrecd emulator --listen 127.0.0.1:0` and `lsrecd run` as child processes (the release
//! binary cargo builds for this target), adds N channels that are not live, configures all of
//! them `record_when_live` with `poll_interval = "10s"`, `api.max_rps = 50` and `[callback]` on,
//! and reads the emulator's call log (`GET /_emulator/calls`: every API call in order, with its
//! arrival time on this host's clock) to measure:
//!
//! - **API calls per poll cycle** over several idle cycles (a cycle runs from one listing's first
//!   page to the next's): target ≤ ceil(N/100) + 1;
//! - **RSS** (`VmRSS` at the end of the idle cycles, `VmHWM` at the end): target ≤ 25 MB at
//!   10,000 channels;
//! - **idle CPU** (utime + stime over the idle cycles, % of one core): target ≤ 1 %;
//! - **idle database writes**: `write_bytes` of `/proc/<pid>/io` over the idle cycles (bytes the
//!   daemon caused to be written to storage: its SQLite database and WAL; its log goes to a
//!   pipe), per minute and in 4 KiB pages;
//! - **live → startRecord without a callback**: channels on the first, a middle and the last
//!   page of the listing go live 5 %, 50 % and 95 % of a poll interval after their page was read;
//!   from the go-live to the emulator receiving startRecord: target ≤ one poll interval;
//! - **callback → startRecord**: a channel goes live and a PUBLISH_START callback is sent to the
//!   daemon's callback listener, at moments spread over two poll cycles; from sending the
//!   callback to the emulator receiving startRecord: target p99 ≤ 50 ms;
//! - duplicate startRecord calls (must be 0) and SIGTERM → exit (≤ 10 s).
//!
//! Then, with the daemon stopped, a **naive poller** written here runs against the same
//! emulator: it reads every configured channel with getChannel (lsrecd's own library client, so
//! the same signing and the same `max_rps`) once per poll interval, or back to back when a round
//! takes longer, and calls startRecord on a channel it sees live and not recording. Five channels
//! spread over the list go live right after it has read the first of them; its live →
//! startRecord times and calls per cycle are shown beside lsrecd's. Its sampling is bounded
//! (`LSRECD_BENCH_NAIVE_SECS`, default 240 s: at 10,000 channels and 50 rps one round is 200 s);
//! a channel not started within the bound is shown as such.
//!
//! The tables mark PASS/FAIL, but the command exits 0 whatever the numbers are; it fails, saying
//! why, only when the run itself broke (a process did not start, answer or stop).
//!
//! Environment:
//!
//! - `LSRECD_BENCH_SIZES`: comma-separated channel counts (default `100,1000,10000`); when set,
//!   the results are printed and `BENCHMARKS.md` is left alone unless `LSRECD_BENCH_WRITE=1`;
//! - `LSRECD_BENCH_WRITE=1`/`0`: write `BENCHMARKS.md` or not, whatever the sizes;
//! - `LSRECD_BENCH_MAX_RPS`: `api.max_rps` (default 50);
//! - `LSRECD_BENCH_CYCLES`: idle poll cycles measured (default 5);
//! - `LSRECD_BENCH_CALLBACKS`: callback samples (default 32);
//! - `LSRECD_BENCH_NAIVE_SECS`: bound on the naive poller's sampling (default 240);
//! - `LSRECD_BENCH_KEEP=1`: keep the working directory (configuration, database, logs).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use tokio::time::Instant;

use lsrecd::config::credentials::write_private;
use lsrecd::emulator::{Call, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Operation};
use lsrecd::livestation::{Client, ClientConfig, Credentials, Region};
use lsrecd::secret::Secret;
use support::emulator::{CallLogReader, EmulatorProcess};
use support::process::{LSRECD, Process, lsrecd_command};
use support::site::free_port;

/// Channels per page of the channel list, as the daemon reads it.
const PAGE_SIZE: usize = 100;
/// The daemon's (and the naive poller's) poll interval.
const POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Resident memory target, at [`RSS_TARGET_CHANNELS`].
const RSS_TARGET_KIB: u64 = 25 * 1024;
const RSS_TARGET_CHANNELS: usize = 10_000;
/// Idle CPU target, % of one core.
const CPU_TARGET_PERCENT: f64 = 1.0;
/// callback → startRecord target for the 99th percentile.
const CALLBACK_TARGET: Duration = Duration::from_millis(50);
/// How long the daemon may take to exit after SIGTERM (systemd/README.md).
const STOP_TARGET: Duration = Duration::from_secs(10);
/// The callback token in the daemon's configuration.
const CALLBACK_TOKEN: &str = "bench-callback-token-0123456789";
/// When, after its page was read, a channel goes live (fractions of the poll interval).
const PHASES: [f64; 3] = [0.05, 0.5, 0.95];
/// How often the call log is read while waiting.
const READ_EVERY: Duration = Duration::from_millis(10);

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
    cycles: usize,
    callbacks: usize,
    naive_limit: Duration,
    write: bool,
    keep: bool,
    /// Clock ticks per second of `/proc/<pid>/stat`.
    clock_ticks: u64,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let chosen = std::env::var("LSRECD_BENCH_SIZES").ok();
        let sizes = match &chosen {
            Some(s) => s
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n >= 20)
                        .ok_or_else(|| {
                            anyhow!(
                                "LSRECD_BENCH_SIZES: {n:?} is not a channel count of 20 or more"
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?,
            None => vec![100, 1000, 10_000],
        };
        let max_rps: f64 = env_number("LSRECD_BENCH_MAX_RPS", 50.0)?;
        ensure!(
            max_rps.is_finite() && max_rps > 0.0,
            "LSRECD_BENCH_MAX_RPS must be above zero"
        );
        let cycles: usize = env_number("LSRECD_BENCH_CYCLES", 5)?;
        ensure!(cycles > 0, "LSRECD_BENCH_CYCLES must be at least 1");
        let callbacks: usize = env_number("LSRECD_BENCH_CALLBACKS", 32)?;
        ensure!(callbacks > 0, "LSRECD_BENCH_CALLBACKS must be at least 1");
        let naive_limit = Duration::from_secs(env_number("LSRECD_BENCH_NAIVE_SECS", 240)?);
        let write = match std::env::var("LSRECD_BENCH_WRITE").ok().as_deref() {
            Some("1") => true,
            Some(_) => false,
            None => chosen.is_none(),
        };
        if let Some(&n) = sizes
            .iter()
            .find(|&&n| n < callbacks + 3 * PHASES.len() + 5)
        {
            bail!("{n} channels are too few for {callbacks} callback samples and the others");
        }
        Ok(Settings {
            sizes,
            max_rps,
            cycles,
            callbacks,
            naive_limit,
            write,
            keep: std::env::var("LSRECD_BENCH_KEEP").is_ok_and(|v| v == "1"),
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

/// The wall clock in Unix microseconds: the clock the emulator stamps its call log with.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

async fn run_all(settings: &Settings) -> Result<()> {
    println!(
        "lsrecd engine benchmark: {LSRECD} (channels {:?}; poll_interval {}; max_rps {})",
        settings.sizes,
        humantime::format_duration(POLL_INTERVAL),
        settings.max_rps
    );
    let mut reports = Vec::new();
    for &n in &settings.sizes {
        let dir = tempfile::Builder::new()
            .prefix("lsrecd-bench-")
            .tempdir()
            .context("cannot create a working directory")?;
        println!(
            "\n{n} channels: measuring (working directory {})",
            dir.path().display()
        );
        let result = measure(settings, n, dir.path()).await;
        if settings.keep {
            println!("  working directory kept: {}", dir.keep().display());
        }
        let report = result.with_context(|| format!("{n} channels"))?;
        print!("{}", report.section(settings));
        let _ = std::io::stdout().flush();
        reports.push(report);
    }
    let text = document(settings, &reports);
    if settings.write {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nwritten: {}", path.display());
    } else {
        println!(
            "\nBENCHMARKS.md left alone (sizes chosen with LSRECD_BENCH_SIZES; \
             LSRECD_BENCH_WRITE=1 writes it)"
        );
    }
    Ok(())
}

/// Where a sample channel sits in the listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    First,
    Middle,
    Last,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::First => "first page",
            Placement::Middle => "middle page",
            Placement::Last => "last page",
        }
    }
}

/// One live → startRecord sample without a callback.
struct LiveSample {
    placement: Placement,
    page: u32,
    /// Fraction of the poll interval after its page was read that it went live.
    phase: f64,
    /// Seconds into the poll cycle (since the listing's first page) it went live.
    into_cycle: f64,
    latency: Duration,
}

/// One callback → startRecord sample.
struct CallbackSample {
    /// Seconds into the poll cycle the callback was sent.
    into_cycle: f64,
    /// Whether a listing was being read when it was sent.
    during_listing: bool,
    latency: Duration,
}

/// One live → startRecord sample of the naive poller: `None` if not started within the bound.
struct NaiveSample {
    position: usize,
    latency: Option<Duration>,
}

/// The idle window: several poll cycles with no channel live.
struct Idle {
    cycles: usize,
    calls_per_cycle: f64,
    list_per_cycle: f64,
    other: Vec<(Operation, f64)>,
    period: Duration,
    rss_kib: u64,
    cpu_percent: f64,
    write_bytes_per_min: f64,
    window: Duration,
}

/// The naive poller's numbers.
struct Naive {
    /// Calls in its first complete round, and the round's length; `None` if no round ended
    /// within the bound.
    round: Option<(u64, Duration)>,
    samples: Vec<NaiveSample>,
    bound: Duration,
    errors: u64,
}

/// Everything measured at one channel count.
struct Report {
    channels: usize,
    pages: u32,
    first_listing: Duration,
    idle: Idle,
    live: Vec<LiveSample>,
    callbacks: Vec<CallbackSample>,
    duplicates: u64,
    peak_kib: u64,
    stop: Duration,
    emulator_cpu_percent: f64,
    naive: Naive,
}

/// The channels handed out to samples so far, so that no two samples share one.
struct Picker {
    n: usize,
    used: BTreeSet<usize>,
}

impl Picker {
    /// The first unused index at or after `at` (wrapping), marked used.
    fn take(&mut self, at: usize) -> usize {
        let mut i = at.min(self.n - 1);
        while self.used.contains(&i) {
            i = (i + 1) % self.n;
        }
        self.used.insert(i);
        i
    }

    /// The last unused index at or before `at`, marked used.
    fn take_down(&mut self, at: usize) -> usize {
        let mut i = at.min(self.n - 1);
        while self.used.contains(&i) {
            i = if i == 0 { self.n - 1 } else { i - 1 };
        }
        self.used.insert(i);
        i
    }
}

/// The emulator process and its call log as read so far.
struct Emulator {
    process: EmulatorProcess,
    log: CallLogReader,
}

impl Emulator {
    /// Reads the call log until `done` gives a value. Fails if `within` passes first or
    /// `daemon` (when given) exits.
    async fn until<T>(
        &mut self,
        mut daemon: Option<&mut Process>,
        within: Duration,
        what: &str,
        mut done: impl FnMut(&[Call]) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + within;
        loop {
            self.log.read_from(&self.process).await;
            if let Some(v) = done(&self.log.calls) {
                return Ok(v);
            }
            if let Some(d) = daemon.as_deref_mut()
                && let Some(status) = d.exited()
            {
                bail!("lsrecd run exited early with {status}{}", log_tail(d));
            }
            if Instant::now() >= deadline {
                let tail = daemon.map(|d| log_tail(d)).unwrap_or_default();
                bail!("timed out after {within:?} waiting for {what}{tail}");
            }
            tokio::time::sleep(READ_EVERY).await;
        }
    }
}

/// Indices of the calls that begin a listing (page 1 of the channel list).
fn listing_starts(calls: &[Call]) -> Vec<usize> {
    calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is(Operation::ListChannels, None) && c.page == Some(1))
        .map(|(i, _)| i)
        .collect()
}

/// Seconds from the start of the last listing begun at or before `at_us` to `at_us`, and
/// whether that listing was still being read then.
fn cycle_position(calls: &[Call], at_us: i64, pages: u32) -> (f64, bool) {
    let before: Vec<&Call> = calls
        .iter()
        .filter(|c| c.is(Operation::ListChannels, None) && c.arrived_us <= at_us)
        .collect();
    let start = before.iter().rev().find(|c| c.page == Some(1));
    let into = start.map_or(0.0, |c| (at_us - c.arrived_us) as f64 / 1e6);
    let during = before
        .last()
        .is_some_and(|last| last.page != Some(pages) || last.answered_us.is_none_or(|a| a > at_us));
    (into, during)
}

async fn measure(settings: &Settings, n: usize, dir: &Path) -> Result<Report> {
    let pages = n.div_ceil(PAGE_SIZE) as u32;
    let listing_time = Duration::from_secs_f64(f64::from(pages) / settings.max_rps);
    // One cycle may take the poll interval, the listing at max_rps twice over, and some slack.
    let cycle_bound = POLL_INTERVAL + listing_time * 2 + Duration::from_secs(5);

    let process = EmulatorProcess::start(&dir.join("emulator.log")).await;
    let mut emu = Emulator {
        process,
        log: CallLogReader::default(),
    };
    let ids = emu.process.add_channels(n, "bench").await;
    ensure!(
        ids.len() == n,
        "the emulator added {} channels, not {n}",
        ids.len()
    );
    let callback_port = free_port();
    let config = write_config(
        dir,
        &emu.process.base,
        &ids,
        settings.max_rps,
        callback_port,
    )?;
    let emulator_cpu_start = cpu_ticks(emu.process.process.pid())?;
    let emulator_clock_start = Instant::now();

    let spawned = Instant::now();
    let mut daemon = start_daemon(&config, dir);
    // Ready: the first full listing (the reconciliation at start) is read and the engine runs.
    daemon
        .wait_stderr("lsrecd is running", cycle_bound * 3)
        .await
        .map_err(|e| anyhow!("{e}{}", log_tail(&daemon)))?;
    let first_listing = spawned.elapsed();

    // The idle window: from the start of a listing, `cycles` listings on; the first tick (right
    // after the start-up) is left out.
    emu.log.read_from(&emu.process).await;
    let skip = listing_starts(&emu.log.calls).len() + 1;
    let start_at = emu
        .until(
            Some(&mut daemon),
            cycle_bound * 3,
            "an idle listing",
            |calls| listing_starts(calls).get(skip).copied(),
        )
        .await?;
    let cpu0 = cpu_ticks(daemon.pid())?;
    let io0 = write_bytes(daemon.pid())?;
    let t0 = Instant::now();
    let end_at = emu
        .until(
            Some(&mut daemon),
            cycle_bound * (settings.cycles as u32 + 1),
            "the idle poll cycles",
            |calls| listing_starts(calls).get(skip + settings.cycles).copied(),
        )
        .await?;
    let window = t0.elapsed();
    let cpu1 = cpu_ticks(daemon.pid())?;
    let io1 = write_bytes(daemon.pid())?;
    let memory = memory_kib(daemon.pid())?;
    let idle = {
        let calls = &emu.log.calls[start_at..end_at];
        let cycles = settings.cycles as f64;
        let list = calls
            .iter()
            .filter(|c| c.is(Operation::ListChannels, None))
            .count();
        let mut other: Vec<(Operation, f64)> = Vec::new();
        for c in calls
            .iter()
            .filter(|c| !c.is(Operation::ListChannels, None))
        {
            let op = c.operation.unwrap_or(Operation::Any);
            match other.iter_mut().find(|(o, _)| *o == op) {
                Some((_, k)) => *k += 1.0 / cycles,
                None => other.push((op, 1.0 / cycles)),
            }
        }
        let span_us = emu.log.calls[end_at].arrived_us - emu.log.calls[start_at].arrived_us;
        Idle {
            cycles: settings.cycles,
            calls_per_cycle: calls.len() as f64 / cycles,
            list_per_cycle: list as f64 / cycles,
            other,
            period: Duration::from_micros(span_us.max(0) as u64).div_f64(cycles),
            rss_kib: memory.rss,
            cpu_percent: cpu_percent(cpu1 - cpu0, settings.clock_ticks, window),
            write_bytes_per_min: (io1 - io0) as f64 / window.as_secs_f64().max(1e-9) * 60.0,
            window,
        }
    };
    println!(
        "  idle: {:.1} calls per cycle, CPU {:.2} %, RSS {:.1} MB",
        idle.calls_per_cycle,
        idle.cpu_percent,
        idle.rss_kib as f64 / 1024.0
    );

    let mut picker = Picker {
        n,
        used: BTreeSet::new(),
    };
    let live = live_samples(&mut emu, &mut daemon, &ids, &mut picker, pages, cycle_bound).await?;
    println!(
        "  live -> startRecord without callback: {} samples",
        live.len()
    );
    let callbacks = callback_samples(
        settings,
        &mut emu,
        &mut daemon,
        &ids,
        &mut picker,
        pages,
        callback_port,
        cycle_bound,
    )
    .await?;
    println!("  callback -> startRecord: {} samples", callbacks.len());

    let counters = emu.process.counters().await;
    let duplicates = counters["start_while_recording"].as_u64().unwrap_or(0);
    let peak_kib = memory_kib(daemon.pid())?.peak;
    let stop = terminate(&mut daemon, STOP_TARGET * 2).await?;

    let naive = naive_poller(settings, &mut emu, &ids, &mut picker).await?;
    println!("  naive poller: {} samples", naive.samples.len());

    let emulator_cpu = cpu_ticks(emu.process.process.pid())? - emulator_cpu_start;
    let emulator_cpu_percent = cpu_percent(
        emulator_cpu,
        settings.clock_ticks,
        emulator_clock_start.elapsed(),
    );
    let mut process = emu.process.process;
    terminate(&mut process, Duration::from_secs(10)).await?;
    Ok(Report {
        channels: n,
        pages,
        first_listing,
        idle,
        live,
        callbacks,
        duplicates,
        peak_kib,
        stop,
        emulator_cpu_percent,
        naive,
    })
}

/// A live → startRecord sample in progress.
enum Progress {
    /// Waiting for its page to be read after call number `after`.
    Page {
        after: u64,
    },
    /// Goes live at this instant (Unix µs).
    Due {
        at_us: i64,
    },
    /// Went live at this instant.
    Live {
        at_us: i64,
    },
    Done {
        at_us: i64,
        latency: Duration,
    },
}

/// Channels on the first, middle and last page go live at [`PHASES`] of the poll interval
/// after their page was read, all in the same few cycles; no callback is sent.
async fn live_samples(
    emu: &mut Emulator,
    daemon: &mut Process,
    ids: &[String],
    picker: &mut Picker,
    pages: u32,
    cycle_bound: Duration,
) -> Result<Vec<LiveSample>> {
    let n = ids.len();
    let middle_page = pages.div_ceil(2);
    let mut plan = Vec::new();
    for placement in [Placement::First, Placement::Middle, Placement::Last] {
        for &phase in &PHASES {
            let index = match placement {
                Placement::First => picker.take(10),
                Placement::Middle => picker.take((middle_page as usize - 1) * PAGE_SIZE + 50),
                Placement::Last => picker.take_down(n - 2),
            };
            plan.push((placement, index, phase));
        }
    }
    let after = emu.log.last_seq();
    let mut progress: Vec<Progress> = plan.iter().map(|_| Progress::Page { after }).collect();
    let deadline = Instant::now() + cycle_bound * 3;
    loop {
        emu.log.read_from(&emu.process).await;
        let now = now_us();
        for (i, &(_, index, phase)) in plan.iter().enumerate() {
            let id = &ids[index];
            let page = (index / PAGE_SIZE) as u32 + 1;
            match progress[i] {
                Progress::Page { after } => {
                    let read = emu.log.calls.iter().find(|c| {
                        c.seq > after
                            && c.is(Operation::ListChannels, None)
                            && c.page == Some(page)
                            && c.answered_us.is_some()
                    });
                    if let Some(at) = read.and_then(|c| c.answered_us) {
                        let delay = POLL_INTERVAL.mul_f64(phase).as_micros() as i64;
                        progress[i] = Progress::Due { at_us: at + delay };
                    }
                }
                Progress::Due { at_us } if now >= at_us => {
                    let went = now_us();
                    emu.process.set_live(id, true).await;
                    progress[i] = Progress::Live { at_us: went };
                }
                Progress::Live { at_us } => {
                    if let Some(start) = emu
                        .log
                        .of(Operation::StartRecord, Some(id))
                        .find(|c| c.arrived_us >= at_us)
                    {
                        let latency = (start.arrived_us - at_us).max(0) as u64;
                        progress[i] = Progress::Done {
                            at_us,
                            latency: Duration::from_micros(latency),
                        };
                    }
                }
                _ => {}
            }
        }
        if progress.iter().all(|p| matches!(p, Progress::Done { .. })) {
            break;
        }
        if let Some(status) = daemon.exited() {
            bail!("lsrecd run exited early with {status}{}", log_tail(daemon));
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {:?} waiting for live channels to be started{}",
                cycle_bound * 3,
                log_tail(daemon)
            );
        }
        tokio::time::sleep(READ_EVERY).await;
    }
    Ok(plan
        .iter()
        .zip(&progress)
        .map(|(&(placement, index, phase), p)| {
            let (at_us, latency) = match *p {
                Progress::Done { at_us, latency } => (at_us, latency),
                _ => (0, Duration::ZERO),
            };
            LiveSample {
                placement,
                page: (index / PAGE_SIZE) as u32 + 1,
                phase,
                into_cycle: cycle_position(&emu.log.calls, at_us, pages).0,
                latency,
            }
        })
        .collect())
}

/// Channels spread over the list go live one after another, each followed at once by a
/// PUBLISH_START callback, at moments spread evenly over two poll cycles.
#[allow(clippy::too_many_arguments)]
async fn callback_samples(
    settings: &Settings,
    emu: &mut Emulator,
    daemon: &mut Process,
    ids: &[String],
    picker: &mut Picker,
    pages: u32,
    port: u16,
    cycle_bound: Duration,
) -> Result<Vec<CallbackSample>> {
    let n = ids.len();
    let k = settings.callbacks;
    let chosen: Vec<usize> = (0..k).map(|i| picker.take(i * n / k + 25)).collect();
    let spacing = (POLL_INTERVAL * 2).div_f64(k as f64);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .context("an HTTP client for callbacks")?;
    let url = format!("http://127.0.0.1:{port}/callback/{CALLBACK_TOKEN}");
    let began = Instant::now();
    let mut sent = Vec::with_capacity(k);
    for (i, &index) in chosen.iter().enumerate() {
        // Not waiting for a condition: this places the callback at a chosen moment of the cycle.
        tokio::time::sleep_until(began + spacing * i as u32).await;
        let id = &ids[index];
        emu.process.set_live(id, true).await;
        let at_us = now_us();
        let answer = http
            .post(&url)
            .json(&serde_json::json!({
                "id": i, "logLevel": "INFO", "channelId": id,
                "event": "PUBLISH_START", "timestamp": at_us / 1000,
            }))
            .send()
            .await
            .context("sending a callback")?;
        ensure!(
            answer.status() == 202,
            "the callback listener answered {}{}",
            answer.status(),
            log_tail(daemon)
        );
        sent.push((id.clone(), at_us));
    }
    let starts = emu
        .until(
            Some(daemon),
            cycle_bound * 2,
            "startRecord on every channel called back",
            |calls| {
                let found: Vec<i64> = sent
                    .iter()
                    .filter_map(|(id, at)| {
                        calls
                            .iter()
                            .find(|c| c.is(Operation::StartRecord, Some(id)) && c.arrived_us >= *at)
                            .map(|c| c.arrived_us)
                    })
                    .collect();
                (found.len() == sent.len()).then_some(found)
            },
        )
        .await?;
    Ok(sent
        .iter()
        .zip(starts)
        .map(|((_, at), start)| {
            let (into_cycle, during_listing) = cycle_position(&emu.log.calls, *at, pages);
            CallbackSample {
                into_cycle,
                during_listing,
                latency: Duration::from_micros((start - at).max(0) as u64),
            }
        })
        .collect())
}

/// The naive poller against the same emulator (lsrecd stopped): one getChannel per configured
/// channel per round, startRecord on a live channel not recording.
async fn naive_poller(
    settings: &Settings,
    emu: &mut Emulator,
    ids: &[String],
    picker: &mut Picker,
) -> Result<Naive> {
    let n = ids.len();
    let client = Client::new(ClientConfig {
        endpoint: emu.process.base.clone(),
        region: Region::Kr,
        credentials: Credentials {
            access_key: Secret::new(DEFAULT_ACCESS_KEY),
            secret_key: Secret::new(DEFAULT_SECRET_KEY),
        },
        timeout: Duration::from_secs(10),
        max_rps: settings.max_rps,
    })
    .context("the naive poller's client")?;
    // The channels that go live: the first unused one (read first, so found a round later) and
    // four more spread down the list.
    let mut positions: Vec<usize> = [0, n / 4, n / 2, 3 * n / 4]
        .into_iter()
        .map(|at| picker.take(at))
        .collect();
    positions.push(picker.take_down(n - 1));
    let first_id = ids[positions[0]].clone();
    let ids: Arc<Vec<String>> = Arc::new(ids.to_vec());
    let errors = Arc::new(AtomicU64::new(0));
    let after = emu.log.last_seq();
    let round_estimate = POLL_INTERVAL.max(Duration::from_secs_f64(n as f64 / settings.max_rps));
    let bound = settings
        .naive_limit
        .min(round_estimate.mul_f64(1.3) + Duration::from_secs(15));

    let task = tokio::spawn({
        let (ids, errors) = (ids.clone(), errors.clone());
        async move {
            loop {
                let round = Instant::now();
                for id in ids.iter() {
                    match client.get_channel(id).await {
                        Ok(reply) => {
                            let c = reply.value;
                            let wanted = c.channel_status.is_live()
                                && !c.is_recording
                                && !c.immediate_on_air;
                            if wanted && client.start_record(id).await.is_err() {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep_until(round + POLL_INTERVAL).await;
            }
        }
    });
    let began = Instant::now();
    let outcome = async {
        // Right after it has read the first sample channel, all five go live.
        emu.until(None, bound, "the naive poller's first read", |calls| {
            calls
                .iter()
                .any(|c| c.seq > after && c.is(Operation::GetChannel, Some(&first_id)))
                .then_some(())
        })
        .await?;
        let mut live_at = Vec::new();
        for &p in &positions {
            emu.process.set_live(&ids[p], true).await;
            live_at.push(now_us());
        }
        // Until every sample is started and a round has ended, or the bound.
        let remaining = bound.saturating_sub(began.elapsed());
        let deadline = Instant::now() + remaining;
        loop {
            emu.log.read_from(&emu.process).await;
            let calls = &emu.log.calls;
            let started: Vec<Option<Duration>> = positions
                .iter()
                .zip(&live_at)
                .map(|(&p, &at)| {
                    calls
                        .iter()
                        .find(|c| c.is(Operation::StartRecord, Some(&ids[p])) && c.arrived_us >= at)
                        .map(|c| Duration::from_micros((c.arrived_us - at).max(0) as u64))
                })
                .collect();
            let reads: Vec<&Call> = calls
                .iter()
                .filter(|c| c.seq > after && c.is(Operation::GetChannel, Some(&ids[0])))
                .collect();
            let round = match (reads.first(), reads.get(1)) {
                (Some(a), Some(b)) => {
                    let count = calls
                        .iter()
                        .filter(|c| c.seq >= a.seq && c.seq < b.seq)
                        .count() as u64;
                    Some((
                        count,
                        Duration::from_micros((b.arrived_us - a.arrived_us).max(0) as u64),
                    ))
                }
                _ => None,
            };
            let done = started.iter().all(Option::is_some) && round.is_some();
            if done || Instant::now() >= deadline {
                let samples = positions
                    .iter()
                    .zip(started)
                    .map(|(&position, latency)| NaiveSample { position, latency })
                    .collect();
                return Ok::<_, anyhow::Error>((round, samples));
            }
            tokio::time::sleep(READ_EVERY * 5).await;
        }
    }
    .await;
    task.abort();
    let (round, samples) = outcome?;
    Ok(Naive {
        round,
        samples,
        bound,
        errors: errors.load(Ordering::Relaxed),
    })
}

/// The `q` quantile of `values` by nearest rank (with fewer than 100 values, p99 is the
/// largest).
fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `p50 / p99 / max` of `values` with `unit`.
fn spread(values: &[Duration], unit: fn(Duration) -> String) -> String {
    format!(
        "p50 {} / p99 {} / max {}",
        unit(quantile(values, 0.5)),
        unit(quantile(values, 0.99)),
        unit(quantile(values, 1.0))
    )
}

fn mark(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

impl Report {
    fn calls_target(&self) -> u64 {
        u64::from(self.pages) + 1
    }

    fn calls_ok(&self) -> bool {
        self.idle.calls_per_cycle <= self.calls_target() as f64
    }

    fn rss_ok(&self) -> Option<bool> {
        (self.channels == RSS_TARGET_CHANNELS)
            .then_some(self.idle.rss_kib <= RSS_TARGET_KIB && self.peak_kib <= RSS_TARGET_KIB)
    }

    fn cpu_ok(&self) -> bool {
        self.idle.cpu_percent <= CPU_TARGET_PERCENT
    }

    fn live_ok(&self) -> bool {
        self.live.iter().all(|s| s.latency <= POLL_INTERVAL)
    }

    fn callback_latencies(&self) -> Vec<Duration> {
        self.callbacks.iter().map(|s| s.latency).collect()
    }

    fn callback_ok(&self) -> bool {
        quantile(&self.callback_latencies(), 0.99) <= CALLBACK_TARGET
    }

    /// The markdown section of this channel count.
    fn section(&self, settings: &Settings) -> String {
        let mut t = String::new();
        let poll = POLL_INTERVAL.as_secs();
        let _ = writeln!(
            t,
            "\n### {} channels ({} list pages per poll)\n",
            thousands(self.channels),
            self.pages
        );
        let _ = writeln!(t, "| measure | value | target | result |");
        let _ = writeln!(t, "|---|---|---|---|");
        let mut row = |m: &str, v: String, target: &str, r: &str| {
            let _ = writeln!(t, "| {m} | {v} | {target} | {r} |");
        };
        let other: Vec<String> = self
            .idle
            .other
            .iter()
            .map(|(op, k)| format!("{k:.1} {}", op_name(*op)))
            .collect();
        row(
            "API calls per poll cycle, lsrecd",
            format!(
                "{:.1} ({:.1} list pages{}{}) over {} idle cycles",
                self.idle.calls_per_cycle,
                self.idle.list_per_cycle,
                if other.is_empty() { "" } else { ", " },
                other.join(", "),
                self.idle.cycles
            ),
            &format!("≤ {}", self.calls_target()),
            mark(self.calls_ok()),
        );
        row(
            "API calls per poll cycle, naive poller",
            match self.naive.round {
                Some((calls, period)) => format!("{calls} (one round, {})", secs(period)),
                None => format!(
                    "no round ended within {} (≥ {} getChannel)",
                    secs(self.naive.bound),
                    self.channels
                ),
            },
            "",
            "",
        );
        row(
            "poll cycle period, lsrecd",
            format!(
                "{} (listing alone ≥ {:.2} s at max_rps)",
                secs(self.idle.period),
                f64::from(self.pages) / settings.max_rps
            ),
            &format!("{poll} s"),
            "",
        );
        let rss_target = format!(
            "≤ {} MB at {}",
            RSS_TARGET_KIB / 1024,
            thousands(RSS_TARGET_CHANNELS)
        );
        row(
            "RSS idle (VmRSS) / peak (VmHWM)",
            format!(
                "{:.1} MB / {:.1} MB",
                self.idle.rss_kib as f64 / 1024.0,
                self.peak_kib as f64 / 1024.0
            ),
            &rss_target,
            self.rss_ok().map_or("", mark),
        );
        row(
            "CPU idle, % of one core",
            format!(
                "{:.2} % over {:.1} s",
                self.idle.cpu_percent,
                self.idle.window.as_secs_f64()
            ),
            &format!("≤ {CPU_TARGET_PERCENT} %"),
            mark(self.cpu_ok()),
        );
        row(
            "database writes idle (`write_bytes`)",
            format!(
                "{:.1} KiB/min = {:.1} pages of 4 KiB/min",
                self.idle.write_bytes_per_min / 1024.0,
                self.idle.write_bytes_per_min / 4096.0
            ),
            "",
            "",
        );
        for placement in [Placement::First, Placement::Middle, Placement::Last] {
            let samples: Vec<&LiveSample> = self
                .live
                .iter()
                .filter(|s| s.placement == placement)
                .collect();
            let latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
            let each: Vec<String> = samples
                .iter()
                .map(|s| {
                    format!(
                        "+{:.0}% ({:.1} s into the cycle): {:.2}",
                        s.phase * 100.0,
                        s.into_cycle,
                        s.latency.as_secs_f64()
                    )
                })
                .collect();
            let page = samples.first().map_or(0, |s| s.page);
            row(
                &format!(
                    "live → startRecord, no callback, lsrecd, {} ({page} of {})",
                    placement.name(),
                    self.pages
                ),
                format!(
                    "{}; each (went live at +% of the interval after its page was read): {} s",
                    spread(&latencies, secs),
                    each.join(", ")
                ),
                &format!("≤ {poll} s"),
                mark(latencies.iter().all(|&l| l <= POLL_INTERVAL)),
            );
        }
        let naive: Vec<String> = self
            .naive
            .samples
            .iter()
            .map(|s| match s.latency {
                Some(l) => format!("#{}: {:.2} s", s.position + 1, l.as_secs_f64()),
                None => format!(
                    "#{}: > {:.0} s (not started within the bound)",
                    s.position + 1,
                    self.naive.bound.as_secs_f64()
                ),
            })
            .collect();
        let found: Vec<Duration> = self
            .naive
            .samples
            .iter()
            .filter_map(|s| s.latency)
            .collect();
        row(
            "live → startRecord, naive poller (channel # in list order)",
            format!(
                "{}; {}{}",
                if found.len() == self.naive.samples.len() {
                    spread(&found, secs)
                } else {
                    format!("{} of {} started", found.len(), self.naive.samples.len())
                },
                naive.join(", "),
                if self.naive.errors > 0 {
                    format!("; {} failed calls", self.naive.errors)
                } else {
                    String::new()
                }
            ),
            &format!("≤ {poll} s"),
            mark(
                found.len() == self.naive.samples.len()
                    && found.iter().all(|&l| l <= POLL_INTERVAL),
            ),
        );
        let latencies = self.callback_latencies();
        let split = |during: bool| -> Vec<Duration> {
            self.callbacks
                .iter()
                .filter(|s| s.during_listing == during)
                .map(|s| s.latency)
                .collect()
        };
        let (during, between) = (split(true), split(false));
        let phases: Vec<String> = self
            .callbacks
            .iter()
            .map(|s| format!("{:.1}", s.into_cycle))
            .collect();
        row(
            &format!(
                "callback → startRecord, lsrecd ({} samples)",
                latencies.len()
            ),
            format!(
                "{}; sent during a listing ({}): {}; between listings ({}): {}; sent at (s into the cycle) {}",
                spread(&latencies, millis),
                during.len(),
                if during.is_empty() {
                    "-".into()
                } else {
                    spread(&during, millis)
                },
                between.len(),
                if between.is_empty() {
                    "-".into()
                } else {
                    spread(&between, millis)
                },
                phases.join(" ")
            ),
            &format!("p99 ≤ {} ms", CALLBACK_TARGET.as_millis()),
            mark(self.callback_ok()),
        );
        row(
            "duplicate startRecord calls",
            self.duplicates.to_string(),
            "0",
            mark(self.duplicates == 0),
        );
        row(
            "SIGTERM → exit",
            secs(self.stop),
            &format!("≤ {} s", STOP_TARGET.as_secs()),
            mark(self.stop <= STOP_TARGET),
        );
        row(
            "start → first listing done (`lsrecd is running`)",
            secs(self.first_listing),
            "",
            "",
        );
        row(
            "emulator CPU, % of one core (for scale)",
            format!("{:.1} %", self.emulator_cpu_percent),
            "",
            "",
        );
        t
    }
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::ListChannels => "listChannels",
        Operation::GetChannel => "getChannel",
        Operation::StartRecord => "startRecord",
        Operation::StopRecord => "stopRecord",
        Operation::ListRecords => "listRecords",
        Operation::GetRecord => "getRecord",
        Operation::Upload => "upload",
        Operation::Any => "unrouted",
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The whole of `BENCHMARKS.md`.
fn document(settings: &Settings, reports: &[Report]) -> String {
    let mut t = String::new();
    let poll = POLL_INTERVAL.as_secs();
    let _ = writeln!(t, "# Benchmarks\n");
    let _ = writeln!(
        t,
        "Generated by `cargo bench --bench engine` (`benches/engine.rs`, whose doc comment has the \
         details and knobs) on {} UTC. Regenerate with the same command; `LSRECD_BENCH_SIZES=…` \
         runs chosen sizes and prints without writing this file.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M")
    );
    let _ = writeln!(
        t,
        "Code measured: `{}` (`git describe --always --dirty`).\n",
        revision()
    );
    let _ = writeln!(t, "## Machine\n");
    for line in machine() {
        let _ = writeln!(t, "- {line}");
    }
    let _ = writeln!(
        t,
        "\nThe daemon, the emulator and the benchmark share these cores; other work on the machine \
         during the run shows up in the CPU and latency numbers.\n"
    );
    let _ = writeln!(t, "## Setup\n");
    let _ = writeln!(
        t,
        "- `lsrecd run` (release build) against `lsrecd emulator`, both child processes on \
         loopback; N channels, none live at first, all `record_when_live = true`;\n\
         - `daemon.poll_interval = \"{poll}s\"`, `api.max_rps = {}`, `[callback]` on (real \
         `POST /callback/<token>` requests with a PUBLISH_START body), other settings default;\n\
         - times come from the emulator's call log (`GET /_emulator/calls`): when each API call \
         reached the emulator, on the same host clock as the benchmark's own timestamps;\n\
         - the naive poller runs after lsrecd is stopped, against the same emulator and the same \
         channels: lsrecd's library client (same signing, same `max_rps`), one getChannel per \
         channel per round, a round every {poll} s or back to back when a round takes longer, \
         startRecord on a channel seen live and not recording. Its sampling is bounded to \
         {} s per size (at 10,000 channels and {} rps one round takes {:.0} s).\n",
        settings.max_rps,
        settings.naive_limit.as_secs(),
        settings.max_rps,
        10_000.0 / settings.max_rps
    );
    let _ = writeln!(t, "## What the rows mean\n");
    let _ = writeln!(
        t,
        "- **API calls per poll cycle**: every API call the emulator received from lsrecd between \
         the first page of one listing and the first page of the listing `{}` cycles later, \
         divided by the cycles, with nothing live (target ceil(N/100) + 1: the pages, plus the one \
         record sweep read). For the naive poller: the calls of one whole round.\n\
         - **poll cycle period**: the time between listings' first pages over those cycles.\n\
         - **RSS**: `VmRSS` of `lsrecd run` at the end of the idle cycles, and `VmHWM` (the peak) \
         just before it is stopped, after all the samples below (target ≤ 25 MB at 10,000).\n\
         - **CPU idle**: utime + stime of `lsrecd run` over the idle cycles, as % of one core \
         (target ≤ 1 %).\n\
         - **database writes idle**: `write_bytes` of `/proc/<pid>/io` over the idle cycles, per \
         minute: bytes the daemon caused to be written to storage (its SQLite database and WAL; \
         its log goes to a pipe and is not counted), and the same in 4 KiB pages (SQLite's page \
         size). No target.\n\
         - **live → startRecord, no callback**: three channels on the first, the middle and the \
         last page go live 5 %, 50 % and 95 % of a poll interval after lsrecd read their page; \
         from the go-live (control call) to the emulator receiving startRecord for the channel. \
         Target: every one within one poll interval ({poll} s). For the naive poller: five \
         channels (the first one it reads, which it has just read, and four spread down the list; \
         \"#k\" is the position in the list) go live together.\n\
         - **callback → startRecord**: a channel goes live and a PUBLISH_START callback is sent at \
         once; from sending the callback to the emulator receiving startRecord for it. The \
         callbacks are spread over two poll cycles; the row splits them into those sent while a \
         listing was being read and those sent between listings, and lists when each was sent (s \
         since the latest listing began). p99 is by nearest rank, so with fewer than 100 samples \
         it is the largest. Target p99 ≤ 50 ms.\n\
         - **duplicate startRecord calls**: startRecord calls that reached a channel already \
         recording (the emulator's `start_while_recording`); must be 0.\n\
         - **SIGTERM → exit**: from sending SIGTERM to `lsrecd run` to its exit (≤ 10 s).\n\
         - **PASS/FAIL** compares with the targets of the issue \"10,000 channels on a small \
         box\"; rows without a target are for reading.\n",
        settings.cycles
    );
    let _ = writeln!(t, "## Summary\n");
    let _ = writeln!(
        t,
        "| channels | calls/cycle (target) | RSS idle / peak | CPU idle | live → start, no callback, max | callback → start p99 | naive: live → start max | duplicates |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    for r in reports {
        let live_max = r.live.iter().map(|s| s.latency).max().unwrap_or_default();
        let naive_max = if r.naive.samples.iter().all(|s| s.latency.is_some()) {
            secs(
                r.naive
                    .samples
                    .iter()
                    .filter_map(|s| s.latency)
                    .max()
                    .unwrap_or_default(),
            )
        } else {
            format!("> {}", secs(r.naive.bound))
        };
        let _ = writeln!(
            t,
            "| {} | {:.1} (≤ {}) {} | {:.1} / {:.1} MB {} | {:.2} % {} | {} {} | {} {} | {} | {} {} |",
            thousands(r.channels),
            r.idle.calls_per_cycle,
            r.calls_target(),
            mark(r.calls_ok()),
            r.idle.rss_kib as f64 / 1024.0,
            r.peak_kib as f64 / 1024.0,
            r.rss_ok().map_or("", mark),
            r.idle.cpu_percent,
            mark(r.cpu_ok()),
            secs(live_max),
            mark(r.live_ok()),
            millis(quantile(&r.callback_latencies(), 0.99)),
            mark(r.callback_ok()),
            naive_max,
            r.duplicates,
            mark(r.duplicates == 0),
        );
    }
    let _ = writeln!(t, "\n## Results");
    for r in reports {
        t.push_str(&r.section(settings));
    }
    t
}

/// The commit the benchmark ran on, as `git describe --always --dirty` says.
fn revision() -> String {
    std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or("unknown".to_string(), |r| r.trim().to_string())
}

/// CPU model, cores, memory and kernel, from /proc.
fn machine() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("unknown".to_string(), |kib| {
            format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".to_string(), |k| k.trim().to_string());
    vec![
        format!("CPU: {model}"),
        format!("cores (logical, /proc/cpuinfo): {cores}"),
        format!("memory: {memory}"),
        format!("kernel: Linux {kernel}"),
    ]
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
fn write_config(
    dir: &Path,
    base: &str,
    ids: &[String],
    max_rps: f64,
    callback_port: u16,
) -> Result<PathBuf> {
    let path = dir.join("config.toml");
    let database = dir.join("lsrecd.db");
    let mut text = String::with_capacity(64 * ids.len() + 512);
    let _ = writeln!(
        text,
        "[api]\nendpoint = \"{base}\"\nregion = \"KR\"\naccess_key = \"{DEFAULT_ACCESS_KEY}\"\n\
         secret_key = \"{DEFAULT_SECRET_KEY}\"\nmax_rps = {max_rps:?}\n\n\
         [daemon]\ndatabase = \"{}\"\ntimezone = \"UTC\"\npoll_interval = \"{}\"\n\n\
         [callback]\nlisten = \"127.0.0.1:{callback_port}\"\ntoken = \"{CALLBACK_TOKEN}\"\n",
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

/// `write_bytes` of `/proc/<pid>/io`: bytes the process caused to be written to storage.
fn write_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("{path}: no write_bytes"))
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
