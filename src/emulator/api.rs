//! The Live Station routes behind the gateway: authentication, routing, the region check,
//! fault injection and the answers, in the order the real service applies them.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use super::App;
use super::calls::now_us;
use super::faults::{Fault, Operation};
use super::gateway;
use super::options::{LiveStationError, TotalMeaning};
use super::state::ChannelListQuery;
use crate::livestation::Region;
use crate::livestation::model::{self, ChannelStatus};

/// Upload request bodies larger than this are refused by the gateway.
const MAX_BODY: usize = 64 * 1024;
/// The region header Live Station checks.
const REGION_HEADER: &str = "x-ncp-region_code";

/// A Live Station endpoint with its path parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    ListChannels,
    GetChannel(String),
    StartRecord(String),
    StopRecord(String),
    ListRecords(String),
    GetRecord(String, String),
    Upload(String),
}

impl Route {
    /// Routes `method path` to an endpoint and the region its prefix belongs to.
    fn parse(method: &Method, path: &str) -> Option<(Region, Route)> {
        let (region, rest) = if let Some(rest) = path.strip_prefix("/api/v2/") {
            (Region::Kr, rest)
        } else if let Some(rest) = path.strip_prefix("/api/fin-v2/") {
            (Region::Fkr, rest)
        } else {
            return None;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        let s = |v: &str| v.to_string();
        let route = match (method.as_str(), segments.as_slice()) {
            ("GET", ["channels"]) => Route::ListChannels,
            ("GET", ["channels", id]) => Route::GetChannel(s(id)),
            ("PUT", ["channels", id, "startRecord"]) => Route::StartRecord(s(id)),
            ("PUT", ["channels", id, "stopRecord"]) => Route::StopRecord(s(id)),
            ("GET", ["channels", id, "records"]) => Route::ListRecords(s(id)),
            ("GET", ["channels", id, "records", rid]) => Route::GetRecord(s(id), s(rid)),
            ("POST", ["buckets", bucket, "upload"]) => Route::Upload(s(bucket)),
            _ => return None,
        };
        Some((region, route))
    }

    fn operation(&self) -> Operation {
        match self {
            Route::ListChannels => Operation::ListChannels,
            Route::GetChannel(_) => Operation::GetChannel,
            Route::StartRecord(_) => Operation::StartRecord,
            Route::StopRecord(_) => Operation::StopRecord,
            Route::ListRecords(_) => Operation::ListRecords,
            Route::GetRecord(..) => Operation::GetRecord,
            Route::Upload(_) => Operation::Upload,
        }
    }

    fn channel(&self) -> Option<&str> {
        match self {
            Route::GetChannel(id)
            | Route::StartRecord(id)
            | Route::StopRecord(id)
            | Route::ListRecords(id)
            | Route::GetRecord(id, _) => Some(id),
            Route::ListChannels | Route::Upload(_) => None,
        }
    }
}

/// Every request that is not for the control API ends up here. It is written to the call log
/// when it arrives, and its status when it is answered (a request dropped unanswered, because
/// the client left while it was held, keeps no status).
pub(crate) async fn handle(State(app): State<App>, req: Request) -> Response {
    let route = Route::parse(req.method(), req.uri().path()).map(|(_, route)| route);
    let operation = route.as_ref().map(Route::operation);
    let page = match route {
        Some(Route::ListChannels) => list_page(req.uri()),
        _ => None,
    };
    let channel_id = route.as_ref().and_then(Route::channel).map(str::to_string);
    let seq = app
        .shared
        .lock()
        .calls
        .arrived(operation, page, channel_id, now_us());
    let response = respond(&app, req).await;
    app.shared
        .lock()
        .calls
        .answered(seq, response.status().as_u16(), now_us());
    response
}

/// The `pageNo` of a channel-list request for the call log: 1 when absent (the API's default),
/// `None` when it is not a page number.
fn list_page(uri: &Uri) -> Option<u32> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    match pairs
        .iter()
        .rev()
        .find(|(k, v)| k == "pageNo" && !v.is_empty())
    {
        None => Some(1),
        Some((_, v)) => v.trim().parse().ok(),
    }
}

