//! Kafka topics as a source: a consumer group member whose offsets live in DuckDB.
//!
//! - [`config`]: `[sources.<name>]` with `type = "kafka"`.
//! - [`decode`]: messages (JSON, CSV lines, raw) into typed rows with provenance, and
//!   poison messages into dead letters.
//! - [`consumer`]: the librdkafka consumer and its rebalance handling: every assigned
//!   partition starts at the offset stored with the data.
//! - [`commit`]: an offset commit to the broker whose answer is waited for (on stop).
//! - [`source`]: the loop: poll, buffer per partition, hand chunks on, commit offsets to
//!   the broker once DuckDB has them (for lag tools only).
//!
//! Exactly once: a chunk carries its partition's next offset; the committer writes it to
//! `_sluice.offsets` in the same transaction as the rows. After a crash, consumption
//! resumes from there, whatever the broker's committed offsets say.

mod commit;
pub mod config;
pub mod consumer;
pub mod decode;
pub mod source;

pub use config::KafkaSourceConfig;
pub use source::{KafkaSetup, KafkaSource};
