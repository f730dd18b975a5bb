//! Driving the emulator: [`Control`] in process, and the same operations over HTTP under
//! `/_emulator/` for tests that run the emulator as a separate process. The HTTP routes are open
//! unless the emulator was given a control token ([`authorize`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::calls::{CALL_LOG_CAPACITY, CallPage, DEFAULT_CALLS_LIMIT};
use super::faults::{Fault, FaultRule, Operation};
use super::mix::{FaultMix, FaultMixError, MixEntry};
use super::options::{Behaviour, Lifecycle};
use super::state::{ChannelSpec, ControlError, Counters, duration_ms};
use super::{App, Shared};
use crate::livestation::model::{Channel, Record};

/// A handle on a running emulator's state. Cheap to clone; every clone controls the same emulator.
#[derive(Clone)]
pub struct Control {
    pub(crate) shared: Arc<Shared>,
}

impl Control {
    /// Adds a channel. Fails if the id is in use or unusable in a URL path.
    pub fn add_channel(&self, spec: ChannelSpec) -> Result<(), ControlError> {
        let mut st = self.shared.lock();
        let now = st.now_ms();
        st.add_channel(spec, now)
    }

    /// Adds `n` `READY` channels with default settings, ids `{prefix}-00001`, `{prefix}-00002`, …
    /// (skipping ids in use), and returns their ids in list order.
    pub fn add_channels(&self, n: usize, prefix: &str) -> Vec<String> {
        let mut st = self.shared.lock();
        let now = st.now_ms();
        st.add_channels(n, prefix, now)
    }

    /// The stream starts: the channel becomes `PUBLISHING` (and records by itself if it has
    /// `immediateOnAir`). Nothing happens if it is live already.
    pub fn go_live(&self, id: &str) -> Result<(), ControlError> {
        let mut st = self.shared.lock();
        let now = st.now_ms();
        st.go_live(id, now)
    }

    /// The stream ends: the channel becomes `READY`, and a running recording ends as with
    /// `stopRecord`.
    pub fn go_offline(&self, id: &str) -> Result<(), ControlError> {
        let mut st = self.shared.lock();
        let now = st.now_ms();
        st.go_offline(id, now)
    }

    /// Sets the gateway clock to real time plus `offset`: it stamps `Date`, judges request
    /// timestamps and dates records.
    pub fn set_clock_offset(&self, offset: TimeDelta) {
        self.shared.lock().clock_offset_ms = offset.num_milliseconds();
    }

    /// The gateway clock's current offset from real time.
    pub fn clock_offset(&self) -> TimeDelta {
        TimeDelta::milliseconds(self.shared.lock().clock_offset_ms)
    }

    /// The gateway clock now.
    pub fn now(&self) -> DateTime<Utc> {
        let ms = self.shared.lock().now_ms();
        DateTime::from_timestamp_millis(ms).unwrap_or_default()
    }

    /// Lets `by` pass for channels and records without waiting and without moving the gateway
    /// clock: every stored time moves `by` into the past, so recordings get longer, stages
    /// complete and retention runs out exactly as if the time had passed.
    pub fn advance(&self, by: Duration) {
        self.shared.lock().advance(duration_ms(by));
    }

    /// Injects `fault` on every call of `op` until [`Control::clear_faults`].
    pub fn set_fault(&self, op: Operation, fault: Fault) {
        self.add_fault(FaultRule::new(op, fault));
    }

