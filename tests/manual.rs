//! `lsrecd start CHANNEL` / `lsrecd stop CHANNEL` as an operator runs them: alone (the command
//! acts itself) and beside a running daemon (the daemon acts), against an in-process emulator,
//! with the database read through `sqlite3 -readonly`.

mod support;

use std::time::Duration;

use lsrecd::emulator::ChannelSpec;
use support::emulator::{emulator, is_recording};
use support::notify::NotifySocket;
use support::site::{Site, channel_table, closed_endpoint};
use support::wait_for;

const STUDIO_A: &str = "ls-20260101000000-TestA";

/// A one-shot command on a debug build, with room for a busy machine.
const COMMAND_LIMIT: Duration = Duration::from_secs(15);
/// What "exits quickly" means for a command that only writes a claim.
const QUICK: Duration = Duration::from_secs(5);
/// Two poll intervals (1 s in the test configuration) and slack for a busy machine.
const TWO_POLLS: Duration = Duration::from_secs(5);

fn claims(site: &Site) -> Vec<Vec<String>> {
    site.query(&format!(
        "SELECT ended_at IS NULL, end_reason FROM manual_claims WHERE channel_id = '{STUDIO_A}' ORDER BY id"
    ))
}

fn actions(site: &Site) -> Vec<Vec<String>> {
    site.query(&format!(
        "SELECT operation, trigger, state FROM actions WHERE channel_id = '{STUDIO_A}' ORDER BY id"
    ))
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_start_and_stop_act_at_once_through_the_journal() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", false));

    let start = site.run(&["start", "studio-a"], COMMAND_LIMIT).await;

    assert_eq!(start.status.code(), Some(0), "stderr:\n{}", start.stderr);
    assert!(
        start.stdout.contains("recording of studio-a started"),
        "stdout:\n{}",
        start.stdout
    );
    assert!(
        is_recording(&emu, STUDIO_A),
        "the emulator is not recording"
    );
    assert_eq!(claims(&site), vec![row(&["1", "NULL"])]);
    assert_eq!(
        actions(&site),
        vec![row(&["startRecord", "manual", "SUCCEEDED"])]
    );

    let stop = site.run(&["stop", "studio-a"], COMMAND_LIMIT).await;

    assert_eq!(stop.status.code(), Some(0), "stderr:\n{}", stop.stderr);
    assert!(
        stop.stdout.contains("recording of studio-a stopped"),
        "stdout:\n{}",
        stop.stdout
    );
    assert!(!is_recording(&emu, STUDIO_A), "the recording still runs");
    assert_eq!(claims(&site), vec![row(&["0", "lsrecd stop"])]);
    let journal = actions(&site);
    assert_eq!(journal.len(), 2, "{journal:?}");
    assert_eq!(
        (&*journal[1][0], &*journal[1][2]),
        ("stopRecord", "SUCCEEDED")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_daemon_running_start_and_stop_return_at_once_and_the_daemon_acts_within_two_polls()
{
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", false));
    let notify = NotifySocket::bind(|| 0);
    let daemon = site.spawn(&["run"], &[("NOTIFY_SOCKET", notify.path())]);
    wait_for(COMMAND_LIMIT, "READY=1", async || notify.first("READY=1"))
        .await
        .unwrap_or_else(|_| panic!("no READY=1; stderr:\n{}", daemon.stderr()));

    let start = site.run(&["start", "studio-a"], COMMAND_LIMIT).await;

    assert_eq!(start.status.code(), Some(0), "stderr:\n{}", start.stderr);
    assert!(start.elapsed < QUICK, "start took {:?}", start.elapsed);
    assert!(
        start.stdout.contains("told the running lsrecd daemon (pid"),
        "stdout:\n{}",
        start.stdout
    );
    wait_for(TWO_POLLS, "studio-a recording", async || {
        is_recording(&emu, STUDIO_A).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the daemon did not start studio-a; stderr:\n{}",
            daemon.stderr()
        )
    });

    let stop = site.run(&["stop", "studio-a"], COMMAND_LIMIT).await;

    assert_eq!(stop.status.code(), Some(0), "stderr:\n{}", stop.stderr);
    assert!(stop.elapsed < QUICK, "stop took {:?}", stop.elapsed);
    assert!(
        stop.stdout.contains("it will stop the recording now"),
        "stdout:\n{}",
        stop.stdout
    );
    wait_for(TWO_POLLS, "studio-a no longer recording", async || {
        (!is_recording(&emu, STUDIO_A)).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the daemon did not stop studio-a; stderr:\n{}",
            daemon.stderr()
        )
    });
    assert_eq!(claims(&site), vec![row(&["0", "lsrecd stop"])]);
    let journal = wait_for(TWO_POLLS, "both actions settled", async || {
        let rows = actions(&site);
        (rows.len() == 2 && rows.iter().all(|r| r[2] != "PENDING")).then_some(rows)
    })
    .await
    .unwrap_or_else(|_| panic!("the journal did not settle: {:?}", actions(&site)));
    assert_eq!(journal[0], row(&["startRecord", "manual", "SUCCEEDED"]));
    assert_eq!(
        (&*journal[1][0], &*journal[1][2]),
        ("stopRecord", "SUCCEEDED")
    );
}

