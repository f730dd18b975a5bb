//! The Live Station JSON shapes lsrecd reads (the emulator's control API also writes them; its
//! Live Station answers spell their fields on their own).
//!
//! Parsing is tolerant by design: unknown fields are ignored, optional fields may be missing,
//! numbers may arrive as strings, unknown enum values are kept as `Unknown(..)` rather than
//! rejected, and `objectStorageUrl: "-"` means "not uploaded" (`None`). A single bad entry in a
//! list is skipped and reported, never fatal for the whole response.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant,)+
            /// A value this version of lsrecd does not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// Parses a wire value; never fails.
            pub fn parse(s: &str) -> Self {
                match s {
                    $($wire $(| $alias)* => Self::$variant,)+
                    other => Self::Unknown(other.to_string()),
                }
            }

            /// The canonical wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Unknown(s) => s,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(match Loose::deserialize(d)? {
                    Loose::Text(s) => Self::parse(&s),
                    Loose::Other(Value::Null) => Self::Unknown(String::new()),
                    Loose::Other(other) => Self::Unknown(other.to_string()),
                })
            }
        }
    };
}

wire_enum!(
    /// `channelStatus`. Older documents spell the live state `PUBLISH`; both mean live.
    ChannelStatus {
        Creating => "CREATING",
        Ready => "READY",
        Publishing => "PUBLISHING" | "PUBLISH",
        Deleted => "DELETED",
        Block => "BLOCK",
        ForceBlock => "FORCE_BLOCK",
        ForceDeleted => "FORCE_DELETED",
    }
);

impl ChannelStatus {
    /// Whether a stream is coming in, the only state in which `startRecord` works.
    pub fn is_live(&self) -> bool {
        matches!(self, ChannelStatus::Publishing)
    }
}

wire_enum!(
    /// A record's `status`.
    RecordStatus {
        Recording => "RECORDING",
        Processing => "PROCESSING",
        ProcessingFail => "PROCESSING_FAIL",
        TransferReady => "TRANSFER_READY",
        Transfer => "TRANSFER",
        TransferFinish => "TRANSFER_FINISH",
        TransferFail => "TRANSFER_FAIL",
        Deleted => "DELETED",
    }
);

impl RecordStatus {
    /// Final for lsrecd: nothing more will happen to the record.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RecordStatus::TransferFinish | RecordStatus::ProcessingFail | RecordStatus::Deleted
        )
    }

    /// The upload API accepts only these states.
    pub fn is_uploadable(&self) -> bool {
        matches!(
            self,
            RecordStatus::TransferReady | RecordStatus::TransferFail
        )
    }
}

/// The `record` settings object of a channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordSettings {
    /// `NO_RECORD`, `AUTO_UPLOAD` or `MANUAL_UPLOAD`.
    #[serde(rename = "type")]
    pub upload_type: Option<String>,
    /// `MP4`, `HLS` or `ALL`.
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_control: Option<String>,
}

/// One channel, as returned by the channel list and channel info calls. It is read through
/// [`RawChannel`], the one definition of how a channel's fields are read.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub channel_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_name: Option<String>,
    pub channel_status: ChannelStatus,
    pub is_recording: bool,
    pub immediate_on_air: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordSettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawChannel::deserialize(d).map(|raw| raw.borrowed().to_channel())
    }
}

impl Channel {
    /// The channel's fields, borrowed.
    pub fn borrowed(&self) -> ChannelRef<'_> {
        ChannelRef {
            channel_id: &self.channel_id,
            channel_name: self.channel_name.as_deref(),
            channel_status: &self.channel_status,
            is_recording: self.is_recording,
            immediate_on_air: self.immediate_on_air,
            record: self.record.as_ref().map(|r| RecordSettingsRef {
                upload_type: r.upload_type.as_deref(),
                format: r.format.as_deref(),
                bucket_name: r.bucket_name.as_deref(),
                file_path: r.file_path.as_deref(),
                access_control: r.access_control.as_deref(),
            }),
            created_time: self.created_time,
        }
    }
}

/// A channel whose text is borrowed: from a [`ChannelPage`], or from a [`Channel`]. Comparing
/// one with the channel last seen costs no allocation; [`ChannelRef::to_channel`] makes a
/// channel of it when it is to be kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelRef<'a> {
    pub channel_id: &'a str,
    pub channel_name: Option<&'a str>,
    pub channel_status: &'a ChannelStatus,
    pub is_recording: bool,
    pub immediate_on_air: bool,
    pub record: Option<RecordSettingsRef<'a>>,
    pub created_time: Option<i64>,
}

/// [`RecordSettings`], borrowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecordSettingsRef<'a> {
    pub upload_type: Option<&'a str>,
    pub format: Option<&'a str>,
    pub bucket_name: Option<&'a str>,
    pub file_path: Option<&'a str>,
    pub access_control: Option<&'a str>,
}

