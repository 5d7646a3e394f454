//! Errors of the store layer.

use std::fmt;
use std::path::PathBuf;

use rusqlite::ErrorCode;

/// Why a store operation failed. The unit variants are the conditions an operator can act on
/// (free disk space, fix permissions, stop another writer); [`StoreError::Sqlite`] is the rest.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory could not be created.
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file or directory of the store could not be made private to its owner (issue 14: the
    /// store holds HA1 hashes).
    Permissions {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The database file could not be opened or configured (not a database, no permission, ...).
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file system refused WAL journaling (some network file systems do).
    WalUnavailable {
        /// The database file.
        path: PathBuf,
    },
    /// The file was written by a newer switchboard with a schema this build does not know.
    SchemaTooNew {
        /// Schema version found in the file.
        found: i64,
        /// Newest version this build understands.
        supported: i64,
    },
    /// The disk (or the quota) is full.
    DiskFull,
    /// Another connection held the database lock past the busy timeout.
    Busy,
    /// The database file or its directory is read-only.
    ReadOnly,
    /// The database file is damaged.
    Corrupt,
    /// Any other SQLite failure.
    Sqlite(rusqlite::Error),
    /// The writer thread could not be started.
    Spawn(std::io::Error),
    /// The writer thread is gone (it panicked), so the op was not queued.
    WriterStopped,
    /// This many ops queued since the previous flush could not be committed and were dropped.
    WriteFailed {
        /// Number of dropped ops.
        ops: u64,
    },
    /// The Redis store could not be reached (or the URL is not a Redis URL).
    RedisConnect {
        /// The URL, without its password.
        url: String,
        /// What the client said.
        source: redis::RedisError,
    },
    /// A Redis command failed (connection lost and not re-opened, a command refused).
    Redis(redis::RedisError),
    /// The store holds a value this build cannot read.
    BadData(String),
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Redis(e)
    }
}

// ===== impl StoreError =====

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::DiskFull,
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly,
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt,
            _ => StoreError::Sqlite(e),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::CreateDir { path, source } => write!(f, "cannot create data directory {}: {source}", path.display()),
            StoreError::Permissions { path, source } => write!(f, "cannot make {} private to its owner: {source}", path.display()),
            StoreError::Open { path, source } => write!(f, "cannot open store {}: {source}", path.display()),
            StoreError::WalUnavailable { path } => write!(f, "WAL journal mode unavailable for {}", path.display()),
            StoreError::SchemaTooNew { found, supported } => {
                write!(f, "store schema version {found} is newer than this build supports ({supported})")
            }
            StoreError::DiskFull => f.write_str("disk full"),
            StoreError::Busy => f.write_str("database locked by another connection"),
            StoreError::ReadOnly => f.write_str("database is read-only"),
            StoreError::Corrupt => f.write_str("database file is corrupt"),
            StoreError::Sqlite(e) => write!(f, "sqlite: {e}"),
            StoreError::Spawn(e) => write!(f, "cannot start store writer thread: {e}"),
            StoreError::WriterStopped => f.write_str("store writer thread has stopped"),
            StoreError::WriteFailed { ops } => write!(f, "{ops} store writes could not be committed"),
            StoreError::RedisConnect { url, source } => write!(f, "cannot open Redis store {url}: {source}"),
            StoreError::Redis(e) => write!(f, "redis: {e}"),
            StoreError::BadData(what) => write!(f, "unreadable store data: {what}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::CreateDir { source, .. } => Some(source),
            StoreError::Permissions { source, .. } => Some(source),
            StoreError::Open { source, .. } => Some(source),
            StoreError::Sqlite(e) => Some(e),
            StoreError::Spawn(e) => Some(e),
            StoreError::RedisConnect { source, .. } => Some(source),
            StoreError::Redis(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_err(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn sqlite_codes_map_to_operator_variants() {
        use rusqlite::ffi;
        assert!(matches!(StoreError::from(sqlite_err(ffi::SQLITE_FULL)), StoreError::DiskFull));
        assert!(matches!(StoreError::from(sqlite_err(ffi::SQLITE_BUSY)), StoreError::Busy));
        assert!(matches!(StoreError::from(sqlite_err(ffi::SQLITE_LOCKED)), StoreError::Busy));
        assert!(matches!(StoreError::from(sqlite_err(ffi::SQLITE_READONLY)), StoreError::ReadOnly));
        assert!(matches!(StoreError::from(sqlite_err(ffi::SQLITE_NOTADB)), StoreError::Corrupt));
        assert!(matches!(StoreError::from(sqlite_err(ffi::SQLITE_CONSTRAINT)), StoreError::Sqlite(_)));
    }
}
