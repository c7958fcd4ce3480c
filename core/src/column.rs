//! Column types, named as DuckDB names them (what users write in `[sources.x.schema]`), with
//! the Arrow type each travels as between a source and the sinks.

use std::{fmt, str::FromStr, sync::Arc};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// A column type sluice can carry from a source into Parquet and DuckDB unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Boolean,
    TinyInt,
    SmallInt,
    Integer,
    BigInt,
    UTinyInt,
    USmallInt,
    UInteger,
    UBigInt,
    Float,
    Double,
    /// `DECIMAL(precision, scale)`, precision 1..=38.
    Decimal {
        precision: u8,
        scale: i8,
    },
    Varchar,
    /// DuckDB's `JSON` (text that is valid JSON).
    Json,
    Blob,
    Date,
    Time,
    /// `TIMESTAMP` (no time zone), microseconds.
    Timestamp,
    /// `TIMESTAMPTZ`, microseconds, UTC.
    TimestampTz,
    /// `STRUCT(name TYPE, ...)`: a JSON object's fields, each typed like a column.
    Struct(Arc<[Column]>),
}

/// A type name sluice does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported column type {0:?} (supported: BOOLEAN, TINYINT, SMALLINT, INTEGER, BIGINT, UTINYINT, USMALLINT, UINTEGER, UBIGINT, FLOAT, DOUBLE, DECIMAL(p,s), VARCHAR, JSON, BLOB, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, STRUCT(name TYPE, ...))")]
pub struct UnsupportedType(pub String);

impl FromStr for ColumnType {
    type Err = UnsupportedType;

    /// Parses a DuckDB type name, including the aliases DuckDB accepts and the spellings
    /// `information_schema` reports (`TIMESTAMP WITH TIME ZONE`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_uppercase();
        let err = || UnsupportedType(s.to_string());
        if norm.starts_with("STRUCT") {
            // Field names keep their case: parse the original text.
            return parse_struct(s.trim()["STRUCT".len()..].trim()).ok_or_else(err);
        }
        if let Some(args) = norm
            .strip_prefix("DECIMAL")
            .or_else(|| norm.strip_prefix("NUMERIC"))
        {
            return parse_decimal(args.trim()).ok_or_else(err);
        }
        use ColumnType::*;
        Ok(match norm.as_str() {
            "BOOLEAN" | "BOOL" | "LOGICAL" => Boolean,
            "TINYINT" | "INT1" => TinyInt,
            "SMALLINT" | "INT2" | "SHORT" => SmallInt,
            "INTEGER" | "INT" | "INT4" | "SIGNED" => Integer,
            "BIGINT" | "INT8" | "LONG" => BigInt,
            "UTINYINT" => UTinyInt,
            "USMALLINT" => USmallInt,
            "UINTEGER" => UInteger,
            "UBIGINT" => UBigInt,
            "FLOAT" | "REAL" | "FLOAT4" => Float,
            "DOUBLE" | "FLOAT8" => Double,
            "VARCHAR" | "TEXT" | "STRING" | "CHAR" | "BPCHAR" => Varchar,
            "JSON" => Json,
            "BLOB" | "BYTEA" | "BINARY" | "VARBINARY" => Blob,
            "DATE" => Date,
            "TIME" => Time,
            "TIMESTAMP" | "DATETIME" | "TIMESTAMP_US" => Timestamp,
            "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => TimestampTz,
            _ => return Err(err()),
        })
    }
}

/// `(name TYPE, "quoted name" TYPE, ...)`, types possibly nested; at least one field,
/// names unique.
fn parse_struct(args: &str) -> Option<ColumnType> {
    let inner = args.strip_prefix('(')?.strip_suffix(')')?;
    let mut fields: Vec<Column> = Vec::new();
    for part in split_top_level(inner)? {
        let part = part.trim();
        let (name, ty) = match part.strip_prefix('"') {
            Some(rest) => {
                let end = quoted_end(rest)?;
                (rest[..end].replace("\"\"", "\""), &rest[end + 1..])
            }
            None => {
                let end = part.find(char::is_whitespace)?;
                (part[..end].to_string(), &part[end..])
            }
        };
        let ty: ColumnType = ty.trim().parse().ok()?;
        if name.is_empty() || fields.iter().any(|f| f.name.eq_ignore_ascii_case(&name)) {
            return None;
        }
        fields.push(Column::new(name, ty));
    }
    (!fields.is_empty()).then(|| ColumnType::Struct(fields.into()))
}