    /// Adds a fault rule (counted, per channel, …); rules fire in the order added.
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.lock().faults.add(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Sets the fault mix that requests no fault rule matches draw from (replacing any mix
    /// before it; the draws start afresh from its seed). Refuses a mix that does not check.
    pub fn set_fault_mix(&self, mix: FaultMix) -> Result<(), FaultMixError> {
        mix.check()?;
        self.shared.lock().faults.set_mix(Some(mix));
        Ok(())
    }

    /// Removes the fault mix (fault rules stay).
    pub fn clear_fault_mix(&self) {
        self.shared.lock().faults.set_mix(None);
    }

    /// The fault mix in use, if any.
    pub fn fault_mix(&self) -> Option<FaultMix> {
        self.shared.lock().faults.mix().cloned()
    }

    /// Replaces the answers chosen where the API is undefined.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared.lock().behaviour = behaviour;
    }

    /// The answers chosen where the API is undefined.
    pub fn behaviour(&self) -> Behaviour {
        self.shared.lock().behaviour.clone()
    }

    /// Replaces the stage durations; stages that begin from now on use them.
    pub fn set_lifecycle(&self, lifecycle: Lifecycle) {
        self.shared.lock().lifecycle = lifecycle;
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Sets every counter back to zero (the call log stays).
    pub fn reset_counters(&self) {
        self.shared.lock().counters = Counters::default();
    }

    /// Up to `limit` API calls with a sequence number above `since`, from the call log, oldest
    /// first (`since` 0: from the oldest held).
    pub fn calls(&self, since: u64, limit: usize) -> CallPage {
        self.shared.lock().calls.since(since, limit)
    }

    /// The channel as the API would describe it now.
    pub fn channel(&self, id: &str) -> Option<Channel> {
        self.shared.lock().channel(id)
    }

    /// Every record of a channel as the API would describe it now, including deleted ones that
    /// the records list no longer shows.
    pub fn records(&self, channel_id: &str) -> Vec<Record> {
        let st = self.shared.lock();
        let now = st.now_ms();
        st.records(Some(channel_id), now)
    }

    /// Every record of every channel, by record id.
    pub fn all_records(&self) -> Vec<Record> {
        let st = self.shared.lock();
        let now = st.now_ms();
        st.records(None, now)
    }
}

/// SHA-256 of a control token: compared digest to digest, so the time taken says nothing about
/// how much of a guess was right.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Lets a control request through when the emulator has no control token, or when the request
/// carries `Authorization: Bearer <token>`; anything else gets 401.
pub(crate) async fn authorize(
    State(app): State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(expected) = app.shared.control_token else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| token_digest(t.trim()));
    let matches = given.is_some_and(|given| {
        let diff = given
            .iter()
            .zip(&expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    });
    if matches {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({
                "error": "the control API needs Authorization: Bearer <the token printed at start>"
            })),
        )
            .into_response()
    }
}

/// The `/_emulator/` routes.
pub(crate) fn router() -> Router<App> {
    Router::new()
        .route("/health", get(|| async { Json(json!({ "ok": true })) }))
        .route("/channels", post(add_channel))
        .route("/channels/bulk", post(add_channels))
        .route("/channels/{id}", get(channel))
        .route("/channels/{id}/live", post(go_live))
        .route("/channels/{id}/offline", post(go_offline))
        .route("/channels/{id}/records", get(channel_records))
        .route("/records", get(all_records))
        .route("/clock", get(clock).put(set_clock))
        .route("/advance", post(advance))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route(
            "/fault_mix",
            get(fault_mix).put(set_fault_mix).delete(clear_fault_mix),
        )
        .route("/counters", get(counters).delete(reset_counters))
        .route("/calls", get(calls))
        .route("/behaviour", get(behaviour).put(set_behaviour))
        .route("/lifecycle", put(set_lifecycle))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": "no such control endpoint" })),
            )
        })
}

fn control(app: &App) -> Control {
    Control {
        shared: app.shared.clone(),
    }
}

fn control_error(e: ControlError) -> Response {
    let status = match e {
        ControlError::UnknownChannel(_) => StatusCode::NOT_FOUND,
        ControlError::DuplicateChannel(_) => StatusCode::CONFLICT,
        ControlError::InvalidChannel(_) => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

fn done(r: Result<(), ControlError>) -> Response {
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => control_error(e),
    }
}

/// Records with their `recordId` inside, for the control API.
fn records_json(records: &[Record]) -> Value {
    let items: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
            v["recordId"] = json!(r.record_id);
            v
        })
        .collect();
    json!({ "records": items })
}

async fn add_channel(State(app): State<App>, Json(spec): Json<ChannelSpec>) -> Response {
    let id = spec.id.clone();
    match control(&app).add_channel(spec) {
        Ok(()) => (StatusCode::CREATED, Json(json!({ "channelId": id }))).into_response(),
        Err(e) => control_error(e),
    }
}

#[derive(Deserialize)]
struct Bulk {
    count: usize,
    #[serde(default = "default_prefix")]
    prefix: String,
    /// How many of the new channels to make live right away.
    #[serde(default)]
    live: usize,
}

fn default_prefix() -> String {
    "ls-emulator".to_string()
}

async fn add_channels(State(app): State<App>, Json(bulk): Json<Bulk>) -> Response {
    let c = control(&app);
    let ids = c.add_channels(bulk.count, &bulk.prefix);
    for id in ids.iter().take(bulk.live) {
        if let Err(e) = c.go_live(id) {
            return control_error(e);
        }
    }
    Json(json!({ "ids": ids })).into_response()
}

