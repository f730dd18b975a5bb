//! `lsrecd run` as systemd runs it: the real binary against an in-process emulator, talking to a
//! fake notify socket, stopped and reloaded with signals, its database read with
//! `sqlite3 -readonly`.

mod support;

use std::ffi::OsString;
use std::process::Command;
use std::time::Duration;

use lsrecd::emulator::{ChannelSpec, Fault, FaultRule, Operation};
use support::emulator::{emulator, is_recording};
use support::notify::NotifySocket;
use support::site::{
    ACCESS_KEY, SECRET_KEY, Site, channel_table, closed_endpoint, config_text, free_port,
};
use support::wait_for;

const STUDIO_A: &str = "ls-20260101000000-TestA";
const STUDIO_B: &str = "ls-20260101000000-TestB";

/// Long enough for a debug build to start, migrate and poll on a busy machine.
const START_LIMIT: Duration = Duration::from_secs(15);
/// A few poll intervals (1 s in the test configuration).
const POLLS: Duration = Duration::from_secs(10);
/// How long a stop may take (the unit's `TimeoutStopSec` is 15 s).
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Environment systemd gives a `Type=notify` service with `WatchdogSec=2s`. `WATCHDOG_PID`
/// cannot name a child before it exists, so it is left out (the watchdog then applies to the
/// process itself).
fn systemd_env(notify: &NotifySocket) -> Vec<(&'static str, OsString)> {
    vec![
        ("NOTIFY_SOCKET", notify.path()),
        ("WATCHDOG_USEC", OsString::from("2000000")),
    ]
}

/// Whether `status` reads "N channels, M recording, last poll HH:MM:SS UTC".
fn is_poll_status(status: &str) -> bool {
    let words: Vec<&str> = status.split(' ').collect();
    let number = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit());
    let clock = |w: &str| {
        let parts: Vec<&str> = w.split(':').collect();
        parts.len() == 3 && parts.iter().all(|p| p.len() == 2 && number(p))
    };
    matches!(
        words.as_slice(),
        [n, "channels,", m, "recording,", "last", "poll", at, "UTC"]
            if number(n) && number(m) && clock(at)
    )
}

