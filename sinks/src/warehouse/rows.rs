//! A batch's rows as they are appended and written: every chunk's rows with the commit
//! columns filled in, in the raw table's column order, small chunks joined.

use std::sync::Arc;

use arrow::{
    array::{
        new_null_array, Array, ArrayRef, AsArray, Int64Array, StructArray,
        TimestampMicrosecondArray,
    },
    datatypes::DataType,
    error::ArrowError,
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
        for (column, field) in columns.columns.iter().zip(schema.fields()) {
            let array: ArrayRef = match column.name.as_str() {
                meta::BATCH => Arc::new(Int64Array::from_value(id, n)),
                meta::INGESTED_AT => {
                    Arc::new(TimestampMicrosecondArray::from_value(micros, n).with_timezone("UTC"))
                }
                name => chunk_column(chunk, name, field.data_type()).map_err(|source| {
                    SinkError::Arrow {
                        context: format!(
                            "widening column {name} of a chunk of {} from {}",
                            batch.table, chunk.source
                        ),
                        source,
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

/// A chunk's values of a column as the table types them: as they are; widened (a chunk
/// typed before the column widened); or NULL (a chunk from before the column was added,
/// or from a file without it). A widening that would alter a value fails instead.
fn chunk_column(
    chunk: &sluice_core::Chunk,
    name: &str,
    ty: &DataType,
) -> std::result::Result<ArrayRef, arrow::error::ArrowError> {
    let found = chunk.rows.column_by_name(name).or_else(|| {
        let schema = chunk.rows.schema();
        let i = schema
            .fields()
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))?;
        Some(chunk.rows.column(i))
    });
    match found {
        Some(a) => widen_array(a, ty),
        None => Ok(new_null_array(ty, chunk.rows.num_rows())),
    }
}

/// `a`'s values as type `ty`, which holds them (the table's column widened along the
/// lattice): struct fields matched by name (case aside), those `a` lacks NULL; integers and
/// decimals that a floating type would round are an error, never rounded.
fn widen_array(a: &ArrayRef, ty: &DataType) -> std::result::Result<ArrayRef, ArrowError> {
    if a.data_type() == ty {
        return Ok(a.clone());
    }
    if let (DataType::Struct(_), DataType::Struct(to)) = (a.data_type(), ty) {
        let from = a.as_struct();
        let children = to
            .iter()
            .map(|field| {
                let names = from.column_names();
                match names
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(field.name()))
                {
                    Some(i) => widen_array(from.column(i), field.data_type()),
                    None => Ok(new_null_array(field.data_type(), a.len())),
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let nulls = from.nulls().cloned();
        return Ok(Arc::new(StructArray::try_new(to.clone(), children, nulls)?));
    }
    if let Some(row) = sluice_core::evolve::first_rounded(a, ty)? {
        return Err(ArrowError::CastError(format!(
            "the value at row {row} ({}) is not exact as {ty}; the column is not widened",
            arrow::util::display::array_value_to_string(a, row)?
        )));
    }
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let cast = arrow::compute::cast_with_options(a, ty, &options)?;
    Ok(cast)
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

#[cfg(test)]
mod tests {
    use arrow::{
        array::{Float64Array, Int64Array},
        datatypes::{Field, Fields},
    };

    use super::*;

    #[test]
    fn a_struct_takes_a_wider_struct_by_field_name_with_missing_fields_null() {
        let city = Arc::new(arrow::array::StringArray::from(vec!["Oslo", "Bergen"]));
        let narrow = StructArray::try_new(
            Fields::from(vec![Field::new("City", DataType::Utf8, true)]),
            vec![city as ArrayRef],
            None,
        )
        .expect("struct");
        let wide = DataType::Struct(Fields::from(vec![
            Field::new("zip", DataType::Int64, true),
            Field::new("city", DataType::Utf8, true),
        ]));
        let out = widen_array(&(Arc::new(narrow) as ArrayRef), &wide).expect("widened");
        let out = out.as_struct();
        assert_eq!(out.column(0).null_count(), 2);
        assert_eq!(out.column(1).as_string::<i32>().value(1), "Bergen");
    }

    #[test]
    fn integers_a_double_would_round_are_an_error_not_rounded() {
        let exact: ArrayRef = Arc::new(Int64Array::from(vec![Some(3), None, Some(1 << 53)]));
        let out = widen_array(&exact, &DataType::Float64).expect("exact");
        let out = out.as_any().downcast_ref::<Float64Array>().expect("f64");
        assert_eq!(out.value(2), 9007199254740992.0);
        let big: ArrayRef = Arc::new(Int64Array::from(vec![1, (1 << 53) + 1]));
        let err = widen_array(&big, &DataType::Float64).expect_err("rounded");
        assert!(
            err.to_string().contains("row 1 (9007199254740993)"),
            "{err}"
        );
    }
}
