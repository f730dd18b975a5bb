//! `actions`: the journal that makes "never twice" possible (ARCHITECTURE.md §6).
//!
//! Before a startRecord / stopRecord / upload call the engine commits a `PENDING` intent
//! ([`Store::begin_action`]); after it, the outcome, the records the call returned and the
//! ownership change go in one transaction ([`Store::finish_action`]). After a crash, PENDING and
//! AMBIGUOUS rows ([`Store::unfinished_actions`]) are what must be reconciled before acting.
//!
//! ```text
//! PENDING   -> SUCCEEDED | FAILED | AMBIGUOUS | RECONCILED
//! AMBIGUOUS -> SUCCEEDED | FAILED | AMBIGUOUS | RECONCILED
//! ```

use serde::Serialize;
use tracing::instrument;

use super::claims::{close_owned_in, open_owned_in};
use super::records::upsert_records_in;
use super::values::{ActionState, Mutation, Trigger};
use super::{RecordChange, Store, StoreError, decode_ids, encode_ids};
use crate::livestation::Record;

/// An intent to journal before calling the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAction {
    pub channel_id: String,
    pub operation: Mutation,
    pub trigger: Trigger,
    /// 1 for the first call, then 2, 3, … for retries of the same intent.
    pub attempt: i64,
    pub occurrence_id: Option<i64>,
    /// The records an upload is for; empty for start/stop.
    pub record_ids: Vec<i64>,
    pub now: i64,
}

/// What became of an action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionOutcome {
    /// Not [`ActionState::Pending`].
    pub state: ActionState,
    pub http_status: Option<u16>,
    pub error_code: Option<String>,
    /// Must not contain secrets: it is stored and shown to operators.
    pub error_message: Option<String>,
    /// Open an `owned_recordings` row with this trigger (a startRecord known to have started
    /// the recording). Ignored if the channel already has an open one.
    pub open_owned: Option<Trigger>,
    /// Close the channel's open `owned_recordings` row with this reason (a stopRecord that
    /// stopped the recording).
    pub close_owned: Option<String>,
}

impl ActionOutcome {
    /// An outcome in `state` with nothing else set.
    pub fn new(state: ActionState) -> ActionOutcome {
        ActionOutcome {
            state,
            http_status: None,
            error_code: None,
            error_message: None,
            open_owned: None,
            close_owned: None,
        }
    }
}

/// One row of `actions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionRow {
    pub id: i64,
    pub channel_id: String,
    pub operation: Mutation,
    pub trigger: Trigger,
    pub attempt: i64,
    pub state: ActionState,
    pub http_status: Option<i64>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub requested_at: i64,
    pub finished_at: Option<i64>,
    pub occurrence_id: Option<i64>,
    pub record_ids: Vec<i64>,
}

#[derive(sqlx::FromRow)]
struct ActionRaw {
    id: i64,
    channel_id: String,
    #[sqlx(try_from = "String")]
    operation: Mutation,
    #[sqlx(try_from = "String")]
    trigger: Trigger,
    attempt: i64,
    #[sqlx(try_from = "String")]
    state: ActionState,
    http_status: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    requested_at: i64,
    finished_at: Option<i64>,
    occurrence_id: Option<i64>,
    record_ids: Option<String>,
}

impl From<ActionRaw> for ActionRow {
    fn from(r: ActionRaw) -> ActionRow {
        ActionRow {
            id: r.id,
            channel_id: r.channel_id,
            operation: r.operation,
            trigger: r.trigger,
            attempt: r.attempt,
            state: r.state,
            http_status: r.http_status,
            error_code: r.error_code,
            error_message: r.error_message,
            requested_at: r.requested_at,
            finished_at: r.finished_at,
            occurrence_id: r.occurrence_id,
            record_ids: decode_ids(r.record_ids.as_deref()),
        }
    }
}

