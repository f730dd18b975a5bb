//! `lsrecd probe` as an operator runs it before go-live: the real binary against the emulator
//! in each of the readings the reference leaves open, its JSON report, its text, its exit
//! status; and, from the emulator's call log, that it only ever reads.

mod support;

use std::time::Duration;

use chrono::TimeDelta;
use lsrecd::emulator::{
    Behaviour, Call, ChannelSpec, Control, Operation, RunningEmulator, TotalMeaning,
};
use serde_json::Value;
use support::emulator::{CallLogReader, emulator};
use support::site::{Finished, SECRET_KEY, Site, channel_table, closed_endpoint};

/// How long one probe may take (a debug build on a busy machine).
const LIMIT: Duration = Duration::from_secs(60);
/// The emulator's default retention: `shouldDeleteTime - createdTime`.
const THREE_DAYS_MS: i64 = 3 * 24 * 3600 * 1000;

/// An emulator with `channels` and then `bulk` more `READY` ones, answering as `behaviour`.
async fn emulator_with(
    channels: Vec<ChannelSpec>,
    bulk: usize,
    behaviour: Behaviour,
) -> RunningEmulator {
    let emu = emulator(channels).await;
    emu.control().add_channels(bulk, "probe");
    emu.control().set_behaviour(behaviour);
    emu
}

fn behaviour(total: TotalMeaning) -> Behaviour {
    Behaviour {
        total,
        ..Behaviour::default()
    }
}

/// `lsrecd probe ARGS` on `site`.
async fn probe(site: &Site, args: &[&str]) -> Finished {
    let mut all = vec!["probe"];
    all.extend_from_slice(args);
    site.run(&all, LIMIT).await
}

/// The JSON report of a probe that exited `code`.
fn report(out: &Finished, code: i32) -> Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stdout.contains(SECRET_KEY) && !out.stderr.contains(SECRET_KEY));
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", out.stdout))
}

/// Every API call the emulator received, after checking that each was a read.
fn only_reads(control: &Control) -> Vec<Call> {
    let mut log = CallLogReader::default();
    log.read(control);
    assert!(!log.calls.is_empty(), "the probe made no call");
    for call in &log.calls {
        assert!(
            matches!(
                call.operation,
                Some(
                    Operation::ListChannels
                        | Operation::GetChannel
                        | Operation::ListRecords
                        | Operation::GetRecord
                )
            ),
            "not a GET: {call:?}"
        );
    }
    log.calls
}

fn pages_asked(calls: &[Call]) -> Vec<u32> {
    calls
        .iter()
        .filter(|c| c.operation == Some(Operation::ListChannels))
        .filter_map(|c| c.page)
        .collect()
}

fn column(report: &Value, key: &str) -> Vec<Value> {
    report["listing"]["pages"]
        .as_array()
        .expect("listing.pages")
        .iter()
        .map(|p| p[key].clone())
        .collect()
}

/// The value of the text form's `LABEL:` line.
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {prefix} line in:\n{text}"))
}

fn notes(report: &Value) -> String {
    report["notes"].to_string()
}

