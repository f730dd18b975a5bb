//! A faithful local Live Station for tests, the demo and benchmarks.
//!
//! It serves the endpoints lsrecd uses under both prefixes, `/api/v2` (region `KR`) and
//! `/api/fin-v2` (`FKR`), with the documented JSON shapes, behind an emulated API Gateway.
//!
//! # Layout
//!
//! - `gateway`: signature v2 verification and the gateway's error bodies.
//! - `api`: routing, region check, fault injection and the Live Station answers.
//! - `state`: channels, records and the record lifecycle, as pure functions of time.
//! - `faults`: [`Operation`], [`Fault`], [`FaultRule`].
//! - `calls`: the call log ([`Call`], [`CallPage`]): every API request in order, bounded.
//! - `mix`: [`FaultMix`], a seeded probabilistic fault mix, and its text form.
//! - `options`: [`EmulatorOptions`], [`Lifecycle`], [`Behaviour`].
//! - `control`: [`Control`] and the HTTP control API.
//!
//! # Order of checks
//!
//! 1. Gateway authentication (401, `errorCode` `"200"`): a missing or empty
//!    `x-ncp-apigw-timestamp`/`x-ncp-iam-access-key`/`x-ncp-apigw-signature-v2` →
//!    `Authentication information are missing.`; a timestamp 5 minutes or more from the gateway
//!    clock → `Expired timestamp.`; an unknown access key, an unreadable timestamp or a signature
//!    that does not match `METHOD target\ntimestamp\naccessKey` over the request target exactly as
//!    received → `Invalid authentication information.`
//! 2. Routing: anything else → 404, `"300"`, `URL not found.`
//! 3. Region: `x-ncp-region_code` missing → 400 `250003 REQUIRED_HEADER`; not the prefix's region
//!    → 400 `250020 OPEN_API_INVALID_REGION_CODE`.
//! 4. Fault rules ([`FaultRule`]), else a draw from the fault mix ([`FaultMix`]), then the
//!    operation. A `late_apply` fault does the operation in a task of its own after holding the
//!    request, so it happens even when the client gave up and disconnected.
//!
//! Every answer carries `Date` (from the gateway clock, see [`Control::set_clock_offset`]) and
//! `x-ncp-trace-id`.
//!
//! # Records
//!
//! `startRecord` on a `PUBLISHING` channel creates one record per file type (two, `MP4` and `HLS`,
//! sharing `recordSeq`/`streamSeq`, for format `ALL`) in `RECORDING`; record ids count up from
//! 27000 and are never reused. `stopRecord` or the stream ending ([`Control::go_offline`]) moves
//! them to `PROCESSING` and sets `duration`. After [`Lifecycle::processing`] they become
//! `TRANSFER_READY` (`MANUAL_UPLOAD`) or `TRANSFER` (`AUTO_UPLOAD`), and after
//! [`Lifecycle::transfer`] `TRANSFER_FINISH` with `objectStorageUrl`. The upload API moves
//! `TRANSFER_READY`/`TRANSFER_FAIL` records to `TRANSFER`. `shouldDeleteTime` is `createdTime` +
//! [`Lifecycle::retention`]; once it passes, records not uploaded (`TRANSFER_READY`,
//! `TRANSFER_FAIL`, `PROCESSING_FAIL`) are `DELETED`. Statuses are computed from timestamps on
//! every read, so nothing runs in the background; [`Control::advance`] ages everything instead
//! of waiting. A channel with `immediateOnAir` starts recording by itself when it goes live.
//!
//! # Defaults where the real API is undefined ([`Behaviour`])
//!
//! | case | default |
//! |---|---|
//! | `startRecord`, channel not `PUBLISHING` | 400 `250005 NOT_AVAILABLE` "channel not available." |
//! | `startRecord`, `record.type` `NO_RECORD` | 400 `250005 NOT_AVAILABLE` "record not available." |
//! | `startRecord` while recording | 400 `250005` (or 200 with the running records); always counted in [`Counters::start_while_recording`] |
//! | `stopRecord` while not recording | 400 `250005` (or 200 with the last recording's records) |
//! | `shouldDeleteTime` in the `startRecord` answer | included |
//! | unknown channel or record | 400 `250004 NOT_FOUND` "channel not found." / "record not found." |
//! | `DELETED` records in the records list | listed for 24 h after `shouldDeleteTime`, then gone |
//! | `pageSizeNo` absent | 20 (out of 1..=100 → 400 `250002 INVALID_FORMAT`) |
//! | upload answer `uploadedRecords` | a map keyed by record id, like `recordList` |
//! | what the channel list's `total` counts | every matching channel (`total`: `all`; or `page`: the entries of the page; or `absent`) |
//!
//! `lsrecd emulator --total page|absent` and `--refusal-status N` (the HTTP status of every
//! `NOT_AVAILABLE` and `NOT_FOUND` above) choose the other readings at start.
//!
//! # HTTP control API
//!
//! Open on loopback. With [`EmulatorOptions::control_token`] (which `lsrecd emulator` sets when
//! it listens on an address other machines can reach) every request needs
//! `Authorization: Bearer <token>`, else 401.
//!
//! | request | does |
//! |---|---|
//! | `GET /_emulator/health` | `{"ok":true}` |
//! | `POST /_emulator/channels` with a [`ChannelSpec`] (`{"id":"c1","status":"PUBLISHING","immediate_on_air":false,"record_type":"AUTO_UPLOAD","format":"MP4"}`) | 201, 409 if the id exists |
//! | `POST /_emulator/channels/bulk` `{"count":250,"prefix":"bench","live":3}` | `{"ids":[..]}` |
//! | `GET /_emulator/channels/{id}` | the channel as the API shows it |
//! | `POST /_emulator/channels/{id}/live`, `.../offline` | 204, 404 if unknown |
//! | `GET /_emulator/channels/{id}/records`, `GET /_emulator/records[?channel=id]` | `{"records":[{"recordId":..,..}]}` (deleted ones too) |
//! | `GET /_emulator/clock`, `PUT /_emulator/clock` `{"offset_ms":-420000}` | gateway clock offset |
//! | `POST /_emulator/advance` `{"ms":259200000}` | [`Control::advance`] |
//! | `POST /_emulator/faults` with a [`FaultRule`] (`{"operation":"start_record","times":1,"fault":{"kind":"apply_then_502"}}`), `DELETE /_emulator/faults` | add / clear the rules |
//! | `PUT /_emulator/fault_mix` `{"seed":7,"spec":["status_5xx=20,rate_limit=10:retry_after=1"],"entries":[{"operation":"start_record","percent":50,"fault":{"kind":"late_apply","hold_ms":5000}}]}` (either list may be left out; no seed: a random one) | sets the [`FaultMix`], answers it with its seed; 400 with the reason if it does not check |
//! | `GET /_emulator/fault_mix`, `DELETE /_emulator/fault_mix` | the mix (`null` if none) / remove it |
//! | `GET /_emulator/counters`, `DELETE /_emulator/counters` | [`Counters`] / reset (the call log stays) |
//! | `GET /_emulator/calls?since=SEQ&limit=N` | [`CallPage`]: up to `N` (default 20,000) API calls numbered above `SEQ` (default 0), oldest first, from a log of the last 200,000: `{"calls":[{"seq":1,"arrived_us":..,"answered_us":..,"operation":"list_channels","page":1,"channel_id":null,"status":200},..],"next":SEQ,"missed":0,"more":false}`; pass `next` as `since` to read on |
//! | `GET`/`PUT /_emulator/behaviour` | [`Behaviour`] (partial JSON keeps the other defaults) |
//! | `PUT /_emulator/lifecycle` `{"processing_ms":2000,"transfer_ms":2000,"retention_ms":259200000}` | [`Lifecycle`] |

