//! Typing text columns. Every value of a chunk is first collected as text per column; each
//! column is then cast to its declared type in one vectorised step, and a value that was
//! present but did not survive the cast marks its row as bad. Bad rows become dead letters
//! and are filtered out; good rows of the same chunk still land.

use std::sync::Arc;

use arrow::{
    array::{
        Array, ArrayRef, AsArray, BooleanArray, Date32Array, StringArray, StringBuilder,
        StructArray, TimestampMicrosecondArray,
    },
    buffer::NullBuffer,
    compute::{cast_with_options, CastOptions},
    datatypes::{DataType, TimeUnit, TimestampMicrosecondType},
    util::display::FormatOptions,
};
use serde_json::Value;
use sluice_core::{Column, ColumnType, TableSchema};

/// A value that does not parse as its column's type, or (in a STRUCT column) an object
/// with a field the struct lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    pub row: usize,
    pub message: String,
    /// The top-level column, by index into the schema.
    pub column: usize,
    /// The value does not parse (the row is bad), or it only has new struct fields (the
    /// row is good; the fields were left out).
    pub kind: Miss,
}

/// What a [`CellError`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The value does not parse as the column's type: its row is bad.
    Type,
    /// A STRUCT value has fields the struct lacks (left out; the row is good).
    NewField,
}

impl CellError {
    fn new(row: usize, message: String) -> Self {
        CellError {
            row,
            message,
            column: 0,
            kind: Miss::Type,
        }
    }

    /// Whether the row cannot land as it is.
    pub fn is_bad(&self) -> bool {
        self.kind == Miss::Type
    }
}

/// Casts each text column to the type of the same column in `schema`. Returns the typed
/// columns and, per failing cell, an error (rows are indices into the chunk).
pub fn type_columns(
    text: Vec<StringArray>,
    schema: &TableSchema,
) -> Result<(Vec<ArrayRef>, Vec<CellError>), arrow::error::ArrowError> {
    let mut typed = Vec::with_capacity(text.len());
    let mut errors = Vec::new();
    for (i, (column, values)) in schema.columns.iter().zip(text).enumerate() {
        let from = errors.len();
        let array = type_column(&column.name, &column.ty, values, &mut errors)?;
        errors[from..].iter_mut().for_each(|e| e.column = i);
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
                    errors.push(CellError::new(
                        row,
                        format!("column {name}: not valid JSON: {e}"),
                    ));
                }
            }
            return Ok(Arc::new(values));
        }
        _ => {}
    }
    if *ty == ColumnType::Timestamp {
        if let Some(typed) = plain_timestamps(&values) {
            return Ok(Arc::new(typed));
        }
    }
    if *ty == ColumnType::Date {
        if let Some(typed) = plain_dates(&values) {
            return Ok(Arc::new(typed));
        }
    }
    let typed = cast_text(&values, ty)?;
    if *ty == ColumnType::Date {
        // Arrow's cast accepts a timestamp for a date and drops the time; a DATE column
        // takes dates only, so that no value is silently truncated.
        for (row, v) in values.iter().enumerate() {
            if v.is_some_and(|v| v.trim().len() > "YYYY-MM-DD".len()) {
                errors.push(CellError::new(
                    row,
                    format!(
                        "column {name}: cannot parse {:?} as DATE",
                        shorten(v.unwrap_or_default())
                    ),
                ));
            }
        }
    }
    if typed.null_count() != values.null_count() {
        for row in 0..values.len() {
            if values.is_valid(row) && typed.is_null(row) {
                errors.push(CellError::new(
                    row,
                    format!(
                        "column {name}: cannot parse {:?} as {ty}",
                        shorten(values.value(row))
                    ),
                ));
            }
        }
    }
    Ok(typed)
}

