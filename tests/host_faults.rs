//! The host under lsrecd fails, with real SQLite and the real binary: the database stops taking
//! writes because it is full (`daemon.max_database_size`, which is `PRAGMA max_page_count`), because
//! the file system refuses to write it (`chattr +i`, as a file system turned read-only would), or
//! because an operator holds a write transaction open.
//!
//! In each case, while channels go live: no request is sent whose intent could not be written
//! (one `actions` row per `startRecord` the emulator saw), the daemon keeps running and says so
//! (`/readyz` not ready, `lsrecd_database_available 0`), a recording already running is not
//! touched, and once the fault clears everything resumes by itself: every channel recorded once,
//! every emulator record in the database, one `database_unavailable` event, `integrity_check` ok.

mod support;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use lsrecd::emulator::{ChannelSpec, Operation, RunningEmulator};
use support::emulator::{emulator, is_recording};
use support::process::Process;
use support::site::{channel_table, config_text, free_port, query};
use support::{tools, wait_for, write_private};

const ON_AIR: &str = "ls-20260101000000-HostA";
const LATE: [&str; 2] = ["ls-20260101000000-HostB", "ls-20260101000000-HostC"];

/// Long enough for a debug build to start, migrate and poll on a busy machine.
const START_LIMIT: Duration = Duration::from_secs(20);
/// How long the engine may take to notice the fault: a few ticks, each of which may wait out
/// the 10 s busy timeout.
const NOTICE_LIMIT: Duration = Duration::from_secs(60);
/// How long recovery may take once the fault is gone.
const RECOVER_LIMIT: Duration = Duration::from_secs(40);
/// How long an operator holds the write lock in the lock scenario.
const OPERATOR_LOCK: Duration = Duration::from_secs(30);

/// A daemon on `database` with metrics on a free port, and the channels above.
struct HostSite {
    /// Holds the configuration and the database; removed when the site is dropped.
    _dir: tempfile::TempDir,
    config: PathBuf,
    database: PathBuf,
    metrics: String,
    endpoint: String,
    http: reqwest::Client,
}

impl HostSite {
    fn new(endpoint: &str, dir: tempfile::TempDir, database: PathBuf) -> HostSite {
        let site = HostSite {
            config: dir.path().join("config.toml"),
            _dir: dir,
            database,
            metrics: format!("127.0.0.1:{}", free_port()),
            endpoint: endpoint.to_string(),
            http: support::signed::http_client(Duration::from_secs(5)),
        };
        site.configure(None);
        site
    }

    /// Writes the configuration, with `max_database_size` when given.
    fn configure(&self, max_database_size: Option<&str>) {
        let channels: String = [ON_AIR, LATE[0], LATE[1]]
            .iter()
            .enumerate()
            .map(|(i, id)| channel_table(id, &format!("host-{i}"), true))
            .collect();
        let mut daemon = "[daemon]".to_string();
        if let Some(size) = max_database_size {
            daemon.push_str(&format!("\nmax_database_size = \"{size}\""));
        }
        let text = config_text(&self.endpoint, &self.database, &channels).replace(
            "[daemon]",
            &format!("[metrics]\nlisten = \"{}\"\n\n{daemon}", self.metrics),
        );
        write_private(&self.config, &text);
    }

    fn spawn(&self) -> Process {
        let mut command = support::process::lsrecd_command();
        command.arg("--config").arg(&self.config).arg("run");
        Process::start("lsrecd run", command)
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let answer = self
            .http
            .get(format!("http://{}{path}", self.metrics))
            .send()
            .await
            .ok()?;
        let status = answer.status().as_u16();
        Some((status, answer.text().await.ok()?))
    }

    /// The value of an unlabelled series in `/metrics`.
    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics").await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    fn number(&self, sql: &str) -> i64 {
        let rows = query(&self.database, sql);
        rows.first()
            .and_then(|r| r.first())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{sql} gave {rows:?}"))
    }
}

