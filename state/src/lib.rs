//! # sluice-state: the `_sluice` schema, sluice's own state
//!
//! sluice keeps its state in the same DuckDB database as the data, so that one transaction
//! commits rows, source positions and model watermarks together. This crate is the only
//! one that knows that schema: its tables, its version and migrations, and every query on
//! it. Sinks, models, the daemon and the SQL endpoint ask it.
//!
//! - [`schema`]: the layout (every `_sluice` table), [`STATE_VERSION`], migrations, and
//!   [`open`] (a database another process holds is [`StateError::Locked`]).
//! - [`ledger`]: `_sluice.batches`, `offsets`, `dead_letters`: what a commit records in
//!   its transaction, and the reads others need (last batch, batches since a watermark,
//!   stored offsets, Parquet files).
//! - [`files`]: `_sluice.files` as a file source looks its files up ([`SourceFiles`]).
//! - [`models`]: `_sluice.models` and `_sluice.test_results`.
//! - [`lake`]: what the lake publisher reads (the writer id, batches not published yet).
//! - [`tables`]: tables as the database has them: raw tables (create, describe, compare
//!   with a batch or a declaration), the tables of a schema, whether a relation exists.
//! - [`sandbox`]: DuckDB's own sandbox for every database sluice opens (no file outside
//!   the database, a locked configuration).
//! - [`error`]: [`StateError`] and [`Storage`] (a full or read-only disk, told apart).

pub mod error;
pub mod files;
pub mod lake;
pub mod ledger;
pub mod models;
pub mod sandbox;
pub mod schema;
pub mod tables;

pub use error::{DuckdbContext, StateError, Storage};
pub use files::SourceFiles;
pub use schema::{ensure, open, STATE_VERSION};

/// Result type of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;
