//! A schema for a table nobody declared: column names from the header (or `column0`,
//! `column1`, ... without one, as DuckDB names them) and, per column, the first type in
//! [`CANDIDATES`] that every sampled value parses as, else VARCHAR. The inferred schema
//! is the table's start; later values that do not fit widen it as far as the source's
//! schema contract allows (`typing::contract`), else they are dead letters.

use arrow::array::{Array, StringArray};
use sluice_core::{Column, ColumnType, TableSchema};

use super::{cast::fits, declared::check_column_name};

/// Records sampled from the start of the first file.
pub const SAMPLE_RECORDS: usize = 10_000;

/// Types tried in order; the first that fits every sampled value wins.
pub const CANDIDATES: [ColumnType; 5] = [
    ColumnType::BigInt,
    ColumnType::Double,
    ColumnType::Boolean,
    ColumnType::Date,
    ColumnType::Timestamp,
];

/// Data column names for a file: the header's, or positional names.
/// Errors name the problem (a reserved or duplicated name).
pub fn column_names(header: Option<&[String]>, fields: usize) -> Result<Vec<String>, String> {
    let Some(header) = header else {
        return Ok((0..fields).map(|i| format!("column{i}")).collect());
    };
    let mut names: Vec<String> = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let name = if raw.trim().is_empty() {
            format!("column{i}")
        } else {
            raw.clone()
        };
        check_column_name(&name).map_err(|e| format!("header: {e}"))?;
        if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            return Err(format!(
                "header: column {name:?} appears twice (names are case-insensitive)"
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// Infers column types from sampled text values, one array per column.
pub fn infer(names: Vec<String>, samples: &[StringArray]) -> TableSchema {
    let columns = names
        .into_iter()
        .zip(samples)
        .map(|(name, values)| Column::new(name, infer_type(values)))
        .collect();
    TableSchema::new(columns)
}

/// The first of [`CANDIDATES`] every present value parses as, else VARCHAR (also for no
/// present value).
pub fn infer_type(values: &StringArray) -> ColumnType {
    if values.null_count() == values.len() {
        return ColumnType::Varchar;
    }
    CANDIDATES
        .into_iter()
        .find(|ty| fits(values, ty))
        .unwrap_or(ColumnType::Varchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(values: &[Option<&str>]) -> StringArray {
        StringArray::from(values.to_vec())
    }

    #[test]
    fn infers_the_narrowest_fitting_type() {
        let schema = infer(
            vec![
                "a".into(),
                "b".into(),
                "c".into(),
                "d".into(),
                "e".into(),
                "f".into(),
            ],
            &[
                col(&[Some("1"), None, Some("-3")]),
                col(&[Some("1.5"), Some("2")]),
                col(&[Some("true"), Some("false")]),
                col(&[Some("2024-01-31")]),
                col(&[Some("2024-01-31 10:00:00")]),
                col(&[Some("1"), Some("x")]),
            ],
        );
        let types: Vec<_> = schema.columns.iter().map(|c| c.ty.clone()).collect();
        use ColumnType::*;
        assert_eq!(types, [BigInt, Double, Boolean, Date, Timestamp, Varchar]);
    }

    #[test]
    fn all_null_column_is_varchar() {
        let schema = infer(vec!["x".into()], &[col(&[None, None])]);
        assert_eq!(schema.columns[0].ty, ColumnType::Varchar);
    }

    #[test]
    fn names_from_header_or_position() {
        assert_eq!(
            column_names(None, 2).expect("names"),
            ["column0", "column1"]
        );
        let header = vec!["id".to_string(), "".to_string()];
        assert_eq!(
            column_names(Some(&header), 2).expect("names"),
            ["id", "column1"]
        );
        let dup = vec!["id".to_string(), "ID".to_string()];
        assert!(column_names(Some(&dup), 2).is_err());
        let reserved = vec!["_sluice_line".to_string()];
        assert!(column_names(Some(&reserved), 1).is_err());
    }
}
