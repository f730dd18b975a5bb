//! `events`: what an operator would want to be told, in the order it happened.

use std::fmt;

use serde::{Serialize, Serializer};
use tracing::instrument;

use super::{Store, StoreError};

/// The kind of an event. Failure kinds also appear in the `failures` / `recent_failures` views.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A recording was started.
    Started,
    /// A recording was stopped.
    Stopped,
    /// A scheduled occurrence was not recorded.
    Missed,
    /// An action failed for good (failure kind).
    Failed,
    /// A record nobody uploaded is about to be deleted by Live Station.
    Expiring,
    /// A record reached Object Storage.
    Uploaded,
    /// An upload request failed (failure kind).
    UploadFailed,
    /// The API rejected the credentials twice in a row (failure kind).
    AuthFailure,
    /// The local clock is off from the API gateway's (failure kind).
    ClockSkew,
    /// A configured channel is not in the API's channel list (failure kind).
    ChannelMissing,
    /// A missing channel is back.
    ChannelBack,
    /// A recording found running at start-up was taken over.
    Adopted,
    /// Anything else, by name.
    Other(String),
}

impl EventKind {
    const NAMED: [EventKind; 12] = [
        EventKind::Started,
        EventKind::Stopped,
        EventKind::Missed,
        EventKind::Failed,
        EventKind::Expiring,
        EventKind::Uploaded,
        EventKind::UploadFailed,
        EventKind::AuthFailure,
        EventKind::ClockSkew,
        EventKind::ChannelMissing,
        EventKind::ChannelBack,
        EventKind::Adopted,
    ];

    /// The spelling stored in `events.kind`.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Started => "started",
            EventKind::Stopped => "stopped",
            EventKind::Missed => "missed",
            EventKind::Failed => "failed",
            EventKind::Expiring => "expiring",
            EventKind::Uploaded => "uploaded",
            EventKind::UploadFailed => "upload_failed",
            EventKind::AuthFailure => "auth_failure",
            EventKind::ClockSkew => "clock_skew",
            EventKind::ChannelMissing => "channel_missing",
            EventKind::ChannelBack => "channel_back",
            EventKind::Adopted => "adopted",
            EventKind::Other(s) => s,
        }
    }

    /// Parses a stored kind; unknown names become [`EventKind::Other`].
    pub fn parse(s: &str) -> EventKind {
        Self::NAMED
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or_else(|| EventKind::Other(s.to_string()))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<String> for EventKind {
    fn from(s: String) -> EventKind {
        EventKind::parse(&s)
    }
}

/// An event to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub at: i64,
    pub kind: EventKind,
    pub channel_id: Option<String>,
    pub record_id: Option<i64>,
    /// For a person; must not contain secrets.
    pub message: String,
}

/// One row of `events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    #[sqlx(try_from = "String")]
    pub kind: EventKind,
    pub channel_id: Option<String>,
    pub record_id: Option<i64>,
    pub message: String,
}

impl Store {
    /// Appends an event.
    #[instrument(skip_all, fields(kind = %e.kind))]
    pub async fn add_event(&self, e: &NewEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO events (at, kind, channel_id, record_id, message)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(e.at)
        .bind(e.kind.as_str())
        .bind(&e.channel_id)
        .bind(e.record_id)
        .bind(&e.message)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Events at or after `since`, oldest first.
    pub async fn events_since(&self, since: i64) -> Result<Vec<EventRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, EventRow>("SELECT * FROM events WHERE at >= ?1 ORDER BY at, id")
                .bind(since)
                .fetch_all(self.reader())
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_kind_parses_from_its_own_spelling() {
        for k in EventKind::NAMED {
            assert_eq!(EventKind::parse(k.as_str()), k);
        }
        assert_eq!(
            EventKind::parse("config_reloaded"),
            EventKind::Other("config_reloaded".into())
        );
    }
}
