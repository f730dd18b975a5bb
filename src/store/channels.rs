//! `channels`: what the channel list last said about each channel, written only on change.
//!
//! The daemon polls every few seconds; an idle poll must cost no channel writes and, at
//! thousands of channels, no channel reads either. The first complete observation after a
//! start (or a reload) is compared with every row ([`Store::observe_channels`]); after it the
//! engine hands over only what changed in its view since ([`Store::observe_channel_changes`]),
//! whose rows alone are read, compared and, where they differ, written, plus one heartbeat in
//! `daemon_state`. A listing in which nothing changed writes the heartbeat alone. The engine
//! lock makes the daemon the only writer of this table while it runs.

use std::collections::{HashMap, HashSet};

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

/// Compares observations with the rows as they are: what to write, and what was found.
///
/// `seen` are channels the listing returned; `label_of` says whether a channel is configured
/// and with which label; `absent` are configured channels the listing did not return, and
/// `unlisted` rows of channels that may be neither (both skip channels in `seen`). `existing`
/// must hold the row of every channel named in the three, where there is one.
fn compare<'s, 'x, 'u>(
    existing: &HashMap<String, ChannelRow>,
    seen: impl IntoIterator<Item = &'s Channel>,
    labels: &impl Labels,
    absent: impl IntoIterator<Item = (&'x str, &'x Option<String>)>,
    unlisted: impl IntoIterator<Item = &'u ChannelRow>,
    now: i64,
) -> (ObserveSummary, Vec<ChannelRow>) {
    let mut summary = ObserveSummary::default();
    let mut done: HashSet<&str> = HashSet::new();
    let mut to_write: Vec<ChannelRow> = Vec::new();

    for c in seen {
        if !done.insert(c.channel_id.as_str()) {
            continue; // the same channel on two pages
        }
        let before = existing.get(&c.channel_id);
        let label = labels.label(&c.channel_id);
        if let Some(b) = before
            && b.says(c)
            && b.observed_at.is_some()
            && b.missing_since.is_none()
            && match label {
                Some(l) => b.configured && b.label == *l,
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
                row.label = label.clone();
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

    for (id, label) in absent {
        if !done.insert(id) {
            continue;
        }
        let before = existing.get(id);
        let mut row = before.cloned().unwrap_or_else(|| ChannelRow::blank(id));
        row.configured = true;
        row.label = label.clone();
        if row.missing_since.is_none() {
            row.missing_since = Some(now);
            summary.newly_missing.push(id.to_string());
        }
        summary.missing.push(id.to_string());
        if before != Some(&row) {
            to_write.push(row);
        }
    }

    for before in unlisted {
        let id = before.channel_id.as_str();
        if done.contains(id)
            || labels.label(id).is_some()
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

/// The configured channels' labels, by channel id: `None` for a channel not configured.
pub trait Labels {
    fn label(&self, channel_id: &str) -> Option<&Option<String>>;
}

impl Labels for HashMap<String, Option<String>> {
    fn label(&self, channel_id: &str) -> Option<&Option<String>> {
        self.get(channel_id)
    }
}

impl Labels for HashMap<&str, &Option<String>> {
    fn label(&self, channel_id: &str) -> Option<&Option<String>> {
        self.get(channel_id).copied()
    }
}

/// Every row of `channels`, by channel id.
async fn load_rows(conn: &mut SqliteConnection) -> Result<HashMap<String, ChannelRow>, StoreError> {
    Ok(sqlx::query_as::<_, ChannelRow>("SELECT * FROM channels")
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.channel_id.clone(), r))
        .collect())
}

/// The rows of these channels, by channel id (a channel without a row is left out).
async fn load_rows_of(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<HashMap<String, ChannelRow>, StoreError> {
    let mut rows = HashMap::new();
    for &id in ids {
        if rows.contains_key(id) {
            continue;
        }
        if let Some(row) =
            sqlx::query_as::<_, ChannelRow>("SELECT * FROM channels WHERE channel_id = ?1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        {
            rows.insert(id.to_string(), row);
        }
    }
    Ok(rows)
}

/// What changed in the channel list since it was last stored whole or in part: the input of
/// [`Store::observe_channel_changes`].
#[derive(Debug, Default)]
pub struct ChannelChanges<'a> {
    /// Channels the listing returned whose observation changed since it was last stored (or
    /// that are new).
    pub changed: Vec<&'a Channel>,
    /// Configured channels the listing did not return, with their labels.
    pub absent: Vec<(&'a str, &'a Option<String>)>,
    /// Channels that left the listing since it was last stored.
    pub gone: Vec<&'a str>,
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
    /// channel id with its label. Every row is read and compared, and only rows whose content
    /// changed are written; configured channels absent from `seen` get `missing_since` and are
    /// reported in the summary. The heartbeat (`last_poll_at`, `channels_seen`) is written on
    /// every call. After the first, [`Store::observe_channel_changes`] stores what changed.
    #[instrument(skip_all, fields(configured = configured.len()))]
    pub async fn observe_channels<'a>(
        &self,
        seen: impl IntoIterator<Item = &'a Channel>,
        configured: &[(String, Option<String>)],
        now: i64,
    ) -> Result<ObserveSummary, StoreError> {
        let labels: HashMap<&str, &Option<String>> = configured
            .iter()
            .map(|(id, label)| (id.as_str(), label))
            .collect();
        let mut tx = self.begin_write().await?;
        let existing = load_rows(&mut tx).await?;
        let (summary, to_write) = compare(
            &existing,
            seen,
            &labels,
            configured.iter().map(|(id, label)| (id.as_str(), label)),
            existing.values(),
            now,
        );
        self.finish_observation(tx, summary, to_write, now).await
    }

    /// Records what changed in the channel list since it was last stored
    /// ([`Store::observe_channels`] or this): only the rows of the channels named in `changes`
    /// are read and compared, so an observation where little changed costs little however many
    /// channels there are. `configured` maps the configured channels to their labels; the
    /// summary's `channels_seen` is `listed`.
    #[instrument(skip_all, fields(changed = changes.changed.len(), absent = changes.absent.len(), gone = changes.gone.len()))]
    pub async fn observe_channel_changes(
        &self,
        changes: ChannelChanges<'_>,
        configured: &HashMap<String, Option<String>>,
        listed: usize,
        now: i64,
    ) -> Result<ObserveSummary, StoreError> {
        let mut ids: Vec<&str> = Vec::new();
        ids.extend(changes.changed.iter().map(|c| c.channel_id.as_str()));
        ids.extend(changes.absent.iter().map(|(id, _)| *id));
        ids.extend(changes.gone.iter().copied());
        let mut tx = self.begin_write().await?;
        let existing = load_rows_of(&mut tx, &ids).await?;
        let gone: Vec<&ChannelRow> = changes
            .gone
            .iter()
            .filter_map(|id| existing.get(*id))
            .collect();
        let (mut summary, to_write) = compare(
            &existing,
            changes.changed,
            configured,
            changes.absent,
            gone,
            now,
        );
        summary.channels_seen = listed;
        self.finish_observation(tx, summary, to_write, now).await
    }

    /// Writes the rows an observation changed and the heartbeat, in the transaction `tx`.
    async fn finish_observation(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
        mut summary: ObserveSummary,
        to_write: Vec<ChannelRow>,
        now: i64,
    ) -> Result<ObserveSummary, StoreError> {
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
        let mut tx = self.begin_write().await?;
        let before: Option<ChannelRow> =
            sqlx::query_as::<_, ChannelRow>("SELECT * FROM channels WHERE channel_id = ?1")
                .bind(&c.channel_id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(before) = &before
            && before.says(c)
            && before.observed_at.is_some()
        {
            return Ok(false);
        }
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
        Ok(changed)
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
