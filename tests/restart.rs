//! A restart of the daemon (what `systemctl restart lsrecd` and a package upgrade do) in the middle
//! of a recording: the recording keeps running in Live Station, the next daemon does not start it
//! again, and it still ends it when the first daemon would have.

mod support;

use std::time::Duration;

use lsrecd::emulator::{ChannelSpec, Operation};
use support::emulator::{emulator, is_recording, list_calls};
use support::site::Site;
use support::wait_for;

const STUDIO_A: &str = "ls-20260101000000-TestA";
/// The channel's `max_duration`: the recording must end this long after it began, whichever
/// daemon is running then.
const CAP_MS: i64 = 8_000;
/// Long enough for a debug build to start, migrate and poll on a busy machine.
const START_LIMIT: Duration = Duration::from_secs(15);
/// The unit's `TimeoutStopSec` is 15 s; lsrecd's own budget is 10 s.
const STOP_LIMIT: Duration = Duration::from_secs(10);

fn number(site: &Site, sql: &str) -> i64 {
    let rows = site.query(sql);
    rows.first()
        .and_then(|row| row.first())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{sql} gave {rows:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_recording_neither_stops_nor_restarts_it_and_the_cap_still_applies() {
    let emu = emulator(vec![ChannelSpec::new(STUDIO_A).live()]).await;
    let channel = format!(
        "[[channel]]\nid = \"{STUDIO_A}\"\nlabel = \"studio-a\"\nrecord_when_live = true\n\
         max_duration = \"{}s\"\n",
        CAP_MS / 1000
    );
    let site = Site::new(&emu.base_url(), &channel);
    let counters = || emu.control().counters();

    let mut first = site.spawn(&["run"], &[]);
    wait_for(START_LIMIT, "studio-a recording", async || {
        is_recording(&emu, STUDIO_A).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("studio-a was not recorded; stderr:\n{}", first.stderr()));
    first.signal("TERM");
    let exit = first.wait_exit(STOP_LIMIT).await;
    assert_eq!(
        exit.ok().and_then(|s| s.code()),
        Some(0),
        "SIGTERM did not end lsrecd with 0; stderr:\n{}",
        first.stderr()
    );
    assert!(
        is_recording(&emu, STUDIO_A),
        "stopping lsrecd stopped the recording"
    );
    assert_eq!(counters().calls_of(Operation::StopRecord), 0);

    let polls_before = list_calls(&emu);
    let second = site.spawn(&["run"], &[]);
    // The new daemon has looked at the channels a few times and found the recording running.
    wait_for(
        START_LIMIT,
        "three polls by the second daemon",
        async || (list_calls(&emu) >= polls_before + 3).then_some(()),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the second daemon did not poll; stderr:\n{}",
            second.stderr()
        )
    });
    assert_eq!(
        counters().start_record_calls_on(STUDIO_A),
        1,
        "the restarted daemon started the recording again"
    );
    assert_eq!(counters().start_while_recording, 0);

    // The cap counts from when the first daemon started the recording.
    wait_for(START_LIMIT, "the stop at max_duration", async || {
        (counters().calls_of(Operation::StopRecord) == 1).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the second daemon did not end the recording at max_duration; stderr:\n{}",
            second.stderr()
        )
    });
    assert!(!is_recording(&emu, STUDIO_A));
    let started = number(
        &site,
        "SELECT requested_at FROM actions WHERE operation = 'startRecord'",
    );
    let stopped = number(
        &site,
        "SELECT requested_at FROM actions WHERE operation = 'stopRecord' AND state = 'SUCCEEDED'",
    );
    assert!(
        stopped - started >= CAP_MS,
        "stopped {} ms after the start, before max_duration ({CAP_MS} ms)",
        stopped - started
    );
    assert_eq!(
        number(
            &site,
            "SELECT count(*) FROM actions WHERE operation = 'startRecord'"
        ),
        1
    );
    assert_eq!(counters().start_record_calls_on(STUDIO_A), 1);
}
