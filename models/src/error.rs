//! Errors of the models crate. Every variant names the file (and line, where known) or the
//! model it concerns, so `sluice check` and the logs point at what to fix.

use std::path::PathBuf;

/// A problem with the model files or with running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A problem in a model, YAML or project file, at a line when known.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// DuckDB refused a statement while building a model or running a test.
    #[error("model {model}: {context}: {source}")]
    Duckdb {
        model: String,
        context: String,
        #[source]
        source: duckdb::Error,
    },
    /// Reading or writing the models' state in `_sluice`.
    #[error(transparent)]
    State(#[from] sluice_state::StateError),
    /// The model ran but its output breaks a rule (e.g. duplicate keys in a merge).
    #[error("model {model}: {message}")]
    Output { model: String, message: String },
}

impl ModelError {
    pub(crate) fn invalid(
        path: impl Into<PathBuf>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        ModelError::Invalid {
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}

/// Attaches a model name and what was being done to DuckDB errors.
pub(crate) trait DuckdbContext<T> {
    fn ctx(self, model: &str, context: impl FnOnce() -> String) -> Result<T, ModelError>;
}

impl<T> DuckdbContext<T> for Result<T, duckdb::Error> {
    fn ctx(self, model: &str, context: impl FnOnce() -> String) -> Result<T, ModelError> {
        self.map_err(|source| ModelError::Duckdb {
            model: model.to_string(),
            context: context(),
            source,
        })
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
