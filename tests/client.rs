//! The Live Station client against the in-process emulator: every call, every error class,
//! paging past 100 channels, the FKR region, clock skew, and the gateway's authentication
//! answers. Each test starts its own emulator on a free port.
//!
//! What the emulator cannot make the client see (the exact request headers, percent-encoding,
//! `Retry-After` as an HTTP date, a body over the size cap, missing authentication headers, a
//! gateway 404) is tested against a small fake in `src/livestation/client.rs`; no case is tested
//! in both places.

mod support;

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use lsrecd::emulator::{
    Behaviour, ChannelSpec, Emulator, EmulatorOptions, Fault, FaultRule, Lifecycle, Operation,
    RecordFormat, RecordType, RunningEmulator, TotalMeaning,
};
use lsrecd::livestation::model::Record;
use lsrecd::livestation::{
    ApiError, ChannelStatus, Client, ClientConfig, Credentials, Operation as ClientOperation,
    RecordStatus, Region,
};
use lsrecd::secret::Secret;
use support::proxy::{DateHeader, Proxy};
use support::wait_for;

const ACCESS: &str = "CLIENT-TEST-ACCESS";
const SECRET: &str = "client-test-secret-0123456789";

/// The emulator's default retention: `shouldDeleteTime - createdTime`.
const RETENTION_MS: i64 = 3 * 24 * 3600 * 1000;

async fn emulator() -> RunningEmulator {
    emulator_with(Lifecycle::default()).await
}

async fn emulator_with(lifecycle: Lifecycle) -> RunningEmulator {
    let opts = EmulatorOptions {
        access_key: ACCESS.into(),
        secret_key: SECRET.into(),
        lifecycle,
        ..EmulatorOptions::default()
    };
    let listen = "127.0.0.1:0".parse().expect("loopback address");
    Emulator::start(listen, opts)
        .await
        .expect("emulator starts")
}

/// A client configuration with the emulator's keys, a generous timeout and a rate limit that
/// never slows the tests down.
fn config(endpoint: &str, region: Region) -> ClientConfig {
    ClientConfig {
        endpoint: endpoint.to_string(),
        region,
        credentials: Credentials {
            access_key: Secret::new(ACCESS),
            secret_key: Secret::new(SECRET),
        },
        timeout: Duration::from_secs(5),
        max_rps: 1000.0,
    }
}

fn client_for(cfg: ClientConfig) -> Client {
    Client::new(cfg).expect("client builds")
}

fn kr_client(emu: &RunningEmulator) -> Client {
    client_for(config(&emu.base_url(), Region::Kr))
}

/// `(http_status, error_code, reason, maybe_applied)` of a transient error.
fn transient(error: &ApiError) -> (Option<u16>, Option<&str>, &str, bool) {
    match error {
        ApiError::Transient {
            http_status,
            error_code,
            reason,
            maybe_applied,
        } => (*http_status, error_code.as_deref(), reason, *maybe_applied),
        other => panic!("expected a transient error, got {other:?}"),
    }
}

fn rejected(http_status: u16, code: &str, name: &str, message: &str) -> ApiError {
    ApiError::Rejected {
        http_status,
        error_code: Some(code.into()),
        error_name: Some(name.into()),
        message: message.into(),
    }
}

fn authentication_failed(details: &str) -> ApiError {
    ApiError::Unauthorized {
        http_status: 401,
        error_code: "200".into(),
        message: "Authentication Failed".into(),
        details: Some(details.into()),
    }
}

/// The one record `get_record` returns.
async fn record(client: &Client, channel_id: &str, record_id: i64) -> Record {
    let mut set = client
        .get_record(channel_id, record_id)
        .await
        .expect("record detail")
        .value;
    assert_eq!(set.records.len(), 1, "{set:?}");
    set.records.remove(0)
}

