//! The bad-input corpus: files under `tests/corpus/`, each beside a `.expected` file that says
//! what must come of it, and property tests that no input at all makes a parser panic or hang.
//! (Broken configurations are in `tests/config/invalid/`, run by `tests/config.rs`.)
//!
//! # Layout
//!
//! - `api/channel-page/*.json`, `api/channel/*.json`, `api/records/*.json`: response bodies for
//!   the client's parsers (`parse_channel_page`, `parse_channel`, `parse_records`). Expected:
//!   `ok …` with a summary of what was read (see [`summary`]), or `malformed: TEXT`, where TEXT
//!   is part of the reason.
//! - `api/responses/*.http`: whole HTTP answers (status line, headers, blank line, body) for the
//!   client's classification ([`classify`]). Expected: `ok` or the error in one line (see
//!   [`classification`]).
//! - `callback/*.http`: requests sent as they are over TCP to a callback listener (token
//!   `cb-token-9f8e7d6c5b4a`, one configured channel, a 1 KiB body limit, 500 ms body and
//!   header timeouts, 1 KiB request heads). Head lines end in LF in the file and CRLF on the
//!   wire; `{TOKEN}` and `{LENGTH}` (the body's length) are filled in; the body is sent byte
//!   for byte. Expected: `status=NNN|closed result=RESULT|none hint=CHANNEL|none`, where
//!   RESULT is the one `lsrecd_callbacks_total` series that counted the request.
//!
//! Floods (many requests, not one) are in `tests/service_http.rs` (wrong tokens, bursts, 2,000
//! idle connections) and `tests/daemon.rs` (unknown channels against the real daemon).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use lsrecd::livestation::client::classify;
use lsrecd::livestation::model::{self, MalformedBody};
use lsrecd::livestation::{ApiError, Refusal};
use lsrecd::secret::Secret;
use lsrecd::service::metrics::callback_result;
use lsrecd::service::{
    CallbackLimits, CallbackSettings, Hint, ListenerLimits, Metrics, callback_router_with_limits,
    serve_with_limits,
};
use proptest::prelude::*;
use tokio::sync::{mpsc, oneshot};

const TOKEN: &str = "cb-token-9f8e7d6c5b4a";
const CHANNEL: &str = "ls-20200327xxxxxx-aBCD3";

fn corpus(dir: &str, extension: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.{extension} in {}", dir.display());
    files
}

