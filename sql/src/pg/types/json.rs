//! Nested values (LIST, ARRAY, STRUCT, MAP, UNION) as JSON text: what a BI tool or
//! pandas can read without knowing DuckDB's types. Scalars inside use the text format,
//! quoted where JSON needs a string.

use std::fmt::Write;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use bytes::BytesMut;
use pgwire::api::Type;

use super::text;

/// Appends `array[row]` as JSON to `out`.
pub fn value(out: &mut String, array: &dyn Array, row: usize) -> Result<(), String> {
    if array.is_null(row) || *array.data_type() == DataType::Null {
        out.push_str("null");
        return Ok(());
    }
    match array.data_type() {
        DataType::List(_) => items(out, &array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => items(out, &array.as_list::<i64>().value(row)),
        DataType::FixedSizeList(_, _) => items(out, &array.as_fixed_size_list().value(row)),
        DataType::Struct(fields) => {
            let s = array.as_struct();
            out.push('{');
            for (i, (field, child)) in fields.iter().zip(s.columns()).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(out, field.name());
                out.push(':');
                value(out, child.as_ref(), row)?;
            }
            out.push('}');
            Ok(())
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            out.push('{');
            for i in 0..entries.len() {
                if i > 0 {
                    out.push(',');
                }
                let mut key = BytesMut::new();
                text::value(&mut key, entries.column(0).as_ref(), i, &Type::TEXT)?;
                string(out, &String::from_utf8_lossy(&key));
                out.push(':');
                value(out, entries.column(1).as_ref(), i)?;
            }
            out.push('}');
            Ok(())
        }
        DataType::Union(_, _) => {
            let u = array.as_union();
            let child = u.child(u.type_id(row));
            value(out, child.as_ref(), u.value_offset(row))
        }
        _ => scalar(out, array, row),
    }
}

fn items(out: &mut String, list: &dyn Array) -> Result<(), String> {
    out.push('[');
    for i in 0..list.len() {
        if i > 0 {
            out.push(',');
        }
        value(out, list, i)?;
    }
    out.push(']');
    Ok(())
}

/// A scalar: numbers and booleans bare, everything else a string.
fn scalar(out: &mut String, array: &dyn Array, row: usize) -> Result<(), String> {
    let mut buf = BytesMut::new();
    text::value(&mut buf, array, row, &Type::TEXT)?;
    let s = String::from_utf8_lossy(&buf);
    let number = array.data_type().is_numeric() && s.parse::<f64>().is_ok_and(f64::is_finite);
    match array.data_type() {
        DataType::Boolean => out.push_str(if &*s == "t" { "true" } else { "false" }),
        _ if number => out.push_str(&s),
        _ => string(out, &s),
    }
    Ok(())
}

/// A JSON string literal.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