impl ChannelRef<'_> {
    /// The channel, owned.
    pub fn to_channel(self) -> Channel {
        let text = |s: Option<&str>| s.map(str::to_owned);
        Channel {
            channel_id: self.channel_id.to_owned(),
            channel_name: text(self.channel_name),
            channel_status: self.channel_status.clone(),
            is_recording: self.is_recording,
            immediate_on_air: self.immediate_on_air,
            record: self.record.map(|r| RecordSettings {
                upload_type: text(r.upload_type),
                format: text(r.format),
                bucket_name: text(r.bucket_name),
                file_path: text(r.file_path),
                access_control: text(r.access_control),
            }),
            created_time: self.created_time,
        }
    }
}

impl PartialEq<ChannelRef<'_>> for Channel {
    fn eq(&self, other: &ChannelRef<'_>) -> bool {
        self.borrowed() == *other
    }
}

/// How a channel is read, tolerantly, its text borrowed from the body where it has no escapes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawChannel<'a> {
    #[serde(borrow, deserialize_with = "lenient_id")]
    channel_id: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "lenient_text")]
    channel_name: Option<Cow<'a, str>>,
    #[serde(default = "unknown_channel_status")]
    channel_status: ChannelStatus,
    #[serde(default, deserialize_with = "lenient_bool")]
    is_recording: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    immediate_on_air: bool,
    #[serde(borrow, default, deserialize_with = "lenient_record_settings")]
    record: Option<RawRecordSettings<'a>>,
    #[serde(default, deserialize_with = "lenient_i64")]
    created_time: Option<i64>,
}

/// How the record settings are read: as [`RecordSettings`] reads them, borrowed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRecordSettings<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "lenient_text")]
    upload_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_text")]
    format: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_text")]
    bucket_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_text")]
    file_path: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient_text")]
    access_control: Option<Cow<'a, str>>,
}

impl RawChannel<'_> {
    fn borrowed(&self) -> ChannelRef<'_> {
        ChannelRef {
            channel_id: &self.channel_id,
            channel_name: self.channel_name.as_deref(),
            channel_status: &self.channel_status,
            is_recording: self.is_recording,
            immediate_on_air: self.immediate_on_air,
            record: self.record.as_ref().map(|r| RecordSettingsRef {
                upload_type: r.upload_type.as_deref(),
                format: r.format.as_deref(),
                bucket_name: r.bucket_name.as_deref(),
                file_path: r.file_path.as_deref(),
                access_control: r.access_control.as_deref(),
            }),
            created_time: self.created_time,
        }
    }
}

fn unknown_channel_status() -> ChannelStatus {
    ChannelStatus::Unknown(String::new())
}

/// One recording file known to Live Station. `record_id` comes from the key of `recordList`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(skip)]
    pub record_id: i64,
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub record_type: String,
    #[serde(default, deserialize_with = "lenient_string_or_empty")]
    pub channel_id: String,
    #[serde(default = "unknown_record_status")]
    pub status: RecordStatus,
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub record_seq: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub stream_seq: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub record_begin_time: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub created_time: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub should_delete_time: Option<i64>,
    /// Seconds; absent while recording.
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub resolution: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub file_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub video_bitrate: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient_f64",
        skip_serializing_if = "Option::is_none"
    )]
    pub video_frame_rate: Option<f64>,
    #[serde(
        default,
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub audio_bitrate: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub audio_codec: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_path: Option<String>,
    /// `None` while the API says `"-"` (not uploaded yet).
    #[serde(
        default,
        deserialize_with = "object_storage_url",
        serialize_with = "serialize_object_storage_url"
    )]
    pub object_storage_url: Option<String>,
}

fn unknown_record_status() -> RecordStatus {
    RecordStatus::Unknown(String::new())
}

/// A page of the channel list: `{"content":[...],"total":N}`.
///
/// The channels' text is kept in one buffer, so that a page of a hundred channels costs a few
/// allocations rather than several per channel; [`ChannelPage::channels`] lends them out as
/// [`ChannelRef`]s. A listing of 10,000 channels is read every poll, and almost all of it is
/// what the engine already holds.
#[derive(Clone, Default)]
pub struct ChannelPage {
    text: String,
    entries: Vec<Entry>,
    /// `total` as the API gave it: the number of all matching channels.
    pub total: Option<u64>,
    /// Entries that could not be read, with the reason; the rest of the page is kept.
    pub skipped: Vec<String>,
    /// The digest of the body the page was read from, when it was read from one.
    pub digest: Option<PageDigest>,
}

/// The SHA-256 of a channel page's body. A page whose body has the digest of the same page of
/// the last listing holds what that page held, to the byte: the engine does not read it again
/// (see `ChannelView::replay_page`). At rest, every page of a listing is such a page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PageDigest([u8; 32]);

impl PageDigest {
    /// The digest of `body`.
    pub fn of(body: &[u8]) -> PageDigest {
        use sha2::Digest as _;
        PageDigest(sha2::Sha256::digest(body).into())
    }
}

