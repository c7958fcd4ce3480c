//! DuckDB's types as Postgres sees them: the type (OID and modifier) announced in
//! `RowDescription`, and each value encoded in the text or binary format a client asked
//! for. Result rows arrive as Arrow batches (DuckDB's own export), so encoding works on
//! Arrow arrays; the Postgres type comes from DuckDB's logical type, which knows what
//! Arrow does not (UUID and JSON travel as text, HUGEINT as a decimal).
//!
//! | DuckDB | Postgres |
//! |---|---|
//! | BOOLEAN | bool |
//! | TINYINT, SMALLINT, UTINYINT | int2 |
//! | INTEGER, USMALLINT | int4 |
//! | BIGINT, UINTEGER | int8 |
//! | UBIGINT, HUGEINT, UHUGEINT, DECIMAL(p,s) | numeric (DECIMAL with its modifier) |
//! | FLOAT, DOUBLE | float4, float8 |
//! | VARCHAR, ENUM | text; JSON is json |
//! | BLOB | bytea |
//! | DATE, TIME, TIMESTAMP (any unit), TIMESTAMPTZ, INTERVAL, UUID | date, time, timestamp, timestamptz, interval, uuid |
//! | LIST, ARRAY, STRUCT, MAP, UNION | json (the value as JSON text) |
//! | anything else | text (DuckDB's rendering) |

mod binary;
mod json;
pub mod params;
mod text;

use arrow::array::{Array, ArrayRef};
use arrow::record_batch::RecordBatch;
use bytes::{BufMut, BytesMut};
use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;

/// One result column as announced to the client.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub pg: Type,
    /// `atttypmod`: `numeric(p,s)` packs precision and scale; -1 for none.
    pub typmod: i32,
    /// DuckDB's name for the column's type (`DECIMAL(12,2)`, `VARCHAR[]`).
    pub duckdb: String,
}

impl Column {
    pub fn field(&self, format: FieldFormat) -> FieldInfo {
        FieldInfo::new(self.name.clone(), None, None, self.pg.clone(), format)
            .with_type_modifier(self.typmod)
            .with_type_size(type_size(&self.pg))
    }
}

/// The Postgres type (and modifier) for a DuckDB logical type.
pub fn pg_type(logical: &LogicalTypeHandle) -> (Type, i32) {
    use LogicalTypeId as L;
    let json = logical
        .get_alias()
        .is_some_and(|a| a.eq_ignore_ascii_case("json"));
    match logical.id() {
        L::Boolean => (Type::BOOL, -1),
        L::Tinyint | L::Smallint | L::UTinyint => (Type::INT2, -1),
        L::Integer | L::USmallint => (Type::INT4, -1),
        L::Bigint | L::UInteger => (Type::INT8, -1),
        L::UBigint | L::Hugeint | L::UHugeint | L::Bignum => (Type::NUMERIC, -1),
        L::Decimal => {
            let (p, s) = (logical.decimal_width(), logical.decimal_scale());
            (Type::NUMERIC, ((i32::from(p) << 16) | i32::from(s)) + 4)
        }
        L::Float => (Type::FLOAT4, -1),
        L::Double => (Type::FLOAT8, -1),
        L::Varchar if json => (Type::JSON, -1),
        L::Varchar | L::Enum => (Type::TEXT, -1),
        L::Blob => (Type::BYTEA, -1),
        L::Date => (Type::DATE, -1),
        L::Time | L::TimeNs => (Type::TIME, -1),
        L::Timestamp | L::TimestampS | L::TimestampMs | L::TimestampNs => (Type::TIMESTAMP, -1),
        L::TimestampTZ => (Type::TIMESTAMPTZ, -1),
        L::Interval => (Type::INTERVAL, -1),
        L::Uuid => (Type::UUID, -1),
        L::List | L::Array | L::Struct | L::Map | L::Union => (Type::JSON, -1),
        _ => (Type::TEXT, -1),
    }
}