/// The answer to an API request: authentication, routing, region, faults, the operation.
async fn respond(app: &App, req: Request) -> Response {
    let app = app.clone();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    {
        let mut st = app.shared.lock();
        st.counters.requests += 1;
        let now = st.now_ms();
        if let Err(failure) = gateway::authenticate(
            &app.shared.keys,
            req.headers(),
            method.as_str(),
            &target,
            now,
        ) {
            st.counters.auth_failures += 1;
            return gateway::unauthorized(failure);
        }
    }
    let Some((region, route)) = Route::parse(&method, uri.path()) else {
        return gateway::not_found();
    };
    match req.headers().get(REGION_HEADER).map(HeaderValue::to_str) {
        None | Some(Ok("")) => {
            return live_station_error(&LiveStationError::new(
                400,
                250003,
                "REQUIRED_HEADER",
                "Missing required header.",
            ));
        }
        Some(Ok(code)) if code == region.code() => {}
        Some(other) => {
            let code = other.unwrap_or("?");
            return live_station_error(&LiveStationError::new(
                400,
                250020,
                "OPEN_API_INVALID_REGION_CODE",
                format!("Invalid region code {code}."),
            ));
        }
    }

    let op = route.operation();
    let fault = {
        let mut st = app.shared.lock();
        *st.counters.calls.entry(op).or_default() += 1;
        match &route {
            Route::StartRecord(id) => {
                *st.counters
                    .start_record_calls
                    .entry(id.clone())
                    .or_default() += 1;
            }
            Route::StopRecord(id) => {
                *st.counters.stop_record_calls.entry(id.clone()).or_default() += 1;
            }
            _ => {}
        }
        let fault = st.faults.take_response_fault(op, route.channel());
        if let Some(f) = &fault {
            st.counters.faults_injected += 1;
            *st.counters
                .faults_by_kind
                .entry(f.kind().to_string())
                .or_default() += 1;
        }
        fault
    };

    let body = match route {
        Route::Upload(_) => match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
            Ok(b) => b,
            Err(_) => {
                return gateway::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "430",
                    "Request Entity Too Large",
                    None,
                );
            }
        },
        _ => Bytes::new(),
    };

    match &fault {
        Some(Fault::Status5xx { status }) => return gateway::server_error(*status),
        Some(Fault::GatewayError {
            http,
            code,
            message,
            details,
        }) => {
            let status = StatusCode::from_u16(*http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return gateway::error(status, code, message, details.as_deref());
        }
        Some(Fault::LiveStationError { error }) => return live_station_error(error),
        Some(Fault::RateLimit { retry_after_secs }) => {
            return gateway::rate_limited(*retry_after_secs);
        }
        Some(Fault::Latency { ms }) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(*ms)) => {}
                _ = hold(app.shutdown.clone()) => return gateway::server_error(503),
            }
        }
        Some(Fault::Hold) => {
            hold(app.shutdown.clone()).await;
            return gateway::server_error(503);
        }
        Some(Fault::LateApply { hold_ms }) => {
            // The operation is done in a task of its own: when the client gives up and
            // disconnects, this request's future is dropped, and the backend applies it anyway.
            let (applied, done) = oneshot::channel();
            let backend = app.clone();
            let wait = Duration::from_millis(*hold_ms);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = answer(&backend, region, &route, &uri, &body);
                backend.shared.lock().counters.late_applied += 1;
                let _ = applied.send(());
            });
            tokio::select! {
                _ = done => {}
                _ = hold(app.shutdown.clone()) => {}
            }
            return gateway::server_error(504);
        }
        _ => {}
    }

    let (status, reply) = match answer(&app, region, &route, &uri, &body) {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (status_of(&e), e.body()),
    };

    match fault {
        Some(Fault::ApplyThen502) => gateway::bad_gateway(),
        Some(Fault::ApplyThenHold) => {
            hold(app.shutdown.clone()).await;
            gateway::server_error(503)
        }
        Some(Fault::ApplyThenDrop) => drop_connection(status, &reply),
        Some(Fault::MalformedBody) => {
            let text = reply.to_string();
            let cut = &text[..text.floor_char_boundary(text.len() / 2)];
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                cut.to_string(),
            )
                .into_response()
        }
        _ => (status, axum::Json(reply)).into_response(),
    }
}

