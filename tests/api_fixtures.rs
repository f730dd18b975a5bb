//! The Live Station answers lsrecd relies on, held to JSON fixtures written by hand from the API
//! documentation (`tests/fixtures/`, see its README): the client's parser must read each one into
//! the documented values, and the emulator's real HTTP answer for the same endpoint must have the
//! same shape (the same keys at every level, the same JSON types, documented optional fields
//! aside), compared as JSON values. The emulator spells its fields on its own and the client
//! reads them with its own names, so neither can agree with the other on a misspelling without
//! the fixture disagreeing.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use axum::http::HeaderMap;
use lsrecd::emulator::{
    ChannelSpec, Emulator, EmulatorOptions, Fault, FaultRule, Lifecycle, Operation, RecordFormat,
    RecordType, RunningEmulator,
};
use lsrecd::livestation::client::classify;
use lsrecd::livestation::model::{ErrorBody, parse_channel, parse_channel_page, parse_records};
use lsrecd::livestation::{ApiError, ChannelStatus, RecordStatus};
use serde_json::{Value, json};
use support::signed::Signed;

const ACCESS: &str = "FIXTURE-TEST-ACCESS";
const SECRET: &str = "fixture-test-secret-7Hq2";

/// Fields the documentation gives as present only sometimes. Absent from an answer, or present
/// when the fixture leaves them out, they are no difference in shape.
const OPTIONAL: &[&str] = &[
    // Records: `shouldDeleteTime` is missing from the current startRecord field table;
    // `duration` is absent while recording; the media fields are absent from an MP4 record
    // while it records (the documented FKR startRecord answer).
    "shouldDeleteTime",
    "duration",
    "resolution",
    "videoBitrate",
    "videoFrameRate",
    "audioBitrate",
    "audioCodec",
    // Channels: set only for some channels, or documented for other channel kinds or newer
    // API versions.
    "callbackEndpoint",
    "globalPublishUrl",
    "ingestProtocol",
    "isStreamFailOver",
    "drmEnabledYn",
    // Errors: the gateway's tables list `errorCode` and `message`; real answers add `details`,
    // the standardised schema `detail`.
    "details",
    "detail",
];

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

