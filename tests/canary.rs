//! The secret canary: the daemon runs its end-to-end paths at the most verbose log level with a
//! recognisable secret key — recordings started and stopped, a start applied and answered 502, a
//! start that times out, malformed bodies, a storm of 401s, a reload — and the secret must not
//! appear anywhere lsrecd writes or shows: its logs, `/metrics`, `/readyz`, the database (the
//! file, its WAL, a `.dump`), `status`, `records` and `check` output, and the process's command
//! line and environment as `/proc` (and so `ps e` or `systemctl show`) shows them.

mod support;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use lsrecd::emulator::{
    ChannelSpec, EmulatorOptions, Fault, FaultRule, Operation, RunningEmulator,
};
use support::emulator::is_recording;
use support::process::lsrecd_command;
use support::site::{ACCESS_KEY, channel_table, config_text, free_port};
use support::{wait_for, write_private};

/// The secret key, unlike anything else lsrecd prints.
const CANARY: &str = "CANARYsecret-9f2c7e41b8d35a06";

const LIVE: &str = "ls-20260101000000-CanA";
const LATER: &str = "ls-20260101000000-CanB";
const TIMED_OUT: &str = "ls-20260101000000-CanC";

const LIMIT: Duration = Duration::from_secs(30);

async fn emulator() -> RunningEmulator {
    let options = EmulatorOptions {
        access_key: ACCESS_KEY.to_string(),
        secret_key: CANARY.to_string(),
        ..EmulatorOptions::default()
    };
    let addr = "127.0.0.1:0".parse().expect("a literal socket address");
    let emu = lsrecd::emulator::Emulator::start(addr, options)
        .await
        .expect("the emulator binds a free port");
    for spec in [
        ChannelSpec::new(LIVE).live(),
        ChannelSpec::new(LATER),
        ChannelSpec::new(TIMED_OUT),
    ] {
        emu.control().add_channel(spec).expect("a new channel id");
    }
    emu
}

/// Where the canary occurs in `haystack` (a byte search, so binary files count too).
fn occurrences(haystack: &[u8]) -> usize {
    haystack
        .windows(CANARY.len())
        .filter(|w| *w == CANARY.as_bytes())
        .count()
}

