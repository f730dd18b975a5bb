//! `events`: what an operator would want to be told, in the order it happened.

use serde::Serialize;
use tracing::instrument;

use super::values::EventKind;
use super::{Store, StoreError};

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
    /// An [`EventKind`] spelling; kept as text so that reading a database written by a newer
    /// lsrecd, with kinds this one does not know, still works.
    pub kind: String,
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
