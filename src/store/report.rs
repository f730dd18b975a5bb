//! What `lsrecd status` shows, read in one place from the operator views.
//!
//! The views compute "now" from SQLite's clock for people at a `sqlite3` prompt; this module
//! selects their clock-free columns and applies the caller's `now`, so reports are testable.

use serde::Serialize;

use super::outages::OutageRow;
use super::state::keys;
use super::{ChannelRow, ManualClaimRow, OccurrenceRow, Store, StoreError};

/// How far back "recent" failures go (7 days, as in the `recent_failures` view).
pub const RECENT_FAILURES_MS: i64 = 7 * 24 * 3_600_000;

/// At most this many failures in a report.
const MAX_FAILURES: i64 = 100;

/// Everything `lsrecd status` prints. Times are epoch milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusReport {
    /// The `now` the report was computed for.
    pub generated_at: i64,
    pub schema_version: i64,
    /// The daemon's last complete channel observation (its heartbeat).
    pub last_poll_at: Option<i64>,
    pub channels_seen: Option<i64>,
    /// The retention warning in force (`retention.warn_before`, default 24 h).
    pub warn_before_ms: i64,
    pub channels: Vec<ChannelRow>,
    pub active_recordings: Vec<ActiveRecording>,
    /// Occurrences not yet final (PENDING, ARMED, RECORDING), by fire time.
    pub occurrences: Vec<OccurrenceRow>,
    pub manual_claims: Vec<ManualClaimRow>,
    /// Starts (claims that should be recording and are not) and stops that keep failing, the
    /// oldest first.
    pub outages: Vec<OutageRow>,
    /// Failures of the last 7 days, newest first.
    pub recent_failures: Vec<FailureRow>,
    /// Records not uploaded whose deletion is due within the warning, soonest first.
    pub expiring_records: Vec<ExpiringRecord>,
    /// With `[ha]`: this instance's role and the leader, as of the daemon's last tick.
    pub ha: Option<HaReport>,
}

/// The leadership as the daemon last wrote it (`daemon_state` keys `ha.*`). Times are epoch ms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HaReport {
    /// This instance's name.
    pub instance: String,
    /// `leader` or `standby`.
    pub role: String,
    /// The instance holding the leader key, as last seen.
    pub leader: Option<String>,
    /// The leader's term (the key's create revision in etcd).
    pub term: Option<i64>,
    /// When this instance first saw that term.
    pub term_seen_at: Option<i64>,
    /// When this instance's lease was last renewed.
    pub lease_renewed_at: Option<i64>,
    /// Why this instance does not act, when it does not.
    pub standby_reason: Option<String>,
    /// When the daemon last wrote the role (its tick).
    pub updated_at: i64,
}

/// A record in RECORDING (from the `active_recordings` view).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ActiveRecording {
    pub record_id: i64,
    pub channel_id: String,
    pub label: Option<String>,
    pub record_type: String,
    pub file_name: Option<String>,
    pub record_begin_time: Option<i64>,
    #[sqlx(skip)]
    pub running_minutes: Option<i64>,
    /// Whether lsrecd started this recording (and will stop it).
    pub owned: bool,
    pub owned_trigger: Option<String>,
    pub owned_since: Option<i64>,
}

/// One failure (from the `failures` view).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct FailureRow {
    pub at: i64,
    /// `action`, `occurrence` or `event`.
    pub source: String,
    /// The id of the row in that table.
    pub source_id: i64,
    pub channel_id: Option<String>,
    pub what: String,
    pub detail: String,
}

/// A record that expires soon and is not uploaded (from the `unuploaded_records` view).
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct ExpiringRecord {
    pub record_id: i64,
    pub channel_id: String,
    pub label: Option<String>,
    pub record_type: String,
    pub status: String,
    pub file_name: Option<String>,
    pub record_begin_time: Option<i64>,
    pub should_delete_time: i64,
    /// Hours until deletion, one decimal; negative once the time has passed.
    #[sqlx(skip)]
    pub hours_left: f64,
    pub expiry_warned_at: Option<i64>,
    pub upload_requested_at: Option<i64>,
}

impl Store {
    /// The report of `lsrecd status` as of `now`.
    pub async fn status_report(&self, now: i64) -> Result<StatusReport, StoreError> {
        let warn_before_ms = self
            .get_state_i64(keys::RETENTION_WARN_BEFORE_MS)
            .await?
            .unwrap_or(crate::config::DEFAULT_WARN_BEFORE.as_millis() as i64);
        let mut active: Vec<ActiveRecording> = sqlx::query_as(
            "SELECT record_id, channel_id, label, record_type, file_name, record_begin_time,
                    owned, owned_trigger, owned_since
             FROM active_recordings
             ORDER BY record_begin_time, record_id",
        )
        .fetch_all(self.reader())
        .await?;
        for a in &mut active {
            a.running_minutes = a.record_begin_time.map(|b| (now - b).max(0) / 60_000);
        }
        let recent_failures: Vec<FailureRow> = sqlx::query_as(
            "SELECT at, source, source_id, channel_id, what, detail FROM failures
             WHERE at >= ?1 ORDER BY at DESC, source, source_id DESC LIMIT ?2",
        )
        .bind(now - RECENT_FAILURES_MS)
        .bind(MAX_FAILURES)
        .fetch_all(self.reader())
        .await?;
        let mut expiring: Vec<ExpiringRecord> = sqlx::query_as(
            "SELECT record_id, channel_id, label, record_type, status, file_name,
                    record_begin_time, should_delete_time, expiry_warned_at, upload_requested_at
             FROM unuploaded_records
             WHERE should_delete_time <= ?1
             ORDER BY should_delete_time, record_id",
        )
        .bind(now.saturating_add(warn_before_ms))
        .fetch_all(self.reader())
        .await?;
        for e in &mut expiring {
            e.hours_left = ((e.should_delete_time - now) as f64 / 360_000.0).round() / 10.0;
        }
        Ok(StatusReport {
            generated_at: now,
            schema_version: self.schema_version().await?,
            last_poll_at: self.get_state_i64(keys::LAST_POLL_AT).await?,
            channels_seen: self.get_state_i64(keys::CHANNELS_SEEN).await?,
            warn_before_ms,
            channels: self.channel_rows().await?,
            active_recordings: active,
            occurrences: self.open_occurrences().await?,
            manual_claims: self.active_manual_claims().await?,
            outages: self.open_outages().await?,
            recent_failures,
            expiring_records: expiring,
            ha: self.ha_report().await?,
        })
    }

    /// The `ha.*` facts, if a daemon with `[ha]` ever wrote them.
    async fn ha_report(&self) -> Result<Option<HaReport>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT key, value, updated_at FROM daemon_state WHERE key LIKE 'ha.%'")
                .fetch_all(self.reader())
                .await?;
        let get = |key: &str| {
            rows.iter()
                .find(|(k, _, _)| k == key)
                .map(|(_, v, _)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let number = |key: &str| get(key).and_then(|v| v.parse::<i64>().ok());
        let Some((_, role, updated_at)) = rows.iter().find(|(k, _, _)| k == keys::HA_ROLE) else {
            return Ok(None);
        };
        Ok(Some(HaReport {
            instance: get(keys::HA_INSTANCE).unwrap_or_default(),
            role: role.clone(),
            leader: get(keys::HA_LEADER),
            term: number(keys::HA_TERM),
            term_seen_at: number(keys::HA_TERM_SEEN_AT),
            lease_renewed_at: number(keys::HA_LEASE_RENEWED_AT),
            standby_reason: get(keys::HA_STANDBY_REASON),
            updated_at: *updated_at,
        }))
    }
}
