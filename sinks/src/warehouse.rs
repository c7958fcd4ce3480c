//! The DuckDB side of a commit. [`Warehouse`] owns the one read-write connection; the
//! daemon drives it from a single committer thread (DuckDB calls block).

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use chrono::{DateTime, Utc};
use duckdb::{Config, Connection};
use sluice_core::{Chunk, Ident, Position, SchemaChange, TableSchema};
use tracing::{debug, warn};

use sluice_state::{ledger, tables, SourceFiles};

use crate::{
    error::DuckdbContext,
    parquet::{ParquetSink, WrittenFile},
    Result, SinkError,
};
use staged::ParquetJob;
pub use staged::Staged;

/// How to open the warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseOptions {
    pub db_path: PathBuf,
    /// Schema of the raw tables.
    pub raw_schema: Ident,
    /// DuckDB `memory_limit`, e.g. `"2GB"`.
    pub memory_limit: Option<String>,
    pub threads: Option<u16>,
    /// DuckDB `checkpoint_threshold`: the WAL size at which a commit checkpoints.
    pub checkpoint_threshold: Option<String>,
    /// Where Parquet copies go; `None` when Parquet is disabled.
    pub parquet: Option<ParquetSink>,
}

/// Chunks of one table, committed together as one batch.
#[derive(Debug, Clone)]
pub struct PendingBatch {
    pub table: Ident,
    pub raw_columns: Arc<TableSchema>,
    pub chunks: Vec<Chunk>,
}

impl PendingBatch {
    pub fn rows(&self) -> usize {
        self.chunks.iter().map(|c| c.rows.num_rows()).sum()
    }

    pub fn dead_letters(&self) -> usize {
        self.chunks.iter().map(|c| c.dead_letters.len()).sum()
    }

