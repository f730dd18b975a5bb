//! `records` and `record_status_history`: every recording Live Station reported.
//!
//! A record is upserted by `recordId` from any response that carries it. A field the response
//! lacks never erases a value already known (the startRecord response may omit
//! `shouldDeleteTime`; a later `"-"` never hides a known `objectStorageUrl`). A history row is
//! written on the first sighting and on every real status change, nothing else.

use serde::Serialize;
use sqlx::SqliteConnection;
use tracing::instrument;

use super::{Store, StoreError};
use crate::livestation::Record;

/// The statuses after which nothing more happens to a record (see `RecordStatus::is_final`).
pub(crate) const FINAL_STATUSES_SQL: &str = "('TRANSFER_FINISH', 'PROCESSING_FAIL', 'DELETED')";

/// Status stored when a record arrives without one and none is known.
const UNKNOWN_STATUS: &str = "UNKNOWN";

/// One row of `records`.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct RecordRow {
    pub record_id: i64,
    pub channel_id: String,
    /// `MP4` or `HLS`.
    pub record_type: String,
    pub status: String,
    pub record_seq: Option<i64>,
    pub stream_seq: Option<i64>,
    pub record_begin_time: Option<i64>,
    pub created_time: Option<i64>,
    /// When Live Station deletes its temporary copy.
    pub should_delete_time: Option<i64>,
    /// Seconds.
    pub duration: Option<i64>,
    pub file_name: Option<String>,
    pub upload_path: Option<String>,
    /// `None` until the record is uploaded to Object Storage.
    pub object_storage_url: Option<String>,
    pub resolution: Option<String>,
    pub video_bitrate: Option<i64>,
    pub video_frame_rate: Option<f64>,
    pub audio_bitrate: Option<i64>,
    pub audio_codec: Option<String>,
    pub first_seen_at: i64,
    /// When a field Live Station reports last changed.
    pub updated_at: i64,
    /// When the record entered its current status.
    pub status_changed_at: i64,
    /// When lsrecd last read the record from the API.
    pub last_polled_at: Option<i64>,
    /// When lsrecd warned that the record expires soon.
    pub expiry_warned_at: Option<i64>,
    /// When lsrecd last asked Live Station to upload the record.
    pub upload_requested_at: Option<i64>,
}

impl RecordRow {
    fn first_sighting(r: &Record, now: i64) -> RecordRow {
        let mut row = RecordRow {
            record_id: r.record_id,
            channel_id: String::new(),
            record_type: String::new(),
            status: UNKNOWN_STATUS.to_string(),
            record_seq: None,
            stream_seq: None,
            record_begin_time: None,
            created_time: None,
            should_delete_time: None,
            duration: None,
            file_name: None,
            upload_path: None,
            object_storage_url: None,
            resolution: None,
            video_bitrate: None,
            video_frame_rate: None,
            audio_bitrate: None,
            audio_codec: None,
            first_seen_at: now,
            updated_at: now,
            status_changed_at: now,
            last_polled_at: Some(now),
            expiry_warned_at: None,
            upload_requested_at: None,
        };
        row.merge(r);
        row
    }

    /// Takes every value the API gave; keeps the known one where it gave none.
    fn merge(&mut self, r: &Record) {
        fn keep<T: Clone>(slot: &mut Option<T>, new: &Option<T>) {
            if new.is_some() {
                slot.clone_from(new);
            }
        }
        fn keep_text(slot: &mut String, new: &str) {
            if !new.trim().is_empty() {
                *slot = new.to_string();
            }
        }
        keep_text(&mut self.channel_id, &r.channel_id);
        keep_text(&mut self.record_type, &r.record_type);
        keep_text(&mut self.status, r.status.as_str());
        keep(&mut self.record_seq, &r.record_seq);
        keep(&mut self.stream_seq, &r.stream_seq);
        keep(&mut self.record_begin_time, &r.record_begin_time);
        keep(&mut self.created_time, &r.created_time);
        keep(&mut self.should_delete_time, &r.should_delete_time);
        keep(&mut self.duration, &r.duration);
        keep(&mut self.file_name, &r.file_name);
        keep(&mut self.upload_path, &r.upload_path);
        keep(&mut self.object_storage_url, &r.object_storage_url);
        keep(&mut self.resolution, &r.resolution);
        keep(&mut self.video_bitrate, &r.video_bitrate);
        keep(&mut self.video_frame_rate, &r.video_frame_rate);
        keep(&mut self.audio_bitrate, &r.audio_bitrate);
        keep(&mut self.audio_codec, &r.audio_codec);
    }
}

/// Something the engine may want to act on or tell about: a new record, a status change, an
/// upload that completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordChange {
    pub record_id: i64,
    pub channel_id: String,
    /// `None` on the first sighting.
    pub previous_status: Option<String>,
    pub status: String,
    /// The record gained its `object_storage_url` in this update.
    pub became_uploaded: bool,
}

