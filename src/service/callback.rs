//! `POST /callback/{token}`: Live Station event callbacks, turned into hints for the engine.
//!
//! Callbacks are unauthenticated by Live Station (ARCHITECTURE.md §10), so the only secret is the path token, and the
//! content is never trusted: an accepted callback yields a [`Hint`] ("observe this channel
//! now") and nothing else. Polling stays the source of truth, so a dropped, duplicated or
//! forged callback costs at most one extra observation.
//!
//! Order of checks:
//!
//! 1. the token (constant time, never logged). A wrong one answers 404 like any unknown path,
//!    counted as `bad_token`; wrong tokens have their own, smaller rate limit (beyond it 429),
//!    so a flood of them never uses up what real callbacks are allowed;
//! 2. the shared rate limit of authenticated callbacks (429, `rate_limited`);
//! 3. the body: at most [`CallbackLimits::max_body_bytes`] (413), within
//!    [`CallbackLimits::body_timeout`] (408);
//! 4. lenient JSON parsing (400, `malformed`);
//! 5. the channel: one not in the configuration is counted as `unknown_channel` and dropped
//!    (202: the callback was fine, there is just nothing to do), so no hint for it reaches the
//!    engine.
//!
//! The token and the channel list are [`CallbackSettings`], replaced as a whole on a
//! configuration reload through [`CallbackControl`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::metrics::{Metrics, callback_result};
use crate::config::Config;
use crate::secret::Secret;

/// "Observe this channel now", from a callback. The engine must not act on it beyond that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// The `channelId` the callback named: a configured channel.
    pub channel_id: String,
    /// The event code (`PUBLISH_START`, `ONAIR_END`, …), empty when the body had none.
    pub event: String,
}

/// Limits applied to callback requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallbackLimits {
    /// Largest accepted body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Sustained callbacks per second with the right token (token bucket refill rate); beyond
    /// it, 429.
    pub per_second: f64,
    /// Callbacks with the right token allowed in a burst (token bucket size).
    pub burst: f64,
    /// Sustained requests per second with a wrong token; beyond it they get 429 instead of 404.
    /// Separate from (and smaller than) `per_second`, which they never touch.
    pub bad_token_per_second: f64,
    /// Requests with a wrong token allowed in a burst.
    pub bad_token_burst: f64,
    /// How long a client may take to send its body; slower ones get 408.
    pub body_timeout: Duration,
}