#[tokio::test]
async fn an_account_whose_total_counts_every_channel_is_usable_and_described_in_full() {
    let emu = emulator_with(
        vec![
            ChannelSpec::new("studio-a").live().immediate_on_air(true),
            ChannelSpec::new("studio-b"),
        ],
        248,
        behaviour(TotalMeaning::All),
    )
    .await;
    let control = emu.control();
    control.set_clock_offset(TimeDelta::seconds(90));
    let site = Site::new(
        &emu.base_url(),
        &(channel_table("studio-a", "news", false) + &channel_table("studio-b", "sport", false)),
    );
    let r = report(&probe(&site, &["--json"]).await, 0);

    assert_eq!(r["format"], 1);
    assert_eq!(r["region"], "KR");
    assert_eq!(r["exit_code"], 0);
    assert_eq!(r["problems"], serde_json::json!([]));
    assert_eq!(r["authentication"]["accepted"], true);
    assert_eq!(r["authentication"]["http_status"], 200);
    let offset = r["clock_offset_ms"].as_i64().expect("a clock offset");
    assert!((88_000..=92_000).contains(&offset), "{offset}");
    assert!(notes(&r).contains("check NTP"), "{}", notes(&r));

    let listing = &r["listing"];
    assert_eq!(column(&r, "entries"), [100, 100, 50]);
    assert_eq!(column(&r, "total"), [250, 250, 250]);
    assert_eq!(listing["channels"], 250);
    assert_eq!(listing["page_size"]["asked"], 100);
    assert_eq!(listing["page_size"]["honoured"], true);
    assert_eq!(listing["total"]["meaning"], "all");
    assert_eq!(listing["total"]["first_page_total"], 250);
    assert_eq!(listing["total"]["matches_listing"], true);
    assert_eq!(listing["page_1_identical"], true);

    let nf = &r["not_found"];
    assert!(
        nf["channel_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("lsrecd-probe-no-such-channel-")),
        "{nf}"
    );
    assert_eq!(nf["http_status"], 400);
    assert_eq!(nf["error_code"], "250004");
    assert_eq!(nf["error_name"], "NOT_FOUND");
    assert_eq!(nf["read_as_not_found"], true);

    let news = &r["channels"][0];
    assert_eq!(news["id"], "studio-a");
    assert_eq!(news["label"], "news");
    assert_eq!(news["listed"], true);
    assert_eq!(news["channel_status"], "PUBLISHING");
    assert_eq!(news["is_recording"], true);
    assert_eq!(news["records_readable"], true);
    assert_eq!(news["records"], 1);
    assert_eq!(news["retention"]["min_ms"], THREE_DAYS_MS);
    assert_eq!(news["retention"]["max_ms"], THREE_DAYS_MS);
    let sport = &r["channels"][1];
    assert_eq!(sport["channel_status"], "READY");
    assert_eq!(sport["is_recording"], false);
    assert_eq!(sport["records"], 0);
    assert_eq!(sport["retention"], Value::Null);

    // Page 1 twice, then pages 2 and 3; the unknown channel; both channels' records.
    let calls = only_reads(&control);
    assert_eq!(pages_asked(&calls), [1, 1, 2, 3]);
    let latency = &r["latency"];
    for (op, calls) in [
        ("list_channels", 4),
        ("get_channel", 1),
        ("list_records", 2),
    ] {
        let l = &latency[op];
        assert_eq!(l["calls"], calls, "{op}: {latency}");
        let [min, median, max] =
            ["min_ms", "median_ms", "max_ms"].map(|k| l[k].as_f64().expect("a number"));
        assert!(0.0 < min && min <= median && median <= max, "{op}: {l}");
    }
    assert_eq!(latency.as_object().map(|o| o.len()), Some(3), "{latency}");
}

#[tokio::test]
async fn a_total_that_counts_the_page_is_a_note_and_the_text_says_so() {
    let emu = emulator_with(Vec::new(), 250, behaviour(TotalMeaning::Page)).await;
    let site = Site::new(&emu.base_url(), &channel_table("probe-00001", "a", false));
    let r = report(&probe(&site, &["--json"]).await, 0);
    assert_eq!(r["listing"]["total"]["meaning"], "page");
    assert_eq!(r["listing"]["total"]["matches_listing"], Value::Null);
    assert_eq!(column(&r, "total"), [100, 100, 50]);
    assert_eq!(r["listing"]["channels"], 250);
    assert!(notes(&r).contains("total counts the entries of each page"));

    let text = probe(&site, &[]).await;
    assert_eq!(text.status.code(), Some(0), "{}", text.stderr);
    let out = &text.stdout;
    assert_eq!(field(out, "keys and region"), "accepted");
    assert_eq!(field(out, "channel list"), "250 channels on 3 pages");
    assert_eq!(
        field(out, "page size 100"),
        "honoured (page 1 held 100 entries)"
    );
    assert_eq!(field(out, "total"), "counts the page; page 1 says 100");
    assert!(field(out, "page 1 read twice").starts_with("byte-identical"));
    assert_eq!(
        field(out, "unknown channel"),
        "HTTP 400, code 250004 NOT_FOUND (read as not found)"
    );
    assert!(out.contains("probe-00001 (a): READY; no records"), "{out}");
    assert!(
        out.contains("note: total counts the entries of each page"),
        "{out}"
    );
    assert!(out.contains("result: usable"), "{out}");
    assert!(!out.contains(SECRET_KEY));
    only_reads(&emu.control());
}

#[tokio::test]
async fn an_absent_total_is_reported_as_absent() {
    let emu = emulator_with(Vec::new(), 250, behaviour(TotalMeaning::Absent)).await;
    let site = Site::new(
        &emu.base_url(),
        &channel_table("probe-00250", "last", false),
    );
    let r = report(&probe(&site, &["--json"]).await, 0);
    assert_eq!(r["listing"]["total"]["meaning"], "absent");
    assert_eq!(r["listing"]["total"]["first_page_total"], Value::Null);
    assert_eq!(column(&r, "entries"), [100, 100, 50]);
    assert_eq!(r["listing"]["page_size"]["honoured"], true);
    assert_eq!(r["channels"][0]["listed"], true);
    assert!(notes(&r).contains("no total"), "{}", notes(&r));
    let calls = only_reads(&emu.control());
    assert_eq!(pages_asked(&calls), [1, 1, 2, 3]);
}

#[tokio::test]
async fn one_short_page_cannot_tell_what_total_counts_and_says_so() {
    let emu = emulator_with(Vec::new(), 7, behaviour(TotalMeaning::All)).await;
    let site = Site::new(&emu.base_url(), &channel_table("probe-00003", "c", false));
    let r = report(&probe(&site, &["--json"]).await, 0);
    assert_eq!(r["listing"]["total"]["meaning"], "indistinguishable");
    assert_eq!(column(&r, "entries"), [7]);
    assert_eq!(column(&r, "total"), [7]);
    // Page 2 is read even though page 1 ended the listing, to see that it is empty.
    assert_eq!(r["listing"]["page_size"]["honoured"], true);
    assert!(
        r["listing"]["page_size"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("page 2 none")),
        "{}",
        r["listing"]["page_size"]
    );
    assert!(notes(&r).contains("fit on one page"), "{}", notes(&r));
    let calls = only_reads(&emu.control());
    assert_eq!(pages_asked(&calls), [1, 1, 2]);
}

#[tokio::test]
async fn the_status_live_station_gives_its_not_found_is_reported() {
    let mut refusing = Behaviour::default();
    refusing.refuse_with_status(404);
    let emu = emulator_with(Vec::new(), 3, refusing).await;
    let site = Site::new(&emu.base_url(), &channel_table("probe-00001", "a", false));
    let r = report(&probe(&site, &["--json"]).await, 0);
    let nf = &r["not_found"];
    assert_eq!(nf["http_status"], 404);
    assert_eq!(nf["error_code"], "250004");
    assert_eq!(nf["error_name"], "NOT_FOUND");
    assert_eq!(nf["read_as_not_found"], true);
    let calls = only_reads(&emu.control());
    let asked: Vec<&Call> = calls
        .iter()
        .filter(|c| c.operation == Some(Operation::GetChannel))
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].status, Some(404));
    assert_eq!(
        asked[0].channel_id,
        nf["channel_id"].as_str().map(str::to_owned)
    );
}

