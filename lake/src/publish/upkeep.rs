//! The lake's upkeep beside publishing, on the same thread and tables:
//! - **compaction**: a partition with `compact_after` files smaller than
//!   `target_file_size` has them rewritten into files of about that size, in one Delta
//!   commit (`OPTIMIZE`: the new files added and the old removed, `dataChange = false`,
//!   so streaming readers skip it). Appends by any writer go on meanwhile (they touch no
//!   removed file); a compaction that loses to another writer's (the same files removed)
//!   is dropped and tried again later.
//! - **vacuum**: files no version references any more (compacted away, expired, or left
//!   by a commit that never happened) are deleted once older than `vacuum_retention`.
//! - **retention**: with `retention`, partitions whose `dt` is older are removed with a
//!   commit (`DELETE`), then vacuumed like any removed file.

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use deltalake::{
    kernel::Remove,
    operations::vacuum::VacuumMode,
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder,
    writer::{DeltaWriter as _, WriteMode},
    Path as StorePath,
};
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::*;

/// Most input bytes one compaction reads, in target files.
const COMPACT_INPUT_TARGETS: u64 = 4;
/// Most input files one compaction reads.
const COMPACT_MAX_FILES: usize = 2048;

/// One compaction made.
#[derive(Debug, Clone)]
pub struct Compacted {
    pub table: String,
    /// The partition's `dt`.
    pub partition: String,
    pub files_in: usize,
    pub files_out: usize,
    pub rows: u64,
    pub version: u64,
}

/// A small file of a partition, as a compaction needs it.
struct Small {
    path: StorePath,
    size: u64,
    rows: Option<usize>,
    remove: Remove,
}

impl Publisher {
    /// Compacts the partition of `table` with the most small files, if it has at least
    /// `compact_after`; `None` otherwise (or when another writer's compaction won).
    pub fn compact_next(&mut self, table: &str) -> Result<Option<Compacted>, LakeError> {
        if self.upkeep.compact_after == 0 {
            return Ok(None);
        }
        let result = self.try_compact(table);
        match result {
            Err(e) if e.is_conflict() => {
                tracing::info!(table, error = %e, "another writer changed the partition first; compacting later");
                self.close(table);
                Ok(None)
            }
            Err(e) => {
                self.close(table);
                Err(e)
            }
            ok => ok,
        }
    }

    fn try_compact(&mut self, table: &str) -> Result<Option<Compacted>, LakeError> {
        let target = self.target_file_size;
        let compact_after = self.upkeep.compact_after;
        let Some(open) = self.open.get_mut(table) else {
            return Ok(None);
        };
        self.runtime
            .block_on(open.delta.update_state())
            .map_err(LakeError::delta(table))?;
        let Some((dt, files)) = small_files(open, table, target, compact_after)? else {
            return Ok(None);
        };
        let date = NaiveDate::parse_from_str(&dt, "%Y-%m-%d").map_err(|e| LakeError::Table {
            table: table.to_string(),
            detail: format!("partition dt={dt:?} is not a date: {e}"),
        })?;
        let days = (date - NaiveDate::default()).num_days() as i32;
        let store = open.delta.object_store();
        let (adds, rows) =
            self.runtime
                .block_on(rewrite(&open.delta, store, &files, days, target, table))?;
        let expected: Option<usize> = files.iter().map(|f| f.rows).sum();
        if expected.is_some_and(|n| n as u64 != rows) {
            return Err(LakeError::Table {
                table: table.to_string(),
                detail: format!(
                    "compacting dt={dt}: read {rows} rows where the files' statistics say {expected:?}; nothing committed"
                ),
            });
        }
        let files_in = files.len();
        let files_out = adds.len();
        let (actions, operation) = compaction(adds, files, &dt, target);
        let version = self.commit(table, actions, operation)?;
        Ok(Some(Compacted {
            table: table.to_string(),
            partition: dt,
            files_in,
            files_out,
            rows,
            version,
        }))
    }

    /// Removes the partitions of `table` older than `retention` (by `dt`, UTC) with one
    /// commit; how many files it removed.
    pub fn expire(&mut self, table: &str) -> Result<usize, LakeError> {
        let Some(retention) = self.upkeep.retention else {
            return Ok(0);
        };
        let Some(open) = self.open.get_mut(table) else {
            return Ok(0);
        };
        self.runtime
            .block_on(open.delta.update_state())
            .map_err(LakeError::delta(table))?;
        let cutoff = (Utc::now() - retention)
            .date_naive()
            .format("%Y-%m-%d")
            .to_string();
        let snapshot = open.delta.snapshot().map_err(LakeError::delta(table))?;
        let removes: Vec<Action> = snapshot
            .log_data()
            .iter()
            .filter(|f| {
                f.partition_values_map()
                    .get(PARTITION)
                    .and_then(|v| v.as_deref())
                    .is_some_and(|dt| dt < cutoff.as_str())
            })
            .map(|f| Action::Remove(f.remove_action(true)))
            .collect();
        if removes.is_empty() {
            return Ok(0);
        }
        let n = removes.len();
        let operation = DeltaOperation::Delete {
            predicate: Some(format!("{PARTITION} < '{cutoff}'")),
        };
        let result = self.commit(table, removes, operation);
        if result.is_err() {
            self.close(table);
        }
        result.map(|_| n)
    }

