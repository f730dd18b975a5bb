//! The signed Live Station HTTP client.
//!
//! Every call goes the same way:
//!
//! 1. wait for the shared client-side rate limit (`api.max_rps`, see `ratelimit.rs`), which a
//!    `Retry-After` answer pushes back for every call (at most [`MAX_RETRY_AFTER`]);
//! 2. build the request target once (region prefix, percent-encoded path segments, query
//!    parameters in a fixed order), sign exactly that string with signature v2 and a timestamp
//!    corrected by the clock-skew estimate (`skew.rs`), and send exactly that string;
//! 3. read the answer within the configured timeout, at most [`MAX_BODY_BYTES`] of it, noting
//!    the `x-ncp-trace-id` and `Date` headers of every response;
//! 4. turn the outcome into a typed value (through the tolerant parsers of [`super::model`]) or
//!    into one [`ApiError`], made by [`classify`] for answers and [`classify_transport`] for
//!    requests that got no answer.
//!
//! A 401 with gateway code `200` ("Authentication Failed") is signed again once with a fresh
//! timestamp, after the skew estimate has taken that response's `Date` into account. Nothing
//! else is retried here: a failed `startRecord` may still have started a recording, and only the
//! engine can reconcile before sending it again.
//!
//! Failed calls are logged with the operation, channel, HTTP status, error class and trace id:
//! at `warn` when an operator or support ticket may need them (refusals, authentication,
//! unreadable answers, server errors), at `debug` for network failures and rate limiting, which
//! the engine retries and reports itself. Keys and signatures are never logged; their header
//! values are marked sensitive so that even a `Debug` print of a request hides them.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::codes::{self, Meaning};
use super::error::ApiError;
use super::model::{
    self, Channel, ChannelPage, ErrorBody, ListedPage, MalformedBody, PageDigest, PageShape,
    RecordSet,
};
use super::ratelimit::RateLimiter;
use super::sign;
use super::skew::ClockSkew;

/// API region: selects the path prefix and the `x-ncp-region_code` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Region {
    #[serde(rename = "KR")]
    Kr,
    #[serde(rename = "FKR")]
    Fkr,
}

impl Region {
    /// `/api/v2` for KR, `/api/fin-v2` for FKR.
    pub fn prefix(self) -> &'static str {
        match self {
            Region::Kr => "/api/v2",
            Region::Fkr => "/api/fin-v2",
        }
    }

    /// The `x-ncp-region_code` header value.
    pub fn code(self) -> &'static str {
        match self {
            Region::Kr => "KR",
            Region::Fkr => "FKR",
        }
    }

    /// Parses `KR` / `FKR` (case-insensitive).
    pub fn parse(s: &str) -> Option<Region> {
        match s.to_ascii_uppercase().as_str() {
            "KR" => Some(Region::Kr),
            "FKR" => Some(Region::Fkr),
            _ => None,
        }
    }
}

/// Access key and secret key.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key: crate::secret::Secret,
    pub secret_key: crate::secret::Secret,
}

/// The largest response body read; a larger one is [`ApiError::Malformed`] (or, for an error
/// status, classified without its body) instead of being buffered.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The longest wait a `Retry-After` header can impose. A larger value (or a date further away)
/// counts as this long: a server that says "come back next year" must not park a stop retry
/// past its window, or the whole client, for good. Five minutes is far beyond any throttle
/// window the API gateway documents, so an honest server is always obeyed.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// `pageSizeNo` used by [`Client::list_channels`], the largest the API accepts.
pub const CHANNEL_PAGE_SIZE: u32 = 100;

/// A bound on the pages [`Client::list_channels`] reads (a million channels), so a server that
/// keeps inventing channels cannot keep it paging forever.
pub const MAX_CHANNEL_PAGES: u32 = 10_000;

/// The connect timeout never exceeds this, nor half the call timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const USER_AGENT: &str = concat!("lsrecd/", env!("CARGO_PKG_VERSION"));
const H_TIMESTAMP: &str = "x-ncp-apigw-timestamp";
const H_ACCESS_KEY: &str = "x-ncp-iam-access-key";
const H_SIGNATURE: &str = "x-ncp-apigw-signature-v2";
const H_REGION: &str = "x-ncp-region_code";
const H_TRACE_ID: &str = "x-ncp-trace-id";

/// Gateway error code for "Authentication Failed": missing or invalid signature, or a stale
/// timestamp. Signed again once.
const GATEWAY_AUTH_FAILED: &str = "200";

/// What the client needs to talk to Live Station.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Scheme and host, e.g. `https://livestation.apigw.ntruss.com` or `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub region: Region,
    pub credentials: Credentials,
    /// Limit for a whole call: connect, send, and read the response body.
    pub timeout: Duration,
    /// Requests per second over all clones of the client.
    pub max_rps: f64,
}

/// Why a [`Client`] could not be made from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("api.endpoint {endpoint:?} is not usable: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("api.timeout must be longer than zero")]
    Timeout,
    #[error("api.max_rps must be a positive number of requests per second, not {0}")]
    MaxRps(f64),
    #[error("the access key is empty or contains characters that cannot be sent in an HTTP header")]
    AccessKey,
    #[error("could not set up the HTTP client: {0}")]
    Http(#[source] reqwest::Error),
}

/// The API operations, as counted in [`ApiStats`] and named in logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    ListChannels,
    GetChannel,
    StartRecord,
    StopRecord,
    ListRecords,
    GetRecord,
    Upload,
}

impl Operation {
    /// The snake_case name used in logs and in the `operation` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ListChannels => "list_channels",
            Operation::GetChannel => "get_channel",
            Operation::StartRecord => "start_record",
            Operation::StopRecord => "stop_record",
            Operation::ListRecords => "list_records",
            Operation::GetRecord => "get_record",
            Operation::Upload => "upload",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A successful call's value and what was observed on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply<T> {
    pub value: T,
    pub meta: ReplyMeta,
}

/// Facts about the HTTP exchange behind a [`Reply`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyMeta {
    pub http_status: u16,
    /// `x-ncp-trace-id`, the reference NAVER support asks for.
    pub trace_id: Option<String>,
    /// The response's `Date` header.
    pub server_date: Option<DateTime<Utc>>,
    /// Time spent in HTTP exchanges (sending to reading the body), summed over attempts;
    /// waiting for the rate limit is not included.
    pub elapsed: Duration,
    /// HTTP requests sent: 1, or 2 when the first was refused as "Authentication Failed" and
    /// signed again. For [`Client::list_channels`], the sum over all pages.
    pub attempts: u32,
}

impl ReplyMeta {
    /// Combines the meta of consecutive calls: the latest status, trace id and date; summed
    /// time and attempts.
    fn absorb(&mut self, next: ReplyMeta) {
        self.http_status = next.http_status;
        self.trace_id = next.trace_id;
        self.server_date = next.server_date.or(self.server_date);
        self.elapsed += next.elapsed;
        self.attempts += next.attempts;
    }
}

/// Counters for metrics, cumulative since the client was made.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiStats {
    /// Calls by operation and outcome; the outcome is `"ok"` or [`ApiError::class`]. Each page
    /// of a channel listing is one `list_channels` call.
    pub calls: BTreeMap<(Operation, &'static str), u64>,
    /// HTTP requests sent, including re-signed ones and those that got no answer.
    pub http_requests: u64,
    /// Time spent in those requests, from sending to reading the body.
    pub http_duration: Duration,
}

/// The Live Station client. Cheap to clone; clones share the connection pool, the rate limit,
/// the clock-skew estimate and the counters.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The endpoint without a trailing slash; request targets are appended to it.
    base: String,
    region: Region,
    credentials: Credentials,
    access_key_header: HeaderValue,
    limiter: RateLimiter,
    skew: ClockSkew,
    stats: Mutex<ApiStats>,
    observer: std::sync::OnceLock<CallObserver>,
}

/// Told of every finished call: operation name (`start_record`, …), outcome (`ok` or the
/// error class) and how long it took, retries included. Used for metrics.
pub type CallObserver = std::sync::Arc<dyn Fn(&'static str, &'static str, Duration) + Send + Sync>;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.base)
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

/// One request to make: everything that goes into signing and logging it.
struct Call<'a> {
    operation: Operation,
    /// The first request uses this slot instead of waiting for one.
    permit: Option<Permit>,
    method: Method,
    /// Path and query, already encoded: the exact string that is signed and sent.
    target: String,
    body: Option<Vec<u8>>,
    channel_id: Option<&'a str>,
}

/// A 2xx answer, before parsing.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// What the exchanges of one call showed, whatever their outcome.
#[derive(Default)]
struct Observed {
    http_status: Option<u16>,
    trace_id: Option<String>,
    server_date: Option<DateTime<Utc>>,
    elapsed: Duration,
    attempts: u32,
    /// When the last request left (after its rate-limit slot).
    last_sent: Option<tokio::time::Instant>,
}

