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

use futures_util::TryStreamExt as _;
use serde::Serialize;
use sqlx::{QueryBuilder, SqliteConnection};
use tracing::instrument;

use super::state::{keys, set_state_in};
use super::{Store, StoreError};
use crate::config::Config;
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

/// Compares observations with the rows as they are, in as many steps as it takes: what to
/// write, and what was found.
///
/// [`Comparison::seen`] takes channels the listing returned; [`Comparison::absent`] configured
/// channels it did not return, and [`Comparison::unlisted`] rows of channels that may be
/// neither (both skip channels already compared). Each step is given the existing rows of the
/// channels it names, so that a complete listing of thousands of channels can be compared a
/// few hundred rows at a time.
struct Comparison<'a, L> {
    labels: &'a L,
    now: i64,
    summary: ObserveSummary,
    /// The channels compared so far.
    done: HashSet<&'a str>,
}

impl<'a, L: Labels> Comparison<'a, L> {
    fn new(labels: &'a L, now: i64) -> Comparison<'a, L> {
        Comparison {
            labels,
            now,
            summary: ObserveSummary::default(),
            done: HashSet::new(),
        }
    }

    /// Whether the channel was compared already.
    fn has_done(&self, channel_id: &str) -> bool {
        self.done.contains(channel_id)
    }

    /// Channels the listing returned: the rows to write.
    fn seen(
        &mut self,
        existing: &HashMap<String, ChannelRow>,
        seen: impl IntoIterator<Item = &'a Channel>,
    ) -> Vec<ChannelRow> {
        let mut to_write = Vec::new();
        for c in seen {
            if !self.done.insert(c.channel_id.as_str()) {
                continue; // the same channel on two pages
            }
            self.summary.channels_seen += 1;
            let before = existing.get(&c.channel_id);
            let label = self.labels.label(&c.channel_id);
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
                row.observed_at = Some(self.now);
            }
            match label {
                Some(label) => {
                    row.configured = true;
                    row.label = label.clone();
                    if row.missing_since.is_some() {
                        self.summary.back.push(c.channel_id.clone());
                    }
                }
                None => row.configured = false,
            }
            row.missing_since = None;
            if before != Some(&row) {
                to_write.push(row);
            }
        }
        to_write
    }

    /// Configured channels the listing did not return: the rows to write.
    fn absent(
        &mut self,
        existing: &HashMap<String, ChannelRow>,
        absent: impl IntoIterator<Item = (&'a str, &'a Option<String>)>,
    ) -> Vec<ChannelRow> {
        let mut to_write = Vec::new();
        for (id, label) in absent {
            if !self.done.insert(id) {
                continue;
            }
            let before = existing.get(id);
            let mut row = before.cloned().unwrap_or_else(|| ChannelRow::blank(id));
            row.configured = true;
            row.label = label.clone();
            if row.missing_since.is_none() {
                row.missing_since = Some(self.now);
                self.summary.newly_missing.push(id.to_string());
            }
            self.summary.missing.push(id.to_string());
            if before != Some(&row) {
                to_write.push(row);
            }
        }
        to_write
    }

    /// Whether a channel is neither compared yet nor configured: its row, if it has one, may
    /// have to change ([`Comparison::unlisted`]).
    fn is_unlisted(&self, channel_id: &str) -> bool {
        !self.has_done(channel_id) && self.labels.label(channel_id).is_none()
    }

    /// Rows of channels that may be neither listed nor configured: the rows to write.
    fn unlisted<'u>(&self, unlisted: impl IntoIterator<Item = &'u ChannelRow>) -> Vec<ChannelRow> {
        let mut to_write = Vec::new();
        for before in unlisted {
            let listed_before = before.missing_since.is_none() && before.channel_status.is_some();
            if !self.is_unlisted(&before.channel_id) || !(before.configured || listed_before) {
                continue; // listed, configured, or already marked as neither
            }
            // Neither returned nor configured: a channel deleted from the account, or one
            // removed from the configuration that the API no longer lists.
            let mut row = before.clone();
            row.configured = false;
            if listed_before {
                row.missing_since = Some(self.now);
            }
            if row != *before {
                to_write.push(row);
            }
        }
        to_write
    }
}

/// The configured channels and their labels.
pub trait Labels {
    /// The label of a configured channel (`Some(None)`: configured without one); `None` for a
    /// channel not configured.
    fn label(&self, channel_id: &str) -> Option<&Option<String>>;

    /// Every configured channel, with its label.
    fn configured(&self) -> impl Iterator<Item = (&str, &Option<String>)>;
}

impl Labels for HashMap<String, Option<String>> {
    fn label(&self, channel_id: &str) -> Option<&Option<String>> {
        self.get(channel_id)
    }

    fn configured(&self) -> impl Iterator<Item = (&str, &Option<String>)> {
        self.iter().map(|(id, label)| (id.as_str(), label))
    }
}

