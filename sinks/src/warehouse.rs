//! The DuckDB side of a commit. [`Warehouse`] owns the one read-write connection; the
//! daemon drives it from a single committer thread (DuckDB calls block).

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use arrow::{
    array::{ArrayRef, Int64Array, TimestampMicrosecondArray},
    record_batch::RecordBatch,
};
use chrono::{DateTime, Utc};
use duckdb::{Config, Connection};
use sluice_core::{meta, Chunk, Ident, Position, TableSchema};

use crate::{
    error::DuckdbContext,
    parquet::{ParquetSink, WrittenFile},
    raw_table, state, Result, SinkError,
};

/// How to open the warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseOptions {
    pub db_path: PathBuf,
    /// Schema of the raw tables.
    pub raw_schema: Ident,
    /// DuckDB `memory_limit`, e.g. `"2GB"`.
    pub memory_limit: Option<String>,
    pub threads: Option<u16>,
    /// Where Parquet copies go; `None` when Parquet is disabled.
    pub parquet: Option<ParquetSink>,
}

/// Chunks of one table, committed together as one batch.
#[derive(Debug, Clone)]
pub struct PendingBatch {
    pub table: Ident,
    pub raw_schema: Arc<TableSchema>,
    pub chunks: Vec<Chunk>,
}

impl PendingBatch {
    pub fn rows(&self) -> usize {
        self.chunks.iter().map(|c| c.rows.num_rows()).sum()
    }

    pub fn dead_letters(&self) -> usize {
        self.chunks.iter().map(|c| c.dead_letters.len()).sum()
    }
}

/// What a commit made durable.
#[derive(Debug, Clone)]
pub struct CommitReceipt {
    /// `None` when the batch carried neither rows nor dead letters (position updates only).
    pub batch_id: Option<i64>,
    pub table: Ident,
    pub rows: u64,
    pub dead_letters: u64,
    pub parquet: Option<WrittenFile>,
    pub committed_at: DateTime<Utc>,
    /// The positions now durable, by source, in the order the chunks arrived.
    pub positions: Vec<(Arc<str>, Position)>,
}

/// The DuckDB database: raw tables plus sluice's state.
#[derive(Debug)]
pub struct Warehouse {
    conn: Connection,
    raw_schema: Ident,
    parquet: Option<ParquetSink>,
    last_batch: i64,
    /// Columns of each raw table this process has written to.
    tables: HashMap<Ident, Arc<TableSchema>>,
}

