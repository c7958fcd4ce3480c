//! The catalog's errors, typed by what a caller does about them: a locked database is
//! waited for, a storage problem is retried, a newer state version is refused, a schema
//! difference is reported; anything else DuckDB says is an error with its context.

use std::path::PathBuf;

/// An error reading or writing sluice's state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the database file (DuckDB allows one writer process).
    #[error("{path} is locked by another process: {source}")]
    Locked {
        path: PathBuf,
        #[source]
        source: duckdb::Error,
    },
    /// `_sluice.meta`'s state version is one this sluice cannot use.
    #[error("_sluice.meta: {detail}")]
    StateVersion { detail: String },
    /// A table's columns are not what they must be.
    #[error("table {table}: {detail}")]
    Schema { table: String, detail: String },
    /// A schema change the table's stored values do not allow (a widening that would
    /// alter some): tied to the input that asked for it, as a value DuckDB refuses is.
    #[error("table {table}: {detail}")]
    ChangeRefused { table: String, detail: String },
    #[error("duckdb: {context}: {source}")]
    Duckdb {
        context: String,
        #[source]
        source: duckdb::Error,
    },
}

/// A storage problem that blocks commits until someone fixes it (then they resume).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// No space (or quota) left on the device (`ENOSPC`, `EDQUOT`).
    Full,
    /// The filesystem became read-only (`EROFS`).
    ReadOnly,
    /// Another I/O error.
    Io,
    /// DuckDB's `memory_limit` is reached, often by a client's query on the SQL endpoint
    /// (a commit needs buffer memory too): commits wait for memory as for disk space,
    /// rather than stop the daemon for what a client did.
    Memory,
}

impl Storage {
    /// The word used in logs, `/readyz` and the `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Full => "disk_full",
            Storage::ReadOnly => "read_only",
            Storage::Io => "io",
            Storage::Memory => "memory",
        }
    }

    /// The storage problem named in an error message (the OS's `strerror` text in it).
    /// duckdb-rs reports every failure with the same generic code and DuckDB's message,
    /// so for DuckDB's errors the text is all there is.
    pub fn in_message(text: &str) -> Option<Storage> {
        if text.contains("No space left on device") || text.contains("Disk quota exceeded") {
            Some(Storage::Full)
        } else if text.contains("Read-only file system") {
            Some(Storage::ReadOnly)
        } else if text.contains("IO Error") || text.contains("Could not write") {
            Some(Storage::Io)
        } else if text.contains("Out of Memory Error") {
            Some(Storage::Memory)
        } else {
            None
        }
    }
}

impl StateError {
    /// The storage problem behind this error, if it is one (retrying later may succeed).
    pub fn storage(&self) -> Option<Storage> {
        match self {
            StateError::Duckdb { source, .. } => Storage::in_message(&source.to_string()),
            StateError::Locked { .. }
            | StateError::StateVersion { .. }
            | StateError::Schema { .. }
            | StateError::ChangeRefused { .. } => None,
        }
    }
}

/// Whether DuckDB refused to open a file because another process holds its lock. DuckDB
/// gives this no code of its own: its message is the only sign, and this is the only
/// place that reads it.
pub(crate) fn is_lock_conflict(e: &duckdb::Error) -> bool {
    e.to_string().contains("Could not set lock on file")
}

/// Adds what was being done to DuckDB results.
pub trait DuckdbContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> crate::Result<T>;
}

impl<T> DuckdbContext<T> for duckdb::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> crate::Result<T> {
        self.map_err(|source| StateError::Duckdb {
            context: context(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_problems_are_told_apart_by_duckdb_text() {
        // What DuckDB 2.0 says when its WAL cannot be written (seen on a full tmpfs).
        let wal = "TransactionContext Error: Failed to commit: Could not write file \
                   \"/d/w.duckdb.wal\": No space left on device";
        assert_eq!(Storage::in_message(wal), Some(Storage::Full));
        assert_eq!(
            Storage::in_message("IO Error: Cannot open file \"x\": Read-only file system"),
            Some(Storage::ReadOnly)
        );
        assert_eq!(
            Storage::in_message(
                "Out of Memory Error: could not allocate block of size 256.0 KiB (64.0 MiB/64.0 MiB used)"
            ),
            Some(Storage::Memory)
        );
        assert_eq!(
            Storage::in_message("Constraint Error: NOT NULL constraint failed"),
            None
        );
    }
}
