//! Configuration of a Kafka source (`type = "kafka"`).

use std::collections::BTreeMap;

use bytesize::ByteSize;
use serde::Deserialize;
use sluice_core::{Column, ColumnType, Ident, TableSchema};

use crate::typing::{
    contract::{ColumnsPolicy, SchemaContract},
    declared::{declared_columns, DeclaredSchema},
};

/// librdkafka properties sluice sets itself: overriding them would break exactly-once.
const MANAGED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "partition.assignment.strategy",
    "group.protocol",
    "statistics.interval.ms",
];

/// `[sources.<name>]` with `type = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port,host:port`.
    pub brokers: String,
    /// Topics to consume (or `topic_pattern`).
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression of topic names (librdkafka's `^...` subscription).
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// Consumer group; instances sharing it split the partitions.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Raw table name; defaults to the source's name.
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// Where partitions without a stored offset start.
    #[serde(default)]
    pub start_from: StartFrom,
    /// What to do when a stored offset is no longer on the broker (retention deleted it).
    #[serde(default)]
    pub on_offset_gap: OffsetGapPolicy,
    /// Larger messages become dead letters.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: ByteSize,
    /// JSON fields that no column takes, when `schema_contract.columns = "discard_value"`:
    /// dropped (`ignore`), or kept in `_sluice_extra` (`keep`, JSON). Setting it alone
    /// implies that contract.
    #[serde(default)]
    pub unknown_fields: Option<UnknownFields>,
    /// What new fields and values of other types do (see `typing::contract`).
    #[serde(default)]
    pub schema_contract: Option<SchemaContract>,
    /// JSON: what an inferred column of nested objects becomes (declared columns say it
    /// themselves, `JSON` or `STRUCT(...)`).
    #[serde(default)]
    pub nested: Nested,
    /// Declared columns (DuckDB type names); inferred from the first messages if absent.
    #[serde(default)]
    pub schema: Option<DeclaredSchema>,
    /// Passed to librdkafka as-is (security.protocol, sasl.*, ssl.*, ...).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

/// How a message becomes rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per message; nested objects land as JSON text or STRUCT (`nested`).
    #[default]
    Json,
    /// One or more CSV lines per message, fields in the declared schema's order.
    Csv,
    /// The payload in one column, `payload` (VARCHAR, or BLOB if declared so).
    Raw,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownFields {
    #[default]
    Ignore,
    /// In the column `_sluice_extra`, as a JSON object (NULL when there are none).
    Keep,
}

/// What schema inference makes of a field holding JSON objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Nested {
    /// A `JSON` column with the object's text (query it with `->>`).
    #[default]
    Json,
    /// A `STRUCT` column whose fields are inferred from the sampled objects (in the order
    /// first seen), each typed like a column; fields seen later are not added.
    Struct,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetGapPolicy {
    /// Stop the source with an error naming the partition and the missing offsets.
    #[default]
    Fail,
    /// Record the gap (a dead letter, a metric, a log line) and resume at the earliest
    /// offset the broker still has.
    Earliest,
}

fn default_group_id() -> String {
    "sluice".into()
}
fn default_max_message_bytes() -> ByteSize {
    ByteSize::mib(1)
}

/// The raw format's one data column.
pub const PAYLOAD: &str = "payload";

impl KafkaSourceConfig {
    /// Every problem as `(key relative to the source, message)`; no I/O.
    pub fn validate(&self, source_name: &str) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| problems.push((key.to_string(), msg));
        if let Err(e) = self.table_ident(source_name) {
            bad(
                "table",
                format!("{e}; set `table` to a name of letters, digits and _"),
            );
        }
        if self.brokers.trim().is_empty() {
            bad(
                "brokers",
                "must name at least one broker (host:port)".into(),
            );
        }
        match (self.topics.is_empty(), &self.topic_pattern) {
            (true, None) => bad("topics", "set `topics` or `topic_pattern`".into()),
            (false, Some(_)) => bad(
                "topic_pattern",
                "set either `topics` or `topic_pattern`, not both".into(),
            ),
            _ => {}
        }
        if let Some(p) = &self.topic_pattern {
            if !p.starts_with('^') {
                bad(
                    "topic_pattern",
                    format!(
                        "{p:?} must start with ^ (a regular expression, as librdkafka expects)"
                    ),
                );
            }
        }
        if self.topics.iter().any(|t| t.trim().is_empty()) {
            bad("topics", "a topic name must not be empty".into());
        }
        if self.group_id.trim().is_empty() {
            bad("group_id", "must not be empty".into());
        }
        // Kafka's own bound on a message is 2 GiB; one held whole must fit far below it.
        if self.max_message_bytes.as_u64() == 0 || self.max_message_bytes > ByteSize::gib(1) {
            bad(
                "max_message_bytes",
                "must be above 0 and at most 1 GiB".into(),
            );
        }
        for key in self.librdkafka.keys() {
            if MANAGED.contains(&key.as_str()) {
                bad(
                    &format!("librdkafka.\"{key}\""),
                    "is set by sluice (offsets live in DuckDB); use the source's own keys".into(),
                );
            }
        }
        if let Some(schema) = &self.schema {
            if let Err(errs) = declared_columns(schema) {
                for (col, msg) in errs {
                    bad(&format!("schema.{col}"), msg);
                }
            }
        }
        if self.nested == Nested::Struct && self.format != Format::Json {
            bad(
                "nested",
                "\"struct\" applies to format = \"json\" only".into(),
            );
        }
        if self.unknown_fields == Some(UnknownFields::Keep) && self.format != Format::Json {
            bad(
                "unknown_fields",
                "\"keep\" applies to format = \"json\" only".into(),
            );
        }
        if let (Some(_), Some(c)) = (self.unknown_fields, &self.schema_contract) {
            if c.columns != ColumnsPolicy::DiscardValue {
                bad(
                    "unknown_fields",
                    "applies to fields a contract discards: set schema_contract.columns = \"discard_value\", or remove unknown_fields".into(),
                );
            }
        }
        for (key, msg) in self.schema_contract().validate() {
            bad(&key, msg);
        }
        match (self.format, self.declared_schema()) {
            (Format::Csv, None) => bad(
                "schema",
                "format = \"csv\" needs a declared schema (the messages have no header)".into(),
            ),
            (Format::Raw, Some(s)) if !raw_schema_ok(&s) => bad(
                "schema",
                format!("format = \"raw\" has one column, {PAYLOAD} = \"VARCHAR\" or \"BLOB\""),
            ),
            _ => {}
        }
        problems
    }

    pub fn table_ident(&self, source_name: &str) -> Result<Ident, sluice_core::IdentError> {
        Ident::new(self.table.as_deref().unwrap_or(source_name))
    }

    /// The declared data columns; for `raw`, `payload VARCHAR` unless declared.
    pub fn declared_schema(&self) -> Option<TableSchema> {
        let declared = self.schema.as_ref().and_then(|s| declared_columns(s).ok());
        match (self.format, declared) {
            (Format::Raw, None) => Some(TableSchema::new(vec![Column::new(
                PAYLOAD,
                ColumnType::Varchar,
            )])),
            (_, d) => d,
        }
    }

    /// The schema contract: as written; else, with `unknown_fields` set, fields no column
    /// takes are discarded (or kept); else the default (evolve).
    pub fn schema_contract(&self) -> SchemaContract {
        match (self.schema_contract, self.unknown_fields) {
            (Some(c), _) => c,
            (None, Some(_)) => SchemaContract {
                columns: ColumnsPolicy::DiscardValue,
                ..SchemaContract::default()
            },
            (None, None) => SchemaContract::default(),
        }
    }

    /// Whether fields no column takes are kept in `_sluice_extra`.
    pub fn keeps_unknown(&self) -> bool {
        self.unknown_fields == Some(UnknownFields::Keep)
            && self.schema_contract().columns == ColumnsPolicy::DiscardValue
    }

    /// The topics to subscribe to (a pattern is one `^...` entry).
    pub fn subscription(&self) -> Vec<String> {
        match &self.topic_pattern {
            Some(p) => vec![p.clone()],
            None => self.topics.clone(),
        }
    }
}

