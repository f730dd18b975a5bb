//! `occurrences`: one row per schedule firing, and the state machine every firing follows.
//!
//! ```text
//! PENDING   -> ARMED | RECORDING | MISSED | FAILED
//! ARMED     -> RECORDING | MISSED | FAILED
//! RECORDING -> COMPLETED | FAILED | ARMED (the channel dropped inside the window)
//! ```
//!
//! COMPLETED, MISSED and FAILED are final: once there, an occurrence never changes state (a
//! trigger in the schema enforces it for any writer, this module reports it as an error).

use std::fmt;

use serde::{Serialize, Serializer};
use tracing::instrument;

use super::values::OccurrenceReason;
use super::{Store, StoreError};

/// The state of an occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OccurrenceState {
    /// Known, fire time not reached or not yet handled.
    Pending,
    /// Fire time reached, waiting for the channel to go live inside the window.
    Armed,
    /// The channel is recording for this occurrence.
    Recording,
    /// Final: the window ended (or the channel stopped publishing) after recording.
    Completed,
    /// Final: never recorded in the window, or lsrecd was down past `catch_up`.
    Missed,
    /// Final: the recording could not be started (retries exhausted, rejected).
    Failed,
}

impl OccurrenceState {
    /// Every state, in lifecycle order.
    pub const ALL: [OccurrenceState; 6] = [
        OccurrenceState::Pending,
        OccurrenceState::Armed,
        OccurrenceState::Recording,
        OccurrenceState::Completed,
        OccurrenceState::Missed,
        OccurrenceState::Failed,
    ];

    /// The spelling stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OccurrenceState::Pending => "PENDING",
            OccurrenceState::Armed => "ARMED",
            OccurrenceState::Recording => "RECORDING",
            OccurrenceState::Completed => "COMPLETED",
            OccurrenceState::Missed => "MISSED",
            OccurrenceState::Failed => "FAILED",
        }
    }

    /// Parses the stored spelling (case-insensitive).
    pub fn parse(s: &str) -> Option<OccurrenceState> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether the occurrence can never change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OccurrenceState::Completed | OccurrenceState::Missed | OccurrenceState::Failed
        )
    }

    /// Whether `self -> to` is a step of the state machine. Staying in a non-final state
    /// (to update the detail) is allowed.
    pub fn can_become(self, to: OccurrenceState) -> bool {
        use OccurrenceState::*;
        if self == to {
            return !self.is_final();
        }
        matches!(
            (self, to),
            (Pending, Armed | Recording | Missed | Failed)
                | (Armed, Recording | Missed | Failed)
                | (Recording, Armed | Completed | Failed)
        )
    }
}

impl fmt::Display for OccurrenceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OccurrenceState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl TryFrom<String> for OccurrenceState {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        OccurrenceState::parse(&s)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown occurrence state {s:?}")))
    }
}

/// A firing to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOccurrence {
    pub schedule: String,
    pub channel_id: String,
    pub fire_time: i64,
    /// `None`: until the channel stops publishing.
    pub window_end: Option<i64>,
    /// Usually [`OccurrenceState::Pending`]; a firing found too late may start as `Missed`.
    pub state: OccurrenceState,
    pub detail: Option<String>,
    pub now: i64,
}