    /// Deletes the files of `table` no version needs that are older than
    /// `vacuum_retention`; how many.
    pub fn vacuum(&mut self, table: &str) -> Result<usize, LakeError> {
        let retention = self.upkeep.vacuum_retention;
        let Some(open) = self.open.get_mut(table) else {
            return Ok(0);
        };
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let result = self.runtime.block_on(
            open.delta
                .clone()
                .vacuum()
                .with_retention_period(retention)
                // sluice's own setting rules, not the table's deletedFileRetentionDuration.
                .with_enforce_retention_duration(false)
                // Also files no commit ever referenced (a commit that failed after writing).
                .with_mode(VacuumMode::Full)
                .into_future(),
        );
        match result {
            Ok((delta, metrics)) => {
                open.known_version = delta.version().unwrap_or(open.known_version);
                open.delta = delta;
                Ok(metrics.files_deleted.len())
            }
            Err(e) => {
                self.close(table);
                Err(LakeError::delta(table)(e))
            }
        }
    }

    /// Commits `actions` to open `table` (no retry: the caller decides).
    fn commit(
        &mut self,
        table: &str,
        actions: Vec<Action>,
        operation: DeltaOperation,
    ) -> Result<u64, LakeError> {
        let Some(open) = self.open.get_mut(table) else {
            return Err(LakeError::Table {
                table: table.to_string(),
                detail: "not open".into(),
            });
        };
        super::commit(&self.runtime, open, table, actions, operation)
    }
}

/// A compaction's commit: the new files added and the old removed, neither a data change,
/// and a `txn` action per partition (`sluice-compaction:<dt>`). Delta's conflict check
/// does not stop two writers from removing the same files when neither removal is a data
/// change (delta-rs 1.1 checks only data-changing removals), which would leave both
/// writers' rewrites, each row twice; two commits updating one application id do
/// conflict, so compactions of one partition are serialized across writers by it.
fn compaction(
    adds: Vec<deltalake::kernel::Add>,
    files: Vec<Small>,
    dt: &str,
    target: u64,
) -> (Vec<Action>, DeltaOperation) {
    let stamp = Utc::now().timestamp_millis();
    let actions = adds
        .into_iter()
        .map(|mut a| {
            a.data_change = false;
            Action::Add(a)
        })
        .chain(files.into_iter().map(|f| Action::Remove(f.remove)))
        .chain(std::iter::once(Action::Txn(Transaction::new(
            format!("sluice-compaction:{dt}"),
            stamp,
        ))))
        .collect();
    let operation = DeltaOperation::Optimize {
        predicate: Some(format!("{PARTITION} = '{dt}'")),
        target_size: target as i64,
    };
    (actions, operation)
}

/// The partition with the most files smaller than `target` (at least `at_least` of
/// them), and those files (as many as one compaction reads).
fn small_files(
    open: &Open,
    table: &str,
    target: u64,
    at_least: usize,
) -> Result<Option<(String, Vec<Small>)>, LakeError> {
    let snapshot = open.delta.snapshot().map_err(LakeError::delta(table))?;
    let mut by_dt: HashMap<String, Vec<Small>> = HashMap::new();
    for f in snapshot.log_data().iter() {
        let size = f.size().max(0) as u64;
        if size >= target {
            continue;
        }
        let Some(dt) = f.partition_values_map().get(PARTITION).cloned().flatten() else {
            continue;
        };
        by_dt.entry(dt).or_default().push(Small {
            path: f.object_store_path(),
            size,
            rows: f.num_records(),
            remove: f.remove_action(false),
        });
    }
    let Some((dt, mut files)) = by_dt
        .into_iter()
        .filter(|(_, files)| files.len() >= at_least.max(2))
        .max_by_key(|(_, files)| files.len())
    else {
        return Ok(None);
    };
    files.sort_by(|a, b| a.path.as_ref().cmp(b.path.as_ref()));
    let budget = target.saturating_mul(COMPACT_INPUT_TARGETS);
    let mut taken = 0u64;
    let mut keep = 0;
    for f in &files {
        if keep == COMPACT_MAX_FILES || (keep >= 2 && taken + f.size > budget) {
            break;
        }
        taken += f.size;
        keep += 1;
    }
    files.truncate(keep);
    Ok(Some((dt, files)))
}

/// Reads `files` and writes their rows (with `dt` = `days` since the epoch) into new files
/// of about `target` bytes; their add actions and the rows.
async fn rewrite(
    delta: &DeltaTable,
    store: Arc<dyn ObjectStore>,
    files: &[Small],
    days: i32,
    target: u64,
    table: &str,
) -> Result<(Vec<deltalake::kernel::Add>, u64), LakeError> {
    let mut writer = data_writer(delta, target).map_err(LakeError::delta(table))?;
    let partition = dt_partition(days);
    let mut rows = 0u64;
    for f in files {
        let got = store
            .get(&f.path)
            .await
            .map_err(|e| LakeError::delta(table)(e.into()))?;
        let bytes = got
            .bytes()
            .await
            .map_err(|e| LakeError::delta(table)(e.into()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| LakeError::delta(table)(e.into()))?;
        for batch in reader {
            let batch = batch.map_err(|e| LakeError::delta(table)(e.into()))?;
            rows += batch.num_rows() as u64;
            writer
                .write_partition(batch, &partition, WriteMode::Default)
                .await
                .map_err(LakeError::delta(table))?;
        }
    }
    let adds = writer.flush().await.map_err(LakeError::delta(table))?;
    Ok((adds, rows))
}

#[cfg(test)]
mod tests;