impl fmt::Debug for PageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageDigest(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A page of the channel list, as read by a caller that knew a digest for it.
#[derive(Clone, Debug, PartialEq)]
pub enum ListedPage {
    /// The page, read: its body's digest was not the one known.
    Read(ChannelPage),
    /// The body had the digest known, and was not read again.
    Unchanged,
}

/// Where a piece of text is in [`ChannelPage::text`].
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    end: usize,
}

/// A channel of a [`ChannelPage`], its text as spans of the page's buffer.
#[derive(Clone, Debug)]
struct Entry {
    channel_id: Span,
    channel_name: Option<Span>,
    channel_status: ChannelStatus,
    is_recording: bool,
    immediate_on_air: bool,
    /// `type`, `format`, `bucketName`, `filePath`, `accessControl`.
    record: Option<[Option<Span>; 5]>,
    created_time: Option<i64>,
}

impl ChannelPage {
    /// A page of these channels.
    pub fn from_channels<'a>(
        channels: impl IntoIterator<Item = &'a Channel>,
        total: Option<u64>,
    ) -> ChannelPage {
        let mut page = ChannelPage {
            total,
            ..ChannelPage::default()
        };
        for c in channels {
            page.push(c.borrowed());
        }
        page
    }

    /// Adds a channel at the end of the page.
    pub fn push(&mut self, c: ChannelRef<'_>) {
        let mut put = |s: &str| {
            let start = self.text.len();
            self.text.push_str(s);
            Span {
                start,
                end: self.text.len(),
            }
        };
        let channel_id = put(c.channel_id);
        let channel_name = c.channel_name.map(&mut put);
        let record = c.record.map(|r| {
            [
                r.upload_type,
                r.format,
                r.bucket_name,
                r.file_path,
                r.access_control,
            ]
            .map(|s| s.map(&mut put))
        });
        self.entries.push(Entry {
            channel_id,
            channel_name,
            channel_status: c.channel_status.clone(),
            is_recording: c.is_recording,
            immediate_on_air: c.immediate_on_air,
            record,
            created_time: c.created_time,
        });
    }

    /// The channels, in the order of the page.
    pub fn channels(&self) -> impl ExactSizeIterator<Item = ChannelRef<'_>> + '_ {
        let text = |s: Span| &self.text[s.start..s.end];
        self.entries.iter().map(move |e| ChannelRef {
            channel_id: text(e.channel_id),
            channel_name: e.channel_name.map(text),
            channel_status: &e.channel_status,
            is_recording: e.is_recording,
            immediate_on_air: e.immediate_on_air,
            record: e.record.map(
                |[upload_type, format, bucket_name, file_path, access_control]| RecordSettingsRef {
                    upload_type: upload_type.map(text),
                    format: format.map(text),
                    bucket_name: bucket_name.map(text),
                    file_path: file_path.map(text),
                    access_control: access_control.map(text),
                },
            ),
            created_time: e.created_time,
        })
    }

    /// The channels, owned.
    pub fn to_channels(&self) -> Vec<Channel> {
        self.channels().map(ChannelRef::to_channel).collect()
    }

    /// How many channels the page holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the page holds no channel (it may still have skipped entries).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What tells whether a listing is complete.
    pub fn shape(&self) -> PageShape {
        PageShape {
            channels: self.len(),
            skipped: self.skipped.len(),
            total: self.total,
        }
    }
}

/// The counts of a channel page that decide whether a listing is complete (see
/// `ListingProgress::count`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageShape {
    /// Channels read.
    pub channels: usize,
    /// Entries that could not be read.
    pub skipped: usize,
    /// `total` as the API gave it.
    pub total: Option<u64>,
}

impl PartialEq for ChannelPage {
    fn eq(&self, other: &ChannelPage) -> bool {
        self.channels().eq(other.channels())
            && self.total == other.total
            && self.skipped == other.skipped
    }
}

impl fmt::Debug for ChannelPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelPage")
            .field("channels", &self.channels().collect::<Vec<_>>())
            .field("total", &self.total)
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// Records from any record-bearing response, ordered by record id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordSet {
    pub records: Vec<Record>,
    /// Entries that could not be read, with the reason.
    pub skipped: Vec<String>,
}

/// The error object both the gateway and Live Station send: `{"error":{...}}`.
///
/// The gateway sends a 3-digit string `errorCode` with `message` and `details`; Live Station sends
/// a numeric (or string) code with `errorName`. Both are kept as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub error_code: Option<String>,
    pub message: Option<String>,
    pub error_name: Option<String>,
    /// `details` (gateway) or `detail` (standardised schema).
    pub details: Option<String>,
}

impl ErrorBody {
    /// Parses `{"error":{...}}`; `None` when the body is not that shape.
    pub fn parse(body: &[u8]) -> Option<ErrorBody> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let e = v.get("error")?.as_object()?;
        let text = |k: &str| e.get(k).and_then(value_to_text);
        Some(ErrorBody {
            error_code: text("errorCode"),
            message: text("message"),
            error_name: text("errorName"),
            details: text("details").or_else(|| text("detail")),
        })
    }

    /// Live Station's own errors carry `errorName`; the gateway's do not.
    pub fn is_from_live_station(&self) -> bool {
        self.error_name.is_some()
    }
}

