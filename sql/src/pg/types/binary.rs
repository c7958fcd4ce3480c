//! Values in Postgres's binary format (what JDBC switches to after `prepareThreshold`
//! executions, and what psycopg sends and reads with `binary=True`): big-endian integers
//! and floats, dates and times counted from 2000-01-01, numeric in base-10000 digits,
//! uuid as 16 bytes. Types sluice announces as text or json are their UTF-8 bytes.

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use bytes::{BufMut, BytesMut};
use pgwire::api::Type;

use super::{text, PG_EPOCH_DAYS, PG_EPOCH_MICROS};

/// Appends the binary form of `array[row]` (not NULL) as type `pg`.
pub fn value(buf: &mut BytesMut, array: &dyn Array, row: usize, pg: &Type) -> Result<(), String> {
    match (array.data_type(), pg) {
        (DataType::Boolean, _) => {
            let v = array
                .as_any()
                .downcast_ref::<BooleanArray>()
                .is_some_and(|a| a.value(row));
            buf.put_u8(u8::from(v));
        }
        (DataType::Int8, _) => buf.put_i16(i16::from(array.as_primitive::<Int8Type>().value(row))),
        (DataType::UInt8, _) => {
            buf.put_i16(i16::from(array.as_primitive::<UInt8Type>().value(row)))
        }
        (DataType::Int16, _) => buf.put_i16(array.as_primitive::<Int16Type>().value(row)),
        (DataType::UInt16, _) => {
            buf.put_i32(i32::from(array.as_primitive::<UInt16Type>().value(row)))
        }
        (DataType::Int32, _) => buf.put_i32(array.as_primitive::<Int32Type>().value(row)),
        (DataType::UInt32, _) => {
            buf.put_i64(i64::from(array.as_primitive::<UInt32Type>().value(row)))
        }
        (DataType::Int64, _) => buf.put_i64(array.as_primitive::<Int64Type>().value(row)),
        (DataType::UInt64, _) => numeric(
            buf,
            i128::from(array.as_primitive::<UInt64Type>().value(row)),
            0,
        ),
        (DataType::Float32, _) => buf.put_f32(array.as_primitive::<Float32Type>().value(row)),
        (DataType::Float64, _) => buf.put_f64(array.as_primitive::<Float64Type>().value(row)),
        (DataType::Decimal128(_, scale), _) => numeric(
            buf,
            array.as_primitive::<Decimal128Type>().value(row),
            *scale,
        ),
        (DataType::Date32, _) => {
            buf.put_i32(array.as_primitive::<Date32Type>().value(row) - PG_EPOCH_DAYS)
        }
        (DataType::Time64(TimeUnit::Microsecond), _) => {
            buf.put_i64(array.as_primitive::<Time64MicrosecondType>().value(row))
        }
        (DataType::Time64(TimeUnit::Nanosecond), _) => {
            buf.put_i64(array.as_primitive::<Time64NanosecondType>().value(row) / 1_000)
        }
        (DataType::Timestamp(unit, _), _) => {
            buf.put_i64(text::timestamp_micros(array, row, unit) - PG_EPOCH_MICROS)
        }
        (DataType::Interval(IntervalUnit::MonthDayNano), _) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            buf.put_i64(v.nanoseconds / 1_000);
            buf.put_i32(v.days);
            buf.put_i32(v.months);
        }
        (_, &Type::UUID) => {
            let mut s = BytesMut::new();
            text::value(&mut s, array, row, pg)?;
            uuid(buf, &s)?;
        }
        (DataType::Binary | DataType::LargeBinary | DataType::BinaryView, _) => {
            match array.data_type() {
                DataType::Binary => buf.put_slice(array.as_binary::<i32>().value(row)),
                DataType::LargeBinary => buf.put_slice(array.as_binary::<i64>().value(row)),
                _ => buf.put_slice(array.as_binary_view().value(row)),
            }
        }
        // text, json, and everything sluice announces as text: the text is the value.
        _ => text::value(buf, array, row, pg)?,
    }
    Ok(())
}

/// `8-4-4-4-12` hex as 16 bytes.
fn uuid(buf: &mut BytesMut, text: &[u8]) -> Result<(), String> {
    let digits: Vec<u8> = text.iter().copied().filter(|c| *c != b'-').collect();
    if digits.len() != 32 {
        return Err(format!("not a uuid: {}", String::from_utf8_lossy(text)));
    }
    for pair in digits.chunks(2) {
        let s = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
        buf.put_u8(u8::from_str_radix(s, 16).map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// Postgres's binary numeric: digit count, weight (of the first base-10000 digit), sign,
/// display scale, then the base-10000 digits, most significant first.
pub fn numeric(buf: &mut BytesMut, unscaled: i128, scale: i8) {
    const NEG: u16 = 0x4000;
    let dscale = scale.max(0) as u16;
    // Make the number of fractional decimal digits a multiple of 4, so base-10000 digits
    // split at the decimal point.
    let mut magnitude = unscaled.unsigned_abs();
    let mut frac_digits = i32::from(scale);
    if frac_digits < 0 {
        magnitude *= 10u128.pow(frac_digits.unsigned_abs());
        frac_digits = 0;
    }
    while frac_digits % 4 != 0 {
        magnitude *= 10;
        frac_digits += 1;
    }
    let mut groups = Vec::new();
    while magnitude > 0 {
        groups.push((magnitude % 10_000) as u16);
        magnitude /= 10_000;
    }
    groups.reverse();
    let frac_groups = (frac_digits / 4) as i16;
    let mut weight = groups.len() as i16 - 1 - frac_groups;
    // Postgres strips zero groups at both ends (the weight keeps the position).
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i16;
    if groups.is_empty() {
        weight = 0;
    }
    buf.put_u16(groups.len() as u16);
    buf.put_i16(weight);
    buf.put_u16(if unscaled < 0 && !groups.is_empty() {
        NEG
    } else {
        0
    });
    buf.put_u16(dscale);
    groups.iter().for_each(|g| buf.put_u16(*g));
}
