//! A batch's rows as they are appended and written: every chunk's rows with the commit
//! columns filled in, in the raw table's column order, small chunks joined.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, Int64Array, TimestampMicrosecondArray},
    record_batch::RecordBatch,
};
use chrono::{DateTime, Utc};
use sluice_core::{meta, TableSchema};

use super::PendingBatch;
use crate::{Result, SinkError};

/// The rows of every chunk with the commit columns filled in, in the order of `columns`
/// (the raw table's).
pub(super) fn complete(
    batch: &PendingBatch,
    columns: &TableSchema,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Vec<RecordBatch>> {
    let schema = columns.arrow_schema();
    let micros = now.timestamp_micros();
    let mut out = Vec::with_capacity(batch.chunks.len());
    for chunk in batch.chunks.iter().filter(|c| c.rows.num_rows() > 0) {
        let n = chunk.rows.num_rows();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for column in &columns.columns {
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
            arrays.push(array);
        }
        let rows =
            RecordBatch::try_new(schema.clone(), arrays).map_err(|source| SinkError::Arrow {
                context: format!("assembling a batch of {}", batch.table),
                source,
            })?;
        out.push(rows);
    }
    coalesce(out, &schema).map_err(|source| SinkError::Arrow {
        context: format!("joining the chunks of a batch of {}", batch.table),
        source,
    })
}

/// Chunks smaller than this are joined before they are appended: each append costs DuckDB
/// a fixed amount, which made a Kafka batch of many partitions' small chunks (a steady
/// trickle: ~100 messages per partition and flush) cost 9-30 us a row against ~1 for CSV.
const SMALL_CHUNK_ROWS: usize = 8_192;

/// Runs of small record batches joined into one (at most [`COALESCED_MAX_ROWS`] rows
/// each); large ones pass as they are (joining them would only copy).
pub(super) fn coalesce(
    batches: Vec<RecordBatch>,
    schema: &arrow::datatypes::SchemaRef,
) -> std::result::Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    if batches.len() < 2 || batches.iter().all(|b| b.num_rows() >= SMALL_CHUNK_ROWS) {
        return Ok(batches);
    }
    let (mut out, mut run, mut run_rows) = (Vec::new(), Vec::new(), 0);
    for b in batches {
        let small = b.num_rows() < SMALL_CHUNK_ROWS;
        if !small || run_rows + b.num_rows() > COALESCED_MAX_ROWS {
            join_run(&mut run, &mut out, schema)?;
            run_rows = 0;
        }
        if small {
            run_rows += b.num_rows();
            run.push(b);
        } else {
            out.push(b);
        }
    }
    join_run(&mut run, &mut out, schema)?;
    Ok(out)
}

/// Moves `run` into `out` as one record batch.
fn join_run(
    run: &mut Vec<RecordBatch>,
    out: &mut Vec<RecordBatch>,
    schema: &arrow::datatypes::SchemaRef,
) -> std::result::Result<(), arrow::error::ArrowError> {
    match run.len() {
        0 => {}
        1 => out.append(run),
        _ => {
            out.push(arrow::compute::concat_batches(schema, run.iter())?);
            run.clear();
        }
    }
    Ok(())
}

/// The most rows a joined run holds (one DuckDB row group).
const COALESCED_MAX_ROWS: usize = 122_880;
