//! The publisher: batches committed to DuckDB and not yet in the lake become Delta
//! commits that say what they cover.
//!
//! DuckDB is the instance's source of truth; the lake follows it. Each Delta commit adds
//! the data files of a range of batches and, in the same commit, application transactions
//! (`txn` actions):
//! - `sluice:<writer id>`, version = the last batch id it holds from this database (the
//!   watermark: after a crash the publisher starts after it, so a batch is published once);
//! - per shared stream (a Kafka partition of a consumer group), version = the next
//!   position the lake holds up to. Rows of a stream below that are already in the lake
//!   (another instance published them) and are left out. Two writers committing the same
//!   stream at once conflict in Delta's conflict check; the loser reloads and redoes its
//!   commit (its unreferenced files go at the next vacuum).
//!
//! The publisher holds a table's versions while the log only has its own commits since it
//! read them; any error, or another writer's commit, makes it read them again.
//!
//! Here: the publisher and one commit's plan; `files`: the range's rows into data files;
//! `streams`: shared streams' ends and versions; `upkeep`: compaction, vacuum, retention.

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use std::future::IntoFuture;

use deltalake::{
    kernel::{
        transaction::{CommitBuilder, CommitProperties},
        Action, Transaction,
    },
    protocol::{DeltaOperation, SaveMode},
    DeltaTable,
};
use duckdb::{types::Value, Connection};
use sluice_core::{Ident, SharedStreams, TableSchema};
use sluice_state::{lake as state, tables};
use tokio::runtime::Runtime;

use crate::{
    bridge,
    ledger::LakeLedger,
    select::{self, SkipClause, PARTITION},
    table::Store,
    LakeConfig, LakeError,
};

/// Most batches one Delta commit covers (when the lake is behind).
const MAX_BATCHES_PER_COMMIT: usize = 16;
/// Attempts at one commit that lost to another writer's.
const CONFLICT_ATTEMPTS: u32 = 5;

/// A raw table to publish, and which of its sources share their streams with other
/// instances.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub table: Ident,
    /// (source name, its streams).
    pub shared: Vec<(String, SharedStreams)>,
}

/// One Delta commit made.
#[derive(Debug, Clone)]
pub struct Published {
    pub table: String,
    /// The table's Delta version after it.
    pub version: u64,
    /// Batches it covers, the last of them, and rows written (rows other instances had
    /// published already are not).
    pub batches: usize,
    pub through_batch: i64,
    pub rows: u64,
    pub files: usize,
    pub took: Duration,
    pub phases: Phases,
}

/// Where one commit's time went (for the debug log and benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// Reading the table's new versions from the store.
    pub refresh: Duration,
    /// Finding the batches and the streams' positions they cover.
    pub plan: Duration,
    /// Reading its rows from DuckDB.
    pub read: Duration,
    /// Encoding them as Parquet.
    pub encode: Duration,
    /// Finishing and uploading the files.
    pub upload: Duration,
    /// The Delta commit (with conflict checks).
    pub commit: Duration,
}

/// Where a table stands in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableState {
    pub version: u64,
    pub files: usize,
    /// The last batch of this database the lake holds (0: none).
    pub watermark: i64,
}

/// What the upkeep ([`upkeep`]) is configured to do.
#[derive(Debug, Clone, Copy)]
struct UpkeepSettings {
    compact_after: usize,
    vacuum_retention: Duration,
    retention: Option<Duration>,
}

/// An open Delta table and what the publisher knows of it.
struct Open {
    delta: DeltaTable,
    select_list: String,
    columns: TableSchema,
    watermark: i64,
    /// Stream versions read or written, valid while only this publisher commits.
    streams: HashMap<String, i64>,
    /// The version after this publisher's last commit (or load).
    known_version: u64,
}