mod api;
mod calls;
mod control;
mod faults;
mod gateway;
mod mix;
mod options;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::HeaderValue;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use calls::{CALL_LOG_CAPACITY, Call, CallPage};
pub use control::Control;
pub use faults::{DEFAULT_LATE_HOLD_MS, Fault, FaultRule, Operation};
pub use mix::{FaultMix, FaultMixError, MixEntry, parse_spec as parse_fault_mix};
pub use options::{
    Behaviour, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, EmulatorOptions, Lifecycle,
    LiveStationError, TotalMeaning, WhileIdle, WhileRecording,
};
pub use state::{ChannelSpec, ControlError, Counters, RecordFormat, RecordType};

/// How long [`RunningEmulator::shutdown`] waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// State shared by the server and every [`Control`].
pub(crate) struct Shared {
    state: Mutex<state::State>,
    keys: gateway::Keys,
    /// SHA-256 of the control API's bearer token, when it needs one.
    control_token: Option<[u8; 32]>,
}

impl Shared {
    /// The state. A panic while it was held cannot leave it half-updated in a way that matters
    /// to an emulator, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, state::State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What each request handler gets.
#[derive(Clone)]
pub(crate) struct App {
    shared: Arc<Shared>,
    /// Becomes `true` when the server shuts down; held requests answer then.
    shutdown: watch::Receiver<bool>,
}

/// An emulator that is not serving yet.
pub struct Emulator {
    shared: Arc<Shared>,
}

impl Emulator {
    /// An emulator with no channels.
    pub fn new(opts: EmulatorOptions) -> Self {
        Emulator {
            shared: Arc::new(Shared {
                state: Mutex::new(state::State::new(opts.lifecycle, opts.behaviour)),
                keys: gateway::Keys {
                    access_key: opts.access_key,
                    secret_key: crate::secret::Secret::new(opts.secret_key),
                },
                control_token: opts
                    .control_token
                    .map(|t| control::token_digest(t.expose())),
            }),
        }
    }