fn raw_schema_ok(s: &TableSchema) -> bool {
    matches!(s.columns.as_slice(), [c] if c.name == PAYLOAD && matches!(c.ty, ColumnType::Varchar | ColumnType::Blob))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> KafkaSourceConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn reports_every_problem() {
        let c = parse(
            "brokers = \"\"\ntopics = [\"a\"]\ntopic_pattern = \"b\"\nformat = \"csv\"\n\
             [librdkafka]\n\"enable.auto.commit\" = \"true\"\n\"security.protocol\" = \"SASL_SSL\"\n",
        );
        let keys: Vec<String> = c.validate("orders").into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "brokers",
                "topic_pattern",
                "topic_pattern",
                "librdkafka.\"enable.auto.commit\"",
                "schema"
            ]
        );
    }

    #[test]
    fn defaults() {
        let c = parse("brokers = \"k:9092\"\ntopics = [\"orders\"]\n");
        assert!(c.validate("orders").is_empty());
        assert_eq!(c.group_id, "sluice");
        assert_eq!(
            (c.format, c.start_from, c.on_offset_gap),
            (Format::Json, StartFrom::Earliest, OffsetGapPolicy::Fail)
        );
        assert!(c.declared_schema().is_none());
        let raw = parse("brokers = \"k:9092\"\ntopics = [\"t\"]\nformat = \"raw\"\n");
        assert_eq!(raw.declared_schema().unwrap().columns[0].name, PAYLOAD);
    }

    #[test]
    fn a_message_bound_out_of_range_is_refused() {
        for size in ["0B", "2GiB"] {
            let c = parse(&format!(
                "brokers = \"k:9092\"\ntopics = [\"t\"]\nmax_message_bytes = \"{size}\"\n"
            ));
            let keys: Vec<String> = c.validate("t").into_iter().map(|(k, _)| k).collect();
            assert_eq!(keys, ["max_message_bytes"], "{size}");
        }
    }
}
