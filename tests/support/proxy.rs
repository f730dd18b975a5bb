//! A forwarding HTTP proxy for tests: it passes every request unchanged to an upstream (the
//! emulator), notes what it saw, and can stamp answers with its own `Date` the way a proxy or
//! load balancer in front of the gateway might.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The largest request body forwarded.
const MAX_BODY: usize = 1024 * 1024;

/// Which `Date` the proxy's answers carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateHeader {
    /// The upstream's, unchanged.
    Upstream,
    /// The proxy's own clock (the real one), whatever the upstream said.
    Local,
}

/// A request as it passed through the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query exactly as received.
    pub target: String,
    /// The `x-ncp-region_code` header.
    pub region: Option<String>,
    /// The upstream's HTTP status, or 502 when it could not be reached.
    pub status: u16,
    /// The upstream's answer body, as text.
    pub answer: String,
}

struct Forwarder {
    upstream: String,
    client: reqwest::Client,
    date: DateHeader,
    seen: Mutex<Vec<Seen>>,
}

/// A proxy serving in a background task on a port of its own.
pub struct Proxy {
    addr: SocketAddr,
    forwarder: Arc<Forwarder>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream` (`http://IP:PORT`).
    pub async fn start(upstream: &str, date: DateHeader) -> Proxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("proxy's HTTP client");
        let forwarder = Arc::new(Forwarder {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            date,
            seen: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds a free port");
        let addr = listener.local_addr().expect("proxy address");
        let app = Router::new()
            .fallback(forward)
            .with_state(forwarder.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        Proxy {
            addr,
            forwarder,
            stop,
            task,
        }
    }

    /// `http://IP:PORT`, the endpoint to give a client.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request forwarded so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.forwarder
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn forward(State(f): State<Arc<Forwarder>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let mut seen = Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        region: parts
            .headers
            .get("x-ncp-region_code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        status: StatusCode::BAD_GATEWAY.as_u16(),
        answer: String::new(),
    };
    let (response, relayed) = relay(&f, parts, body, &target).await;
    if let Some(upstream) = relayed {
        seen.status = upstream.status;
        seen.answer = upstream.answer;
    }
    f.seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(seen);
    response
}

/// What the upstream answered, for [`Seen`].
struct Relayed {
    status: u16,
    answer: String,
}

/// Sends the request on to the upstream and turns its answer into the proxy's; the upstream's
/// answer too when there was one.
async fn relay(
    f: &Forwarder,
    parts: axum::http::request::Parts,
    body: Body,
    target: &str,
) -> (Response, Option<Relayed>) {
    let failed = |status: StatusCode, text: String| ((status, text).into_response(), None);
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return failed(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large".into(),
        );
    };

    let mut upstream = f
        .client
        .request(parts.method, format!("{}{target}", f.upstream))
        .body(body.to_vec());
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return failed(StatusCode::BAD_GATEWAY, format!("proxy: {e}")),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let Ok(bytes) = answer.bytes().await else {
        return failed(
            StatusCode::BAD_GATEWAY,
            "proxy: upstream body unreadable".into(),
        );
    };

    let relayed = Relayed {
        status: status.as_u16(),
        answer: String::from_utf8_lossy(&bytes).into_owned(),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    let out = response.headers_mut();
    for (name, value) in &headers {
        let hop = [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ];
        if !hop.contains(name) {
            out.append(name, value.clone());
        }
    }
    if f.date == DateHeader::Local {
        let now = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        if let Ok(value) = HeaderValue::from_str(&now) {
            out.insert(header::DATE, value);
        }
    }
    (response, Some(relayed))
}
