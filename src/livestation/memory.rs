//! An in-memory Live Station: the [`LiveStation`] double the engine's unit tests run against.
//!
//! Channels publish or not and record or not; `startRecord` creates a `RECORDING` record and
//! `stopRecord` moves it to `PROCESSING`. Each call can be scripted to fail, and a failure can
//! say whether the call took effect: not at all, before the error was answered, or only later
//! (a request applied after the client gave up: it lands when the test calls
//! [`MemoryLiveStation::land_late_requests`]). Record times come from a clock the test sets
//! ([`MemoryLiveStation::set_time`]). It counts what was sent, including starts that hit a
//! channel already recording, which is what "never twice" is measured by.
//!
//! The HTTP-level behaviour (signatures, bodies, paging rules) is the emulator's job; this
//! double is about outcomes and timing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::TimeDelta;
use tokio::time::Instant;

use super::api::LiveStation;
use super::client::{Operation, Permit, Reply, ReplyMeta, Sent};
use super::error::ApiError;
use super::model::{
    Channel, ChannelPage, ChannelStatus, ListedPage, PageDigest, Record, RecordSet, RecordStatus,
};

/// What a scripted call does instead of answering normally.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Fails with the error; nothing happens.
    Fail(ApiError),
    /// Takes effect, then fails with the error (the answer was lost).
    ApplyThenFail(ApiError),
    /// Fails with the error at once; the call takes effect only when the test says so
    /// ([`MemoryLiveStation::land_late_requests`]).
    FailThenApplyLater(ApiError),
}

/// A request that will take effect later.
#[derive(Clone, Debug)]
struct Late {
    operation: Operation,
    channel_id: String,
}

#[derive(Debug, Default)]
struct State {
    channels: BTreeMap<String, Channel>,
    records: BTreeMap<String, Vec<Record>>,
    next_record_id: i64,
    script: BTreeMap<Operation, VecDeque<Behaviour>>,
    late: Vec<Late>,
    calls: BTreeMap<Operation, u64>,
    starts_applied: u64,
    starts_while_recording: u64,
    uploads: Vec<(String, Vec<i64>)>,
    /// Epoch ms used as record times.
    time: i64,
}

/// The in-memory Live Station. Shared by reference; every method takes `&self`.
#[derive(Debug, Default)]
pub struct MemoryLiveStation {
    state: Mutex<State>,
}

/// A network-level failure with no answer: the request may have been applied.
pub fn timeout() -> ApiError {
    ApiError::Transient {
        http_status: None,
        error_code: None,
        reason: "timed out".into(),
        maybe_applied: true,
    }
}

/// An HTTP 5xx answer.
pub fn server_error(status: u16) -> ApiError {
    ApiError::Transient {
        http_status: Some(status),
        error_code: None,
        reason: "server error".into(),
        maybe_applied: true,
    }
}

/// A connection that was never established: certainly not applied.
pub fn refused() -> ApiError {
    ApiError::Transient {
        http_status: None,
        error_code: None,
        reason: "could not connect".into(),
        maybe_applied: false,
    }
}

/// A 4xx refusal from Live Station.
pub fn rejected() -> ApiError {
    ApiError::Rejected {
        http_status: 400,
        error_code: Some("250005".into()),
        error_name: Some("NOT_AVAILABLE".into()),
        message: "channel not available.".into(),
    }
}

/// HTTP 429 with a `Retry-After`.
pub fn rate_limited(retry_after: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after: Some(retry_after),
        error_code: Some("420".into()),
    }
}

impl MemoryLiveStation {
    /// An empty account whose clock reads `epoch_ms`.
    pub fn new(epoch_ms: i64) -> MemoryLiveStation {
        let double = MemoryLiveStation::default();
        double.set_time(epoch_ms);
        double
    }

    /// Sets the clock record times are taken from.
    pub fn set_time(&self, epoch_ms: i64) {
        self.lock().time = epoch_ms;
    }