/// Where a double-quoted name ends (`""` is a quote inside it).
fn quoted_end(rest: &str) -> Option<usize> {
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            if bytes.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Splits on the commas outside parentheses and double quotes.
fn split_top_level(s: &str) -> Option<Vec<&str>> {
    let (mut depth, mut quoted, mut start) = (0usize, false, 0);
    let mut parts = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.checked_sub(1)?,
            ',' if !quoted && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    (depth == 0 && !quoted).then_some(parts)
}

fn parse_decimal(args: &str) -> Option<ColumnType> {
    if args.is_empty() {
        // DuckDB's default.
        return Some(ColumnType::Decimal {
            precision: 18,
            scale: 3,
        });
    }
    let inner = args.strip_prefix('(')?.strip_suffix(')')?;
    let mut parts = inner.split(',').map(str::trim);
    let precision: u8 = parts.next()?.parse().ok()?;
    let scale: i8 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    let valid = parts.next().is_none()
        && (1..=38).contains(&precision)
        && scale >= 0
        && scale as u8 <= precision;
    valid.then_some(ColumnType::Decimal { precision, scale })
}

impl fmt::Display for ColumnType {
    /// The canonical DuckDB spelling, used in `CREATE TABLE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ColumnType::*;
        let name = match self {
            Boolean => "BOOLEAN",
            TinyInt => "TINYINT",
            SmallInt => "SMALLINT",
            Integer => "INTEGER",
            BigInt => "BIGINT",
            UTinyInt => "UTINYINT",
            USmallInt => "USMALLINT",
            UInteger => "UINTEGER",
            UBigInt => "UBIGINT",
            Float => "FLOAT",
            Double => "DOUBLE",
            Decimal { precision, scale } => return write!(f, "DECIMAL({precision},{scale})"),
            Struct(fields) => {
                f.write_str("STRUCT(")?;
                for (i, c) in fields.iter().enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    write!(f, "{sep}{} {}", crate::ident::quote_ident(&c.name), c.ty)?;
                }
                return f.write_str(")");
            }
            Varchar => "VARCHAR",
            Json => "JSON",
            Blob => "BLOB",
            Date => "DATE",
            Time => "TIME",
            Timestamp => "TIMESTAMP",
            TimestampTz => "TIMESTAMPTZ",
        };
        f.write_str(name)
    }
}

impl ColumnType {
    /// The Arrow type values of this column travel as.
    pub fn arrow_type(&self) -> DataType {
        use ColumnType::*;
        match self {
            Boolean => DataType::Boolean,
            TinyInt => DataType::Int8,
            SmallInt => DataType::Int16,
            Integer => DataType::Int32,
            BigInt => DataType::Int64,
            UTinyInt => DataType::UInt8,
            USmallInt => DataType::UInt16,
            UInteger => DataType::UInt32,
            UBigInt => DataType::UInt64,
            Float => DataType::Float32,
            Double => DataType::Float64,
            Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            Varchar | Json => DataType::Utf8,
            Blob => DataType::Binary,
            Date => DataType::Date32,
            Time => DataType::Time64(TimeUnit::Microsecond),
            Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|c| Field::new(&c.name, c.ty.arrow_type(), true))
                    .collect(),
            ),
        }
    }
}

/// One named, typed column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        Column {
            name: name.into(),
            ty,
        }
    }
}

/// The ordered columns of a table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSchema {
    pub columns: Vec<Column>,
}

impl fmt::Display for TableSchema {
    /// `name TYPE, name TYPE, ...`, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", c.name, c.ty)?;
        }
        Ok(())
    }
}

impl TableSchema {
    pub fn new(columns: Vec<Column>) -> Self {
        TableSchema { columns }
    }