#[test]
fn the_poll_status_pattern_accepts_the_documented_form_only() {
    assert!(is_poll_status(
        "3 channels, 1 recording, last poll 09:00:03 UTC"
    ));
    assert!(!is_poll_status(
        "3 channels, 1 recording, poll failed at 09:00:03 UTC"
    ));
    assert!(!is_poll_status("waiting for the Live Station API"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_after_the_first_poll_then_status_and_watchdog_and_stopping_on_sigterm()
{
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", true));
    let control = emu.control();
    let notify = NotifySocket::bind(move || control.counters().calls_of(Operation::ListChannels));
    let mut daemon = site.spawn(&["run"], &systemd_env(&notify));

    let ready = wait_for(START_LIMIT, "READY=1", async || notify.first("READY=1"))
        .await
        .unwrap_or_else(|_| panic!("no READY=1; stderr:\n{}", daemon.stderr()));
    assert!(
        ready.sample >= 1,
        "READY=1 arrived before the emulator served any channel list"
    );

    wait_for(POLLS, "studio-a recording", async || {
        is_recording(&emu, STUDIO_A).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("studio-a was not recorded; stderr:\n{}", daemon.stderr()));
    let status = wait_for(POLLS, "a STATUS= with the recording", async || {
        notify
            .statuses()
            .into_iter()
            .find(|s| is_poll_status(s) && s.starts_with("1 channels, 1 recording,"))
    })
    .await;
    assert!(
        status.is_ok(),
        "no STATUS= with the recording in it; statuses: {:?}",
        notify.statuses()
    );

    let watchdogs = wait_for(POLLS, "three WATCHDOG=1 after READY=1", async || {
        let after_ready: Vec<_> = notify
            .notices()
            .into_iter()
            .filter(|n| n.text == "WATCHDOG=1" && n.at >= ready.at)
            .collect();
        (after_ready.len() >= 3).then_some(after_ready)
    })
    .await
    .unwrap_or_else(|_| panic!("WATCHDOG=1 did not repeat; notices: {:?}", notify.notices()));
    let longest_gap = watchdogs
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .max()
        .unwrap_or_default();
    assert!(
        longest_gap < Duration::from_secs(2),
        "WATCHDOG=1 came {longest_gap:?} apart, past WATCHDOG_USEC (2 s)"
    );

    daemon.signal("TERM");
    let exit = daemon.wait_exit(STOP_LIMIT).await;
    assert_eq!(
        exit.ok().and_then(|s| s.code()),
        Some(0),
        "SIGTERM did not end lsrecd with 0 in time; stderr:\n{}",
        daemon.stderr()
    );
    assert!(
        notify.first("STOPPING=1").is_some(),
        "no STOPPING=1; notices: {:?}",
        notify.notices()
    );
    assert!(
        is_recording(&emu, STUDIO_A),
        "stopping lsrecd stopped the cloud recording"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_fed_within_watchdog_usec_even_when_the_poll_interval_is_longer() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A)]).await;
    let site = Site::new(&emu.base_url(), "");
    let slow = config_text(&emu.base_url(), &site.database, "")
        .replace("poll_interval = \"1s\"", "poll_interval = \"5s\"");
    site.rewrite(&slow);
    let notify = NotifySocket::bind(|| 0);
    let daemon = site.spawn(&["run"], &systemd_env(&notify));
    let ready = wait_for(START_LIMIT, "READY=1", async || notify.first("READY=1"))
        .await
        .unwrap_or_else(|_| panic!("no READY=1; stderr:\n{}", daemon.stderr()));

    // WATCHDOG_USEC is 2 s: two keep-alives are due within 4 s of readiness.
    let fed = wait_for(
        Duration::from_secs(4),
        "two WATCHDOG=1 after READY=1",
        async || {
            let after_ready = notify
                .notices()
                .into_iter()
                .filter(|n| n.text == "WATCHDOG=1" && n.at > ready.at)
                .count();
            (after_ready >= 2).then_some(())
        },
    )
    .await;
    assert!(
        fed.is_ok(),
        "fewer than two WATCHDOG=1 in the 4 s after READY=1: {:?}",
        notify.notices()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_not_sent_while_the_api_is_unreachable_and_sigterm_still_ends_the_process() {
    let site = Site::new(
        &closed_endpoint(),
        &channel_table(STUDIO_A, "studio-a", true),
    );
    let notify = NotifySocket::bind(|| 0);
    let mut daemon = site.spawn(&["run"], &systemd_env(&notify));

    let waiting = "STATUS=waiting for the Live Station API";
    wait_for(START_LIMIT, "two waiting statuses", async || {
        (notify.count(waiting) >= 2).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "lsrecd did not retry the unreachable API twice; notices: {:?}\nstderr:\n{}",
            notify.notices(),
            daemon.stderr()
        )
    });
    assert!(
        notify.first("READY=1").is_none(),
        "READY=1 was sent without a single successful poll"
    );

    daemon.signal("TERM");
    let exit = daemon.wait_exit(STOP_LIMIT).await;
    assert_eq!(
        exit.ok().and_then(|s| s.code()),
        Some(0),
        "SIGTERM before readiness did not end lsrecd with 0; stderr:\n{}",
        daemon.stderr()
    );
    assert!(notify.first("READY=1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_config_and_keeps_the_old_one_when_the_new_file_is_invalid() {
    let emu = emulator(vec![
        ChannelSpec::new(STUDIO_A),
        ChannelSpec::new(STUDIO_B).live(),
    ])
    .await;
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", false));
    let notify = NotifySocket::bind(|| 0);
    let mut daemon = site.spawn(&["run"], &systemd_env(&notify));
    wait_for(START_LIMIT, "READY=1", async || notify.first("READY=1"))
        .await
        .unwrap_or_else(|_| panic!("no READY=1; stderr:\n{}", daemon.stderr()));
    assert!(
        !is_recording(&emu, STUDIO_B),
        "studio-b was recorded before it was configured"
    );

    let both = [
        channel_table(STUDIO_A, "studio-a", false),
        channel_table(STUDIO_B, "studio-b", true),
    ]
    .concat();
    site.rewrite(&config_text(&emu.base_url(), &site.database, &both));
    daemon.signal("HUP");
    wait_for(POLLS, "studio-b recording", async || {
        is_recording(&emu, STUDIO_B).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the reloaded claim did not start studio-b; stderr:\n{}",
            daemon.stderr()
        )
    });
    assert!(daemon.stderr().contains("configuration reloaded"));

    let broken = config_text(&emu.base_url(), &site.database, &both)
        .replace("poll_interval = \"1s\"", "poll_interval = \"soon\"");
    let line = 1 + broken
        .lines()
        .position(|l| l.starts_with("poll_interval"))
        .expect("the configuration sets poll_interval");
    site.rewrite(&broken);
    daemon.signal("HUP");
    assert!(
        daemon
            .wait_stderr("configuration reload failed", POLLS)
            .await
            .is_ok(),
        "the failed reload was not logged; stderr:\n{}",
        daemon.stderr()
    );
    let stderr = daemon.stderr();
    assert!(
        stderr.contains(&format!("{}:{line}:", site.config.display())),
        "the reload error does not name the file and line; stderr:\n{stderr}"
    );
    assert!(
        daemon.exited().is_none(),
        "an invalid reload ended the daemon"
    );

    // The configuration in force still records studio-b whenever it is live.
    let control = emu.control();
    control.go_offline(STUDIO_B).expect("studio-b exists");
    control.go_live(STUDIO_B).expect("studio-b exists");
    wait_for(POLLS, "studio-b recorded again", async || {
        (control.counters().start_record_calls_on(STUDIO_B) == 2 && is_recording(&emu, STUDIO_B))
            .then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "after the failed reload studio-b was not recorded again; stderr:\n{}",
            daemon.stderr()
        )
    });
    assert!(daemon.exited().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_database_exits_non_zero_naming_the_lock() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A)]).await;
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", true));
    let notify = NotifySocket::bind(|| 0);
    let mut first = site.spawn(&["run"], &systemd_env(&notify));
    wait_for(START_LIMIT, "READY=1", async || notify.first("READY=1"))
        .await
        .unwrap_or_else(|_| panic!("no READY=1; stderr:\n{}", first.stderr()));

    let second = site.run(&["run"], START_LIMIT).await;

    assert_ne!(second.status.code(), Some(0), "the second daemon ran");
    assert!(
        second.stderr.contains("another lsrecd engine is running")
            && second.stderr.contains(".lock"),
        "the refusal does not explain the lock; stderr:\n{}",
        second.stderr
    );
    assert!(first.exited().is_none(), "the first daemon ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_exits_78_naming_file_line_and_column() {
    let site = Site::new(&closed_endpoint(), "");
    let text = config_text(&closed_endpoint(), &site.database, "")
        .replace("region = \"KR\"", "region = \"JP\"");
    site.rewrite(&text);

    let out = site.run(&["run"], START_LIMIT).await;

    assert_eq!(out.status.code(), Some(78), "stderr:\n{}", out.stderr);
    let position = format!("{}:3:10: api.region", site.config.display());
    assert!(
        out.stderr.contains(&position),
        "expected {position:?} in stderr:\n{}",
        out.stderr
    );
    assert!(
        !site.database.exists(),
        "the database was created from an invalid configuration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_channel_is_recorded_once_with_records_an_action_and_an_event_in_the_database() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", true));
    let daemon = site.spawn(&["run"], &[]);

    let records = wait_for(POLLS, "a records row", async || {
        site.rows(&format!(
            "SELECT record_id, status, should_delete_time FROM records WHERE channel_id = '{STUDIO_A}'"
        ))
        .filter(|rows| !rows.is_empty())
    })
    .await
    .unwrap_or_else(|_| panic!("no records row; stderr:\n{}", daemon.stderr()));
    assert_eq!(records.len(), 1, "one MP4 record expected: {records:?}");
    let (record_id, status, should_delete) = (&records[0][0], &records[0][1], &records[0][2]);
    assert_eq!(status, "RECORDING");
    assert!(
        should_delete.parse::<i64>().is_ok(),
        "should_delete_time is {should_delete}"
    );

    let actions = site.query(&format!(
        "SELECT operation, trigger, attempt, state, record_ids FROM actions WHERE channel_id = '{STUDIO_A}'"
    ));
    assert_eq!(
        actions,
        vec![vec![
            "startRecord".to_string(),
            "live".to_string(),
            "1".to_string(),
            "SUCCEEDED".to_string(),
            format!("[{record_id}]"),
        ]]
    );
    let events = site.query(&format!(
        "SELECT record_id FROM events WHERE kind = 'started' AND channel_id = '{STUDIO_A}'"
    ));
    assert_eq!(events, vec![vec![record_id.clone()]]);

    // A few more polls of a channel already recording: no second start.
    let polled_at = |site: &Site| -> i64 {
        site.rows("SELECT value FROM daemon_state WHERE key = 'last_poll_at'")
            .and_then(|rows| rows.into_iter().next())
            .and_then(|row| row.into_iter().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let first_poll = polled_at(&site);
    wait_for(POLLS, "two more polls", async || {
        (polled_at(&site) >= first_poll + 2_000).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("the daemon stopped polling; stderr:\n{}", daemon.stderr()));
    let counters = emu.control().counters();
    assert_eq!(counters.start_record_calls_on(STUDIO_A), 1);
    assert_eq!(counters.start_while_recording, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_debug_logs_nor_the_database_contain_the_secret_key() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    // A failed first start puts an API error through the logs and the actions table.
    emu.control().add_fault(
        FaultRule::new(Operation::StartRecord, Fault::Status5xx { status: 503 }).times(1),
    );
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", true));
    let mut daemon = site.spawn(&["-vv", "run"], &[]);
    wait_for(POLLS, "studio-a recording", async || {
        is_recording(&emu, STUDIO_A).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("studio-a was not recorded; stderr:\n{}", daemon.stderr()));
    daemon.signal("TERM");
    let exit = daemon.wait_exit(STOP_LIMIT).await;
    assert_eq!(exit.ok().and_then(|s| s.code()), Some(0));

    let stderr = daemon.stderr();
    assert!(
        stderr.contains("startRecord") || stderr.contains("503"),
        "the failed start left no trace in the debug log, so this test checks too little:\n{stderr}"
    );
    assert!(
        !stderr.contains(SECRET_KEY),
        "the secret key is in the logs"
    );
    assert!(!daemon.stdout().contains(SECRET_KEY));
    for entry in std::fs::read_dir(site.dir.path()).expect("the site directory") {
        let path = entry.expect("a directory entry").path();
        if path == site.config {
            continue;
        }
        let bytes = std::fs::read(&path).expect("a readable file");
        assert!(
            !bytes
                .windows(SECRET_KEY.len())
                .any(|w| w == SECRET_KEY.as_bytes()),
            "the secret key is in {}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_start_callback_starts_the_recording_without_waiting_for_the_poll_and_metrics_show_it()
 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A)]).await;
    let (port, callback_port) = (free_port(), free_port());
    let token = "callback-token-0123456789";
    let extra = format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[callback]\nlisten = \"127.0.0.1:{callback_port}\"\ntoken = \"{token}\"\n\n"
    );
    let site = Site::new(&emu.base_url(), "");
    // A poll every 30 s: only the callback can make the start quick.
    let text = config_text(
        &emu.base_url(),
        &site.database,
        &channel_table(STUDIO_A, "studio-a", true),
    )
    .replace("poll_interval = \"1s\"", "poll_interval = \"30s\"")
    .replace("[daemon]", &format!("{extra}[daemon]"));
    site.rewrite(&text);
    let daemon = site.spawn(&["run"], &[]);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(
        Duration::from_secs(15),
        "/readyz to answer 200",
        async || {
            let answer = http.get(format!("{base}/readyz")).send().await.ok()?;
            (answer.status() == 200).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "/readyz never said ready ({e}); stderr:\n{}",
            daemon.stderr()
        )
    });

    emu.control().go_live(STUDIO_A).unwrap();
    let answer = http
        .post(format!("http://127.0.0.1:{callback_port}/callback/{token}"))
        .json(&serde_json::json!({
            "id": 1, "logLevel": "INFO", "channelId": STUDIO_A,
            "event": "PUBLISH_START", "timestamp": 1_700_000_000_000_i64
        }))
        .send()
        .await
        .expect("callback answered");
    assert_eq!(answer.status(), 202);
    assert!(
        wait_for(Duration::from_secs(5), "studio-a recording", async || {
            is_recording(&emu, STUDIO_A).then_some(())
        })
        .await
        .is_ok(),
        "the hint did not start the recording long before the 30 s poll; stderr:\n{}",
        daemon.stderr()
    );

    // The start is counted once its outcome is committed, a moment after the emulator saw it.
    let expected = [
        "lsrecd_api_requests_total{operation=\"start_record\",outcome=\"ok\"} 1",
        "lsrecd_recordings_started_total{trigger=\"live\"} 1",
    ];
    let mut metrics = String::new();
    // A timeout is reported by the assertions below, with the last text read.
    let _ = wait_for(
        Duration::from_secs(5),
        "the start in /metrics",
        async || {
            metrics = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            expected
                .iter()
                .all(|line| metrics.contains(line))
                .then_some(())
        },
    )
    .await;
    for line in expected {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
    assert!(
        !metrics.contains(token),
        "the token never appears in metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_stuck_on_refused_keys_recovers_when_sighup_brings_the_right_ones() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    let channels = channel_table(STUDIO_A, "studio-a", true);
    let site = Site::new(&emu.base_url(), &channels);
    let good = config_text(&emu.base_url(), &site.database, &channels);
    site.rewrite(&good.replace(SECRET_KEY, "a-rotated-away-secret"));
    let notify = NotifySocket::bind(|| 0);
    let daemon = site.spawn(&["run"], &systemd_env(&notify));
    assert!(
        wait_for(START_LIMIT, "a waiting status", async || (notify
            .count("STATUS=waiting for the Live Station API")
            >= 1)
            .then_some(()))
        .await
        .is_ok(),
        "no waiting status; stderr:\n{}",
        daemon.stderr()
    );
    assert!(notify.first("READY=1").is_none(), "ready with refused keys");

    site.rewrite(&good);
    daemon.signal("HUP");
    wait_for(START_LIMIT, "READY=1 after the reload", async || {
        notify.first("READY=1")
    })
    .await
    .unwrap_or_else(|_| panic!("no READY=1 after the reload; stderr:\n{}", daemon.stderr()));
    assert!(
        wait_for(POLLS, "studio-a recording", async || is_recording(
            &emu, STUDIO_A
        )
        .then_some(()))
        .await
        .is_ok(),
        "not recording after the keys were fixed; stderr:\n{}",
        daemon.stderr()
    );
    assert!(!daemon.stderr().contains(SECRET_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_while_a_one_shot_command_holds_the_lock_waits_for_it() {
    use lsrecd::engine::lock::{EngineLock, Holder};
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A)]).await;
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", true));
    // As `lsrecd start` holds it while it acts with no daemon running.
    let command = EngineLock::try_acquire(&site.database, Holder::Command).unwrap();
    let notify = NotifySocket::bind(|| 0);
    let mut daemon = site.spawn(&["run"], &systemd_env(&notify));
    assert!(
        daemon
            .wait_stderr("waiting for a one-shot lsrecd start/stop", START_LIMIT)
            .await
            .is_ok(),
        "stderr:\n{}",
        daemon.stderr()
    );
    assert!(daemon.exited().is_none(), "it waits rather than exiting");
    assert!(notify.first("READY=1").is_none());
    drop(command);
    wait_for(START_LIMIT, "READY=1 once the lock is free", async || {
        notify.first("READY=1")
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no READY=1 once the lock was free; stderr:\n{}",
            daemon.stderr()
        )
    });
}

/// The configuration of `site` with the key lines taken out, so keys must come from elsewhere.
fn without_inline_keys(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("access_key") && !l.starts_with("secret_key"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_environment_leave_the_process_environment_and_still_sign_every_call() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    let channels = channel_table(STUDIO_A, "studio-a", true);
    let site = Site::new(&emu.base_url(), &channels);
    site.rewrite(&without_inline_keys(&config_text(
        &emu.base_url(),
        &site.database,
        &channels,
    )));
    let notify = NotifySocket::bind(|| 0);
    let mut env = systemd_env(&notify);
    env.push(("LSRECD_ACCESS_KEY", OsString::from(ACCESS_KEY)));
    env.push(("LSRECD_SECRET_KEY", OsString::from(SECRET_KEY)));
    let daemon = site.spawn(&["run"], &env);

    // Ready means the channel list was read with both keys.
    wait_for(START_LIMIT, "READY=1", async || notify.first("READY=1"))
        .await
        .unwrap_or_else(|_| panic!("no READY=1; stderr:\n{}", daemon.stderr()));
    wait_for(POLLS, "studio-a recording", async || {
        is_recording(&emu, STUDIO_A).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("studio-a was not recorded; stderr:\n{}", daemon.stderr()));

    // What `ps e` and anything else reading /proc shows of the process systemd started.
    let environ = std::fs::read(format!("/proc/{}/environ", daemon.pid()))
        .expect("the daemon's /proc/PID/environ");
    let environ = String::from_utf8_lossy(&environ);
    for needle in [
        "LSRECD_SECRET_KEY",
        "LSRECD_ACCESS_KEY",
        SECRET_KEY,
        ACCESS_KEY,
    ] {
        assert!(
            !environ.contains(needle),
            "{needle} is in /proc/PID/environ"
        );
    }
    assert!(environ.contains("NOTIFY_SOCKET="), "the rest is kept");
    assert!(!daemon.stderr().contains(SECRET_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_is_created_0640_outside_systemd_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A)]).await;
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", true));
    // As started from a shell with the loosest umask; `exec` keeps the process the same.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_lsrecd"))
        .arg("--config")
        .arg(&site.config)
        .arg("run");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LSRECD_") || name == "NOTIFY_SOCKET" {
            command.env_remove(name);
        }
    }
    let notify = NotifySocket::bind(|| 0);
    command.envs(systemd_env(&notify));
    let daemon = support::process::Process::start("lsrecd", command);
    wait_for(START_LIMIT, "READY=1", async || notify.first("READY=1"))
        .await
        .unwrap_or_else(|_| panic!("no READY=1; stderr:\n{}", daemon.stderr()));

    let mode = std::fs::metadata(&site.database)
        .expect("the database exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640, "database mode {mode:o}");
    for suffix in ["-wal", "-shm"] {
        let mut path = site.database.clone().into_os_string();
        path.push(suffix);
        if let Ok(meta) = std::fs::metadata(&path) {
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode & 0o027, 0, "{suffix} mode {mode:o}");
        }
    }
}

/// A site whose daemon polls every 30 s (so only callbacks can make it act quickly) and serves
/// metrics and callbacks (with `token`) on free ports; `channels` are its `[[channel]]` tables.
struct CallbackSite {
    site: Site,
    metrics: String,
    callback: String,
}

impl CallbackSite {
    fn new(endpoint: &str, token: &str, channels: &str) -> CallbackSite {
        let site = Site::new(endpoint, "");
        let (port, callback_port) = (free_port(), free_port());
        let site = CallbackSite {
            site,
            metrics: format!("http://127.0.0.1:{port}"),
            callback: format!("http://127.0.0.1:{callback_port}"),
        };
        site.configure(endpoint, token, channels);
        site
    }

    /// Rewrites the configuration with `token` and `channels` (same ports).
    fn configure(&self, endpoint: &str, token: &str, channels: &str) {
        let listeners = format!(
            "[metrics]\nlisten = \"{}\"\n\n[callback]\nlisten = \"{}\"\ntoken = \"{token}\"\n\n",
            self.metrics.trim_start_matches("http://"),
            self.callback.trim_start_matches("http://"),
        );
        let text = config_text(endpoint, &self.site.database, channels)
            .replace("poll_interval = \"1s\"", "poll_interval = \"30s\"")
            .replace("[daemon]", &format!("{listeners}[daemon]"));
        self.site.rewrite(&text);
    }

    /// Waits until `/readyz` answers 200.
    async fn wait_ready(&self, daemon: &support::process::Process) {
        let http = reqwest::Client::new();
        let url = format!("{}/readyz", self.metrics);
        wait_for(START_LIMIT, "/readyz 200", async || {
            let answer = http.get(&url).send().await.ok()?;
            (answer.status() == 200).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    }

    /// POSTs a PUBLISH_START callback for `channel` with `token`; the HTTP status.
    async fn callback(&self, http: &reqwest::Client, token: &str, channel: &str) -> u16 {
        http.post(format!("{}/callback/{token}", self.callback))
            .json(&serde_json::json!({ "channelId": channel, "event": "PUBLISH_START" }))
            .send()
            .await
            .expect("the callback listener answers")
            .status()
            .as_u16()
    }

    /// The value of one sample of `/metrics`, e.g. `lsrecd_callbacks_total{result="accepted"}`.
    async fn metric(&self, http: &reqwest::Client, series: &str) -> f64 {
        let text = http
            .get(format!("{}/metrics", self.metrics))
            .send()
            .await
            .expect("/metrics answers")
            .text()
            .await
            .expect("a body");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .expect("a number")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_replaces_the_callback_token_and_the_channels_callbacks_may_name() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A), ChannelSpec::new(STUDIO_B)]).await;
    let (old, new) = (
        "old-callback-token-0123456789",
        "new-callback-token-9876543210",
    );
    let only_a = channel_table(STUDIO_A, "studio-a", false);
    let site = CallbackSite::new(&emu.base_url(), old, &only_a);
    let mut daemon = site.site.spawn(&["run"], &[]);
    site.wait_ready(&daemon).await;
    let http = reqwest::Client::new();

    let before = (
        site.callback(&http, old, STUDIO_A).await,
        site.callback(&http, old, STUDIO_B).await,
    );
    let both = [only_a, channel_table(STUDIO_B, "studio-b", false)].concat();
    site.configure(&emu.base_url(), new, &both);
    daemon.signal("HUP");
    daemon
        .wait_stderr("configuration reloaded", POLLS)
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr()));
    let after = (
        site.callback(&http, old, STUDIO_A).await,
        site.callback(&http, new, STUDIO_B).await,
    );

    assert_eq!(before, (202, 202));
    assert_eq!(after, (404, 202), "the old token must stop working at once");
    let count = |result: &'static str| {
        let site = &site;
        let http = &http;
        async move {
            site.metric(
                http,
                &format!("lsrecd_callbacks_total{{result=\"{result}\"}}"),
            )
            .await
        }
    };
    assert_eq!(
        count("accepted").await,
        2.0,
        "studio-a before, studio-b after"
    );
    assert_eq!(count("unknown_channel").await, 1.0, "studio-b before");
    assert_eq!(count("bad_token").await, 1.0, "the old token after");
    let stderr = daemon.stderr();
    assert!(stderr.contains("callback token replaced"), "{stderr}");
    assert!(
        !stderr.contains(old) && !stderr.contains(new),
        "a token is in the logs"
    );

    // With both listeners open, a reload behind it and a connection idle, SIGTERM still ends
    // the daemon in time.
    let _idle = tokio::net::TcpStream::connect(site.callback.trim_start_matches("http://"))
        .await
        .expect("an idle connection");
    daemon.signal("TERM");
    let exit = daemon.wait_exit(STOP_LIMIT).await;
    assert_eq!(
        exit.ok().and_then(|s| s.code()),
        Some(0),
        "SIGTERM did not end lsrecd with 0 in time; stderr:\n{}",
        daemon.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_callbacks_for_unknown_channels_leaves_the_api_call_rate_at_the_idle_baseline() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A)]).await;
    let token = "flood-callback-token-0123456789";
    let site = CallbackSite::new(
        &emu.base_url(),
        token,
        &channel_table(STUDIO_A, "studio-a", true),
    );
    let mut daemon = site.site.spawn(&["run"], &[]);
    site.wait_ready(&daemon).await;
    let http = reqwest::Client::new();
    let requests = || emu.control().counters().requests;
    // Both windows are measured the same way: what the API saw over a fixed stretch of time.
    let window = Duration::from_secs(2);

    let idle_start = requests();
    tokio::time::sleep(window).await;
    let baseline = requests() - idle_start;

    let flood_start = requests();
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    for i in 0..300 {
        let channel = format!("ls-20260101000000-N{i:05}");
        statuses.push(site.callback(&http, token, &channel).await);
    }
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
    let during_flood = requests() - flood_start;

    let accepted = statuses.iter().filter(|&&s| s == 202).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(accepted + limited, 300, "{statuses:?}");
    assert!(accepted >= 40, "only {accepted} passed the rate limit");
    // One poll may fall into either window (the interval is 30 s, so at most one).
    assert!(
        during_flood <= baseline + 1,
        "{during_flood} API requests during the flood, {baseline} in the same time idle"
    );
    let unknown = site
        .metric(&http, r#"lsrecd_callbacks_total{result="unknown_channel"}"#)
        .await;
    assert_eq!(unknown, accepted as f64);
    assert!(daemon.exited().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_to_the_callback_listener_do_not_stop_a_callback_from_starting_a_recording()
 {
    const IDLE: usize = 2000;
    // What the unit's LimitNOFILE gives the daemon (it inherits this process's limit), which
    // also covers this process's end of the idle connections.
    support::raise_fd_limit(16384);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A)]).await;
    let token = "slowloris-callback-token-0123";
    let site = CallbackSite::new(
        &emu.base_url(),
        token,
        &channel_table(STUDIO_A, "studio-a", true),
    );
    let daemon = site.site.spawn(&["run"], &[]);
    site.wait_ready(&daemon).await;
    let callback_addr = site.callback.trim_start_matches("http://").to_string();
    let started = std::time::Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(
            tokio::net::TcpStream::connect(&callback_addr)
                .await
                .expect("an idle connection"),
        );
    }

    emu.control().go_live(STUDIO_A).expect("studio-a exists");
    let http = reqwest::Client::new();
    let status = site.callback(&http, token, STUDIO_A).await;
    let recording = wait_for(Duration::from_secs(5), "studio-a recording", async || {
        is_recording(&emu, STUDIO_A).then_some(())
    })
    .await;
    let accepted = site
        .metric(&http, r#"lsrecd_callbacks_total{result="accepted"}"#)
        .await;

    assert_eq!(status, 202);
    assert!(
        recording.is_ok(),
        "the callback did not start the recording long before the 30 s poll; stderr:\n{}",
        daemon.stderr()
    );
    assert_eq!(accepted, 1.0, "/metrics answers and counted the callback");
    assert_eq!(emu.control().counters().start_record_calls_on(STUDIO_A), 1);
    // They were all held while the callback went through (the header timeout is 10 s).
    let held_for = started.elapsed();
    assert!(
        held_for < Duration::from_secs(10),
        "the machine took {held_for:?}; the idle connections may have timed out meanwhile"
    );
    let mut buf = [0u8; 1];
    let open = idle
        .iter()
        .filter(|c| matches!(c.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock))
        .count();
    assert_eq!(open, IDLE, "the daemon closed idle connections early");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_hundred_idle_connections_keep_neither_a_callback_nor_metrics_out_of_a_daemon_with_1024_descriptors()
 {
    const IDLE: usize = 1500;
    const TOKEN: &str = "callback-token-0123456789";
    // This process holds the idle connections; the daemon gets what a shell usually gives.
    support::raise_fd_limit(IDLE as u64 + 512);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A)]).await;
    let site = CallbackSite::new(
        &emu.base_url(),
        TOKEN,
        &channel_table(STUDIO_A, "studio-a", true),
    );
    let run = site.site.command(&["run"], &[]);
    let mut limited = Command::new("sh");
    limited
        .args(["-c", "ulimit -n 1024 && exec \"$@\"", "sh"])
        .arg(run.get_program())
        .args(run.get_args());
    for (name, value) in run.get_envs() {
        match value {
            Some(value) => limited.env(name, value),
            None => limited.env_remove(name),
        };
    }
    let daemon = support::process::Process::start("lsrecd run (1,024 descriptors)", limited);
    site.wait_ready(&daemon).await;
    // Serving: `sh` has set the limit and become the daemon.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid()))
        .expect("the daemon's limits");
    assert!(
        limits.lines().any(|l| l.starts_with("Max open files")
            && l.split_whitespace().nth(3) == Some("1024")),
        "{limits}"
    );

    let opened = std::time::Instant::now();
    let callback_addr = site.callback.trim_start_matches("http://").to_owned();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(
            tokio::net::TcpStream::connect(&callback_addr)
                .await
                .expect("an idle connection"),
        );
    }
    emu.control().go_live(STUDIO_A).unwrap();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    assert_eq!(site.callback(&http, TOKEN, STUDIO_A).await, 202);
    assert_eq!(
        site.metric(&http, "lsrecd_callbacks_total{result=\"accepted\"}")
            .await,
        1.0,
        "/metrics answers"
    );
    wait_for(Duration::from_secs(5), "studio-a recording", async || {
        is_recording(&emu, STUDIO_A).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e} long before the 30 s poll; stderr:\n{}",
            daemon.stderr()
        )
    });
    // The point is that they were all opened while the callback went through: within the
    // daemon's header timeout (10 s), none has timed out yet.
    let held_for = opened.elapsed();
    assert!(
        held_for < Duration::from_secs(10),
        "the machine took {held_for:?}; the idle connections may have timed out meanwhile"
    );
    drop(idle);
}