/// Reads a record until `done` holds for it, or panics at the deadline.
async fn wait_for_record(
    client: &Client,
    channel_id: &str,
    record_id: i64,
    done: impl Fn(&Record) -> bool,
) -> Record {
    let mut last = None;
    let what = format!("record {record_id} to settle");
    wait_for(Duration::from_secs(5), &what, async || {
        let r = record(client, channel_id, record_id).await;
        let settled = done(&r).then(|| r.clone());
        last = Some(r.status);
        settled
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: stuck in {last:?}"))
}

fn assert_close(actual: TimeDelta, expected: TimeDelta) {
    assert!(
        (actual - expected).abs() < TimeDelta::seconds(2),
        "{actual} is not within 2 s of {expected}"
    );
}

// ---- every call ---------------------------------------------------------------------------

/// Lists `n` channels with the emulator's `total` meaning `meaning`; returns the pages asked
/// for (their `pageNo`) after checking that every channel was listed once, in order.
async fn list_with_total(n: usize, meaning: TotalMeaning) -> Vec<String> {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.set_behaviour(Behaviour {
        total: meaning,
        ..Behaviour::default()
    });
    let ids = ctl.add_channels(n, "bench");
    let proxy = Proxy::start(&emu.base_url(), DateHeader::Upstream).await;
    let client = client_for(config(&proxy.base_url(), Region::Kr));

    let reply = client.list_channels().await.expect("listing succeeds");

    let listed: Vec<&str> = reply.value.channels().map(|c| c.channel_id).collect();
    assert_eq!(listed, ids, "{meaning:?}");
    assert!(reply.value.skipped.is_empty(), "{:?}", reply.value.skipped);
    let pages = ctl.counters().calls_of(Operation::ListChannels);
    assert_eq!(
        u64::from(reply.meta.attempts),
        pages,
        "one request per page"
    );
    let stats = client.stats();
    assert_eq!(
        stats.calls.get(&(ClientOperation::ListChannels, "ok")),
        Some(&pages)
    );
    let targets: Vec<String> = proxy.seen().into_iter().map(|s| s.target).collect();
    proxy.shutdown().await;
    emu.shutdown().await;
    targets
}

fn page_targets(pages: u32) -> Vec<String> {
    (1..=pages)
        .map(|n| format!("/api/v2/channels?pageNo={n}&pageSizeNo=100"))
        .collect()
}

#[tokio::test]
async fn listing_250_channels_reads_three_pages_whatever_total_counts() {
    for meaning in [TotalMeaning::All, TotalMeaning::Page, TotalMeaning::Absent] {
        let targets = list_with_total(250, meaning).await;
        assert_eq!(targets, page_targets(3), "{meaning:?}");
    }
}

#[tokio::test]
async fn a_listing_of_full_pages_ends_on_a_total_that_proved_itself_else_on_an_empty_page() {
    // `total` said more than page 1 held: it counts the account, and 200 entries end it.
    assert_eq!(
        list_with_total(200, TotalMeaning::All).await,
        page_targets(2)
    );
    // Otherwise only an empty (or short) page ends it: one call more.
    for meaning in [TotalMeaning::Page, TotalMeaning::Absent] {
        assert_eq!(
            list_with_total(200, meaning).await,
            page_targets(3),
            "{meaning:?}"
        );
    }
    // One full page whose `total` is 100 proves nothing either.
    assert_eq!(
        list_with_total(100, TotalMeaning::All).await,
        page_targets(2)
    );
}

#[tokio::test]
async fn one_channel_page_holds_its_slice_of_the_list_and_the_total() {
    let emu = emulator().await;
    let ctl = emu.control();
    let ids = ctl.add_channels(250, "bench");
    ctl.go_live(&ids[0]).expect("channel exists");
    let client = kr_client(&emu);

    let last = client.list_channels_page(3, 100).await.expect("page 3");
    let last_ids: Vec<&str> = last.value.channels().map(|c| c.channel_id).collect();
    assert_eq!(last_ids, ids[200..]);
    assert_eq!(last.value.total, Some(250));

    let small = client.list_channels_page(2, 20).await.expect("page 2");
    assert_eq!(small.value.len(), 20);
    assert_eq!(small.value.to_channels()[0].channel_id, ids[20]);

    let first = client.list_channels_page(1, 1).await.expect("page 1");
    assert_eq!(
        first.value.to_channels()[0].channel_status,
        ChannelStatus::Publishing
    );

    let beyond = client.list_channels_page(4, 100).await.expect("page 4");
    assert!(beyond.value.is_empty());
    assert_eq!(beyond.value.total, Some(250));
    assert_eq!(ctl.counters().calls_of(Operation::ListChannels), 4);
    emu.shutdown().await;
}

#[tokio::test]
async fn get_channel_reports_status_recording_flag_record_settings_and_exchange_facts() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(
        ChannelSpec::new("ls-news")
            .name("아침 뉴스")
            .live()
            .record_type(RecordType::ManualUpload)
            .format(RecordFormat::All),
    )
    .expect("channel added");
    let client = kr_client(&emu);

    let reply = client.get_channel("ls-news").await.expect("channel info");
    let channel = &reply.value;
    assert_eq!(channel.channel_id, "ls-news");
    assert_eq!(channel.channel_name.as_deref(), Some("아침 뉴스"));
    assert_eq!(channel.channel_status, ChannelStatus::Publishing);
    assert!(!channel.is_recording);
    assert!(!channel.immediate_on_air);
    let settings = channel.record.as_ref().expect("record settings");
    assert_eq!(settings.upload_type.as_deref(), Some("MANUAL_UPLOAD"));
    assert_eq!(settings.format.as_deref(), Some("ALL"));
    assert_eq!(settings.bucket_name.as_deref(), Some("lsrecd-emulator"));

    assert_eq!(reply.meta.http_status, 200);
    assert_eq!(reply.meta.attempts, 1);
    assert_eq!(reply.meta.trace_id.as_deref().map(str::len), Some(32));
    let date = reply.meta.server_date.expect("Date header");
    assert_close(date - Utc::now(), TimeDelta::zero());

    client.start_record("ls-news").await.expect("started");
    let after = client.get_channel("ls-news").await.expect("channel info");
    assert!(after.value.is_recording);
    emu.shutdown().await;
}

#[tokio::test]
async fn start_record_with_format_all_returns_an_mp4_and_an_hls_record_with_should_delete_time() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live().format(RecordFormat::All))
        .expect("channel added");
    let client = kr_client(&emu);

    let reply = client.start_record("c1").await.expect("recording starts");

    let records = &reply.value.records;
    assert!(reply.value.skipped.is_empty(), "{:?}", reply.value.skipped);
    let types: Vec<&str> = records.iter().map(|r| r.record_type.as_str()).collect();
    assert_eq!(types, ["MP4", "HLS"]);
    for r in records {
        assert!(r.record_id >= 27_000, "{}", r.record_id);
        assert_eq!(r.channel_id, "c1");
        assert_eq!(r.status, RecordStatus::Recording);
        assert_eq!(r.object_storage_url, None);
        let created = r.created_time.expect("createdTime");
        let delete_at = r.should_delete_time.expect("shouldDeleteTime");
        assert_eq!(delete_at - created, RETENTION_MS);
    }
    assert!(records[0].record_seq.is_some());
    assert_eq!(records[0].record_seq, records[1].record_seq);
    assert_eq!(records[0].stream_seq, records[1].stream_seq);
    assert_eq!(ctl.records("c1").len(), 2);
    assert_eq!(ctl.counters().recordings_started, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn stop_record_ends_the_recording_and_returns_its_records_processing_with_a_duration() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    let client = kr_client(&emu);
    let started = client.start_record("c1").await.expect("recording starts");
    ctl.advance(Duration::from_secs(90));

    let stopped = client.stop_record("c1").await.expect("recording stops");

    let records = &stopped.value.records;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record_id, started.value.records[0].record_id);
    assert_eq!(records[0].status, RecordStatus::Processing);
    assert_eq!(records[0].duration, Some(90));
    let channel = client.get_channel("c1").await.expect("channel info");
    assert!(!channel.value.is_recording);
    assert_eq!(ctl.counters().calls_of(Operation::StopRecord), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn list_records_and_get_record_show_every_recording_of_the_channel() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    let client = kr_client(&emu);
    let first = client.start_record("c1").await.expect("first recording");
    client.stop_record("c1").await.expect("first stops");
    let second = client.start_record("c1").await.expect("second recording");
    let first_id = first.value.records[0].record_id;
    let second_id = second.value.records[0].record_id;

    let list = client.list_records("c1").await.expect("records list");
    let listed: Vec<(i64, RecordStatus)> = list
        .value
        .records
        .iter()
        .map(|r| (r.record_id, r.status.clone()))
        .collect();
    assert_eq!(
        listed,
        [
            (first_id, RecordStatus::Processing),
            (second_id, RecordStatus::Recording)
        ]
    );

    let detail = record(&client, "c1", first_id).await;
    assert_eq!(detail.record_id, first_id);
    assert_eq!(detail.status, RecordStatus::Processing);
    assert_eq!(detail.channel_id, "c1");

    let unknown = client
        .get_record("c1", second_id + 1000)
        .await
        .expect_err("no such record");
    assert_eq!(
        unknown,
        rejected(400, "250004", "NOT_FOUND", "record not found.")
    );
    let counters = ctl.counters();
    assert_eq!(counters.calls_of(Operation::ListRecords), 1);
    assert_eq!(counters.calls_of(Operation::GetRecord), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn manual_upload_record_is_uploaded_once_transfer_ready_and_finishes_with_a_storage_url() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(
        ChannelSpec::new("m1")
            .live()
            .record_type(RecordType::ManualUpload),
    )
    .expect("channel added");
    let client = kr_client(&emu);
    let id = client
        .start_record("m1")
        .await
        .expect("recording starts")
        .value
        .records[0]
        .record_id;

    let early = client
        .upload("archive", &[id], None)
        .await
        .expect_err("a recording record cannot be uploaded");
    assert_eq!(
        early,
        rejected(400, "250005", "NOT_AVAILABLE", "record not available.")
    );

    client.stop_record("m1").await.expect("recording stops");
    ctl.advance(Lifecycle::default().processing);
    let ready = record(&client, "m1", id).await;
    assert_eq!(ready.status, RecordStatus::TransferReady);
    assert_eq!(ready.object_storage_url, None);

    let reply = client
        .upload("archive", &[id], Some("PUBLIC_READ"))
        .await
        .expect("upload accepted");
    let content = &reply.value["content"];
    assert_eq!(content["bucketName"], "archive");
    assert_eq!(content["accessControl"], "PUBLIC_READ");
    assert_eq!(
        content["uploadedRecords"][id.to_string()]["status"],
        "TRANSFER"
    );
    assert_eq!(
        record(&client, "m1", id).await.status,
        RecordStatus::Transfer
    );

    ctl.advance(Lifecycle::default().transfer);
    let done = record(&client, "m1", id).await;
    assert_eq!(done.status, RecordStatus::TransferFinish);
    let url = done.object_storage_url.expect("objectStorageUrl");
    assert!(
        url.starts_with("https://") && url.contains("/archive/"),
        "{url}"
    );
    assert_eq!(ctl.counters().calls_of(Operation::Upload), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn auto_upload_record_reaches_transfer_finish_in_real_time_with_a_short_lifecycle() {
    let emu = emulator_with(Lifecycle {
        processing: Duration::from_millis(50),
        transfer: Duration::from_millis(50),
        ..Lifecycle::default()
    })
    .await;
    emu.control()
        .add_channel(ChannelSpec::new("a1").live())
        .expect("channel added");
    let client = kr_client(&emu);
    let id = client
        .start_record("a1")
        .await
        .expect("recording starts")
        .value
        .records[0]
        .record_id;
    client.stop_record("a1").await.expect("recording stops");

    let done = wait_for_record(&client, "a1", id, |r| r.status.is_final()).await;

    assert_eq!(done.status, RecordStatus::TransferFinish);
    let url = done.object_storage_url.expect("objectStorageUrl");
    assert!(url.ends_with(".mp4"), "{url}");
    emu.shutdown().await;
}

#[tokio::test]
async fn an_fkr_client_sends_every_call_under_the_fin_prefix_with_region_code_fkr() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(
        ChannelSpec::new("f1")
            .live()
            .record_type(RecordType::ManualUpload),
    )
    .expect("channel added");
    ctl.add_channels(3, "fin");
    let proxy = Proxy::start(&emu.base_url(), DateHeader::Upstream).await;
    let client = client_for(config(&proxy.base_url(), Region::Fkr));

    let channels = client.list_channels().await.expect("channel list");
    assert_eq!(channels.value.len(), 4);
    let channel = client.get_channel("f1").await.expect("channel info");
    assert_eq!(channel.value.channel_status, ChannelStatus::Publishing);
    let started = client.start_record("f1").await.expect("recording starts");
    let id = started.value.records[0].record_id;
    ctl.advance(Duration::from_secs(30));
    client.stop_record("f1").await.expect("recording stops");
    ctl.advance(Lifecycle::default().processing);
    let list = client.list_records("f1").await.expect("records list");
    assert_eq!(list.value.records[0].status, RecordStatus::TransferReady);
    let upload = client
        .upload("fin-archive", &[id], None)
        .await
        .expect("upload accepted");
    assert_eq!(upload.value["content"]["accessControl"], "PRIVATE");
    ctl.advance(Lifecycle::default().transfer);
    let done = record(&client, "f1", id).await;
    assert_eq!(done.status, RecordStatus::TransferFinish);

    let seen = proxy.seen();
    let calls: Vec<(&str, &str)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.target.as_str()))
        .collect();
    let record_target = format!("/api/fin-v2/channels/f1/records/{id}");
    assert_eq!(
        calls,
        [
            ("GET", "/api/fin-v2/channels?pageNo=1&pageSizeNo=100"),
            ("GET", "/api/fin-v2/channels/f1"),
            ("PUT", "/api/fin-v2/channels/f1/startRecord"),
            ("PUT", "/api/fin-v2/channels/f1/stopRecord"),
            ("GET", "/api/fin-v2/channels/f1/records"),
            ("POST", "/api/fin-v2/buckets/fin-archive/upload"),
            ("GET", record_target.as_str()),
        ]
    );
    for s in &seen {
        assert_eq!(s.region.as_deref(), Some("FKR"), "{s:?}");
        assert_eq!(s.status, 200, "{s:?}");
    }
    proxy.shutdown().await;
    emu.shutdown().await;
}

