//! Batches from DuckDB (arrow 60, what the `duckdb` crate requires) to delta-rs (arrow 59,
//! what `deltalake` 1.1 is built on) through Arrow's C data interface: no copy, only the
//! ownership of the buffers moves.
//!
//! The C data interface is the ABI Arrow defines for handing arrays between libraries
//! (and between versions of one), so this is its intended use; the only `unsafe` is the
//! move of the two `#[repr(C)]` structs between the crates' names for them. When
//! `deltalake` moves to sluice's arrow this module goes, and its callers pass batches as
//! they are.
#![allow(unsafe_code)]

use arrow::{
    array::{Array, RecordBatch, StructArray},
    ffi as ffi60,
};
use arrow59::{
    array::{Array as _, RecordBatch as RecordBatch59, StructArray as StructArray59},
    ffi as ffi59,
};

/// Why a batch could not cross.
#[derive(Debug, thiserror::Error)]
#[error("handing a batch to the Delta writer: {0}")]
pub struct BridgeError(String);

/// Moves `batch` from arrow 60 to arrow 59.
pub fn to_delta(batch: RecordBatch) -> Result<RecordBatch59, BridgeError> {
    let data = StructArray::from(batch).into_data();
    let (mut array, mut schema) = ffi60::to_ffi(&data).map_err(|e| BridgeError(e.to_string()))?;
    // SAFETY: `FFI_ArrowArray` and `FFI_ArrowSchema` are `#[repr(C)]` structs laid out as
    // the C data interface's `ArrowArray` and `ArrowSchema` in both versions. `from_raw`
    // moves the struct out (with its release callback) and leaves an empty one behind,
    // whose drop releases nothing, so the buffers are released exactly once, by arrow 59.
    let (array, schema) = unsafe {
        (
            ffi59::FFI_ArrowArray::from_raw((&mut array as *mut ffi60::FFI_ArrowArray).cast()),
            ffi59::FFI_ArrowSchema::from_raw((&mut schema as *mut ffi60::FFI_ArrowSchema).cast()),
        )
    };
    // SAFETY: `array` and `schema` were produced together by `to_ffi` above.
    let data =
        unsafe { ffi59::from_ffi(array, &schema) }.map_err(|e| BridgeError(e.to_string()))?;
    let rows = data.len();
    let array = StructArray59::from(data);
    if array.null_count() > 0 {
        return Err(BridgeError("a batch's rows cannot be null".into()));
    }
    let batch = RecordBatch59::from(array);
    debug_assert_eq!(batch.num_rows(), rows);
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::{
        array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray},
        datatypes::{DataType, Field, Schema, TimeUnit},
    };

    use super::*;

    #[test]
    fn a_batch_crosses_with_its_values_nulls_and_types() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(5), Some(6), None]).with_timezone("UTC"),
            ),
        ];
        let batch = RecordBatch::try_new(schema, columns).expect("batch");
        let moved = to_delta(batch.clone()).expect("crosses");
        assert_eq!(moved.num_rows(), 3);
        assert_eq!(
            moved.schema().field(2).data_type().to_string(),
            "Timestamp(µs, \"UTC\")"
        );
        let names = moved
            .column(1)
            .as_any()
            .downcast_ref::<arrow59::array::StringArray>()
            .expect("strings");
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            vec![Some("a"), None, Some("ccc")]
        );
        let ids = moved
            .column(0)
            .as_any()
            .downcast_ref::<arrow59::array::Int64Array>()
            .expect("ints");
        assert_eq!(ids.values().to_vec(), vec![1, 2, 3]);
    }
}
