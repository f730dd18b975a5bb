//! `channels`: what the channel list last said about each channel, written only on change.
//!
//! The daemon polls every few seconds; an idle poll must cost no channel writes and, at
//! thousands of channels, no channel reads either. So the rows as last written are kept in
//! memory ([`RowCache`], read from the table once), each observation is compared with them and
//! only the rows that differ are written, plus one heartbeat in `daemon_state`. The memory copy
//! takes a row only once its transaction committed, so it never runs ahead of the table. The
//! engine lock makes the daemon the only writer of this table while it runs.

use std::collections::{HashMap, HashSet};
use std::sync::MutexGuard;

use serde::Serialize;
use sqlx::SqliteConnection;
use tracing::instrument;

use super::state::{keys, set_state_in};
use super::{Store, StoreError};
use crate::livestation::Channel;

/// One row of `channels`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ChannelRow {
    pub channel_id: String,
    /// The label from the configuration (kept after the channel leaves the configuration).
    pub label: Option<String>,
    pub channel_name: Option<String>,
    /// `channelStatus` as the API spells it; `None` if the API never returned the channel.
    pub channel_status: Option<String>,
    pub is_recording: bool,
    pub immediate_on_air: bool,
    /// `record.type`: `NO_RECORD`, `AUTO_UPLOAD`, `MANUAL_UPLOAD`.
    pub record_upload_type: Option<String>,
    /// `record.format`: `MP4`, `HLS`, `ALL`.
    pub record_format: Option<String>,
    pub created_time: Option<i64>,
    /// Whether the channel is in the configuration.
    pub configured: bool,
    /// When lsrecd first saw the channel in its current state.
    pub observed_at: Option<i64>,
    /// Since when the channel is absent from the API's channel list.
    pub missing_since: Option<i64>,
}

impl ChannelRow {
    fn blank(channel_id: &str) -> ChannelRow {
        ChannelRow {
            channel_id: channel_id.to_string(),
            label: None,
            channel_name: None,
            channel_status: None,
            is_recording: false,
            immediate_on_air: false,
            record_upload_type: None,
            record_format: None,
            created_time: None,
            configured: false,
            observed_at: None,
            missing_since: None,
        }
    }

    /// Whether the row already says what the API says of the channel (compared in place:
    /// an idle poll allocates nothing per channel).
    fn says(&self, c: &Channel) -> bool {
        let status = Some(c.channel_status.as_str()).filter(|s| !s.is_empty());
        let settings = c.record.as_ref();
        self.channel_name.as_deref() == c.channel_name.as_deref()
            && self.channel_status.as_deref() == status
            && self.is_recording == c.is_recording
            && self.immediate_on_air == c.immediate_on_air
            && self.record_upload_type.as_deref() == settings.and_then(|s| s.upload_type.as_deref())
            && self.record_format.as_deref() == settings.and_then(|s| s.format.as_deref())
            && c.created_time.is_none_or(|t| self.created_time == Some(t))
    }