impl Default for CallbackLimits {
    fn default() -> Self {
        CallbackLimits {
            max_body_bytes: 64 * 1024,
            per_second: 20.0,
            burst: 40.0,
            bad_token_per_second: 2.0,
            bad_token_burst: 10.0,
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// Longest `channelId` accepted; real ones are about 25 characters.
const MAX_CHANNEL_ID_LEN: usize = 128;
/// Longest event code accepted.
const MAX_EVENT_LEN: usize = 64;

/// What callbacks are checked against: the token and the configured channels.
#[derive(Clone)]
pub struct CallbackSettings {
    /// The path segment of `POST /callback/{token}`.
    pub token: Secret,
    /// The channels hints may name; callbacks for any other channel are dropped.
    pub channels: Arc<dyn KnownChannels>,
}

impl std::fmt::Debug for CallbackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackSettings")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The channel ids callbacks may name.
pub trait KnownChannels: Send + Sync {
    fn knows(&self, channel_id: &str) -> bool;
}

/// The configuration's channels: the daemon's, looked up where they are already kept.
impl KnownChannels for Config {
    fn knows(&self, channel_id: &str) -> bool {
        self.channel_with_id(channel_id).is_some()
    }
}

impl KnownChannels for HashSet<String> {
    fn knows(&self, channel_id: &str) -> bool {
        self.contains(channel_id)
    }
}

impl CallbackSettings {
    /// The settings of `config`, or `None` when it has no `[callback]`.
    pub fn from_config(config: &Arc<Config>) -> Option<CallbackSettings> {
        let callback = config.callback.as_ref()?;
        Some(CallbackSettings {
            token: callback.token.clone(),
            channels: Arc::clone(config) as Arc<dyn KnownChannels>,
        })
    }
}

/// The settings in force, shared by the route and its [`CallbackControl`]; `None` once
/// callbacks are disabled by a reload.
type Shared = Arc<RwLock<Option<Arc<Accepting>>>>;

/// Replaces the settings of a running callback route (a configuration reload). It holds the
/// settings only, not the route: the hint queue closes when the route is gone, whoever still
/// holds a control.
#[derive(Clone)]
pub struct CallbackControl {
    accepting: Shared,
}

impl CallbackControl {
    /// From now on callbacks are checked against `settings`: the old token stops working at
    /// once.
    pub fn update(&self, settings: CallbackSettings) {
        *self.write() = Some(Arc::new(Accepting::from(settings)));
    }

    /// Refuses every callback from now on (the configuration no longer has `[callback]`; the
    /// listener itself closes at the next restart).
    pub fn disable(&self) {
        *self.write() = None;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<Accepting>>> {
        // The guarded value is replaced whole, so a panicked writer cannot leave half of it.
        self.accepting
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The callback route with [`CallbackLimits::default`].
pub fn callback_router(
    settings: CallbackSettings,
    tx: mpsc::Sender<Hint>,
    metrics: Metrics,
) -> (Router, CallbackControl) {
    callback_router_with_limits(settings, tx, metrics, CallbackLimits::default())
}

/// The callback route: `POST /callback/{token}`. Each accepted callback sends one [`Hint`] on
/// `tx` without waiting; when the queue is full the hint is dropped and counted. The
/// [`CallbackControl`] replaces the settings later.
pub fn callback_router_with_limits(
    settings: CallbackSettings,
    tx: mpsc::Sender<Hint>,
    metrics: Metrics,
    limits: CallbackLimits,
) -> (Router, CallbackControl) {
    let now = Instant::now();
    let accepting: Shared = Arc::new(RwLock::new(Some(Arc::new(Accepting::from(settings)))));
    let state = Arc::new(CallbackState {
        accepting: accepting.clone(),
        tx,
        metrics,
        limits,
        bucket: Mutex::new(TokenBucket::full(limits.burst, now)),
        bad_token_bucket: Mutex::new(TokenBucket::full(limits.bad_token_burst, now)),
    });
    let router = Router::new()
        .route("/callback/{token}", post(receive))
        .with_state(state);
    (router, CallbackControl { accepting })
}

/// The settings in the form they are checked in.
struct Accepting {
    /// SHA-256 of the token: comparing digests takes the same time whatever the candidate's
    /// length or content, and the token itself is not kept.
    token_digest: [u8; 32],
    channels: Arc<dyn KnownChannels>,
}

impl From<CallbackSettings> for Accepting {
    fn from(settings: CallbackSettings) -> Self {
        Accepting {
            token_digest: digest(settings.token.expose()),
            channels: settings.channels,
        }
    }
}

struct CallbackState {
    accepting: Shared,
    tx: mpsc::Sender<Hint>,
    metrics: Metrics,
    limits: CallbackLimits,
    bucket: Mutex<TokenBucket>,
    bad_token_bucket: Mutex<TokenBucket>,
}

impl CallbackState {
    /// The settings in force, if callbacks are accepted at all.
    fn accepting(&self) -> Option<Arc<Accepting>> {
        // The guarded value is replaced whole, so a panicked writer cannot leave half of it.
        self.accepting
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn admit(&self) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        bucket.try_take(Instant::now(), self.limits.per_second, self.limits.burst)
    }

    fn admit_bad_token(&self) -> bool {
        let mut bucket = self
            .bad_token_bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let limits = &self.limits;
        bucket.try_take(
            Instant::now(),
            limits.bad_token_per_second,
            limits.bad_token_burst,
        )
    }

    fn reject(&self, result: &str, status: StatusCode) -> StatusCode {
        self.metrics.callback(result);
        status
    }
}

impl Accepting {
    fn token_matches(&self, candidate: &str) -> bool {
        constant_time_eq(&digest(candidate), &self.token_digest)
    }
}

/// The handler. The token is deliberately not in any tracing field or message.
async fn receive(
    State(state): State<Arc<CallbackState>>,
    token: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> StatusCode {
    let accepting = state.accepting();
    let authenticated = match (&accepting, &token) {
        (Some(accepting), Ok(Path(token))) => accepting.token_matches(token),
        _ => false,
    };
    let Some(accepting) = accepting.filter(|_| authenticated) else {
        // Counted as bad_token either way; past their own budget they are told to slow down.
        if !state.admit_bad_token() {
            return state.reject(callback_result::BAD_TOKEN, StatusCode::TOO_MANY_REQUESTS);
        }
        tracing::debug!("callback with an unknown token rejected");
        return state.reject(callback_result::BAD_TOKEN, StatusCode::NOT_FOUND);
    };
    if !state.admit() {
        return state.reject(callback_result::RATE_LIMITED, StatusCode::TOO_MANY_REQUESTS);
    }

    let limit = state.limits.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        // Answered before reading any of it.
        return state.reject(callback_result::TOO_LARGE, StatusCode::PAYLOAD_TOO_LARGE);
    }
    let read = axum::body::to_bytes(body, limit);
    let bytes = match tokio::time::timeout(state.limits.body_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                return state.reject(callback_result::TOO_LARGE, StatusCode::PAYLOAD_TOO_LARGE);
            }
            tracing::debug!(error = %e, "callback body could not be read");
            return state.reject(callback_result::MALFORMED, StatusCode::BAD_REQUEST);
        }
        Err(_elapsed) => {
            return state.reject(callback_result::MALFORMED, StatusCode::REQUEST_TIMEOUT);
        }
    };

    let event = match parse_callback(&bytes) {
        Ok(event) => event,
        Err(reason) => {
            // Counted in lsrecd_callbacks_total; at 20 requests/s a warning per body would flood
            // the journal.
            tracing::debug!(reason, "malformed callback body ignored");
            return state.reject(callback_result::MALFORMED, StatusCode::BAD_REQUEST);
        }
    };
    if !accepting.channels.knows(&event.hint.channel_id) {
        // Live Station may send every channel of the account to one URL; only configured ones
        // are lsrecd's business, and an unknown id must cost the engine nothing.
        tracing::debug!(
            channel_id = %event.hint.channel_id,
            event = %event.hint.event,
            "callback for a channel that is not configured ignored"
        );
        state.metrics.callback(callback_result::UNKNOWN_CHANNEL);
        return StatusCode::ACCEPTED;
    }
    tracing::debug!(
        channel_id = %event.hint.channel_id,
        event = %event.hint.event,
        event_id = event.id,
        timestamp_ms = event.timestamp_ms,
        "callback received"
    );
    match state.tx.try_send(event.hint) {
        Ok(()) => {
            state.metrics.callback(callback_result::ACCEPTED);
            StatusCode::ACCEPTED
        }
        Err(mpsc::error::TrySendError::Full(hint)) => {
            // The engine already has observations queued; polling covers this one.
            tracing::debug!(channel_id = %hint.channel_id, "hint queue full; callback dropped");
            state.metrics.callback(callback_result::DROPPED);
            StatusCode::ACCEPTED
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            state.reject(callback_result::DROPPED, StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// A parsed callback: the hint plus the fields only worth logging.
#[derive(Debug, PartialEq)]
struct CallbackEvent {
    hint: Hint,
    id: Option<i64>,
    timestamp_ms: Option<i64>,
}

/// Parses a callback body leniently (ARCHITECTURE.md §10): a JSON object with a string
/// `channelId`; `event` (or `eventCode`, as the events API spells it) a string if present;
/// `id` and `timestamp` numbers or numeric strings, ignored when neither. Unknown fields are
/// ignored. The error is a short reason for the log, free of the body's content.
fn parse_callback(body: &[u8]) -> Result<CallbackEvent, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let channel_id = match object.get("channelId") {
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err("channelId is not a string"),
        None => return Err("channelId is missing"),
    };
    if channel_id.is_empty() || channel_id.len() > MAX_CHANNEL_ID_LEN || !is_token_text(channel_id)
    {
        return Err("channelId has an impossible shape");
    }
    let event = match object.get("event").or_else(|| object.get("eventCode")) {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) if s.len() <= MAX_EVENT_LEN && is_token_text(s.trim()) => s.trim(),
        Some(_) => return Err("event is not a short event code"),
    };
    Ok(CallbackEvent {
        hint: Hint {
            channel_id: channel_id.to_owned(),
            event: event.to_owned(),
        },
        id: object.get("id").and_then(lenient_i64),
        timestamp_ms: object.get("timestamp").and_then(lenient_i64),
    })
}

/// Visible ASCII only: keeps control characters and look-alikes out of logs and the engine.
fn is_token_text(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Compares two digests without an early exit.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A token bucket: holds up to `burst` tokens, refilled at `per_second`; each request takes one.
#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn full(burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            updated: now,
        }
    }

    fn try_take(&mut self, now: Instant, per_second: f64, burst: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(body: &str) -> Result<Hint, &'static str> {
        parse_callback(body.as_bytes()).map(|e| e.hint)
    }

    #[test]
    fn the_documented_payload_becomes_a_hint() {
        let event = parse_callback(
            br#"{ "id": 1234, "logLevel": "INFO", "channelId": "ls-20200327xxxxxx-aBCD3",
                  "event": "PUBLISH_START", "timestamp": 1599218791425 }"#,
        );

        assert_eq!(
            event,
            Ok(CallbackEvent {
                hint: Hint {
                    channel_id: "ls-20200327xxxxxx-aBCD3".into(),
                    event: "PUBLISH_START".into()
                },
                id: Some(1234),
                timestamp_ms: Some(1_599_218_791_425),
            })
        );
    }

    #[test]
    fn id_and_timestamp_may_be_strings_or_nonsense() {
        let strings = parse_callback(
            br#"{"id":"77","channelId":"ls-1","event":"ONAIR_END","timestamp":"1599218791425"}"#,
        );
        let nonsense = parse_callback(br#"{"id":[1],"channelId":"ls-1","timestamp":"soon"}"#);

        let strings = strings.expect("string numbers accepted");
        assert_eq!(strings.id, Some(77));
        assert_eq!(strings.timestamp_ms, Some(1_599_218_791_425));
        let nonsense = nonsense.expect("odd optional fields ignored");
        assert_eq!((nonsense.id, nonsense.timestamp_ms), (None, None));
        assert_eq!(nonsense.hint.event, "");
    }

    #[test]
    fn event_code_is_accepted_as_the_event_field() {
        assert_eq!(
            hint(r#"{"channelId":"ls-1","eventCode":"PUBLISH_END"}"#),
            Ok(Hint {
                channel_id: "ls-1".into(),
                event: "PUBLISH_END".into()
            })
        );
    }

    #[test]
    fn bodies_without_a_usable_channel_id_are_rejected() {
        assert_eq!(hint("not json"), Err("not JSON"));
        assert_eq!(hint("[1,2]"), Err("not a JSON object"));
        assert_eq!(hint(r#"{"event":"X"}"#), Err("channelId is missing"));
        assert_eq!(
            hint(r#"{"channelId":42}"#),
            Err("channelId is not a string")
        );
        assert!(hint(r#"{"channelId":""}"#).is_err());
        assert!(hint(r#"{"channelId":"ls-1\nFAKE LOG LINE"}"#).is_err());
        assert!(hint(&format!(r#"{{"channelId":"{}"}}"#, "x".repeat(200))).is_err());
        assert!(hint(r#"{"channelId":"ls-1","event":{"a":1}}"#).is_err());
    }

    #[test]
    fn only_the_exact_token_matches() {
        let accepting = Accepting::from(CallbackSettings {
            token: Secret::new("s3cret-token"),
            channels: Arc::new(HashSet::new()),
        });

        assert!(accepting.token_matches("s3cret-token"));
        assert!(!accepting.token_matches("s3cret-toke"));
        assert!(!accepting.token_matches("s3cret-token "));
        assert!(!accepting.token_matches(""));
    }

    #[test]
    fn the_bucket_allows_a_burst_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(40.0, t0);

        let burst = (0..100).filter(|_| bucket.try_take(t0, 20.0, 40.0)).count();
        let after_half_second = (0..100)
            .filter(|_| bucket.try_take(t0 + Duration::from_millis(500), 20.0, 40.0))
            .count();
        let after_an_hour = (0..100)
            .filter(|_| bucket.try_take(t0 + Duration::from_secs(3600), 20.0, 40.0))
            .count();

        assert_eq!(burst, 40);
        assert_eq!(after_half_second, 10);
        assert_eq!(after_an_hour, 40);
    }
}
