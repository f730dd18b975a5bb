//! What the emulator is configured with: keys, record lifecycle timing, and the answers it gives
//! where the real API is undocumented (ARCHITECTURE.md §11, "Uncertain").

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use serde_json::{Value, json};

/// Access key accepted when none is given.
pub const DEFAULT_ACCESS_KEY: &str = "LSRECD-EMULATOR-ACCESS";
/// Secret key accepted when none is given.
pub const DEFAULT_SECRET_KEY: &str = "lsrecd-emulator-secret";

/// Everything an emulator starts with. The lifecycle and behaviour can be changed later
/// through [`crate::emulator::Control`].
#[derive(Clone)]
pub struct EmulatorOptions {
    /// The only access key the gateway accepts.
    pub access_key: String,
    /// The secret key signatures are verified with.
    pub secret_key: String,
    /// How long each record stage lasts.
    pub lifecycle: Lifecycle,
    /// Answers where the real API is undefined.
    pub behaviour: Behaviour,
    /// When set, every `/_emulator/` request must carry `Authorization: Bearer <token>`.
    /// `lsrecd emulator` sets one whenever it listens on an address other machines can reach.
    pub control_token: Option<Secret>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            access_key: DEFAULT_ACCESS_KEY.to_string(),
            secret_key: DEFAULT_SECRET_KEY.to_string(),
            lifecycle: Lifecycle::default(),
            behaviour: Behaviour::default(),
            control_token: None,
        }
    }
}

impl fmt::Debug for EmulatorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorOptions")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .field("lifecycle", &self.lifecycle)
            .field("behaviour", &self.behaviour)
            .field("control_token", &self.control_token)
            .finish()
    }
}

/// Durations of the record stages after a recording ends.
///
/// Deadlines are fixed when a stage begins, so a change applies to stages that begin afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lifecycle {
    /// `PROCESSING` → `TRANSFER_READY` (manual upload) or `TRANSFER` (auto upload).
    #[serde(rename = "processing_ms", with = "millis")]
    pub processing: Duration,
    /// `TRANSFER` → `TRANSFER_FINISH` (or `TRANSFER_FAIL`).
    #[serde(rename = "transfer_ms", with = "millis")]
    pub transfer: Duration,
    /// `shouldDeleteTime - createdTime`: temporary files not uploaded by then become `DELETED`.
    #[serde(rename = "retention_ms", with = "millis")]
    pub retention: Duration,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            processing: Duration::from_secs(2),
            transfer: Duration::from_secs(2),
            retention: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

/// A Live Station error answer: `{"error":{"errorCode":N,"message":..,"errorName":..}}` with an
/// HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStationError {
    /// HTTP status of the answer.
    pub http: u16,
    /// Numeric `errorCode` (the documented examples send a JSON number).
    pub code: i64,
    /// `errorName`, e.g. `NOT_AVAILABLE`.
    pub name: String,
    /// `message`, with the template's `{0}` filled in.
    pub message: String,
}

impl LiveStationError {
    /// A Live Station error with the given fields.
    pub fn new(http: u16, code: i64, name: &str, message: impl Into<String>) -> Self {
        LiveStationError {
            http,
            code,
            name: name.to_string(),
            message: message.into(),
        }
    }

    /// `250005 NOT_AVAILABLE`, "{what} not available.", HTTP 400.
    pub fn not_available(what: &str) -> Self {
        Self::new(
            400,
            250005,
            "NOT_AVAILABLE",
            format!("{what} not available."),
        )
    }

    /// `250004 NOT_FOUND`, "{what} not found.".
    pub fn not_found(http: u16, what: &str) -> Self {
        Self::new(http, 250004, "NOT_FOUND", format!("{what} not found."))
    }

