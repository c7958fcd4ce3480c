//! Typing text columns. Every value of a chunk is first collected as text per column; each
//! column is then cast to its declared type in one vectorised step, and a value that was
//! present but did not survive the cast marks its row as bad. Bad rows become dead letters
//! and are filtered out; good rows of the same chunk still land.

use std::sync::Arc;

use arrow::{
    array::{Array, ArrayRef, BooleanArray, StringArray, StringBuilder, StructArray},
    buffer::NullBuffer,
    compute::{cast_with_options, CastOptions},
    datatypes::DataType,
    util::display::FormatOptions,
};
use serde_json::Value;
use sluice_core::{Column, ColumnType, TableSchema};

/// A value that does not parse as its column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    pub row: usize,
    pub message: String,
}

/// Casts each text column to the type of the same column in `schema`. Returns the typed
/// columns and, per failing cell, an error (rows are indices into the chunk).
pub fn type_columns(
    text: Vec<StringArray>,
    schema: &TableSchema,
) -> Result<(Vec<ArrayRef>, Vec<CellError>), arrow::error::ArrowError> {
    let mut typed = Vec::with_capacity(text.len());
    let mut errors = Vec::new();
    for (column, values) in schema.columns.iter().zip(text) {
        let array = type_column(&column.name, &column.ty, values, &mut errors)?;
        typed.push(array);
    }
    Ok((typed, errors))
}

fn type_column(
    name: &str,
    ty: &ColumnType,
    values: StringArray,
    errors: &mut Vec<CellError>,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    match ty {
        ColumnType::Varchar => return Ok(Arc::new(values)),
        ColumnType::Struct(fields) => return type_struct(name, fields, &values, errors),
        ColumnType::Boolean => return Ok(type_boolean(name, &values, errors)),
        ColumnType::Json => {
            for (row, v) in values.iter().enumerate() {
                if let Some(Err(e)) = v.map(serde_json::from_str::<serde::de::IgnoredAny>) {
                    errors.push(CellError {
                        row,
                        message: format!("column {name}: not valid JSON: {e}"),
                    });
                }
            }
            return Ok(Arc::new(values));
        }
        _ => {}
    }
    let options = CastOptions {
        safe: true,
        format_options: FormatOptions::default(),
    };
    let typed = cast_with_options(&values, &ty.arrow_type(), &options)?;
    if *ty == ColumnType::Date {
        // Arrow's cast accepts a timestamp for a date and drops the time; a DATE column
        // takes dates only, so that no value is silently truncated.
        for (row, v) in values.iter().enumerate() {
            if v.is_some_and(|v| v.trim().len() > "YYYY-MM-DD".len()) {
                errors.push(CellError {
                    row,
                    message: format!(
                        "column {name}: cannot parse {:?} as DATE",
                        shorten(v.unwrap_or_default())
                    ),
                });
            }
        }
    }
    if typed.null_count() != values.null_count() {
        for row in 0..values.len() {
            if values.is_valid(row) && typed.is_null(row) {
                errors.push(CellError {
                    row,
                    message: format!(
                        "column {name}: cannot parse {:?} as {ty}",
                        shorten(values.value(row))
                    ),
                });
            }
        }
    }
    Ok(typed)
}

/// A STRUCT column from JSON objects (one per value, as text): each declared field is
/// typed like a column, so a field value that does not parse marks its row as bad, as at
/// the top level. A missing field or a JSON null is NULL; fields the struct does not
/// declare are ignored; a value that is not a JSON object marks its row as bad.
fn type_struct(
    name: &str,
    fields: &[Column],
    values: &StringArray,
    errors: &mut Vec<CellError>,
) -> Result<ArrayRef, arrow::error::ArrowError> {
    let mut text: Vec<StringBuilder> = fields.iter().map(|_| StringBuilder::new()).collect();
    let mut present = Vec::with_capacity(values.len());
    for (row, v) in values.iter().enumerate() {
        let object = match v.map(|t| (t, serde_json::from_str::<Value>(t))) {
            None | Some((_, Ok(Value::Null))) => None,
            Some((_, Ok(Value::Object(o)))) => Some(o),
            Some((text, parsed)) => {
                let why = parsed.err().map(|e| format!(" (not valid JSON: {e})"));
                let message = format!(
                    "column {name}: expected a JSON object, found {:?}{}",
                    shorten(text),
                    why.unwrap_or_default()
                );
                errors.push(CellError { row, message });
                None
            }
        };
        for (b, field) in text.iter_mut().zip(fields) {
            let value = object.as_ref().and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&field.name))
                    .and_then(|(_, v)| json_text(v.clone()))
            });
            b.append_option(value);
        }
        present.push(object.is_some());
    }
    let children = fields
        .iter()
        .zip(text)
        .map(|(f, mut b)| type_column(&format!("{name}.{}", f.name), &f.ty, b.finish(), errors))
        .collect::<Result<Vec<_>, _>>()?;
    let DataType::Struct(arrow_fields) = ColumnType::Struct(fields.into()).arrow_type() else {
        unreachable!("a STRUCT column travels as an Arrow struct");
    };
    let nulls = NullBuffer::from(present);
    Ok(Arc::new(StructArray::try_new(
        arrow_fields,
        children,
        Some(nulls),
    )?))
}

