//! The emulated service's state: channels, records, counters, and the rules that move them.
//!
//! Every operation takes the emulator's current time (`now`, epoch milliseconds) as an argument
//! and record statuses are derived from stored timestamps when read, so nothing ticks in the
//! background and the same calls at the same instants always give the same answers.

use std::collections::{BTreeMap, HashMap};

use chrono::TimeZone as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::calls::CallLog;
use super::faults::{Fault, FaultTable, Operation};
use super::options::{Behaviour, Lifecycle, LiveStationError, WhileIdle, WhileRecording};
use crate::livestation::Region;
use crate::livestation::model::{self, ChannelStatus, RecordSettings, RecordStatus};

/// First record id handed out (real ids are five-digit and up).
const FIRST_RECORD_ID: i64 = 27_000;
/// First `recordSeq`.
const FIRST_RECORD_SEQ: i64 = 123_000;
/// First `streamSeq`.
const FIRST_STREAM_SEQ: i64 = 138_000;
/// Where uploaded files appear.
const OBJECT_STORAGE: &str = "https://kr.object.ncloudstorage.com";

/// A channel's `record.type`: what happens to its recordings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordType {
    /// Recordings go to the channel's bucket by themselves (`TRANSFER` → `TRANSFER_FINISH`).
    #[default]
    AutoUpload,
    /// Recordings wait in `TRANSFER_READY` for the upload API, until `shouldDeleteTime`.
    ManualUpload,
    /// Recording is disabled; `startRecord` fails.
    NoRecord,
}

impl RecordType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::AutoUpload => "AUTO_UPLOAD",
            RecordType::ManualUpload => "MANUAL_UPLOAD",
            RecordType::NoRecord => "NO_RECORD",
        }
    }
}

/// A channel's `record.format`: which files a recording produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordFormat {
    /// One `MP4` record per recording.
    #[default]
    Mp4,
    /// One `HLS` record per recording.
    Hls,
    /// Two records per recording, `MP4` and `HLS`, with the same `recordSeq` and `streamSeq`.
    All,
}

impl RecordFormat {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordFormat::Mp4 => "MP4",
            RecordFormat::Hls => "HLS",
            RecordFormat::All => "ALL",
        }
    }

    fn files(self) -> &'static [FileKind] {
        match self {
            RecordFormat::Mp4 => &[FileKind::Mp4],
            RecordFormat::Hls => &[FileKind::Hls],
            RecordFormat::All => &[FileKind::Mp4, FileKind::Hls],
        }
    }
}

/// A channel to create in the emulator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelSpec {
    /// `channelId`; must be unique and not empty.
    pub id: String,
    /// `channelName`; defaults to the id.
    pub name: Option<String>,
    /// Record by itself as soon as the channel goes live.
    pub immediate_on_air: bool,
    /// `record.type`.
    pub record_type: RecordType,
    /// `record.format`.
    pub format: RecordFormat,
    /// Initial `channelStatus` (a `PUBLISHING` channel with `immediate_on_air` starts recording).
    pub status: ChannelStatus,
    /// `record.bucketName`.
    pub bucket: String,
    /// `record.filePath`.
    pub file_path: String,
}

impl Default for ChannelSpec {
    fn default() -> Self {
        ChannelSpec {
            id: String::new(),
            name: None,
            immediate_on_air: false,
            record_type: RecordType::default(),
            format: RecordFormat::default(),
            status: ChannelStatus::Ready,
            bucket: "lsrecd-emulator".to_string(),
            file_path: "/livestation".to_string(),
        }
    }
}

impl ChannelSpec {
    /// A `READY` channel with `AUTO_UPLOAD`, `MP4` and no `immediateOnAir`.
    pub fn new(id: impl Into<String>) -> Self {
        ChannelSpec {
            id: id.into(),
            ..ChannelSpec::default()
        }
    }

    /// Start out `PUBLISHING`.
    pub fn live(mut self) -> Self {
        self.status = ChannelStatus::Publishing;
        self
    }

    /// Set `channelName`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Set `immediateOnAir`.
    pub fn immediate_on_air(mut self, on: bool) -> Self {
        self.immediate_on_air = on;
        self
    }

    /// Set `record.type`.
    pub fn record_type(mut self, t: RecordType) -> Self {
        self.record_type = t;
        self
    }

    /// Set `record.format`.
    pub fn format(mut self, f: RecordFormat) -> Self {
        self.format = f;
        self
    }
}