fn expected(file: &Path) -> String {
    let path = file.with_extension("expected");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn name(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs `check` on every file; fails once, listing every file whose outcome differs.
fn run_all(files: Vec<PathBuf>, check: impl Fn(&Path, &str) -> Option<String>) {
    let mut failures = Vec::new();
    for file in files {
        let want = expected(&file);
        if let Some(got) = check(&file, &want) {
            failures.push(format!(
                "{}:\n  expected: {want}\n  actual:   {got}",
                name(&file)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `None` when `outcome` matches `want`: exactly for `ok …`, by substring after `malformed: `.
fn compare(outcome: Result<String, MalformedBody>, want: &str) -> Option<String> {
    let got = match &outcome {
        Ok(summary) => format!("ok {summary}"),
        Err(MalformedBody(reason)) => format!("malformed: {reason}"),
    };
    let matches = match (want.strip_prefix("malformed: "), &outcome) {
        (Some(part), Err(MalformedBody(reason))) => reason.contains(part),
        (None, Ok(_)) => got == want,
        _ => false,
    };
    (!matches).then_some(got)
}

/// What a parser read, in the words of the `.expected` files: `LABEL=ID,ID skipped=N`.
fn summary(label: &str, ids: impl IntoIterator<Item = String>, skipped: usize) -> String {
    let ids: Vec<String> = ids.into_iter().collect();
    format!("{label}={} skipped={skipped}", ids.join(","))
}

fn read(file: &Path) -> Vec<u8> {
    std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

// ---------------------------------------------------------------------------------------------
// API bodies and answers.

#[test]
fn every_channel_page_body_parses_as_expected() {
    run_all(corpus("api/channel-page", "json"), |file, want| {
        let outcome = model::parse_channel_page(&read(file)).map(|page| {
            let ids = page.channels().map(|c| c.channel_id.to_owned());
            let total = page.total.map_or("none".to_string(), |t| t.to_string());
            format!(
                "{} total={total}",
                summary("channels", ids, page.skipped.len())
            )
        });
        compare(outcome, want)
    });
}

#[test]
fn every_channel_body_parses_as_expected() {
    run_all(corpus("api/channel", "json"), |file, want| {
        let outcome = model::parse_channel(&read(file))
            .map(|c| format!("id={} status={}", c.channel_id, c.channel_status.as_str()));
        compare(outcome, want)
    });
}

#[test]
fn every_records_body_parses_as_expected() {
    run_all(corpus("api/records", "json"), |file, want| {
        let outcome = model::parse_records(&read(file)).map(|set| {
            let ids = set.records.iter().map(|r| r.record_id.to_string());
            summary("records", ids, set.skipped.len())
        });
        compare(outcome, want)
    });
}

/// A raw HTTP answer: status, headers and body.
fn parse_response(bytes: &[u8]) -> (u16, HeaderMap, Vec<u8>) {
    let split = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("a blank line after the headers");
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let body = bytes[split + 2..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("Name: value");
        headers.append(
            axum::http::HeaderName::from_bytes(name.trim().as_bytes()).expect("a header name"),
            value.trim().parse().expect("a header value"),
        );
    }
    (status, headers, body)
}

/// How the client classifies an answer, in the words of the `.expected` files.
fn classification(result: &Result<(), ApiError>) -> String {
    let text = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".into());
    match result {
        Ok(()) => "ok".into(),
        Err(ApiError::Transient {
            http_status,
            error_code,
            maybe_applied,
            ..
        }) => format!(
            "transient http={} code={} maybe_applied={maybe_applied}",
            http_status.map_or("none".into(), |s| s.to_string()),
            text(error_code)
        ),
        Err(ApiError::RateLimited {
            retry_after,
            error_code,
        }) => format!(
            "rate_limited retry_after={} code={}",
            retry_after.map_or("none".into(), |d| format!("{}s", d.as_secs())),
            text(error_code)
        ),
        Err(ApiError::Unauthorized {
            http_status,
            error_code,
            ..
        }) => format!("unauthorized http={http_status} code={error_code}"),
        Err(ApiError::Rejected {
            http_status,
            error_code,
            error_name,
            ..
        }) => format!(
            "rejected http={http_status} code={} name={} refusal={}",
            text(error_code),
            text(error_name),
            match result.as_ref().err().and_then(ApiError::refusal) {
                Some(Refusal::State) => "state",
                Some(Refusal::NotFound) => "not_found",
                Some(Refusal::BadRequest) => "bad_request",
                None => "none",
            }
        ),
        Err(ApiError::Malformed { http_status, .. }) => format!("malformed http={http_status}"),
    }
}

#[test]
fn every_api_answer_is_classified_as_expected() {
    run_all(corpus("api/responses", "http"), |file, want| {
        let (status, headers, body) = parse_response(&read(file));
        let got = classification(&classify(status, &headers, &body));
        (got != want).then_some(got)
    });
}

// ---------------------------------------------------------------------------------------------
// Callback requests.

/// The limits the callback corpus is written against.
fn corpus_limits() -> (CallbackLimits, ListenerLimits) {
    (
        CallbackLimits {
            max_body_bytes: 1024,
            body_timeout: Duration::from_millis(500),
            ..CallbackLimits::default()
        },
        ListenerLimits {
            header_read_timeout: Duration::from_millis(500),
            max_header_bytes: 1024,
            ..ListenerLimits::default()
        },
    )
}

/// A callback listener on port 0 with the corpus limits.
struct Listener {
    addr: String,
    rx: mpsc::Receiver<Hint>,
    metrics: Metrics,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Listener {
    async fn start() -> Listener {
        let (callback_limits, listener_limits) = corpus_limits();
        let (tx, rx) = mpsc::channel(16);
        let metrics = Metrics::new();
        let settings = CallbackSettings {
            token: Secret::new(TOKEN),
            channels: Arc::new(HashSet::from([CHANNEL.to_string()])),
        };
        let (router, _control) =
            callback_router_with_limits(settings, tx, metrics.clone(), callback_limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr").to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_limits(
            listener,
            router,
            listener_limits,
            async move {
                let _ = stopped.await;
            },
        ));
        Listener {
            addr,
            rx,
            metrics,
            stop,
            task,
        }
    }

    /// The one callback result that was counted, or `none`.
    fn counted(&self) -> String {
        let text = self.metrics.render();
        let counted: Vec<&str> = callback_result::ALL
            .into_iter()
            .filter(|result| {
                let series = format!("lsrecd_callbacks_total{{result=\"{result}\"}} ");
                text.lines()
                    .any(|l| l.strip_prefix(&series).is_some_and(|v| v != "0"))
            })
            .collect();
        match counted.as_slice() {
            [] => "none".into(),
            [one] => (*one).to_string(),
            many => many.join("+"),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// The bytes to send for a corpus file.
fn request_bytes(file: &[u8]) -> Vec<u8> {
    let split = file
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or(file.len(), |i| i + 2);
    let (head, body) = file.split_at(split);
    let head = String::from_utf8_lossy(head)
        .replace("{TOKEN}", TOKEN)
        .replace("{LENGTH}", &body.len().to_string())
        .replace('\n', "\r\n");
    [head.as_bytes(), body].concat()
}

/// Sends `request` on a new connection (never closing the sending side: a slow client is still
/// there) and returns the answer's status code, or `closed` when the connection ended first.
async fn exchange(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // A server that answers early may close before everything is written; that is its right.
    let _ = stream.write_all(request).await;
    let read = async {
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer or a close within 10 s");
    let status_line = String::from_utf8_lossy(&answer).into_owned();
    status_line
        .split_whitespace()
        .nth(1)
        .map_or("closed".to_string(), str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_callback_request_gets_its_expected_status_and_metric() {
    let mut failures = Vec::new();
    let files = corpus("callback", "http");
    assert!(files.len() >= 20, "only {} callback cases", files.len());
    for file in files {
        let want = expected(&file);
        // A fresh listener per case: each counts exactly one request.
        let mut listener = Listener::start().await;
        let status = exchange(&listener.addr, &request_bytes(&read(&file))).await;
        let hint = listener
            .rx
            .try_recv()
            .map_or("none".to_string(), |h| h.channel_id);
        let got = format!("status={status} result={} hint={hint}", listener.counted());
        listener.stop().await;
        if got != want {
            failures.push(format!(
                "{}:\n  expected: {want}\n  actual:   {got}",
                name(&file)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Property tests: no input makes a parser panic, and none makes it hang (each case runs in a
// child process that is killed after the timeout).

fn api_seeds() -> Vec<Vec<u8>> {
    ["api/channel-page", "api/channel", "api/records"]
        .into_iter()
        .flat_map(|dir| corpus(dir, "json"))
        .map(|f| read(&f))
        .collect()
}

/// `bytes` with one byte range replaced by `insert`, at relative positions.
fn mutate(bytes: &[u8], at: f64, remove: usize, insert: &[u8]) -> Vec<u8> {
    let start = ((bytes.len() as f64) * at) as usize;
    let start = start.min(bytes.len());
    let end = (start + remove).min(bytes.len());
    [&bytes[..start], insert, &bytes[end..]].concat()
}

fn json_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"\"".to_vec()),
        Just(b",".to_vec()),
        Just(b":".to_vec()),
        Just(b"null".to_vec()),
        Just(b"-1e999".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"\"recordList\":".to_vec()),
        Just(b"\"content\":".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(b"\xff".to_vec()),
        prop::collection::vec(any::<u8>(), 0..16),
    ]
}

fn check_api_body(body: &[u8]) {
    let _ = model::parse_channel_page(body);
    let _ = model::parse_channel(body);
    let _ = model::parse_records(body);
    let _ = model::ErrorBody::parse(body);
    for status in [200, 400, 401, 429, 503] {
        let _ = classify(status, &HeaderMap::new(), body);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, timeout: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_make_the_api_parsers_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_api_body(&body);
    }

    #[test]
    fn mutated_api_bodies_never_make_the_api_parsers_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec((0.0..1.0f64, 0usize..16, json_piece()), 1..8),
    ) {
        let seeds = api_seeds();
        let mut body = seed.get(&seeds).clone();
        for (at, remove, insert) in &edits {
            body = mutate(&body, *at, *remove, insert);
        }
        check_api_body(&body);
    }

    #[test]
    fn arbitrary_headers_never_make_the_classification_panic(
        status in 100u16..1000,
        retry_after in "[ -~]{0,40}",
        date in "[ -~]{0,40}",
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = retry_after.parse() {
            headers.insert("retry-after", v);
        }
        if let Ok(v) = date.parse() {
            headers.insert("date", v);
        }
        if let Err(ApiError::RateLimited { retry_after: Some(wait), .. }) =
            classify(status, &headers, &body)
        {
            prop_assert!(wait <= lsrecd::livestation::client::MAX_RETRY_AFTER);
        }
    }
}

fn callback_seeds() -> Vec<Vec<u8>> {
    corpus("callback", "http")
        .into_iter()
        .map(|f| {
            let bytes = read(&f);
            let split = bytes
                .windows(2)
                .position(|w| w == b"\n\n")
                .map_or(bytes.len(), |i| i + 2);
            bytes[split..].to_vec()
        })
        .collect()
}

/// Sends one callback through the router in process (no TCP) and returns the status.
fn callback_status(token: &str, body: Vec<u8>) -> u16 {
    use tower::ServiceExt as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let (tx, _rx) = mpsc::channel(4);
        let settings = CallbackSettings {
            token: Secret::new(TOKEN),
            channels: Arc::new(HashSet::from([CHANNEL.to_string()])),
        };
        let (router, _) =
            callback_router_with_limits(settings, tx, Metrics::new(), corpus_limits().0);
        let request = axum::http::Request::post(format!("/callback/{token}"))
            .body(axum::body::Body::from(body))
            .expect("a request");
        let response = router.oneshot(request).await.expect("infallible");
        response.status().as_u16()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, timeout: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_callback_bodies_get_an_answer_never_a_panic(
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let status = callback_status(TOKEN, body);
        prop_assert!([202, 400, 413].contains(&status), "status {status}");
    }

    #[test]
    fn mutated_callback_bodies_get_an_answer_never_a_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec((0.0..1.0f64, 0usize..16, json_piece()), 1..8),
    ) {
        let seeds = callback_seeds();
        let mut body = seed.get(&seeds).clone();
        for (at, remove, insert) in &edits {
            body = mutate(&body, *at, *remove, insert);
        }
        let status = callback_status(TOKEN, body);
        prop_assert!([202, 400, 413].contains(&status), "status {status}");
    }

    #[test]
    fn arbitrary_tokens_are_refused_unless_exact(token in "[A-Za-z0-9._~-]{1,40}") {
        let status = callback_status(&token, br#"{"channelId":"ls-20200327xxxxxx-aBCD3"}"#.to_vec());
        let expected = if token == TOKEN { 202 } else { 404 };
        prop_assert_eq!(status, expected);
    }
}

// ---------------------------------------------------------------------------------------------
// The reference is loose about types: numbers may come as strings and the other way round,
// `recordList` may be an object, an array, empty or null, `objectStorageUrl` `"-"` or absent,
// `content` null on an empty page. Whatever the spelling, the same values are read.

/// The numeric fields of a record, each with the value the test puts in it.
const RECORD_NUMBERS: [(&str, i64); 8] = [
    ("recordSeq", 3),
    ("streamSeq", 1),
    ("recordBeginTime", 1_700_000_000_000),
    ("createdTime", 1_700_000_000_500),
    ("shouldDeleteTime", 1_700_259_200_500),
    ("duration", 3600),
    ("videoBitrate", 5_000_000),
    ("audioBitrate", 128_000),
];

/// A record with each numeric field a JSON number (`false`) or a string (`true`), and
/// `objectStorageUrl` `"-"`, absent or a URL.
fn record_json(as_text: &[bool], url: u8) -> serde_json::Value {
    let mut record = serde_json::json!({
        "recordType": "MP4",
        "channelId": "ls-c",
        "status": "RECORDING",
    });
    for ((name, value), text) in RECORD_NUMBERS.iter().zip(as_text) {
        record[*name] = if *text {
            serde_json::Value::from(value.to_string())
        } else {
            serde_json::Value::from(*value)
        };
    }
    match url {
        0 => record["objectStorageUrl"] = "-".into(),
        1 => {}
        _ => record["objectStorageUrl"] = "https://kr.object.ncloudstorage.com/b/r.mp4".into(),
    }
    record
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn numbers_are_read_the_same_whether_sent_as_numbers_or_as_strings(
        as_text in prop::collection::vec(any::<bool>(), RECORD_NUMBERS.len()),
        url in 0u8..3,
        record_id_as_number in any::<bool>(),
        list_as_array in any::<bool>(),
    ) {
        let record = record_json(&as_text, url);
        let list = if list_as_array {
            let mut entry = record.clone();
            entry["recordId"] = if record_id_as_number { 7.into() } else { "7".into() };
            serde_json::json!([entry])
        } else {
            serde_json::json!({ "7": record })
        };
        let body = serde_json::json!({ "content": { "recordList": list } }).to_string();
        let set = model::parse_records(body.as_bytes()).expect("a record set");
        prop_assert!(set.skipped.is_empty(), "{:?}", set.skipped);
        prop_assert_eq!(set.records.len(), 1);
        let r = &set.records[0];
        prop_assert_eq!(r.record_id, 7);
        prop_assert_eq!(r.record_seq, Some(3));
        prop_assert_eq!(r.stream_seq, Some(1));
        prop_assert_eq!(r.record_begin_time, Some(1_700_000_000_000));
        prop_assert_eq!(r.created_time, Some(1_700_000_000_500));
        prop_assert_eq!(r.should_delete_time, Some(1_700_259_200_500));
        prop_assert_eq!(r.duration, Some(3600));
        prop_assert_eq!(r.video_bitrate, Some(5_000_000));
        prop_assert_eq!(r.audio_bitrate, Some(128_000));
        prop_assert_eq!(
            r.object_storage_url.as_deref(),
            (url == 2).then_some("https://kr.object.ncloudstorage.com/b/r.mp4")
        );
    }

    #[test]
    fn a_channel_s_numbers_and_flags_are_read_whatever_their_spelling(
        created_as_text in any::<bool>(),
        total_as_text in any::<bool>(),
        id_as_number in any::<bool>(),
    ) {
        let created: serde_json::Value = if created_as_text {
            "1700000000000".into()
        } else {
            1_700_000_000_000_i64.into()
        };
        let id: serde_json::Value = if id_as_number { 1234.into() } else { "1234".into() };
        let total: serde_json::Value = if total_as_text { "1".into() } else { 1.into() };
        let body = serde_json::json!({
            "content": [{
                "channelId": id,
                "channelName": "studio",
                "channelStatus": "PUBLISHING",
                "isRecording": false,
                "immediateOnAir": false,
                "createdTime": created,
            }],
            "total": total,
        })
        .to_string();
        let page = model::parse_channel_page(body.as_bytes()).expect("a page");
        prop_assert!(page.skipped.is_empty(), "{:?}", page.skipped);
        prop_assert_eq!(page.total, Some(1));
        let channels: Vec<_> = page.channels().collect();
        prop_assert_eq!(channels.len(), 1);
        prop_assert_eq!(channels[0].channel_id, "1234");
    }
}

#[test]
fn an_empty_page_reads_as_empty_whether_content_is_null_missing_or_empty() {
    for body in [
        r#"{"content":null,"total":0}"#,
        r#"{"content":[],"total":0}"#,
        r#"{"content":[]}"#,
        r#"{"total":0}"#,
    ] {
        let page = model::parse_channel_page(body.as_bytes()).expect(body);
        assert_eq!(page.len(), 0, "{body}");
    }
    for body in [
        r#"{"content":{"recordList":null}}"#,
        r#"{"content":{"recordList":{}}}"#,
        r#"{"content":{"recordList":[]}}"#,
    ] {
        let set = model::parse_records(body.as_bytes()).expect(body);
        assert!(set.records.is_empty(), "{body}");
    }
}
