//! Errors of the lake: the store's (delta-rs), DuckDB's, and a table the lake cannot take.

use deltalake::{kernel::transaction::TransactionError, DeltaTableError};

/// A publication that did not happen; nothing was lost (the rows stay in DuckDB and the
/// next attempt publishes them).
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("Delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: DeltaTableError,
    },
    #[error("reading table {table} from DuckDB: {source}")]
    Duckdb {
        table: String,
        #[source]
        source: duckdb::Error,
    },
    #[error(transparent)]
    State(#[from] sluice_state::StateError),
    #[error("table {table} cannot be published: {detail}")]
    Table { table: String, detail: String },
    #[error(transparent)]
    Bridge(#[from] crate::bridge::BridgeError),
}

impl LakeError {
    pub fn delta(table: &str) -> impl FnOnce(DeltaTableError) -> LakeError + '_ {
        move |source| LakeError::Delta {
            table: table.to_string(),
            source,
        }
    }

    pub fn duckdb(table: &str) -> impl FnOnce(duckdb::Error) -> LakeError + '_ {
        move |source| LakeError::Duckdb {
            table: table.to_string(),
            source,
        }
    }

    /// Whether another writer's commit got there first (the attempt is redone on the
    /// table as it now is).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            LakeError::Delta {
                source: DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(_)
                        | TransactionError::MaxCommitAttempts(_)
                        | TransactionError::VersionAlreadyExists(_),
                } | DeltaTableError::VersionAlreadyExists(_),
                ..
            }
        )
    }
}