/// What the emulator has seen, for assertions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Every request to an API path, whatever became of it.
    pub requests: u64,
    /// Calls that passed the gateway and region check, per operation (faulted ones included).
    pub calls: BTreeMap<Operation, u64>,
    /// `startRecord` calls per channel id.
    pub start_record_calls: BTreeMap<String, u64>,
    /// `stopRecord` calls per channel id.
    pub stop_record_calls: BTreeMap<String, u64>,
    /// `startRecord` calls that reached a channel that was already recording: duplicates.
    pub start_while_recording: u64,
    /// The same, per channel id.
    pub start_while_recording_by_channel: BTreeMap<String, u64>,
    /// Requests the gateway answered 401.
    pub auth_failures: u64,
    /// Requests whose answer a fault rule or the fault mix shaped.
    pub faults_injected: u64,
    /// The same, per fault kind (`status_5xx`, `late_apply`, …).
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Operations a `late_apply` fault carried out after holding the request, whether or not
    /// the client was still waiting (and whatever the operation's own outcome).
    pub late_applied: u64,
    /// Recordings started, by `startRecord` or by `immediateOnAir`.
    pub recordings_started: u64,
}

impl Counters {
    /// Calls of one operation.
    pub fn calls_of(&self, op: Operation) -> u64 {
        self.calls.get(&op).copied().unwrap_or(0)
    }

    /// `startRecord` calls on one channel.
    pub fn start_record_calls_on(&self, channel_id: &str) -> u64 {
        self.start_record_calls
            .get(channel_id)
            .copied()
            .unwrap_or(0)
    }
}

/// A control operation that could not be done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No channel with this id.
    #[error("no channel {0:?} in the emulator")]
    UnknownChannel(String),
    /// A channel with this id exists already.
    #[error("channel {0:?} exists already")]
    DuplicateChannel(String),
    /// The channel spec cannot be used.
    #[error("invalid channel: {0}")]
    InvalidChannel(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Mp4,
    Hls,
}

#[derive(Clone, Debug)]
struct ChannelState {
    spec: ChannelSpec,
    status: ChannelStatus,
    instance_no: i64,
    created_time: i64,
    stream_seq: i64,
    /// Record ids of the running recording.
    recording: Option<Vec<i64>>,
    /// Record ids of the last finished recording.
    last_recording: Vec<i64>,
    /// Every record id of the channel, oldest first.
    record_ids: Vec<i64>,
}

impl ChannelState {
    fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    fn wire(&self) -> model::Channel {
        let record = match self.spec.record_type {
            RecordType::NoRecord => RecordSettings {
                upload_type: Some(RecordType::NoRecord.as_str().to_string()),
                ..RecordSettings::default()
            },
            t => RecordSettings {
                upload_type: Some(t.as_str().to_string()),
                format: Some(self.spec.format.as_str().to_string()),
                bucket_name: Some(self.spec.bucket.clone()),
                file_path: Some(self.spec.file_path.clone()),
                access_control: Some("PRIVATE".to_string()),
            },
        };
        model::Channel {
            channel_id: self.spec.id.clone(),
            channel_name: Some(
                self.spec
                    .name
                    .clone()
                    .unwrap_or_else(|| self.spec.id.clone()),
            ),
            channel_status: self.status.clone(),
            is_recording: self.is_recording(),
            immediate_on_air: self.spec.immediate_on_air,
            record: Some(record),
            created_time: Some(self.created_time),
        }
    }

    /// The channel object of the channel list and channel info answers, field by field as
    /// Live Station documents it (not through the client's model, so the two cannot agree on a
    /// misspelling by construction; `tests/api_fixtures.rs` holds both to the documented shape).
    fn json(&self, region: Region) -> Value {
        let (cdn_type, domain) = match region {
            Region::Kr => ("GLOBAL_EDGE", "lsrecd-emulator.edge.naverncp.com"),
            Region::Fkr => ("CDN_PLUS", "lsrecd-emulator.cdn.fin-ntruss.com"),
        };
        let record = match self.spec.record_type {
            RecordType::NoRecord => json!({ "type": RecordType::NoRecord.as_str() }),
            t => json!({
                "type": t.as_str(),
                "format": self.spec.format.as_str(),
                "bucketName": self.spec.bucket,
                "filePath": self.spec.file_path,
                "accessControl": "PRIVATE",
            }),
        };
        json!({
            "channelId": self.spec.id,
            "channelName": self.spec.name.as_deref().unwrap_or(&self.spec.id),
            "instanceNo": self.instance_no,
            "qualitySetId": 1,
            "qualitySetName": "Default Quality Set",
            "outputProtocol": "HLS",
            "channelStatus": self.status.as_str(),
            "isRecording": self.is_recording(),
            "useDvr": false,
            "immediateOnAir": self.spec.immediate_on_air,
            "timemachineMin": 360,
            "cdn": {
                "cdnType": cdn_type,
                "instanceNo": self.instance_no + 1,
                "profileId": 1000,
                "cdnDomain": domain,
                "statusName": "RUNNING",
            },
            "record": record,
            "publishUrl": "rtmp://rtmp-ls2-k1.video.media.ntruss.com:8080/relay",
            "streamKey": format!("sk-{}", self.spec.id),
            "envType": "REAL",
            "createdTime": self.created_time,
        })
    }
}

