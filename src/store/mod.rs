//! The SQLite store: the only module that holds SQL.
//!
//! The database is the operators' window on lsrecd (`docs/database.md`): they read it with
//! `sqlite3 -readonly` while the daemon runs. Its schema lives in `migrations/`, embedded at
//! compile time and applied by [`Store::open`]; `docs/database.md` describes it for operators.
//!
//! # Layout
//!
//! - [`Store`] (this file): opening, migrating, the write and read pools, pruning.
//! - `channels`: observed channel state, written only when it changes.
//! - `records`: recordings by `recordId`, their status history, retention bookkeeping.
//! - `occurrences`: schedule firings and their state machine.
//! - `actions`: the intent journal of startRecord / stopRecord / upload calls.
//! - `claims`: recordings lsrecd owns and manual claims.
//! - `outages`: starts and stops that keep failing, one row per outage.
//! - `events`: what operators are told; `state`: the daemon's key/value facts.
//! - `values`: the enums stored as text (operations, states, triggers, event kinds, reasons).
//! - `report`: what `lsrecd status` shows.
//!
//! # Concurrency
//!
//! One writer: a pool with a single connection whose transactions start with `BEGIN IMMEDIATE`,
//! so a write never fails half-way for want of the lock. Reads go through a separate pool of
//! read-only connections; in WAL mode they never block the writer and see committed data.
//!
//! Every time is epoch milliseconds passed in by the caller: the store never reads the clock.

mod actions;
mod channels;
mod claims;
mod error;
mod events;
mod occurrences;
mod outages;
mod records;
mod report;
mod state;
mod values;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, Transaction};
use tracing::instrument;

pub use actions::{ActionOutcome, ActionRow, NewAction};
pub use channels::{ChannelChanges, ChannelRow, ObserveSummary};
pub use claims::{ManualClaimRow, OwnedRow};
pub use error::{DatabaseError, StoreError};
pub use events::{EventRow, NewEvent};
pub use occurrences::{NewOccurrence, OccurrenceRow, OccurrenceState};
pub use outages::{NewOutage, OutageRow};
pub use records::{HistoryRow, RecordChange, RecordFilter, RecordRow};
pub use report::{ActiveRecording, ExpiringRecord, FailureRow, HaReport, StatusReport};
pub use state::keys;
pub use values::{ActionState, EventKind, Mutation, OccurrenceReason, OutageOutcome, Trigger};

/// The schema, embedded from `migrations/` at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// How long a statement waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller waits for the single write connection.
const WRITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// Read connections for the daemon (the engine, metrics and reports may read concurrently).
const READ_CONNECTIONS: u32 = 4;

/// The database: a write pool of one connection and a read pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    /// `None` when opened read-only.
    write: Option<SqlitePool>,
    read: SqlitePool,
    path: PathBuf,
    /// `PRAGMA max_page_count` for every write transaction; 0 while no limit was ever set.
    max_pages: Arc<AtomicU64>,
}

/// SQLite's own ceiling on `max_page_count`: "no limit but the disk".
const UNLIMITED_PAGES: u64 = 4_294_967_294;

/// What [`Store::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneStats {
    /// Finished actions (SUCCEEDED, FAILED, RECONCILED) requested before the cut-off.
    pub actions: u64,
    /// Events before the cut-off.
    pub events: u64,
}

/// The newest schema version this binary knows.
pub fn binary_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

fn known_versions() -> BTreeSet<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

/// Options every connection shares: WAL, full sync, foreign keys, busy timeout.
fn base_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        // 512 KiB of page cache per connection instead of SQLite's 2 MiB: lsrecd reads little
        // and rarely (the channels it compares are kept in memory), and five connections at
        // 2 MiB were a third of the daemon's memory at 10,000 channels.
        .pragma("cache_size", "-512")
}

