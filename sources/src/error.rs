//! Errors of the sources. A source reports per-file and per-record problems as dead letters
//! or quarantined files; only problems that stop the source entirely come here.

use std::path::PathBuf;

/// An error that stops a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name}: {path}: {error}")]
    Io {
        source_name: String,
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("source {source_name}: watching {path}: {error}")]
    Watch {
        source_name: String,
        path: PathBuf,
        #[source]
        error: notify::Error,
    },
    #[error("source {source_name}: {detail}")]
    Config { source_name: String, detail: String },
    /// What the source resumes from (its files' ledger, its offsets) could not be read.
    #[error("source {source_name}: reading where it stopped: {detail}")]
    Resume { source_name: String, detail: String },
}