/// Arrow's vectorised cast of text to `ty`; a value that does not parse becomes NULL.
fn cast_text(values: &StringArray, ty: &ColumnType) -> Result<ArrayRef, arrow::error::ArrowError> {
    let options = CastOptions {
        safe: true,
        format_options: FormatOptions::default(),
    };
    if *ty != ColumnType::TimestampTz {
        return cast_with_options(values, &ty.arrow_type(), &options);
    }
    // Arrow parses text into a named zone ("UTC", the column's) only with its chrono-tz
    // feature, and fails the whole column without it. An offset zone needs no zone
    // database: "+00:00" reads text without an offset as UTC and applies the offsets
    // written, and its values are the same instants as "UTC"'s, so only the label changes.
    let at_utc = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    let typed = cast_with_options(values, &at_utc, &options)?;
    Ok(Arc::new(
        typed
            .as_primitive::<TimestampMicrosecondType>()
            .clone()
            .with_timezone("UTC"),
    ))
}

/// A STRUCT column from JSON objects (one per value, as text): each declared field is
/// typed like a column, so a field value that does not parse marks its row as bad, as at
/// the top level. A missing field or a JSON null is NULL; fields the struct does not
/// declare are left out and reported ([`Miss::NewField`]); a value that is not a JSON
/// object marks its row as bad.
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
                errors.push(CellError::new(row, message));
                None
            }
        };
        if let Some(o) = &object {
            let unknown = o
                .keys()
                .find(|k| !fields.iter().any(|f| f.name.eq_ignore_ascii_case(k)));
            if let Some(k) = unknown {
                errors.push(CellError {
                    kind: Miss::NewField,
                    ..CellError::new(row, format!("column {name}: new field {:?}", shorten(k)))
                });
            }
        }
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

/// A TIMESTAMP column whose values are all `YYYY-MM-DD HH:MM:SS[.ffffff]` (or with `T`),
/// parsed directly; `None` if any value is written otherwise (Arrow's cast then reads the
/// column, with all the formats it knows). The common case costs a third of Arrow's.
fn plain_timestamps(values: &StringArray) -> Option<TimestampMicrosecondArray> {
    let mut out = Vec::with_capacity(values.len());
    for v in values.iter() {
        out.push(match v {
            None => None,
            Some(v) => Some(plain_timestamp(v.as_bytes())?),
        });
    }
    Some(TimestampMicrosecondArray::from(out))
}

/// A DATE column whose values are all `YYYY-MM-DD`, parsed directly; `None` otherwise
/// (Arrow's cast then reads it, and refuses timestamps, see [`type_column`]).
fn plain_dates(values: &StringArray) -> Option<Date32Array> {
    let mut out = Vec::with_capacity(values.len());
    for v in values.iter() {
        out.push(match v {
            None => None,
            Some(v) => Some(i32::try_from(plain_date(v.as_bytes())?).ok()?),
        });
    }
    Some(Date32Array::from(out))
}

/// Days since the epoch of `YYYY-MM-DD`; `None` if not in that form or not a real date.
fn plain_date(b: &[u8]) -> Option<i64> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(b, 0, 4)?, digits(b, 5, 7)?, digits(b, 8, 10)?);
    (day >= 1 && day <= days_in_month(year, month)?).then(|| days_from_civil(year, month, day))
}

/// The number written in `b[from..to]`, digits only.
fn digits(b: &[u8], from: usize, to: usize) -> Option<i64> {
    b[from..to].iter().try_fold(0i64, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    Some(match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    })
}