    /// Lets every request that failed but takes effect later take effect now; returns how
    /// many did.
    pub fn land_late_requests(&self) -> usize {
        let mut s = self.lock();
        let late = std::mem::take(&mut s.late);
        for l in &late {
            let _ = s.apply(l.operation, &l.channel_id);
        }
        late.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a channel, publishing or not.
    pub fn add_channel(&self, channel_id: &str, publishing: bool) {
        let mut s = self.lock();
        s.channels.insert(
            channel_id.to_string(),
            Channel {
                channel_id: channel_id.to_string(),
                channel_name: Some(format!("name of {channel_id}")),
                channel_status: if publishing {
                    ChannelStatus::Publishing
                } else {
                    ChannelStatus::Ready
                },
                is_recording: false,
                immediate_on_air: false,
                record: None,
                created_time: None,
            },
        );
    }

    /// The stream starts or stops coming in; a stream that stops ends its recording.
    pub fn set_publishing(&self, channel_id: &str, publishing: bool) {
        let mut s = self.lock();
        if !publishing {
            s.end_recording(channel_id);
        }
        if let Some(c) = s.channels.get_mut(channel_id) {
            c.channel_status = if publishing {
                ChannelStatus::Publishing
            } else {
                ChannelStatus::Ready
            };
        }
    }

    /// Queues `behaviour` for the next call of `operation` (calls use the queue in order).
    pub fn script(&self, operation: Operation, behaviour: Behaviour) {
        self.lock()
            .script
            .entry(operation)
            .or_default()
            .push_back(behaviour);
    }

    /// The channel as Live Station sees it now.
    pub fn channel(&self, channel_id: &str) -> Option<Channel> {
        self.lock().channels.get(channel_id).cloned()
    }

    /// Calls made of `operation`, including failed ones.
    pub fn calls(&self, operation: Operation) -> u64 {
        self.lock().calls.get(&operation).copied().unwrap_or(0)
    }

    /// Starts that took effect (including late ones).
    pub fn starts_applied(&self) -> u64 {
        self.lock().starts_applied
    }

    /// Starts that reached a channel already recording: duplicates.
    pub fn starts_while_recording(&self) -> u64 {
        self.lock().starts_while_recording
    }

    /// Upload requests that took effect: bucket and record ids.
    pub fn uploads(&self) -> Vec<(String, Vec<i64>)> {
        self.lock().uploads.clone()
    }

    /// Every record of the channel.
    pub fn records(&self, channel_id: &str) -> Vec<Record> {
        self.lock()
            .records
            .get(channel_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Counts the call and takes its scripted behaviour, if any.
    fn begin(&self, operation: Operation) -> Option<Behaviour> {
        let mut s = self.lock();
        *s.calls.entry(operation).or_default() += 1;
        s.script.get_mut(&operation).and_then(VecDeque::pop_front)
    }

    fn mutate(&self, operation: Operation, channel_id: &str) -> Sent<RecordSet> {
        let sent = Instant::now();
        let behaviour = self.begin(operation);
        let mut s = self.lock();
        let result = match behaviour {
            None => s.apply(operation, channel_id).map(reply),
            Some(Behaviour::Fail(e)) => Err(e),
            Some(Behaviour::ApplyThenFail(e)) => {
                let _ = s.apply(operation, channel_id);
                Err(e)
            }
            Some(Behaviour::FailThenApplyLater(e)) => {
                s.late.push(Late {
                    operation,
                    channel_id: channel_id.to_string(),
                });
                Err(e)
            }
        };
        Sent {
            result,
            last_sent: Some(sent),
        }
    }

    fn read<T>(
        &self,
        operation: Operation,
        read: impl FnOnce(&mut State) -> Result<T, ApiError>,
    ) -> Result<Reply<T>, ApiError> {
        match self.begin(operation) {
            Some(Behaviour::Fail(e) | Behaviour::ApplyThenFail(e)) => Err(e),
            Some(Behaviour::FailThenApplyLater(e)) => Err(e),
            None => read(&mut self.lock()).map(reply),
        }
    }
}

fn reply<T>(value: T) -> Reply<T> {
    Reply {
        value,
        meta: ReplyMeta {
            http_status: 200,
            trace_id: None,
            server_date: None,
            elapsed: Duration::ZERO,
            attempts: 1,
        },
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::Rejected {
        http_status: 404,
        error_code: Some("250004".into()),
        error_name: Some("NOT_FOUND".into()),
        message: format!("{what} not found."),
    }
}

impl State {
    fn apply(&mut self, operation: Operation, channel_id: &str) -> Result<RecordSet, ApiError> {
        match operation {
            Operation::StartRecord => self.start(channel_id),
            Operation::StopRecord => self.stop(channel_id),
            _ => Ok(RecordSet::default()),
        }
    }

    fn start(&mut self, channel_id: &str) -> Result<RecordSet, ApiError> {
        let now = self.time;
        let channel = self
            .channels
            .get_mut(channel_id)
            .ok_or_else(|| not_found("channel"))?;
        if channel.is_recording {
            self.starts_while_recording += 1;
            return Err(rejected());
        }
        if !channel.channel_status.is_live() {
            return Err(rejected());
        }
        channel.is_recording = true;
        self.starts_applied += 1;
        self.next_record_id += 1;
        let record = Record {
            record_id: self.next_record_id,
            record_type: "MP4".into(),
            channel_id: channel_id.to_string(),
            status: RecordStatus::Recording,
            record_seq: Some(self.next_record_id),
            stream_seq: Some(1),
            record_begin_time: Some(now),
            created_time: Some(now),
            should_delete_time: Some(now + 3 * 24 * 3_600_000),
            duration: None,
            resolution: None,
            file_name: Some(format!("{}.mp4", self.next_record_id)),
            video_bitrate: None,
            video_frame_rate: None,
            audio_bitrate: None,
            audio_codec: None,
            upload_path: None,
            object_storage_url: None,
        };
        self.records
            .entry(channel_id.to_string())
            .or_default()
            .push(record.clone());
        Ok(RecordSet {
            records: vec![record],
            skipped: Vec::new(),
        })
    }

    fn stop(&mut self, channel_id: &str) -> Result<RecordSet, ApiError> {
        let channel = self
            .channels
            .get(channel_id)
            .ok_or_else(|| not_found("channel"))?;
        if !channel.is_recording {
            return Err(rejected());
        }
        Ok(RecordSet {
            records: self.end_recording(channel_id),
            skipped: Vec::new(),
        })
    }

    /// Ends the channel's recording; returns its records as they are now.
    fn end_recording(&mut self, channel_id: &str) -> Vec<Record> {
        if let Some(c) = self.channels.get_mut(channel_id) {
            c.is_recording = false;
        }
        let mut ended = Vec::new();
        for r in self.records.entry(channel_id.to_string()).or_default() {
            if r.status == RecordStatus::Recording {
                r.status = RecordStatus::Processing;
                ended.push(r.clone());
            }
        }
        ended
    }
}

impl LiveStation for MemoryLiveStation {
    /// The page's digest is that of the JSON the page would be written as, as a server's is.
    async fn list_channels_page(
        &self,
        page_no: u32,
        page_size: u32,
        known: Option<PageDigest>,
    ) -> Result<Reply<ListedPage>, ApiError> {
        self.read(Operation::ListChannels, |s| {
            let skip = (page_no.max(1) as usize - 1) * page_size as usize;
            let channels: Vec<&Channel> = s
                .channels
                .values()
                .skip(skip)
                .take(page_size as usize)
                .collect();
            let total = s.channels.len() as u64;
            let body = serde_json::json!({ "content": channels, "total": total });
            let digest = PageDigest::of(body.to_string().as_bytes());
            if known == Some(digest) {
                return Ok(ListedPage::Unchanged);
            }
            let mut page = ChannelPage::from_channels(channels, Some(total));
            page.digest = Some(digest);
            Ok(ListedPage::Read(page))
        })
    }

    async fn get_channel(&self, channel_id: &str) -> Result<Reply<Channel>, ApiError> {
        self.read(Operation::GetChannel, |s| {
            s.channels
                .get(channel_id)
                .cloned()
                .ok_or_else(|| not_found("channel"))
        })
    }

    async fn list_records(&self, channel_id: &str) -> Result<Reply<RecordSet>, ApiError> {
        self.read(Operation::ListRecords, |s| {
            Ok(RecordSet {
                records: s.records.get(channel_id).cloned().unwrap_or_default(),
                skipped: Vec::new(),
            })
        })
    }

    async fn ready(&self) -> Permit {
        Permit::granted()
    }

    async fn start_record(&self, channel_id: &str, _permit: Permit) -> Sent<RecordSet> {
        self.mutate(Operation::StartRecord, channel_id)
    }

    async fn stop_record(&self, channel_id: &str, _permit: Permit) -> Sent<RecordSet> {
        self.mutate(Operation::StopRecord, channel_id)
    }

    async fn upload(
        &self,
        bucket: &str,
        record_ids: &[i64],
    ) -> Result<Reply<serde_json::Value>, ApiError> {
        let bucket = bucket.to_string();
        let ids = record_ids.to_vec();
        self.read(Operation::Upload, move |s| {
            s.uploads.push((bucket, ids));
            Ok(serde_json::json!({"content": {}}))
        })
    }

    fn clock_skew(&self) -> Option<TimeDelta> {
        None
    }
}