impl Labels for Config {
    fn label(&self, channel_id: &str) -> Option<&Option<String>> {
        self.channel_with_id(channel_id).map(|c| &c.label)
    }

    fn configured(&self) -> impl Iterator<Item = (&str, &Option<String>)> {
        self.channels.iter().map(|c| (c.id.as_str(), &c.label))
    }
}

/// How many rows a complete observation reads and writes at a time: its memory stays that of a
/// few hundred rows however many channels there are.
const ROWS_AT_A_TIME: usize = 500;

/// The rows of these channels, by channel id (a channel without a row is left out).
async fn load_rows_of(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<HashMap<String, ChannelRow>, StoreError> {
    let mut rows = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_AT_A_TIME) {
        let mut query = QueryBuilder::new("SELECT * FROM channels WHERE channel_id IN (");
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        query.push(")");
        for row in query
            .build_query_as::<ChannelRow>()
            .fetch_all(&mut *conn)
            .await?
        {
            rows.insert(row.channel_id.clone(), row);
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

/// Writes these rows; returns how many.
async fn write_rows(
    conn: &mut SqliteConnection,
    rows: Vec<ChannelRow>,
) -> Result<usize, StoreError> {
    for row in &rows {
        write_row(conn, row).await?;
    }
    Ok(rows.len())
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
    #[instrument(skip_all)]
    pub async fn observe_channels<'a>(
        &self,
        seen: impl IntoIterator<Item = &'a Channel>,
        configured: &'a impl Labels,
        now: i64,
    ) -> Result<ObserveSummary, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut comparison = Comparison::new(configured, now);
        let mut rows_written = 0;

        let mut seen = seen.into_iter().peekable();
        while seen.peek().is_some() {
            let chunk: Vec<&Channel> = seen.by_ref().take(ROWS_AT_A_TIME).collect();
            let ids: Vec<&str> = chunk.iter().map(|c| c.channel_id.as_str()).collect();
            let existing = load_rows_of(&mut tx, &ids).await?;
            rows_written += write_rows(&mut tx, comparison.seen(&existing, chunk)).await?;
        }

        let absent: Vec<(&str, &Option<String>)> = configured
            .configured()
            .filter(|(id, _)| !comparison.has_done(id))
            .collect();
        for chunk in absent.chunks(ROWS_AT_A_TIME) {
            let ids: Vec<&str> = chunk.iter().map(|(id, _)| *id).collect();
            let existing = load_rows_of(&mut tx, &ids).await?;
            let to_write = comparison.absent(&existing, chunk.iter().copied());
            rows_written += write_rows(&mut tx, to_write).await?;
        }

        // The rows of channels neither listed nor configured that may have to change (the
        // query leaves out those `Comparison::unlisted` would pass over anyway): their ids
        // first (few, as a rule), then the rows.
        let mut unlisted: Vec<String> = Vec::new();
        {
            let mut candidates = sqlx::query_scalar::<_, String>(
                "SELECT channel_id FROM channels
                 WHERE configured OR (missing_since IS NULL AND channel_status IS NOT NULL)",
            )
            .fetch(&mut *tx);
            while let Some(id) = candidates.try_next().await? {
                if comparison.is_unlisted(&id) {
                    unlisted.push(id);
                }
            }
        }
        for chunk in unlisted.chunks(ROWS_AT_A_TIME) {
            let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let existing = load_rows_of(&mut tx, &ids).await?;
            rows_written += write_rows(&mut tx, comparison.unlisted(existing.values())).await?;
        }

        let mut summary = comparison.summary;
        summary.rows_written = rows_written;
        self.finish_observation(tx, summary, now).await
    }

    /// Records what changed in the channel list since it was last stored
    /// ([`Store::observe_channels`] or this): only the rows of the channels named in `changes`
    /// are read and compared, so an observation where little changed costs little however many
    /// channels there are. `configured` names the configured channels and their labels; the
    /// summary's `channels_seen` is `listed`.
    #[instrument(skip_all, fields(changed = changes.changed.len(), absent = changes.absent.len(), gone = changes.gone.len()))]
    pub async fn observe_channel_changes(
        &self,
        changes: ChannelChanges<'_>,
        configured: &impl Labels,
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
        let mut comparison = Comparison::new(configured, now);
        let mut to_write = comparison.seen(&existing, changes.changed);
        to_write.extend(comparison.absent(&existing, changes.absent));
        to_write.extend(comparison.unlisted(gone));
        let rows_written = write_rows(&mut tx, to_write).await?;
        let mut summary = comparison.summary;
        summary.channels_seen = listed;
        summary.rows_written = rows_written;
        self.finish_observation(tx, summary, now).await
    }

    /// Writes the heartbeat of an observation whose rows are written, and commits.
    async fn finish_observation(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
        mut summary: ObserveSummary,
        now: i64,
    ) -> Result<ObserveSummary, StoreError> {
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