/// With a poll an hour apart, the daemon can only have acted on the signal `lsrecd start` sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_start_beside_a_daemon_is_acted_on_at_once_not_at_the_next_poll() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    let site = Site::new(&emu.base_url(), &channel_table(STUDIO_A, "studio-a", false));
    let text = std::fs::read_to_string(&site.config).expect("the configuration");
    site.rewrite(&text.replace("poll_interval = \"1s\"", "poll_interval = \"1h\""));
    let notify = NotifySocket::bind(|| 0);
    let daemon = site.spawn(&["run"], &[("NOTIFY_SOCKET", notify.path())]);
    wait_for(COMMAND_LIMIT, "READY=1", async || notify.first("READY=1"))
        .await
        .unwrap_or_else(|_| panic!("no READY=1; stderr:\n{}", daemon.stderr()));

    let start = site.run(&["start", "studio-a"], COMMAND_LIMIT).await;

    assert_eq!(start.status.code(), Some(0), "stderr:\n{}", start.stderr);
    assert!(
        start.stdout.contains("it will start the recording now"),
        "stdout:\n{}",
        start.stdout
    );
    wait_for(COMMAND_LIMIT, "studio-a recording", async || {
        is_recording(&emu, STUDIO_A).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the daemon did not act on the signal; stderr:\n{}",
            daemon.stderr()
        )
    });
    assert_eq!(
        emu.control().counters().start_record_calls.get(STUDIO_A),
        Some(&1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_channel_exits_2_naming_it_and_the_known_ones() {
    let site = Site::new(
        &closed_endpoint(),
        &channel_table(STUDIO_A, "studio-a", false),
    );

    let out = site.run(&["start", "studio-z"], COMMAND_LIMIT).await;

    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("\"studio-z\"") && out.stderr.contains("known: studio-a"),
        "the message does not help: {}",
        out.stderr
    );
    let saved = site
        .rows("SELECT count(*) FROM manual_claims")
        .unwrap_or_default();
    assert!(
        saved.is_empty() || saved == vec![row(&["0"])],
        "a claim was saved for an unknown channel: {saved:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_api_unreachable_and_no_daemon_start_exits_69_and_keeps_the_claim() {
    let site = Site::new(
        &closed_endpoint(),
        &channel_table(STUDIO_A, "studio-a", false),
    );

    let out = site.run(&["start", "studio-a"], COMMAND_LIMIT).await;

    assert_eq!(out.status.code(), Some(69), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("could not be reached") && out.stderr.contains("claim is saved"),
        "stderr:\n{}",
        out.stderr
    );
    assert_eq!(claims(&site), vec![row(&["1", "NULL"])]);
    assert!(
        actions(&site).is_empty(),
        "a call was journaled: {:?}",
        actions(&site)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ha_start_only_records_the_claim_for_this_hosts_daemon() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    let channels = format!(
        "[ha]\netcd = [\"{}\"]\ninstance = \"a\"\n\n{}",
        closed_endpoint(),
        channel_table(STUDIO_A, "studio-a", false)
    );
    let site = Site::new(&emu.base_url(), &channels);

    let start = site.run(&["start", "studio-a"], COMMAND_LIMIT).await;

    assert_eq!(start.status.code(), Some(0), "stderr:\n{}", start.stderr);
    assert!(
        start.stdout.contains("while it is the leader"),
        "stdout:\n{}",
        start.stdout
    );
    assert!(start.elapsed < QUICK, "took {:?}", start.elapsed);
    assert_eq!(claims(&site), vec![row(&["1", "NULL"])]);
    assert!(actions(&site).is_empty(), "the command acted by itself");
    assert!(!is_recording(&emu, STUDIO_A));
}