#[tokio::test]
async fn a_configured_channel_missing_from_the_account_exits_1_naming_it() {
    let emu = emulator_with(Vec::new(), 3, Behaviour::default()).await;
    let site = Site::new(
        &emu.base_url(),
        &(channel_table("probe-00002", "b", false) + &channel_table("gone-channel", "old", false)),
    );
    let out = probe(&site, &["--json"]).await;
    let r = report(&out, 1);
    assert!(
        out.stderr
            .contains("configured channel gone-channel (old) is not in this Live Station account"),
        "{}",
        out.stderr
    );
    assert_eq!(r["exit_code"], 1);
    assert_eq!(r["channels"][0]["listed"], true);
    let gone = &r["channels"][1];
    assert_eq!(gone["id"], "gone-channel");
    assert_eq!(gone["listed"], false);
    assert_eq!(gone["exists"], false);
    assert_eq!(gone["records_readable"], Value::Null);
    assert_eq!(r["problems"][0]["exit_code"], 1);
    let calls = only_reads(&emu.control());
    // Asked for by id after the listing did not show it; its records were not.
    assert!(
        calls
            .iter()
            .any(|c| c.is(Operation::GetChannel, Some("gone-channel")))
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.is(Operation::ListRecords, Some("gone-channel")))
    );
}

#[tokio::test]
async fn a_wrong_secret_key_exits_77_with_the_gateway_code() {
    let emu = emulator_with(Vec::new(), 3, Behaviour::default()).await;
    let site = Site::new(&emu.base_url(), &channel_table("probe-00001", "a", false));
    let wrong = "probe-test-wrong-secret-Jw3Lq8";
    let text = std::fs::read_to_string(&site.config).expect("the configuration");
    site.rewrite(&text.replace(SECRET_KEY, wrong));
    let out = probe(&site, &["--json"]).await;
    let r = report(&out, 77);
    assert!(!out.stdout.contains(wrong) && !out.stderr.contains(wrong));
    let auth = &r["authentication"];
    assert_eq!(auth["accepted"], false);
    assert_eq!(auth["http_status"], 401);
    assert_eq!(auth["error_code"], "200");
    assert_eq!(auth["details"], "Invalid authentication information.");
    assert_eq!(r["listing"], Value::Null);
    assert!(
        out.stderr.contains("check the access and secret keys"),
        "{}",
        out.stderr
    );
    let calls = only_reads(&emu.control());
    assert!(
        calls
            .iter()
            .all(|c| c.operation == Some(Operation::ListChannels) && c.status == Some(401)),
        "{calls:?}"
    );
}

/// No emulator here: nothing listens, so no call of any kind can be made.
#[tokio::test]
async fn an_api_that_cannot_be_reached_exits_69() {
    let site = Site::new(
        &closed_endpoint(),
        &channel_table("probe-00001", "a", false),
    );
    let out = probe(&site, &["--json"]).await;
    let r = report(&out, 69);
    assert_eq!(r["authentication"]["accepted"], Value::Null);
    assert_eq!(r["channels"], serde_json::json!([]));
    assert!(out.stderr.contains("check api.endpoint"), "{}", out.stderr);
}
