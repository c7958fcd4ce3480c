//! The configured sources, built from the configuration and the warehouse's state (known
//! files, stored offsets, existing table schemas) and, with a lake, how far it holds
//! shared streams; each ready to run on its own thread.

use std::{collections::HashMap, sync::Arc};

use anyhow::Context;
use sluice_core::{FileLedger, SharedLedger};
use sluice_sinks::Warehouse;
use sluice_sources::{
    component::ResumeError, BuildContext, ResumeState, RunningSource, SourceStatus,
};

use super::{MAX_CHUNK_BYTES, MAX_CHUNK_ROWS};
use crate::config::Config;

/// A configured source, ready to run on its own thread.
pub struct Source {
    pub name: Arc<str>,
    pub running: Box<dyn RunningSource>,
}

/// What sources resume from, read from the warehouse.
struct FromWarehouse<'a>(&'a Warehouse);

impl ResumeState for FromWarehouse<'_> {
    fn files(&self, source: &str) -> Result<Box<dyn FileLedger>, ResumeError> {
        Ok(Box::new(self.0.source_files(source)?))
    }

    fn offsets(&self, source: &str) -> Result<HashMap<(String, i32), i64>, ResumeError> {
        Ok(self.0.offsets_of(source)?)
    }

    fn positions(&self, source: &str) -> Result<HashMap<String, i64>, ResumeError> {
        Ok(self.0.positions_of(source)?)
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
    ledgers: &HashMap<String, Arc<dyn SharedLedger>>,
) -> anyhow::Result<Vec<Source>> {
    let chunk_rows = chunk_rows(config.batch.max_rows);
    let chunk_bytes = (config.batch.max_bytes.as_u64() as usize / 2).clamp(1, MAX_CHUNK_BYTES);
    let mut sources = Vec::new();
    for (name, source) in &config.sources {
        let source = source.component();
        let table = source.table_ident(name)?;
        let declared = source.declared_schema();
        let (data_schema, changes) = warehouse
            .data_columns(&table, declared.clone())
            .with_context(|| format!("source {name}"))?;
        check_declared(name, &table, declared.as_ref(), &changes)?;
        let shared_ledger = ledgers.get(table.as_str()).cloned();
        let ctx = BuildContext {
            name,
            table,
            shared_ledger,
            data_schema,
            data_dir: &config.data_dir,
            chunk_rows,
            chunk_bytes,
            status: statuses.get(name).cloned().unwrap_or_default(),
            resume: &FromWarehouse(warehouse),
        };
        sources.push(Source {
            name: name.as_str().into(),
            running: source.build(ctx)?,
        });
    }
    Ok(sources)
}

/// A declaration that adds columns to an existing table, or widens them, is taken (with
/// the first batch); one whose type no type but VARCHAR holds together with the table's is
/// refused, as the user asked for another. A declared type that the table's column does
/// not hold widens the column to the least type that holds both (logged).
fn check_declared(
    name: &str,
    table: &sluice_core::Ident,
    declared: Option<&sluice_core::TableSchema>,
    changes: &[sluice_core::SchemaChange],
) -> anyhow::Result<()> {
    for change in changes {
        let asked = declared.and_then(|d| d.position(&change.column).map(|i| &d.columns[i].ty));
        if let (Some(old), Some(asked)) = (&change.old, asked) {
            use sluice_core::evolve::{holds, is_last_resort};
            let same = holds(asked, &change.new) && holds(&change.new, asked);
            if !same && is_last_resort(old, &change.new) {
                anyhow::bail!(
                    "source {name}: column {} of raw table {table} is {old} and is declared \
                     {asked}; no type but VARCHAR holds both: declare {old} or VARCHAR, or \
                     use a new table",
                    change.column,
                );
            }
        }
        tracing::info!(source = name, %table, column = %change.column, change = change.kind(),
            declared = %asked.map_or(String::new(), |t| t.to_string()), new_type = %change.new,
            "the declared schema changes the raw table (with its next batch)");
    }
    Ok(())
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