impl Store {
    /// Commits the PENDING intent row and returns its id. Call before the API call.
    #[instrument(skip_all, fields(channel_id = %a.channel_id, operation = %a.operation, attempt = a.attempt))]
    pub async fn begin_action(&self, a: &NewAction) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let id = sqlx::query(
            "INSERT INTO actions (channel_id, operation, trigger, attempt, state, requested_at,
                                  occurrence_id, record_ids)
             VALUES (?1, ?2, ?3, ?4, 'PENDING', ?5, ?6, ?7)",
        )
        .bind(&a.channel_id)
        .bind(a.operation.as_str())
        .bind(a.trigger.as_text())
        .bind(a.attempt)
        .bind(a.now)
        .bind(a.occurrence_id)
        .bind(encode_ids(&a.record_ids))
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        tx.commit().await?;
        Ok(id)
    }

    /// Commits the outcome of action `id`, the records the call returned (with their history)
    /// and the ownership change it implies, all in one transaction.
    ///
    /// Only PENDING and AMBIGUOUS actions can be finished; `outcome.state` must not be PENDING.
    /// When records are given, `record_ids` becomes their ids.
    #[instrument(skip_all, fields(id, state = %outcome.state, records = records.len()))]
    pub async fn finish_action(
        &self,
        id: i64,
        outcome: &ActionOutcome,
        records: &[Record],
        now: i64,
    ) -> Result<Vec<RecordChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        let current: Option<(String, String)> =
            sqlx::query_as("SELECT state, channel_id FROM actions WHERE id = ?1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let (current, channel_id) = current.ok_or_else(|| StoreError::NotFound {
            what: "action",
            id: id.to_string(),
        })?;
        let from = ActionState::try_from(current)?;
        if from.is_finished() || outcome.state == ActionState::Pending {
            return Err(StoreError::InvalidTransition {
                what: "action",
                id,
                from: from.to_string(),
                to: outcome.state.to_string(),
            });
        }
        let ids: Vec<i64> = records.iter().map(|r| r.record_id).collect();
        sqlx::query(
            "UPDATE actions
             SET state = ?2, http_status = ?3, error_code = ?4, error_message = ?5,
                 finished_at = ?6, record_ids = COALESCE(?7, record_ids)
             WHERE id = ?1",
        )
        .bind(id)
        .bind(outcome.state.as_str())
        .bind(outcome.http_status.map(i64::from))
        .bind(&outcome.error_code)
        .bind(&outcome.error_message)
        .bind(now)
        .bind(encode_ids(&ids))
        .execute(&mut *tx)
        .await?;
        let changes = upsert_records_in(&mut tx, records, now).await?;
        if let Some(trigger) = &outcome.open_owned {
            open_owned_in(&mut tx, &channel_id, &trigger.as_text(), Some(id), now).await?;
        }
        if let Some(reason) = &outcome.close_owned {
            close_owned_in(&mut tx, &channel_id, reason, now).await?;
        }
        tx.commit().await?;
        Ok(changes)
    }

    /// One action.
    pub async fn action(&self, id: i64) -> Result<ActionRow, StoreError> {
        sqlx::query_as::<_, ActionRaw>("SELECT * FROM actions WHERE id = ?1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .map(ActionRow::from)
            .ok_or_else(|| StoreError::NotFound {
                what: "action",
                id: id.to_string(),
            })
    }

    /// Actions whose outcome is not known (PENDING or AMBIGUOUS), oldest first: the ones to
    /// reconcile before acting again.
    pub async fn unfinished_actions(&self) -> Result<Vec<ActionRow>, StoreError> {
        Ok(sqlx::query_as::<_, ActionRaw>(
            "SELECT * FROM actions WHERE state IN ('PENDING', 'AMBIGUOUS') ORDER BY id",
        )
        .fetch_all(self.reader())
        .await?
        .into_iter()
        .map(ActionRow::from)
        .collect())
    }
}