// ---- shape comparison -----------------------------------------------------------------------

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// An object keyed by record ids (`recordList`, record detail, `uploadedRecords`).
fn is_id_map(o: &serde_json::Map<String, Value>) -> bool {
    !o.is_empty()
        && o.keys()
            .all(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
}

/// One object with every key any of `entries` has (the first value of each).
fn union_of<'a>(entries: impl Iterator<Item = &'a Value>) -> Value {
    let mut all = serde_json::Map::new();
    for entry in entries {
        if let Value::Object(o) = entry {
            for (k, v) in o {
                all.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    Value::Object(all)
}

/// Where `actual` differs in shape from `expected`, one line per difference.
fn shape_differences(expected: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) if is_id_map(e) => {
            if !is_id_map(a) {
                out.push(format!(
                    "{path}: not an object keyed by record id: {actual}"
                ));
                return;
            }
            let template = union_of(e.values());
            for (id, value) in a {
                shape_differences(&template, value, &format!("{path}.{id}"), out);
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            let optional = |k: &String| OPTIONAL.contains(&k.as_str());
            for k in e.keys().filter(|k| !a.contains_key(*k) && !optional(k)) {
                out.push(format!("{path}.{k}: missing"));
            }
            for k in a.keys().filter(|k| !e.contains_key(*k) && !optional(k)) {
                out.push(format!("{path}.{k}: not a documented field"));
            }
            for (k, v) in e {
                if let Some(w) = a.get(k) {
                    shape_differences(v, w, &format!("{path}.{k}"), out);
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            let template = union_of(e.iter());
            for (i, item) in a.iter().enumerate() {
                let expected = if e.first().is_some_and(Value::is_object) {
                    &template
                } else {
                    &e[0]
                };
                shape_differences(expected, item, &format!("{path}[{i}]"), out);
            }
        }
        (e, a) if kind(e) != kind(a) => out.push(format!(
            "{path}: {} where the fixture has {}",
            kind(a),
            kind(e)
        )),
        _ => {}
    }
}

/// Fails unless `actual` has the shape of the fixture `name`.
fn assert_shape(name: &str, actual: &Value) {
    let expected = fixture_json(name);
    let mut differences = Vec::new();
    shape_differences(&expected, actual, "$", &mut differences);
    assert!(
        differences.is_empty(),
        "the emulator's answer differs from {name}:\n  {}\nanswer: {actual:#}",
        differences.join("\n  ")
    );
}

#[test]
fn the_shape_comparison_notices_missing_extra_and_retyped_fields_but_not_optional_ones() {
    let expected =
        json!({"content": {"recordList": {"1": {"status": "RECORDING", "recordSeq": 1}}}});
    let mut out = Vec::new();
    let same =
        json!({"content": {"recordList": {"7": {"status": "X", "recordSeq": 2, "duration": 5}}}});
    shape_differences(&expected, &same, "$", &mut out);
    assert!(out.is_empty(), "{out:?}");

    let wrong = json!({"content": {"recordList": {"7": {"stauts": "X", "recordSeq": "2"}}}});
    shape_differences(&expected, &wrong, "$", &mut out);
    assert_eq!(
        out.iter().collect::<BTreeSet<_>>(),
        [
            "$.content.recordList.7.status: missing",
            "$.content.recordList.7.stauts: not a documented field",
            "$.content.recordList.7.recordSeq: string where the fixture has number",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .iter()
        .collect()
    );
    out.clear();
    let array = json!({"content": {"recordList": []}});
    shape_differences(&expected, &array, "$", &mut out);
    assert_eq!(
        out,
        ["$.content.recordList: array where the fixture has object"]
    );
}

// ---- (1) the client's parser reads each fixture into the documented values -----------------

#[test]
fn the_channel_list_page_is_read_with_every_channel_and_the_total() {
    let page = parse_channel_page(fixture("listChannels-response.json").as_bytes()).unwrap();
    assert_eq!(page.total, Some(2));
    assert!(page.skipped.is_empty(), "{:?}", page.skipped);
    let channels = page.to_channels();
    let ids: Vec<&str> = channels.iter().map(|c| c.channel_id.as_str()).collect();
    assert_eq!(ids, ["ls-20250814120000-PZohi", "ls-20250814120500-Xk2Qa"]);
    let (a, b) = (&channels[0], &channels[1]);
    assert_eq!(a.channel_status, ChannelStatus::Publishing);
    assert!(a.is_recording && !a.immediate_on_air);
    assert_eq!(b.channel_status, ChannelStatus::Ready);
    assert!(!b.is_recording && b.immediate_on_air);
    let settings = b.record.as_ref().expect("record settings");
    assert_eq!(settings.upload_type.as_deref(), Some("MANUAL_UPLOAD"));
    assert_eq!(settings.format.as_deref(), Some("ALL"));
    assert_eq!(settings.bucket_name.as_deref(), Some("broadcast-archive"));
    assert_eq!(settings.access_control.as_deref(), Some("PUBLIC_READ"));
    assert_eq!(b.created_time, Some(1_755_151_500_000));
}

#[test]
fn the_channel_info_is_read_with_status_recording_flag_and_record_settings() {
    let channel = parse_channel(fixture("getChannel-response.json").as_bytes()).unwrap();
    assert_eq!(channel.channel_id, "ls-20250814120000-PZohi");
    assert_eq!(channel.channel_name.as_deref(), Some("studio-a"));
    assert_eq!(channel.channel_status, ChannelStatus::Publishing);
    assert!(channel.is_recording);
    let settings = channel.record.expect("record settings");
    assert_eq!(settings.upload_type.as_deref(), Some("AUTO_UPLOAD"));
    assert_eq!(settings.format.as_deref(), Some("MP4"));
    assert_eq!(settings.file_path.as_deref(), Some("/studio-a"));
    assert_eq!(channel.created_time, Some(1_755_151_200_000));
}

#[test]
fn the_documented_start_record_answer_is_read_as_two_records_of_one_recording() {
    let set = parse_records(fixture("startRecord-response-fkr.json").as_bytes()).unwrap();
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    let ids: Vec<i64> = set.records.iter().map(|r| r.record_id).collect();
    assert_eq!(ids, [27195, 27196]);
    for r in &set.records {
        assert_eq!(r.status, RecordStatus::Recording);
        assert_eq!(r.record_seq, Some(123_175));
        assert_eq!(r.should_delete_time, Some(1_621_843_688_000));
        assert_eq!(r.duration, None);
    }
    assert_eq!(set.records[1].video_frame_rate, Some(30.0));
}

#[test]
fn the_stop_record_answer_is_read_with_the_duration_and_no_storage_url() {
    let set = parse_records(fixture("stopRecord-response.json").as_bytes()).unwrap();
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    assert_eq!(set.records.len(), 1);
    let r = &set.records[0];
    assert_eq!(r.record_id, 27195);
    assert_eq!(r.status, RecordStatus::Processing);
    assert_eq!(r.duration, Some(3600));
    assert_eq!(r.video_frame_rate, Some(29.97));
    assert_eq!(r.object_storage_url, None);
}

#[test]
fn the_records_list_is_read_with_each_record_in_its_own_state() {
    let set = parse_records(fixture("listRecords-response.json").as_bytes()).unwrap();
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    let (done, running) = (&set.records[0], &set.records[1]);
    assert_eq!((done.record_id, running.record_id), (27195, 27201));
    assert_eq!(done.status, RecordStatus::TransferFinish);
    assert!(done.status.is_final());
    assert_eq!(
        done.object_storage_url.as_deref(),
        Some(
            "https://kr.object.ncloudstorage.com/broadcast-archive/studio-a/138717-123175-202508141500.mp4"
        )
    );
    assert_eq!(running.status, RecordStatus::Recording);
    assert_eq!(
        (running.duration, running.resolution.as_deref()),
        (None, None)
    );
    assert_eq!(running.should_delete_time, Some(1_755_496_800_210));
}

#[test]
fn the_record_detail_without_a_record_list_wrapper_is_read() {
    let set = parse_records(fixture("getRecord-response.json").as_bytes()).unwrap();
    assert_eq!(set.records.len(), 1);
    let r = &set.records[0];
    assert_eq!(r.record_id, 27195);
    assert_eq!(r.status, RecordStatus::TransferReady);
    assert!(r.status.is_uploadable());
    assert_eq!(r.should_delete_time, Some(1_755_410_400_456));
}

#[test]
fn the_upload_answer_is_json_with_its_bucket_and_access_control() {
    // The client hands the upload answer on as JSON; nothing in it is read but its success.
    let v = fixture_json("upload-response.json");
    assert_eq!(v["content"]["bucketName"], "broadcast-archive");
    assert_eq!(v["content"]["accessControl"], "PRIVATE");
    assert!(v["content"]["uploadedRecords"].is_object());
}

fn classified(status: u16, name: &str) -> ApiError {
    classify(status, &HeaderMap::new(), fixture(name).as_bytes()).expect_err("an error status")
}

#[test]
fn gateway_error_bodies_are_classified_with_their_string_codes() {
    assert_eq!(
        classified(401, "gateway-401-response.json"),
        ApiError::Unauthorized {
            http_status: 401,
            error_code: "200".into(),
            message: "Authentication Failed".into(),
            details: Some("Invalid authentication information.".into()),
        }
    );
    assert_eq!(
        classified(404, "gateway-404-response.json"),
        ApiError::Rejected {
            http_status: 404,
            error_code: Some("300".into()),
            error_name: None,
            message: "Not Found Exception — URL not found.".into(),
        }
    );
    assert_eq!(
        classified(429, "gateway-429-response.json"),
        ApiError::RateLimited {
            retry_after: None,
            error_code: Some("420".into()),
        }
    );
    for (status, name, code, message) in [
        (503, "gateway-503-response.json", "500", "Endpoint Error"),
        (504, "gateway-504-response.json", "510", "Endpoint Timeout"),
    ] {
        assert_eq!(
            classified(status, name),
            ApiError::Transient {
                http_status: Some(status),
                error_code: Some(code.into()),
                reason: message.into(),
                maybe_applied: true,
            }
        );
    }
    for name in [
        "gateway-401-response.json",
        "gateway-404-response.json",
        "gateway-429-response.json",
        "gateway-503-response.json",
        "gateway-504-response.json",
    ] {
        let body = ErrorBody::parse(fixture(name).as_bytes()).expect("an error object");
        assert!(!body.is_from_live_station(), "{name}");
    }
}

#[test]
fn a_live_station_error_with_a_numeric_code_is_rejected_with_code_and_name() {
    let body = ErrorBody::parse(fixture("livestation-error-response.json").as_bytes()).unwrap();
    assert!(body.is_from_live_station());
    assert_eq!(body.error_code.as_deref(), Some("250005"));
    assert_eq!(
        classified(400, "livestation-error-response.json"),
        ApiError::Rejected {
            http_status: 400,
            error_code: Some("250005".into()),
            error_name: Some("NOT_AVAILABLE".into()),
            message: "channel not available.".into(),
        }
    );
}

// ---- (2) the emulator answers in the same shapes ---------------------------------------------

const LIVE: &str = "ls-20250814120000-PZohi";
const MANUAL: &str = "ls-20250814120500-Xk2Qa";
const IDLE: &str = "ls-20250814121000-Rt5Wm";

async fn emulator() -> RunningEmulator {
    let options = EmulatorOptions {
        access_key: ACCESS.into(),
        secret_key: SECRET.into(),
        ..EmulatorOptions::default()
    };
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("the emulator starts");
    let ctl = emu.control();
    ctl.add_channel(ChannelSpec::new(LIVE).name("studio-a").live())
        .unwrap();
    ctl.add_channel(
        ChannelSpec::new(MANUAL)
            .name("studio-b")
            .live()
            .record_type(RecordType::ManualUpload)
            .format(RecordFormat::All),
    )
    .unwrap();
    ctl.add_channel(ChannelSpec::new(IDLE).name("studio-c"))
        .unwrap();
    emu
}

/// The answer's JSON, after checking its HTTP status.
async fn answer(
    api: &Signed,
    method: reqwest::Method,
    target: &str,
    body: Option<&Value>,
) -> Value {
    let reply = api.send(method.clone(), target, body).await;
    assert_eq!(reply.status, 200, "{method} {target}: {}", reply.text);
    reply.json()
}

#[tokio::test]
async fn the_emulators_channel_answers_have_the_documented_shape() {
    let emu = emulator().await;
    let api = Signed::new(&emu.base_url(), ACCESS, SECRET);
    emu.control().go_offline(MANUAL).unwrap();

    let page = answer(
        &api,
        reqwest::Method::GET,
        "/api/v2/channels?pageNo=1&pageSizeNo=100",
        None,
    )
    .await;
    assert_eq!(page["total"], 3);
    assert_shape("listChannels-response.json", &page);

    let channel = answer(
        &api,
        reqwest::Method::GET,
        &format!("/api/v2/channels/{LIVE}"),
        None,
    )
    .await;
    assert_shape("getChannel-response.json", &channel);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_emulators_record_answers_have_the_documented_shape() {
    let emu = emulator().await;
    let ctl = emu.control();
    let api = Signed::new(&emu.base_url(), ACCESS, SECRET);
    let fkr = Signed {
        region: Some("FKR".into()),
        ..api.clone()
    };
    use reqwest::Method;

    // MP4 and HLS records of one recording, as in the documented FKR answer.
    let started = answer(
        &fkr,
        Method::PUT,
        &format!("/api/fin-v2/channels/{MANUAL}/startRecord"),
        None,
    )
    .await;
    assert_eq!(started["total"], 2);
    assert_shape("startRecord-response-fkr.json", &started);

    ctl.advance(Duration::from_secs(60));
    let stopped = answer(
        &api,
        Method::PUT,
        &format!("/api/v2/channels/{MANUAL}/stopRecord"),
        None,
    )
    .await;
    assert_shape("stopRecord-response.json", &stopped);

    // A finished, uploaded record beside a running one.
    let first = answer(
        &api,
        Method::PUT,
        &format!("/api/v2/channels/{LIVE}/startRecord"),
        None,
    )
    .await;
    answer(
        &api,
        Method::PUT,
        &format!("/api/v2/channels/{LIVE}/stopRecord"),
        None,
    )
    .await;
    ctl.advance(Lifecycle::default().processing + Lifecycle::default().transfer);
    answer(
        &api,
        Method::PUT,
        &format!("/api/v2/channels/{LIVE}/startRecord"),
        None,
    )
    .await;
    let list = answer(
        &api,
        Method::GET,
        &format!("/api/v2/channels/{LIVE}/records"),
        None,
    )
    .await;
    let statuses: BTreeSet<&str> = list["content"]["recordList"]
        .as_object()
        .expect("a record list")
        .values()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert_eq!(statuses, BTreeSet::from(["TRANSFER_FINISH", "RECORDING"]));
    assert_shape("listRecords-response.json", &list);

    let id = first["content"]["recordList"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .expect("a record id");
    let detail = answer(
        &api,
        Method::GET,
        &format!("/api/v2/channels/{LIVE}/records/{id}"),
        None,
    )
    .await;
    assert_shape("getRecord-response.json", &detail);

    // The manual-upload records are TRANSFER_READY by now.
    let ids: Vec<i64> = stopped["content"]["recordList"]
        .as_object()
        .expect("a record list")
        .keys()
        .map(|k| k.parse().expect("a numeric record id"))
        .collect();
    let uploaded = answer(
        &api,
        Method::POST,
        "/api/v2/buckets/broadcast-archive/upload",
        Some(&json!({ "recordIds": ids })),
    )
    .await;
    assert_shape("upload-response.json", &uploaded);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_emulators_error_answers_have_the_documented_shape_and_status() {
    let emu = emulator().await;
    let ctl = emu.control();
    let api = Signed::new(&emu.base_url(), ACCESS, SECRET);
    let error = |reply: &support::signed::Reply, status: u16, name: &str| {
        assert_eq!(reply.status, status, "{name}: {}", reply.text);
        assert_shape(name, &reply.json());
    };

    let wrong_secret = Signed::new(&emu.base_url(), ACCESS, "not-the-secret");
    let reply = wrong_secret.get("/api/v2/channels").await;
    error(&reply, 401, "gateway-401-response.json");

    let reply = api.get("/api/v2/nowhere").await;
    error(&reply, 404, "gateway-404-response.json");

    let limited = Fault::RateLimit {
        retry_after_secs: Some(1),
    };
    ctl.add_fault(FaultRule::new(Operation::ListChannels, limited).times(1));
    let reply = api.get("/api/v2/channels").await;
    error(&reply, 429, "gateway-429-response.json");

    for status in [503, 504] {
        ctl.add_fault(
            FaultRule::new(Operation::ListChannels, Fault::Status5xx { status }).times(1),
        );
        let reply = api.get("/api/v2/channels").await;
        error(&reply, status, &format!("gateway-{status}-response.json"));
    }

    let reply = api
        .put(&format!("/api/v2/channels/{IDLE}/startRecord"))
        .await;
    error(&reply, 400, "livestation-error-response.json");
    assert!(reply.json()["error"]["errorCode"].is_number());
    emu.shutdown().await;
}
