//! Names of the columns sluice adds to every raw table. Data columns may not use the
//! `_sluice_` prefix, so these never collide with user data. Each source type declares
//! its own provenance columns (`sluice_sources::csv_dir::provenance`,
//! `sluice_sources::kafka::provenance`), under the same prefix.

/// Prefix reserved for sluice's own columns.
pub const RESERVED_PREFIX: &str = "_sluice_";
/// Batch id (increases with every commit): the incremental models' watermark.
pub const BATCH: &str = "_sluice_batch";
/// Commit time of the batch.
pub const INGESTED_AT: &str = "_sluice_ingested_at";
/// Name of the source (config key) that produced the row.
pub const SOURCE: &str = "_sluice_source";
/// Kafka: the message's offset. Here rather than with the Kafka source's other columns
/// because a Kafka chunk is split where a row's offset says ([`crate::Chunk::split_front`]).
pub const OFFSET: &str = "_sluice_offset";

/// Whether `name` is reserved for sluice's own columns.
pub fn is_reserved(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with(RESERVED_PREFIX)
}

use crate::{Column, ColumnType};

/// Columns the committer fills for every raw row.
pub fn commit_columns() -> [Column; 2] {
    [
        Column::new(BATCH, ColumnType::BigInt),
        Column::new(INGESTED_AT, ColumnType::TimestampTz),
    ]
}