/// Publishes raw tables to the lake. Blocking: it runs the store's I/O on a runtime of
/// its own, on the caller's thread.
pub struct Publisher {
    runtime: Runtime,
    store: Store,
    raw_schema: Ident,
    writer_app: String,
    target_file_size: u64,
    open: HashMap<String, Open>,
    ledgers: HashMap<String, Arc<LakeLedger>>,
    /// Per table, commits lost to another writer (or to this one, when the store lost
    /// the answer to a commit that landed) since [`Publisher::take_conflicts`].
    conflicts: HashMap<String, u64>,
    /// Per table closed after an error, the last batch it was known to hold (only this
    /// publisher advances it), so `behind` stays true until the table is open again.
    closed_at: HashMap<String, i64>,
    upkeep: UpkeepSettings,
    /// Tests: runs between writing a commit's files and committing (another writer's
    /// commit lands there to force a conflict).
    #[cfg(test)]
    before_commit: Option<Box<dyn FnMut()>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("root", &self.store.root.as_str())
            .field("writer_app", &self.writer_app)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for `config`; `writer_id` is this database's ([`state::writer_id`]).
    pub fn new(
        config: &LakeConfig,
        data_dir: &Path,
        raw_schema: Ident,
        writer_id: &str,
    ) -> Result<Self, String> {
        deltalake::aws::register_handlers(None);
        let root = config
            .root_url(data_dir)
            .map_err(|e| format!("lake.uri: {e}"))?;
        let runtime =
            crate::table::runtime().map_err(|e| format!("starting the lake's runtime: {e}"))?;
        Ok(Publisher {
            runtime,
            store: Store {
                root,
                options: config.storage_options.clone().into_iter().collect(),
                checkpoint_interval: config.checkpoint_interval,
            },
            raw_schema,
            writer_app: format!("sluice:{writer_id}"),
            target_file_size: config.target_file_size.as_u64(),
            open: HashMap::new(),
            ledgers: HashMap::new(),
            conflicts: HashMap::new(),
            closed_at: HashMap::new(),
            upkeep: UpkeepSettings {
                compact_after: config.compact_after,
                vacuum_retention: config.vacuum_retention,
                retention: config.retention,
            },
            #[cfg(test)]
            before_commit: None,
        })
    }

    /// `table`'s shared-stream versions, for its sources (one per table, kept current
    /// by this publisher's commits).
    pub fn ledger(&mut self, table: &str) -> Arc<LakeLedger> {
        self.ledgers
            .entry(table.to_string())
            .or_insert_with(|| Arc::new(LakeLedger::new(table, self.store.clone())))
            .clone()
    }

    /// Where `table` stands in the lake, if the publisher has it open.
    pub fn state(&self, table: &str) -> Option<TableState> {
        let open = self.open.get(table)?;
        let snapshot = open.delta.snapshot().ok()?;
        Some(TableState {
            version: snapshot.version(),
            files: snapshot.log_data().num_files(),
            watermark: open.watermark,
        })
    }

    /// Commits of `table` lost to a conflict since the last call (whether the redo
    /// committed, found nothing left to publish, or failed).
    pub fn take_conflicts(&mut self, table: &str) -> u64 {
        self.conflicts.remove(table).unwrap_or_default()
    }

    /// Forgets `table`'s open state: it is read again from the store next time.
    fn close(&mut self, table: &str) {
        if let Some(open) = self.open.remove(table) {
            self.closed_at.insert(table.to_string(), open.watermark);
        }
    }

    /// Batches of `table` in DuckDB that the lake does not hold (all of them until the
    /// table was first open).
    pub fn behind(&self, conn: &Connection, table: &str) -> Result<u64, LakeError> {
        let watermark = (self.open.get(table).map(|o| o.watermark))
            .or_else(|| self.closed_at.get(table).copied())
            .unwrap_or(0);
        Ok(state::count_after(conn, table, watermark)?)
    }

    /// Publishes the next range of `spec`'s batches the lake lacks, in one Delta commit;
    /// `None` when it lacks none (or the raw table does not exist yet). On an error the
    /// table is read again from the store next time.
    pub fn publish_next(
        &mut self,
        conn: &Connection,
        spec: &TableSpec,
    ) -> Result<Option<Published>, LakeError> {
        let name = spec.table.as_str().to_string();
        if let Some(open) = self.open.get(&name) {
            // Nothing new: no need to ask the store (a listing, on S3) either.
            if state::batches_after(conn, &name, open.watermark, 1)?.is_empty() {
                return Ok(None);
            }
        }
        let result = self.try_publish(conn, spec);
        if result.is_err() {
            self.close(&name);
        }
        result
    }

