//! # sluice-sources: the outside world in, as Arrow chunks with provenance
//!
//! A source runs on its own thread, sends [`SourceEvent`]s to the daemon's committer over a
//! bounded channel (so a slow sink pauses intake instead of buffering without limit), and
//! learns which of its positions are durable from acknowledgements sent back after each
//! commit. Only then does it act on them (archive a file, commit a Kafka offset).
//!
//! Layout:
//! - [`csv_dir`]: watched directories of CSV files.
//! - [`kafka`]: Kafka topics, consumed as a group member with offsets kept in DuckDB.
//! - [`typing`]: text into Arrow for every source: declared and inferred schemas, casts,
//!   the raw table's columns.
//! - [`component`]: the seam the daemon uses: [`SourceConfig`], the registry of source
//!   types, each implementing [`SourceType`] (validate, declared columns, build).
//! - [`channel`]: the messages between a source and the committer.
//! - [`error`]: the crate's error type, [`SourceError`].
//! - [`telemetry`]: the metrics sources emit.
//! - `sequence` (feature `test-sources`, test builds only): numbered rows with a keyed
//!   position, a source type built from its module and one registry line.

pub mod channel;
pub mod component;
pub mod csv_dir;
pub mod error;
pub mod kafka;
#[cfg(feature = "test-sources")]
pub mod sequence;
pub mod telemetry;
pub mod typing;

pub use channel::{SourceContext, SourceEvent, SourceStatus};
pub use component::{
    Backlog, BuildContext, ResumeState, RunningSource, SourceConfig, SourceKind, SourceType,
};
pub use error::SourceError;

/// Result type of this crate.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;
