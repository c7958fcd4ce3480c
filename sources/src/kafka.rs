//! Kafka topics as a source: a consumer group member whose offsets live in DuckDB.
//!
//! - [`config`]: `[sources.<name>]` with `type = "kafka"`; `component.rs` makes it a
//!   source type (the registry's `Kafka`).
//! - [`decode`]: messages (JSON, CSV lines, raw) into typed rows with provenance, and
//!   poison messages into dead letters; [`decode::Messages`] is how a partition's polled
//!   messages are buffered until then (one byte buffer for their keys and payloads).
//! - [`consumer`]: the librdkafka consumer and its rebalance handling: every assigned
//!   partition starts at the furthest of the offset stored with the data, the group's and
//!   the lake's, and the broker is never told an offset below the group's.
//! - [`commit`]: an offset commit to the broker whose answer is waited for (on stop).
//! - [`source`]: the loop: poll, buffer per partition, hand chunks on, commit offsets to
//!   the broker once DuckDB has them (for lag tools only); `source/once.rs` decides when
//!   a `run --once` is done (every assigned partition at its target).
//!
//! Exactly once: a chunk carries its partition's next offset; the committer writes it to
//! `_sluice.offsets` in the same transaction as the rows. After a crash, consumption
//! resumes from there, whatever the broker's committed offsets say.

mod commit;
mod component;
pub mod config;
pub mod consumer;
pub mod decode;
pub mod source;

/// The provenance columns a Kafka source fills for every row.
pub mod provenance {
    use sluice_core::{meta, Column, ColumnType};

    pub use sluice_core::meta::OFFSET;
    /// The message's topic.
    pub const TOPIC: &str = "_sluice_topic";
    /// The message's partition.
    pub const PARTITION: &str = "_sluice_partition";
    /// The message key (lossy UTF-8), NULL without one.
    pub const KEY: &str = "_sluice_key";
    /// The message timestamp (producer or log-append time), NULL without one.
    pub const TIMESTAMP: &str = "_sluice_timestamp";
    /// JSON with `unknown_fields = "keep"`: the fields no column takes, as a JSON object.
    pub const EXTRA: &str = "_sluice_extra";

    pub fn columns() -> [Column; 6] {
        [
            Column::new(meta::SOURCE, ColumnType::Varchar),
            Column::new(TOPIC, ColumnType::Varchar),
            Column::new(PARTITION, ColumnType::Integer),
            Column::new(OFFSET, ColumnType::BigInt),
            Column::new(KEY, ColumnType::Varchar),
            Column::new(TIMESTAMP, ColumnType::TimestampTz),
        ]
    }
}

pub use config::KafkaSourceConfig;
pub use source::{KafkaSetup, KafkaSource};
