//! Declared columns: the `[schema]` table of a source (column = "DUCKDB TYPE", in the
//! order written), validated into a table schema; the rule every data column name
//! follows; and the raw table's schema, the data columns then sluice's own.

use std::fmt;

use serde::{
    de::{MapAccess, Visitor},
    Deserialize, Deserializer,
};
use sluice_core::{meta, Column, ColumnType, TableSchema};

/// Column name -> DuckDB type name, in the order written in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredSchema(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for DeclaredSchema {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = DeclaredSchema;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of column = \"TYPE\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut columns = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    columns.push((k, v));
                }
                Ok(DeclaredSchema(columns))
            }
        }
        d.deserialize_map(Ordered)
    }
}

/// Validates declared columns: known types, names not reserved, no duplicates.
pub fn declared_columns(schema: &DeclaredSchema) -> Result<TableSchema, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut columns: Vec<Column> = Vec::new();
    if schema.0.is_empty() {
        errors.push(("".into(), "declares no columns".into()));
    }
    for (name, ty) in &schema.0 {
        if let Err(msg) = check_column_name(name) {
            errors.push((name.clone(), msg));
        }
        if columns.iter().any(|c| c.name.eq_ignore_ascii_case(name)) {
            errors.push((
                name.clone(),
                "declared twice (names are case-insensitive)".into(),
            ));
        }
        match ty.parse::<ColumnType>() {
            Ok(ty) => columns.push(Column::new(name.clone(), ty)),
            Err(e) => errors.push((name.clone(), e.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(TableSchema::new(columns))
    } else {
        Err(errors)
    }
}

/// The longest data column name, in bytes.
pub const MAX_COLUMN_NAME_BYTES: usize = 255;

/// Whether a data column name is acceptable (it is quoted in SQL, so only emptiness, NUL
/// and sluice's reserved prefix are refused).
pub fn check_column_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("a column name must not be empty".into());
    }
    if name.contains('\0') {
        return Err("a column name must not contain NUL".into());
    }
    if name.len() > MAX_COLUMN_NAME_BYTES {
        return Err(format!(
            "a column name must be at most {MAX_COLUMN_NAME_BYTES} bytes long"
        ));
    }
    if meta::is_reserved(name) {
        return Err(format!(
            "{name:?}: names starting with {:?} are reserved for sluice",
            meta::RESERVED_PREFIX
        ));
    }
    Ok(())
}

/// The raw table's columns: the data, the columns the committer fills (batch, commit
/// time), then the source's provenance columns, in that order for every source.
pub fn raw_columns(
    data: &TableSchema,
    provenance: impl IntoIterator<Item = Column>,
) -> TableSchema {
    let mut columns = data.columns.clone();
    columns.extend(meta::commit_columns());
    columns.extend(provenance);
    TableSchema::new(columns)
}
