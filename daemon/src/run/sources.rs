//! The configured sources, built from the configuration and the warehouse's state (known
//! files, stored offsets, existing table schemas), each ready to run on its own thread.

use std::{collections::HashMap, sync::Arc};

use anyhow::{bail, Context};
use sluice_core::{meta, Ident, TableSchema};
use sluice_sinks::Warehouse;
use sluice_sources::{
    csv_dir::{CsvDirSetup, CsvDirSource},
    kafka::{KafkaSetup, KafkaSource},
    SourceContext, SourceStatus,
};

use super::{MAX_CHUNK_BYTES, MAX_CHUNK_ROWS};
use crate::config::{Config, SourceConfig};

/// A configured source, ready to run on its own thread.
pub enum Source {
    Csv(Box<CsvDirSource>, Arc<str>),
    Kafka(Box<KafkaSource>, Arc<str>),
}

impl Source {
    pub fn name(&self) -> Arc<str> {
        match self {
            Source::Csv(_, name) | Source::Kafka(_, name) => name.clone(),
        }
    }

    pub fn run(self, ctx: SourceContext) -> Result<(), sluice_sources::SourceError> {
        match self {
            Source::Csv(source, _) => source.run(ctx),
            Source::Kafka(source, _) => source.run(ctx),
        }
    }
}

/// Records per chunk: at most [`MAX_CHUNK_ROWS`], and `max_rows` split evenly, so a full
/// batch holds `max_rows` rows (less than one row per chunk short of it when not divisible). The batcher closes a batch before a
/// chunk would overflow it; with 32,768-row chunks a 100,000-row limit made 98,304-row
/// batches, and a 122,880-row limit (one DuckDB row group, see `Batch::max_rows`) made
/// batches too small for DuckDB to write them straight into its file.
fn chunk_rows(max_rows: usize) -> usize {
    let max_rows = max_rows.max(1);
    let chunks = max_rows.div_ceil(MAX_CHUNK_ROWS);
    max_rows / chunks
}

/// Every configured source; `statuses` are their status handles by name.
pub fn build(
    config: &Config,
    warehouse: &Warehouse,
    statuses: &HashMap<String, Arc<SourceStatus>>,
) -> anyhow::Result<Vec<Source>> {
    let chunk_rows = chunk_rows(config.batch.max_rows);
    let chunk_bytes = (config.batch.max_bytes.as_u64() as usize / 2).clamp(1, MAX_CHUNK_BYTES);
    let mut sources = Vec::new();
    for (name, source) in &config.sources {
        let table = source.table_ident(name)?;
        let data_schema = table_data_schema(warehouse, &table, source.declared_schema())
            .with_context(|| format!("source {name}"))?;
        let csv = match source {
            SourceConfig::Csv(csv) => csv,
            SourceConfig::Kafka(kafka) => {
                let setup = KafkaSetup {
                    name: name.as_str().into(),
                    config: kafka.clone(),
                    table,
                    data_schema,
                    stored: warehouse.offsets_of(name)?,
                    chunk_rows,
                    chunk_bytes,
                };
                let status = statuses.get(name).cloned().unwrap_or_default();
                let source = KafkaSource::new(setup, status)?;
                sources.push(Source::Kafka(Box::new(source), name.as_str().into()));
                continue;
            }
        };
        let setup = CsvDirSetup {
            name: name.as_str().into(),
            config: csv.clone(),
            table,
            data_schema,
            ledger: Box::new(warehouse.source_files(name)?),
            archive_dir: config.data_dir.join("archive").join(name),
            quarantine_dir: config.data_dir.join("quarantine").join(name),
            chunk_rows,
            chunk_bytes,
        };
        let source = CsvDirSource::new(setup)?;
        sources.push(Source::Csv(Box::new(source), name.as_str().into()));
    }
    Ok(sources)
}

/// The table's data columns: declared ones must match an existing table exactly.
fn table_data_schema(
    warehouse: &Warehouse,
    table: &Ident,
    declared: Option<TableSchema>,
) -> anyhow::Result<Option<TableSchema>> {
    let existing = warehouse.table_schema(table)?.map(|s| {
        TableSchema::new(
            s.columns
                .into_iter()
                .filter(|c| !meta::is_reserved(&c.name))
                .collect(),
        )
    });
    match (declared, existing) {
        (Some(d), Some(e)) if !d.same_columns(&e) => {
            bail!(
                "the declared schema ({}) differs from the existing raw table {table} ({}); \
                 sluice does not alter raw tables: restore the declaration or use a new table",
                d,
                e
            )
        }
        (Some(d), _) => Ok(Some(d)),
        (None, e) => Ok(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fill_a_batch_to_its_row_limit() {
        for max_rows in [1, 7, 32_768, 32_769, 100_000, 100_001, 122_880, 1_000_000] {
            let rows = chunk_rows(max_rows);
            assert!((1..=MAX_CHUNK_ROWS).contains(&rows), "{max_rows}: {rows}");
            let per_batch = max_rows / rows * rows;
            assert!(max_rows - per_batch < max_rows / rows, "{max_rows}: {rows}");
        }
        assert_eq!(chunk_rows(100_000), 25_000);
        assert_eq!(chunk_rows(122_880), 30_720);
    }
}
