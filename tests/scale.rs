//! `lsrecd run` with 10,000 channels: a PUBLISH_START callback for a channel late in the
//! listing starts its recording at once, with a read of that one channel, not after reading the
//! listing down to its page (the engine's hint path, ARCHITECTURE.md §10).
//!
//! The order of events is read from the emulator's call log; nothing here is timed: how fast the
//! start is, is the benchmark's business (`cargo bench --bench engine`).

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use lsrecd::emulator::{Call, Operation};
use support::emulator::{CallLogReader, emulator};
use support::site::{ACCESS_KEY, SECRET_KEY, Site, free_port};
use support::wait_for;

const CHANNELS: usize = 10_000;
/// Channels per page of the channel list, as the daemon reads it.
const PAGE_SIZE: usize = 100;
const TOKEN: &str = "scale-callback-token-0123456789";

/// The configuration: every channel `record_when_live`, a poll a minute, the default
/// `api.max_rps`, callbacks on.
fn config(endpoint: &str, site: &Site, callback_port: u16, ids: &[String]) -> String {
    let mut text = format!(
        "[api]\nendpoint = \"{endpoint}\"\nregion = \"KR\"\naccess_key = \"{ACCESS_KEY}\"\n\
         secret_key = \"{SECRET_KEY}\"\ntimeout = \"3s\"\n\n\
         [daemon]\ndatabase = \"{}\"\ntimezone = \"UTC\"\npoll_interval = \"60s\"\n\n\
         [callback]\nlisten = \"127.0.0.1:{callback_port}\"\ntoken = \"{TOKEN}\"\n\n",
        site.database.display()
    );
    for id in ids {
        let _ = writeln!(
            text,
            "[[channel]]\nid = \"{id}\"\nrecord_when_live = true\n"
        );
    }
    text
}

/// The position of the first call after `from` (an index into `calls`) that `is` picks.
fn position(calls: &[Call], from: usize, is: impl Fn(&Call) -> bool) -> Option<usize> {
    calls.iter().skip(from).position(is).map(|i| i + from)
}

/// The calls in `calls[from..to]`, one line each, for failure messages.
fn show(calls: &[Call], from: usize, to: usize) -> String {
    calls[from..to.min(calls.len())]
        .iter()
        .take(40)
        .map(|c| {
            format!(
                "#{} {:?} page {:?} {:?} -> {:?}",
                c.seq, c.operation, c.page, c.channel_id, c.status
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_starts_a_channel_late_in_10000_before_the_listing_reaches_it_again() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = emulator(Vec::new()).await;
    let control = emu.control();
    let ids = control.add_channels(CHANNELS, "scale");
    assert_eq!(ids.len(), CHANNELS);
    // On the last page of the listing.
    let target = ids[CHANNELS - 3].clone();
    let target_page = ((CHANNELS - 3) / PAGE_SIZE) as u32 + 1;

    let site = Site::new(&emu.base_url(), "");
    let callback_port = free_port();
    site.rewrite(&config(&emu.base_url(), &site, callback_port, &ids));
    let mut daemon = site.spawn(&["run"], &[]);
    let mut log = CallLogReader::default();

    // Past its start-up: the reconciliation has read the whole listing and the engine's loop,
    // which callbacks reach, runs. A debug build on a busy machine takes a while with 10,000
    // channels.
    daemon
        .wait_stderr("lsrecd is running", Duration::from_secs(240))
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr_tail(20)));

    // During a listing (a tick's): the hint is served between two of its pages, and what it
    // starts must hold through the rest of that tick, whose decisions are made as of its start.
    // A listing of 10,000 channels takes four seconds at 50 requests a second.
    // The first tick's listing may have begun before `watch_from`; the next begins one poll
    // interval (60 s) after it, or later when the first tick takes longer: wait for more than
    // one interval.
    log.read(&control);
    let watch_from = log.calls.len();
    wait_for(
        Duration::from_secs(150),
        "a listing beginning",
        async || {
            log.read(&control);
            log.calls[watch_from..]
                .iter()
                .any(|c| c.is(Operation::ListChannels, None) && c.page == Some(1))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr_tail(20)));

    // The stream starts and Live Station calls back.
    control.go_live(&target).expect("a channel of the emulator");
    log.read(&control);
    let callback_at = log.calls.len();
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{callback_port}/callback/{TOKEN}"))
        .json(&serde_json::json!({
            "id": 1, "logLevel": "INFO", "channelId": target,
            "event": "PUBLISH_START", "timestamp": support::signed::now_ms()
        }))
        .send()
        .await
        .expect("the callback is answered");
    assert_eq!(answer.status(), 202);

    let started = wait_for(
        Duration::from_secs(60),
        "startRecord on the channel",
        async || {
            log.read(&control);
            position(&log.calls, callback_at, |c| {
                c.is(Operation::StartRecord, Some(&target))
            })
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}; calls after the callback:\n  {}\nstderr:\n{}",
            show(&log.calls, callback_at, usize::MAX),
            daemon.stderr_tail(20)
        )
    });
    let calls = &log.calls;
    let read = position(calls, callback_at, |c| {
        c.is(Operation::GetChannel, Some(&target))
    });
    assert!(
        read.is_some_and(|r| r < started),
        "startRecord without a getChannel of the channel before it, after the callback:\n  {}",
        show(calls, callback_at, started + 1)
    );
    // At most the page that was in flight when the callback came: the hint is served at once
    // (between two pages of a running listing), not after a listing down to the channel's page.
    let listed_before: Vec<&Call> = calls[callback_at..started]
        .iter()
        .filter(|c| c.is(Operation::ListChannels, None))
        .collect();
    assert!(
        listed_before.len() <= 1 && listed_before.iter().all(|c| c.page != Some(target_page)),
        "{} channel-list calls between the callback and startRecord (page {target_page} holds \
         the channel):\n  {}",
        listed_before.len(),
        show(calls, callback_at, started + 1)
    );

    // The listing reads the channel's page again, recording now; then no call can come any
    // more: the count of starts is final.
    let start_seq = calls[started].seq;
    let relisted = wait_for(
        Duration::from_secs(240),
        "the channel's page listed after the start",
        async || {
            log.read(&control);
            log.of(Operation::ListChannels, None)
                .any(|c| c.seq > start_seq && c.page == Some(target_page) && c.status.is_some())
                .then_some(())
        },
    )
    .await;
    if let Err(e) = relisted {
        panic!("{e}; stderr:\n{}", daemon.stderr_tail(20));
    }
    // The tick after: its listing begins once the full pass of the tick of the start is done.
    let next_listing = wait_for(
        Duration::from_secs(240),
        "the listing of the next tick",
        async || {
            log.read(&control);
            log.of(Operation::ListChannels, None)
                .any(|c| c.seq > start_seq && c.page == Some(1) && c.status.is_some())
                .then_some(())
        },
    )
    .await;
    if let Err(e) = next_listing {
        panic!("{e}; stderr:\n{}", daemon.stderr_tail(20));
    }
    let status = daemon
        .terminate(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", daemon.stderr_tail(20)));
    assert!(status.success(), "lsrecd run exited with {status}");
    log.read(&control);
    assert_eq!(
        log.of(Operation::StartRecord, Some(&target)).count(),
        1,
        "startRecord calls on the channel"
    );
    assert_eq!(log.of(Operation::StartRecord, None).count(), 1);
    assert_eq!(
        log.of(Operation::StopRecord, Some(&target)).count(),
        0,
        "the recording the callback started was stopped while the channel was live"
    );
    assert_eq!(control.counters().start_while_recording, 0);
    emu.shutdown().await;
}
