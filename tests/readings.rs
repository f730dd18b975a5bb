//! Where Live Station's reference is silent, the emulator answers each reading it allows, and the
//! real binary must record every show once under each of them:
//!
//! - what the channel list's `total` counts (every channel, the entries of the page, or it is
//!   absent): a channel that goes live on page 3 of 250 is recorded, once;
//! - which HTTP status carries Live Station's own errors: with half of all `startRecord`s
//!   answered `250000 EXCEPTION` under HTTP 400, and under HTTP 200, every live channel is
//!   recorded once within 30 s.

mod support;

use std::time::{Duration, Instant};

use lsrecd::emulator::{
    Behaviour, ChannelSpec, Counters, FaultMix, Operation, RunningEmulator, TotalMeaning,
};
use support::emulator::emulator;
use support::site::Site;
use support::wait_for;

/// `[[channel]]` tables recording `ids` whenever they are live.
fn record_when_live(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("[[channel]]\nid = \"{id}\"\nrecord_when_live = true\n\n"))
        .collect()
}

/// Runs `lsrecd run` recording `ids` against `emu`; once it has observed them all, makes them go
/// live together and waits (30 s at most) until every one records. Stops the daemon, checks
/// that each channel was recorded exactly once (`what` names the reading in failures), and
/// returns how long the recordings took and the emulator's counters.
async fn record_all(emu: &RunningEmulator, ids: &[String], what: &str) -> (Duration, Counters) {
    let control = emu.control();
    let site = Site::new(&emu.base_url(), &record_when_live(ids));
    let mut daemon = site.spawn(&["run"], &[]);
    wait_for(
        Duration::from_secs(30),
        "every configured channel observed",
        async || {
            site.rows("SELECT count(*) FROM channels WHERE observed_at IS NOT NULL")
                .and_then(|r| r.first()?.first()?.parse::<usize>().ok())
                .filter(|n| *n >= ids.len())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}; stderr:\n{}", daemon.stderr_tail(30)));

    for id in ids {
        control.go_live(id).expect("a known channel");
    }
    let began = Instant::now();
    wait_for(
        Duration::from_secs(30),
        "every live channel recording",
        async || {
            ids.iter()
                .all(|id| control.channel(id).is_some_and(|c| c.is_recording))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| {
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !control.channel(id).is_some_and(|c| c.is_recording))
            .collect();
        panic!(
            "{what}: {e}: not recording {missing:?}; counters {:?}\nstderr:\n{}",
            control.counters(),
            daemon.stderr_tail(40)
        )
    });
    let took = began.elapsed();

    let status = daemon
        .terminate(Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}; stderr:\n{}", daemon.stderr_tail(30)));
    assert!(status.success(), "{what}: lsrecd exited with {status}");
    let counters = control.counters();
    recorded_once(&counters, emu, ids, what);
    (took, counters)
}

/// Each of `ids` recorded exactly once, and no start reached a channel already recording.
fn recorded_once(counters: &Counters, emu: &RunningEmulator, ids: &[String], what: &str) {
    assert_eq!(
        counters.start_while_recording, 0,
        "{what}: duplicate starts {:?}",
        counters.start_while_recording_by_channel
    );
    assert_eq!(
        counters.recordings_started,
        ids.len() as u64,
        "{what}: recordings started"
    );
    for id in ids {
        let records = emu.control().records(id);
        let recordings: std::collections::BTreeSet<i64> =
            records.iter().filter_map(|r| r.record_begin_time).collect();
        assert_eq!(recordings.len(), 1, "{what}: {id} recordings {records:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_live_on_page_3_is_recorded_once_whatever_total_counts() {
    for meaning in [TotalMeaning::Page, TotalMeaning::Absent, TotalMeaning::All] {
        let emu = emulator(Vec::new()).await;
        let control = emu.control();
        control.set_behaviour(Behaviour {
            total: meaning,
            ..Behaviour::default()
        });
        let account = control.add_channels(250, "acct");
        // Two configured channels on each of the three pages.
        let ids: Vec<String> = [5, 50, 120, 180, 210, 240]
            .iter()
            .map(|&i| account[i].clone())
            .collect();
        let (took, counters) = record_all(&emu, &ids, &format!("total {meaning:?}")).await;
        println!(
            "total {meaning:?}: 6 channels on pages 1-3 recording {:.1} s after going live, {} list calls",
            took.as_secs_f64(),
            counters.calls_of(Operation::ListChannels)
        );
        emu.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_of_the_starts_answered_250000_are_retried_until_every_channel_records_once() {
    for status in [400, 200] {
        let ids: Vec<String> = (1..=8).map(|i| format!("exc-{i:02}")).collect();
        let emu = emulator(ids.iter().map(ChannelSpec::new).collect()).await;
        let control = emu.control();
        let spec = format!("start_record@live_station_error=50:code=250000:status={status}");
        control
            .set_fault_mix(FaultMix::from_specs(11, &[spec]).expect("a valid mix"))
            .expect("the mix checks");
        let (took, counters) = record_all(&emu, &ids, &format!("250000 under HTTP {status}")).await;
        let refused = counters
            .faults_by_kind
            .get("live_station_error")
            .copied()
            .unwrap_or(0);
        assert!(refused > 0, "HTTP {status}: the mix refused no start");
        println!(
            "250000 EXCEPTION under HTTP {status}: {refused} starts refused, {} sent, all 8 recording after {:.1} s",
            counters.calls_of(Operation::StartRecord),
            took.as_secs_f64()
        );
        emu.shutdown().await;
    }
}
