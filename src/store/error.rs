//! [`StoreError`]: what can go wrong with the database, in terms callers branch on.
//!
//! sqlx errors are wrapped in the opaque [`DatabaseError`] so that no caller depends on sqlx.

use std::fmt;
use std::path::PathBuf;

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file does not exist (read-only opening never creates it).
    #[error(
        "database {} does not exist (the daemon creates it on its first start)",
        path.display()
    )]
    Missing { path: PathBuf },

    /// The database file (or its directory) could not be inspected.
    #[error("cannot access database {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file exists but was not created by lsrecd (no migration table).
    #[error("{} is not an lsrecd database (it has no _sqlx_migrations table)", path.display())]
    NotLsrecdDatabase { path: PathBuf },

    /// The database was migrated by a newer lsrecd; this binary refuses to touch it.
    #[error(
        "the database has schema version {db}, newer than this lsrecd understands \
         (up to {binary}); run the lsrecd version that migrated it, or a newer one"
    )]
    SchemaTooNew { db: i64, binary: i64 },

    /// A read-only opening found a database that still needs migrations this binary has.
    #[error(
        "the database has schema version {db}, older than this lsrecd expects ({binary}); \
         start the daemon once (`lsrecd run`) to migrate it"
    )]
    SchemaTooOld { db: i64, binary: i64 },

    /// Applying the migrations failed.
    #[error("cannot migrate the database: {0}")]
    Migrate(String),

    /// A write was attempted on a store opened with [`super::Store::open_read_only`].
    #[error("the database was opened read-only")]
    ReadOnly,

    /// The row the call refers to does not exist.
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },

    /// The occurrence already reached a final state; it never leaves it.
    #[error("occurrence {id} is already {state} (final); refusing to change it to {requested}")]
    OccurrenceFinal {
        id: i64,
        state: String,
        requested: String,
    },

    /// A state change that the state machine does not allow.
    #[error("{what} {id}: {from} -> {to} is not a valid transition")]
    InvalidTransition {
        what: &'static str,
        id: i64,
        from: String,
        to: String,
    },

    /// A value read from the database is not one this binary knows.
    #[error("unexpected value in the database: {0}")]
    Corrupt(String),

    /// The file could not be opened.
    #[error("cannot open database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: DatabaseError,
    },

    /// Any other SQLite error.
    #[error("database error: {0}")]
    Database(#[from] DatabaseError),
}

/// An SQLite error, kept opaque so that callers never depend on sqlx.
pub struct DatabaseError(sqlx::Error);

impl DatabaseError {
    /// Whether SQLite gave up waiting for a lock (another writer held it past the busy timeout).
    pub fn is_busy(&self) -> bool {
        match &self.0 {
            sqlx::Error::Database(e) => {
                matches!(e.code().as_deref(), Some("5") | Some("6") | Some("517"))
            }
            _ => false,
        }
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(DatabaseError(e))
    }
}

impl StoreError {
    pub(crate) fn open(path: impl Into<PathBuf>, e: sqlx::Error) -> Self {
        StoreError::Open {
            path: path.into(),
            source: DatabaseError(e),
        }
    }
}
