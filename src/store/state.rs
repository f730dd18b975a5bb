//! `daemon_state`: small key/value facts — the poll heartbeat and settings the views read.

use sqlx::SqliteConnection;

use super::{Store, StoreError};

/// The keys lsrecd writes.
pub mod keys {
    /// Epoch ms of the last complete channel observation.
    pub const LAST_POLL_AT: &str = "last_poll_at";
    /// How many channels the last observation returned.
    pub const CHANNELS_SEEN: &str = "channels_seen";
    /// `retention.warn_before` in ms, written by the daemon at start; read by `expiring_records`.
    pub const RETENTION_WARN_BEFORE_MS: &str = "retention.warn_before_ms";
    /// `[ha]`: this instance's name.
    pub const HA_INSTANCE: &str = "ha.instance";
    /// `[ha]`: `leader` or `standby`, as of the last tick.
    pub const HA_ROLE: &str = "ha.role";
    /// `[ha]`: the instance holding the leader key, as last seen (empty: nobody or unknown).
    pub const HA_LEADER: &str = "ha.leader";
    /// `[ha]`: the leader's term (the key's create revision in etcd), as last seen.
    pub const HA_TERM: &str = "ha.term";
    /// `[ha]`: epoch ms at which this instance first saw the current term.
    pub const HA_TERM_SEEN_AT: &str = "ha.term_seen_at";
    /// `[ha]`: epoch ms of the last renewal of this instance's lease (empty: none yet).
    pub const HA_LEASE_RENEWED_AT: &str = "ha.lease_renewed_at";
    /// `[ha]`: why this instance does not act, when it does not.
    pub const HA_STANDBY_REASON: &str = "ha.standby_reason";
}

pub(crate) async fn set_state_in(
    conn: &mut SqliteConnection,
    key: &str,
    value: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO daemon_state (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(value)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Sets `key` to `value`.
    pub async fn set_state(&self, key: &str, value: &str, now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        set_state_in(&mut tx, key, value, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets several keys in one transaction.
    pub async fn set_states(&self, pairs: &[(&str, String)], now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for (key, value) in pairs {
            set_state_in(&mut tx, key, value, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The value of `key`, if it was ever set.
    pub async fn get_state(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM daemon_state WHERE key = ?1")
                .bind(key)
                .fetch_optional(self.reader())
                .await?,
        )
    }

    /// The value of `key` as an integer; `None` if unset or not a number.
    pub async fn get_state_i64(&self, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .get_state(key)
            .await?
            .and_then(|v| v.trim().parse().ok()))
    }
}