/// One row of `occurrences`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OccurrenceRow {
    pub id: i64,
    pub schedule: String,
    pub channel_id: String,
    pub fire_time: i64,
    pub window_end: Option<i64>,
    pub state: OccurrenceState,
    /// Why it is in `state` (absent on rows written before reasons were kept).
    pub reason: Option<OccurrenceReason>,
    pub detail: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct OccurrenceRaw {
    id: i64,
    schedule: String,
    channel_id: String,
    fire_time: i64,
    window_end: Option<i64>,
    #[sqlx(try_from = "String")]
    state: OccurrenceState,
    reason: Option<String>,
    detail: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<OccurrenceRaw> for OccurrenceRow {
    type Error = StoreError;
    fn try_from(r: OccurrenceRaw) -> Result<OccurrenceRow, StoreError> {
        Ok(OccurrenceRow {
            id: r.id,
            schedule: r.schedule,
            channel_id: r.channel_id,
            fire_time: r.fire_time,
            window_end: r.window_end,
            state: r.state,
            reason: r.reason.map(OccurrenceReason::try_from).transpose()?,
            detail: r.detail,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

impl Store {
    /// Inserts the occurrence unless one with the same (schedule, fire time) exists.
    /// Returns its id and whether it was inserted now.
    #[instrument(skip_all, fields(schedule = %o.schedule, fire_time = o.fire_time))]
    pub async fn insert_occurrence(&self, o: &NewOccurrence) -> Result<(i64, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO occurrences (schedule, channel_id, fire_time, window_end, state, detail,
                                      created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT (schedule, fire_time) DO NOTHING",
        )
        .bind(&o.schedule)
        .bind(&o.channel_id)
        .bind(o.fire_time)
        .bind(o.window_end)
        .bind(o.state.as_str())
        .bind(&o.detail)
        .bind(o.now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let id: i64 =
            sqlx::query_scalar("SELECT id FROM occurrences WHERE schedule = ?1 AND fire_time = ?2")
                .bind(&o.schedule)
                .bind(o.fire_time)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok((id, inserted))
    }

    /// Moves occurrence `id` to `state` for `reason`, with `detail` for people (both replacing
    /// the previous ones).
    ///
    /// Errors: [`StoreError::OccurrenceFinal`] if it is already final (setting the same final
    /// state again is a no-op), [`StoreError::InvalidTransition`] for a step the state machine
    /// does not have, [`StoreError::NotFound`].
    #[instrument(skip_all, fields(id, state = %state))]
    pub async fn set_occurrence_state(
        &self,
        id: i64,
        state: OccurrenceState,
        reason: OccurrenceReason,
        detail: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT state FROM occurrences WHERE id = ?1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let current = current.ok_or_else(|| StoreError::NotFound {
            what: "occurrence",
            id: id.to_string(),
        })?;
        let from = OccurrenceState::try_from(current)?;
        if from.is_final() {
            if from == state {
                return Ok(());
            }
            return Err(StoreError::OccurrenceFinal {
                id,
                state: from.to_string(),
                requested: state.to_string(),
            });
        }
        if !from.can_become(state) {
            return Err(StoreError::InvalidTransition {
                what: "occurrence",
                id,
                from: from.to_string(),
                to: state.to_string(),
            });
        }
        sqlx::query(
            "UPDATE occurrences SET state = ?2, reason = ?3, detail = ?4, updated_at = ?5
             WHERE id = ?1",
        )
        .bind(id)
        .bind(state.as_str())
        .bind(reason.as_str())
        .bind(detail)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One occurrence.
    pub async fn occurrence(&self, id: i64) -> Result<OccurrenceRow, StoreError> {
        sqlx::query_as::<_, OccurrenceRaw>("SELECT * FROM occurrences WHERE id = ?1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "occurrence",
                id: id.to_string(),
            })?
            .try_into()
    }

    /// Occurrences not in a final state (PENDING, ARMED, RECORDING), by fire time.
    pub async fn open_occurrences(&self) -> Result<Vec<OccurrenceRow>, StoreError> {
        sqlx::query_as::<_, OccurrenceRaw>(
            "SELECT * FROM occurrences
             WHERE state IN ('PENDING', 'ARMED', 'RECORDING')
             ORDER BY fire_time, id",
        )
        .fetch_all(self.reader())
        .await?
        .into_iter()
        .map(OccurrenceRow::try_from)
        .collect()
    }

    /// The latest fire time recorded for `schedule`, to resume computing fire times after it.
    pub async fn latest_fire_time(&self, schedule: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT max(fire_time) FROM occurrences WHERE schedule = ?1")
                .bind(schedule)
                .fetch_one(self.reader())
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OccurrenceState::*;

    #[test]
    fn every_state_parses_from_its_own_spelling() {
        for s in OccurrenceState::ALL {
            assert_eq!(OccurrenceState::parse(s.as_str()), Some(s));
        }
        assert_eq!(OccurrenceState::parse("armed"), Some(Armed));
        assert_eq!(OccurrenceState::parse("LATE"), None);
    }

    #[test]
    fn no_final_state_can_become_anything() {
        for from in OccurrenceState::ALL.into_iter().filter(|s| s.is_final()) {
            for to in OccurrenceState::ALL {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn an_occurrence_completes_only_after_recording() {
        assert!(Recording.can_become(Completed));
        assert!(!Pending.can_become(Completed));
        assert!(!Armed.can_become(Completed));
    }

    #[test]
    fn an_occurrence_never_goes_back_to_pending() {
        for from in [Armed, Recording] {
            assert!(!from.can_become(Pending), "{from}");
        }
    }
}
