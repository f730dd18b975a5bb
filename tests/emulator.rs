//! The emulator over real HTTP: gateway auth, region check, routes, record lifecycle, faults,
//! the control API, and the `lsrecd emulator` binary.

mod support;

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use reqwest::Method;
use serde_json::{Value, json};

use lsrecd::emulator::{
    Behaviour, ChannelSpec, Emulator, EmulatorOptions, Fault, FaultMix, FaultRule, Lifecycle,
    Operation, RecordFormat, RecordType, RunningEmulator, WhileRecording,
};
use lsrecd::livestation::model::{self, RecordStatus};
use support::emulator::EmulatorProcess;
use support::signed::{Signed, http_client, independent_signature, now_ms, read};
use support::wait_for;

const ACCESS: &str = "TEST-ACCESS-KEY";
const SECRET: &str = "test-secret-key-0123456789";

async fn start() -> (RunningEmulator, Signed) {
    start_with(EmulatorOptions::default()).await
}

async fn start_with(opts: EmulatorOptions) -> (RunningEmulator, Signed) {
    let opts = EmulatorOptions {
        access_key: ACCESS.into(),
        secret_key: SECRET.into(),
        ..opts
    };
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .expect("emulator starts");
    let api = Signed::new(&emu.base_url(), ACCESS, SECRET);
    (emu, api)
}

fn gateway_401(details: &str) -> Value {
    json!({"error":{"errorCode":"200","message":"Authentication Failed","details":details}})
}

fn record_list(reply: &support::signed::Reply) -> Vec<model::Record> {
    let set = model::parse_records(reply.text.as_bytes()).expect("record answer");
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    set.records
}

#[tokio::test]
async fn independently_signed_request_is_answered_with_date_and_trace_id() {
    let (emu, api) = start().await;
    emu.control().add_channel(ChannelSpec::new("c1")).unwrap();
    let r = api.get("/api/v2/channels?pageNo=1&pageSizeNo=100").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["total"], 1);
    assert_eq!(v["content"][0]["channelId"], "c1");
    assert_eq!(v["content"][0]["channelStatus"], "READY");
    assert_eq!(v["content"][0]["isRecording"], false);
    let date = r.headers["date"].to_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc2822(date).expect("HTTP date");
    assert!(
        (parsed.timestamp_millis() - now_ms()).abs() < 5_000,
        "{date}"
    );
    assert_eq!(r.headers["x-ncp-trace-id"].len(), 32);
    emu.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_gets_401_with_the_exact_gateway_body_and_is_counted() {
    let (emu, mut api) = start().await;
    api.secret = "not-the-secret".into();
    let r = api.get("/api/v2/channels").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), gateway_401("Invalid authentication information."));
    assert!(r.headers.contains_key("x-ncp-trace-id"));
    assert_eq!(emu.control().counters().auth_failures, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn signature_over_a_different_query_order_is_invalid() {
    let (emu, api) = start().await;
    let ts = now_ms().to_string();
    let signed_target = "/api/v2/channels?pageNo=1&pageSizeNo=100";
    let sig = independent_signature(SECRET, "GET", signed_target, &ts, ACCESS);
    let r = api
        .client
        .get(format!(
            "{}/api/v2/channels?pageSizeNo=100&pageNo=1",
            api.base
        ))
        .header("x-ncp-apigw-timestamp", &ts)
        .header("x-ncp-iam-access-key", ACCESS)
        .header("x-ncp-apigw-signature-v2", sig)
        .header("x-ncp-region_code", "KR")
        .send()
        .await
        .unwrap();
    let r = read(r).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), gateway_401("Invalid authentication information."));
    emu.shutdown().await;
}