/// DuckDB's name for a logical type, as `typeof()` writes it for common types.
pub fn duckdb_name(logical: &LogicalTypeHandle) -> String {
    use LogicalTypeId as L;
    if let Some(alias) = logical.get_alias() {
        return alias.to_uppercase();
    }
    let children = || {
        (0..logical.num_children())
            .map(|i| {
                format!(
                    "{} {}",
                    logical.child_name(i),
                    duckdb_name(&logical.child(i))
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match logical.id() {
        L::Decimal => format!(
            "DECIMAL({},{})",
            logical.decimal_width(),
            logical.decimal_scale()
        ),
        L::List | L::Array => format!("{}[]", duckdb_name(&logical.child(0))),
        L::Map => format!(
            "MAP({}, {})",
            duckdb_name(&logical.child(0)),
            duckdb_name(&logical.child(1))
        ),
        L::Struct => format!("STRUCT({})", children()),
        L::Union => format!("UNION({})", children()),
        id => scalar_name(id).to_string(),
    }
}

fn scalar_name(id: LogicalTypeId) -> &'static str {
    use LogicalTypeId as L;
    match id {
        L::Boolean => "BOOLEAN",
        L::Tinyint => "TINYINT",
        L::Smallint => "SMALLINT",
        L::Integer => "INTEGER",
        L::Bigint => "BIGINT",
        L::Hugeint => "HUGEINT",
        L::UTinyint => "UTINYINT",
        L::USmallint => "USMALLINT",
        L::UInteger => "UINTEGER",
        L::UBigint => "UBIGINT",
        L::UHugeint => "UHUGEINT",
        L::Float => "FLOAT",
        L::Double => "DOUBLE",
        L::Varchar => "VARCHAR",
        L::Blob => "BLOB",
        L::Date => "DATE",
        L::Time => "TIME",
        L::TimeNs => "TIME_NS",
        L::Timestamp => "TIMESTAMP",
        L::TimestampS => "TIMESTAMP_S",
        L::TimestampMs => "TIMESTAMP_MS",
        L::TimestampNs => "TIMESTAMP_NS",
        L::TimestampTZ => "TIMESTAMP WITH TIME ZONE",
        L::Interval => "INTERVAL",
        L::Uuid => "UUID",
        L::Enum => "ENUM",
        L::Bignum => "BIGNUM",
        _ => "VARCHAR",
    }
}

/// `pg_type.typlen` of the types sluice sends (-1: variable width).
pub(crate) fn type_size(t: &Type) -> i16 {
    match *t {
        Type::BOOL => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => 8,
        Type::INTERVAL | Type::UUID => 16,
        _ => -1,
    }
}

/// The rows of `batch`, each value in its column's format. A value that cannot be
/// encoded is an error naming the column (never a silently empty value).
pub fn encode(
    batch: &RecordBatch,
    columns: &[Column],
    formats: &[FieldFormat],
) -> Result<Vec<DataRow>, String> {
    let arrays: Vec<&ArrayRef> = batch.columns().iter().collect();
    if arrays.len() != columns.len() {
        return Err(format!(
            "the result has {} columns where {} were described",
            arrays.len(),
            columns.len()
        ));
    }
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut buf = BytesMut::with_capacity(batch.num_rows() * 16 * columns.len().max(1));
    for row in 0..batch.num_rows() {
        for (i, (array, column)) in arrays.iter().zip(columns).enumerate() {
            let format = formats.get(i).copied().unwrap_or(FieldFormat::Text);
            value(&mut buf, array.as_ref(), row, column, format)
                .map_err(|e| format!("column {}: {e}", column.name))?;
        }
        rows.push(DataRow::new(buf.split(), columns.len() as i16));
    }
    Ok(rows)
}

/// One value, with its length prefix (-1 for NULL).
fn value(
    buf: &mut BytesMut,
    array: &dyn Array,
    row: usize,
    column: &Column,
    format: FieldFormat,
) -> Result<(), String> {
    // A NULL-typed column (`SELECT NULL`) has no validity buffer: every value is NULL.
    if array.is_null(row) || *array.data_type() == arrow::datatypes::DataType::Null {
        buf.put_i32(-1);
        return Ok(());
    }
    let at = buf.len();
    buf.put_i32(0);
    match format {
        FieldFormat::Binary => binary::value(buf, array, row, &column.pg)?,
        FieldFormat::Text => text::value(buf, array, row, &column.pg)?,
    }
    let len = (buf.len() - at - 4) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The values of an encoded row (`None` for NULL).
pub fn fields(row: &DataRow) -> Vec<Option<&[u8]>> {
    let mut out = Vec::with_capacity(row.field_count.max(0) as usize);
    let mut rest: &[u8] = &row.data;
    for _ in 0..row.field_count {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            out.push(None);
            rest = tail;
        } else {
            let (value, tail) = tail.split_at((len as usize).min(tail.len()));
            out.push(Some(value));
            rest = tail;
        }
    }
    out
}

/// Microseconds from 1970-01-01 to 2000-01-01, Postgres's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

#[cfg(test)]
mod tests;