/// Does the operation and returns the JSON body of a 200, or the error.
fn answer(
    app: &App,
    region: Region,
    route: &Route,
    uri: &Uri,
    body: &[u8],
) -> Result<Value, LiveStationError> {
    let mut st = app.shared.lock();
    let now = st.now_ms();
    match route {
        Route::ListChannels => {
            let q = channel_query(uri, st.behaviour.default_page_size)?;
            let (total, page) = st.list_channels(&q, region);
            Ok(match st.behaviour.total {
                TotalMeaning::All => json!({ "content": page, "total": total }),
                TotalMeaning::Page => json!({ "content": page, "total": page.len() }),
                TotalMeaning::Absent => json!({ "content": page }),
            })
        }
        Route::GetChannel(id) => Ok(json!({ "content": st.channel_json(id, region)? })),
        Route::StartRecord(id) => {
            let records = st.start_record(id, now)?;
            Ok(json!({ "content": record_list(&records), "total": records.len() }))
        }
        Route::StopRecord(id) => {
            let records = st.stop_record(id, now)?;
            Ok(json!({ "content": record_list(&records), "total": records.len() }))
        }
        Route::ListRecords(id) => {
            let records = st.list_records(id, now)?;
            Ok(json!({ "content": record_list(&records) }))
        }
        Route::GetRecord(id, rid) => {
            let rid: i64 = rid.parse().map_err(|_| param_type_error("recordId"))?;
            let record = st.record(id, rid, now)?;
            Ok(json!({ "content": record_map(std::slice::from_ref(&record)) }))
        }
        Route::Upload(bucket) => {
            let (ids, access_control) = upload_body(body)?;
            let records = st.upload(bucket, &ids, &access_control, now)?;
            Ok(json!({ "content": {
                "bucketName": bucket,
                "accessControl": access_control,
                "uploadedRecords": record_map(&records),
            }}))
        }
    }
}

/// `{"recordList": {"<recordId>": {...}, …}}`, the `content` of the record-bearing answers.
fn record_list(records: &[model::Record]) -> Value {
    json!({ "recordList": record_map(records) })
}

/// `{"<recordId>": {...}, …}`: records keyed by their id (a string key in JSON).
fn record_map(records: &[model::Record]) -> Value {
    Value::Object(
        records
            .iter()
            .map(|r| (r.record_id.to_string(), record_json(r)))
            .collect(),
    )
}

/// One record, field by field as Live Station documents it (written here, not through the
/// client's model, so that the two cannot agree on a misspelling by construction;
/// `tests/api_fixtures.rs` holds both to the documented shape). Fields not known yet are left
/// out, as Live Station leaves out `duration` while recording; `objectStorageUrl` is `"-"` until
/// the file is uploaded.
fn record_json(r: &model::Record) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("recordType".into(), r.record_type.clone().into());
    o.insert("channelId".into(), r.channel_id.clone().into());
    o.insert("status".into(), r.status.as_str().into());
    let optional = [
        ("recordSeq", r.record_seq.map(Value::from)),
        ("streamSeq", r.stream_seq.map(Value::from)),
        ("recordBeginTime", r.record_begin_time.map(Value::from)),
        ("createdTime", r.created_time.map(Value::from)),
        ("shouldDeleteTime", r.should_delete_time.map(Value::from)),
        ("resolution", r.resolution.clone().map(Value::from)),
        ("fileName", r.file_name.clone().map(Value::from)),
        ("duration", r.duration.map(Value::from)),
        ("videoBitrate", r.video_bitrate.map(Value::from)),
        ("videoFrameRate", r.video_frame_rate.map(Value::from)),
        ("audioBitrate", r.audio_bitrate.map(Value::from)),
        ("audioCodec", r.audio_codec.clone().map(Value::from)),
        ("uploadPath", r.upload_path.clone().map(Value::from)),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            o.insert(key.into(), value);
        }
    }
    let url = r.object_storage_url.as_deref().unwrap_or("-");
    o.insert("objectStorageUrl".into(), url.into());
    Value::Object(o)
}

fn channel_query(uri: &Uri, default_page_size: u32) -> Result<ChannelListQuery, LiveStationError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|_| LiveStationError::new(400, 250018, "OPEN_API_BAD_REQUEST", "Bad Request"))?;
    let get = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let int = |name: &str| -> Result<Option<i64>, LiveStationError> {
        get(name)
            .map(|v| v.trim().parse::<i64>().map_err(|_| param_type_error(name)))
            .transpose()
    };
    let page_no = match int("pageNo")? {
        None => 1,
        Some(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
        Some(_) => return Err(LiveStationError::invalid_format("pageNo")),
    };
    let page_size = match int("pageSizeNo")? {
        None => default_page_size.clamp(1, 100),
        Some(n) if (1..=100).contains(&n) => n as u32,
        Some(_) => return Err(LiveStationError::invalid_format("pageSizeNo")),
    };
    let status = match get("channelStatus").map(ChannelStatus::parse) {
        Some(ChannelStatus::Unknown(_)) => {
            return Err(LiveStationError::invalid_format("channelStatus"));
        }
        other => other,
    };
    Ok(ChannelListQuery {
        page_no,
        page_size,
        status,
        id: get("id").map(str::to_string),
        name: get("channelName").map(str::to_string),
    })
}