async fn channel(State(app): State<App>, Path(id): Path<String>) -> Response {
    match control(&app).channel(&id) {
        Some(c) => Json(c).into_response(),
        None => control_error(ControlError::UnknownChannel(id)),
    }
}

async fn go_live(State(app): State<App>, Path(id): Path<String>) -> Response {
    done(control(&app).go_live(&id))
}

async fn go_offline(State(app): State<App>, Path(id): Path<String>) -> Response {
    done(control(&app).go_offline(&id))
}

async fn channel_records(State(app): State<App>, Path(id): Path<String>) -> Response {
    let c = control(&app);
    if c.channel(&id).is_none() {
        return control_error(ControlError::UnknownChannel(id));
    }
    Json(records_json(&c.records(&id))).into_response()
}

#[derive(Deserialize)]
struct RecordFilter {
    channel: Option<String>,
}

async fn all_records(State(app): State<App>, Query(f): Query<RecordFilter>) -> Json<Value> {
    let c = control(&app);
    let records = match f.channel {
        Some(id) => c.records(&id),
        None => c.all_records(),
    };
    Json(records_json(&records))
}

#[derive(Deserialize)]
struct Clock {
    offset_ms: i64,
}

async fn clock(State(app): State<App>) -> Json<Value> {
    let c = control(&app);
    Json(json!({
        "offset_ms": c.clock_offset().num_milliseconds(),
        "now_ms": c.now().timestamp_millis(),
    }))
}

async fn set_clock(State(app): State<App>, Json(clock): Json<Clock>) -> StatusCode {
    control(&app).set_clock_offset(TimeDelta::milliseconds(clock.offset_ms));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Advance {
    ms: u64,
}

async fn advance(State(app): State<App>, Json(a): Json<Advance>) -> StatusCode {
    control(&app).advance(Duration::from_millis(a.ms));
    StatusCode::NO_CONTENT
}

async fn add_fault(State(app): State<App>, Json(rule): Json<FaultRule>) -> StatusCode {
    control(&app).add_fault(rule);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(app): State<App>) -> StatusCode {
    control(&app).clear_faults();
    StatusCode::NO_CONTENT
}

/// `PUT /_emulator/fault_mix`: entries in JSON, in the text form, or both; a random seed when
/// none is given (the answer shows it).
#[derive(Deserialize)]
struct MixRequest {
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    entries: Vec<MixEntry>,
    #[serde(default)]
    spec: Vec<String>,
}

async fn fault_mix(State(app): State<App>) -> Json<Option<FaultMix>> {
    Json(control(&app).fault_mix())
}

async fn set_fault_mix(State(app): State<App>, Json(request): Json<MixRequest>) -> Response {
    let seed = request.seed.unwrap_or_else(rand::random);
    let mix = FaultMix::from_specs(seed, &request.spec).and_then(|parsed| {
        let mut entries = request.entries;
        entries.extend(parsed.entries);
        FaultMix::new(seed, entries)
    });
    match mix.and_then(|mix| control(&app).set_fault_mix(mix.clone()).map(|()| mix)) {
        Ok(mix) => Json(mix).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

async fn clear_fault_mix(State(app): State<App>) -> StatusCode {
    control(&app).clear_fault_mix();
    StatusCode::NO_CONTENT
}

async fn counters(State(app): State<App>) -> Json<Counters> {
    Json(control(&app).counters())
}

#[derive(Deserialize)]
struct CallsQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

async fn calls(State(app): State<App>, Query(q): Query<CallsQuery>) -> Json<CallPage> {
    let limit = q
        .limit
        .unwrap_or(DEFAULT_CALLS_LIMIT)
        .clamp(1, CALL_LOG_CAPACITY);
    Json(control(&app).calls(q.since, limit))
}

async fn reset_counters(State(app): State<App>) -> StatusCode {
    control(&app).reset_counters();
    StatusCode::NO_CONTENT
}

async fn behaviour(State(app): State<App>) -> Json<Behaviour> {
    Json(control(&app).behaviour())
}

async fn set_behaviour(State(app): State<App>, Json(b): Json<Behaviour>) -> StatusCode {
    control(&app).set_behaviour(b);
    StatusCode::NO_CONTENT
}

async fn set_lifecycle(State(app): State<App>, Json(l): Json<Lifecycle>) -> StatusCode {
    control(&app).set_lifecycle(l);
    StatusCode::NO_CONTENT
}
