//! Errors of the sinks. Each variant says what was being done and to which table or file.

use std::path::PathBuf;

/// An error while writing or reading sluice's durable state.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("duckdb: {context}: {source}")]
    Duckdb {
        context: String,
        #[source]
        source: duckdb::Error,
    },
    #[error("parquet file {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: ::parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("table {table}: {detail}")]
    Schema { table: String, detail: String },
    /// A batch staged for commit is not the next one: a defect, never bad input.
    #[error("table {table}: batch {id} staged out of order (the last committed is {last})")]
    OutOfOrder { table: String, id: i64, last: i64 },
    /// A worker thread (the committer, a Parquet writer) panicked.
    #[error("{what} panicked")]
    Panicked { what: String },
    /// Reading or writing the `_sluice` state (or a raw table's columns).
    #[error(transparent)]
    State(#[from] sluice_state::StateError),
    #[error("arrow: {context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },
}

use sluice_state::Storage;

const ENOSPC: i32 = 28;
const EROFS: i32 = 30;
const EDQUOT: i32 = 122;

impl SinkError {
    /// Whether retrying the same operation later may succeed (I/O, a full disk, a lock),
    /// as opposed to a problem in the data or schema that retrying cannot fix.
    pub fn is_retryable(&self) -> bool {
        self.storage().is_some()
    }

    /// Whether DuckDB refused a value of the rows being appended (a conversion, a
    /// constraint, a value out of range): a failure tied to the input, which committing
    /// the same rows again repeats and which other rows need not share. The committer then
    /// commits the batch one file at a time to find the file it belongs to. Anything else
    /// (a missing table, a defect, a storage problem) is not tied to some rows.
    pub fn is_refused_value(&self) -> bool {
        const REFUSALS: [&str; 4] = [
            "Conversion Error",
            "Constraint Error",
            "Invalid Input Error",
            "Out of Range Error",
        ];
        let source = match self {
            SinkError::Duckdb { source, .. } => source,
            // A schema change the table's stored values refuse (`tables::evolve`).
            SinkError::State(sluice_state::StateError::ChangeRefused { .. }) => return true,
            _ => return false,
        };
        let text = source.to_string();
        REFUSALS.iter().any(|r| text.contains(r)) && Storage::in_message(&text).is_none()
    }

    /// The storage problem behind this error, if it is one. File errors are classified
    /// by errno. DuckDB's are by message: duckdb-rs reports every failure with the same
    /// generic code and DuckDB's message text (which carries the OS's `strerror` text),
    /// so the text is all there is; likewise for the Parquet writer's errors that arrow-rs
    /// turned into text (`fail to get inner writer: No space left on device (os error 28)`).
    pub fn storage(&self) -> Option<Storage> {
        match self {
            SinkError::Io { source, .. } => Some(io_storage(source)),
            SinkError::Parquet { source, .. } => Some(parquet_storage(source)),
            SinkError::Duckdb { source, .. } => Storage::in_message(&source.to_string()),
            SinkError::State(e) => e.storage(),
            SinkError::Schema { .. }
            | SinkError::OutOfOrder { .. }
            | SinkError::Panicked { .. }
            | SinkError::Arrow { .. } => None,
        }
    }
}

fn io_storage(e: &std::io::Error) -> Storage {
    match e.raw_os_error() {
        Some(ENOSPC | EDQUOT) => Storage::Full,
        Some(EROFS) => Storage::ReadOnly,
        _ => Storage::Io,
    }
}

fn parquet_storage(e: &::parquet::errors::ParquetError) -> Storage {
    // arrow-rs wraps the writer's I/O errors as `External`.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io_storage(io);
        }
        cause = c.source();
    }
    Storage::in_message(&e.to_string()).unwrap_or(Storage::Io)
}

/// Adds context to DuckDB results.
pub(crate) trait DuckdbContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> crate::Result<T>;
}

impl<T> DuckdbContext<T> for duckdb::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> crate::Result<T> {
        self.map_err(|source| SinkError::Duckdb {
            context: context(),
            source,
        })
    }
}

/// Adds the path to I/O results.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> crate::Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> crate::Result<T> {
        self.map_err(|source| SinkError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_problems_are_told_apart_by_errno() {
        let io = |errno| SinkError::Io {
            path: "x".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        assert_eq!(io(ENOSPC).storage(), Some(Storage::Full));
        assert_eq!(io(EDQUOT).storage(), Some(Storage::Full));
        assert_eq!(io(EROFS).storage(), Some(Storage::ReadOnly));
        assert_eq!(io(5).storage(), Some(Storage::Io));
        let parquet = SinkError::Parquet {
            path: "x".into(),
            source: ::parquet::errors::ParquetError::External(Box::new(
                std::io::Error::from_raw_os_error(ENOSPC),
            )),
        };
        assert_eq!(parquet.storage(), Some(Storage::Full));
        let parquet = SinkError::Parquet {
            path: "x".into(),
            source: ::parquet::errors::ParquetError::General(
                "fail to get inner writer: \"No space left on device (os error 28)\"".into(),
            ),
        };
        assert_eq!(parquet.storage(), Some(Storage::Full));
        let schema = SinkError::Schema {
            table: "t".into(),
            detail: "a chunk lacks column x".into(),
        };
        assert!(!schema.is_retryable());
        let defect = SinkError::OutOfOrder {
            table: "t".into(),
            id: 7,
            last: 5,
        };
        assert!(!defect.is_retryable());
        assert_eq!(
            defect.to_string(),
            "table t: batch 7 staged out of order (the last committed is 5)"
        );
    }
}