    /// When the batch's oldest row reached its source (`None` for a batch of no chunk).
    pub fn oldest(&self) -> Option<std::time::Instant> {
        self.chunks.iter().map(|c| c.since).min()
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
    /// Columns the raw table gained and types it widened to, in the commit.
    pub schema_changes: Vec<SchemaChange>,
}

/// The DuckDB database: raw tables plus sluice's state.
#[derive(Debug)]
pub struct Warehouse {
    conn: Connection,
    raw_schema: Ident,
    parquet: Option<ParquetSink>,
    last_batch: i64,
    /// The id given to the last staged batch (see [`Warehouse::stage`]).
    last_staged: i64,
    /// Columns of each raw table this process has written to.
    tables: HashMap<Ident, Arc<TableSchema>>,
    threads: Threads,
}

/// DuckDB's worker threads, set per kind of work. A commit appends one batch, which DuckDB
/// compresses in a single task; while a worker runs that task, the committing thread polls
/// for more without sleeping (`QueryResult::CompleteInternal` in DuckDB 2.0 only waits when
/// a task is blocked), burning the core the sources and the Parquet writer need. So commits
/// run on the committer's own thread alone (`threads = 1`), and queries (models) get the
/// configured number. Measured in BENCHMARKS.md: a quarter less CPU for the same ingest.
#[derive(Debug)]
struct Threads {
    /// The configured number (DuckDB's default: all cores), used for queries.
    queries: i64,
    /// What DuckDB is set to now.
    current: i64,
}

/// The table function the commit scans a batch's Arrow arrays with.
const ARROW_SCAN: &str = "sluice_arrow_batch";

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
        if let Some(size) = &opts.checkpoint_threshold {
            config = config
                .with("checkpoint_threshold", size)
                .ctx(|| format!("setting checkpoint_threshold {size:?}"))?;
        }
        let conn = sluice_state::open(&opts.db_path, config)?;
        conn.register_table_function::<duckdb::vtab::arrow::ArrowVTab>(ARROW_SCAN)
            .ctx(|| "registering the Arrow scan".into())?;
        conn.execute_batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            opts.raw_schema.quoted()
        ))
        .ctx(|| format!("creating schema {}", opts.raw_schema))?;
        let last_batch = ledger::last_batch_id(&conn)?;
        let configured: i64 = conn
            .query_row("SELECT current_setting('threads')", [], |r| r.get(0))
            .ctx(|| "reading DuckDB's threads".into())?;
        sluice_state::sandbox::lock(&conn)?;
        Ok(Warehouse {
            conn,
            raw_schema: opts.raw_schema,
            parquet: opts.parquet,
            last_batch,
            last_staged: last_batch,
            tables: HashMap::new(),
            threads: Threads {
                queries: configured,
                current: configured,
            },
        })
    }

    /// The connection, for reads (state queries).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection with DuckDB's configured worker threads, for queries that gain from
    /// them (models). If DuckDB refuses the setting, queries run with what it has.
    pub fn for_queries(&mut self) -> &Connection {
        if let Err(e) = self.set_threads(self.threads.queries) {
            warn!(error = %e, "could not give DuckDB its worker threads back; queries run with fewer");
        }
        &self.conn
    }

    fn set_threads(&mut self, n: i64) -> Result<()> {
        if self.threads.current != n {
            self.conn
                .execute_batch(&format!("SET threads = {n}"))
                .ctx(|| format!("setting DuckDB's threads to {n}"))?;
            self.threads.current = n;
        }
        Ok(())
    }

    pub fn parquet(&self) -> Option<&ParquetSink> {
        self.parquet.as_ref()
    }

    pub fn last_batch_id(&self) -> i64 {
        self.last_batch
    }

    /// Every column of `raw.<table>`, or `None` before its first batch.
    pub fn table_schema(&self, table: &Ident) -> Result<Option<TableSchema>> {
        Ok(tables::describe(&self.conn, &self.raw_schema, table)?)
    }

    /// The data columns a source writes to `table`, and what a declaration changes of an
    /// existing table (see `sluice_state::tables::data_columns`).
    pub fn data_columns(
        &self,
        table: &Ident,
        declared: Option<TableSchema>,
    ) -> Result<(Option<TableSchema>, Vec<SchemaChange>)> {
        Ok(tables::data_columns(
            &self.conn,
            &self.raw_schema,
            table,
            declared,
        )?)
    }

    /// Where each partition of Kafka source `source` resumes.
    pub fn offsets_of(&self, source: &str) -> Result<HashMap<(String, i32), i64>> {
        Ok(ledger::offsets_of(&self.conn, source)?)
    }

    /// The ledger's records of the files of `source`, on a connection of their own for the
    /// source's thread.
    /// The stored positions of a source of another type, by key.
    pub fn positions_of(&self, source: &str) -> Result<HashMap<String, i64>> {
        Ok(ledger::positions_of(&self.conn, source)?)
    }

    pub fn source_files(&self, source: &str) -> Result<SourceFiles> {
        let conn = self
            .conn
            .try_clone()
            .ctx(|| format!("opening a ledger connection for source {source}"))?;
        Ok(SourceFiles::new(conn, source))
    }

    /// Commits one batch: [`Warehouse::stage`] then [`Warehouse::commit_staged`]. After an
    /// error the batch is dropped, and its id goes to the next batch staged.
    pub fn commit(&mut self, batch: PendingBatch) -> Result<CommitReceipt> {
        let mut staged = self.stage(batch)?;
        let result = self.commit_staged(&mut staged);
        if result.is_err() {
            self.last_staged = self.last_batch;
        }
        result
    }

    /// Checks the batch against its raw table (creating the table on its first batch), fixes
    /// the batch's id and time, lays its rows out in the table's column order and starts
    /// writing its Parquet file. Batches must be committed in the order they are staged (ids
    /// follow that order); a staged batch that is dropped uncommitted leaves a gap that
    /// [`Warehouse::commit_staged`] refuses, so only drop one when giving up on the warehouse.
    pub fn stage(&mut self, batch: PendingBatch) -> Result<Staged> {
        let (columns, changes) = match batch.rows() {
            0 => (batch.raw_columns.clone(), Vec::new()),
            _ => self.ensure_table(&batch)?,
        };
        let has_content = batch.rows() > 0 || batch.dead_letters() > 0;
        let id = has_content.then(|| {
            self.last_staged += 1;
            self.last_staged
        });
        let now = Utc::now();
        let full = match id {
            Some(id) => rows::complete(&batch, &columns, id, now)?,
            None => Vec::new(),
        };
        let parquet = match &self.parquet {
            Some(sink) if full.iter().any(|b| b.num_rows() > 0) => Some(ParquetJob::start(
                sink.clone(),
                ParquetSink::relative_path(
                    batch.table.as_str(),
                    now.date_naive(),
                    &provenance_id(&batch),
                ),
                columns.arrow_schema(),
                &full,
            )),
            _ => None,
        };
        Ok(Staged {
            batch,
            id,
            now,
            full,
            parquet,
            changes,
        })
    }

    /// Takes back the batch staged last, uncommitted, with its Parquet file removed: its id
    /// goes to the next batch staged. Batches staged after a failed one are unstaged newest
    /// first, then the failed one, so that its chunks can be staged again in other batches
    /// (the committer commits a failed batch one file at a time).
    pub fn unstage(&mut self, staged: Staged) -> Result<PendingBatch> {
        // Its schema changes are not the table's: learn the table's columns again.
        self.tables.remove(&staged.batch.table);
        if let Some(id) = staged.id {
            if id != self.last_staged {
                return Err(SinkError::OutOfOrder {
                    table: staged.batch.table.to_string(),
                    id,
                    last: self.last_batch,
                });
            }
            self.last_staged = id - 1;
        }
        Ok(staged.into_batch())
    }

    /// Commits a staged batch: its Parquet file must be in place, then one DuckDB
    /// transaction holds the rows, the ledger entry, the file positions and the dead
    /// letters. On error nothing of the batch is in DuckDB and its Parquet file is
    /// removed; committing the same `staged` again retries it whole.
    pub fn commit_staged(&mut self, staged: &mut Staged) -> Result<CommitReceipt> {
        if let Some(id) = staged.id.filter(|id| *id != self.last_batch + 1) {
            return Err(SinkError::OutOfOrder {
                table: staged.batch.table.to_string(),
                id,
                last: self.last_batch,
            });
        }
        self.set_threads(1)?;
        let result = self.transaction(staged);
        if result.is_err() {
            if let Some(job) = staged.parquet.as_mut() {
                job.remove();
            }
            // The table's cached columns stay as they are: they hold this batch's changes
            // and those of batches staged after it, which are either committed in order
            // (this one retried whole) or unstaged, which forgets them.
        }
        let (parquet, schema_changes) = result?;
        if let Some(id) = staged.id {
            self.last_batch = id;
        }
        let batch = &staged.batch;
        Ok(CommitReceipt {
            batch_id: staged.id,
            table: batch.table.clone(),
            rows: batch.rows() as u64,
            dead_letters: batch.dead_letters() as u64,
            parquet,
            committed_at: staged.now,
            positions: batch
                .chunks
                .iter()
                .map(|c| (c.source.clone(), c.position.clone()))
                .collect(),
            schema_changes,
        })
    }

    /// Creates the raw table on its first batch. Returns the table's columns as the batch
    /// is to be written (the table's order; new columns last, types widened: see
    /// `sluice_core::evolve`) and the changes that takes, applied in the batch's commit.
    fn ensure_table(
        &mut self,
        batch: &PendingBatch,
    ) -> Result<(Arc<TableSchema>, Vec<SchemaChange>)> {
        let known = match self.tables.get(&batch.table) {
            Some(known) => known.clone(),
            None => Arc::new(tables::ensure(
                &self.conn,
                &self.raw_schema,
                &batch.table,
                &batch.raw_columns,
            )?),
        };
        if Arc::ptr_eq(&known, &batch.raw_columns) {
            return Ok((known, Vec::new()));
        }
        let (evolved, changes) = known.evolve(&batch.raw_columns);
        let columns = match changes.is_empty() {
            true => known,
            false => Arc::new(evolved),
        };
        self.tables.insert(batch.table.clone(), columns.clone());
        Ok((columns, changes))
    }

    /// One DuckDB transaction; it commits only once the Parquet file is durably in place.
    fn transaction(
        &mut self,
        staged: &mut Staged,
    ) -> Result<(Option<WrittenFile>, Vec<SchemaChange>)> {
        let batch = &staged.batch;
        let table = format!("{}.{}", self.raw_schema, batch.table);
        let started = std::time::Instant::now();
        let tx = self
            .conn
            .transaction()
            .ctx(|| format!("starting the commit of {table}"))?;
        let changes = match (staged.id, staged.changes.is_empty()) {
            (Some(batch_id), false) => {
                let at = tables::evolve::Target {
                    schema: &self.raw_schema,
                    table: &batch.table,
                    batch_id,
                    stamp: &timestamp_literal(staged.now),
                };
                tables::evolve::apply(&tx, at, &staged.changes, &batch.chunks)?
            }
            _ => Vec::new(),
        };
        if !staged.full.is_empty() {
            // Scanned straight from the Arrow batches: an appender would first copy them
            // into a buffer of its own (a batch more in memory, a copy more of CPU).
            let mut insert = tx
                .prepare(&format!(
                    "INSERT INTO {}.{} SELECT * FROM {ARROW_SCAN}(?)",
                    self.raw_schema.quoted(),
                    batch.table.quoted()
                ))
                .ctx(|| format!("preparing the insert into {table}"))?;
            for rows in &staged.full {
                let scan = duckdb::vtab::arrow::ArrowBatchRegistration::new(rows.clone());
                insert
                    .execute([&scan])
                    .ctx(|| format!("appending rows to {table}"))?;
            }
        }
        let appended = started.elapsed();
        let written = match staged.parquet.as_mut() {
            Some(job) => Some(job.wait(&staged.full)?),
            None => None,
        };
        let parquet_waited = started.elapsed();
        let stamp = timestamp_literal(staged.now);
        let (name, chunks) = (batch.table.as_str(), &batch.chunks[..]);
        if let Some(id) = staged.id {
            let parquet = written.as_ref().map(|w| (w.relative.as_str(), w.bytes));
            ledger::record_batch(&tx, name, chunks, id, parquet, &stamp)?;
            ledger::record_dead_letters(&tx, name, chunks, id, &stamp)?;
        }
        ledger::record_files(&tx, name, chunks, staged.id, &stamp)?;
        ledger::record_offsets(&tx, name, chunks, staged.id, &stamp)?;
        ledger::record_positions(&tx, name, chunks, staged.id, &stamp)?;
        let recorded = started.elapsed();
        sluice_core::fault::point("commit.before");
        tx.commit()
            .ctx(|| format!("committing the batch of {table}"))?;
        sluice_core::fault::point("commit.after");
        // Where a commit's time goes (`SLUICE_LOG=sluice_sinks=debug`; the Kafka bench's
        // timeline shows it): appending the rows, waiting for the Parquet file, the
        // ledger rows, DuckDB's commit.
        debug!(%table, rows = batch.rows(),
            append_ms = ms(appended), parquet_wait_ms = ms(parquet_waited - appended),
            ledger_ms = ms(recorded - parquet_waited), commit_ms = ms(started.elapsed() - recorded),
            "commit phases");
        Ok((written, changes))
    }
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
            Position::Keyed(p) => {
                hasher.update(p.key.as_bytes());
                hasher.update(format!("\0{}\n", p.next).as_bytes());
            }
        }
    }
    hasher.finalize().to_hex()[..32].to_string()
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn timestamp_literal(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

mod rows;
mod staged;
#[cfg(test)]
mod tests;
