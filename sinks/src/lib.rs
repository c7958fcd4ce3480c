//! # sluice-sinks: where batches become durable
//!
//! A batch is committed in two steps, in this order (see [`Warehouse::commit`]):
//! 1. [`parquet`]: the rows are written to a temporary file, fsynced, and renamed to a name
//!    derived from the batch's provenance, so replaying the same input writes the same file.
//!    [`Warehouse::stage`] starts this on a thread of its own, possibly while the previous
//!    batch commits.
//! 2. [`warehouse`]: one DuckDB transaction inserts the rows into `raw.<table>` and records the
//!    batch ledger, file positions and dead letters together, and commits only once the
//!    Parquet file is in place ([`Warehouse::commit_staged`]). Nothing is durable before it.
//!
//! A batch staged but not to be committed as it is (the committer splits one whose commit
//! failed) is taken back, newest first, with [`Warehouse::unstage`].
//!
//! On start, [`Warehouse::reconcile`] removes Parquet files the ledger does not know (a crash
//! between the two steps) and reports ledger entries whose file is missing.
//!
//! Layout:
//! - [`error`]: the crate's error type, [`SinkError`].
//! - [`parquet`]: atomic, hive-partitioned Parquet files.
//! - [`warehouse`]: the DuckDB connection and the commit transaction.
//! - [`reconcile`]: start-up consistency between Parquet files and the ledger.
//!
//! The `_sluice` tables themselves (layout, versions, the ledger's rows, raw tables'
//! columns) belong to `sluice-state`; this crate asks it.

pub mod error;
pub mod parquet;
pub mod reconcile;
pub mod warehouse;

pub use error::SinkError;
pub use parquet::{Compression, ParquetSink};
pub use reconcile::ReconcileReport;
pub use sluice_state::Storage;
pub use warehouse::{CommitReceipt, PendingBatch, Staged, Warehouse, WarehouseOptions};

/// Result type of this crate.
pub type Result<T, E = SinkError> = std::result::Result<T, E>;
