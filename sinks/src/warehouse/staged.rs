//! A batch made ready for its commit ([`Staged`]): its id and time fixed, its rows
//! completed with the commit columns, and its Parquet file being written on a thread of
//! its own.
//!
//! Why a separate step: the DuckDB transaction may only commit once the batch's Parquet
//! file is durably in place, and writing that file takes about as long as the DuckDB
//! work. Staged while the previous batch commits (see the committer), the next batch's
//! file is written in the meantime instead of the commit waiting for it.

use std::thread::JoinHandle;

use arrow::{datatypes::SchemaRef, record_batch::RecordBatch};
use chrono::{DateTime, Utc};
use tracing::{debug, warn};

use super::PendingBatch;
use crate::{
    parquet::{ParquetSink, WrittenFile},
    Result, SinkError,
};

/// A batch ready to commit; see the module doc. Commit staged batches in the order they
/// were staged. Dropped uncommitted, it waits for its Parquet file and removes it.
#[derive(Debug)]
pub struct Staged {
    pub(super) batch: PendingBatch,
    /// `None` when the batch has neither rows nor dead letters (positions only).
    pub(super) id: Option<i64>,
    pub(super) now: DateTime<Utc>,
    /// The rows with every column of the raw table, one record batch per chunk.
    pub(super) full: Vec<RecordBatch>,
    pub(super) parquet: Option<ParquetJob>,
    /// What the raw table's columns change by in the commit (new columns, wider types).
    pub(super) changes: Vec<sluice_core::SchemaChange>,
}

impl Staged {
    pub fn batch(&self) -> &PendingBatch {
        &self.batch
    }

    /// The batch's chunks back, its Parquet file (written or being written) removed.
    pub(super) fn into_batch(mut self) -> PendingBatch {
        if let Some(job) = self.parquet.as_mut() {
            job.remove();
        }
        let empty = PendingBatch {
            table: self.batch.table.clone(),
            raw_columns: self.batch.raw_columns.clone(),
            chunks: Vec::new(),
        };
        std::mem::replace(&mut self.batch, empty)
    }
}

/// One batch's Parquet file: where it goes and the thread writing it.
#[derive(Debug)]
pub(super) struct ParquetJob {
    sink: ParquetSink,
    pub(super) relative: String,
    schema: SchemaRef,
    writer: Option<JoinHandle<Result<WrittenFile>>>,
}

impl ParquetJob {
    /// Starts writing `full` as `relative`.
    pub(super) fn start(
        sink: ParquetSink,
        relative: String,
        schema: SchemaRef,
        full: &[RecordBatch],
    ) -> Self {
        let mut job = ParquetJob {
            sink,
            relative,
            schema,
            writer: None,
        };
        job.writer = job.spawn(full);
        job
    }

    /// Waits for the file. After a failed commit removed it, a new attempt writes it again.
    pub(super) fn wait(&mut self, full: &[RecordBatch]) -> Result<WrittenFile> {
        match self.writer.take().or_else(|| self.spawn(full)) {
            Some(writer) => writer.join().map_err(|_| SinkError::Panicked {
                what: format!("the Parquet writer of {}", self.relative),
            })?,
            // No thread to be had: write it on this one.
            None => self.sink.write(&self.relative, self.schema.clone(), full),
        }
    }

    /// Removes whatever the writer left (a finished file or a temporary): not committed.
    pub(super) fn remove(&mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let _ = self.sink.remove(&self.relative);
    }

    fn spawn(&self, full: &[RecordBatch]) -> Option<JoinHandle<Result<WrittenFile>>> {
        let (sink, relative, schema) = (
            self.sink.clone(),
            self.relative.clone(),
            self.schema.clone(),
        );
        let full = full.to_vec();
        std::thread::Builder::new()
            .name("parquet".into())
            .spawn(move || {
                if let Err(e) = sluice_core::priority::yield_to_committer_before_sources() {
                    debug!(error = %e, "could not lower the Parquet writer's priority");
                }
                sink.write(&relative, schema, &full)
            })
            .inspect_err(|e| warn!(error = %e, "no thread for the Parquet writer; writing it on the committer"))
            .ok()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(job) = self.parquet.as_mut().filter(|j| j.writer.is_some()) {
            job.remove();
        }
    }
}