#[derive(Clone, Debug)]
struct Transfer {
    start: i64,
    finish: i64,
    fails: bool,
    bucket: String,
    file_path: String,
}

#[derive(Clone, Debug)]
struct RecordState {
    id: i64,
    channel_id: String,
    kind: FileKind,
    record_seq: i64,
    stream_seq: i64,
    begin: i64,
    created: i64,
    should_delete: i64,
    /// Recording stopped (stopRecord or stream end).
    ended: Option<i64>,
    /// End of `PROCESSING`, fixed when the recording ends.
    processed: Option<i64>,
    processing_fails: bool,
    /// Upload target for `AUTO_UPLOAD` channels, fixed when the recording starts.
    auto_upload: Option<(String, String)>,
    auto_transfer_fails: bool,
    transfer: Option<Transfer>,
    file_name: String,
    upload_path: String,
}

impl RecordState {
    fn status_at(&self, now: i64) -> RecordStatus {
        let (Some(_), Some(processed)) = (self.ended, self.processed) else {
            return RecordStatus::Recording;
        };
        let expired = now >= self.should_delete;
        if now < processed {
            return RecordStatus::Processing;
        }
        if self.processing_fails {
            return if expired {
                RecordStatus::Deleted
            } else {
                RecordStatus::ProcessingFail
            };
        }
        match &self.transfer {
            Some(t) if now >= t.start => {
                if now < t.finish {
                    RecordStatus::Transfer
                } else if !t.fails {
                    RecordStatus::TransferFinish
                } else if expired {
                    RecordStatus::Deleted
                } else {
                    RecordStatus::TransferFail
                }
            }
            _ if expired => RecordStatus::Deleted,
            _ => RecordStatus::TransferReady,
        }
    }

    fn shift(&mut self, ms: i64) {
        self.begin -= ms;
        self.created -= ms;
        self.should_delete -= ms;
        for t in [&mut self.ended, &mut self.processed].into_iter().flatten() {
            *t -= ms;
        }
        if let Some(t) = &mut self.transfer {
            t.start -= ms;
            t.finish -= ms;
        }
    }

    fn wire(&self, now: i64) -> model::Record {
        let status = self.status_at(now);
        let object_storage_url = match (&status, &self.transfer) {
            (RecordStatus::TransferFinish, Some(t)) => {
                let dir = t.file_path.trim_matches('/');
                let dir = if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                };
                Some(format!(
                    "{OBJECT_STORAGE}/{}/{dir}{}/{}",
                    t.bucket, self.channel_id, self.file_name
                ))
            }
            _ => None,
        };
        let media_known = self.kind == FileKind::Hls || self.ended.is_some();
        let media = |v| if media_known { Some(v) } else { None };
        let resolution = match (self.kind, self.ended) {
            (FileKind::Hls, None) => "0x0",
            _ => "1920x1080",
        };
        model::Record {
            record_id: self.id,
            record_type: match self.kind {
                FileKind::Mp4 => "MP4".to_string(),
                FileKind::Hls => "HLS".to_string(),
            },
            channel_id: self.channel_id.clone(),
            status,
            record_seq: Some(self.record_seq),
            stream_seq: Some(self.stream_seq),
            record_begin_time: Some(self.begin),
            created_time: Some(self.created),
            should_delete_time: Some(self.should_delete),
            duration: self.ended.map(|e| (e - self.begin).max(0) / 1000),
            resolution: media_known.then(|| resolution.to_string()),
            file_name: Some(self.file_name.clone()),
            video_bitrate: media(299_008),
            video_frame_rate: media_known.then_some(30.0),
            audio_bitrate: media(128_000),
            audio_codec: media_known.then(|| "AAC".to_string()),
            upload_path: Some(self.upload_path.clone()),
            object_storage_url,
        }
    }
}

/// A page of the channel list.
pub(crate) struct ChannelListQuery {
    pub(crate) page_no: u32,
    pub(crate) page_size: u32,
    pub(crate) status: Option<ChannelStatus>,
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
}