/// Microseconds since the epoch of a plain timestamp; `None` if not in that form or not a
/// real date and time.
fn plain_timestamp(b: &[u8]) -> Option<i64> {
    if !(b.len() == 19 || (21..=26).contains(&b.len())) {
        return None;
    }
    let separators = (b[10] == b' ' || b[10] == b'T') && b[13] == b':' && b[16] == b':';
    if !separators || (b.len() > 19 && b[19] != b'.') {
        return None;
    }
    let days = plain_date(&b[..10])?;
    let (hour, minute, second) = (digits(b, 11, 13)?, digits(b, 14, 16)?, digits(b, 17, 19)?);
    let micros = if b.len() > 19 {
        digits(b, 20, b.len())? * 10i64.pow(26 - b.len() as u32)
    } else {
        0
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
                errors.push(CellError::new(row, message));
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
    type_column("", ty, values.clone(), &mut errors).is_ok()
        && !errors.iter().any(CellError::is_bad)
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
    fn plain_timestamps_parse_as_arrows_cast_does() {
        let mut inputs: Vec<String> = [
            "1970-01-01 00:00:00",
            "1969-12-31 23:59:59.999999",
            "0001-01-01 00:00:00",
            "9999-12-31T23:59:59.5",
            "2000-02-29 12:00:00",
            "1900-02-29 12:00:00",
            "2023-02-29 12:00:00",
            "2024-04-31 00:00:00",
            "2024-13-01 00:00:00",
            "2024-00-10 00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 23:60:00",
            "2024-01-01 23:59:60",
            "2024-01-01 10:00:00.",
            "2024-01-01 10:00:00.1234567",
            "2024-1-01 10:00:00",
            "2024-01-01  10:00:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every day of four centuries, at a time that walks through hours, minutes, seconds
        // and fractions.
        let mut x: u64 = 7;
        for day in 0..146_097i64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let (h, m, s, f) = (x % 24, (x >> 8) % 60, (x >> 16) % 60, (x >> 24) % 1_000_000);
            let date = arrow::array::types::Date32Type::to_naive_date_opt(
                i32::try_from(day - 25_567).expect("days"),
            )
            .expect("a date from 1900 on");
            let digits = (x >> 44) % 7;
            let frac = if digits == 0 {
                String::new()
            } else {
                format!(".{:06}", f)[..1 + digits as usize].to_string()
            };
            inputs.push(format!("{date} {h:02}:{m:02}:{s:02}{frac}"));
        }
        let options = CastOptions::default();
        let target = ColumnType::Timestamp.arrow_type();
        let fixed = 17;
        for (i, input) in inputs.iter().enumerate() {
            let text = StringArray::from(vec![input.as_str()]);
            let arrow = cast_with_options(&text, &target, &options).expect("cast");
            let arrow = arrow
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("ts");
            let ours = plain_timestamp(input.as_bytes());
            if let Some(ours) = ours {
                assert!(arrow.is_valid(0), "{input}: Arrow refuses, ours {ours}");
                assert_eq!(ours, arrow.value(0), "{input}");
            } else {
                assert!(
                    i < fixed,
                    "{input}: a plain timestamp the fast path refused"
                );
            }
        }
        let date_target = ColumnType::Date.arrow_type();
        for (i, input) in inputs.iter().enumerate() {
            let date = input.get(..10).unwrap_or(input);
            let text = StringArray::from(vec![date]);
            let arrow = cast_with_options(&text, &date_target, &options).expect("cast");
            let arrow = arrow.as_any().downcast_ref::<Date32Array>().expect("date");
            match plain_date(date.as_bytes()) {
                Some(ours) => assert_eq!(
                    Some(ours),
                    arrow.is_valid(0).then(|| i64::from(arrow.value(0))),
                    "{date}"
                ),
                None => assert!(i < fixed, "{date}: a plain date the fast path refused"),
            }
        }
        // The fast path takes the common forms (the rest goes to Arrow's cast).
        assert!(plain_timestamp(b"2026-11-26 10:00:00.25").is_some());
        assert!(plain_timestamp(b"2024-01-01 10:00:00.1234567").is_none());
        assert!(plain_timestamp(b"2023-02-29 12:00:00").is_none());
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
    fn timestamptz_reads_offsets_and_takes_text_without_one_as_utc() {
        let schema = TableSchema::new(vec![Column::new("at", ColumnType::TimestampTz)]);
        let values = StringArray::from(vec![
            Some("2026-11-30 01:02:03.25+00:00"),
            Some("2026-11-30T03:02:03.25+02:00"),
            Some("2026-11-30T01:02:03.25Z"),
            Some("2026-11-30 01:02:03.25"),
            None,
            Some("yesterday"),
        ]);
        let (typed, errors) = type_columns(vec![values], &schema).expect("casts");
        assert_eq!(typed[0].data_type(), &ColumnType::TimestampTz.arrow_type());
        let typed = typed[0].as_primitive::<TimestampMicrosecondType>();
        let want = 1_796_000_523_250_000; // 2026-11-30 01:02:03.25 UTC
        for row in 0..4 {
            assert_eq!(typed.value(row), want, "row {row}");
        }
        assert!(typed.is_null(4) && typed.is_null(5));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].row, 5);
        assert!(
            errors[0].message.contains("as TIMESTAMPTZ"),
            "{:?}",
            errors[0]
        );
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