impl Warehouse {
    /// Opens (creating if needed) the database and its state schema.
    pub fn open(opts: WarehouseOptions) -> Result<Self> {
        // Everything sluice needs (Parquet, JSON) is compiled in; it never downloads code.
        let mut config = Config::default()
            .enable_autoload_extension(false)
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .ctx(|| "configuring DuckDB".into())?;
        if let Some(limit) = &opts.memory_limit {
            config = config
                .max_memory(limit)
                .ctx(|| format!("setting memory_limit {limit:?}"))?;
        }
        if let Some(threads) = opts.threads {
            config = config
                .threads(i64::from(threads))
                .ctx(|| format!("setting threads {threads}"))?;
        }
        let path = opts.db_path.display().to_string();
        let conn =
            Connection::open_with_flags(&opts.db_path, config).ctx(|| format!("opening {path}"))?;
        state::ensure(&conn)?;
        conn.execute_batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            opts.raw_schema.quoted()
        ))
        .ctx(|| format!("creating schema {}", opts.raw_schema))?;
        let last_batch = state::last_batch_id(&conn)?;
        Ok(Warehouse {
            conn,
            raw_schema: opts.raw_schema,
            parquet: opts.parquet,
            last_batch,
            tables: HashMap::new(),
        })
    }

    /// The connection, for reads (state queries, models).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn parquet(&self) -> Option<&ParquetSink> {
        self.parquet.as_ref()
    }

    pub fn last_batch_id(&self) -> i64 {
        self.last_batch
    }

    /// Every column of `raw.<table>`, or `None` before its first batch.
    pub fn table_schema(&self, table: &Ident) -> Result<Option<TableSchema>> {
        raw_table::describe(&self.conn, &self.raw_schema, table)
    }

    /// Where each partition of Kafka source `source` resumes.
    pub fn offsets_of(&self, source: &str) -> Result<HashMap<(String, i32), i64>> {
        state::offsets_of(&self.conn, source)
    }

    /// What the ledger knows of the files of `source`.
    pub fn files_of(
        &self,
        source: &str,
    ) -> Result<HashMap<sluice_core::FileHash, sluice_core::FileRecord>> {
        state::files_of(&self.conn, source)
    }

    /// Commits one batch: Parquet first, then one DuckDB transaction with the rows, the
    /// ledger entry, the file positions and the dead letters. On error nothing of the
    /// batch is in DuckDB and its Parquet file is removed.
    pub fn commit(&mut self, batch: PendingBatch) -> Result<CommitReceipt> {
        let rows = batch.rows() as u64;
        if rows > 0 {
            self.ensure_table(&batch)?;
        }
        let dead = batch.dead_letters() as u64;
        let batch_id = (rows > 0 || dead > 0).then_some(self.last_batch + 1);
        let now = Utc::now();
        let full = match batch_id {
            Some(id) => complete_rows(&batch, id, now)?,
            None => Vec::new(),
        };
        let planned = self.planned_parquet(&batch, &full, now);
        let parquet = match self.transaction(&batch, batch_id, &full, planned.as_deref(), now) {
            Ok(parquet) => parquet,
            Err(err) => {
                // Whatever the writer left (a finished file or a temporary) is not committed.
                if let (Some(sink), Some(relative)) = (&self.parquet, &planned) {
                    let _ = sink.remove(relative);
                }
                return Err(err);
            }
        };
        if let Some(id) = batch_id {
            self.last_batch = id;
        }
        Ok(CommitReceipt {
            batch_id,
            table: batch.table.clone(),
            rows,
            dead_letters: dead,
            parquet,
            committed_at: now,
            positions: batch
                .chunks
                .iter()
                .map(|c| (c.source.clone(), c.position.clone()))
                .collect(),
        })
    }

    /// Creates the raw table on its first batch; checks every batch against its columns.
    fn ensure_table(&mut self, batch: &PendingBatch) -> Result<()> {
        if let Some(known) = self.tables.get(&batch.table) {
            let name = format!("{}.{}", self.raw_schema, batch.table);
            return raw_table::check_same(&name, known, &batch.raw_schema);
        }
        raw_table::ensure(
            &self.conn,
            &self.raw_schema,
            &batch.table,
            &batch.raw_schema,
        )?;
        self.tables
            .insert(batch.table.clone(), batch.raw_schema.clone());
        Ok(())
    }

    /// Where this batch's Parquet file goes, if it has one.
    fn planned_parquet(
        &self,
        batch: &PendingBatch,
        full: &[RecordBatch],
        now: DateTime<Utc>,
    ) -> Option<String> {
        let has_rows = full.iter().any(|b| b.num_rows() > 0);
        (self.parquet.is_some() && has_rows).then(|| {
            ParquetSink::relative_path(
                batch.table.as_str(),
                now.date_naive(),
                &provenance_id(batch),
            )
        })
    }

    /// One DuckDB transaction; the Parquet file is written on a second thread while the
    /// rows are appended, and must be durably in place before the transaction commits.
    fn transaction(
        &mut self,
        batch: &PendingBatch,
        batch_id: Option<i64>,
        full: &[RecordBatch],
        parquet: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<WrittenFile>> {
        let table = format!("{}.{}", self.raw_schema, batch.table);
        let raw_schema = self.raw_schema.clone();
        let sink = self.parquet.clone();
        let conn = &mut self.conn;
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| match (&sink, parquet) {
                (Some(sink), Some(relative)) => sink
                    .write(relative, batch.raw_schema.arrow_schema(), full)
                    .map(Some),
                _ => Ok(None),
            });
            let tx = conn
                .transaction()
                .ctx(|| format!("starting the commit of {table}"))?;
            if !full.is_empty() {
                let mut app = tx
                    .appender_to_db(batch.table.as_str(), raw_schema.as_str())
                    .ctx(|| format!("opening an appender on {table}"))?;
                for rows in full {
                    app.append_record_batch(rows.clone())
                        .ctx(|| format!("appending rows to {table}"))?;
                }
                app.flush().ctx(|| format!("flushing rows into {table}"))?;
            }
            let written = writer.join().map_err(|_| SinkError::Schema {
                table: table.clone(),
                detail: "the Parquet writer panicked".into(),
            })??;
            let stamp = timestamp_literal(now);
            if let Some(id) = batch_id {
                record::batch(&tx, batch, id, written.as_ref(), &stamp)?;
                record::dead_letters(&tx, batch, id, &stamp)?;
            }
            record::files(&tx, batch, batch_id, &stamp)?;
            record::offsets(&tx, batch, batch_id, &stamp)?;
            tx.commit()
                .ctx(|| format!("committing the batch of {table}"))?;
            Ok(written)
        })
    }
}

/// The rows of every chunk with the commit columns filled in, in the raw table's order.
fn complete_rows(batch: &PendingBatch, id: i64, now: DateTime<Utc>) -> Result<Vec<RecordBatch>> {
    let schema = batch.raw_schema.arrow_schema();
    let micros = now.timestamp_micros();
    let mut out = Vec::with_capacity(batch.chunks.len());
    for chunk in batch.chunks.iter().filter(|c| c.rows.num_rows() > 0) {
        let n = chunk.rows.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for column in &batch.raw_schema.columns {
            let array: ArrayRef =
                match column.name.as_str() {
                    meta::BATCH => Arc::new(Int64Array::from_value(id, n)),
                    meta::INGESTED_AT => Arc::new(
                        TimestampMicrosecondArray::from_value(micros, n).with_timezone("UTC"),
                    ),
                    name => chunk.rows.column_by_name(name).cloned().ok_or_else(|| {
                        SinkError::Schema {
                            table: batch.table.to_string(),
                            detail: format!("a chunk from {} lacks column {name}", chunk.source),
                        }
                    })?,
                };
            columns.push(array);
        }
        let rows =
            RecordBatch::try_new(schema.clone(), columns).map_err(|source| SinkError::Arrow {
                context: format!("assembling a batch of {}", batch.table),
                source,
            })?;
        out.push(rows);
    }
    Ok(out)
}

/// A name for the batch's Parquet file that depends only on what the batch contains, so a
/// replay after a crash rewrites the same file instead of adding a second copy.
fn provenance_id(batch: &PendingBatch) -> String {
    let mut hasher = blake3::Hasher::new();
    for chunk in &batch.chunks {
        hasher.update(chunk.source.as_bytes());
        hasher.update(b"\0");
        match &chunk.position {
            Position::File(p) => {
                hasher.update(p.hash.0.as_bytes());
                hasher.update(format!("\0{}\n", p.next_offset).as_bytes());
            }
            Position::Kafka(p) => {
                hasher.update(p.topic.as_bytes());
                hasher.update(format!("\0{}\0{}\n", p.partition, p.next_offset).as_bytes());
            }
        }
    }
    hasher.finalize().to_hex()[..32].to_string()
}

fn timestamp_literal(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

mod record;
#[cfg(test)]
mod tests;