    /// Copies what the API says; returns whether any of it changed.
    fn apply_observation(&mut self, c: &Channel) -> bool {
        let status = Some(c.channel_status.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let settings = c.record.as_ref();
        let next = ChannelRow {
            channel_name: c.channel_name.clone(),
            channel_status: status,
            is_recording: c.is_recording,
            immediate_on_air: c.immediate_on_air,
            record_upload_type: settings.and_then(|s| s.upload_type.clone()),
            record_format: settings.and_then(|s| s.format.clone()),
            created_time: c.created_time.or(self.created_time),
            ..self.clone()
        };
        let changed = next != *self;
        *self = next;
        changed
    }
}

/// Compares one complete observation with the rows as last written: what to write, and what
/// the observation found.
fn compare<'a>(
    existing: &RowCache,
    seen: impl IntoIterator<Item = &'a Channel>,
    configured: &[(String, Option<String>)],
    now: i64,
) -> (ObserveSummary, Vec<ChannelRow>) {
    let config: HashMap<&str, &Option<String>> = configured
        .iter()
        .map(|(id, label)| (id.as_str(), label))
        .collect();

    let mut summary = ObserveSummary::default();
    let mut done: HashSet<&str> = HashSet::new();
    let mut to_write: Vec<ChannelRow> = Vec::new();

    for c in seen {
        if !done.insert(c.channel_id.as_str()) {
            continue; // the same channel on two pages
        }
        let before = existing.get(&c.channel_id);
        let label = config.get(c.channel_id.as_str());
        if let Some(b) = before
            && b.says(c)
            && b.observed_at.is_some()
            && b.missing_since.is_none()
            && match label {
                Some(l) => b.configured && b.label == **l,
                None => !b.configured,
            }
        {
            continue; // the usual case: nothing changed
        }
        let mut row = before
            .cloned()
            .unwrap_or_else(|| ChannelRow::blank(&c.channel_id));
        if row.apply_observation(c) || row.observed_at.is_none() {
            row.observed_at = Some(now);
        }
        match label {
            Some(label) => {
                row.configured = true;
                row.label = (*label).clone();
                if row.missing_since.is_some() {
                    summary.back.push(c.channel_id.clone());
                }
            }
            None => row.configured = false,
        }
        row.missing_since = None;
        if before != Some(&row) {
            to_write.push(row);
        }
    }
    summary.channels_seen = done.len();

    for (id, label) in configured {
        if done.contains(id.as_str()) {
            continue;
        }
        done.insert(id.as_str());
        let before = existing.get(id);
        let mut row = before.cloned().unwrap_or_else(|| ChannelRow::blank(id));
        row.configured = true;
        row.label = label.clone();
        if row.missing_since.is_none() {
            row.missing_since = Some(now);
            summary.newly_missing.push(id.clone());
        }
        summary.missing.push(id.clone());
        if before != Some(&row) {
            to_write.push(row);
        }
    }

    for (id, before) in existing {
        if done.contains(id.as_str())
            || (!before.configured
                && (before.missing_since.is_some() || before.channel_status.is_none()))
        {
            continue;
        }
        // Neither returned nor configured: a channel deleted from the account, or one
        // removed from the configuration that the API no longer lists.
        let mut row = before.clone();
        row.configured = false;
        if row.missing_since.is_none() && row.channel_status.is_some() {
            row.missing_since = Some(now);
        }
        if row != *before {
            to_write.push(row);
        }
    }

    (summary, to_write)
}

/// The `channels` rows as last committed, by channel id.
pub(crate) type RowCache = HashMap<String, ChannelRow>;

async fn load_rows(conn: &mut SqliteConnection) -> Result<RowCache, StoreError> {
    Ok(sqlx::query_as::<_, ChannelRow>("SELECT * FROM channels")
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.channel_id.clone(), r))
        .collect())
}

/// What one observation found, beyond the rows it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObserveSummary {
    /// Distinct channels the API returned.
    pub channels_seen: usize,
    /// Channel rows inserted or updated (0 for an idle poll).
    pub rows_written: usize,
    /// Configured channels the API did not return, newly or still.
    pub missing: Vec<String>,
    /// Configured channels missing since this observation.
    pub newly_missing: Vec<String>,
    /// Configured channels that were missing and are back.
    pub back: Vec<String>,
}

