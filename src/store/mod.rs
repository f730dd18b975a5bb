//! The SQLite store: the only module that holds SQL.