/// Starts the daemon, waits until it is ready and has recorded the channel already on air.
async fn start(site: &HostSite, emu: &RunningEmulator) -> Process {
    let daemon = site.spawn();
    wait_for(START_LIMIT, "/readyz 200", async || {
        (site.get("/readyz").await?.0 == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    wait_for(START_LIMIT, "the on-air channel recording", async || {
        is_recording(emu, ON_AIR).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    daemon
}

/// With the fault in force: two channels go live, and the daemon must say the database fails.
async fn while_failing(site: &HostSite, emu: &RunningEmulator, daemon: &Process) {
    for id in LATE {
        emu.control().go_live(id).expect("a known channel");
    }
    said_failing(site, daemon).await;
}

/// `/readyz`, the metric and the log say the database fails.
async fn said_failing(site: &HostSite, daemon: &Process) {
    let said = wait_for(
        NOTICE_LIMIT,
        "/readyz 503 naming the database",
        async || {
            let (status, body) = site.get("/readyz").await?;
            (status == 503 && body.contains("database")).then_some(body)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    assert!(said.contains("database failing"), "{said}");
    assert_eq!(
        site.metric("lsrecd_database_available").await,
        Some(0.0),
        "the metric says it too"
    );
    assert!(
        daemon.stderr().contains("the database is failing"),
        "and the log; stderr:\n{}",
        daemon.stderr()
    );
}

/// After the fault: everything resumed by itself and nothing was lost or done twice.
async fn after_recovery(site: &HostSite, emu: &RunningEmulator, daemon: &mut Process) {
    wait_for(RECOVER_LIMIT, "every channel recording", async || {
        LATE.iter().all(|id| is_recording(emu, id)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    wait_for(RECOVER_LIMIT, "/readyz 200 again", async || {
        (site.get("/readyz").await?.0 == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    wait_for(
        RECOVER_LIMIT,
        "the database_unavailable event",
        async || {
            let rows = support::site::try_query(
                &site.database,
                "SELECT count(*) FROM events WHERE kind = 'database_unavailable'",
            )
            .ok()?;
            (rows.first()?.first()?.parse::<i64>().ok()? >= 1).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    // Once the recordings are in the journal as lsrecd's own, nothing is left pending.
    wait_for(RECOVER_LIMIT, "no PENDING action", async || {
        let rows = support::site::try_query(
            &site.database,
            "SELECT count(*) FROM actions WHERE state = 'PENDING'",
        )
        .ok()?;
        (rows.first()?.first()? == "0").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    assert_eq!(site.metric("lsrecd_database_available").await, Some(1.0));

    daemon.signal("TERM");
    let exit = daemon.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(
        exit.ok().and_then(|s| s.code()),
        Some(0),
        "stderr:\n{}",
        daemon.stderr()
    );

    let counters = emu.control().counters();
    assert_eq!(counters.start_while_recording, 0, "a duplicate start");
    assert_eq!(counters.start_record_calls_on(ON_AIR), 1);
    for id in LATE {
        // One start per time the channel went live (the full-disk case flaps them).
        let records = emu.control().records(id).len() as u64;
        assert_eq!(
            counters.start_record_calls_on(id),
            records,
            "startRecord on {id}"
        );
    }
    assert_eq!(
        counters.calls_of(Operation::StopRecord),
        0,
        "the recording on air was touched"
    );
    assert!(is_recording(emu, ON_AIR));
    assert_eq!(
        site.number("SELECT count(*) FROM actions WHERE operation = 'startRecord'"),
        counters.calls_of(Operation::StartRecord) as i64,
        "one journal row per startRecord sent"
    );
    assert_eq!(
        query(&site.database, "PRAGMA integrity_check"),
        vec![vec!["ok".to_string()]]
    );
    for record in emu.control().all_records() {
        let id = record.record_id;
        assert_eq!(
            site.number(&format!(
                "SELECT count(*) FROM records WHERE record_id = {id}"
            )),
            1,
            "record {id} is not in the database"
        );
    }
}

fn channels() -> Vec<ChannelSpec> {
    vec![
        ChannelSpec::new(ON_AIR).live(),
        ChannelSpec::new(LATE[0]),
        ChannelSpec::new(LATE[1]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_holds_every_start_until_it_can_be_journaled() {
    let emu = emulator(channels()).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = dir.path().join("lsrecd.db");
    let site = HostSite::new(&emu.base_url(), dir, database);
    let mut daemon = start(&site, &emu).await;

    // A cap below the current size holds the file where it is: full. It still takes writes that
    // fit in its pages' free space, so the two channels go on and off air (each time a start,
    // its records and events are written) until a write needs a new page.
    site.configure(Some("64KiB"));
    daemon.signal("HUP");
    daemon
        .wait_stderr("configuration reloaded", START_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    let control = emu.control();
    wait_for(NOTICE_LIMIT, "a write that does not fit", async || {
        if daemon.stderr().contains("the database is failing") {
            return Some(());
        }
        for id in LATE {
            if is_recording(&emu, id) {
                control.go_offline(id).expect("a known channel");
            } else {
                control.go_live(id).expect("a known channel");
            }
        }
        None
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    for id in LATE {
        control.go_live(id).expect("a known channel");
    }
    said_failing(&site, &daemon).await;

    site.configure(None);
    daemon.signal("HUP");
    after_recovery(&site, &emu, &mut daemon).await;
    assert!(
        daemon.stderr().contains("SQLITE_FULL") || daemon.stderr().contains("full"),
        "the log names the cause; stderr:\n{}",
        daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lock_held_by_an_operator_delays_starts_and_nothing_else() {
    let emu = emulator(channels()).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = dir.path().join("lsrecd.db");
    let site = HostSite::new(&emu.base_url(), dir, database);
    let mut daemon = start(&site, &emu).await;

    // `sqlite3 db` with `BEGIN IMMEDIATE` typed and the prompt left open. The operator's
    // shell waits for the lock like the daemon does (`.timeout`): without it, a `BEGIN` that
    // meets one of the daemon's own writes fails and no lock is held. `-bail` ends the shell on
    // such a failure, so `held` is printed only once the transaction is open.
    let mut operator = Command::new("sqlite3")
        .arg("-bail")
        .arg(&site.database)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sqlite3 runs");
    let mut stdin = operator.stdin.take().expect("a stdin");
    stdin
        .write_all(b".timeout 20000\nBEGIN IMMEDIATE;\nSELECT 'held';\n")
        .expect("the transaction is typed");
    stdin.flush().expect("flushed");
    let stdout = operator.stdout.take().expect("a stdout");
    let said = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    })
    .await
    .expect("the reader ends")
    .expect("sqlite3's output is readable");
    assert_eq!(
        said.trim(),
        "held",
        "the operator's transaction did not open; sqlite3 said: {}",
        {
            let mut err = String::new();
            if let Some(mut e) = operator.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            err
        }
    );
    let locked_at = std::time::Instant::now();
    while_failing(&site, &emu, &daemon).await;
    for id in LATE {
        assert!(
            !is_recording(&emu, id),
            "{id} was started while its intent could not be written; stderr:\n{}",
            daemon.stderr()
        );
    }

    // The operator types COMMIT after the lock has been held for 30 s.
    let held = locked_at.elapsed();
    if held < OPERATOR_LOCK {
        tokio::time::sleep(OPERATOR_LOCK - held).await;
    }
    stdin.write_all(b"COMMIT;\n").expect("COMMIT is typed");
    drop(stdin);
    let status = operator.wait().expect("sqlite3 ends");
    assert!(status.success(), "the operator's sqlite3 failed");

    after_recovery(&site, &emu, &mut daemon).await;
}

/// `chattr +i` on the database and its write-ahead log: the file system refuses every write to
/// them (EPERM, as a file system remounted read-only refuses with EROFS), and SQLite reports an
/// I/O error. Undone when dropped.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// `None` when this process may not set the flag (not root, or a file system without it).
    fn set(files: Vec<PathBuf>) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .args(&files)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Immutable(files))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_the_file_system_refuses_to_write_holds_every_start_until_it_can() {
    let emu = emulator(channels()).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = dir.path().join("lsrecd.db");
    let site = HostSite::new(&emu.base_url(), dir, database);
    let mut daemon = start(&site, &emu).await;

    let mut wal = site.database.clone().into_os_string();
    wal.push("-wal");
    let Some(read_only) = Immutable::set(vec![site.database.clone(), PathBuf::from(wal)]) else {
        // CI runs as root on a file system with the flag and sets the switch, so it cannot skip
        // there.
        tools::PRIVILEGED.skip(
            "chattr +i failed: it needs root (CAP_LINUX_IMMUTABLE) and a file system with the flag",
        );
        return;
    };
    while_failing(&site, &emu, &daemon).await;
    for id in LATE {
        assert!(
            !is_recording(&emu, id),
            "{id} was started while its intent could not be written; stderr:\n{}",
            daemon.stderr()
        );
    }

    drop(read_only);
    after_recovery(&site, &emu, &mut daemon).await;
    assert!(
        daemon.stderr().contains("I/O error"),
        "the log names the cause; stderr:\n{}",
        daemon.stderr()
    );
}
