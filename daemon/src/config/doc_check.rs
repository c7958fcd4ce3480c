//! Keeps the README's configuration reference true: every key the code accepts is in the
//! README's table, every key in the table is accepted, and the README's full example loads.
//!
//! The keys come from the code itself: serde's derive hands each struct's field names to
//! `deserialize_struct`, which [`fields_of`] records.

use serde::{de, Deserialize};

use super::file::{
    BatchConfig, DuckdbConfig, FileConfig, HttpConfig, ModelsConfig, ParquetConfig, SqlConfig,
};
use sluice_sources::{csv_dir::CsvSourceConfig, kafka::KafkaSourceConfig};

/// The README of the checkout under test, read at run time (a binary built in another
/// checkout sharing the target directory would otherwise check that checkout's README).
fn readme() -> String {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    );
    std::fs::read_to_string(dir.join("../README.md")).expect("README.md")
}

/// The field names serde's derive declares for `T`.
fn fields_of<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
    let mut collector = FieldCollector(Vec::new());
    let _ = T::deserialize(&mut collector);
    collector.0
}

struct FieldCollector(Vec<&'static str>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("collected")
    }
}
impl std::error::Error for Stop {}
impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for &mut FieldCollector {
    type Error = Stop;
    fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }
    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0.extend_from_slice(fields);
        Err(Stop)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Keys listed in the README's configuration reference table (rows like "| `batch.max_rows` |").
fn readme_keys() -> Vec<String> {
    let readme = readme();
    let start = readme
        .find("<!-- config-keys:start -->")
        .expect("README has a config-keys table");
    let end = readme.find("<!-- config-keys:end -->").expect("table end");
    readme[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

fn code_keys() -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let sections = [
        ("", fields_of::<FileConfig>()),
        ("batch.", fields_of::<BatchConfig>()),
        ("duckdb.", fields_of::<DuckdbConfig>()),
        ("parquet.", fields_of::<ParquetConfig>()),
        ("http.", fields_of::<HttpConfig>()),
        ("sql.", fields_of::<SqlConfig>()),
        ("models.", fields_of::<ModelsConfig>()),
        ("lake.", fields_of::<sluice_lake::LakeConfig>()),
        ("sources.<name>.", fields_of::<CsvSourceConfig>()),
        ("sources.<name>.", fields_of::<KafkaSourceConfig>()),
        (
            "sources.<name>.schema_contract.",
            fields_of::<sluice_sources::typing::contract::SchemaContract>(),
        ),
    ];
    for (prefix, fields) in sections {
        for f in fields {
            // Sections are documented through their keys.
            if prefix.is_empty()
                && [
                    "batch", "duckdb", "parquet", "http", "sql", "sources", "models", "lake",
                ]
                .contains(&f)
            {
                continue;
            }
            if prefix == "sources.<name>." && f == "schema_contract" {
                continue; // documented through its keys
            }
            let key = format!("{prefix}{f}");
            // Keys both source types have (table, schema) are documented once.
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys.push("sources.<name>.type".into());
    keys
}

#[test]
fn the_collector_sees_real_fields() {
    assert_eq!(
        fields_of::<BatchConfig>(),
        ["max_rows", "max_bytes", "max_age"]
    );
}

#[test]
fn readme_documents_exactly_the_keys_the_code_accepts() {
    let mut documented = readme_keys();
    let mut accepted = code_keys();
    documented.sort();
    accepted.sort();
    assert_eq!(documented, accepted, "README config table vs code");
}

/// The README table's default column for `key` (the text between the backticks).
fn readme_default(key: &str) -> String {
    let row = format!("| `{key}` | ");
    let readme = readme();
    let line = readme
        .lines()
        .find(|l| l.starts_with(&row))
        .unwrap_or_else(|| panic!("README table has no row for {key}"));
    line[row.len()..]
        .split(" |")
        .next()
        .map(|d| d.trim_matches('`').to_string())
        .unwrap_or_default()
}

#[test]
fn readme_states_the_defaults_the_code_uses() {
    let batch = BatchConfig::default();
    let duckdb = DuckdbConfig::default();
    let parquet = ParquetConfig::default();
    let quoted = |s: &str| format!("\"{s}\"");
    let expected = [
        ("batch.max_rows", batch.max_rows.to_string()),
        ("duckdb.file", quoted(&duckdb.file.display().to_string())),
        ("duckdb.raw_schema", quoted(&duckdb.raw_schema)),
        ("parquet.enabled", parquet.enabled.to_string()),
        ("parquet.dir", quoted(&parquet.dir.display().to_string())),
        ("http.listen", quoted(&HttpConfig::default().listen)),
        ("sql.listen", quoted(&SqlConfig::default().listen)),
        (
            "sql.max_connections",
            SqlConfig::default().max_connections.to_string(),
        ),
    ];
    for (key, value) in expected {
        assert_eq!(readme_default(key), value, "README default of {key}");
    }
    let unquoted = |key| readme_default(key).trim_matches('"').to_string();
    let bytes: bytesize::ByteSize = unquoted("batch.max_bytes").parse().expect("a size");
    assert_eq!(bytes, batch.max_bytes, "README default of batch.max_bytes");
    let age = humantime::parse_duration(&unquoted("batch.max_age")).expect("a duration");
    assert_eq!(age, batch.max_age, "README default of batch.max_age");
    let timeout =
        humantime::parse_duration(&unquoted("sql.statement_timeout")).expect("a duration");
    assert_eq!(
        timeout,
        SqlConfig::default().statement_timeout,
        "README default of sql.statement_timeout"
    );
    let lake: sluice_lake::LakeConfig =
        toml::from_str("format = \"delta\"\nuri = \"lake\"").expect("a minimal [lake]");
    let size: bytesize::ByteSize = unquoted("lake.target_file_size").parse().expect("a size");
    assert_eq!(
        size, lake.target_file_size,
        "README default of lake.target_file_size"
    );
    assert_eq!(
        readme_default("lake.checkpoint_interval"),
        lake.checkpoint_interval.to_string()
    );
    assert_eq!(
        readme_default("lake.compact_after"),
        lake.compact_after.to_string()
    );
    let vacuum = humantime::parse_duration(&unquoted("lake.vacuum_retention")).expect("a duration");
    assert_eq!(
        vacuum, lake.vacuum_retention,
        "README default of lake.vacuum_retention"
    );
    let idle = humantime::parse_duration(&unquoted("sql.idle_in_transaction_timeout"))
        .expect("a duration");
    assert_eq!(
        idle,
        SqlConfig::default().idle_in_transaction_timeout,
        "README default of sql.idle_in_transaction_timeout"
    );
}

#[test]
fn readme_full_example_loads() {
    let readme = readme();
    let start = readme
        .find("<!-- config-example:start -->")
        .expect("README has a full example");
    let block = &readme[start..];
    let body = block
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("toml block");
    let env = |name: &str| (name == "KAFKA_PASSWORD").then(|| "secret".to_string());
    super::Config::parse_with_env(body, std::path::Path::new("/etc/sluice/sluice.toml"), &env)
        .unwrap_or_else(|p| panic!("README example: {p:?}"));
}