    /// `250002 INVALID_FORMAT`, "{what}: invalid value.", HTTP 400.
    pub fn invalid_format(what: &str) -> Self {
        Self::new(
            400,
            250002,
            "INVALID_FORMAT",
            format!("{what}: invalid value."),
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({ "error": { "errorCode": self.code, "message": self.message, "errorName": self.name } })
    }
}

impl Behaviour {
    /// Gives every ordinary refusal (`NOT_AVAILABLE` of a start or stop the channel's state
    /// refuses, `NOT_FOUND`) the HTTP status `http`: the reference does not say which it is.
    pub fn refuse_with_status(&mut self, http: u16) {
        self.start_not_publishing.http = http;
        self.start_no_record.http = http;
        if let WhileRecording::Reject { error } = &mut self.start_while_recording {
            error.http = http;
        }
        if let WhileIdle::Reject { error } = &mut self.stop_while_idle {
            error.http = http;
        }
        self.not_found_http = http;
    }
}

/// The answer to `startRecord` on a channel that is already recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WhileRecording {
    /// Refuse with this error.
    Reject { error: LiveStationError },
    /// Answer 200 with the records of the running recording, as if it had just started.
    ReturnCurrent,
}

/// The answer to `stopRecord` on a channel that is not recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WhileIdle {
    /// Refuse with this error.
    Reject { error: LiveStationError },
    /// Answer 200 with the records of the channel's last recording (empty if none).
    ReturnLatest,
}

/// Selectable answers where the real API is undefined. The defaults are listed in the
/// [module documentation](crate::emulator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Behaviour {
    /// `startRecord` on a channel that is not `PUBLISHING`.
    pub start_not_publishing: LiveStationError,
    /// `startRecord` on a channel whose `record.type` is `NO_RECORD`.
    pub start_no_record: LiveStationError,
    /// `startRecord` on a channel that is already recording. Always counted in
    /// [`Counters::start_while_recording`](crate::emulator::Counters::start_while_recording).
    pub start_while_recording: WhileRecording,
    /// `stopRecord` on a channel that is not recording.
    pub stop_while_idle: WhileIdle,
    /// Whether the `startRecord` answer carries `shouldDeleteTime` (documents disagree).
    pub start_response_includes_should_delete_time: bool,
    /// HTTP status of `250004 NOT_FOUND` answers (unknown channel or record).
    pub not_found_http: u16,
    /// How long a `DELETED` record stays in the records list and detail after its
    /// `shouldDeleteTime`; `None` keeps it forever.
    #[serde(rename = "deleted_records_listed_for_ms", with = "millis_opt")]
    pub deleted_records_listed_for: Option<Duration>,
    /// `pageSizeNo` when the request has none (undocumented).
    pub default_page_size: u32,
    /// What the channel list's `total` counts (the reference only says "total response count").
    pub total: TotalMeaning,
}

/// What the channel list's `total` counts: each reading the reference allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TotalMeaning {
    /// Every channel matching the query, on every page.
    #[default]
    All,
    /// The entries of the page it comes with.
    Page,
    /// No `total` at all.
    Absent,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            start_not_publishing: LiveStationError::not_available("channel"),
            start_no_record: LiveStationError::not_available("record"),
            start_while_recording: WhileRecording::Reject {
                error: LiveStationError::not_available("channel"),
            },
            stop_while_idle: WhileIdle::Reject {
                error: LiveStationError::not_available("channel"),
            },
            start_response_includes_should_delete_time: true,
            not_found_http: 400,
            deleted_records_listed_for: Some(Duration::from_secs(24 * 3600)),
            default_page_size: 20,
            total: TotalMeaning::All,
        }
    }
}

/// A `Duration` as integer milliseconds in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// An `Option<Duration>` as integer milliseconds or `null` in JSON.
mod millis_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_accepts_partial_json_and_keeps_other_defaults() {
        let b: Behaviour = serde_json::from_value(json!({
            "start_while_recording": {"kind": "return_current"},
            "deleted_records_listed_for_ms": null
        }))
        .unwrap();
        assert_eq!(b.start_while_recording, WhileRecording::ReturnCurrent);
        assert_eq!(b.deleted_records_listed_for, None);
        assert_eq!(b.not_found_http, Behaviour::default().not_found_http);
    }

    #[test]
    fn live_station_error_body_has_numeric_code_and_error_name() {
        let body = LiveStationError::not_available("channel").body();
        assert_eq!(
            body,
            json!({"error":{"errorCode":250005,"message":"channel not available.","errorName":"NOT_AVAILABLE"}})
        );
    }

    #[test]
    fn options_debug_hides_the_secret_key() {
        let text = format!("{:?}", EmulatorOptions::default());
        assert!(!text.contains(DEFAULT_SECRET_KEY), "{text}");
        assert!(text.contains(DEFAULT_ACCESS_KEY));
    }
}