// ---- transient failures -------------------------------------------------------------------

#[tokio::test]
async fn every_5xx_answer_is_transient_and_maybe_applied_with_the_code_it_carried() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    let client = kr_client(&emu);
    let cases = [
        (500, Some("250016"), "Server error"),
        (
            502,
            None,
            "Bad Gateway: <html> <head><title>502 Bad Gateway</title></head> <body> \
             <center><h1>502 Bad Gateway</h1></center> </body> </html>",
        ),
        (
            503,
            Some("500"),
            "Endpoint Error — Endpoint connection failed.",
        ),
        (
            504,
            Some("510"),
            "Endpoint Timeout — Endpoint read timed out.",
        ),
    ];

    for (status, code, text) in cases {
        ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::Status5xx { status }).times(1));
        let error = client
            .start_record("c1")
            .await
            .expect_err("the fault answers");
        let (http_status, error_code, reason, maybe_applied) = transient(&error);
        assert_eq!(http_status, Some(status));
        assert_eq!(error_code, code, "{status}");
        assert_eq!(reason, text, "{status}");
        assert!(maybe_applied, "{status}: the server saw the request");
        assert!(error.is_retryable());
    }

    assert!(ctl.records("c1").is_empty(), "the faults did nothing");
    client
        .start_record("c1")
        .await
        .expect("succeeds once the faults are spent");
    assert_eq!(ctl.counters().start_record_calls_on("c1"), 5);
    let calls = client.stats().calls;
    let start = ClientOperation::StartRecord;
    assert_eq!(calls.get(&(start, "transient")), Some(&4));
    assert_eq!(calls.get(&(start, "ok")), Some(&1));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_held_answer_times_out_as_transient_and_maybe_applied() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::Hold).times(1));
    let client = client_for(ClientConfig {
        timeout: Duration::from_millis(300),
        ..config(&emu.base_url(), Region::Kr)
    });

    let started = Instant::now();
    let error = client
        .start_record("c1")
        .await
        .expect_err("no answer comes");

    let (http_status, error_code, reason, maybe_applied) = transient(&error);
    assert_eq!((http_status, error_code), (None, None));
    assert!(reason.starts_with("timed out"), "{reason}");
    assert!(maybe_applied, "the request reached the server");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ctl.counters().calls_of(Operation::StartRecord), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_start_applied_but_never_answered_times_out_while_the_recording_exists() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::ApplyThenHold).times(1));
    let client = client_for(ClientConfig {
        timeout: Duration::from_millis(300),
        ..config(&emu.base_url(), Region::Kr)
    });

    let error = client
        .start_record("c1")
        .await
        .expect_err("no answer comes");

    let (http_status, _, _, maybe_applied) = transient(&error);
    assert_eq!(http_status, None);
    assert!(maybe_applied);
    assert_eq!(ctl.records("c1").len(), 1, "the start happened");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_start_applied_then_cut_off_is_transient_and_maybe_applied_while_the_recording_exists() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::ApplyThenDrop).times(1));
    let client = kr_client(&emu);

    let error = client
        .start_record("c1")
        .await
        .expect_err("the connection closes unanswered");

    let (http_status, _, _, maybe_applied) = transient(&error);
    assert_eq!(http_status, None);
    assert!(maybe_applied);
    assert_eq!(ctl.records("c1").len(), 1, "the start happened");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_refused_connection_is_transient_and_certainly_not_applied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let client = client_for(config(&endpoint, Region::Kr));

    let error = client
        .start_record("c1")
        .await
        .expect_err("nothing listens");

    let (http_status, error_code, reason, maybe_applied) = transient(&error);
    assert_eq!((http_status, error_code), (None, None));
    assert!(reason.starts_with("could not connect"), "{reason}");
    assert!(!maybe_applied, "no request left this host");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_start_applied_then_answered_502_is_transient_while_the_recording_exists() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::ApplyThen502).times(1));
    let client = kr_client(&emu);

    let error = client.start_record("c1").await.expect_err("answered 502");

    let (http_status, error_code, _, maybe_applied) = transient(&error);
    assert_eq!((http_status, error_code), (Some(502), None));
    assert!(maybe_applied);
    // What the engine reconciles with before it would start again.
    let channel = client.get_channel("c1").await.expect("channel info");
    assert!(channel.value.is_recording);
    let records = client.list_records("c1").await.expect("records list");
    assert_eq!(records.value.records.len(), 1);
    assert_eq!(records.value.records[0].status, RecordStatus::Recording);
    assert_eq!(ctl.counters().recordings_started, 1);
    emu.shutdown().await;
}