    /// Binds `listen` (port 0 picks a free port) and serves in a background task.
    pub async fn start(
        listen: SocketAddr,
        opts: EmulatorOptions,
    ) -> std::io::Result<RunningEmulator> {
        let listener = TcpListener::bind(listen).await?;
        Emulator::new(opts).spawn(listener)
    }

    /// Control of this emulator, usable before and while it serves.
    pub fn control(&self) -> Control {
        Control {
            shared: self.shared.clone(),
        }
    }

    /// Serves on `listener` in a background task.
    pub fn spawn(self, listener: TcpListener) -> std::io::Result<RunningEmulator> {
        let addr = listener.local_addr()?;
        let control = self.control();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async move {
            // A dropped sender means the handle is gone: stop as well.
            let _ = stopped.await;
        }));
        Ok(RunningEmulator {
            addr,
            control,
            stop,
            task,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then answers held requests and waits
    /// for open connections to finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (tx, rx) = watch::channel(false);
        let app = App {
            shared: self.shared,
            shutdown: rx,
        };
        let signal = async move {
            shutdown.await;
            let _ = tx.send(true);
        };
        axum::serve(listener, router(app))
            .with_graceful_shutdown(signal)
            .await
    }
}

/// An emulator serving in a background task. Dropping it stops the server too.
pub struct RunningEmulator {
    addr: SocketAddr,
    control: Control,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningEmulator {
    /// `http://IP:PORT`, the `api.endpoint` to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Control of this emulator.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stops serving: held requests are answered, open connections get a few seconds to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

fn router(app: App) -> Router {
    Router::new()
        .nest(
            "/_emulator",
            control::router().layer(axum::middleware::from_fn_with_state(
                app.clone(),
                control::authorize,
            )),
        )
        .fallback(api::handle)
        .layer(axum::middleware::map_response_with_state(
            app.clone(),
            stamp,
        ))
        .with_state(app)
}

/// Adds `Date` (gateway clock) and `x-ncp-trace-id` to every answer.
async fn stamp(AxumState(app): AxumState<App>, mut response: Response) -> Response {
    let now = app.shared.lock().now_ms();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&gateway::http_date(now)) {
        headers.insert(axum::http::header::DATE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&gateway::trace_id()) {
        headers.insert(gateway::TRACE_ID, v);
    }
    response
}