fn write_options(path: &Path) -> SqliteConnectOptions {
    base_options(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
}

/// Read-only connections never set the journal mode: that is a write.
fn read_options(path: &Path) -> SqliteConnectOptions {
    base_options(path).read_only(true)
}

/// A migration recorded in `_sqlx_migrations`.
#[derive(Debug)]
struct Applied {
    version: i64,
    success: bool,
}

/// The applied migrations, or `None` when the file has no migration table.
async fn applied_migrations(
    conn: &mut SqliteConnection,
) -> Result<Option<Vec<Applied>>, StoreError> {
    let table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if table.is_none() {
        return Ok(None);
    }
    let rows: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?;
    Ok(Some(
        rows.into_iter()
            .map(|(version, success)| Applied { version, success })
            .collect(),
    ))
}

/// Refuses a database that a newer binary migrated, or whose last migration failed half-way.
fn refuse_newer(applied: &[Applied]) -> Result<(), StoreError> {
    let known = known_versions();
    let db = applied.iter().map(|a| a.version).max().unwrap_or(0);
    if applied.iter().any(|a| !known.contains(&a.version)) {
        return Err(StoreError::SchemaTooNew {
            db,
            binary: binary_schema_version(),
        });
    }
    if let Some(dirty) = applied.iter().find(|a| !a.success) {
        return Err(StoreError::Migrate(format!(
            "migration {} was left unfinished; restore the database from a backup",
            dirty.version
        )));
    }
    Ok(())
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StoreError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        StoreError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

impl Store {
    /// Opens (creating it if needed) and migrates the database at `path`.
    ///
    /// A database that a newer lsrecd migrated is refused with [`StoreError::SchemaTooNew`]
    /// before anything is written to it.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        match std::fs::metadata(path) {
            Ok(_) => {
                let mut conn = SqliteConnection::connect_with(&read_options(path))
                    .await
                    .map_err(|e| StoreError::open(path, e))?;
                let applied = applied_migrations(&mut conn).await;
                // Closing is best effort: the connection only read.
                let _ = conn.close().await;
                if let Some(applied) = applied? {
                    refuse_newer(&applied)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path, e)),
        }

        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(WRITE_ACQUIRE_TIMEOUT)
            // A COMMIT that failed (disk full, I/O error) leaves the connection inside its
            // transaction; such a connection is closed (which rolls it back) rather than handed
            // out again, so writes resume by themselves once the fault clears.
            .after_release(|conn, _| {
                Box::pin(async move {
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!(
                            "closing a database connection left inside a failed transaction"
                        );
                    }
                    Ok(clean)
                })
            })
            .connect_with(write_options(path))
            .await
            .map_err(|e| StoreError::open(path, e))?;
        if let Err(e) = MIGRATOR.run(&write).await {
            write.close().await;
            return Err(match e {
                sqlx::migrate::MigrateError::VersionMissing(v) => StoreError::SchemaTooNew {
                    db: v,
                    binary: binary_schema_version(),
                },
                other => StoreError::Migrate(other.to_string()),
            });
        }
        let read = match SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .min_connections(0)
            .connect_with(read_options(path))
            .await
        {
            Ok(pool) => pool,
            Err(e) => {
                write.close().await;
                return Err(StoreError::open(path, e));
            }
        };
        tracing::debug!(schema = binary_schema_version(), "database ready");
        Ok(Store {
            write: Some(write),
            read,
            path: path.to_path_buf(),
            max_pages: Arc::default(),
        })
    }

    /// Opens an existing database for reading only (`mode=ro`): nothing is created or migrated.
    ///
    /// Works while the daemon writes, and for a user who may only read the file. A database
    /// whose schema differs from this binary's is refused ([`StoreError::SchemaTooNew`],
    /// [`StoreError::SchemaTooOld`]); a missing file is [`StoreError::Missing`].
    #[instrument(skip_all, fields(path = %path.display()))]
    pub async fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        std::fs::metadata(path).map_err(|e| io_error(path, e))?;
        let read = match Self::connect_read_only(path, read_options(path)).await {
            Ok(pool) => pool,
            // A WAL database needs its `-shm` file even to read. When the daemon is not
            // running that file is gone, and a user who cannot write the directory cannot
            // create it. With no `-wal` file there is nothing uncheckpointed to miss, so the
            // main file alone is the whole database: read it as immutable.
            Err(first) if !wal_path(path).exists() => {
                tracing::debug!(error = %first, "reading the database file as immutable");
                match Self::connect_read_only(path, read_options(path).immutable(true)).await {
                    Ok(pool) => pool,
                    Err(_) => return Err(first),
                }
            }
            Err(e) => return Err(e),
        };
        let store = Store {
            write: None,
            read,
            path: path.to_path_buf(),
            max_pages: Arc::default(),
        };
        if let Err(e) = store.check_schema_matches().await {
            store.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// A one-connection read pool that has proven it can read the schema.
    async fn connect_read_only(
        path: &Path,
        options: SqliteConnectOptions,
    ) -> Result<SqlitePool, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::open(path, e))?;
        let probe: Result<i64, sqlx::Error> =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master")
                .fetch_one(&pool)
                .await;
        match probe {
            Ok(_) => Ok(pool),
            Err(e) => {
                pool.close().await;
                Err(StoreError::open(path, e))
            }
        }
    }

    async fn check_schema_matches(&self) -> Result<(), StoreError> {
        let mut conn = self.read.acquire().await?;
        let applied =
            applied_migrations(&mut conn)
                .await?
                .ok_or_else(|| StoreError::NotLsrecdDatabase {
                    path: self.path.clone(),
                })?;
        refuse_newer(&applied)?;
        let db = applied.iter().map(|a| a.version).max().unwrap_or(0);
        let have: BTreeSet<i64> = applied.iter().map(|a| a.version).collect();
        if known_versions().iter().any(|v| !have.contains(v)) {
            return Err(StoreError::SchemaTooOld {
                db,
                binary: binary_schema_version(),
            });
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest migration applied to this database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
            .fetch_one(&self.read)
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// Closes both pools, waiting for connections in use to be returned. The last connection
    /// to close checkpoints the WAL into the main file.
    pub async fn close(&self) {
        self.read.close().await;
        if let Some(w) = &self.write {
            w.close().await;
        }
    }

    /// Starts a write transaction that holds the write lock from its first statement.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        let pool = self.write.as_ref().ok_or(StoreError::ReadOnly)?;
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        // A connection setting, so it is set on whichever connection the pool handed out.
        let max_pages = self.max_pages.load(Ordering::Relaxed);
        if max_pages > 0 {
            // A number lsrecd computed; pragmas take no bound parameters.
            let pragma = format!("PRAGMA max_page_count = {max_pages}");
            sqlx::query(sqlx::AssertSqlSafe(pragma))
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Closes the write connection so that the next write opens the file afresh. After a write
    /// failed, the connection may be stuck in a state the fault left it in: SQLite opens a file
    /// it may not write read-only and stays so, even once the file is writable again.
    pub async fn reopen_writer(&self) {
        let Some(pool) = &self.write else {
            return;
        };
        match pool.acquire().await {
            Ok(conn) => {
                if let Err(e) = conn.close().await {
                    tracing::debug!(error = %e, "closing the write connection failed");
                }
            }
            Err(e) => tracing::debug!(error = %e, "no write connection to reopen"),
        }
    }

    /// Caps the database file at about `bytes` (`daemon.max_database_size`; `None`: no cap).
    /// Writes that would grow it beyond fail as on a full disk (`SQLITE_FULL`). A cap below the
    /// current size holds the file at its current size.
    pub async fn limit_size(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        let pages = match bytes {
            None if self.max_pages.load(Ordering::Relaxed) == 0 => return Ok(()),
            None => UNLIMITED_PAGES,
            Some(bytes) => {
                let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
                    .fetch_one(&self.read)
                    .await?;
                (bytes / u64::try_from(page_size).unwrap_or(4096).max(512)).max(1)
            }
        };
        self.max_pages.store(pages, Ordering::Relaxed);
        Ok(())
    }

    /// The read pool.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// Deletes finished actions and events from before `older_than`. Records, their history,
    /// occurrences, unfinished actions and anything an open claim refers to are never pruned.
    #[instrument(skip_all, fields(older_than))]
    pub async fn prune(&self, older_than: i64) -> Result<PruneStats, StoreError> {
        let mut tx = self.begin_write().await?;
        let actions = sqlx::query(
            "DELETE FROM actions
             WHERE requested_at < ?1
               AND state IN ('SUCCEEDED', 'FAILED', 'RECONCILED')
               AND id NOT IN (SELECT start_action_id FROM owned_recordings
                              WHERE stopped_at IS NULL AND start_action_id IS NOT NULL)",
        )
        .bind(older_than)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let events = sqlx::query("DELETE FROM events WHERE at < ?1")
            .bind(older_than)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM outages WHERE ended_at < ?1")
            .bind(older_than)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PruneStats { actions, events })
    }
}

/// Encodes a list of record ids as the JSON array text stored in `actions.record_ids`.
fn encode_ids(ids: &[i64]) -> Option<String> {
    if ids.is_empty() {
        None
    } else {
        serde_json::to_string(ids).ok()
    }
}

fn decode_ids(text: Option<&str>) -> Vec<i64> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_knows_every_migration_in_order() {
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert!(!versions.is_empty());
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(binary_schema_version(), *versions.last().unwrap_or(&0));
    }

    #[test]
    fn an_unknown_applied_version_is_reported_with_both_versions() {
        let applied = [
            Applied {
                version: 1,
                success: true,
            },
            Applied {
                version: 9_999,
                success: true,
            },
        ];
        match refuse_newer(&applied) {
            Err(StoreError::SchemaTooNew { db, binary }) => {
                assert_eq!(db, 9_999);
                assert_eq!(binary, binary_schema_version());
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
    }

    #[test]
    fn record_id_lists_round_trip_through_their_text_form() {
        assert_eq!(encode_ids(&[]), None);
        let text = encode_ids(&[27195, 27196]);
        assert_eq!(text.as_deref(), Some("[27195,27196]"));
        assert_eq!(decode_ids(text.as_deref()), vec![27195, 27196]);
        assert_eq!(decode_ids(None), Vec::<i64>::new());
    }
}
