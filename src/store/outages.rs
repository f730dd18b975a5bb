//! `outages`: a start or stop lsrecd wants that keeps failing, one row per outage.
//!
//! The engine opens the row at the first failure, counts every request it sends, and closes it
//! when the start (or stop) takes effect or its reason ends. An open `startRecord` outage is a
//! claim that should be recording and is not: `lsrecd status` and the `unrecorded_claims` view
//! list them with the time the claim began.

use serde::Serialize;
use tracing::instrument;

use super::values::{Mutation, OutageOutcome, Trigger};
use super::{Store, StoreError};

/// An outage to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOutage {
    pub channel_id: String,
    pub operation: Mutation,
    pub trigger: Trigger,
    /// When the claim began wanting the recording (or the stop became due).
    pub since: i64,
    pub attempts: i64,
    pub first_error: String,
    pub now: i64,
}

/// One row of `outages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OutageRow {
    pub id: i64,
    pub channel_id: String,
    #[sqlx(try_from = "String")]
    pub operation: Mutation,
    #[sqlx(try_from = "String")]
    pub trigger: Trigger,
    pub since: i64,
    /// Requests sent so far for it.
    pub attempts: i64,
    pub first_error: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
}

impl Store {
    /// Opens an outage on the channel, or returns the one already open there.
    #[instrument(skip_all, fields(channel_id = %o.channel_id, operation = %o.operation))]
    pub async fn open_outage(&self, o: &NewOutage) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO outages (channel_id, operation, trigger, since, attempts, first_error,
                                  last_error, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)
             ON CONFLICT (channel_id) WHERE ended_at IS NULL DO NOTHING",
        )
        .bind(&o.channel_id)
        .bind(o.operation.as_str())
        .bind(o.trigger.as_text())
        .bind(o.since)
        .bind(o.attempts)
        .bind(&o.first_error)
        .bind(o.now)
        .execute(&mut *tx)
        .await?;
        let id: i64 =
            sqlx::query_scalar("SELECT id FROM outages WHERE channel_id = ?1 AND ended_at IS NULL")
                .bind(&o.channel_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Notes the attempts made so far and the latest error of an open outage.
    #[instrument(skip_all, fields(id, attempts))]
    pub async fn update_outage(
        &self,
        id: i64,
        attempts: i64,
        last_error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE outages SET attempts = ?2, last_error = ?3, updated_at = ?4
             WHERE id = ?1 AND ended_at IS NULL",
        )
        .bind(id)
        .bind(attempts)
        .bind(last_error)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes an outage with its outcome and the final count of attempts.
    #[instrument(skip_all, fields(id, outcome = %outcome))]
    pub async fn close_outage(
        &self,
        id: i64,
        outcome: OutageOutcome,
        attempts: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE outages SET ended_at = ?2, outcome = ?3, attempts = ?4, updated_at = ?2
             WHERE id = ?1 AND ended_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .bind(outcome.as_str())
        .bind(attempts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every open outage, oldest first.
    pub async fn open_outages(&self) -> Result<Vec<OutageRow>, StoreError> {
        Ok(sqlx::query_as::<_, OutageRow>(
            "SELECT * FROM outages WHERE ended_at IS NULL ORDER BY since, id",
        )
        .fetch_all(self.reader())
        .await?)
    }
}