// ---- rate limiting, authentication, refusals, unreadable answers -------------------------

#[tokio::test]
async fn a_429_is_rate_limited_with_retry_after_from_the_header() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_fault(
        FaultRule::new(
            Operation::ListChannels,
            Fault::RateLimit {
                retry_after_secs: Some(3),
            },
        )
        .times(1),
    );
    ctl.add_fault(
        FaultRule::new(
            Operation::ListChannels,
            Fault::RateLimit {
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    let client = kr_client(&emu);

    let error = client.list_channels().await.expect_err("rate limited");
    assert_eq!(
        error,
        ApiError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            error_code: Some("420".into()),
        }
    );
    assert!(error.is_retryable() && !error.maybe_applied());

    let error = client.list_channels().await.expect_err("rate limited");
    assert_eq!(
        error,
        ApiError::RateLimited {
            retry_after: None,
            error_code: Some("420".into()),
        }
    );
    client
        .list_channels()
        .await
        .expect("succeeds once the faults are spent");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_is_unauthorized_with_the_gateway_details_after_exactly_one_re_sign() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    let mut cfg = config(&emu.base_url(), Region::Kr);
    cfg.credentials.secret_key = Secret::new("not-the-secret");
    let client = client_for(cfg);

    let error = client.start_record("c1").await.expect_err("bad signature");

    assert_eq!(
        error,
        authentication_failed("Invalid authentication information.")
    );
    assert!(!error.is_retryable() && !error.maybe_applied());
    let counters = ctl.counters();
    assert_eq!(counters.auth_failures, 2, "signed, then signed once more");
    assert_eq!(counters.calls_of(Operation::StartRecord), 0);
    assert!(ctl.records("c1").is_empty());
    assert_eq!(client.stats().http_requests, 2);
    let text = error.to_string();
    assert!(
        !text.contains("not-the-secret") && !text.contains(ACCESS),
        "{text}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn an_unknown_access_key_is_unauthorized_as_invalid_authentication_information() {
    let emu = emulator().await;
    let mut cfg = config(&emu.base_url(), Region::Kr);
    cfg.credentials.access_key = Secret::new("SOMEONE-ELSES-KEY");
    let client = client_for(cfg);

    let error = client.list_channels().await.expect_err("unknown key");

    assert_eq!(
        error,
        authentication_failed("Invalid authentication information.")
    );
    assert_eq!(emu.control().counters().auth_failures, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn permission_denied_is_unauthorized_and_not_signed_again() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    ctl.add_fault(
        FaultRule::new(
            Operation::StartRecord,
            Fault::GatewayError {
                http: 401,
                code: "210".into(),
                message: "Permission Denied".into(),
                details: Some("A subscription to the API is required.".into()),
            },
        )
        .times(1),
    );
    let client = kr_client(&emu);

    let error = client.start_record("c1").await.expect_err("denied");

    assert_eq!(
        error,
        ApiError::Unauthorized {
            http_status: 401,
            error_code: "210".into(),
            message: "Permission Denied".into(),
            details: Some("A subscription to the API is required.".into()),
        }
    );
    assert_eq!(client.stats().http_requests, 1);
    assert_eq!(ctl.counters().calls_of(Operation::StartRecord), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn start_record_on_a_channel_that_is_not_publishing_is_rejected_with_live_stations_code() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1"))
        .expect("channel added");
    let client = kr_client(&emu);

    let error = client.start_record("c1").await.expect_err("not live");

    assert_eq!(
        error,
        rejected(400, "250005", "NOT_AVAILABLE", "channel not available.")
    );
    assert!(!error.is_retryable() && !error.maybe_applied());
    assert!(ctl.records("c1").is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn calls_on_an_unknown_channel_are_rejected_as_not_found() {
    let emu = emulator().await;
    let client = kr_client(&emu);
    let not_found = rejected(400, "250004", "NOT_FOUND", "channel not found.");

    let errors = [
        client.get_channel("ls-nope").await.map(|_| ()),
        client.start_record("ls-nope").await.map(|_| ()),
        client.stop_record("ls-nope").await.map(|_| ()),
        client.list_records("ls-nope").await.map(|_| ()),
    ];
    for error in errors {
        assert_eq!(error, Err(not_found.clone()));
    }

    emu.control().set_behaviour(Behaviour {
        not_found_http: 404,
        ..Behaviour::default()
    });
    let error = client
        .start_record("ls-nope")
        .await
        .expect_err("unknown channel");
    assert_eq!(
        error,
        rejected(404, "250004", "NOT_FOUND", "channel not found.")
    );
    assert_eq!(emu.control().counters().recordings_started, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_body_is_malformed_and_maybe_applied() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::MalformedBody).times(1));
    ctl.add_fault(FaultRule::new(Operation::ListChannels, Fault::MalformedBody).times(1));
    let client = kr_client(&emu);

    let error = client.start_record("c1").await.expect_err("cut body");
    assert!(
        matches!(
            error,
            ApiError::Malformed {
                http_status: 200,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.maybe_applied() && !error.is_retryable());
    assert_eq!(ctl.records("c1").len(), 1, "the start happened");

    let error = client.list_channels().await.expect_err("cut body");
    assert!(
        matches!(
            error,
            ApiError::Malformed {
                http_status: 200,
                ..
            }
        ),
        "{error:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_second_start_on_a_recording_channel_is_rejected_and_counted_as_a_duplicate() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    let client = kr_client(&emu);
    client.start_record("c1").await.expect("recording starts");

    let error = client
        .start_record("c1")
        .await
        .expect_err("already recording");

    assert_eq!(
        error,
        rejected(400, "250005", "NOT_AVAILABLE", "channel not available.")
    );
    let counters = ctl.counters();
    assert_eq!(counters.start_while_recording, 1);
    assert_eq!(
        counters.start_while_recording_by_channel.get("c1"),
        Some(&1)
    );
    assert_eq!(counters.recordings_started, 1);
    assert_eq!(ctl.records("c1").len(), 1);
    emu.shutdown().await;
}

// ---- clock skew ---------------------------------------------------------------------------

#[tokio::test]
async fn a_gateway_clock_seven_minutes_off_either_way_is_followed_after_one_fresh_signature() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    let proxy = Proxy::start(&emu.base_url(), DateHeader::Upstream).await;

    for minutes in [7, -7] {
        let offset = TimeDelta::minutes(minutes);
        ctl.set_clock_offset(offset);
        ctl.reset_counters();
        let client = client_for(config(&proxy.base_url(), Region::Kr));
        let before = proxy.seen().len();

        let first = client.get_channel("c1").await.expect("re-signed call");

        assert_eq!(first.meta.attempts, 2, "{minutes} min");
        let skew = client.clock_skew().expect("estimated from Date");
        assert_close(skew, offset);
        let seen = proxy.seen();
        let refused = &seen[before];
        assert_eq!(refused.status, 401, "{minutes} min");
        assert!(
            refused.answer.contains("Expired timestamp."),
            "{minutes} min: {}",
            refused.answer
        );
        assert_eq!(seen[before + 1].status, 200);

        let second = client.list_records("c1").await.expect("corrected call");
        assert_eq!(second.meta.attempts, 1, "{minutes} min");
        let listing = client.list_channels().await.expect("corrected call");
        assert_eq!(listing.meta.attempts, 1, "{minutes} min");
        assert_eq!(ctl.counters().auth_failures, 1, "{minutes} min");
    }
    proxy.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test]
async fn a_stale_timestamp_the_client_cannot_correct_is_unauthorized_as_expired() {
    let emu = emulator().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live())
        .expect("channel added");
    ctl.set_clock_offset(TimeDelta::minutes(7));
    // A proxy that stamps its own (correct) time hides the gateway's clock from the client.
    let proxy = Proxy::start(&emu.base_url(), DateHeader::Local).await;
    let client = client_for(config(&proxy.base_url(), Region::Kr));

    let error = client
        .start_record("c1")
        .await
        .expect_err("timestamp 7 minutes behind the gateway");

    assert_eq!(error, authentication_failed("Expired timestamp."));
    let counters = ctl.counters();
    assert_eq!(counters.auth_failures, 2, "signed, then signed once more");
    assert_eq!(counters.calls_of(Operation::StartRecord), 0);
    assert!(ctl.records("c1").is_empty());
    assert_close(
        client.clock_skew().expect("the proxy's Date"),
        TimeDelta::zero(),
    );
    assert_eq!(proxy.seen().len(), 2);
    proxy.shutdown().await;
    emu.shutdown().await;
}
