//! The metrics and callback HTTP endpoints, served on port 0 and driven over real TCP.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use lsrecd::secret::Secret;
use lsrecd::service::http::SHUTDOWN_GRACE;
use lsrecd::service::{
    CallbackControl, CallbackLimits, CallbackSettings, Hint, ListenerLimits, Metrics, Readiness,
    callback_router, callback_router_with_limits, group_by_address, metrics_router, serve,
    serve_with_limits,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const TOKEN: &str = "cb-token-9f8e7d6c5b4a";

const CHANNEL: &str = "ls-20200327xxxxxx-aBCD3";

const PUBLISH_START: &str = r#"{"id":1234,"logLevel":"INFO","channelId":"ls-20200327xxxxxx-aBCD3","event":"PUBLISH_START","timestamp":1599218791425}"#;

/// Settings with `token` and the configured channels `channels`.
fn settings(token: &str, channels: &[&str]) -> CallbackSettings {
    CallbackSettings {
        token: Secret::new(token),
        channels: Arc::new(
            channels
                .iter()
                .map(|c| c.to_string())
                .collect::<HashSet<_>>(),
        ),
    }
}

/// A PUBLISH_START callback body for `channel`.
fn publish_start(channel: &str) -> String {
    format!(r#"{{"channelId":"{channel}","event":"PUBLISH_START"}}"#)
}

/// A server on an ephemeral port, stopped (and awaited) by [`TestServer::stop`].
struct TestServer {
    base: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start(router: Router) -> TestServer {
        TestServer::start_with(router, ListenerLimits::default()).await
    }

    async fn start_with(router: Router, limits: ListenerLimits) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_limits(listener, router, limits, async move {
            let _ = stopped.await;
        }));
        TestServer {
            base: format!("http://{addr}"),
            stop,
            task,
        }
    }

    fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops within 10 s")
            .expect("server task");
        result.expect("server ran without error");
    }
}