/// A BOOLEAN column. The same spellings as Arrow's cast, without its allocation of a
/// lowercase copy of every value (that was most of the cast's time).
fn type_boolean(name: &str, values: &StringArray, errors: &mut Vec<CellError>) -> ArrayRef {
    let typed: BooleanArray = values
        .iter()
        .enumerate()
        .map(|(row, v)| {
            let v = v?;
            let parsed = parse_boolean(v);
            if parsed.is_none() {
                let message = format!("column {name}: cannot parse {:?} as BOOLEAN", shorten(v));
                errors.push(CellError { row, message });
            }
            parsed
        })
        .collect();
    Arc::new(typed)
}

/// `t`, `true` (and its prefixes), `y`, `yes`, `on`, `1`, or `f`, `false` (and its
/// prefixes), `n`, `no`, `off`, `0`: any case, surrounding whitespace ignored.
fn parse_boolean(text: &str) -> Option<bool> {
    let text = text.trim();
    let mut lower = [0u8; 5];
    if text.len() > lower.len() {
        return None;
    }
    for (l, c) in lower.iter_mut().zip(text.bytes()) {
        *l = c.to_ascii_lowercase();
    }
    match &lower[..text.len()] {
        b"t" | b"tr" | b"tru" | b"true" | b"y" | b"ye" | b"yes" | b"on" | b"1" => Some(true),
        b"f" | b"fa" | b"fal" | b"fals" | b"false" | b"n" | b"no" | b"of" | b"off" | b"0" => {
            Some(false)
        }
        _ => None,
    }
}

/// A JSON value as the text a column cast reads: strings as they are, numbers and
/// booleans as written, nested objects and arrays as JSON text, null as NULL.
pub fn json_text(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Whether every present value of `values` parses as `ty`.
pub fn fits(values: &StringArray, ty: &ColumnType) -> bool {
    let mut errors = Vec::new();
    type_column("", ty, values.clone(), &mut errors).is_ok() && errors.is_empty()
}

fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use arrow::array::{Decimal128Array, Int64Array};
    use sluice_core::Column;

    use super::*;

    #[test]
    fn bad_cells_are_reported_by_row_and_nulls_stay_null() {
        let schema = TableSchema::new(vec![
            Column::new("id", ColumnType::BigInt),
            Column::new(
                "amount",
                ColumnType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
        ]);
        let ids = StringArray::from(vec![Some("1"), Some("x"), None, Some("4")]);
        let amounts = StringArray::from(vec![Some("1.50"), Some("2"), Some("3"), Some("abc")]);
        let (typed, errors) = type_columns(vec![ids, amounts], &schema).expect("casts");
        let rows: Vec<usize> = errors.iter().map(|e| e.row).collect();
        assert_eq!(rows, [1, 3]);
        assert!(errors[0].message.contains("column id"), "{:?}", errors[0]);
        assert!(
            errors[1].message.contains("DECIMAL(12,2)"),
            "{:?}",
            errors[1]
        );
        let ids = typed[0].as_any().downcast_ref::<Int64Array>().expect("i64");
        assert_eq!(ids.value(0), 1);
        assert!(ids.is_null(2));
        let amounts = typed[1]
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .expect("decimal");
        assert_eq!(amounts.value(0), 150);
    }

    #[test]
    fn a_date_column_refuses_timestamps_instead_of_truncating_them() {
        let schema = TableSchema::new(vec![Column::new("d", ColumnType::Date)]);
        let values = StringArray::from(vec![Some("2024-01-31"), Some("2024-01-31 10:00:00")]);
        let (_, errors) = type_columns(vec![values], &schema).expect("casts");
        assert_eq!(errors.iter().map(|e| e.row).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn booleans_parse_as_arrows_cast_does() {
        let inputs = [
            "true", "TRUE", " True ", "t", "tr", "tru", "y", "ye", "yes", "on", "1", "false", "F",
            "fa", "fal", "fals", "n", "no", "of", "off", "0", "", " ", "2", "truee", "nope",
            "yess", "oN", "\ttrue\n", "é", "tRuE",
        ];
        for input in inputs {
            assert_eq!(
                parse_boolean(input),
                arrow::compute::cast_single_string_to_boolean_default(input),
                "{input:?}"
            );
        }
        let schema = TableSchema::new(vec![Column::new("b", ColumnType::Boolean)]);
        let values = StringArray::from(vec![Some("yes"), None, Some("maybe")]);
        let (typed, errors) = type_columns(vec![values], &schema).expect("casts");
        let typed = typed[0]
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("bool");
        assert!(typed.value(0) && typed.is_null(1) && typed.is_null(2));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].row, 2);
        assert!(errors[0].message.contains("as BOOLEAN"), "{:?}", errors[0]);
    }

    #[test]
    fn json_columns_are_validated() {
        let schema = TableSchema::new(vec![Column::new("j", ColumnType::Json)]);
        let values = StringArray::from(vec![Some("{\"a\":1}"), Some("{oops")]);
        let (_, errors) = type_columns(vec![values], &schema).expect("casts");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].row, 1);
    }
}