/// A parse failure of a whole response body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedBody(pub String);

fn value_to_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn json(body: &[u8]) -> Result<Value, MalformedBody> {
    serde_json::from_slice(body).map_err(|e| MalformedBody(format!("not JSON: {e}")))
}

/// Parses `GET /channels` (one page).
///
/// A well-formed page is read in one pass, without building a JSON tree (the channel list is
/// most of what lsrecd parses: 10,000 channels every poll). A page with an entry that does not
/// read as a channel is read again, each entry kept as raw text and read into a [`Channel`] on
/// its own; an entry that does not read that way either, or a body whose shape is unexpected,
/// goes through the tolerant tree-based reading, so every path skips and reports the same
/// entries.
pub fn parse_channel_page(body: &[u8]) -> Result<ChannelPage, MalformedBody> {
    /// The usual page, read in one pass: every entry a channel.
    #[derive(Deserialize)]
    struct Whole<'a> {
        #[serde(borrow, default)]
        content: Option<Vec<RawChannel<'a>>>,
        #[serde(default)]
        total: Option<Value>,
    }
    /// A page with an entry that is not a channel: the entries are read one by one.
    #[derive(Deserialize)]
    struct Shallow<'a> {
        #[serde(borrow, default)]
        content: Option<Vec<&'a serde_json::value::RawValue>>,
        #[serde(default)]
        total: Option<Value>,
    }
    // Checked as UTF-8 once, rather than string by string as `from_slice` does.
    let Ok(text) = std::str::from_utf8(body) else {
        return parse_channel_page_tree(body);
    };
    if let Ok(whole) = serde_json::from_str::<Whole<'_>>(text) {
        let mut page = ChannelPage {
            total: whole.total.as_ref().and_then(lenient_u64_value),
            // The channels' text is a part of the body's.
            text: String::with_capacity(text.len() / 4),
            ..ChannelPage::default()
        };
        let content = whole.content.unwrap_or_default();
        page.entries.reserve_exact(content.len());
        for (i, c) in content.into_iter().enumerate() {
            page.keep(i, Ok::<_, serde_json::Error>(c));
        }
        return Ok(page);
    }
    let Ok(shallow) = serde_json::from_str::<Shallow<'_>>(text) else {
        return parse_channel_page_tree(body);
    };
    let mut page = ChannelPage {
        total: shallow.total.as_ref().and_then(lenient_u64_value),
        ..ChannelPage::default()
    };
    for (i, item) in shallow.content.unwrap_or_default().into_iter().enumerate() {
        match serde_json::from_str::<RawChannel<'_>>(item.get()) {
            Ok(c) => page.keep(i, Ok::<_, serde_json::Error>(c)),
            Err(_) => match serde_json::from_str::<Value>(item.get()) {
                Ok(v) => page.keep(i, RawChannel::deserialize(&v)),
                Err(e) => page.keep(i, Err(e)),
            },
        }
    }
    Ok(page)
}

/// [`parse_channel_page`] through a JSON tree: the reading of bodies of an unexpected shape,
/// which names what is wrong.
fn parse_channel_page_tree(body: &[u8]) -> Result<ChannelPage, MalformedBody> {
    let v = json(body)?;
    let content = match v.get("content") {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => &Vec::new(),
        Some(other) => {
            return Err(MalformedBody(format!(
                "`content` is {}, expected an array of channels",
                kind(other)
            )));
        }
    };
    let mut page = ChannelPage {
        total: v.get("total").and_then(lenient_u64_value),
        ..ChannelPage::default()
    };
    for (i, item) in content.iter().enumerate() {
        page.keep(i, RawChannel::deserialize(item));
    }
    Ok(page)
}

impl ChannelPage {
    /// Keeps entry `i` of the page if it read as a channel with an id; else notes why not.
    fn keep(&mut self, i: usize, read: Result<RawChannel<'_>, impl fmt::Display>) {
        match read {
            Ok(c) if !c.channel_id.is_empty() => self.push(c.borrowed()),
            Ok(_) => self.skipped.push(format!("content[{i}]: empty channelId")),
            Err(e) => self.skipped.push(format!("content[{i}]: {e}")),
        }
    }
}

/// Parses `GET /channels/{id}`: `{"content":{...channel...}}`.
pub fn parse_channel(body: &[u8]) -> Result<Channel, MalformedBody> {
    let v = json(body)?;
    let content = v
        .get("content")
        .ok_or_else(|| MalformedBody("no `content` in channel response".into()))?;
    let c = Channel::deserialize(content).map_err(|e| MalformedBody(format!("channel: {e}")))?;
    if c.channel_id.is_empty() {
        return Err(MalformedBody("channel without channelId".into()));
    }
    Ok(c)
}