    /// Position of a column, compared case-insensitively as DuckDB compares identifiers.
    pub fn position(&self, name: &str) -> Option<usize> {
        // The exact spelling first: it is the usual case, and cheap (called per field of
        // every Kafka JSON message, the case-insensitive scan alone was 10% of decoding).
        self.columns
            .iter()
            .position(|c| c.name == name)
            .or_else(|| {
                self.columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(name))
            })
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// The same columns with the same types, in any order (a column added to a table with
    /// `ALTER TABLE` comes last, wherever a declaration lists it).
    pub fn same_columns(&self, other: &TableSchema) -> bool {
        fn by_name(schema: &TableSchema) -> Vec<(&str, &ColumnType)> {
            let mut columns: Vec<_> = schema
                .columns
                .iter()
                .map(|c| (c.name.as_str(), &c.ty))
                .collect();
            columns.sort_by_key(|(name, _)| *name);
            columns
        }
        by_name(self) == by_name(other)
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The Arrow schema (all columns nullable).
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.ty.arrow_type(), true))
            .collect();
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_columns_ignores_order_but_not_names_or_types() {
        let schema = |cols: &[(&str, ColumnType)]| {
            TableSchema::new(
                cols.iter()
                    .map(|(n, t)| Column::new(*n, t.clone()))
                    .collect(),
            )
        };
        let table = schema(&[("a", ColumnType::BigInt), ("b", ColumnType::Varchar)]);
        let reordered = schema(&[("b", ColumnType::Varchar), ("a", ColumnType::BigInt)]);
        let retyped = schema(&[("a", ColumnType::BigInt), ("b", ColumnType::Date)]);
        let renamed = schema(&[("a", ColumnType::BigInt), ("c", ColumnType::Varchar)]);
        let fewer = schema(&[("a", ColumnType::BigInt)]);
        assert!(table.same_columns(&reordered));
        assert!(!table.same_columns(&retyped));
        assert!(!table.same_columns(&renamed));
        assert!(!table.same_columns(&fewer) && !fewer.same_columns(&table));
    }

    #[test]
    fn parses_names_and_aliases() {
        assert_eq!("bigint".parse(), Ok(ColumnType::BigInt));
        assert_eq!("INT8".parse(), Ok(ColumnType::BigInt));
        assert_eq!(
            "DECIMAL(12, 2)".parse(),
            Ok(ColumnType::Decimal {
                precision: 12,
                scale: 2
            })
        );
        assert_eq!(
            "TIMESTAMP WITH TIME ZONE".parse(),
            Ok(ColumnType::TimestampTz)
        );
    }

    #[test]
    fn display_round_trips() {
        for name in [
            "BIGINT",
            "DECIMAL(38,10)",
            "TIMESTAMPTZ",
            "VARCHAR",
            "DATE",
            "JSON",
        ] {
            let ty: ColumnType = name.parse().expect("parses");
            assert_eq!(ty.to_string(), name);
        }
    }

    #[test]
    fn rejects_unknown_and_invalid_decimals() {
        for bad in [
            "GEOMETRY",
            "DECIMAL(0,0)",
            "DECIMAL(5,6)",
            "DECIMAL(40,2)",
            "DECIMAL(3",
            "STRUCT()",
            "STRUCT(a)",
            "STRUCT(a BIGINT, A VARCHAR)",
            "STRUCT(a GEOMETRY)",
            "STRUCT(\"a BIGINT)",
            "STRUCT(a STRUCT(b INT)",
        ] {
            assert!(bad.parse::<ColumnType>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn structs_parse_as_duckdb_reports_them_and_round_trip() {
        // information_schema's spelling: bare names, quotes where needed, nested types.
        let reported = r#"STRUCT(a BIGINT, "B c" VARCHAR, d DECIMAL(12,2), n STRUCT(x INTEGER))"#;
        let ty: ColumnType = reported.parse().expect("parses");
        let ColumnType::Struct(fields) = &ty else {
            panic!("{ty:?}")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "B c", "d", "n"]);
        assert_eq!(
            fields[2].ty,
            ColumnType::Decimal {
                precision: 12,
                scale: 2
            }
        );
        let written = ty.to_string();
        assert_eq!(
            written,
            r#"STRUCT("a" BIGINT, "B c" VARCHAR, "d" DECIMAL(12,2), "n" STRUCT("x" INTEGER))"#
        );
        assert_eq!(written.parse::<ColumnType>(), Ok(ty.clone()));
        let quoted: ColumnType = r#"struct("say ""hi""" varchar)"#.parse().expect("parses");
        assert_eq!(quoted.to_string(), r#"STRUCT("say ""hi""" VARCHAR)"#);
        assert!(matches!(ty.arrow_type(), DataType::Struct(f) if f.len() == 4));
    }

    #[test]
    fn position_is_case_insensitive() {
        let s = TableSchema::new(vec![Column::new("Amount", ColumnType::Double)]);
        assert_eq!(s.position("amount"), Some(0));
        assert_eq!(s.position("other"), None);
    }
}