#[tokio::test]
async fn missing_auth_headers_get_401_with_the_missing_body() {
    let (emu, api) = start().await;
    let bare = read(
        api.client
            .get(format!("{}/api/v2/channels", api.base))
            .header("x-ncp-region_code", "KR")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bare.status, 401);
    assert_eq!(
        bare.json(),
        gateway_401("Authentication information are missing.")
    );

    let no_signature = read(
        api.client
            .get(format!("{}/api/v2/channels", api.base))
            .header("x-ncp-apigw-timestamp", now_ms().to_string())
            .header("x-ncp-iam-access-key", ACCESS)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(no_signature.status, 401);
    assert_eq!(
        no_signature.json(),
        gateway_401("Authentication information are missing.")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn timestamp_six_minutes_old_gets_401_expired() {
    let (emu, mut api) = start().await;
    api.skew_ms = -6 * 60 * 1000;
    let r = api.get("/api/v2/channels").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), gateway_401("Expired timestamp."));
    emu.shutdown().await;
}

#[tokio::test]
async fn gateway_clock_offset_moves_the_date_header_and_the_expiry_window() {
    let (emu, mut api) = start().await;
    emu.control().set_clock_offset(TimeDelta::minutes(7));
    let r = api.get("/api/v2/channels").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), gateway_401("Expired timestamp."));
    let date = chrono::DateTime::parse_from_rfc2822(r.headers["date"].to_str().unwrap()).unwrap();
    let ahead = date.timestamp_millis() - now_ms();
    assert!((6 * 60_000..8 * 60_000).contains(&ahead), "{ahead} ms");

    // A client that corrects its clock from `Date` gets through.
    api.skew_ms = ahead;
    assert_eq!(api.get("/api/v2/channels").await.status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn region_header_must_match_the_path_prefix() {
    let (emu, mut api) = start().await;
    api.region = None;
    let r = api.get("/api/v2/channels").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error":{"errorCode":250003,"message":"Missing required header.","errorName":"REQUIRED_HEADER"}})
    );
    api.region = Some("FKR".into());
    let r = api.get("/api/v2/channels").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["errorCode"], 250020);
    assert_eq!(
        r.json()["error"]["errorName"],
        "OPEN_API_INVALID_REGION_CODE"
    );
    let r = api.get("/api/fin-v2/channels").await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.region = Some("XX".into());
    assert_eq!(
        api.get("/api/fin-v2/channels").await.json()["error"]["errorCode"],
        250020
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_route_gets_the_gateway_404_body() {
    let (emu, api) = start().await;
    for target in [
        "/api/v2/channelz",
        "/api/v1/channels",
        "/api/v2/channels/c/explode",
    ] {
        let r = api.get(target).await;
        assert_eq!(r.status, 404, "{target}");
        assert_eq!(
            r.json(),
            json!({"error":{"errorCode":"300","message":"Not Found Exception","details":"URL not found."}})
        );
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn unknown_channel_is_a_live_station_not_found_error() {
    let (emu, api) = start().await;
    let r = api.get("/api/v2/channels/ls-nope").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error":{"errorCode":250004,"message":"channel not found.","errorName":"NOT_FOUND"}})
    );
    emu.control().set_behaviour(Behaviour {
        not_found_http: 404,
        ..Behaviour::default()
    });
    assert_eq!(api.get("/api/v2/channels/ls-nope").await.status, 404);
    emu.shutdown().await;
}

#[tokio::test]
async fn two_hundred_fifty_channels_come_in_three_stable_pages() {
    let (emu, api) = start().await;
    let ids = emu.control().add_channels(250, "bench");
    emu.control().go_live(&ids[7]).unwrap();
    let mut seen = Vec::new();
    for (page, expected) in [(1, 100), (2, 100), (3, 50), (4, 0)] {
        let r = api
            .get(&format!("/api/v2/channels?pageNo={page}&pageSizeNo=100"))
            .await;
        assert_eq!(r.status, 200);
        let p = model::parse_channel_page(r.text.as_bytes()).unwrap();
        assert_eq!(p.total, Some(250));
        assert_eq!(p.len(), expected, "page {page}");
        seen.extend(p.channels().map(|c| c.channel_id.to_owned()));
    }
    assert_eq!(seen, ids);

    let live = api
        .get("/api/v2/channels?pageNo=1&pageSizeNo=100&channelStatus=PUBLISHING")
        .await
        .json();
    assert_eq!(live["total"], 1);
    assert_eq!(live["content"][0]["channelId"], ids[7].as_str());

    let default_page = api.get("/api/v2/channels").await.json();
    assert_eq!(default_page["content"].as_array().unwrap().len(), 20);

    for bad in ["pageSizeNo=101", "pageSizeNo=0", "pageNo=0"] {
        let r = api.get(&format!("/api/v2/channels?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["error"]["errorCode"], 250002, "{bad}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn start_record_on_a_ready_channel_is_refused_without_records() {
    let (emu, api) = start().await;
    emu.control().add_channel(ChannelSpec::new("c1")).unwrap();
    let r = api.put("/api/v2/channels/c1/startRecord").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error":{"errorCode":250005,"message":"channel not available.","errorName":"NOT_AVAILABLE"}})
    );
    assert!(emu.control().records("c1").is_empty());
    assert_eq!(emu.control().counters().start_record_calls_on("c1"), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn start_duplicate_start_and_stop_behave_and_the_duplicate_is_counted() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live()).unwrap();

    let r = api.put("/api/v2/channels/c1/startRecord").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["total"], 1);
    let (id, rec) = v["content"]["recordList"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert!(id.parse::<i64>().unwrap() >= 27_000);
    assert_eq!(rec["status"], "RECORDING");
    assert_eq!(rec["channelId"], "c1");
    assert_eq!(rec["objectStorageUrl"], "-");
    assert!(rec["shouldDeleteTime"].as_i64().unwrap() > rec["createdTime"].as_i64().unwrap());
    assert!(rec.get("duration").is_none());
    assert_eq!(
        api.get("/api/v2/channels/c1").await.json()["content"]["isRecording"],
        true
    );

    let dup = api.put("/api/v2/channels/c1/startRecord").await;
    assert_eq!(dup.status, 400);
    assert_eq!(dup.json()["error"]["errorCode"], 250005);
    assert_eq!(ctl.counters().start_while_recording, 1);

    let stop = api.put("/api/v2/channels/c1/stopRecord").await;
    assert_eq!(stop.status, 200, "{}", stop.text);
    let stopped = record_list(&stop);
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].status, RecordStatus::Processing);
    assert_eq!(stopped[0].record_id.to_string(), *id);
    assert!(stopped[0].duration.is_some());
    assert_eq!(
        api.get("/api/v2/channels/c1").await.json()["content"]["isRecording"],
        false
    );

    let again = api.put("/api/v2/channels/c1/stopRecord").await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json()["error"]["errorCode"], 250005);

    let c = ctl.counters();
    assert_eq!(c.start_record_calls_on("c1"), 2);
    assert_eq!(c.calls_of(Operation::StopRecord), 2);
    assert_eq!(c.recordings_started, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn duplicate_start_can_return_the_running_records_and_is_still_counted() {
    let (emu, api) = start_with(EmulatorOptions {
        behaviour: Behaviour {
            start_while_recording: WhileRecording::ReturnCurrent,
            start_response_includes_should_delete_time: false,
            ..Behaviour::default()
        },
        ..EmulatorOptions::default()
    })
    .await;
    emu.control()
        .add_channel(ChannelSpec::new("c1").live())
        .unwrap();
    let first = record_list(&api.put("/api/v2/channels/c1/startRecord").await);
    let second = api.put("/api/v2/channels/c1/startRecord").await;
    assert_eq!(second.status, 200);
    assert_eq!(record_list(&second), first);
    assert_eq!(first[0].should_delete_time, None);
    assert_eq!(emu.control().counters().start_while_recording, 1);
    assert_eq!(emu.control().records("c1").len(), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn format_all_starts_two_records_mp4_and_hls_of_one_recording() {
    let (emu, api) = start().await;
    emu.control()
        .add_channel(ChannelSpec::new("c1").live().format(RecordFormat::All))
        .unwrap();
    let r = api.put("/api/fin-v2/channels/c1/startRecord").await;
    assert_eq!(r.status, 400, "KR header on the FKR prefix");
    let mut fkr = api.clone();
    fkr.region = Some("FKR".into());
    let r = fkr.put("/api/fin-v2/channels/c1/startRecord").await;
    assert_eq!(r.json()["total"], 2);
    let recs = record_list(&r);
    assert_eq!(
        recs.iter()
            .map(|r| r.record_type.as_str())
            .collect::<Vec<_>>(),
        ["MP4", "HLS"]
    );
    assert_eq!(recs[0].record_seq, recs[1].record_seq);
    assert_eq!(recs[0].stream_seq, recs[1].stream_seq);
    emu.shutdown().await;
}

#[tokio::test]
async fn auto_upload_record_reaches_transfer_finish_with_an_object_storage_url() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live()).unwrap();
    let id = record_list(&api.put("/api/v2/channels/c1/startRecord").await)[0].record_id;
    ctl.advance(Duration::from_secs(90));
    api.put("/api/v2/channels/c1/stopRecord").await;

    let detail = |api: Signed| async move {
        let r = api.get(&format!("/api/v2/channels/c1/records/{id}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    };
    let v = detail(api.clone()).await;
    assert!(
        v["content"].get("recordList").is_none(),
        "detail has no wrapper"
    );
    assert_eq!(v["content"][id.to_string()]["status"], "PROCESSING");
    assert_eq!(v["content"][id.to_string()]["duration"], 90);

    ctl.advance(Duration::from_secs(2));
    let v = detail(api.clone()).await;
    assert_eq!(v["content"][id.to_string()]["status"], "TRANSFER");

    ctl.advance(Duration::from_secs(2));
    let v = detail(api.clone()).await;
    let rec = &v["content"][id.to_string()];
    assert_eq!(rec["status"], "TRANSFER_FINISH");
    let url = rec["objectStorageUrl"].as_str().unwrap();
    assert!(
        url.starts_with("https://") && url.ends_with(".mp4"),
        "{url}"
    );

    ctl.advance(Duration::from_secs(4 * 24 * 3600));
    let list = record_list(&api.get("/api/v2/channels/c1/records").await);
    assert_eq!(
        list[0].status,
        RecordStatus::TransferFinish,
        "uploaded files stay"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn manual_upload_record_waits_in_transfer_ready_until_the_upload_api() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(
        ChannelSpec::new("m1")
            .live()
            .record_type(RecordType::ManualUpload),
    )
    .unwrap();
    let id = record_list(&api.put("/api/v2/channels/m1/startRecord").await)[0].record_id;

    let early = api
        .post("/api/v2/buckets/archive/upload", &json!({"recordIds":[id]}))
        .await;
    assert_eq!(early.status, 400, "RECORDING cannot be uploaded");
    assert_eq!(early.json()["error"]["errorCode"], 250005);

    api.put("/api/v2/channels/m1/stopRecord").await;
    ctl.advance(Duration::from_secs(60));
    let list = record_list(&api.get("/api/v2/channels/m1/records").await);
    assert_eq!(list[0].status, RecordStatus::TransferReady);
    assert_eq!(list[0].object_storage_url, None);

    let up = api
        .post(
            "/api/v2/buckets/archive/upload",
            &json!({"recordIds":[id],"accessControl":"PUBLIC_READ"}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text);
    let v = up.json();
    assert_eq!(v["content"]["bucketName"], "archive");
    assert_eq!(v["content"]["accessControl"], "PUBLIC_READ");
    assert_eq!(
        v["content"]["uploadedRecords"][id.to_string()]["status"],
        "TRANSFER"
    );

    ctl.advance(Duration::from_secs(2));
    let list = record_list(&api.get("/api/v2/channels/m1/records").await);
    assert_eq!(list[0].status, RecordStatus::TransferFinish);
    assert!(
        list[0]
            .object_storage_url
            .as_deref()
            .unwrap()
            .contains("/archive/")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn record_not_uploaded_is_deleted_once_should_delete_time_passes() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(
        ChannelSpec::new("m1")
            .live()
            .record_type(RecordType::ManualUpload),
    )
    .unwrap();
    let started = record_list(&api.put("/api/v2/channels/m1/startRecord").await);
    let sdt = started[0].should_delete_time.unwrap();
    assert_eq!(sdt - started[0].created_time.unwrap(), 3 * 24 * 3600 * 1000);
    api.put("/api/v2/channels/m1/stopRecord").await;

    ctl.advance(Duration::from_secs(3 * 24 * 3600 - 60));
    let list = record_list(&api.get("/api/v2/channels/m1/records").await);
    assert_eq!(list[0].status, RecordStatus::TransferReady);
    assert!(list[0].should_delete_time.unwrap() > now_ms());

    ctl.advance(Duration::from_secs(61));
    let list = record_list(&api.get("/api/v2/channels/m1/records").await);
    assert_eq!(list[0].status, RecordStatus::Deleted);
    let id = list[0].record_id;
    let up = api
        .post("/api/v2/buckets/archive/upload", &json!({"recordIds":[id]}))
        .await;
    assert_eq!(up.status, 400);

    ctl.advance(Duration::from_secs(25 * 3600));
    let list = record_list(&api.get("/api/v2/channels/m1/records").await);
    assert!(
        list.is_empty(),
        "deleted records leave the list after a day"
    );
    assert_eq!(ctl.records("m1")[0].status, RecordStatus::Deleted);
    emu.shutdown().await;
}

#[tokio::test]
async fn immediate_on_air_channel_records_by_itself_without_start_calls() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("auto").immediate_on_air(true))
        .unwrap();
    ctl.go_live("auto").unwrap();
    let ch = api.get("/api/v2/channels/auto").await.json();
    assert_eq!(ch["content"]["channelStatus"], "PUBLISHING");
    assert_eq!(ch["content"]["isRecording"], true);
    assert_eq!(ch["content"]["immediateOnAir"], true);
    let list = record_list(&api.get("/api/v2/channels/auto/records").await);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, RecordStatus::Recording);

    ctl.go_offline("auto").unwrap();
    let list = record_list(&api.get("/api/v2/channels/auto/records").await);
    assert_eq!(list[0].status, RecordStatus::Processing);
    let c = ctl.counters();
    assert_eq!(c.start_record_calls_on("auto"), 0);
    assert_eq!(c.start_while_recording, 0);
    assert_eq!(c.recordings_started, 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn status_5xx_fault_fires_its_count_then_the_call_succeeds() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live()).unwrap();
    ctl.add_fault(
        FaultRule::new(Operation::StartRecord, Fault::Status5xx { status: 503 }).times(2),
    );
    for _ in 0..2 {
        let r = api.put("/api/v2/channels/c1/startRecord").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["error"]["errorCode"], "500");
        assert!(ctl.records("c1").is_empty(), "a 5xx fault does nothing");
    }
    let r = api.put("/api/v2/channels/c1/startRecord").await;
    assert_eq!(r.status, 200);
    let c = ctl.counters();
    assert_eq!(c.start_record_calls_on("c1"), 3);
    assert_eq!(c.faults_injected, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn rate_limit_fault_answers_429_with_retry_after() {
    let (emu, api) = start().await;
    emu.control().add_fault(
        FaultRule::new(
            Operation::ListChannels,
            Fault::RateLimit {
                retry_after_secs: Some(3),
            },
        )
        .times(1),
    );
    let r = api.get("/api/v2/channels").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "3");
    assert_eq!(r.json()["error"]["errorCode"], "420");
    assert_eq!(api.get("/api/v2/channels").await.status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn latency_fault_delays_the_answer() {
    let (emu, api) = start().await;
    emu.control()
        .set_fault(Operation::Any, Fault::latency(Duration::from_millis(300)));
    let t = Instant::now();
    let r = api.get("/api/v2/channels").await;
    assert_eq!(r.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    emu.control().clear_faults();
    emu.shutdown().await;
}

#[tokio::test]
async fn hold_fault_makes_the_client_time_out_and_shutdown_still_completes() {
    let (emu, mut api) = start().await;
    emu.control().set_fault(Operation::GetChannel, Fault::Hold);
    emu.control().add_channel(ChannelSpec::new("c1")).unwrap();
    api.client = http_client(Duration::from_millis(300));
    let err = api
        .request(Method::GET, "/api/v2/channels/c1")
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err}");

    // A request still held when the emulator stops is answered, so shutdown does not hang.
    let held = tokio::spawn({
        let mut api = api.clone();
        api.client = http_client(Duration::from_secs(30));
        async move { api.get("/api/v2/channels/c1").await.status }
    });
    let ctl = emu.control();
    wait_for(Duration::from_secs(10), "the held request", async || {
        (ctl.counters().calls_of(Operation::GetChannel) >= 2).then_some(())
    })
    .await
    .unwrap();
    let t = Instant::now();
    emu.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(held.await.unwrap(), 503);
}

#[tokio::test]
async fn apply_then_502_starts_the_recording_but_answers_502() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live()).unwrap();
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::ApplyThen502).times(1));
    let r = api.put("/api/v2/channels/c1/startRecord").await;
    assert_eq!(r.status, 502);
    assert!(r.text.contains("502 Bad Gateway"));
    let ch = api.get("/api/v2/channels/c1").await.json();
    assert_eq!(ch["content"]["isRecording"], true, "the start happened");
    let list = record_list(&api.get("/api/v2/channels/c1/records").await);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, RecordStatus::Recording);
    emu.shutdown().await;
}

#[tokio::test]
async fn apply_then_hold_starts_the_recording_and_never_answers() {
    let (emu, mut api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live()).unwrap();
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::ApplyThenHold).times(1));
    api.client = http_client(Duration::from_millis(300));
    let err = api
        .request(Method::PUT, "/api/v2/channels/c1/startRecord")
        .send()
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err}");
    assert!(ctl.channel("c1").unwrap().is_recording);
    emu.shutdown().await;
}

#[tokio::test]
async fn apply_then_drop_starts_the_recording_and_closes_the_connection_unanswered() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live()).unwrap();
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::ApplyThenDrop).times(1));
    let err = api
        .request(Method::PUT, "/api/v2/channels/c1/startRecord")
        .send()
        .await
        .expect_err("no answer");
    assert!(!err.is_timeout() && err.status().is_none(), "{err}");
    assert!(
        ctl.channel("c1").unwrap().is_recording,
        "the start happened"
    );
    assert_eq!(api.put("/api/v2/channels/c1/startRecord").await.status, 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn late_apply_is_done_after_the_hold_even_when_the_client_gave_up_and_answers_504() {
    let (emu, mut api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live()).unwrap();
    ctl.add_fault(
        FaultRule::new(Operation::StartRecord, Fault::LateApply { hold_ms: 1_000 }).times(1),
    );
    api.client = http_client(Duration::from_millis(300));
    let sent = Instant::now();
    let err = api
        .request(Method::PUT, "/api/v2/channels/c1/startRecord")
        .send()
        .await
        .expect_err("the client gives up first");
    assert!(err.is_timeout(), "{err}");
    assert!(
        !ctl.channel("c1").unwrap().is_recording,
        "not applied while held"
    );
    // The client has disconnected; the backend applies the start anyway.
    wait_for(Duration::from_secs(10), "the late start", async || {
        ctl.channel("c1").unwrap().is_recording.then_some(())
    })
    .await
    .unwrap();
    assert!(sent.elapsed() >= Duration::from_millis(1_000));
    let c = ctl.counters();
    assert_eq!(c.late_applied, 1);
    assert_eq!(c.recordings_started, 1);
    assert_eq!(c.faults_by_kind.get("late_apply"), Some(&1));

    // A client patient enough sees the gateway's timeout answer, and the stop took effect.
    ctl.add_fault(
        FaultRule::new(Operation::StopRecord, Fault::LateApply { hold_ms: 300 }).times(1),
    );
    api.client = http_client(Duration::from_secs(10));
    let r = api.put("/api/v2/channels/c1/stopRecord").await;
    assert_eq!(r.status, 504);
    assert_eq!(
        r.json(),
        json!({"error":{"errorCode":"510","message":"Endpoint Timeout","details":"Endpoint read timed out."}})
    );
    assert!(
        !ctl.channel("c1").unwrap().is_recording,
        "the stop happened"
    );
    assert_eq!(ctl.counters().late_applied, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn fault_mix_draws_its_shares_reproducibly_and_rules_come_first() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1")).unwrap();
    let mix =
        FaultMix::from_specs(42, &["get_channel@status_5xx=30:status=500,rate_limit=20"]).unwrap();
    let run = async |ctl: &lsrecd::emulator::Control| {
        ctl.set_fault_mix(mix.clone()).unwrap();
        let mut statuses = Vec::new();
        for _ in 0..60 {
            statuses.push(api.get("/api/v2/channels/c1").await.status);
        }
        statuses
    };
    let first = run(&ctl).await;
    let count = |s: u16| first.iter().filter(|x| **x == s).count();
    assert!(
        count(500) > 5 && count(429) > 3 && count(200) > 15,
        "{first:?}"
    );
    assert_eq!(count(500) + count(429) + count(200), 60, "{first:?}");
    // Setting the mix again restarts its draws: the same seed, the same answers.
    assert_eq!(run(&ctl).await, first);
    // Operations the mix does not name are served normally.
    for _ in 0..20 {
        assert_eq!(api.get("/api/v2/channels").await.status, 200);
    }
    // A rule comes before the mix.
    ctl.add_fault(FaultRule::new(Operation::GetChannel, Fault::Status5xx { status: 503 }).times(3));
    for _ in 0..3 {
        assert_eq!(api.get("/api/v2/channels/c1").await.status, 503);
    }
    ctl.clear_fault_mix();
    assert_eq!(ctl.fault_mix(), None);
    for _ in 0..20 {
        assert_eq!(api.get("/api/v2/channels/c1").await.status, 200);
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn fault_mix_over_the_control_api_is_set_read_refused_and_removed() {
    let (emu, api) = start().await;
    emu.control().add_channel(ChannelSpec::new("c1")).unwrap();
    let http = http_client(Duration::from_secs(5));
    let url = format!("{}/_emulator/fault_mix", emu.base_url());

    let bad = http
        .put(&url)
        .json(&json!({"spec": ["status_5xx=70", "hold=40"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let why: Value = bad.json().await.unwrap();
    assert!(
        why["error"].as_str().unwrap().contains("more than 100%"),
        "{why}"
    );
    let typo = http
        .put(&url)
        .json(&json!({"spec": ["status_5xx=10,tea=5"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(typo.status(), 400);
    assert_eq!(
        http.get(&url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        Value::Null
    );

    let set: Value = http
        .put(&url)
        .json(&json!({
            "spec": ["list_channels@hold=10"],
            "entries": [{"operation": "get_channel", "percent": 100,
                         "fault": {"kind": "status_5xx", "status": 502}}],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seed = set["seed"].as_u64().expect("a random seed, shown");
    let shown: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown, set);
    assert_eq!(shown["entries"].as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(api.get("/api/v2/channels/c1").await.status, 502);
    let counters: Value = http
        .get(format!("{}/_emulator/counters", emu.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["faults_by_kind"]["status_5xx"], 1);

    // DELETE /faults removes the rules only; DELETE /fault_mix the mix.
    http.delete(format!("{}/_emulator/faults", emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        http.get(&url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["seed"],
        seed
    );
    assert_eq!(http.delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(api.get("/api/v2/channels/c1").await.status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn malformed_body_fault_applies_the_call_and_sends_unreadable_json() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live()).unwrap();
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::MalformedBody).times(1));
    let r = api.put("/api/v2/channels/c1/startRecord").await;
    assert_eq!(r.status, 200);
    assert!(
        serde_json::from_str::<Value>(&r.text).is_err(),
        "{}",
        r.text
    );
    assert!(model::parse_records(r.text.as_bytes()).is_err());
    assert_eq!(ctl.records("c1").len(), 1);

    // Cutting never splits a character of a Hangul channel name.
    for i in 0..4 {
        ctl.add_channel(ChannelSpec::new(format!("k{i}")).name("아침 뉴스 스튜디오"))
            .unwrap();
    }
    ctl.add_fault(FaultRule::new(Operation::ListChannels, Fault::MalformedBody).times(1));
    let r = api.get("/api/v2/channels").await;
    assert_eq!(r.status, 200);
    assert!(model::parse_channel_page(r.text.as_bytes()).is_err());
    emu.shutdown().await;
}

#[tokio::test]
async fn gateway_and_live_station_error_faults_answer_their_bodies_without_applying() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("c1").live()).unwrap();
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
    ctl.add_fault(
        FaultRule::new(
            Operation::StartRecord,
            Fault::LiveStationError {
                error: lsrecd::emulator::LiveStationError::new(
                    400,
                    250010,
                    "POLICY_CHECK_FAILED",
                    "Permission denied.",
                ),
            },
        )
        .times(1),
    );
    let r = api.put("/api/v2/channels/c1/startRecord").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error":{"errorCode":"210","message":"Permission Denied","details":"A subscription to the API is required."}})
    );
    let r = api.put("/api/v2/channels/c1/startRecord").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["errorName"], "POLICY_CHECK_FAILED");
    assert!(ctl.records("c1").is_empty());
    assert_eq!(api.put("/api/v2/channels/c1/startRecord").await.status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn channel_scoped_fault_spares_other_channels() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("a").live()).unwrap();
    ctl.add_channel(ChannelSpec::new("b").live()).unwrap();
    ctl.add_fault(FaultRule::new(Operation::Any, Fault::Status5xx { status: 500 }).channel("a"));
    let r = api.put("/api/v2/channels/a/startRecord").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"]["errorName"], "INTERNAL_SERVER_ERROR");
    assert_eq!(api.put("/api/v2/channels/b/startRecord").await.status, 200);
    assert_eq!(api.get("/api/v2/channels").await.status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn processing_and_transfer_fail_faults_end_records_in_their_fail_states() {
    let (emu, api) = start_with(EmulatorOptions {
        lifecycle: Lifecycle {
            processing: Duration::from_secs(1),
            transfer: Duration::from_secs(1),
            ..Lifecycle::default()
        },
        ..EmulatorOptions::default()
    })
    .await;
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new("p").live()).unwrap();
    ctl.add_channel(ChannelSpec::new("t").live()).unwrap();
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::ProcessingFail).channel("p"));
    ctl.add_fault(FaultRule::new(Operation::StartRecord, Fault::TransferFail).channel("t"));
    for c in ["p", "t"] {
        api.put(&format!("/api/v2/channels/{c}/startRecord")).await;
        api.put(&format!("/api/v2/channels/{c}/stopRecord")).await;
    }
    ctl.advance(Duration::from_secs(5));
    assert_eq!(ctl.records("p")[0].status, RecordStatus::ProcessingFail);
    let failed = &ctl.records("t")[0];
    assert_eq!(failed.status, RecordStatus::TransferFail);

    // TRANSFER_FAIL can be uploaded again.
    let up = api
        .post(
            "/api/v2/buckets/retry/upload",
            &json!({"recordIds":[failed.record_id]}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text);
    ctl.advance(Duration::from_secs(1));
    assert_eq!(ctl.records("t")[0].status, RecordStatus::TransferFinish);
    emu.shutdown().await;
}

#[tokio::test]
async fn control_api_over_http_drives_channels_faults_clock_and_counters() {
    let (emu, api) = start().await;
    let http = http_client(Duration::from_secs(10));
    let ctl = |path: &str| format!("{}/_emulator{path}", api.base);

    let r = http
        .post(ctl("/channels"))
        .json(&json!({"id":"h1","format":"ALL","record_type":"MANUAL_UPLOAD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let dup = http
        .post(ctl("/channels"))
        .json(&json!({"id":"h1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    let bulk: Value = http
        .post(ctl("/channels/bulk"))
        .json(&json!({"count":3,"prefix":"b","live":1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk["ids"], json!(["b-00001", "b-00002", "b-00003"]));
    assert!(
        emu.control()
            .channel("b-00001")
            .unwrap()
            .channel_status
            .is_live()
    );

    assert_eq!(
        http.post(ctl("/channels/h1/live"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        http.post(ctl("/channels/zz/live"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let ch: Value = http
        .get(ctl("/channels/h1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ch["channelStatus"], "PUBLISHING");

    let fault = json!({"operation":"start_record","times":1,"fault":{"kind":"apply_then_502"}});
    assert_eq!(
        http.post(ctl("/faults"))
            .json(&fault)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(api.put("/api/v2/channels/h1/startRecord").await.status, 502);
    assert_eq!(api.put("/api/v2/channels/h1/startRecord").await.status, 400);

    let counters: Value = http
        .get(ctl("/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["start_while_recording"], 1);
    assert_eq!(counters["start_record_calls"]["h1"], 2);
    assert_eq!(counters["calls"]["start_record"], 2);
    assert_eq!(counters["faults_injected"], 1);

    let recs: Value = http
        .get(ctl("/channels/h1/records"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recs = recs["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert!(recs[0]["recordId"].as_i64().is_some());
    assert_eq!(recs[0]["status"], "RECORDING");

    assert_eq!(
        http.post(ctl("/channels/h1/offline"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let adv = http
        .post(ctl("/advance"))
        .json(&json!({"ms": 60_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(adv.status(), 204);
    let all: Value = http
        .get(ctl("/records?channel=h1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["records"][0]["status"], "TRANSFER_READY");

    let behaviour = json!({"stop_while_idle":{"kind":"return_latest"}});
    assert_eq!(
        http.put(ctl("/behaviour"))
            .json(&behaviour)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let stop = api.put("/api/v2/channels/h1/stopRecord").await;
    assert_eq!(stop.status, 200);
    assert_eq!(record_list(&stop).len(), 2);

    let clock = http
        .put(ctl("/clock"))
        .json(&json!({"offset_ms": -420_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(clock.status(), 204);
    assert_eq!(
        api.get("/api/v2/channels").await.json(),
        gateway_401("Expired timestamp.")
    );
    assert_eq!(
        http.delete(ctl("/counters")).send().await.unwrap().status(),
        204
    );
    assert_eq!(emu.control().counters().requests, 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn lsrecd_emulator_binary_prints_its_address_serves_and_stops_on_sigterm() {
    let mut emulator = EmulatorProcess::start_with(
        &[
            "--access-key",
            ACCESS,
            "--secret-key",
            SECRET,
            "--channels",
            "3",
            "--live",
            "1",
        ],
        None,
    )
    .await;
    let base = emulator.base.clone();
    let process = &emulator.process;
    let rest = wait_for(
        Duration::from_secs(5),
        "the end of the banner",
        async || {
            let stdout = process.stdout();
            stdout
                .lines()
                .any(|l| l.starts_with("Ctrl-C"))
                .then(|| stdout.lines().skip(1).collect::<Vec<_>>().join("\n"))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", process.stdout()));
    assert!(rest.contains(ACCESS), "{rest}");
    assert!(
        !rest.contains(SECRET),
        "a given secret is not echoed: {rest}"
    );

    let api = Signed::new(&base, ACCESS, SECRET);
    let page = api.get("/api/v2/channels?pageNo=1&pageSizeNo=100").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.json()["total"], 3);
    let live = page.json()["content"][0]["channelId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        api.put(&format!("/api/v2/channels/{live}/startRecord"))
            .await
            .status,
        200
    );
    let counters: Value = http_client(Duration::from_secs(5))
        .get(format!("{base}/_emulator/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["recordings_started"], 1);

    let status = emulator
        .process
        .terminate(Duration::from_secs(10))
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_binary_takes_a_fault_mix_and_prints_its_seed_and_refuses_a_bad_one() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lsrecd"))
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--fault-mix",
            "status_5xx=20,teapot=5",
        ])
        .output()
        .await
        .expect("lsrecd runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--fault-mix") && stderr.contains("teapot"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "it did not start serving");

    let mut emulator = EmulatorProcess::start_with(
        &[
            "--access-key",
            ACCESS,
            "--secret-key",
            SECRET,
            "--channels",
            "1",
            "--fault-mix",
            "get_channel@status_5xx=100:status=500",
            "--fault-mix",
            "start_record+stop_record@late_apply=50:hold_ms=100",
            "--fault-seed",
            "12345",
        ],
        None,
    )
    .await;
    let process = &emulator.process;
    let banner = wait_for(Duration::from_secs(5), "the fault mix line", async || {
        process
            .stdout()
            .lines()
            .find(|l| l.contains("fault mix:"))
            .map(str::to_owned)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", process.stdout()));
    assert!(banner.contains("--fault-seed 12345"), "{banner}");
    let mix = emulator.get("/fault_mix").await;
    assert_eq!(mix["seed"], 12345);
    assert_eq!(mix["entries"].as_array().unwrap().len(), 3, "{mix}");
    let api = Signed::new(&emulator.base, ACCESS, SECRET);
    assert_eq!(
        api.get("/api/v2/channels/ls-emulator-00001").await.status,
        500
    );
    assert_eq!(api.get("/api/v2/channels").await.status, 200);
    let status = emulator
        .process
        .terminate(Duration::from_secs(10))
        .await
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_binary_refuses_a_listen_address_other_machines_can_reach_without_allow_remote() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lsrecd"))
            .args(["emulator", "--listen", listen])
            .output()
            .await
            .expect("lsrecd runs");

        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(stderr.contains("--allow-remote"), "{listen}: {stderr}");
        assert!(out.stdout.is_empty(), "it did not start serving");
    }
}

#[tokio::test]
async fn with_allow_remote_the_control_api_needs_the_token_printed_at_start() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lsrecd"))
        .args(["emulator", "--listen", "0.0.0.0:0", "--allow-remote"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("lsrecd runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await
    {
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    let port = printed
        .lines()
        .find_map(|l| l.strip_prefix("listening on http://0.0.0.0:"))
        .unwrap_or_else(|| panic!("no address in:\n{printed}"))
        .trim()
        .to_string();
    let token = printed
        .lines()
        .find_map(|l| l.split_once("Authorization: Bearer "))
        .map(|(_, rest)| rest.trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("no token in:\n{printed}"));
    assert!(token.len() >= 32, "{token:?}");
    // Only ever reached over loopback here.
    let counters = format!("http://127.0.0.1:{port}/_emulator/counters");
    let http = http_client(Duration::from_secs(5));

    let anonymous = http.get(&counters).send().await.unwrap().status();
    let guessed = http
        .get(&counters)
        .bearer_auth("0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap()
        .status();
    let with_token = http
        .get(&counters)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    let add_without_token = http
        .post(format!("http://127.0.0.1:{port}/_emulator/channels"))
        .json(&json!({"id": "ls-intruder"}))
        .send()
        .await
        .unwrap()
        .status();

    assert_eq!(anonymous, 401);
    assert_eq!(guessed, 401);
    assert_eq!(with_token, 200);
    assert_eq!(add_without_token, 401);
    let _ = child.kill().await;
}

#[tokio::test]
async fn on_loopback_the_control_api_stays_open() {
    let (emu, _) = start().await;
    let status = http_client(Duration::from_secs(5))
        .get(format!("{}/_emulator/counters", emu.base_url()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_call_log_lists_every_api_call_in_order_with_its_status_over_http() {
    let (emu, api) = start().await;
    let ctl = emu.control();
    ctl.add_channels(3, "log");
    ctl.go_live("log-00002").unwrap();
    let before = support::signed::now_ms();
    assert_eq!(
        api.get("/api/v2/channels?pageNo=2&pageSizeNo=2")
            .await
            .status,
        200
    );
    assert_eq!(api.get("/api/v2/channels/log-00002").await.status, 200);
    assert_eq!(
        api.put("/api/v2/channels/log-00002/startRecord")
            .await
            .status,
        200
    );
    assert_eq!(
        api.put("/api/v2/channels/log-00002/startRecord")
            .await
            .status,
        400
    );
    assert_eq!(api.get("/api/v2/nowhere").await.status, 404);
    let mut wrong = api.clone();
    wrong.secret = "not-the-secret".into();
    assert_eq!(
        wrong
            .put("/api/v2/channels/log-00001/stopRecord")
            .await
            .status,
        401
    );
    let after = support::signed::now_ms();

    // Over HTTP, as a separate process would read it.
    let http = http_client(Duration::from_secs(5));
    let url = format!("{}/_emulator/calls", emu.base_url());
    let page: lsrecd::emulator::CallPage =
        http.get(&url).send().await.unwrap().json().await.unwrap();
    let seen: Vec<_> = page
        .calls
        .iter()
        .map(|c| {
            (
                c.seq,
                c.operation,
                c.page,
                c.channel_id.as_deref(),
                c.status,
            )
        })
        .collect();
    let id = Some("log-00002");
    assert_eq!(
        seen,
        [
            (1, Some(Operation::ListChannels), Some(2), None, Some(200)),
            (2, Some(Operation::GetChannel), None, id, Some(200)),
            (3, Some(Operation::StartRecord), None, id, Some(200)),
            (4, Some(Operation::StartRecord), None, id, Some(400)),
            (5, None, None, None, Some(404)),
            (
                6,
                Some(Operation::StopRecord),
                None,
                Some("log-00001"),
                Some(401)
            ),
        ]
    );
    for c in &page.calls {
        let answered = c.answered_ms().expect("answered");
        assert!(before <= c.arrived_ms() && c.arrived_ms() <= answered && answered <= after);
    }
    assert_eq!((page.next, page.missed, page.more), (6, 0, false));

    let later: lsrecd::emulator::CallPage = http
        .get(format!("{url}?since=4&limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(later.calls.len(), 1);
    assert_eq!((later.calls[0].seq, later.next, later.more), (5, 5, true));
    // The counters are kept as before, beside the log.
    assert_eq!(ctl.counters().start_record_calls_on("log-00002"), 2);
    assert_eq!(ctl.calls(0, 100), page);
    emu.shutdown().await;
}