/// A slot of the shared rate limit, already waited for: the call made with it goes out at
/// once. Taking the slot before journaling an intent keeps the journal's time the time of
/// sending, however many calls queue behind `api.max_rps`.
#[derive(Debug)]
pub struct Permit(());

impl Permit {
    /// A permit for a double that has no rate limit.
    pub(crate) fn granted() -> Permit {
        Permit(())
    }
}

/// The outcome of a state-changing call, with when its last request was sent: a request that
/// failed without a clear answer may still take effect until some time after that.
#[derive(Debug)]
pub struct Sent<T> {
    pub result: Result<Reply<T>, ApiError>,
    /// When the last HTTP request of the call left; `None` if none did.
    pub last_sent: Option<tokio::time::Instant>,
}

impl Client {
    /// Validates the configuration and sets up the HTTP client (rustls with the ring provider,
    /// timeouts, no redirects: a redirected request would carry a signature for another target).
    pub fn new(cfg: ClientConfig) -> Result<Client, ClientBuildError> {
        install_crypto_provider();
        let base = cfg.endpoint.trim().trim_end_matches('/').to_string();
        let endpoint_error = |reason: &str| ClientBuildError::Endpoint {
            endpoint: cfg.endpoint.clone(),
            reason: reason.to_string(),
        };
        let url = Url::parse(&base).map_err(|e| endpoint_error(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(endpoint_error(
                "the scheme must be https (or http for a local emulator)",
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(endpoint_error("there is no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(endpoint_error("it must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(endpoint_error(
                "it must not contain a user name or password",
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(ClientBuildError::Timeout);
        }
        let limiter = RateLimiter::new(cfg.max_rps).ok_or(ClientBuildError::MaxRps(cfg.max_rps))?;
        let access_key = cfg.credentials.access_key.expose();
        if access_key.is_empty() {
            return Err(ClientBuildError::AccessKey);
        }
        let mut access_key_header =
            HeaderValue::from_str(access_key).map_err(|_| ClientBuildError::AccessKey)?;
        access_key_header.set_sensitive(true);

        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(cfg.timeout)
            .connect_timeout((cfg.timeout / 2).min(MAX_CONNECT_TIMEOUT))
            .redirect(reqwest::redirect::Policy::none());
        if is_loopback(&url) {
            // A local emulator is never reached through a proxy from the environment.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(ClientBuildError::Http)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                region: cfg.region,
                credentials: cfg.credentials,
                access_key_header,
                limiter,
                skew: ClockSkew::default(),
                stats: Mutex::new(ApiStats::default()),
                observer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// `GET {prefix}/channels?pageNo=&pageSizeNo=`: one page of the channel list.
    pub async fn list_channels_page(
        &self,
        page_no: u32,
        page_size: u32,
    ) -> Result<Reply<ChannelPage>, ApiError> {
        let call = self.channels_page_call(page_no, page_size);
        self.call(call, |body| {
            let mut page = model::parse_channel_page(body)?;
            page.digest = Some(PageDigest::of(body));
            Ok(page)
        })
        .await
    }

    /// [`Client::list_channels_page`], not read when the body's digest is `known`: the page is
    /// then the one that digest was taken of.
    pub async fn list_channels_page_if_changed(
        &self,
        page_no: u32,
        page_size: u32,
        known: Option<PageDigest>,
    ) -> Result<Reply<ListedPage>, ApiError> {
        let call = self.channels_page_call(page_no, page_size);
        self.call(call, |body| {
            let digest = PageDigest::of(body);
            if known == Some(digest) {
                return Ok(ListedPage::Unchanged);
            }
            let mut page = model::parse_channel_page(body)?;
            page.digest = Some(digest);
            Ok(ListedPage::Read(page))
        })
        .await
    }

    /// `GET {prefix}/channels?pageNo=&pageSizeNo=`.
    fn channels_page_call(&self, page_no: u32, page_size: u32) -> Call<'static> {
        let target = format!(
            "{}/channels?pageNo={page_no}&pageSizeNo={page_size}",
            self.inner.region.prefix()
        );
        Call::new(Operation::ListChannels, Method::GET, target, None)
    }

    /// Every channel: pages of [`CHANNEL_PAGE_SIZE`] from `pageNo=1` until a page comes back
    /// short or empty (or `total` entries have been seen, where `total` proved to count every
    /// channel: see [`ListingProgress`]). Channels are
    /// deduplicated by id (the list may shift between pages); skipped entries of all pages are
    /// kept, prefixed with their page. `total` is the last page's. The first failing page fails
    /// the whole listing.
    pub async fn list_channels(&self) -> Result<Reply<ChannelPage>, ApiError> {
        let mut listing = Listing::default();
        let Reply { value, mut meta } = self.list_channels_page(1, CHANNEL_PAGE_SIZE).await?;
        let mut page_no = 1;
        let mut done = listing.add(page_no, value);
        while !done {
            if page_no == MAX_CHANNEL_PAGES {
                tracing::warn!(
                    pages = page_no,
                    channels = listing.page.len(),
                    "stopped listing channels after {MAX_CHANNEL_PAGES} pages"
                );
                break;
            }
            page_no += 1;
            let reply = self.list_channels_page(page_no, CHANNEL_PAGE_SIZE).await?;
            meta.absorb(reply.meta);
            done = listing.add(page_no, reply.value);
        }
        Ok(Reply {
            value: listing.page,
            meta,
        })
    }

    /// `GET {prefix}/channels/{channelId}`: one channel's state.
    pub async fn get_channel(&self, channel_id: &str) -> Result<Reply<Channel>, ApiError> {
        let call = self.channel_call(Operation::GetChannel, Method::GET, channel_id, "");
        self.call(call, model::parse_channel).await
    }

    /// `PUT {prefix}/channels/{channelId}/startRecord`. On a [`ApiError::maybe_applied`] failure
    /// the recording may have started: reconcile before calling again.
    pub async fn start_record(&self, channel_id: &str) -> Result<Reply<RecordSet>, ApiError> {
        self.start_record_with(channel_id, None).await.result
    }

    /// [`Client::start_record`] in the slot `permit` (when given), reporting when the request
    /// left.
    pub async fn start_record_with(
        &self,
        channel_id: &str,
        permit: Option<Permit>,
    ) -> Sent<RecordSet> {
        let mut call = self.channel_call(
            Operation::StartRecord,
            Method::PUT,
            channel_id,
            "/startRecord",
        );
        call.permit = permit;
        self.call_sent(call, model::parse_records).await
    }

    /// `PUT {prefix}/channels/{channelId}/stopRecord`.
    pub async fn stop_record(&self, channel_id: &str) -> Result<Reply<RecordSet>, ApiError> {
        self.stop_record_with(channel_id, None).await.result
    }

    /// [`Client::stop_record`] in the slot `permit` (when given), reporting when the request
    /// left.
    pub async fn stop_record_with(
        &self,
        channel_id: &str,
        permit: Option<Permit>,
    ) -> Sent<RecordSet> {
        let mut call = self.channel_call(
            Operation::StopRecord,
            Method::PUT,
            channel_id,
            "/stopRecord",
        );
        call.permit = permit;
        self.call_sent(call, model::parse_records).await
    }

    /// Waits for a slot of the shared rate limit and holds it for the next state-changing
    /// call (see [`Permit`]).
    pub async fn ready(&self) -> Permit {
        self.inner.limiter.acquire_for_caller().await;
        Permit(())
    }

    /// `GET {prefix}/channels/{channelId}/records`: every record Live Station keeps for it.
    pub async fn list_records(&self, channel_id: &str) -> Result<Reply<RecordSet>, ApiError> {
        let call = self.channel_call(Operation::ListRecords, Method::GET, channel_id, "/records");
        self.call(call, model::parse_records).await
    }

    /// `GET {prefix}/channels/{channelId}/records/{recordId}`.
    pub async fn get_record(
        &self,
        channel_id: &str,
        record_id: i64,
    ) -> Result<Reply<RecordSet>, ApiError> {
        let tail = format!("/records/{record_id}");
        let call = self.channel_call(Operation::GetRecord, Method::GET, channel_id, &tail);
        self.call(call, model::parse_records).await
    }

    /// `POST {prefix}/buckets/{bucketName}/upload` with `{"recordIds":[..],"accessControl":..}`
    /// (`accessControl` left out when `None`: the API then uses `PRIVATE`). The value is the
    /// whole JSON answer; its `content` holds `bucketName`, `accessControl`, `uploadedRecords`.
    pub async fn upload(
        &self,
        bucket: &str,
        record_ids: &[i64],
        access_control: Option<&str>,
    ) -> Result<Reply<serde_json::Value>, ApiError> {
        let target = format!(
            "{}/buckets/{}/upload",
            self.inner.region.prefix(),
            encode_segment(bucket)
        );
        let mut body = serde_json::json!({ "recordIds": record_ids });
        if let Some(acl) = access_control {
            body["accessControl"] = serde_json::Value::from(acl);
        }
        let call = Call::new(
            Operation::Upload,
            Method::POST,
            target,
            Some(body.to_string().into_bytes()),
        );
        self.call(call, |body| {
            serde_json::from_slice(body).map_err(|e| MalformedBody(format!("not JSON: {e}")))
        })
        .await
    }

    /// Server clock minus local clock, estimated from the `Date` header of the latest response;
    /// `None` until a response carried one.
    pub fn clock_skew(&self) -> Option<TimeDelta> {
        self.inner.skew.estimate()
    }

    /// Installs the call observer (once; later calls are ignored). Shared by every clone.
    pub fn observe_calls(&self, observer: CallObserver) {
        let _ = self.inner.observer.set(observer);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ApiStats {
        self.lock_stats().clone()
    }

    /// A call on one channel: `{prefix}/channels/{encoded id}{tail}`.
    fn channel_call<'a>(
        &self,
        operation: Operation,
        method: Method,
        channel_id: &'a str,
        tail: &str,
    ) -> Call<'a> {
        let target = format!(
            "{}/channels/{}{tail}",
            self.inner.region.prefix(),
            encode_segment(channel_id)
        );
        Call {
            channel_id: Some(channel_id),
            ..Call::new(operation, method, target, None)
        }
    }

    /// Runs one call to its end: exchange, parse, count, log.
    async fn call<T>(
        &self,
        call: Call<'_>,
        parse: impl FnOnce(&[u8]) -> Result<T, MalformedBody>,
    ) -> Result<Reply<T>, ApiError> {
        self.call_sent(call, parse).await.result
    }

    /// [`Client::call`], also reporting when the last request left.
    async fn call_sent<T>(
        &self,
        mut call: Call<'_>,
        parse: impl FnOnce(&[u8]) -> Result<T, MalformedBody>,
    ) -> Sent<T> {
        let (outcome, observed) = self.exchange(&mut call).await;
        let result = outcome.and_then(|answer| {
            let value = parse(&answer.body).map_err(|e| ApiError::Malformed {
                http_status: answer.status,
                reason: e.0,
            })?;
            Ok((value, answer.status))
        });
        self.finish(&call, &observed, result.as_ref().map(|_| ()));
        let last_sent = observed.last_sent;
        Sent {
            result: result.map(|(value, http_status)| Reply {
                value,
                meta: ReplyMeta {
                    http_status,
                    trace_id: observed.trace_id,
                    server_date: observed.server_date,
                    elapsed: observed.elapsed,
                    attempts: observed.attempts,
                },
            }),
            last_sent,
        }
    }

    /// Sends the call, and once more if the gateway answers "Authentication Failed".
    async fn exchange(&self, call: &mut Call<'_>) -> (Result<Answer, ApiError>, Observed) {
        let mut observed = Observed::default();
        let url = match Url::parse(&format!("{}{}", self.inner.base, call.target)) {
            Ok(url) => url,
            // Unreachable for a validated endpoint and an encoded target; reported rather
            // than trusted.
            Err(e) => {
                let error = ApiError::Transient {
                    http_status: None,
                    error_code: None,
                    reason: format!("could not build the request URL: {e}"),
                    maybe_applied: false,
                };
                return (Err(error), observed);
            }
        };
        // Sign what the URL will put on the request line, which is `call.target` unless the
        // endpoint has a path of its own.
        let target = request_target(&url);
        loop {
            observed.attempts += 1;
            // The slot taken for the call serves its first request; a re-signed one waits.
            let permit = call.permit.take();
            let outcome = self
                .attempt(call, permit, &url, &target, &mut observed)
                .await;
            match outcome {
                Err(ApiError::Unauthorized { error_code, .. })
                    if error_code == GATEWAY_AUTH_FAILED && observed.attempts == 1 =>
                {
                    tracing::debug!(
                        operation = call.operation.as_str(),
                        channel_id = call.channel_id,
                        trace_id = observed.trace_id.as_deref(),
                        "authentication failed; signing once more with a fresh timestamp"
                    );
                }
                other => return (other, observed),
            }
        }
    }

    /// One signed HTTP request and its classified answer.
    async fn attempt(
        &self,
        call: &Call<'_>,
        permit: Option<Permit>,
        url: &Url,
        target: &str,
        observed: &mut Observed,
    ) -> Result<Answer, ApiError> {
        let inner = &*self.inner;
        // Report what this attempt saw, not what an earlier one did.
        observed.http_status = None;
        observed.trace_id = None;
        observed.server_date = None;
        if permit.is_none() {
            // What a hint reads goes first; the rest gives way (see `ratelimit`).
            inner.limiter.acquire_for_caller().await;
        }

        let sent_at = Utc::now();
        let timestamp = inner.skew.server_now(sent_at).timestamp_millis();
        let signature = sign::sign(
            inner.credentials.secret_key.expose(),
            call.method.as_str(),
            target,
            timestamp,
            inner.credentials.access_key.expose(),
        );
        // Standard Base64 is always a valid header value.
        let mut signature = HeaderValue::try_from(signature).map_err(|_| ApiError::Transient {
            http_status: None,
            error_code: None,
            reason: "the signature is not a valid header value".into(),
            maybe_applied: false,
        })?;
        signature.set_sensitive(true);

        let mut request = inner
            .http
            .request(call.method.clone(), url.clone())
            .header(H_TIMESTAMP, timestamp.to_string())
            .header(H_ACCESS_KEY, inner.access_key_header.clone())
            .header(H_SIGNATURE, signature)
            .header(H_REGION, inner.region.code())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(body) = &call.body {
            request = request.body(body.clone());
        }

        let started = tokio::time::Instant::now();
        observed.last_sent = Some(started);
        let outcome = match request.send().await {
            Err(e) => Err(classify_transport(&e, None)),
            Ok(mut response) => {
                let received_at = Utc::now();
                let status = response.status().as_u16();
                let headers = std::mem::take(response.headers_mut());
                observed.http_status = Some(status);
                observed.trace_id = header_text(&headers, H_TRACE_ID).map(str::to_owned);
                observed.server_date =
                    header_text(&headers, header::DATE.as_str()).and_then(parse_http_date);
                if let Some(date) = observed.server_date {
                    inner.skew.observe(date, sent_at, received_at);
                }
                match read_capped(&mut response, MAX_BODY_BYTES).await {
                    Err(e) => Err(classify_transport(&e, Some(status))),
                    Ok((body, too_large)) => classify(status, &headers, &body).and_then(|()| {
                        if too_large {
                            Err(ApiError::Malformed {
                                http_status: status,
                                reason: format!(
                                    "the response body is larger than {} MiB",
                                    MAX_BODY_BYTES / (1024 * 1024)
                                ),
                            })
                        } else {
                            Ok(Answer { status, body })
                        }
                    }),
                }
            }
        };
        if let Err(ApiError::RateLimited {
            retry_after: Some(wait),
            ..
        }) = &outcome
        {
            // The gateway throttles the account, not this one call: every call waits, so the
            // next poll does not spend the wait hammering a gateway that asked for quiet.
            inner.limiter.hold_off(*wait);
        }
        let took = started.elapsed();
        observed.elapsed += took;
        let mut stats = self.lock_stats();
        stats.http_requests += 1;
        stats.http_duration += took;
        outcome
    }

    /// Counts the call and logs its outcome.
    fn finish(&self, call: &Call<'_>, observed: &Observed, result: Result<(), &ApiError>) {
        let outcome = result.map_or_else(ApiError::class, |()| "ok");
        *self
            .lock_stats()
            .calls
            .entry((call.operation, outcome))
            .or_default() += 1;
        let operation = call.operation.as_str();
        if let Some(observer) = self.inner.observer.get() {
            observer(operation, outcome, observed.elapsed);
        }
        let channel_id = call.channel_id;
        let http_status = observed.http_status;
        let trace_id = observed.trace_id.as_deref();
        let attempts = observed.attempts;
        match result {
            Ok(()) => tracing::debug!(
                operation,
                channel_id,
                http_status,
                trace_id,
                attempts,
                elapsed_ms = observed.elapsed.as_millis() as u64,
                "Live Station call succeeded"
            ),
            Err(error) => {
                let noteworthy = match error {
                    ApiError::Transient { http_status, .. } => http_status.is_some(),
                    ApiError::RateLimited { .. } => false,
                    ApiError::Unauthorized { .. }
                    | ApiError::Rejected { .. }
                    | ApiError::Malformed { .. } => true,
                };
                let error_class = error.class();
                let error_code = error.error_code();
                if noteworthy {
                    tracing::warn!(
                        operation, channel_id, http_status, error_class, error_code, trace_id,
                        attempts, %error, "Live Station call failed"
                    );
                } else {
                    tracing::debug!(
                        operation, channel_id, http_status, error_class, error_code, trace_id,
                        attempts, %error, "Live Station call failed"
                    );
                }
            }
        }
    }

    fn lock_stats(&self) -> std::sync::MutexGuard<'_, ApiStats> {
        // Counters stay meaningful even if a holder panicked.
        self.inner.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<'a> Call<'a> {
    fn new(operation: Operation, method: Method, target: String, body: Option<Vec<u8>>) -> Self {
        Call {
            operation,
            permit: None,
            method,
            target,
            body,
            channel_id: None,
        }
    }
}

/// Collects the pages of a channel listing: used by [`Client::list_channels`]. Channels are
/// deduplicated by id; [`ListingProgress`] decides when the listing is complete.
#[derive(Default)]
pub struct Listing {
    page: ChannelPage,
    ids: HashSet<String>,
    progress: ListingProgress,
}

impl Listing {
    /// The whole listing: distinct channels, the last page's `total`, skipped entries (each
    /// prefixed with its page).
    pub fn into_page(self) -> ChannelPage {
        self.page
    }

    /// Adds page `page_no`; returns whether the listing is complete.
    pub fn add(&mut self, page_no: u32, page: ChannelPage) -> bool {
        let mut new = 0;
        for c in page.channels() {
            if !self.ids.contains(c.channel_id) {
                self.ids.insert(c.channel_id.to_owned());
                self.page.push(c);
                new += 1;
            }
        }
        self.page.total = page.total;
        self.page.skipped.extend(
            page.skipped
                .iter()
                .map(|reason| format!("page {page_no}: {reason}")),
        );
        self.progress.count(page_no, page.shape(), new)
    }
}

/// Counts the pages of a channel listing in and decides when it is complete: for
/// [`Listing`], and for the engine, which reads page by page and keeps the channels in its own
/// view (it tells which channels are listed for the first time).
///
/// The reference describes `total` only as the "total response count": an account may count
/// every channel in it, or the entries of the page, or leave it out. So a listing ends on what
/// it saw: a page shorter than the page size asked for, or empty. `total` ends it early only
/// once the listing has shown that it counts every channel (page 1 said more than it held);
/// otherwise it is only reported.
#[derive(Default)]
pub struct ListingProgress {
    /// Entries seen on all pages, read or skipped, duplicates included.
    entries: u64,
    /// Whether `total` has shown that it counts every channel of the account.
    total_counts_all: bool,
}

impl ListingProgress {
    /// Counts page `page_no` in, `new` of whose channels were not listed on an earlier page;
    /// returns whether the listing is complete: a page came back empty or shorter than
    /// [`CHANNEL_PAGE_SIZE`], or a page only repeated channels already listed (a server that
    /// ignores `pageNo`), or — where `total` proved to count every channel — as many entries as
    /// `total` have been seen.
    pub fn count(&mut self, page_no: u32, page: PageShape, new: usize) -> bool {
        let entries = (page.channels + page.skipped) as u64;
        self.entries += entries;
        if page.channels > 0 && new == 0 {
            tracing::warn!(
                page_no,
                total = page.total,
                "channel page {page_no} repeats channels already listed; stopping the listing"
            );
            return true;
        }
        if page_no == 1 {
            self.total_counts_all = page.total.is_some_and(|total| total > entries);
        }
        if entries == 0 || entries < u64::from(CHANNEL_PAGE_SIZE) {
            return true;
        }
        match page.total {
            Some(total) if self.total_counts_all => self.entries >= total,
            _ => false,
        }
    }

    /// Whether `total` has shown, on page 1, that it counts every channel (it said more than
    /// the page held).
    pub fn total_counts_all(&self) -> bool {
        self.total_counts_all
    }
}

/// Turns an HTTP answer into `Ok(())` or the [`ApiError`] callers branch on.
///
/// The error object's code decides first, whatever the status (Live Station does not document
/// the status of its own errors, and may put an error object under a 2xx), through the table in
/// [`codes`]:
///
/// - transient codes (`250000 EXCEPTION`, gateway `500`, …) → [`ApiError::Transient`], maybe
///   applied;
/// - rate and quota codes, or HTTP 429 → [`ApiError::RateLimited`], `Retry-After` read as seconds
///   or as an HTTP date (measured from the response's `Date` when there is one);
/// - credential and permission codes (`250010 POLICY_CHECK_FAILED`, gateway `200`, …), or HTTP
///   401/403 → [`ApiError::Unauthorized`];
/// - state refusals, "not found" and bad requests → [`ApiError::Rejected`] (see
///   [`ApiError::refusal`]);
/// - a code in neither table → [`ApiError::Transient`], maybe applied: nothing says the call
///   was not applied, nor that trying again is useless.
///
/// Without an error object (or with `250013 OPEN_API_OK`), a 2xx is `Ok` and the status
/// decides the rest: 5xx transient, 404 not found, other statuses rejected. A 2xx body that
/// cannot be parsed becomes [`ApiError::Malformed`] when it is parsed.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let success = (200..300).contains(&status);
    // Most 2xx bodies are pages and records: only one that names `error` is parsed here.
    if success && !mentions_error(body) {
        return Ok(());
    }
    let error = ErrorBody::parse(body);
    let meaning = error.as_ref().and_then(|e| {
        let code = e.error_code.as_deref()?;
        Some(codes::meaning(code, e.is_from_live_station()).unwrap_or_else(|| {
            tracing::warn!(
                http_status = status,
                error_code = code,
                error_name = e.error_name.as_deref(),
                "an error code lsrecd does not know; taken as transient (a start or stop may have been applied)"
            );
            Meaning::Transient
        }))
    });
    let meaning = match meaning {
        Some(Meaning::Success) | None if success => return Ok(()),
        Some(Meaning::Success) | None => None,
        Some(m) => Some(m),
    };
    let error = error.unwrap_or_default();
    let code = error.error_code.clone();
    let meaning = match (status, meaning) {
        // The gateway's throttle, whatever the body says.
        (429, _) => Meaning::RateLimited,
        (_, Some(m)) => m,
        (401 | 403, None) => Meaning::Unauthorized,
        (500.., None) => Meaning::Transient,
        (404, None) => Meaning::Gone,
        _ => Meaning::WaitForState,
    };
    Err(match meaning {
        Meaning::RateLimited => ApiError::RateLimited {
            retry_after: retry_after(headers),
            error_code: code,
        },
        Meaning::Unauthorized => ApiError::Unauthorized {
            http_status: status,
            error_code: code.unwrap_or_else(|| "-".into()),
            message: error
                .message
                .clone()
                .or_else(|| error.error_name.clone())
                .unwrap_or_else(|| status_reason(status).to_string()),
            details: error.details.clone(),
        },
        Meaning::Transient | Meaning::Success => ApiError::Transient {
            http_status: Some(status),
            reason: describe(status, &error, body),
            error_code: code,
            maybe_applied: true,
        },
        Meaning::WaitForState | Meaning::Gone | Meaning::BadRequest => ApiError::Rejected {
            http_status: status,
            error_code: code,
            error_name: error.error_name.clone(),
            message: describe(status, &error, body),
        },
    })
}

/// Whether a body contains the key `"error"` anywhere: a vectorised search, cheap next to
/// reading a page, and true for every error object (a false positive is only parsed for
/// nothing).
fn mentions_error(body: &[u8]) -> bool {
    memchr::memmem::find(body, b"\"error\"").is_some()
}

/// Turns a request that got no (complete) answer into [`ApiError::Transient`].
///
/// `maybe_applied` is false only when the connection was never established (refused, DNS,
/// connect timeout, TLS handshake), so the server cannot have seen the request. Timeouts and
/// resets after that may have let the request through. `http_status` is the status already
/// received when reading the body failed.
pub fn classify_transport(error: &reqwest::Error, http_status: Option<u16>) -> ApiError {
    let never_sent = http_status.is_none() && (error.is_connect() || error.is_builder());
    let what = if error.is_connect() {
        "could not connect"
    } else if error.is_timeout() {
        "timed out"
    } else if http_status.is_some() {
        "reading the response failed"
    } else {
        "the request failed"
    };
    ApiError::Transient {
        http_status,
        error_code: None,
        reason: format!("{what}: {}", error_chain(error)),
        maybe_applied: !never_sent,
    }
}

/// A message for a failed answer: the error object's message and details, else the status
/// reason with the start of the body.
fn describe(status: u16, error: &ErrorBody, body: &[u8]) -> String {
    match (error.message.as_deref(), error.details.as_deref()) {
        (Some(message), Some(details)) => format!("{message} — {details}"),
        (Some(text), None) | (None, Some(text)) => text.to_string(),
        (None, None) => {
            let snippet = body_snippet(body);
            let reason = status_reason(status);
            if snippet.is_empty() {
                reason.to_string()
            } else {
                format!("{reason}: {snippet}")
            }
        }
    }
}

fn status_reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected HTTP status")
}

/// The first 200 characters of a body, whitespace collapsed, for error messages.
fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(1024)]);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

/// `Retry-After` as a duration from now, at most [`MAX_RETRY_AFTER`]: delay-seconds (digits,
/// optionally with a fraction; a number too large for any clock is the cap, not an error), or an
/// HTTP date measured from the response's `Date` (else from the local clock). A date in the past
/// means no wait; anything else (a negative number, `inf`, words) is ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = header_text(headers, header::RETRY_AFTER.as_str())?.trim();
    let wait = if is_delay_seconds(value) {
        match value.parse::<f64>() {
            // Duration::try_from_secs_f64 refuses what does not fit; that is "very long".
            Ok(seconds) => Duration::try_from_secs_f64(seconds).unwrap_or(MAX_RETRY_AFTER),
            Err(_) => return None,
        }
    } else {
        let at = parse_http_date(value)?;
        let now = header_text(headers, header::DATE.as_str())
            .and_then(parse_http_date)
            .unwrap_or_else(Utc::now);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Digits with at most one `.` among them: what a delay-seconds value can look like. Signs and
/// exponents are left out on purpose, so `-5` and `1e999` are not numbers here.
fn is_delay_seconds(value: &str) -> bool {
    value.bytes().any(|b| b.is_ascii_digit())
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && value.bytes().filter(|&b| b == b'.').count() <= 1
}

/// Parses an HTTP date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) or the obsolete RFC 850
/// and asctime forms HTTP/1.1 recipients must accept.
fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(date) = DateTime::parse_from_rfc2822(value) {
        return Some(date.with_timezone(&Utc));
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Reads the body, keeping at most `cap` bytes; the flag says the body was larger.
async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Ok((Vec::new(), true));
    }
    // Sized once when the length is known: a page of channels is some 70 kB.
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The request target a URL puts on the request line: path, and `?query` when there is one.
fn request_target(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// Percent-encodes one path segment: everything but RFC 3986 unreserved characters.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The error and its sources, joined: reqwest's own message alone rarely says what happened.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether `url` names this machine: `localhost`, `127.0.0.0/8`, `::1` (also as an IPv4-mapped
/// IPv6 address). Traffic to such a host never leaves the machine.
pub(crate) fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Makes ring the process's rustls provider (reqwest is built without one). Installing fails
/// only when a provider is already installed, which serves as well.
pub(crate) fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::State;
    use axum::response::Response;

    use super::*;
    use crate::livestation::Refusal;
    use crate::secret::Secret;

    const ACCESS: &str = "NCPTESTACCESSKEY0001";
    const SECRET: &str = "NCPTESTSECRETKEY00000000000000000000SK01";
    const FKR_RECORDS: &str = include_str!("../../tests/fixtures/startRecord-response-fkr.json");

    // ---- a tiny fake Live Station -------------------------------------------------------

    /// A request as the fake server received it.
    #[derive(Clone, Debug)]
    struct Received {
        method: String,
        target: String,
        headers: HeaderMap,
        body: Vec<u8>,
        /// When the request arrived.
        at: std::time::Instant,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            header_text(&self.headers, name)
        }
    }

    /// The answer the fake sends.
    struct FakeReply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    }

    impl FakeReply {
        fn json(status: u16, body: &str) -> FakeReply {
            FakeReply {
                status,
                headers: vec![("content-type", "application/json".into())],
                body: body.as_bytes().to_vec(),
            }
        }

        fn with_header(mut self, name: &'static str, value: String) -> FakeReply {
            self.headers.push((name, value));
            self
        }
    }

    type Responder = Arc<dyn Fn(&Received, usize) -> FakeReply + Send + Sync>;
    type FakeState = (Arc<Mutex<Vec<Received>>>, Responder);

    /// A server on 127.0.0.1:0 that records every request and answers with `responder`
    /// (given the request and its 1-based number). It lives as long as the test's runtime.
    struct Fake {
        addr: SocketAddr,
        received: Arc<Mutex<Vec<Received>>>,
    }

    impl Fake {
        async fn start(
            responder: impl Fn(&Received, usize) -> FakeReply + Send + Sync + 'static,
        ) -> Fake {
            let received = Arc::new(Mutex::new(Vec::new()));
            let state: FakeState = (Arc::clone(&received), Arc::new(responder));
            let app = Router::new().fallback(answer).with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a port-0 listener");
            let addr = listener.local_addr().expect("listener address");
            tokio::spawn(async move { axum::serve(listener, app).await });
            Fake { addr, received }
        }

        fn endpoint(&self) -> String {
            format!("http://{}", self.addr)
        }

        fn requests(&self) -> Vec<Received> {
            self.received.lock().expect("fake state").clone()
        }

        fn targets(&self) -> Vec<(String, String)> {
            self.requests()
                .into_iter()
                .map(|r| (r.method, r.target))
                .collect()
        }
    }

    async fn answer(
        State((received, responder)): State<FakeState>,
        request: axum::extract::Request,
    ) -> Response {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let seen = Received {
            method: parts.method.to_string(),
            target: parts
                .uri
                .path_and_query()
                .map(|pq| pq.as_str().to_string())
                .unwrap_or_default(),
            headers: parts.headers,
            body,
            at: std::time::Instant::now(),
        };
        let number = {
            let mut all = received.lock().expect("fake state");
            all.push(seen.clone());
            all.len()
        };
        let FakeReply {
            status,
            headers,
            body,
        } = responder(&seen, number);
        let mut response = Response::builder()
            .status(status)
            .header(H_TRACE_ID, format!("fake-trace-{number}"));
        for (name, value) in headers {
            response = response.header(name, value);
        }
        response
            .body(Body::from(body))
            .expect("valid fake response")
    }

    fn gateway_error(status: u16, code: &str, message: &str, details: &str) -> FakeReply {
        let body = serde_json::json!({
            "error": { "errorCode": code, "message": message, "details": details }
        });
        FakeReply::json(status, &body.to_string())
    }

    /// What the API gateway checks before Live Station sees a request: the signature over the
    /// received target, and the timestamp against the gateway's clock.
    fn gateway_check(request: &Received, gateway_now: DateTime<Utc>) -> Option<FakeReply> {
        let auth_failed = |details| gateway_error(401, "200", "Authentication Failed", details);
        let (Some(timestamp), Some(access_key), Some(signature)) = (
            request.header(H_TIMESTAMP),
            request.header(H_ACCESS_KEY),
            request.header(H_SIGNATURE),
        ) else {
            return Some(auth_failed("Authentication information are missing."));
        };
        let Ok(timestamp) = timestamp.parse::<i64>() else {
            return Some(auth_failed("Invalid authentication information."));
        };
        let expected = sign::sign(SECRET, &request.method, &request.target, timestamp, ACCESS);
        if access_key != ACCESS || signature != expected {
            return Some(auth_failed("Invalid authentication information."));
        }
        if (gateway_now.timestamp_millis() - timestamp).abs() >= 5 * 60 * 1000 {
            return Some(auth_failed("Expired timestamp."));
        }
        None
    }

    /// A responder behind a gateway that verifies signatures against the real clock.
    fn signed(
        ok: impl Fn(&Received, usize) -> FakeReply + Send + Sync + 'static,
    ) -> impl Fn(&Received, usize) -> FakeReply + Send + Sync + 'static {
        move |request, number| {
            gateway_check(request, Utc::now()).unwrap_or_else(|| ok(request, number))
        }
    }

    fn http_date(at: DateTime<Utc>) -> String {
        at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
    }

    fn channel_json(id: &str) -> serde_json::Value {
        serde_json::json!({
            "channelId": id, "channelName": format!("name {id}"), "channelStatus": "PUBLISHING",
            "isRecording": false, "immediateOnAir": false
        })
    }

    /// Answers every documented call the way Live Station does.
    fn live_station(request: &Received, _: usize) -> FakeReply {
        let path = request.target.split('?').next().unwrap_or_default();
        let body = if path.ends_with("/upload") {
            r#"{"content":{"bucketName":"rec-bucket","accessControl":"PRIVATE","uploadedRecords":[27195]}}"#.to_string()
        } else if path.ends_with("/channels") {
            serde_json::json!({ "content": [channel_json("ls-a")], "total": 1 }).to_string()
        } else if path.contains("/record") || path.ends_with("Record") {
            FKR_RECORDS.to_string()
        } else {
            serde_json::json!({ "content": channel_json("ls-a") }).to_string()
        };
        FakeReply::json(200, &body)
    }

    fn config(endpoint: &str) -> ClientConfig {
        ClientConfig {
            endpoint: endpoint.to_string(),
            region: Region::Kr,
            credentials: Credentials {
                access_key: Secret::new(ACCESS),
                secret_key: Secret::new(SECRET),
            },
            timeout: Duration::from_secs(5),
            max_rps: 1000.0,
        }
    }

    fn client(fake: &Fake) -> Client {
        Client::new(config(&fake.endpoint())).expect("client for the fake")
    }

    // ---- requests: method, target, headers, signature -----------------------------------

    #[tokio::test]
    async fn every_call_sends_its_method_and_signed_target_with_the_common_headers() {
        let fake = Fake::start(signed(live_station)).await;
        let client = client(&fake);
        let ch = "ls-20250814000000-PZohi";

        let page = client.list_channels_page(2, 50).await.expect("page");
        assert_eq!(page.value.to_channels()[0].channel_id, "ls-a");
        client.get_channel(ch).await.expect("channel");
        let started = client.start_record(ch).await.expect("start");
        assert_eq!(started.value.records.len(), 2);
        client.stop_record(ch).await.expect("stop");
        client.list_records(ch).await.expect("records");
        client.get_record(ch, 27195).await.expect("record");
        let uploaded = client
            .upload("rec-bucket", &[27195, 27196], Some("PUBLIC_READ"))
            .await
            .expect("upload");
        assert_eq!(uploaded.value["content"]["uploadedRecords"][0], 27195);

        let expected = [
            ("GET", "/api/v2/channels?pageNo=2&pageSizeNo=50".to_string()),
            ("GET", format!("/api/v2/channels/{ch}")),
            ("PUT", format!("/api/v2/channels/{ch}/startRecord")),
            ("PUT", format!("/api/v2/channels/{ch}/stopRecord")),
            ("GET", format!("/api/v2/channels/{ch}/records")),
            ("GET", format!("/api/v2/channels/{ch}/records/27195")),
            ("POST", "/api/v2/buckets/rec-bucket/upload".to_string()),
        ];
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(m, t)| (m.to_string(), t))
            .collect();
        assert_eq!(fake.targets(), expected);

        let now = Utc::now().timestamp_millis();
        for request in fake.requests() {
            let timestamp: i64 = request
                .header(H_TIMESTAMP)
                .and_then(|t| t.parse().ok())
                .expect("numeric timestamp header");
            assert!((now - timestamp).abs() < 60_000, "timestamp is now, in ms");
            assert_eq!(request.header(H_ACCESS_KEY), Some(ACCESS));
            assert_eq!(
                request.header(H_SIGNATURE),
                Some(
                    sign::sign(SECRET, &request.method, &request.target, timestamp, ACCESS)
                        .as_str()
                ),
                "signed over the exact target sent"
            );
            assert_eq!(request.header(H_REGION), Some("KR"));
            assert_eq!(request.header("content-type"), Some("application/json"));
            assert_eq!(request.header("accept"), Some("application/json"));
            assert_eq!(request.header("user-agent"), Some(USER_AGENT));
        }
        let upload = fake.requests().pop().expect("upload request");
        let body: serde_json::Value = serde_json::from_slice(&upload.body).expect("JSON body");
        assert_eq!(
            body,
            serde_json::json!({ "recordIds": [27195, 27196], "accessControl": "PUBLIC_READ" })
        );
    }

    #[tokio::test]
    async fn upload_without_access_control_sends_only_the_record_ids() {
        let fake = Fake::start(signed(live_station)).await;
        client(&fake).upload("b", &[1], None).await.expect("upload");
        let body: serde_json::Value =
            serde_json::from_slice(&fake.requests()[0].body).expect("JSON body");
        assert_eq!(body, serde_json::json!({ "recordIds": [1] }));
    }

    #[tokio::test]
    async fn ids_and_bucket_names_are_percent_encoded_and_signed_as_sent() {
        let fake = Fake::start(signed(live_station)).await;
        let client = client(&fake);
        client
            .get_channel("ls 1/2?x=é")
            .await
            .expect("signature matches");
        client
            .upload("a b", &[1], None)
            .await
            .expect("signature matches");
        assert_eq!(
            fake.targets(),
            [
                (
                    "GET".into(),
                    "/api/v2/channels/ls%201%2F2%3Fx%3D%C3%A9".into()
                ),
                ("POST".into(), "/api/v2/buckets/a%20b/upload".into()),
            ]
        );
    }

    // ---- channel listing ----------------------------------------------------------------

    fn query_number(target: &str, key: &str) -> usize {
        target
            .split(['?', '&'])
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .expect("query parameter")
    }

    #[tokio::test]
    async fn a_page_whose_body_has_the_digest_known_is_not_read_again() {
        fn body(status: &str) -> String {
            let mut channel = channel_json("ls-a");
            channel["channelStatus"] = status.into();
            serde_json::json!({ "content": [channel], "total": 1 }).to_string()
        }
        let fake = Fake::start(signed(|_, number| {
            FakeReply::json(200, &body(if number <= 2 { "READY" } else { "PUBLISHING" }))
        }))
        .await;
        let client = client(&fake);
        let first = client.list_channels_page(1, 100).await.expect("page").value;
        let digest = first
            .digest
            .expect("a page read from a body has its digest");
        assert_eq!(digest, PageDigest::of(body("READY").as_bytes()));
        let again = client
            .list_channels_page_if_changed(1, 100, Some(digest))
            .await
            .expect("page");
        assert_eq!(again.value, ListedPage::Unchanged);
        let changed = client
            .list_channels_page_if_changed(1, 100, Some(digest))
            .await
            .expect("page");
        let ListedPage::Read(page) = changed.value else {
            panic!("a changed page was not read");
        };
        assert_eq!(
            page.to_channels()[0].channel_status,
            model::ChannelStatus::Publishing
        );
        assert_ne!(page.digest, Some(digest));
        assert_eq!(fake.requests().len(), 3, "each call is one request");
    }

    #[tokio::test]
    async fn a_failing_page_fails_the_whole_listing() {
        let fake = Fake::start(signed(|request, _| {
            if query_number(&request.target, "pageNo") == 2 {
                return FakeReply::json(503, "");
            }
            let ids: Vec<_> = (0..100).map(|i| channel_json(&format!("ch-{i}"))).collect();
            FakeReply::json(
                200,
                &serde_json::json!({ "content": ids, "total": 150 }).to_string(),
            )
        }))
        .await;
        let error = client(&fake)
            .list_channels()
            .await
            .expect_err("page 2 fails");
        assert_eq!(error.http_status(), Some(503));
    }

    fn page(ids: &[&str], skipped: usize, total: Option<u64>) -> ChannelPage {
        let channels: Vec<Channel> = ids
            .iter()
            .map(|id| serde_json::from_value(channel_json(id)).expect("channel"))
            .collect();
        let mut page = ChannelPage::from_channels(&channels, total);
        page.skipped = (0..skipped).map(|i| format!("content[{i}]: bad")).collect();
        page
    }

    /// `n` distinct ids starting with `prefix`.
    fn ids(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn strs(ids: &[String]) -> Vec<&str> {
        ids.iter().map(String::as_str).collect()
    }

    #[test]
    fn listing_dedupes_channels_and_keeps_skipped_entries_of_every_page() {
        let first = ids("a", 100);
        let mut second = ids("b", 49);
        second.push("a99".into());
        let mut listing = Listing::default();
        assert!(!listing.add(1, page(&strs(&first), 0, Some(250))));
        assert!(
            listing.add(2, page(&strs(&second), 1, Some(250))),
            "a short page ends it"
        );
        assert_eq!(listing.page.len(), 149);
        assert_eq!(listing.page.skipped, ["page 2: content[0]: bad"]);
    }

    #[test]
    fn listing_stops_at_an_empty_page_even_if_total_promises_more() {
        let mut listing = Listing::default();
        assert!(!listing.add(1, page(&strs(&ids("a", 100)), 0, Some(1000))));
        assert!(listing.add(2, page(&[], 0, Some(1000))));
        assert_eq!(listing.page.len(), 100);
    }

    #[test]
    fn listing_stops_at_a_short_page_whatever_total_says() {
        for total in [None, Some(1), Some(100), Some(250), Some(1000)] {
            let mut listing = Listing::default();
            assert!(!listing.add(1, page(&strs(&ids("a", 100)), 0, total)));
            assert!(listing.add(2, page(&["x"], 0, total)), "{total:?}");
        }
    }

    #[test]
    fn a_total_that_counts_the_page_does_not_end_the_listing_after_page_1() {
        let mut listing = Listing::default();
        for n in 1..=2 {
            let ids = ids(&format!("p{n}-"), 100);
            assert!(!listing.add(n, page(&strs(&ids), 0, Some(100))), "page {n}");
        }
        assert!(listing.add(3, page(&strs(&ids("p3-", 50)), 0, Some(50))));
        assert_eq!(listing.page.len(), 250);
    }

    #[test]
    fn a_total_that_proved_to_count_every_channel_ends_a_listing_of_full_pages() {
        // Page 1 said more than it held: `total` counts the account, and 200 entries end the
        // listing without an empty third page.
        let mut listing = Listing::default();
        assert!(!listing.add(1, page(&strs(&ids("a", 100)), 0, Some(200))));
        assert!(listing.add(2, page(&strs(&ids("b", 100)), 0, Some(200))));
        // Where page 1 held all it said, nothing is proved: one empty page more.
        let mut progress = ListingProgress::default();
        let shape = page(&strs(&ids("a", 100)), 0, Some(100)).shape();
        assert!(!progress.count(1, shape, 100));
        assert!(!progress.total_counts_all());
        assert!(progress.count(2, page(&[], 0, Some(0)).shape(), 0));
    }

    #[test]
    fn listing_stops_when_a_page_only_repeats_known_channels() {
        let first = ids("a", 100);
        let mut listing = Listing::default();
        assert!(!listing.add(1, page(&strs(&first), 0, Some(1000))));
        assert!(
            listing.add(2, page(&strs(&first), 0, Some(1000))),
            "server ignores pageNo"
        );
        assert_eq!(listing.page.len(), 100);
    }

    // ---- error classes over the wire ----------------------------------------------------

    async fn error_from(reply: impl Fn() -> FakeReply + Send + Sync + 'static) -> (ApiError, Fake) {
        let fake = Fake::start(signed(move |_, _| reply())).await;
        let error = client(&fake)
            .start_record("ls-a")
            .await
            .expect_err("the call fails");
        (error, fake)
    }

    #[tokio::test]
    async fn http_429_with_an_http_date_waits_until_then_by_the_server_clock() {
        let (error, _) = error_from(|| {
            // The server's clock is far from ours; only the difference of its two dates counts.
            let server_now = Utc::now() - TimeDelta::hours(3);
            FakeReply::json(429, "")
                .with_header("date", http_date(server_now))
                .with_header(
                    "retry-after",
                    http_date(server_now + TimeDelta::seconds(30)),
                )
        })
        .await;
        assert_eq!(
            error,
            ApiError::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
                error_code: None,
            }
        );
    }

    #[tokio::test]
    async fn missing_authentication_headers_are_reported_with_the_gateway_details() {
        let (error, fake) = error_from(|| {
            gateway_error(
                401,
                "200",
                "Authentication Failed",
                "Authentication information are missing.",
            )
        })
        .await;
        let ApiError::Unauthorized { details, .. } = &error else {
            panic!("expected Unauthorized, got {error:?}");
        };
        assert_eq!(
            details.as_deref(),
            Some("Authentication information are missing.")
        );
        assert_eq!(fake.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_gateway_404_is_rejected_with_code_300() {
        let (error, _) =
            error_from(|| gateway_error(404, "300", "Not Found Exception", "URL not found.")).await;
        assert_eq!(
            error,
            ApiError::Rejected {
                http_status: 404,
                error_code: Some("300".into()),
                error_name: None,
                message: "Not Found Exception — URL not found.".into(),
            }
        );
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_malformed_instead_of_buffered() {
        let (error, _) = error_from(|| FakeReply::json(200, &" ".repeat(MAX_BODY_BYTES + 1))).await;
        let ApiError::Malformed { reason, .. } = &error else {
            panic!("expected Malformed, got {error:?}");
        };
        assert!(reason.contains("larger than 8 MiB"), "{reason}");
    }

    // ---- classification without a server -----------------------------------------------

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    #[test]
    fn gateway_timeout_and_unexpected_error_codes_are_transient_whatever_the_status() {
        for (status, code) in [(504, "510"), (500, "900"), (400, "500")] {
            let body = format!(r#"{{"error":{{"errorCode":"{code}","message":"x"}}}}"#);
            let error = classify(status, &HeaderMap::new(), body.as_bytes()).expect_err("fails");
            assert_eq!(error.class(), "transient", "{status}/{code}");
            assert!(error.maybe_applied());
        }
    }

    #[test]
    fn a_live_station_code_that_looks_like_a_gateway_code_is_unknown_so_maybe_applied() {
        let body = br#"{"error":{"errorCode":"500","errorName":"X","message":"m"}}"#;
        let error = classify(400, &HeaderMap::new(), body).expect_err("fails");
        assert_eq!(error.class(), "transient");
        assert!(error.maybe_applied());
    }

    /// What the engine is told, in the words of the code table.
    fn told(result: &Result<(), ApiError>) -> Option<Meaning> {
        let Err(e) = result else {
            return Some(Meaning::Success);
        };
        Some(match e {
            ApiError::Transient { maybe_applied, .. } => {
                assert!(maybe_applied, "{e}");
                Meaning::Transient
            }
            ApiError::RateLimited { .. } => Meaning::RateLimited,
            ApiError::Unauthorized { .. } => Meaning::Unauthorized,
            ApiError::Rejected { .. } => match e.refusal()? {
                Refusal::State => Meaning::WaitForState,
                Refusal::NotFound => Meaning::Gone,
                Refusal::BadRequest => Meaning::BadRequest,
            },
            ApiError::Malformed { .. } => return None,
        })
    }

    #[test]
    fn every_published_code_means_what_the_table_says_under_200_400_and_500() {
        let bodies = |c: &codes::Code, live_station: bool| {
            if live_station {
                vec![
                    // The reference's example sends the code as a number; the field table says
                    // String.
                    format!(
                        r#"{{"error":{{"errorCode":{},"message":"m","errorName":"{}"}}}}"#,
                        c.code, c.name
                    ),
                    format!(
                        r#"{{"error":{{"errorCode":"{}","message":"m","errorName":"{}"}}}}"#,
                        c.code, c.name
                    ),
                ]
            } else {
                vec![format!(
                    r#"{{"error":{{"errorCode":"{}","message":"m","details":"d"}}}}"#,
                    c.code
                )]
            }
        };
        for (table, live_station) in [(codes::LIVE_STATION, true), (codes::GATEWAY, false)] {
            for c in table {
                for body in bodies(c, live_station) {
                    for status in [200, 400, 500] {
                        let result = classify(status, &HeaderMap::new(), body.as_bytes());
                        let expected = match (c.meaning, status) {
                            // Success is the absence of an error: the status tells the rest.
                            (Meaning::Success, 400) => Meaning::WaitForState,
                            (Meaning::Success, 500) => Meaning::Transient,
                            (m, _) => m,
                        };
                        assert_eq!(told(&result), Some(expected), "{status} {body}: {result:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn an_unknown_code_under_any_status_is_transient_and_maybe_applied() {
        for status in [200, 201, 400, 404, 409, 500] {
            for body in [
                r#"{"error":{"errorCode":259999,"errorName":"NEW_ONE","message":"m"}}"#,
                r#"{"error":{"errorCode":"777","message":"m"}}"#,
            ] {
                let result = classify(status, &HeaderMap::new(), body.as_bytes());
                assert_eq!(told(&result), Some(Meaning::Transient), "{status} {body}");
            }
        }
    }

    #[test]
    fn a_2xx_is_an_answer_unless_its_body_is_an_error_object() {
        let page =
            br#"{"content":[{"channelId":"ls-error","channelName":"\"error\" desk"}],"total":1}"#;
        assert_eq!(classify(200, &HeaderMap::new(), page), Ok(()));
        assert_eq!(classify(204, &HeaderMap::new(), b""), Ok(()));
        let ok = br#"{"error":{"errorCode":250013,"errorName":"OPEN_API_OK","message":"OK"}}"#;
        assert_eq!(classify(200, &HeaderMap::new(), ok), Ok(()));
        let refused = br#"{"error":{"errorCode":250005,"errorName":"NOT_AVAILABLE","message":"channel not available."}}"#;
        let e = classify(200, &HeaderMap::new(), refused).expect_err("an error object");
        assert_eq!(e.refusal(), Some(Refusal::State));
        assert_eq!(e.http_status(), Some(200));
    }

    #[test]
    fn a_429_is_rate_limited_whatever_code_its_body_carries() {
        let body = br#"{"error":{"errorCode":250000,"errorName":"EXCEPTION","message":"m"}}"#;
        let h = headers(&[("retry-after", "2")]);
        assert_eq!(
            classify(429, &h, body),
            Err(ApiError::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
                error_code: Some("250000".into()),
            })
        );
    }

    #[test]
    fn bodies_without_a_code_fall_back_on_the_status() {
        for (status, expected) in [
            (401, Meaning::Unauthorized),
            (403, Meaning::Unauthorized),
            (404, Meaning::Gone),
            (400, Meaning::WaitForState),
            (502, Meaning::Transient),
            (429, Meaning::RateLimited),
        ] {
            let result = classify(status, &HeaderMap::new(), b"<html>proxy</html>");
            assert_eq!(told(&result), Some(expected), "{status}");
        }
    }

    #[test]
    fn a_bad_request_says_that_it_is_lsrecd_s_bug() {
        let body = br#"{"error":{"errorCode":250002,"errorName":"INVALID_FORMAT","message":"pageSizeNo: invalid value."}}"#;
        let e = classify(400, &HeaderMap::new(), body).expect_err("fails");
        assert!(e.to_string().contains("a bug in lsrecd"), "{e}");
        let refused =
            br#"{"error":{"errorCode":250005,"errorName":"NOT_AVAILABLE","message":"m"}}"#;
        let e = classify(400, &HeaderMap::new(), refused).expect_err("fails");
        assert!(!e.to_string().contains("bug"), "{e}");
    }

    #[test]
    fn forbidden_is_unauthorized_with_the_status_text_when_there_is_no_body() {
        let error = classify(403, &HeaderMap::new(), b"").expect_err("fails");
        assert_eq!(
            error,
            ApiError::Unauthorized {
                http_status: 403,
                error_code: "-".into(),
                message: "Forbidden".into(),
                details: None,
            }
        );
    }

    #[test]
    fn redirects_and_other_statuses_are_rejected_with_a_body_snippet() {
        let error = classify(302, &HeaderMap::new(), b"  moved\n\n elsewhere ").expect_err("fails");
        assert_eq!(
            error,
            ApiError::Rejected {
                http_status: 302,
                error_code: None,
                error_name: None,
                message: "Found: moved elsewhere".into(),
            }
        );
    }

    #[tokio::test]
    async fn retry_after_makes_every_following_call_wait_not_only_the_throttled_one() {
        let fake = Fake::start(signed(|request, number| {
            if number == 1 {
                gateway_error(429, "420", "Rate Limited", "").with_header("retry-after", "1".into())
            } else {
                live_station(request, number)
            }
        }))
        .await;
        let client = client(&fake);

        let throttled = client.start_record("ls-a").await;
        let other = client.get_channel("ls-a").await;

        assert!(matches!(throttled, Err(ApiError::RateLimited { .. })));
        assert!(other.is_ok(), "{other:?}");
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        let gap = requests[1].at - requests[0].at;
        assert!(
            gap >= Duration::from_secs(1),
            "getChannel went out {gap:?} after the 429 with Retry-After: 1"
        );
    }

    #[test]
    fn retry_after_is_capped_and_read_without_overflow() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let capped = Some(MAX_RETRY_AFTER.as_secs());
        let cases = [
            ("300", Some(300)),
            ("301", capped),
            ("18446744073709551615", capped),
            ("18446744073709551616", capped),
            (&*"9".repeat(400), capped),
            ("99999999999999999999.5", capped),
            ("-5", None),
            ("-18446744073709551616", None),
            ("1e9", None),
            ("inf", None),
            ("NaN", None),
            ("1.2.3", None),
            (".", None),
            ("", None),
            ("Sun, 06 Nov 1994 08:54:37 GMT", Some(300)),
            ("Sun, 06 Nov 1994 09:49:37 GMT", capped),
            ("Fri, 31 Dec 9999 23:59:59 GMT", capped),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
        ];
        for (value, seconds) in cases {
            let h = headers(&[("date", date), ("retry-after", value)]);
            assert_eq!(
                retry_after(&h).map(|d| d.as_secs()),
                seconds,
                "Retry-After: {value}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_the_three_http_date_forms() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let cases = [
            ("120", Some(120)),
            ("1.5", Some(1)),
            ("Sun, 06 Nov 1994 08:50:37 GMT", Some(60)),
            ("Sunday, 06-Nov-94 08:50:07 GMT", Some(30)),
            ("Sun Nov  6 08:49:47 1994", Some(10)),
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(0)),
            ("soon", None),
        ];
        for (value, seconds) in cases {
            let h = headers(&[("date", date), ("retry-after", value)]);
            assert_eq!(
                retry_after(&h).map(|d| d.as_secs()),
                seconds,
                "Retry-After: {value}"
            );
        }
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn path_segments_keep_unreserved_characters_and_encode_the_rest() {
        assert_eq!(
            encode_segment("ls-20250814000000-PZohi"),
            "ls-20250814000000-PZohi"
        );
        assert_eq!(encode_segment("a.b_c~d"), "a.b_c~d");
        assert_eq!(encode_segment("a/b c%?#é"), "a%2Fb%20c%25%3F%23%C3%A9");
    }

    // ---- clock skew, rate limit, configuration ------------------------------------------

    #[tokio::test]
    async fn calls_from_clones_share_the_rate_limit() {
        let fake = Fake::start(signed(live_station)).await;
        let client = Client::new(ClientConfig {
            max_rps: 20.0,
            ..config(&fake.endpoint())
        })
        .expect("client");
        let other = client.clone();
        let start = std::time::Instant::now();
        let (a, b) = tokio::join!(
            async {
                for _ in 0..3 {
                    client.get_channel("a").await.expect("call");
                }
            },
            async {
                for _ in 0..2 {
                    other.get_channel("b").await.expect("call");
                }
            }
        );
        let ((), ()) = (a, b);
        // Five requests at 20/s: the last may start 4 × 50 ms after the first.
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(client.stats().http_requests, 5);
    }

    #[tokio::test]
    async fn stats_count_calls_by_operation_and_outcome() {
        let fake = Fake::start(signed(|request: &Received, n| {
            if request.target.ends_with("/startRecord") {
                FakeReply::json(
                    400,
                    r#"{"error":{"errorCode":250005,"errorName":"NOT_AVAILABLE"}}"#,
                )
            } else {
                live_station(request, n)
            }
        }))
        .await;
        let client = client(&fake);
        client.get_channel("a").await.expect("ok");
        client.get_channel("a").await.expect("ok");
        client.start_record("a").await.expect_err("refused");
        let stats = client.stats();
        assert_eq!(
            stats.calls,
            BTreeMap::from([
                ((Operation::GetChannel, "ok"), 2),
                ((Operation::StartRecord, "rejected"), 1),
            ])
        );
        assert_eq!(stats.http_requests, 3);
        assert!(stats.http_duration > Duration::ZERO);
    }

    #[test]
    fn a_client_for_an_https_endpoint_builds_with_the_ring_provider() {
        let client = Client::new(config("https://livestation.apigw.ntruss.com/"));
        let client = client.expect("https client");
        assert_eq!(client.inner.base, "https://livestation.apigw.ntruss.com");
    }

    #[test]
    fn unusable_settings_are_refused_with_the_key_to_fix() {
        let refused = |cfg: ClientConfig| Client::new(cfg).expect_err("refused").to_string();
        assert!(refused(config("ftp://x")).starts_with("api.endpoint"));
        assert!(refused(config("livestation.apigw.ntruss.com")).starts_with("api.endpoint"));
        assert!(refused(config("https://x/?a=1")).starts_with("api.endpoint"));
        let zero_rps = ClientConfig {
            max_rps: 0.0,
            ..config("https://x")
        };
        assert!(refused(zero_rps).starts_with("api.max_rps"));
        let no_timeout = ClientConfig {
            timeout: Duration::ZERO,
            ..config("https://x")
        };
        assert!(refused(no_timeout).starts_with("api.timeout"));
        let mut bad_key = config("https://x");
        bad_key.credentials.access_key = Secret::new("key\nwith newline");
        let message = refused(bad_key);
        assert!(
            message.contains("access key") && !message.contains("newline"),
            "{message}"
        );
    }

    #[test]
    fn debug_output_of_the_client_shows_no_keys() {
        let client = Client::new(config("https://x")).expect("client");
        let text = format!("{client:?}");
        assert!(!text.contains(ACCESS) && !text.contains(SECRET), "{text}");
    }

    // ---- logs ---------------------------------------------------------------------------

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[tokio::test]
    async fn logs_of_failed_and_successful_calls_show_neither_keys_nor_signatures() {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        // While exactly one dispatcher exists, tracing caches a callsite's interest from the
        // default of whichever thread hits it first, so another test running the same call
        // without a subscriber would silence it here. A second live dispatcher makes tracing
        // ask every registered dispatcher instead.
        let _second = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_writer(std::io::sink)
                .with_max_level(tracing::Level::TRACE)
                .finish(),
        );
        let _guard = tracing::subscriber::set_default(subscriber);

        let fake = Fake::start(signed(live_station)).await;
        client(&fake).get_channel("ls-ok").await.expect("succeeds");
        let mut cfg = config(&fake.endpoint());
        cfg.credentials.secret_key = Secret::new("WRONGSECRET0000000000000000000000000000");
        let wrong = Client::new(cfg).expect("client");
        wrong
            .start_record("ls-bad")
            .await
            .expect_err("bad signature");

        let text = String::from_utf8_lossy(&logs.0.lock().expect("log buffer")).into_owned();
        assert!(text.contains("Live Station call succeeded"), "{text}");
        assert!(text.contains("Live Station call failed"), "{text}");
        assert!(
            text.contains("fake-trace-3") && text.contains("ls-bad"),
            "{text}"
        );
        assert!(
            !text.contains(SECRET) && !text.contains("WRONGSECRET"),
            "{text}"
        );
        assert!(!text.contains(ACCESS), "{text}");
        let signatures: Vec<String> = fake
            .requests()
            .iter()
            .filter_map(|r| r.header(H_SIGNATURE).map(str::to_owned))
            .collect();
        assert_eq!(signatures.len(), 3);
        for signature in signatures {
            assert!(
                !text.contains(&signature),
                "signature {signature} logged: {text}"
            );
        }
    }
}
