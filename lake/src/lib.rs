//! # sluice-lake: raw tables published as Delta Lake tables
//!
//! With `[lake]`, every raw table is also a Delta table at `<uri>/<table>` (a local
//! directory or S3), partitioned by `dt`, written through delta-rs (`deltalake`): the log,
//! commits, conflict checks and checkpoints are its, not ours. The lake follows DuckDB:
//! after batches commit there, the publisher writes them to the Delta table in commits
//! that record what they cover, so each row lands once across crashes and instances.
//!
//! - [`config`]: `[lake]` ([`LakeConfig`]).
//! - [`publish`]: the [`Publisher`] (what is published, with which `txn` actions, and why
//!   that is exactly once); `publish::upkeep`: compaction, vacuum and retention.
//! - [`ledger`]: how far a table holds each shared stream, for the sources reading them
//!   (a Kafka source starts no lower, and tells the broker no more).
//! - [`select`]: the query that reads a range of batches in the lake's types.
//! - [`table`]: a raw table's Delta table, found or created; the runtime the store's I/O
//!   runs on (multi-threaded, and why).
//! - [`bridge`]: batches from DuckDB's arrow to delta-rs's (two arrow versions).
//! - [`error`]: the lake's errors ([`LakeError`]).

pub mod bridge;
pub mod config;
pub mod error;
pub mod ledger;
pub mod publish;
pub mod select;
pub mod table;

pub use config::{LakeConfig, LakeFormat};
/// delta-rs, for those reading the tables back (the benchmark).
pub use deltalake;
pub use error::LakeError;
pub use ledger::LakeLedger;
pub use publish::{upkeep::Compacted, Phases, Published, Publisher, TableSpec, TableState};