async fn write_row(conn: &mut SqliteConnection, r: &ChannelRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO channels (channel_id, label, channel_name, channel_status, is_recording,
                               immediate_on_air, record_upload_type, record_format, created_time,
                               configured, observed_at, missing_since)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (channel_id) DO UPDATE SET
             label = excluded.label,
             channel_name = excluded.channel_name,
             channel_status = excluded.channel_status,
             is_recording = excluded.is_recording,
             immediate_on_air = excluded.immediate_on_air,
             record_upload_type = excluded.record_upload_type,
             record_format = excluded.record_format,
             created_time = excluded.created_time,
             configured = excluded.configured,
             observed_at = excluded.observed_at,
             missing_since = excluded.missing_since",
    )
    .bind(&r.channel_id)
    .bind(&r.label)
    .bind(&r.channel_name)
    .bind(&r.channel_status)
    .bind(r.is_recording)
    .bind(r.immediate_on_air)
    .bind(&r.record_upload_type)
    .bind(&r.record_format)
    .bind(r.created_time)
    .bind(r.configured)
    .bind(r.observed_at)
    .bind(r.missing_since)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Records one complete observation of the account's channels.
    ///
    /// `seen` must be the whole channel list (all pages); `configured` is every configured
    /// channel id with its label. Only rows whose content changed are written; configured
    /// channels absent from `seen` get `missing_since` and are reported in the summary. The
    /// heartbeat (`last_poll_at`, `channels_seen`) is written on every call.
    #[instrument(skip_all, fields(configured = configured.len()))]
    pub async fn observe_channels<'a>(
        &self,
        seen: impl IntoIterator<Item = &'a Channel>,
        configured: &[(String, Option<String>)],
        now: i64,
    ) -> Result<ObserveSummary, StoreError> {
        let mut tx = self.begin_write().await?;
        let loaded = if self.row_cache().is_none() {
            Some(load_rows(&mut tx).await?)
        } else {
            None
        };
        let (mut summary, to_write) = {
            let mut cache = self.row_cache();
            let existing = match (cache.take(), loaded) {
                (Some(rows), _) | (None, Some(rows)) => cache.insert(rows),
                (None, None) => cache.insert(RowCache::new()),
            };
            compare(existing, seen, configured, now)
        };
        for row in &to_write {
            write_row(&mut tx, row).await?;
        }
        summary.rows_written = to_write.len();
        set_state_in(&mut tx, keys::LAST_POLL_AT, &now.to_string(), now).await?;
        set_state_in(
            &mut tx,
            keys::CHANNELS_SEEN,
            &summary.channels_seen.to_string(),
            now,
        )
        .await?;
        tx.commit().await?;
        self.remember_rows(to_write);
        summary.missing.sort();
        summary.newly_missing.sort();
        summary.back.sort();
        Ok(summary)
    }

    /// The poll heartbeat alone (`last_poll_at`, `channels_seen`): for a complete listing
    /// that found every channel as [`Store::observe_channels`] last stored it.
    pub async fn poll_heartbeat(&self, channels_seen: usize, now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        set_state_in(&mut tx, keys::LAST_POLL_AT, &now.to_string(), now).await?;
        set_state_in(
            &mut tx,
            keys::CHANNELS_SEEN,
            &channels_seen.to_string(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records one channel read on its own (right before a start, or while reconciling): only
    /// that row is written, and only if it changed; its configuration flags and the poll
    /// heartbeat are left alone. Returns whether the row changed.
    #[instrument(skip_all, fields(channel_id = %c.channel_id))]
    pub async fn observe_channel(&self, c: &Channel, now: i64) -> Result<bool, StoreError> {
        let cached = self
            .row_cache()
            .as_ref()
            .map(|rows| rows.get(&c.channel_id).cloned());
        if let Some(Some(before)) = &cached
            && before.says(c)
            && before.observed_at.is_some()
        {
            return Ok(false);
        }
        let mut tx = self.begin_write().await?;
        let before: Option<ChannelRow> = match cached {
            Some(row) => row,
            None => {
                sqlx::query_as::<_, ChannelRow>("SELECT * FROM channels WHERE channel_id = ?1")
                    .bind(&c.channel_id)
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        let mut row = before
            .clone()
            .unwrap_or_else(|| ChannelRow::blank(&c.channel_id));
        if row.apply_observation(c) || row.observed_at.is_none() {
            row.observed_at = Some(now);
        }
        let changed = before.as_ref() != Some(&row);
        if changed {
            write_row(&mut tx, &row).await?;
        }
        tx.commit().await?;
        if changed {
            self.remember_rows(vec![row]);
        }
        Ok(changed)
    }

    /// The rows as last written, when they were read once ([`RowCache`]).
    fn row_cache(&self) -> MutexGuard<'_, Option<RowCache>> {
        // The guarded map is replaced or extended whole; a holder that panicked left it valid.
        self.channel_rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rows a committed transaction wrote.
    fn remember_rows(&self, rows: Vec<ChannelRow>) {
        if let Some(cache) = self.row_cache().as_mut() {
            for row in rows {
                cache.insert(row.channel_id.clone(), row);
            }
        }
    }

    /// Every channel row, configured ones first, then by label and id.
    pub async fn channel_rows(&self) -> Result<Vec<ChannelRow>, StoreError> {
        Ok(sqlx::query_as::<_, ChannelRow>(
            "SELECT * FROM channels ORDER BY configured DESC, label IS NULL, label, channel_id",
        )
        .fetch_all(self.reader())
        .await?)
    }

    /// The channel id that `id_or_label` names: an id in `channels`, else a label there.
    /// `None` when neither matches.
    pub async fn resolve_channel(&self, id_or_label: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT channel_id FROM channels
             WHERE channel_id = ?1 OR label = ?1
             ORDER BY channel_id = ?1 DESC, configured DESC
             LIMIT 1",
        )
        .bind(id_or_label)
        .fetch_optional(self.reader())
        .await?)
    }
}