/// The whole emulated service.
pub(crate) struct State {
    /// Gateway clock minus real time, in milliseconds.
    pub(crate) clock_offset_ms: i64,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) behaviour: Behaviour,
    pub(crate) counters: Counters,
    /// Every API request, in order (bounded).
    pub(crate) calls: CallLog,
    pub(crate) faults: FaultTable,
    channels: Vec<ChannelState>,
    index: HashMap<String, usize>,
    records: BTreeMap<i64, RecordState>,
    next_record_id: i64,
    next_record_seq: i64,
    next_stream_seq: i64,
    next_instance_no: i64,
}

impl State {
    pub(crate) fn new(lifecycle: Lifecycle, behaviour: Behaviour) -> Self {
        State {
            clock_offset_ms: 0,
            lifecycle,
            behaviour,
            counters: Counters::default(),
            calls: CallLog::default(),
            faults: FaultTable::default(),
            channels: Vec::new(),
            index: HashMap::new(),
            records: BTreeMap::new(),
            next_record_id: FIRST_RECORD_ID,
            next_record_seq: FIRST_RECORD_SEQ,
            next_stream_seq: FIRST_STREAM_SEQ,
            next_instance_no: 10_000,
        }
    }

    /// The gateway clock: real time plus the configured offset, in epoch milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.clock_offset_ms
    }

    fn channel_index(&self, id: &str) -> Result<usize, ControlError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| ControlError::UnknownChannel(id.to_string()))
    }

    pub(crate) fn add_channel(&mut self, spec: ChannelSpec, now: i64) -> Result<(), ControlError> {
        if spec.id.trim().is_empty() || spec.id.contains(['/', '?', '#', ' ']) {
            return Err(ControlError::InvalidChannel(format!(
                "channel id {:?} must be non-empty and contain no '/', '?', '#' or spaces",
                spec.id
            )));
        }
        if self.index.contains_key(&spec.id) {
            return Err(ControlError::DuplicateChannel(spec.id));
        }
        let live = spec.status.is_live();
        let id = spec.id.clone();
        self.next_instance_no += 2;
        self.channels.push(ChannelState {
            status: spec.status.clone(),
            spec,
            instance_no: self.next_instance_no,
            created_time: now,
            stream_seq: 0,
            recording: None,
            last_recording: Vec::new(),
            record_ids: Vec::new(),
        });
        self.index.insert(id.clone(), self.channels.len() - 1);
        if live {
            self.begin_stream(self.channels.len() - 1, now);
        }
        Ok(())
    }

    /// Adds `n` `READY` channels named `{prefix}-00001`, … (skipping ids in use).
    pub(crate) fn add_channels(&mut self, n: usize, prefix: &str, now: i64) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        let mut i = 1usize;
        while ids.len() < n {
            let id = format!("{prefix}-{i:05}");
            i += 1;
            if self.index.contains_key(&id) {
                continue;
            }
            if self.add_channel(ChannelSpec::new(id.clone()), now).is_err() {
                // The prefix makes invalid ids; no later index will do better.
                break;
            }
            ids.push(id);
        }
        ids
    }

    pub(crate) fn go_live(&mut self, id: &str, now: i64) -> Result<(), ControlError> {
        let i = self.channel_index(id)?;
        if !self.channels[i].status.is_live() {
            self.channels[i].status = ChannelStatus::Publishing;
            self.begin_stream(i, now);
        }
        Ok(())
    }

    pub(crate) fn go_offline(&mut self, id: &str, now: i64) -> Result<(), ControlError> {
        let i = self.channel_index(id)?;
        if self.channels[i].status.is_live() {
            self.end_recording(i, now);
            self.channels[i].status = ChannelStatus::Ready;
        }
        Ok(())
    }

    /// Moves every stored time `ms` into the past: the same as `ms` passing.
    pub(crate) fn advance(&mut self, ms: i64) {
        for c in &mut self.channels {
            c.created_time -= ms;
        }
        for r in self.records.values_mut() {
            r.shift(ms);
        }
    }

    /// A publish session begins: new `streamSeq`, and `immediateOnAir` records by itself.
    fn begin_stream(&mut self, i: usize, now: i64) {
        self.next_stream_seq += 1;
        self.channels[i].stream_seq = self.next_stream_seq;
        let c = &self.channels[i];
        if c.spec.immediate_on_air && c.spec.record_type != RecordType::NoRecord {
            self.begin_recording(i, now);
        }
    }

    fn begin_recording(&mut self, i: usize, now: i64) -> Vec<i64> {
        let channel_id = self.channels[i].spec.id.clone();
        let outcome = self
            .faults
            .take_record_fault(Operation::StartRecord, Some(&channel_id));
        self.next_record_seq += 1;
        let record_seq = self.next_record_seq;
        let c = &self.channels[i];
        let stream_seq = c.stream_seq;
        let auto_upload = (c.spec.record_type == RecordType::AutoUpload)
            .then(|| (c.spec.bucket.clone(), c.spec.file_path.clone()));
        let stamp = chrono_tz::Asia::Seoul
            .timestamp_millis_opt(now)
            .single()
            .map(|t| t.format("%Y%m%d%H%M").to_string())
            .unwrap_or_default();
        let retention = duration_ms(self.lifecycle.retention);
        let mut ids = Vec::new();
        for &kind in c.spec.format.files() {
            let id = self.next_record_id;
            self.next_record_id += 1;
            let (file_name, upload_path) = match kind {
                FileKind::Mp4 => {
                    let f = format!("{stream_seq}-{record_seq}-{stamp}.mp4");
                    let p = format!("live-station/record/{channel_id}/{f}");
                    (f, p)
                }
                FileKind::Hls => (
                    "bypass/playlist.m3u8".to_string(),
                    format!("live-station/record/{channel_id}/bypass/{record_seq}"),
                ),
            };
            self.records.insert(
                id,
                RecordState {
                    id,
                    channel_id: channel_id.clone(),
                    kind,
                    record_seq,
                    stream_seq,
                    begin: now,
                    created: now,
                    should_delete: now.saturating_add(retention),
                    ended: None,
                    processed: None,
                    processing_fails: outcome == Some(Fault::ProcessingFail),
                    auto_upload: auto_upload.clone(),
                    auto_transfer_fails: outcome == Some(Fault::TransferFail),
                    transfer: None,
                    file_name,
                    upload_path,
                },
            );
            ids.push(id);
        }
        let c = &mut self.channels[i];
        c.record_ids.extend(&ids);
        c.recording = Some(ids.clone());
        self.counters.recordings_started += 1;
        ids
    }

    /// Ends the running recording (stopRecord or stream end); returns its record ids.
    fn end_recording(&mut self, i: usize, now: i64) -> Vec<i64> {
        let Some(ids) = self.channels[i].recording.take() else {
            return Vec::new();
        };
        let processing = duration_ms(self.lifecycle.processing);
        let transfer = duration_ms(self.lifecycle.transfer);
        for id in &ids {
            if let Some(r) = self.records.get_mut(id) {
                let processed = now.saturating_add(processing);
                r.ended = Some(now);
                r.processed = Some(processed);
                if let Some((bucket, file_path)) = r.auto_upload.clone() {
                    r.transfer = Some(Transfer {
                        start: processed,
                        finish: processed.saturating_add(transfer),
                        fails: r.auto_transfer_fails,
                        bucket,
                        file_path,
                    });
                }
            }
        }
        self.channels[i].last_recording = ids.clone();
        ids
    }

    fn wire_records(&self, ids: &[i64], now: i64) -> Vec<model::Record> {
        ids.iter()
            .filter_map(|id| self.records.get(id))
            .map(|r| r.wire(now))
            .collect()
    }

    fn listed(&self, r: &RecordState, now: i64) -> bool {
        r.status_at(now) != RecordStatus::Deleted
            || match self.behaviour.deleted_records_listed_for {
                None => true,
                Some(d) => now < r.should_delete.saturating_add(duration_ms(d)),
            }
    }

    fn api_channel(&self, id: &str) -> Result<usize, LiveStationError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| LiveStationError::not_found(self.behaviour.not_found_http, "channel"))
    }

    /// `GET /channels`: (total matching, the requested page).
    pub(crate) fn list_channels(
        &self,
        q: &ChannelListQuery,
        region: Region,
    ) -> (usize, Vec<Value>) {
        let matching: Vec<&ChannelState> = self
            .channels
            .iter()
            .filter(|c| q.status.as_ref().is_none_or(|s| &c.status == s))
            .filter(|c| {
                q.id.as_ref()
                    .is_none_or(|id| c.spec.id.contains(id.as_str()))
            })
            .filter(|c| {
                q.name.as_ref().is_none_or(|n| {
                    c.spec
                        .name
                        .as_deref()
                        .unwrap_or(&c.spec.id)
                        .contains(n.as_str())
                })
            })
            .collect();
        let skip = (q.page_no as usize - 1).saturating_mul(q.page_size as usize);
        let page = matching
            .iter()
            .skip(skip)
            .take(q.page_size as usize)
            .map(|c| c.json(region))
            .collect();
        (matching.len(), page)
    }

    /// `GET /channels/{id}`.
    pub(crate) fn channel_json(&self, id: &str, region: Region) -> Result<Value, LiveStationError> {
        Ok(self.channels[self.api_channel(id)?].json(region))
    }

    /// The channel as the API would describe it.
    pub(crate) fn channel(&self, id: &str) -> Option<model::Channel> {
        self.index.get(id).map(|&i| self.channels[i].wire())
    }

    /// `PUT /channels/{id}/startRecord`.
    pub(crate) fn start_record(
        &mut self,
        id: &str,
        now: i64,
    ) -> Result<Vec<model::Record>, LiveStationError> {
        let i = self.api_channel(id)?;
        let c = &self.channels[i];
        if c.is_recording() {
            self.counters.start_while_recording += 1;
            *self
                .counters
                .start_while_recording_by_channel
                .entry(id.to_string())
                .or_default() += 1;
            return match &self.behaviour.start_while_recording {
                WhileRecording::Reject { error } => Err(error.clone()),
                WhileRecording::ReturnCurrent => {
                    let ids = c.recording.clone().unwrap_or_default();
                    Ok(self.start_answer(self.wire_records(&ids, now)))
                }
            };
        }
        if !c.status.is_live() {
            return Err(self.behaviour.start_not_publishing.clone());
        }
        if c.spec.record_type == RecordType::NoRecord {
            return Err(self.behaviour.start_no_record.clone());
        }
        let ids = self.begin_recording(i, now);
        Ok(self.start_answer(self.wire_records(&ids, now)))
    }

    fn start_answer(&self, mut records: Vec<model::Record>) -> Vec<model::Record> {
        if !self.behaviour.start_response_includes_should_delete_time {
            for r in &mut records {
                r.should_delete_time = None;
            }
        }
        records
    }

    /// `PUT /channels/{id}/stopRecord`.
    pub(crate) fn stop_record(
        &mut self,
        id: &str,
        now: i64,
    ) -> Result<Vec<model::Record>, LiveStationError> {
        let i = self.api_channel(id)?;
        if self.channels[i].is_recording() {
            let ids = self.end_recording(i, now);
            return Ok(self.wire_records(&ids, now));
        }
        match &self.behaviour.stop_while_idle {
            WhileIdle::Reject { error } => Err(error.clone()),
            WhileIdle::ReturnLatest => Ok(self.wire_records(&self.channels[i].last_recording, now)),
        }
    }

    /// `GET /channels/{id}/records`.
    pub(crate) fn list_records(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Vec<model::Record>, LiveStationError> {
        let i = self.api_channel(id)?;
        Ok(self.channels[i]
            .record_ids
            .iter()
            .filter_map(|rid| self.records.get(rid))
            .filter(|r| self.listed(r, now))
            .map(|r| r.wire(now))
            .collect())
    }

    /// `GET /channels/{id}/records/{recordId}`.
    pub(crate) fn record(
        &self,
        id: &str,
        record_id: i64,
        now: i64,
    ) -> Result<model::Record, LiveStationError> {
        self.api_channel(id)?;
        self.records
            .get(&record_id)
            .filter(|r| r.channel_id == id && self.listed(r, now))
            .map(|r| r.wire(now))
            .ok_or_else(|| LiveStationError::not_found(self.behaviour.not_found_http, "record"))
    }

    /// `POST /buckets/{bucket}/upload`: all records or none.
    pub(crate) fn upload(
        &mut self,
        bucket: &str,
        record_ids: &[i64],
        access_control: &str,
        now: i64,
    ) -> Result<Vec<model::Record>, LiveStationError> {
        if record_ids.is_empty() {
            return Err(LiveStationError::new(
                400,
                250011,
                "NEED_VALUE",
                "recordIds must has a valid value",
            ));
        }
        if !matches!(access_control, "PRIVATE" | "PUBLIC_READ") {
            return Err(LiveStationError::invalid_format("accessControl"));
        }
        for id in record_ids {
            let r = self
                .records
                .get(id)
                .filter(|r| self.listed(r, now))
                .ok_or_else(|| {
                    LiveStationError::not_found(self.behaviour.not_found_http, "record")
                })?;
            if !r.status_at(now).is_uploadable() {
                return Err(LiveStationError::not_available("record"));
            }
        }
        let first_channel = self
            .records
            .get(&record_ids[0])
            .map(|r| r.channel_id.clone());
        let fails = self
            .faults
            .take_record_fault(Operation::Upload, first_channel.as_deref())
            == Some(Fault::TransferFail);
        let transfer = duration_ms(self.lifecycle.transfer);
        for id in record_ids {
            if let Some(r) = self.records.get_mut(id) {
                r.transfer = Some(Transfer {
                    start: now,
                    finish: now.saturating_add(transfer),
                    fails,
                    bucket: bucket.to_string(),
                    file_path: String::new(),
                });
            }
        }
        Ok(self.wire_records(record_ids, now))
    }

    /// Every record of one channel (or all channels), as the API would describe it now,
    /// including deleted ones no longer listed.
    pub(crate) fn records(&self, channel_id: Option<&str>, now: i64) -> Vec<model::Record> {
        self.records
            .values()
            .filter(|r| channel_id.is_none_or(|c| r.channel_id == c))
            .map(|r| r.wire(now))
            .collect()
    }
}