/// Parses any record-bearing response: `startRecord`, `stopRecord`, the records list
/// (`content.recordList.{id}`) and record detail (`content.{id}`, no wrapper).
pub fn parse_records(body: &[u8]) -> Result<RecordSet, MalformedBody> {
    let v = json(body)?;
    let content = match v.get("content") {
        Some(c) => c,
        None => return Err(MalformedBody("no `content` in records response".into())),
    };
    // `recordList` is an object keyed by record id; an array of records that carry their
    // `recordId` is read too (the reference is loose about it).
    let entries: Vec<(String, &Value)> = match content {
        Value::Null => return Ok(RecordSet::default()),
        Value::Object(obj) => match obj.get("recordList") {
            Some(Value::Object(list)) => list.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Some(Value::Null) => return Ok(RecordSet::default()),
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let id = v.get("recordId").and_then(lenient_i64_value).map_or_else(
                        || format!("recordList[{i}] without recordId"),
                        |id| id.to_string(),
                    );
                    (id, v)
                })
                .collect(),
            Some(other) => {
                return Err(MalformedBody(format!(
                    "`recordList` is {}, expected an object keyed by record id",
                    kind(other)
                )));
            }
            None => obj.iter().map(|(k, v)| (k.clone(), v)).collect(),
        },
        other => {
            return Err(MalformedBody(format!(
                "`content` is {}, expected an object",
                kind(other)
            )));
        }
    };
    let mut set = RecordSet::default();
    for (key, item) in entries {
        let Ok(id) = key.trim().parse::<i64>() else {
            set.skipped
                .push(format!("record key {key:?} is not a record id"));
            continue;
        };
        match Record::deserialize(item) {
            Ok(mut r) => {
                r.record_id = id;
                set.records.push(r);
            }
            Err(e) => set.skipped.push(format!("record {id}: {e}")),
        }
    }
    set.records.sort_by_key(|r| r.record_id);
    Ok(set)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn lenient_u64_value(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(f64_to_u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_i64_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(f64_to_i64)),
        Value::String(s) => i64_of_text(s),
        _ => None,
    }
}

/// A whole number written as text, perhaps as a float.
fn i64_of_text(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().and_then(f64_to_i64))
}

/// A float that stands for a whole number, truncated; `None` when it is not a number or does
/// not fit (`as` would quietly make NaN 0, -3 zero and 1e300 `u64::MAX`).
fn f64_to_u64(f: f64) -> Option<u64> {
    // 2^64: the first value that does not fit.
    (f.is_finite() && (0.0..18_446_744_073_709_551_616.0).contains(&f)).then_some(f as u64)
}

/// As [`f64_to_u64`], for `i64`.
fn f64_to_i64(f: f64) -> Option<i64> {
    // -2^63 fits, 2^63 does not.
    (f.is_finite() && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f))
        .then_some(f as i64)
}

/// A JSON value read for a lenient field: a string borrowed from the body where it has no
/// escapes, anything else as a [`Value`] (a number, a boolean or null costs no allocation). The
/// lenient readers below take one, so a lenient field costs no JSON tree of its own, and a
/// channel page is read without any.
enum Loose<'de> {
    Text(Cow<'de, str>),
    Other(Value),
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> de::Visitor<'de> for Any {
            type Value = Loose<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Loose<'de>, E> {
                Ok(Loose::Other(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other(Value::from(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other(Value::from(n)))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Loose<'de>, E> {
                Ok(Loose::Other(
                    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
                ))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Loose<'de>, E> {
                Ok(Loose::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Loose<'de>, E> {
                Ok(Loose::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Loose<'de>, E> {
                Ok(Loose::Text(Cow::Owned(s)))
            }
            fn visit_unit<E>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Other(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Loose<'de>, E> {
                Ok(Loose::Other(Value::Null))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Loose<'de>, D::Error> {
                Loose::deserialize(d)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Loose<'de>, A::Error> {
                Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Loose::Other)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Loose<'de>, A::Error> {
                Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Loose::Other)
            }
        }
        d.deserialize_any(Any)
    }
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Text(s) => i64_of_text(&s),
        Loose::Other(v) => lenient_i64_value(&v),
    })
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Text(s) => s.trim().parse().ok(),
        Loose::Other(Value::Number(n)) => n.as_f64(),
        Loose::Other(_) => None,
    })
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Other(Value::Bool(b)) => b,
        Loose::Text(s) => {
            let s = s.trim();
            ["true", "y", "yes", "1"]
                .iter()
                .any(|yes| s.eq_ignore_ascii_case(yes))
        }
        Loose::Other(Value::Number(n)) => n.as_i64() == Some(1),
        Loose::Other(_) => false,
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(lenient_text(d)?.map(Cow::into_owned))
}

/// Text, or anything else written as JSON; null is none.
fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Text(s) => Some(s),
        Loose::Other(v) => value_to_text(&v).map(Cow::Owned),
    })
}

