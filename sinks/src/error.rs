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
    #[error("arrow: {context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },
}

impl SinkError {
    /// Whether retrying the same operation later may succeed (I/O, a full disk, a lock),
    /// as opposed to a problem in the data or schema that retrying cannot fix.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Io { .. } | SinkError::Parquet { .. })
            || matches!(self, SinkError::Duckdb { source, .. } if is_io_failure(source))
    }
}

fn is_io_failure(err: &duckdb::Error) -> bool {
    let text = err.to_string();
    text.contains("IO Error") || text.contains("No space left") || text.contains("Could not write")
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
