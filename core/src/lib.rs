//! # sluice-core: the vocabulary every other sluice crate speaks
//!
//! Sources turn the outside world into [`Chunk`]s; the daemon's batcher groups chunks of one
//! table into a batch; sinks commit a batch (Parquet, then one DuckDB transaction) and the
//! source is told which [`Position`]s are now durable. Nothing in here does I/O; the system
//! calls are [`priority`]'s and, in test builds, [`fault`]'s.
//!
//! Layout:
//! - [`ident`]: validated SQL identifiers and the single quoting helper all SQL goes through.
//! - [`column`]: column types as DuckDB names them, their Arrow twins, and table schemas.
//! - [`evolve`]: schemas that change: the widening lattice of column types, and how a
//!   table's schema takes in a batch's new columns and wider types.
//! - [`chunk`]: what a source hands on: rows, dead letters and the position they advance.
//! - [`fault`]: named points in the commit path where tests kill the process (test builds).
//! - [`ledger`]: what a running file source asks of the ledger (a file's record, by the
//!   hash of its committed bytes or by name).
//! - [`meta`]: names of the provenance columns sluice adds to every raw table.
//! - [`priority`]: producer threads (sources, the Parquet writer) yield to the commit thread.
//! - [`retry`]: the one backoff policy type every retry loop uses.
//! - [`shared`]: streams several instances read between them (a Kafka consumer group), as
//!   a lake that many instances write needs to know them.
//! - [`text`]: text from input (a header, a record) bounded before it reaches a reason, a
//!   log line or a table.

pub mod chunk;
pub mod column;
pub mod evolve;
pub mod fault;
pub mod ident;
pub mod ledger;
pub mod meta;
pub mod priority;
pub mod retry;
pub mod shared;
pub mod text;

pub use chunk::{
    Chunk, DeadLetter, FileHash, FileId, FileProgress, FileRecord, FileStatus, KeyedProgress,
    Origin, PartitionProgress, Position, DEAD_LETTER_RAW_LIMIT,
};
pub use column::{Column, ColumnType, TableSchema};
pub use evolve::SchemaChange;
pub use ident::{quote_ident, Ident, IdentError};
pub use ledger::{FileLedger, LookupError};
pub use shared::{SharedLedger, SharedLedgerError, SharedStreams};