/// An id: text, or a number written as its digits; anything else is an error (the entry is
/// skipped).
fn lenient_id<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, str>, D::Error> {
    match Loose::deserialize(d)? {
        Loose::Text(s) => Ok(s),
        Loose::Other(Value::Number(n)) => Ok(Cow::Owned(n.to_string())),
        Loose::Other(other) => Err(de::Error::custom(format!(
            "channelId is {}, expected a string",
            kind(&other)
        ))),
    }
}

fn lenient_string_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient_string(d)?.unwrap_or_default())
}

/// The `record` settings: read when they are an object, else none.
fn lenient_record_settings<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<RawRecordSettings<'de>>, D::Error> {
    struct Settings;
    impl<'de> de::Visitor<'de> for Settings {
        type Value = Option<RawRecordSettings<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the record settings")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            RawRecordSettings::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Settings)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(Settings)
}

fn object_storage_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(lenient_string(d)?.filter(|s| {
        let s = s.trim();
        !s.is_empty() && s != "-"
    }))
}

fn serialize_object_storage_url<S: Serializer>(
    v: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_deref().unwrap_or("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FKR_FIXTURE: &str = include_str!("../../tests/fixtures/startRecord-response-fkr.json");

    #[test]
    fn documented_fkr_start_record_response_yields_both_records_with_retention_time() {
        let set = parse_records(FKR_FIXTURE.as_bytes()).unwrap();
        assert!(set.skipped.is_empty(), "{:?}", set.skipped);
        assert_eq!(set.records.len(), 2);
        let mp4 = &set.records[0];
        assert_eq!(mp4.record_id, 27195);
        assert_eq!(mp4.record_type, "MP4");
        assert_eq!(mp4.status, RecordStatus::Recording);
        assert_eq!(mp4.channel_id, "ls-20200313162828-G60tN");
        assert_eq!(mp4.should_delete_time, Some(1621843688000));
        assert_eq!(mp4.record_begin_time, Some(1621238888000));
        assert_eq!(mp4.duration, None);
        assert_eq!(mp4.object_storage_url, None);
        assert_eq!(mp4.resolution, None);
        let hls = &set.records[1];
        assert_eq!(hls.record_id, 27196);
        assert_eq!(hls.record_type, "HLS");
        assert_eq!(hls.resolution.as_deref(), Some("0x0"));
        assert_eq!(hls.video_frame_rate, Some(30.0));
        assert_eq!(hls.audio_codec.as_deref(), Some("AAC"));
    }

    #[test]
    fn record_round_trips_through_the_wire_shape_with_dash_for_no_url() {
        let set = parse_records(FKR_FIXTURE.as_bytes()).unwrap();
        let list: std::collections::BTreeMap<String, Value> = set
            .records
            .iter()
            .map(|r| (r.record_id.to_string(), serde_json::to_value(r).unwrap()))
            .collect();
        let body = serde_json::json!({ "content": { "recordList": list } });
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["content"]["recordList"]["27195"]["objectStorageUrl"], "-");
        let again = parse_records(body.to_string().as_bytes()).unwrap();
        assert_eq!(again.records, set.records);
    }

    #[test]
    fn record_detail_without_record_list_wrapper_is_read() {
        let body = br#"{"content":{"42":{"recordType":"MP4","channelId":"c","status":"TRANSFER_FINISH","objectStorageUrl":"https://x/y.mp4","duration":"61"}}}"#;
        let set = parse_records(body).unwrap();
        assert_eq!(set.records.len(), 1);
        assert_eq!(set.records[0].record_id, 42);
        assert!(set.records[0].status.is_final());
        assert_eq!(
            set.records[0].object_storage_url.as_deref(),
            Some("https://x/y.mp4")
        );
        assert_eq!(set.records[0].duration, Some(61));
    }

    #[test]
    fn unknown_status_is_kept_and_bad_entries_are_skipped_not_fatal() {
        let body = br#"{"content":{"recordList":{"1":{"status":"ARCHIVING","channelId":"c"},"x":{},"2":"oops"}}}"#;
        let set = parse_records(body).unwrap();
        assert_eq!(set.records.len(), 1);
        assert_eq!(
            set.records[0].status,
            RecordStatus::Unknown("ARCHIVING".into())
        );
        assert_eq!(set.skipped.len(), 2, "{:?}", set.skipped);
    }

    #[test]
    fn empty_record_list_variants_are_empty_sets() {
        for body in [
            &br#"{"content":{"recordList":{}}}"#[..],
            br#"{"content":{"recordList":null}}"#,
            br#"{"content":{"recordList":[]}}"#,
            br#"{"content":null}"#,
        ] {
            assert!(parse_records(body).unwrap().records.is_empty());
        }
        assert!(parse_records(b"<html>").is_err());
        assert!(parse_records(br#"{"content":{"recordList":"x"}}"#).is_err());
    }

    #[test]
    fn publish_and_publishing_both_mean_live_and_unknown_is_not_live() {
        assert!(ChannelStatus::parse("PUBLISH").is_live());
        assert!(ChannelStatus::parse("PUBLISHING").is_live());
        assert!(!ChannelStatus::parse("READY").is_live());
        let odd = ChannelStatus::parse("MAINTENANCE");
        assert!(!odd.is_live());
        assert_eq!(odd.as_str(), "MAINTENANCE");
    }

    #[test]
    fn channel_page_tolerates_string_numbers_missing_fields_and_bad_items() {
        let body = br#"{"content":[
            {"channelId":"a","channelStatus":"PUBLISH","isRecording":false,"immediateOnAir":true,"instanceNo":"123","createdTime":"1700000000000","record":{"type":"AUTO_UPLOAD","format":"ALL"}},
            {"channelId":"b"},
            {"channelName":"no id"},
            7
        ],"total":"4"}"#;
        let page = parse_channel_page(body).unwrap();
        assert_eq!(page.total, Some(4));
        let channels = page.to_channels();
        assert_eq!(channels.len(), 2);
        assert_eq!(page.skipped.len(), 2);
        let a = &channels[0];
        assert!(a.channel_status.is_live());
        assert!(a.immediate_on_air);
        assert_eq!(a.created_time, Some(1700000000000));
        assert_eq!(a.record.as_ref().unwrap().format.as_deref(), Some("ALL"));
        let b = &channels[1];
        assert_eq!(b.channel_status, ChannelStatus::Unknown(String::new()));
        assert!(!b.is_recording);
    }

    /// The one-pass reading of a page, the entry-by-entry one and the tree-based one read the
    /// same channels from every spelling the lenient fields accept.
    #[test]
    fn every_reading_of_a_page_finds_the_same_channels() {
        let entries = [
            r#"{"channelId":"plain","channelName":"Studio","channelStatus":"READY","isRecording":false,"immediateOnAir":false,"createdTime":1700000000000,"record":{"type":"AUTO_UPLOAD","format":"MP4","bucketName":"b","filePath":"/p","accessControl":"PRIVATE"}}"#,
            r#"{"channelId":"texts","channelName":"Stu\"dio \u00e9","isRecording":" Yes ","immediateOnAir":"1","createdTime":" 1.7e12 ","record":{"type":"NO_RECORD","format":null}}"#,
            r#"{"channelId":"numbers","channelName":12.5,"isRecording":1,"immediateOnAir":2,"createdTime":1.5,"record":{"type":3,"format":true}}"#,
            r#"{"channelId":"odd","channelName":[1,{"a":"b"}],"isRecording":null,"immediateOnAir":{"x":1},"createdTime":"soon","record":"AUTO_UPLOAD"}"#,
            r#"{"channelId":"odd-record","channelName":{"k":[true,null]},"record":[{"type":"MP4"}],"extra":{"deep":[1,2,{"x":"y"}]}}"#,
            r#"{"channelId":"null-record","channelName":null,"record":null,"createdTime":null}"#,
            r#"{"channelId":"twice","record":{"type":"AUTO_UPLOAD","type":"NO_RECORD"}}"#,
            r#"{"channelId":""}"#,
            r#"{"channelId":5}"#,
            r#"{"channelId":true}"#,
            r#""not a channel""#,
        ];
        let reads = |items: &[&str]| {
            let body = format!(
                r#"{{"content":[{}],"total":{}}}"#,
                items.join(","),
                items.len()
            );
            let fast = parse_channel_page(body.as_bytes()).expect("readable");
            let tree = parse_channel_page_tree(body.as_bytes()).expect("readable");
            assert_eq!(fast.to_channels(), tree.to_channels(), "{body}");
            assert_eq!(fast.total, tree.total);
            assert_eq!(fast.skipped.len(), tree.skipped.len(), "{:?}", fast.skipped);
            (fast.to_channels(), fast.skipped)
        };
        // Good entries alone (read in one pass), then with the bad ones (read entry by entry).
        let (good, skipped) = reads(&entries[..6]);
        assert!(skipped.is_empty(), "{skipped:?}");
        let texts = &good[1];
        assert_eq!(texts.channel_name.as_deref(), Some("Stu\"dio é"));
        assert!(texts.is_recording && texts.immediate_on_air);
        assert_eq!(texts.created_time, Some(1_700_000_000_000));
        let numbers = &good[2];
        assert_eq!(numbers.channel_name.as_deref(), Some("12.5"));
        assert!(numbers.is_recording && !numbers.immediate_on_air);
        assert_eq!(
            numbers.record.as_ref().unwrap().upload_type.as_deref(),
            Some("3")
        );
        assert_eq!(
            numbers.record.as_ref().unwrap().format.as_deref(),
            Some("true")
        );
        let odd = &good[3];
        assert_eq!(odd.channel_name.as_deref(), Some(r#"[1,{"a":"b"}]"#));
        assert_eq!(
            (odd.is_recording, odd.created_time, &odd.record),
            (false, None, &None)
        );
        assert_eq!(good[4].record, None);

        let (all, skipped) = reads(&entries);
        assert_eq!(all.len(), 8, "a numeric id is read as its digits");
        assert_eq!(all[7].channel_id, "5");
        assert_eq!(
            all[6].record.as_ref().unwrap().upload_type.as_deref(),
            Some("NO_RECORD"),
            "a key given twice: the last one, as the tree reads it"
        );
        assert_eq!(skipped.len(), 3, "{skipped:?}");
    }

    /// A page keeps its channels' text in one buffer: what it lends out is what it read, and
    /// a channel compares equal to its borrowed form and to nothing that differs in a field.
    #[test]
    fn a_page_lends_out_the_channels_it_read_and_each_compares_field_by_field() {
        let body = r#"{"content":[
            {"channelId":"a","channelName":"Stu\u00e9dio","channelStatus":"PUBLISHING","isRecording":true,"record":{"type":"AUTO_UPLOAD","format":"MP4","bucketName":"b","filePath":"/p","accessControl":"PRIVATE"},"createdTime":7},
            {"channelId":"b"}
        ],"total":2}"#;
        let page = parse_channel_page(body.as_bytes()).expect("readable");
        let tree: Vec<Channel> = serde_json::from_str::<Value>(body).unwrap()["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Channel::deserialize(v).unwrap())
            .collect();
        assert_eq!(page.to_channels(), tree);
        assert_eq!(tree[0].channel_name.as_deref(), Some("Stuédio"));
        assert_eq!(ChannelPage::from_channels(&tree, Some(2)), page);
        for (c, r) in tree.iter().zip(page.channels()) {
            assert!(*c == r);
        }

        let a = &tree[0];
        let variants: Vec<Channel> = vec![
            Channel {
                channel_id: "a2".into(),
                ..a.clone()
            },
            Channel {
                channel_name: None,
                ..a.clone()
            },
            Channel {
                channel_status: ChannelStatus::Ready,
                ..a.clone()
            },
            Channel {
                is_recording: false,
                ..a.clone()
            },
            Channel {
                immediate_on_air: true,
                ..a.clone()
            },
            Channel {
                record: None,
                ..a.clone()
            },
            Channel {
                created_time: Some(8),
                ..a.clone()
            },
        ];
        let settings = a.record.clone().unwrap();
        let record_variants = [
            RecordSettings {
                upload_type: Some("NO_RECORD".into()),
                ..settings.clone()
            },
            RecordSettings {
                format: None,
                ..settings.clone()
            },
            RecordSettings {
                bucket_name: Some("c".into()),
                ..settings.clone()
            },
            RecordSettings {
                file_path: None,
                ..settings.clone()
            },
            RecordSettings {
                access_control: Some("PUBLIC".into()),
                ..settings.clone()
            },
        ];
        let variants = variants
            .into_iter()
            .chain(record_variants.into_iter().map(|r| Channel {
                record: Some(r),
                ..a.clone()
            }));
        let first = page.channels().next().unwrap();
        for v in variants {
            assert!(v != first, "{v:?}");
            assert_eq!(v.borrowed().to_channel(), v);
        }
    }

    #[test]
    fn numbers_that_do_not_fit_are_absent_rather_than_zero_or_the_maximum() {
        let body = br#"{"content":{"recordList":{"1":{"channelId":"c",
            "recordBeginTime":"NaN","createdTime":-1e300,"shouldDeleteTime":1e300,
            "recordSeq":"1.5e3","duration":-2.5}}}}"#;
        let record = &parse_records(body).expect("readable").records[0];
        assert_eq!(record.record_begin_time, None);
        assert_eq!(record.created_time, None);
        assert_eq!(record.should_delete_time, None);
        assert_eq!(record.record_seq, Some(1500));
        assert_eq!(record.duration, Some(-2));

        let total = |t: &str| {
            parse_channel_page(format!(r#"{{"content":[],"total":{t}}}"#).as_bytes())
                .expect("readable")
                .total
        };
        assert_eq!(total("-3"), None);
        assert_eq!(total("1e300"), None);
        assert_eq!(total("12.0"), Some(12));
    }

    #[test]
    fn error_bodies_accept_string_and_numeric_codes() {
        let gw = ErrorBody::parse(
            br#"{"error":{"errorCode":"200","message":"Authentication Failed","details":"Invalid authentication information."}}"#,
        )
        .unwrap();
        assert_eq!(gw.error_code.as_deref(), Some("200"));
        assert_eq!(
            gw.details.as_deref(),
            Some("Invalid authentication information.")
        );
        assert!(!gw.is_from_live_station());
        let ls = ErrorBody::parse(
            br#"{"error":{"errorCode":250005,"message":"channel not available.","errorName":"NOT_AVAILABLE"}}"#,
        )
        .unwrap();
        assert_eq!(ls.error_code.as_deref(), Some("250005"));
        assert!(ls.is_from_live_station());
        assert!(ErrorBody::parse(b"{}").is_none());
        assert!(ErrorBody::parse(b"garbage").is_none());
    }
}
