//! A range of batches into Delta data files: read from DuckDB in the lake's types,
//! encoded as the Parquet tree's files are, each batch straight into its `dt` partition.

use arrow59::{array::Array as _, array::RecordBatch as RecordBatch59};
use buoyant_kernel::expressions::Scalar;
use deltalake::{
    writer::{DeltaWriter, RecordBatchWriter, WriteMode},
    DeltaTableError,
};

use super::*;

/// Streams the query's rows into data files of `delta`; the files' add actions and the
/// rows written.
pub(super) async fn write_rows(
    conn: &Connection,
    delta: &DeltaTable,
    sql: &str,
    params: Vec<Value>,
    target_file_size: u64,
    table: &str,
) -> Result<(Vec<deltalake::kernel::Add>, u64, Phases), LakeError> {
    let mut writer = data_writer(delta, target_file_size).map_err(LakeError::delta(table))?;
    let mut phases = Phases::default();
    let started = Instant::now();
    let mut stmt = conn.prepare(sql).map_err(LakeError::duckdb(table))?;
    let batches = stmt
        .query_arrow(duckdb::params_from_iter(params))
        .map_err(LakeError::duckdb(table))?;
    phases.read = started.elapsed();
    let mut rows = 0u64;
    let mut batches = batches.into_iter();
    loop {
        let started = Instant::now();
        let Some(batch) = batches.next() else { break };
        phases.read += started.elapsed();
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows() as u64;
        let started = Instant::now();
        write_batch(&mut writer, bridge::to_delta(batch)?)
            .await
            .map_err(LakeError::delta(table))?;
        phases.encode += started.elapsed();
    }
    let started = Instant::now();
    let adds = writer.flush().await.map_err(LakeError::delta(table))?;
    phases.upload = started.elapsed();
    Ok((adds, rows, phases))
}

/// A writer of `delta`'s data files of about `target` bytes, encoded as the Parquet
/// tree's are: dictionaries for strings only, statistics per column chunk (what the Add
/// actions' stats are made from), snappy.
pub(super) fn data_writer(
    delta: &DeltaTable,
    target: u64,
) -> Result<RecordBatchWriter, DeltaTableError> {
    use arrow59::datatypes::DataType;
    use deltalake::parquet::{
        basic::Compression,
        file::properties::{EnabledStatistics, WriterProperties},
        schema::types::ColumnPath,
    };
    let writer = RecordBatchWriter::for_table(delta)?.with_target_file_size(target);
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")));
    for field in writer.arrow_schema().fields() {
        if matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            properties = properties
                .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true);
        }
    }
    Ok(writer.with_writer_properties(properties.build()))
}

/// Writes `batch` (with its `dt` column) into its partition's file. A batch of one `dt`
/// (all but those straddling midnight) goes straight in; delta-rs would otherwise group
/// its rows by partition and copy every column (a third of the encoding time).
async fn write_batch(
    writer: &mut RecordBatchWriter,
    batch: RecordBatch59,
) -> Result<(), DeltaTableError> {
    match single_dt(&batch) {
        Some(days) => {
            writer
                .write_partition(batch, &dt_partition(days), WriteMode::Default)
                .await?;
            Ok(())
        }
        None => writer.write(batch).await,
    }
}

/// The `dt` every row of `batch` has, if they share one.
fn single_dt(batch: &RecordBatch59) -> Option<i32> {
    let dt = batch.column_by_name(PARTITION)?;
    let dt = dt.as_any().downcast_ref::<arrow59::array::Date32Array>()?;
    if dt.null_count() > 0 || dt.is_empty() {
        return None;
    }
    let first = dt.value(0);
    dt.values().iter().all(|d| *d == first).then_some(first)
}

/// The partition values of `dt` = `days` (since the epoch).
pub(super) fn dt_partition(days: i32) -> indexmap::IndexMap<String, Scalar> {
    indexmap::IndexMap::from([(PARTITION.to_string(), Scalar::Date(days))])
}
