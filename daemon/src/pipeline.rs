//! The data path between sources and sinks: chunks arrive over one bounded channel, are
//! grouped per table into batches ([`batcher`]), and each batch is committed and then
//! acknowledged to the sources that contributed to it ([`committer`]).
//!
//! ```text
//! source threads --SourceEvent--> committer thread --commit--> Parquet + DuckDB
//!        ^                                |
//!        +------- Position (acks) --------+
//! ```

pub mod batcher;
pub mod committer;

pub use batcher::Limits;
pub use committer::Committer;