fn client() -> reqwest::Client {
    // reqwest is built without a bundled crypto provider; plain HTTP still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

struct Callbacks {
    server: TestServer,
    rx: mpsc::Receiver<Hint>,
    metrics: Metrics,
    control: CallbackControl,
}

async fn callbacks_with(limits: CallbackLimits, queue: usize) -> Callbacks {
    let (tx, rx) = mpsc::channel(queue);
    let metrics = Metrics::new();
    let (router, control) =
        callback_router_with_limits(settings(TOKEN, &[CHANNEL]), tx, metrics.clone(), limits);
    Callbacks {
        server: TestServer::start(router).await,
        rx,
        metrics,
        control,
    }
}

async fn callbacks() -> Callbacks {
    callbacks_with(CallbackLimits::default(), 16).await
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> u16 {
    client()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent")
        .status()
        .as_u16()
}

/// The value of a sample line such as `lsrecd_callbacks_total{result="malformed"} 1`.
fn metric(metrics: &Metrics, series: &str) -> f64 {
    let text = metrics.render();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .expect("numeric sample")
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text_0_0_4() {
    let metrics = Metrics::new();
    metrics.set_channels(12);
    metrics.api_request("listChannels", "ok", Duration::from_millis(80));
    let server = TestServer::start(metrics_router(
        metrics,
        Readiness::new(Duration::from_secs(30)),
    ))
    .await;

    let response = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");

    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "content type {content_type:?}"
    );
    let body = response.text().await.expect("body");
    assert!(body.lines().any(|l| l == "lsrecd_channels 12"), "{body}");
    assert!(
        body.lines()
            .any(|l| l == r#"lsrecd_api_requests_total{operation="listChannels",outcome="ok"} 1"#),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn healthz_answers_200_while_the_process_serves() {
    let server = TestServer::start(metrics_router(
        Metrics::new(),
        Readiness::new(Duration::from_secs(30)),
    ))
    .await;

    let response = client().get(server.url("/healthz")).send().await;

    assert_eq!(response.expect("GET /healthz").status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn readyz_is_503_until_the_first_observation_then_200() {
    let readiness = Readiness::new(Duration::from_secs(30));
    let server = TestServer::start(metrics_router(Metrics::new(), readiness.clone())).await;
    let http = client();

    let before = http.get(server.url("/readyz")).send().await.expect("GET");
    assert_eq!(before.status(), 503);
    assert!(before.text().await.expect("body").starts_with("starting"));

    readiness.observed();

    let after = http.get(server.url("/readyz")).send().await.expect("GET");
    assert_eq!(after.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn readyz_is_503_again_when_the_last_observation_is_stale() {
    let readiness = Readiness::new(Duration::from_secs(30));
    let long_ago = tokio::time::Instant::now()
        .checked_sub(Duration::from_secs(95))
        .expect("monotonic clock is past 95 s");
    readiness.observed_at(long_ago);
    let server = TestServer::start(metrics_router(Metrics::new(), readiness)).await;

    let response = client()
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("GET");

    assert_eq!(response.status(), 503);
    let body = response.text().await.expect("body");
    assert!(body.starts_with("stale: last successful channel observation 95s ago (limit 30s)"));
    server.stop().await;
}

#[tokio::test]
async fn a_callback_with_the_right_token_sends_a_hint() {
    let mut cb = callbacks().await;

    let status = post(&cb.server.url(&format!("/callback/{TOKEN}")), PUBLISH_START).await;

    assert_eq!(status, 202);
    assert_eq!(
        cb.rx.try_recv(),
        Ok(Hint {
            channel_id: "ls-20200327xxxxxx-aBCD3".into(),
            event: "PUBLISH_START".into(),
        })
    );
    assert_eq!(
        metric(&cb.metrics, r#"lsrecd_callbacks_total{result="accepted"}"#),
        1.0
    );
    cb.server.stop().await;
}

#[tokio::test]
async fn a_wrong_token_gets_404_and_sends_no_hint() {
    let mut cb = callbacks().await;

    let wrong = post(&cb.server.url("/callback/cb-token-guess"), PUBLISH_START).await;
    let prefix = post(&cb.server.url("/callback/cb-token"), PUBLISH_START).await;
    let unknown_path = post(&cb.server.url("/nothing-here"), PUBLISH_START).await;

    assert_eq!(wrong, 404);
    assert_eq!(prefix, 404);
    assert_eq!(
        unknown_path, 404,
        "a wrong token looks like any unknown path"
    );
    assert!(cb.rx.try_recv().is_err(), "no hint for a wrong token");
    assert_eq!(
        metric(&cb.metrics, r#"lsrecd_callbacks_total{result="bad_token"}"#),
        2.0
    );
    cb.server.stop().await;
}

#[tokio::test]
async fn a_body_declared_over_the_size_limit_gets_413_and_no_hint() {
    let mut cb = callbacks().await;
    // Only the headers and a little of the body are sent: the answer must not wait for the rest.
    let request = format!(
        "POST /callback/{TOKEN} HTTP/1.1\r\nHost: lsrecd\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{{\"channelId\":\"ls-1\",",
        10 * 1024 * 1024
    );

    let status_line = raw_exchange(&cb.server.addr(), request.as_bytes()).await;

    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert!(cb.rx.try_recv().is_err());
    assert_eq!(
        metric(&cb.metrics, r#"lsrecd_callbacks_total{result="too_large"}"#),
        1.0
    );
    cb.server.stop().await;
}

#[tokio::test]
async fn a_chunked_body_without_length_is_cut_off_at_the_limit() {
    let limits = CallbackLimits {
        max_body_bytes: 1024,
        ..CallbackLimits::default()
    };
    let mut cb = callbacks_with(limits, 16).await;
    let chunk = " ".repeat(512);
    let request = format!(
        "POST /callback/{TOKEN} HTTP/1.1\r\nHost: lsrecd\r\nTransfer-Encoding: chunked\r\n\r\n\
         200\r\n{chunk}\r\n200\r\n{chunk}\r\n200\r\n{chunk}\r\n0\r\n\r\n"
    );

    let status_line = raw_exchange(&cb.server.addr(), request.as_bytes()).await;

    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert!(cb.rx.try_recv().is_err());
    cb.server.stop().await;
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_some_429s() {
    let limits = CallbackLimits {
        per_second: 0.001,
        burst: 5.0,
        ..CallbackLimits::default()
    };
    let mut cb = callbacks_with(limits, 64).await;
    let url = cb.server.url(&format!("/callback/{TOKEN}"));

    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(post(&url, PUBLISH_START).await);
    }

    let accepted = statuses.iter().filter(|&&s| s == 202).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((accepted, limited), (5, 7), "{statuses:?}");
    let mut hints = 0;
    while cb.rx.try_recv().is_ok() {
        hints += 1;
    }
    assert_eq!(hints, 5);
    assert_eq!(
        metric(
            &cb.metrics,
            r#"lsrecd_callbacks_total{result="rate_limited"}"#
        ),
        7.0
    );
    cb.server.stop().await;
}

#[tokio::test]
async fn a_flood_of_wrong_tokens_never_makes_a_real_callback_wait() {
    let limits = CallbackLimits {
        per_second: 0.001,
        burst: 5.0,
        bad_token_per_second: 0.001,
        bad_token_burst: 3.0,
        ..CallbackLimits::default()
    };
    let mut cb = callbacks_with(limits, 64).await;
    let wrong = cb.server.url("/callback/not-the-token-at-all");
    let right = cb.server.url(&format!("/callback/{TOKEN}"));

    let mut flood = Vec::new();
    for _ in 0..30 {
        flood.push(post(&wrong, PUBLISH_START).await);
    }
    let mut real = Vec::new();
    for _ in 0..5 {
        real.push(post(&right, PUBLISH_START).await);
    }

    assert_eq!(flood.iter().filter(|&&s| s == 404).count(), 3, "{flood:?}");
    assert_eq!(flood.iter().filter(|&&s| s == 429).count(), 27, "{flood:?}");
    assert_eq!(
        real, [202; 5],
        "the wrong tokens used up the real callbacks' budget"
    );
    let mut hints = 0;
    while cb.rx.try_recv().is_ok() {
        hints += 1;
    }
    assert_eq!(hints, 5);
    assert_eq!(
        metric(&cb.metrics, r#"lsrecd_callbacks_total{result="bad_token"}"#),
        30.0
    );
    assert_eq!(
        metric(
            &cb.metrics,
            r#"lsrecd_callbacks_total{result="rate_limited"}"#
        ),
        0.0
    );
    cb.server.stop().await;
}

#[tokio::test]
async fn a_callback_for_a_channel_not_configured_is_counted_and_dropped() {
    let mut cb = callbacks().await;
    let url = cb.server.url(&format!("/callback/{TOKEN}"));

    let unknown = post(&url, publish_start("ls-somebody-elses")).await;
    let known = post(&url, publish_start(CHANNEL)).await;

    assert_eq!((unknown, known), (202, 202));
    assert_eq!(
        cb.rx.try_recv().map(|h| h.channel_id),
        Ok(CHANNEL.to_string())
    );
    assert!(cb.rx.try_recv().is_err(), "no hint for the unknown channel");
    assert_eq!(
        metric(
            &cb.metrics,
            r#"lsrecd_callbacks_total{result="unknown_channel"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&cb.metrics, r#"lsrecd_callbacks_total{result="accepted"}"#),
        1.0
    );
    cb.server.stop().await;
}

#[tokio::test]
async fn new_settings_replace_the_token_and_the_channels_at_once() {
    let mut cb = callbacks().await;
    let old = cb.server.url(&format!("/callback/{TOKEN}"));
    let new_token = "rotated-token-0123456789";
    let new = cb.server.url(&format!("/callback/{new_token}"));

    cb.control
        .update(settings(new_token, &[CHANNEL, "ls-added-on-reload"]));
    let with_old = post(&old, publish_start(CHANNEL)).await;
    let with_new = post(&new, publish_start("ls-added-on-reload")).await;
    cb.control.disable();
    let after_disable = post(&new, publish_start(CHANNEL)).await;

    assert_eq!((with_old, with_new, after_disable), (404, 202, 404));
    assert_eq!(
        cb.rx.try_recv().map(|h| h.channel_id),
        Ok("ls-added-on-reload".to_string())
    );
    assert!(cb.rx.try_recv().is_err());
    cb.server.stop().await;
}

#[tokio::test]
async fn a_body_slower_than_the_body_timeout_gets_408() {
    let limits = CallbackLimits {
        body_timeout: Duration::from_millis(300),
        ..CallbackLimits::default()
    };
    let mut cb = callbacks_with(limits, 16).await;
    // Ten of the hundred declared bytes, then nothing.
    let request = format!(
        "POST /callback/{TOKEN} HTTP/1.1\r\nHost: lsrecd\r\nContent-Length: 100\r\n\r\n{{\"channel"
    );

    let status_line = raw_exchange(&cb.server.addr(), request.as_bytes()).await;

    assert!(status_line.starts_with("HTTP/1.1 408"), "{status_line}");
    assert!(cb.rx.try_recv().is_err());
    assert_eq!(
        metric(&cb.metrics, r#"lsrecd_callbacks_total{result="malformed"}"#),
        1.0
    );
    cb.server.stop().await;
}

#[tokio::test]
async fn garbage_bodies_get_400_and_are_counted() {
    let mut cb = callbacks().await;
    let url = cb.server.url(&format!("/callback/{TOKEN}"));

    let garbage = post(&url, &b"\x00\xff{not json"[..]).await;
    let no_channel = post(&url, r#"{"event":"PUBLISH_START"}"#).await;
    let empty = post(&url, "").await;

    assert_eq!((garbage, no_channel, empty), (400, 400, 400));
    assert!(cb.rx.try_recv().is_err());
    assert_eq!(
        metric(&cb.metrics, r#"lsrecd_callbacks_total{result="malformed"}"#),
        3.0
    );
    cb.server.stop().await;
}

#[tokio::test]
async fn a_full_hint_queue_drops_the_hint_and_counts_it() {
    let mut cb = callbacks_with(CallbackLimits::default(), 1).await;
    let url = cb.server.url(&format!("/callback/{TOKEN}"));

    let first = post(&url, PUBLISH_START).await;
    let second = post(&url, PUBLISH_START).await;

    assert_eq!((first, second), (202, 202));
    assert!(cb.rx.try_recv().is_ok());
    assert!(cb.rx.try_recv().is_err(), "the second hint was dropped");
    assert_eq!(
        metric(&cb.metrics, r#"lsrecd_callbacks_total{result="dropped"}"#),
        1.0
    );
    cb.server.stop().await;
}

#[tokio::test]
async fn metrics_and_callbacks_share_one_listener_when_their_addresses_are_equal() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let other: SocketAddr = ([127, 0, 0, 1], 1).into();
    let metrics = Metrics::new();
    let (tx, mut rx) = mpsc::channel(4);
    let grouped = group_by_address([
        (
            addr,
            metrics_router(metrics.clone(), Readiness::new(Duration::from_secs(30))),
        ),
        (other, Router::new()),
        (
            addr,
            callback_router(settings(TOKEN, &[CHANNEL]), tx, metrics.clone()).0,
        ),
    ]);
    assert_eq!(
        grouped.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![addr, other]
    );
    let router = grouped.into_iter().next().expect("first group").1;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, async move {
        let _ = stopped.await;
    }));

    let status = post(&format!("http://{addr}/callback/{TOKEN}"), PUBLISH_START).await;
    let metrics_text = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");

    assert_eq!(status, 202);
    assert!(rx.try_recv().is_ok());
    assert!(metrics_text.contains(r#"lsrecd_callbacks_total{result="accepted"} 1"#));
    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(10), task).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
}

#[tokio::test]
async fn serve_returns_after_the_grace_period_when_a_request_never_finishes() {
    let (entered_tx, entered_rx) = mpsc::channel::<()>(1);
    let router = Router::new().route(
        "/stuck",
        axum::routing::get(move || {
            let entered = entered_tx.clone();
            async move {
                let _ = entered.send(()).await;
                std::future::pending::<()>().await
            }
        }),
    );
    let server = TestServer::start(router).await;
    let stuck = tokio::spawn(client().get(server.url("/stuck")).send());
    let mut entered_rx = entered_rx;
    tokio::time::timeout(Duration::from_secs(10), entered_rx.recv())
        .await
        .expect("the request reached the handler");

    let started = std::time::Instant::now();
    server.stop().await;

    let took = started.elapsed();
    assert!(
        took >= SHUTDOWN_GRACE,
        "returned before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
    stuck.abort();
}

/// A `MakeWriter` that appends everything to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The test runs on a current-thread runtime so the server's tasks log through the subscriber
/// set for this thread.
#[tokio::test(flavor = "current_thread")]
async fn the_token_never_appears_in_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut cb = callbacks().await;
    let url = cb.server.url(&format!("/callback/{TOKEN}"));
    let near_miss = cb.server.url(&format!("/callback/{TOKEN}x"));

    post(&url, PUBLISH_START).await;
    post(&url, "garbage").await;
    post(&near_miss, PUBLISH_START).await;
    let oversized = format!(
        "POST /callback/{TOKEN} HTTP/1.1\r\nHost: lsrecd\r\nContent-Length: 999999\r\n\r\n"
    );
    raw_exchange(&cb.server.addr(), oversized.as_bytes()).await;
    assert!(cb.rx.try_recv().is_ok());
    cb.server.stop().await;

    let logs = String::from_utf8_lossy(&capture.0.lock().expect("log buffer")).into_owned();
    assert!(
        logs.contains("callback received") && logs.contains("unknown token"),
        "the capture saw the handler's events:\n{logs}"
    );
    assert!(!logs.contains(TOKEN), "token leaked into logs:\n{logs}");
}

/// Sends raw bytes on a new connection and returns the response's status line.
async fn raw_exchange(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("send request");
        let mut response = Vec::new();
        let mut buf = [0u8; 1024];
        while !response.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await.expect("read response");
            assert!(n > 0, "connection closed before a status line");
            response.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&response).into_owned();
        text.lines().next().unwrap_or_default().to_owned()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("a response within 10 s")
}

// ---------------------------------------------------------------------------------------------
// Connection limits: slow, idle and too many clients.

/// A plain metrics server (GET /healthz answers) with `limits`.
async fn limited(limits: ListenerLimits) -> TestServer {
    TestServer::start_with(
        metrics_router(Metrics::new(), Readiness::new(Duration::from_secs(30))),
        limits,
    )
    .await
}

/// Whether the server closes `stream` within `limit` (EOF or reset), reading and discarding
/// whatever it sends before.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let until_closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, until_closed).await.is_ok()
}

/// Whether `stream` is still open: nothing to read yet, and no end of stream.
fn still_open(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: lsrecd\r\n\r\n";

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_after_the_header_timeout() {
    let server = limited(ListenerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ListenerLimits::default()
    })
    .await;
    let mut idle = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");

    assert!(
        closed_within(&mut idle, Duration::from_secs(10)).await,
        "an idle connection stayed open"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_trickled_one_byte_at_a_time_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let server = limited(ListenerLimits {
        header_read_timeout: Duration::from_millis(500),
        ..ListenerLimits::default()
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let head = b"GET /healthz HTTP/1.1\r\nHost: lsrecd\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

    // One byte every 100 ms: the whole head would take about 10 s, twenty times the timeout.
    let mut cut_after = None;
    for (i, byte) in head.iter().enumerate() {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_after = Some(i);
            break;
        }
        if !still_open(&slow) {
            cut_after = Some(i + 1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sent = cut_after.expect("the server waited for the whole trickled head");
    assert!(
        sent < head.len(),
        "cut after {sent} of {} bytes",
        head.len()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_keep_alive_connection_left_idle_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = limited(ListenerLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ListenerLimits::default()
    })
    .await;
    let mut conn = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    conn.write_all(HEALTHZ).await.expect("send");
    let mut first = [0u8; 12];
    conn.read_exact(&mut first).await.expect("an answer");
    assert_eq!(&first, b"HTTP/1.1 200");

    assert!(
        closed_within(&mut conn, Duration::from_secs(10)).await,
        "the idle keep-alive connection stayed open"
    );
    server.stop().await;
}

/// Opens a connection, then waits a moment: the server accepts it meanwhile, and the next
/// connection's waiting time (kept in milliseconds) differs from its own.
async fn open_and_settle(server: &TestServer) -> tokio::net::TcpStream {
    let conn = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(30)).await;
    conn
}

/// `GET /healthz` on a new connection: the status line, if one came within 5 s.
async fn healthz_on_a_new_connection(server: &TestServer) -> Option<[u8; 12]> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut conn = tokio::net::TcpStream::connect(server.addr()).await.ok()?;
        conn.write_all(HEALTHZ).await.ok()?;
        let mut status = [0u8; 12];
        conn.read_exact(&mut status).await.ok()?;
        Some(status)
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn at_the_cap_a_new_connection_takes_the_place_of_the_one_waiting_longest_for_a_request() {
    let server = limited(ListenerLimits {
        max_connections: 3,
        header_read_timeout: Duration::from_secs(60),
        ..ListenerLimits::default()
    })
    .await;
    let mut oldest = open_and_settle(&server).await;
    let held = [
        open_and_settle(&server).await,
        open_and_settle(&server).await,
    ];
    let status = healthz_on_a_new_connection(&server).await;

    assert_eq!(
        status.as_ref(),
        Some(b"HTTP/1.1 200"),
        "the new connection was served"
    );
    assert!(
        closed_within(&mut oldest, Duration::from_secs(5)).await,
        "the connection idle longest was not closed for it (header timeout is 60 s)"
    );
    assert!(
        held.iter().all(still_open),
        "the two younger ones stay open"
    );
    server.stop().await;
}

#[tokio::test]
async fn with_a_request_in_progress_on_every_connection_a_new_one_is_closed_at_once() {
    use tokio::io::AsyncWriteExt;
    let (tx, _rx) = mpsc::channel(16);
    let (router, _control) = callback_router(settings(TOKEN, &[CHANNEL]), tx, Metrics::new());
    let server = TestServer::start_with(
        router,
        ListenerLimits {
            max_connections: 2,
            header_read_timeout: Duration::from_secs(60),
            ..ListenerLimits::default()
        },
    )
    .await;
    // Two callbacks whose bodies never finish arriving: requests in progress.
    let head = format!(
        "POST /callback/{TOKEN} HTTP/1.1\r\nHost: lsrecd\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut conn = open_and_settle(&server).await;
        conn.write_all(head.as_bytes())
            .await
            .expect("a request head");
        busy.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut extra = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("the kernel accepts it");
    assert!(
        closed_within(&mut extra, Duration::from_secs(5)).await,
        "a third connection was not closed at once"
    );
    assert!(
        busy.iter().all(still_open),
        "no request in progress is cut for it"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_last_request_a_connection_may_make_is_answered_with_connection_close() {
    use tokio::io::AsyncWriteExt;
    let server = limited(ListenerLimits {
        max_requests_per_connection: 2,
        ..ListenerLimits::default()
    })
    .await;
    let mut conn = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");

    conn.write_all(&[HEALTHZ, HEALTHZ].concat())
        .await
        .expect("two pipelined requests");
    let mut answers = Vec::new();
    let read_all = async {
        use tokio::io::AsyncReadExt;
        conn.read_to_end(&mut answers).await
    };
    let result = tokio::time::timeout(Duration::from_secs(10), read_all).await;

    assert!(
        result.is_ok(),
        "the connection stayed open after its last request"
    );
    let text = String::from_utf8_lossy(&answers).to_ascii_lowercase();
    assert_eq!(text.matches("http/1.1 200").count(), 2, "{text}");
    assert_eq!(text.matches("connection: close").count(), 1, "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_over_the_size_limit_gets_431() {
    let server = limited(ListenerLimits {
        max_header_bytes: 1024,
        ..ListenerLimits::default()
    })
    .await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: lsrecd\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(4096)
    );

    let status_line = raw_exchange(&server.addr(), request.as_bytes()).await;

    assert!(status_line.starts_with("HTTP/1.1 431"), "{status_line}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_keep_neither_a_callback_nor_metrics_out() {
    const IDLE: usize = 2000;
    // Both ends of every connection live in this process, plus the runtime's own.
    support::raise_fd_limit(2 * IDLE as u64 + 512);
    let (tx, mut rx) = mpsc::channel(16);
    let metrics = Metrics::new();
    let (router, _control) = callback_router(settings(TOKEN, &[CHANNEL]), tx, metrics.clone());
    let callbacks = TestServer::start(router).await;
    let metrics_server = TestServer::start(metrics_router(
        metrics,
        Readiness::new(Duration::from_secs(30)),
    ))
    .await;
    let started = std::time::Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(
            tokio::net::TcpStream::connect(callbacks.addr())
                .await
                .expect("an idle connection"),
        );
    }

    let status = post(&callbacks.url(&format!("/callback/{TOKEN}")), PUBLISH_START).await;
    let metrics_text = client()
        .get(metrics_server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("a body");

    assert_eq!(status, 202);
    assert_eq!(rx.try_recv().map(|h| h.channel_id), Ok(CHANNEL.to_string()));
    assert!(
        metrics_text.contains(r#"lsrecd_callbacks_total{result="accepted"} 1"#),
        "{metrics_text}"
    );
    // The point is that they were all still held while the callback went through.
    let held_for = started.elapsed();
    assert!(
        held_for < ListenerLimits::default().header_read_timeout,
        "the machine took {held_for:?}; the idle connections may have timed out meanwhile"
    );
    let open = idle.iter().filter(|c| still_open(c)).count();
    assert_eq!(
        open, IDLE,
        "idle connections closed before their header timeout"
    );
    drop(idle);
    callbacks.stop().await;
    metrics_server.stop().await;
}