fn file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_key_appears_nowhere_lsrecd_writes_or_shows() {
    let http = support::signed::http_client(Duration::from_secs(5));
    let emu = emulator().await;
    let control = emu.control();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = dir.path().join("lsrecd.db");
    let config = dir.path().join("config.toml");
    let metrics = format!("127.0.0.1:{}", free_port());
    let channels: String = [LIVE, LATER, TIMED_OUT]
        .iter()
        .enumerate()
        .map(|(i, id)| channel_table(id, &format!("canary-{i}"), true))
        .collect();
    // The key comes from the environment, as from a unit's Environment=, not from the file.
    let text: String = config_text(&emu.base_url(), &database, &channels)
        .lines()
        .filter(|l| !l.starts_with("secret_key"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace(
            "[daemon]",
            &format!("[metrics]\nlisten = \"{metrics}\"\n\n[daemon]"),
        );
    write_private(&config, &text);
    let env = [("LSRECD_SECRET_KEY", OsString::from(CANARY))];
    let lsrecd = |args: &[&str]| {
        let mut c = lsrecd_command();
        c.arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "trace");
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };

    let mut daemon = support::process::Process::start("lsrecd run", lsrecd(&["-vvv", "run"]));
    let get = async |path: &str| -> Option<(u16, String)> {
        let r = http
            .get(format!("http://{metrics}{path}"))
            .send()
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    };
    wait_for(LIMIT, "the live channel recording", async || {
        is_recording(&emu, LIVE).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr tail:\n{}", daemon.stderr_tail(40)));

    // A start applied and answered 502; a start held past the client's timeout.
    control.add_fault(
        FaultRule::new(Operation::StartRecord, Fault::ApplyThen502)
            .channel(LATER)
            .times(1),
    );
    control.add_fault(
        FaultRule::new(Operation::StartRecord, Fault::Hold)
            .channel(TIMED_OUT)
            .times(1),
    );
    control.go_live(LATER).expect("a known channel");
    control.go_live(TIMED_OUT).expect("a known channel");
    wait_for(LIMIT, "both late channels recording", async || {
        (is_recording(&emu, LATER) && is_recording(&emu, TIMED_OUT)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr tail:\n{}", daemon.stderr_tail(40)));

    // Malformed answers, then a storm of refused credentials, then the API is fine again.
    let before = control.counters().faults_injected;
    control.add_fault(FaultRule::new(Operation::ListChannels, Fault::MalformedBody).times(3));
    wait_for(LIMIT, "three malformed channel lists", async || {
        (control.counters().faults_injected >= before + 3).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr tail:\n{}", daemon.stderr_tail(40)));
    let refused = Fault::GatewayError {
        http: 401,
        code: "200".into(),
        message: "Authentication Failed".into(),
        details: None,
    };
    for op in [
        Operation::ListChannels,
        Operation::ListRecords,
        Operation::GetChannel,
    ] {
        control.add_fault(FaultRule::new(op, refused.clone()).times(20));
    }
    wait_for(LIMIT, "lsrecd to report refused credentials", async || {
        daemon
            .stderr()
            .contains("kind=\"auth_failure\"")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr tail:\n{}", daemon.stderr_tail(40)));
    control.clear_faults();
    control.go_offline(LATER).expect("a known channel");
    daemon.signal("HUP");
    wait_for(LIMIT, "/readyz 200 after the storm", async || {
        (get("/readyz").await?.0 == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr tail:\n{}", daemon.stderr_tail(40)));

    let (_, metrics_text) = get("/metrics").await.expect("/metrics answers");
    let (_, ready_text) = get("/readyz").await.expect("/readyz answers");
    let proc_environ = file(Path::new(&format!("/proc/{}/environ", daemon.pid())));
    let proc_cmdline = file(Path::new(&format!("/proc/{}/cmdline", daemon.pid())));

    let mut shown: Vec<(String, Vec<u8>)> = Vec::new();
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["records"],
        &["records", "--json"],
        &["-vvv", "check"],
    ] {
        let out = lsrecd(args).output().expect("lsrecd runs");
        let mut both = out.stdout;
        both.extend(out.stderr);
        shown.push((format!("lsrecd {}", args.join(" ")), both));
    }
    daemon.signal("TERM");
    let exit = daemon.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(exit.ok().and_then(|s| s.code()), Some(0));
    let dump = std::process::Command::new("sqlite3")
        .arg(&database)
        .arg(".dump")
        .output()
        .expect("sqlite3 runs")
        .stdout;

    // The run went through the paths it is meant to: trace logs, refused credentials, faults.
    let log = format!("{}{}", daemon.stdout(), daemon.stderr());
    assert!(log.contains("TRACE"), "not logging at trace level");
    assert!(log.contains("DEBUG"));
    let injected = control.counters().faults_injected;
    assert!(injected >= 5, "only {injected} faults injected");
    assert!(dump.len() > 10_000, "the database has something in it");
    // And the search finds the canary where it is: the process that was handed it.
    assert_eq!(occurrences(format!("x{CANARY}x").as_bytes()), 1);

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("the daemon's log".into(), log.into_bytes()),
        ("/metrics".into(), metrics_text.into_bytes()),
        ("/readyz".into(), ready_text.into_bytes()),
        ("/proc/PID/environ".into(), proc_environ),
        ("/proc/PID/cmdline".into(), proc_cmdline),
        ("the database file".into(), file(&database)),
        (
            "the database's WAL".into(),
            file(&dir.path().join("lsrecd.db-wal")),
        ),
        ("sqlite3 .dump".into(), dump),
    ];
    places.extend(shown);
    let found: Vec<String> = places
        .iter()
        .filter(|(_, bytes)| occurrences(bytes) > 0)
        .map(|(place, bytes)| format!("{place} ({} times)", occurrences(bytes)))
        .collect();
    assert!(
        found.is_empty(),
        "the secret key is in: {}",
        found.join(", ")
    );
}
