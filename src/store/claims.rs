//! `owned_recordings` and `manual_claims`.
//!
//! lsrecd stops only recordings it started: an open `owned_recordings` row (at most one per
//! channel, enforced by a partial unique index) is that proof. A manual claim is an operator's
//! `lsrecd start CHANNEL`, open until `lsrecd stop CHANNEL` or `max_duration` (at most one open
//! per channel as well).

use serde::Serialize;
use sqlx::SqliteConnection;
use tracing::instrument;

use super::values::Trigger;
use super::{Store, StoreError};

/// An open `owned_recordings` row: a recording lsrecd started and has not stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OwnedRow {
    pub id: i64,
    pub channel_id: String,
    #[sqlx(try_from = "String")]
    pub trigger: Trigger,
    pub start_action_id: Option<i64>,
    pub started_at: i64,
    pub stopped_at: Option<i64>,
    pub stop_reason: Option<String>,
}

/// One row of `manual_claims`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ManualClaimRow {
    pub id: i64,
    pub channel_id: String,
    pub requested_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

/// Opens an owned recording unless the channel has one open; returns whether it opened one.
pub(crate) async fn open_owned_in(
    conn: &mut SqliteConnection,
    channel_id: &str,
    trigger: &str,
    start_action_id: Option<i64>,
    now: i64,
) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "INSERT INTO owned_recordings (channel_id, trigger, start_action_id, started_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (channel_id) WHERE stopped_at IS NULL DO NOTHING",
    )
    .bind(channel_id)
    .bind(trigger)
    .bind(start_action_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Closes the channel's open owned recording; returns whether there was one.
pub(crate) async fn close_owned_in(
    conn: &mut SqliteConnection,
    channel_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "UPDATE owned_recordings SET stopped_at = ?2, stop_reason = ?3
         WHERE channel_id = ?1 AND stopped_at IS NULL",
    )
    .bind(channel_id)
    .bind(now)
    .bind(reason)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}

impl Store {
    /// Notes that lsrecd owns the recording now running on `channel_id` (started by it, or
    /// adopted after a crash as its own). Returns `false` if one was already open.
    #[instrument(skip_all, fields(channel_id, trigger))]
    pub async fn open_owned_recording(
        &self,
        channel_id: &str,
        trigger: &Trigger,
        start_action_id: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let opened = open_owned_in(
            &mut tx,
            channel_id,
            &trigger.as_text(),
            start_action_id,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(opened)
    }

    /// Ends lsrecd's ownership of the recording on `channel_id` (stopped, or seen to have
    /// ended). Returns `false` if none was open.
    #[instrument(skip_all, fields(channel_id, reason))]
    pub async fn close_owned_recording(
        &self,
        channel_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let closed = close_owned_in(&mut tx, channel_id, reason, now).await?;
        tx.commit().await?;
        Ok(closed)
    }

    /// Every open owned recording, by channel.
    pub async fn owned_recordings_open(&self) -> Result<Vec<OwnedRow>, StoreError> {
        Ok(sqlx::query_as::<_, OwnedRow>(
            "SELECT * FROM owned_recordings WHERE stopped_at IS NULL ORDER BY channel_id",
        )
        .fetch_all(self.reader())
        .await?)
    }

    /// Whether lsrecd owned a recording on `channel_id` at any time since `since` (one open
    /// now, or one that ended since): a record read at `since` that is new and recording is
    /// then lsrecd's, even if its ownership ended before the read was stored.
    pub async fn owned_recording_since(
        &self,
        channel_id: &str,
        since: i64,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM owned_recordings
              WHERE channel_id = ?1 AND (stopped_at IS NULL OR stopped_at >= ?2))",
        )
        .bind(channel_id)
        .bind(since)
        .fetch_one(self.reader())
        .await?)
    }

    /// Opens a manual claim on `channel_id`; `false` if one is already open.
    #[instrument(skip_all, fields(channel_id))]
    pub async fn add_manual_claim(&self, channel_id: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "INSERT INTO manual_claims (channel_id, requested_at) VALUES (?1, ?2)
             ON CONFLICT (channel_id) WHERE ended_at IS NULL DO NOTHING",
        )
        .bind(channel_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Ends the open manual claim on `channel_id`; `false` if there was none.
    #[instrument(skip_all, fields(channel_id, reason))]
    pub async fn end_manual_claim(
        &self,
        channel_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE manual_claims SET ended_at = ?2, end_reason = ?3
             WHERE channel_id = ?1 AND ended_at IS NULL",
        )
        .bind(channel_id)
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Every open manual claim, oldest first.
    pub async fn active_manual_claims(&self) -> Result<Vec<ManualClaimRow>, StoreError> {
        Ok(sqlx::query_as::<_, ManualClaimRow>(
            "SELECT * FROM manual_claims WHERE ended_at IS NULL ORDER BY requested_at, id",
        )
        .fetch_all(self.reader())
        .await?)
    }
}