/// One row of `record_status_history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct HistoryRow {
    pub record_id: i64,
    pub status: String,
    pub previous_status: Option<String>,
    pub observed_at: i64,
}

/// Which records [`Store::records`] returns; every field narrows, `Default` is "all".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordFilter {
    pub channel_id: Option<String>,
    pub status: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<i64>,
}

async fn insert_history(
    conn: &mut SqliteConnection,
    record_id: i64,
    status: &str,
    previous: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO record_status_history (record_id, status, previous_status, observed_at)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(record_id)
    .bind(status)
    .bind(previous)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_record(conn: &mut SqliteConnection, r: &RecordRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO records (record_id, channel_id, record_type, status, record_seq, stream_seq,
                              record_begin_time, created_time, should_delete_time, duration,
                              file_name, upload_path, object_storage_url, resolution,
                              video_bitrate, video_frame_rate, audio_bitrate, audio_codec,
                              first_seen_at, updated_at, status_changed_at, last_polled_at,
                              expiry_warned_at, upload_requested_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20, ?21, ?22, ?23, ?24)
         ON CONFLICT (record_id) DO UPDATE SET
             channel_id = excluded.channel_id,
             record_type = excluded.record_type,
             status = excluded.status,
             record_seq = excluded.record_seq,
             stream_seq = excluded.stream_seq,
             record_begin_time = excluded.record_begin_time,
             created_time = excluded.created_time,
             should_delete_time = excluded.should_delete_time,
             duration = excluded.duration,
             file_name = excluded.file_name,
             upload_path = excluded.upload_path,
             object_storage_url = excluded.object_storage_url,
             resolution = excluded.resolution,
             video_bitrate = excluded.video_bitrate,
             video_frame_rate = excluded.video_frame_rate,
             audio_bitrate = excluded.audio_bitrate,
             audio_codec = excluded.audio_codec,
             updated_at = excluded.updated_at,
             status_changed_at = excluded.status_changed_at,
             last_polled_at = excluded.last_polled_at",
    )
    .bind(r.record_id)
    .bind(&r.channel_id)
    .bind(&r.record_type)
    .bind(&r.status)
    .bind(r.record_seq)
    .bind(r.stream_seq)
    .bind(r.record_begin_time)
    .bind(r.created_time)
    .bind(r.should_delete_time)
    .bind(r.duration)
    .bind(&r.file_name)
    .bind(&r.upload_path)
    .bind(&r.object_storage_url)
    .bind(&r.resolution)
    .bind(r.video_bitrate)
    .bind(r.video_frame_rate)
    .bind(r.audio_bitrate)
    .bind(&r.audio_codec)
    .bind(r.first_seen_at)
    .bind(r.updated_at)
    .bind(r.status_changed_at)
    .bind(r.last_polled_at)
    .bind(r.expiry_warned_at)
    .bind(r.upload_requested_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Upserts `records` inside the caller's transaction; see [`Store::upsert_records`].
pub(crate) async fn upsert_records_in(
    conn: &mut SqliteConnection,
    records: &[Record],
    now: i64,
) -> Result<Vec<RecordChange>, StoreError> {
    let mut changes = Vec::new();
    for r in records {
        let existing: Option<RecordRow> =
            sqlx::query_as("SELECT * FROM records WHERE record_id = ?1")
                .bind(r.record_id)
                .fetch_optional(&mut *conn)
                .await?;
        match existing {
            None => {
                let row = RecordRow::first_sighting(r, now);
                write_record(conn, &row).await?;
                insert_history(conn, row.record_id, &row.status, None, now).await?;
                changes.push(RecordChange {
                    record_id: row.record_id,
                    channel_id: row.channel_id.clone(),
                    previous_status: None,
                    status: row.status.clone(),
                    became_uploaded: row.object_storage_url.is_some(),
                });
            }
            Some(before) => {
                let mut row = before.clone();
                row.merge(r);
                let status_changed = row.status != before.status;
                let became_uploaded =
                    before.object_storage_url.is_none() && row.object_storage_url.is_some();
                if row == before {
                    sqlx::query("UPDATE records SET last_polled_at = ?2 WHERE record_id = ?1")
                        .bind(row.record_id)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                    continue;
                }
                row.updated_at = now;
                row.last_polled_at = Some(now);
                if status_changed {
                    row.status_changed_at = now;
                }
                write_record(conn, &row).await?;
                if status_changed {
                    insert_history(conn, row.record_id, &row.status, Some(&before.status), now)
                        .await?;
                }
                if status_changed || became_uploaded {
                    changes.push(RecordChange {
                        record_id: row.record_id,
                        channel_id: row.channel_id.clone(),
                        previous_status: Some(before.status.clone()),
                        status: row.status.clone(),
                        became_uploaded,
                    });
                }
            }
        }
    }
    Ok(changes)
}

impl Store {
    /// Upserts records by `recordId` in one transaction and returns what changed that matters:
    /// new records, status changes (each also a history row) and completed uploads.
    #[instrument(skip_all, fields(records = records.len()))]
    pub async fn upsert_records(
        &self,
        records: &[Record],
        now: i64,
    ) -> Result<Vec<RecordChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        let changes = upsert_records_in(&mut tx, records, now).await?;
        tx.commit().await?;
        Ok(changes)
    }

    /// Records matching `filter`, newest first (by begin time, then id).
    pub async fn records(&self, filter: &RecordFilter) -> Result<Vec<RecordRow>, StoreError> {
        Ok(sqlx::query_as::<_, RecordRow>(
            "SELECT * FROM records
             WHERE (?1 IS NULL OR channel_id = ?1)
               AND (?2 IS NULL OR status = ?2)
             ORDER BY COALESCE(record_begin_time, created_time, first_seen_at) DESC,
                      record_id DESC
             LIMIT ?3",
        )
        .bind(&filter.channel_id)
        .bind(&filter.status)
        .bind(filter.limit.unwrap_or(-1))
        .fetch_all(self.reader())
        .await?)
    }

    /// One record.
    pub async fn record(&self, record_id: i64) -> Result<RecordRow, StoreError> {
        sqlx::query_as::<_, RecordRow>("SELECT * FROM records WHERE record_id = ?1")
            .bind(record_id)
            .fetch_optional(self.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "record",
                id: record_id.to_string(),
            })
    }

    /// Every status `record_id` was seen in, oldest first.
    pub async fn record_history(&self, record_id: i64) -> Result<Vec<HistoryRow>, StoreError> {
        Ok(sqlx::query_as::<_, HistoryRow>(
            "SELECT record_id, status, previous_status, observed_at
             FROM record_status_history WHERE record_id = ?1 ORDER BY observed_at, id",
        )
        .bind(record_id)
        .fetch_all(self.reader())
        .await?)
    }

    /// Channels with at least one record not in a final state: the ones whose records the
    /// engine must keep reading.
    pub async fn channels_with_unfinished_records(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT channel_id FROM records
             WHERE status NOT IN {FINAL_STATUSES_SQL} AND channel_id <> ''
             ORDER BY channel_id"
        )))
        .fetch_all(self.reader())
        .await?)
    }

    /// Records not uploaded, not deleted, whose deletion is due within `warn_before_ms` of
    /// `now` (or past), and that were never warned about; soonest first.
    pub async fn expiring_unwarned(
        &self,
        now: i64,
        warn_before_ms: i64,
    ) -> Result<Vec<RecordRow>, StoreError> {
        Ok(sqlx::query_as::<_, RecordRow>(
            "SELECT r.* FROM records r
             JOIN unuploaded_records u ON u.record_id = r.record_id
             WHERE r.should_delete_time <= ?1 + ?2
               AND r.expiry_warned_at IS NULL
             ORDER BY r.should_delete_time, r.record_id",
        )
        .bind(now)
        .bind(warn_before_ms)
        .fetch_all(self.reader())
        .await?)
    }

    /// Notes that the expiry warning for `record_id` was given.
    pub async fn mark_expiry_warned(&self, record_id: i64, now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE records SET expiry_warned_at = ?2 WHERE record_id = ?1")
            .bind(record_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                what: "record",
                id: record_id.to_string(),
            });
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the upload API accepts (`TRANSFER_READY`, `TRANSFER_FAIL`) that expire within
    /// `warn_before_ms` and for which no upload was requested since they entered that status.
    pub async fn uploadable_expiring(
        &self,
        now: i64,
        warn_before_ms: i64,
    ) -> Result<Vec<RecordRow>, StoreError> {
        Ok(sqlx::query_as::<_, RecordRow>(
            "SELECT r.* FROM records r
             JOIN unuploaded_records u ON u.record_id = r.record_id
             WHERE r.should_delete_time <= ?1 + ?2
               AND r.status IN ('TRANSFER_READY', 'TRANSFER_FAIL')
               AND (r.upload_requested_at IS NULL OR r.upload_requested_at < r.status_changed_at)
             ORDER BY r.should_delete_time, r.record_id",
        )
        .bind(now)
        .bind(warn_before_ms)
        .fetch_all(self.reader())
        .await?)
    }

    /// Notes that an upload of `record_ids` was requested at `now`.
    pub async fn mark_upload_requested(
        &self,
        record_ids: &[i64],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for id in record_ids {
            sqlx::query("UPDATE records SET upload_requested_at = ?2 WHERE record_id = ?1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livestation::RecordStatus;

    #[test]
    fn the_sql_list_of_final_statuses_matches_the_model() {
        let all = [
            "RECORDING",
            "PROCESSING",
            "PROCESSING_FAIL",
            "TRANSFER_READY",
            "TRANSFER",
            "TRANSFER_FINISH",
            "TRANSFER_FAIL",
            "DELETED",
        ];
        for s in all {
            let quoted = format!("'{s}'");
            assert_eq!(
                RecordStatus::parse(s).is_final(),
                FINAL_STATUSES_SQL.contains(&quoted),
                "{s}"
            );
        }
    }
}