/// Reads `{"recordIds":[..],"accessControl":".."}`.
fn upload_body(body: &[u8]) -> Result<(Vec<i64>, String), LiveStationError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        LiveStationError::new(
            400,
            250012,
            "JSON_PARSE_GENERAL_ERROR",
            "Invalid request data,please check",
        )
    })?;
    let ids = match v.get("recordIds") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| param_type_error("recordIds"))?,
        Some(_) => return Err(param_type_error("recordIds")),
    };
    let access_control = match v.get("accessControl") {
        None | Some(Value::Null) => "PRIVATE".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(param_type_error("accessControl")),
    };
    Ok((ids, access_control))
}

fn param_type_error(name: &str) -> LiveStationError {
    LiveStationError::new(
        400,
        250021,
        "OPEN_API_PARAM_TYPE_ERROR",
        format!("Invalid parameter type: {name}."),
    )
}

fn status_of(e: &LiveStationError) -> StatusCode {
    StatusCode::from_u16(e.http).unwrap_or(StatusCode::BAD_REQUEST)
}

fn live_station_error(e: &LiveStationError) -> Response {
    (status_of(e), axum::Json(e.body())).into_response()
}

/// An answer whose `Content-Length` promises more than its body holds. hyper refuses to send
/// it and closes the connection before writing anything, which is exactly a dropped answer
/// (`apply_then_drop_starts_the_recording_and_closes_the_connection_unanswered` guards this).
fn drop_connection(status: StatusCode, reply: &Value) -> Response {
    let text = reply.to_string();
    let full_len = text.len();
    let half = text[..text.floor_char_boundary(full_len / 2)].to_string();
    let mut r = (status, Body::from(half)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(full_len));
    r
}

/// Waits until the emulator shuts down (or forever).
pub(crate) async fn hold(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_recognised_under_both_prefixes_and_nothing_else() {
        let get = Method::GET;
        assert_eq!(
            Route::parse(&get, "/api/v2/channels"),
            Some((Region::Kr, Route::ListChannels))
        );
        assert_eq!(
            Route::parse(&get, "/api/fin-v2/channels/c/records/27000"),
            Some((Region::Fkr, Route::GetRecord("c".into(), "27000".into())))
        );
        assert_eq!(
            Route::parse(&Method::PUT, "/api/v2/channels/c/startRecord"),
            Some((Region::Kr, Route::StartRecord("c".into())))
        );
        assert_eq!(Route::parse(&get, "/api/v2/channels/c/startRecord"), None);
        assert_eq!(Route::parse(&get, "/api/v2/channels/"), None);
        assert_eq!(Route::parse(&get, "/api/v1/channels"), None);
        assert_eq!(Route::parse(&get, "/channels"), None);
    }

    #[test]
    fn upload_body_accepts_numbers_and_numeric_strings() {
        let (ids, ac) = upload_body(br#"{"recordIds":[27000,"27001"]}"#).unwrap();
        assert_eq!(ids, [27000, 27001]);
        assert_eq!(ac, "PRIVATE");
        assert_eq!(upload_body(b"{").unwrap_err().code, 250012);
        assert_eq!(
            upload_body(br#"{"recordIds":[{}]}"#).unwrap_err().code,
            250021
        );
    }

    #[test]
    fn the_call_log_reads_the_page_number_leniently() {
        let page = |q: &str| list_page(&format!("/api/v2/channels{q}").parse::<Uri>().unwrap());
        assert_eq!(page(""), Some(1));
        assert_eq!(page("?pageNo=&pageSizeNo=100"), Some(1));
        assert_eq!(page("?pageNo=7&pageSizeNo=100"), Some(7));
        assert_eq!(page("?pageNo=1&pageNo=2"), Some(2));
        assert_eq!(page("?pageNo=x"), None);
    }

    #[test]
    fn page_size_outside_1_to_100_is_an_invalid_format() {
        for q in ["pageSizeNo=0", "pageSizeNo=101", "pageNo=0"] {
            let uri: Uri = format!("/api/v2/channels?{q}").parse().unwrap();
            assert_eq!(
                channel_query(&uri, 20).err().map(|e| e.code),
                Some(250002),
                "{q}"
            );
        }
        let uri: Uri = "/api/v2/channels?pageNo=x".parse().unwrap();
        assert_eq!(channel_query(&uri, 20).err().map(|e| e.code), Some(250021));
        let uri: Uri = "/api/v2/channels?pageNo=&pageSizeNo=100".parse().unwrap();
        let q = channel_query(&uri, 20).unwrap();
        assert_eq!((q.page_no, q.page_size), (1, 100));
    }
}
