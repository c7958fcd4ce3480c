//! Every metric the sources emit, in one place (names are documented in the README's
//! metrics table, which a test keeps true). Labels are low-cardinality: never a file name.

use metrics::{counter, gauge};

/// Input bytes whose rows (or dead letters) were committed.
pub fn bytes_ingested(source: &str, bytes: u64) {
    counter!("sluice_bytes_ingested_total", "source" => source.to_string()).increment(bytes);
}

/// Makes every per-source series exist (at zero) from the start, so that rates and
/// alerts see a series before the first event.
/// `files`: whether the source reads files (the `sluice_files_*` series).
pub fn register(source: &str, files: bool) {
    counter!("sluice_bytes_ingested_total", "source" => source.to_string()).increment(0);
    for reason in ["frozen_column", "too_many_columns", "frozen_type"] {
        counter!("sluice_schema_refused_total", "source" => source.to_string(), "reason" => reason)
            .increment(0);
    }
    if !files {
        return;
    }
    for name in [
        "sluice_files_ingested_total",
        "sluice_files_duplicate_total",
        "sluice_files_quarantined_total",
        "sluice_files_refused_total",
        "sluice_files_appended_total",
        "sluice_files_rewritten_total",
    ] {
        counter!(name, "source" => source.to_string()).increment(0);
    }
}

/// Values a schema contract kept out of a table (dead letters, dropped rows, dropped
/// values), by reason (`typing::contract::Refusal::label`).
pub fn schema_refused(source: &str, reason: &'static str, values: u64) {
    counter!("sluice_schema_refused_total", "source" => source.to_string(), "reason" => reason)
        .increment(values);
}

/// A file's last chunk was committed.
pub fn file_ingested(source: &str) {
    counter!("sluice_files_ingested_total", "source" => source.to_string()).increment(1);
}

/// A file had the content of an already ingested file.
pub fn file_duplicate(source: &str) {
    counter!("sluice_files_duplicate_total", "source" => source.to_string()).increment(1);
}

/// A file was recorded as not CSV text and moved to quarantine.
pub fn file_quarantined(source: &str) {
    counter!("sluice_files_quarantined_total", "source" => source.to_string()).increment(1);
}

/// A file grew after (some of) its rows were committed; the lines added are read.
pub fn file_appended(source: &str) {
    counter!("sluice_files_appended_total", "source" => source.to_string()).increment(1);
}

/// A file's committed bytes changed (rewritten, truncated, replaced under its name).
pub fn file_rewritten(source: &str) {
    counter!("sluice_files_rewritten_total", "source" => source.to_string()).increment(1);
}

/// A path was refused (a symlink leading outside the watched directory).
pub fn file_refused(source: &str) {
    counter!("sluice_files_refused_total", "source" => source.to_string()).increment(1);
}

/// Kafka: whether the source reaches at least one broker.
pub fn kafka_broker_up(source: &str, up: bool) {
    gauge!("sluice_kafka_broker_up", "source" => source.to_string()).set(if up {
        1.0
    } else {
        0.0
    });
}

/// Kafka: high watermark minus the offset stored in DuckDB, per partition.
pub fn kafka_lag(source: &str, topic: &str, partition: i32, lag: i64) {
    gauge!("sluice_kafka_lag_messages", "source" => source.to_string(), "topic" => topic.to_string(),
        "partition" => partition.to_string())
    .set(lag as f64);
}

/// Kafka: a stored offset was no longer on the broker.
pub fn kafka_offset_gap(source: &str, topic: &str) {
    counter!("sluice_kafka_offset_gaps_total", "source" => source.to_string(), "topic" => topic.to_string())
        .increment(1);
}

/// Kafka: series that exist from start-up (per configured topic; a pattern's topics
/// appear when first seen).
pub fn register_kafka(source: &str, topics: &[String]) {
    gauge!("sluice_kafka_broker_up", "source" => source.to_string()).set(0.0);
    for topic in topics.iter().filter(|t| !t.starts_with('^')) {
        counter!("sluice_kafka_offset_gaps_total", "source" => source.to_string(), "topic" => topic.clone())
            .increment(0);
    }
}