/// Milliseconds of a `Duration`, saturating.
pub(crate) fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: i64 = 1_755_151_200_000;

    fn state() -> State {
        State::new(
            Lifecycle {
                processing: Duration::from_secs(2),
                transfer: Duration::from_secs(3),
                retention: Duration::from_secs(3 * 24 * 3600),
            },
            Behaviour::default(),
        )
    }

    fn status(s: &State, id: &str, now: i64) -> Vec<RecordStatus> {
        s.records(Some(id), now)
            .into_iter()
            .map(|r| r.status)
            .collect()
    }

    #[test]
    fn auto_upload_record_goes_through_processing_and_transfer_to_finish_with_url() {
        let mut s = state();
        s.add_channel(ChannelSpec::new("a").live(), T0).unwrap();
        let started = s.start_record("a", T0).unwrap();
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].record_id, FIRST_RECORD_ID);
        assert_eq!(started[0].duration, None);
        s.stop_record("a", T0 + 61_000).unwrap();
        let end = T0 + 61_000;
        assert_eq!(status(&s, "a", end), [RecordStatus::Processing]);
        assert_eq!(status(&s, "a", end + 2_000), [RecordStatus::Transfer]);
        assert_eq!(status(&s, "a", end + 4_999), [RecordStatus::Transfer]);
        let done = s.records(Some("a"), end + 5_000);
        assert_eq!(done[0].status, RecordStatus::TransferFinish);
        assert_eq!(done[0].duration, Some(61));
        let url = done[0].object_storage_url.clone().unwrap();
        assert!(url.starts_with("https://"), "{url}");
        assert!(url.contains("lsrecd-emulator/livestation/a/"), "{url}");
        // Uploaded files are not deleted by retention.
        let later = T0 + 10 * 24 * 3600 * 1000;
        assert_eq!(status(&s, "a", later), [RecordStatus::TransferFinish]);
    }

    #[test]
    fn manual_upload_record_waits_ready_then_uploads_or_is_deleted_after_retention() {
        let mut s = state();
        let spec = ChannelSpec::new("m")
            .live()
            .record_type(RecordType::ManualUpload);
        s.add_channel(spec, T0).unwrap();
        s.start_record("m", T0).unwrap();
        s.stop_record("m", T0 + 1_000).unwrap();
        let ready = T0 + 3_000;
        assert_eq!(status(&s, "m", ready), [RecordStatus::TransferReady]);
        let sdt = s.records(Some("m"), ready)[0].should_delete_time.unwrap();
        assert_eq!(sdt, T0 + 3 * 24 * 3600 * 1000);
        assert_eq!(status(&s, "m", sdt - 1), [RecordStatus::TransferReady]);
        assert_eq!(status(&s, "m", sdt), [RecordStatus::Deleted]);

        let id = s.records(Some("m"), ready)[0].record_id;
        let up = s.upload("bucket-b", &[id], "PRIVATE", ready).unwrap();
        assert_eq!(up[0].status, RecordStatus::Transfer);
        let r = &s.records(Some("m"), ready + 3_000)[0];
        assert_eq!(r.status, RecordStatus::TransferFinish);
        assert!(
            r.object_storage_url
                .as_deref()
                .unwrap()
                .contains("/bucket-b/")
        );
    }

    #[test]
    fn upload_of_a_record_not_ready_is_refused_and_changes_nothing() {
        let mut s = state();
        let spec = ChannelSpec::new("m")
            .live()
            .record_type(RecordType::ManualUpload);
        s.add_channel(spec, T0).unwrap();
        let id = s.start_record("m", T0).unwrap()[0].record_id;
        let e = s.upload("b", &[id], "PRIVATE", T0 + 10).unwrap_err();
        assert_eq!((e.http, e.code), (400, 250005));
        assert_eq!(
            s.upload("b", &[id + 99], "PRIVATE", T0).unwrap_err().code,
            250004
        );
        assert_eq!(s.upload("b", &[], "PRIVATE", T0).unwrap_err().code, 250011);
        assert_eq!(status(&s, "m", T0 + 10), [RecordStatus::Recording]);
    }

    #[test]
    fn format_all_makes_two_records_of_one_recording() {
        let mut s = state();
        s.add_channel(ChannelSpec::new("x").live().format(RecordFormat::All), T0)
            .unwrap();
        let recs = s.start_record("x", T0).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].record_type, "MP4");
        assert_eq!(recs[1].record_type, "HLS");
        assert_eq!(recs[0].record_seq, recs[1].record_seq);
        assert_eq!(recs[0].stream_seq, recs[1].stream_seq);
        assert_ne!(recs[0].record_id, recs[1].record_id);
    }

    #[test]
    fn going_offline_ends_the_recording_like_stop_record() {
        let mut s = state();
        s.add_channel(ChannelSpec::new("a").live(), T0).unwrap();
        s.start_record("a", T0).unwrap();
        s.go_offline("a", T0 + 5_000).unwrap();
        let c = s.channel("a").unwrap();
        assert!(!c.is_recording);
        assert_eq!(c.channel_status, ChannelStatus::Ready);
        assert_eq!(status(&s, "a", T0 + 5_000), [RecordStatus::Processing]);
    }

    #[test]
    fn immediate_on_air_channel_records_by_itself_each_time_it_goes_live() {
        let mut s = state();
        s.add_channel(ChannelSpec::new("i").immediate_on_air(true), T0)
            .unwrap();
        assert!(s.records(Some("i"), T0).is_empty());
        s.go_live("i", T0).unwrap();
        assert!(s.channel("i").unwrap().is_recording);
        s.go_offline("i", T0 + 1_000).unwrap();
        s.go_live("i", T0 + 2_000).unwrap();
        let recs = s.records(Some("i"), T0 + 2_000);
        assert_eq!(recs.len(), 2);
        assert_ne!(recs[0].stream_seq, recs[1].stream_seq);
        assert_eq!(s.counters.start_while_recording, 0);
    }

    #[test]
    fn record_ids_increase_and_are_never_reused() {
        let mut s = state();
        s.add_channel(ChannelSpec::new("a").live(), T0).unwrap();
        let mut seen = Vec::new();
        for k in 0..3 {
            seen.push(s.start_record("a", T0 + k).unwrap()[0].record_id);
            s.stop_record("a", T0 + k).unwrap();
        }
        assert_eq!(seen, [27_000, 27_001, 27_002]);
    }

    #[test]
    fn duplicate_start_is_counted_whatever_the_answer() {
        let mut s = state();
        s.add_channel(ChannelSpec::new("a").live(), T0).unwrap();
        s.start_record("a", T0).unwrap();
        assert_eq!(s.start_record("a", T0).unwrap_err().code, 250005);
        s.behaviour.start_while_recording = WhileRecording::ReturnCurrent;
        let again = s.start_record("a", T0).unwrap();
        assert_eq!(again[0].record_id, FIRST_RECORD_ID);
        assert_eq!(s.counters.start_while_recording, 2);
        assert_eq!(s.records(Some("a"), T0).len(), 1);
    }

    #[test]
    fn advance_ages_records_as_if_time_had_passed() {
        let mut s = state();
        s.add_channel(ChannelSpec::new("a").live(), T0).unwrap();
        s.start_record("a", T0).unwrap();
        s.stop_record("a", T0).unwrap();
        s.advance(10_000);
        assert_eq!(status(&s, "a", T0), [RecordStatus::TransferFinish]);
        assert_eq!(
            s.records(Some("a"), T0)[0].record_begin_time,
            Some(T0 - 10_000)
        );
    }

    #[test]
    fn deleted_records_leave_the_list_after_the_visibility_window() {
        let mut s = state();
        s.behaviour.deleted_records_listed_for = Some(Duration::from_secs(60));
        let spec = ChannelSpec::new("m")
            .live()
            .record_type(RecordType::ManualUpload);
        s.add_channel(spec, T0).unwrap();
        let id = s.start_record("m", T0).unwrap()[0].record_id;
        s.stop_record("m", T0).unwrap();
        let sdt = T0 + 3 * 24 * 3600 * 1000;
        assert_eq!(s.list_records("m", sdt).unwrap().len(), 1);
        assert!(s.record("m", id, sdt + 59_999).is_ok());
        assert!(s.list_records("m", sdt + 60_000).unwrap().is_empty());
        assert_eq!(s.record("m", id, sdt + 60_000).unwrap_err().code, 250004);
    }

    #[test]
    fn mp4_file_name_follows_the_documented_pattern_in_korean_time() {
        let mut s = state();
        s.add_channel(ChannelSpec::new("a").live(), T0).unwrap();
        let r = &s.start_record("a", T0).unwrap()[0];
        // 2025-08-14T06:00:00Z is 15:00 in Seoul.
        let name = r.file_name.as_deref().unwrap();
        assert!(name.ends_with("-202508141500.mp4"), "{name}");
        assert_eq!(
            r.upload_path.as_deref(),
            Some(format!("live-station/record/a/{name}").as_str())
        );
    }
}
