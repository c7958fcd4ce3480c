//! Names of the columns sluice adds to raw tables. Data columns may not use the `_sluice_`
//! prefix, so these never collide with user data.

/// Prefix reserved for sluice's own columns.
pub const RESERVED_PREFIX: &str = "_sluice_";
/// Batch id (increases with every commit): the incremental models' watermark.
pub const BATCH: &str = "_sluice_batch";
/// Commit time of the batch.
pub const INGESTED_AT: &str = "_sluice_ingested_at";
/// Name of the source (config key) that produced the row.
pub const SOURCE: &str = "_sluice_source";
/// CSV: the file's original name.
pub const FILE: &str = "_sluice_file";
/// CSV: 1-based physical line where the record starts (the header is line 1).
pub const LINE: &str = "_sluice_line";
/// Kafka: the message's topic.
pub const TOPIC: &str = "_sluice_topic";
/// Kafka: the message's partition.
pub const PARTITION: &str = "_sluice_partition";
/// Kafka: the message's offset.
pub const OFFSET: &str = "_sluice_offset";
/// Kafka: the message key (lossy UTF-8), NULL without one.
pub const KEY: &str = "_sluice_key";
/// Kafka: the message timestamp (producer or log-append time), NULL without one.
pub const TIMESTAMP: &str = "_sluice_timestamp";
/// Kafka JSON with `unknown_fields = "keep"`: the fields no column takes, as a JSON object.
pub const EXTRA: &str = "_sluice_extra";

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

/// Provenance columns a file source fills for every row.
pub fn file_columns() -> [Column; 3] {
    [
        Column::new(SOURCE, ColumnType::Varchar),
        Column::new(FILE, ColumnType::Varchar),
        Column::new(LINE, ColumnType::BigInt),
    ]
}

/// Provenance columns a Kafka source fills for every row.
pub fn kafka_columns() -> [Column; 6] {
    [
        Column::new(SOURCE, ColumnType::Varchar),
        Column::new(TOPIC, ColumnType::Varchar),
        Column::new(PARTITION, ColumnType::Integer),
        Column::new(OFFSET, ColumnType::BigInt),
        Column::new(KEY, ColumnType::Varchar),
        Column::new(TIMESTAMP, ColumnType::TimestampTz),
    ]
}
