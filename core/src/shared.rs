//! Streams that several sluice instances read between them (Kafka partitions in one
//! consumer group), and how their rows say where they come from. A table published to a
//! lake that many instances write records, per stream, how far the lake holds it, so a
//! row is published once whichever instance read it (see `sluice-lake`); a source reading
//! such streams asks that lake through [`SharedLedger`].

use std::collections::HashMap;

/// How a source's rows name their stream and their position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStreams {
    /// Names the shared reading (e.g. `kafka:<group>`): instances with the same scope
    /// divide the streams between them, and each stream is read once among them.
    pub scope: String,
    /// Columns whose values together name a stream (topic, partition).
    pub stream_columns: Vec<&'static str>,
    /// The column holding a row's position in its stream: increasing, one per row.
    pub position_column: &'static str,
}

impl SharedStreams {
    /// The identifier of one stream in this scope: the scope and the stream's values,
    /// separated by `/` (`kafka:group/topic/3`).
    pub fn stream_id(&self, values: &[String]) -> String {
        let mut id = self.scope.clone();
        for v in values {
            id.push('/');
            id.push_str(v);
        }
        id
    }
}

/// Why the shared store could not be read.
pub type SharedLedgerError = Box<dyn std::error::Error + Send + Sync>;

/// How far a store that several instances write (the lake) holds each shared stream: the
/// next position after the last row it holds.
pub trait SharedLedger: Send + Sync + std::fmt::Debug {
    /// What this instance last learned (no I/O); `None`: nothing known of the stream.
    fn known(&self, stream: &str) -> Option<i64>;
    /// What the store holds of each of `streams` now (reads it); streams it holds nothing
    /// of are absent.
    fn read(&self, streams: &[String]) -> Result<HashMap<String, i64>, SharedLedgerError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_id_names_the_scope_and_the_stream() {
        let s = SharedStreams {
            scope: "kafka:g".into(),
            stream_columns: vec!["t", "p"],
            position_column: "o",
        };
        assert_eq!(
            s.stream_id(&["events".into(), "3".into()]),
            "kafka:g/events/3"
        );
    }
}