    fn try_publish(
        &mut self,
        conn: &Connection,
        spec: &TableSpec,
    ) -> Result<Option<Published>, LakeError> {
        let started = Instant::now();
        let mut conflicts = 0;
        loop {
            let refreshing = Instant::now();
            if !self.ensure_open(conn, spec)? {
                return Ok(None);
            }
            let refresh = refreshing.elapsed();
            match self.commit_next(conn, spec) {
                Ok(Some(mut p)) => {
                    p.phases.refresh = refresh;
                    p.took = started.elapsed();
                    return Ok(Some(p));
                }
                Ok(None) => return Ok(None),
                Err(e) if e.is_conflict() && conflicts + 1 < CONFLICT_ATTEMPTS => {
                    tracing::info!(table = %spec.table, error = %e,
                        "another writer committed to the Delta table first; trying again on its new version");
                    conflicts += 1;
                    *self.conflicts.entry(spec.table.to_string()).or_default() += 1;
                    self.close(spec.table.as_str());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens the table (creating it in the lake if needed) unless open; refreshes it. False
    /// when the raw table does not exist yet.
    fn ensure_open(&mut self, conn: &Connection, spec: &TableSpec) -> Result<bool, LakeError> {
        let name = spec.table.as_str();
        if let Some(open) = self.open.get_mut(name) {
            let now = tables::describe(conn, &self.raw_schema, &spec.table)?;
            if now.as_ref() != Some(&open.columns) {
                // Publishing the columns it was opened with would leave the new ones out of
                // the lake without a word: it waits instead, every row kept in DuckDB.
                return Err(LakeError::Table {
                    table: name.to_string(),
                    detail: format!(
                        "the raw table's columns changed ({}); the lake does not change a Delta \
                         table's schema yet, so it stops publishing this table (its rows stay in \
                         DuckDB and Parquet)",
                        now.map_or("dropped".into(), |c| c.to_string())
                    ),
                });
            }
            self.runtime
                .block_on(open.delta.update_state())
                .map_err(LakeError::delta(name))?;
            let version = open.delta.version().unwrap_or_default();
            if version != open.known_version {
                // Another writer committed: what it wrote of shared streams is read again.
                open.streams.clear();
                open.known_version = version;
            }
            return Ok(true);
        }
        let Some(columns) = tables::describe(conn, &self.raw_schema, &spec.table)? else {
            return Ok(false);
        };
        let select_list = select::select_list(&columns).map_err(|detail| LakeError::Table {
            table: name.to_string(),
            detail,
        })?;
        let empty = format!(
            "SELECT {select_list} FROM {}.{} LIMIT 0",
            self.raw_schema, spec.table
        );
        let schema = {
            let mut stmt = conn.prepare(&empty).map_err(LakeError::duckdb(name))?;
            let arrow = stmt.query_arrow([]).map_err(LakeError::duckdb(name))?;
            let schema = arrow.get_schema();
            bridge::to_delta(arrow::array::RecordBatch::new_empty(schema))?.schema()
        };
        let delta = self
            .runtime
            .block_on(self.store.open_or_create(name, &schema))?;
        let snapshot = delta.snapshot().map_err(LakeError::delta(name))?;
        let watermark = self
            .runtime
            .block_on(snapshot.transaction_version(delta.log_store().as_ref(), &self.writer_app))
            .map_err(LakeError::delta(name))?
            .unwrap_or(0);
        let known_version = snapshot.version();
        self.open.insert(
            name.to_string(),
            Open {
                delta,
                select_list,
                columns,
                watermark,
                streams: HashMap::new(),
                known_version,
            },
        );
        Ok(true)
    }

    /// One Delta commit of the batches after the watermark, if there are any.
    fn commit_next(
        &mut self,
        conn: &Connection,
        spec: &TableSpec,
    ) -> Result<Option<Published>, LakeError> {
        let name = spec.table.as_str();
        let ledger = self.ledger(name);
        let Publisher {
            runtime,
            raw_schema,
            writer_app,
            target_file_size,
            open,
            #[cfg(test)]
            before_commit,
            ..
        } = self;
        let Some(open) = open.get_mut(name) else {
            return Ok(None);
        };
        let planning = Instant::now();
        let pending = state::batches_after(conn, name, open.watermark, MAX_BATCHES_PER_COMMIT)?;
        let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
            return Ok(None);
        };
        let (lo, hi) = (first.batch_id, last.batch_id);
        let mut txns = vec![Transaction::new(writer_app.as_str(), hi)];
        let mut skips = Vec::new();
        let mut params: Vec<Value> = vec![Value::BigInt(lo), Value::BigInt(hi)];
        for (source, shared) in &spec.shared {
            if !has_columns(&open.columns, shared) {
                continue;
            }
            let ends = stream_ends(conn, raw_schema, &spec.table, source, shared, lo, hi)?;
            for StreamEnds {
                values,
                first,
                next,
            } in ends
            {
                let id = shared.stream_id(&values);
                let held = stream_version(runtime, open, name, &id)?;
                // Only when the lake holds some of these rows (another instance published
                // them): a clause per stream costs every row a comparison per stream.
                if let Some(held) = held.filter(|held| *held > first) {
                    skips.push(SkipClause::new(
                        &shared.stream_columns,
                        shared.position_column,
                    ));
                    params.push(Value::Text(source.clone()));
                    params.extend(values.iter().cloned().map(Value::Text));
                    params.push(Value::BigInt(held));
                }
                let version = held.map_or(next, |h| h.max(next));
                open.streams.insert(id.clone(), version);
                txns.push(Transaction::new(id, version));
            }
        }
        let plan = planning.elapsed();
        let sql = select::batch_query(&open.select_list, raw_schema, &spec.table, &skips);
        let (adds, rows, mut phases) = runtime.block_on(write_rows(
            conn,
            &open.delta,
            &sql,
            params,
            *target_file_size,
            name,
        ))?;
        phases.plan = plan;
        let files = adds.len();
        sluice_core::fault::point("lake.before_commit");
        #[cfg(test)]
        if let Some(hook) = before_commit.as_mut() {
            hook();
        }
        let actions = adds
            .into_iter()
            .map(Action::Add)
            .chain(txns.into_iter().map(Action::Txn))
            .collect();
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(vec![PARTITION.to_string()]),
            predicate: None,
        };
        let started = Instant::now();
        let version = commit(runtime, open, name, actions, operation)?;
        phases.commit = started.elapsed();
        sluice_core::fault::point("lake.after_commit");
        for (id, v) in &open.streams {
            ledger.learn(id, *v);
        }
        open.watermark = hi;
        Ok(Some(Published {
            table: name.to_string(),
            version,
            batches: pending.len(),
            through_batch: hi,
            rows,
            files,
            took: Duration::ZERO,
            phases,
        }))
    }
}

/// Commits `actions` on the table's current version; the new version, which the table
/// then stands at (publishing and upkeep commit through here).
fn commit(
    runtime: &Runtime,
    open: &mut Open,
    table: &str,
    actions: Vec<Action>,
    operation: DeltaOperation,
) -> Result<u64, LakeError> {
    let snapshot = open.delta.snapshot().map_err(LakeError::delta(table))?;
    let finalized = runtime
        .block_on(
            // From the default properties: with the post-commit hook that writes a
            // checkpoint every `delta.checkpointInterval` versions.
            CommitBuilder::from(CommitProperties::default())
                .with_actions(actions)
                .build(Some(snapshot), open.delta.log_store(), operation)
                .into_future(),
        )
        .map_err(LakeError::delta(table))?;
    let version = finalized.version();
    open.delta.state = Some(finalized.snapshot());
    open.known_version = version;
    Ok(version)
}

mod files;
mod streams;
#[cfg(test)]
mod tests;
pub mod upkeep;

use files::{data_writer, dt_partition, write_rows};
use streams::{has_columns, stream_ends, stream_version, StreamEnds};
