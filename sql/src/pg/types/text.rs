//! Values in Postgres's text format (what psql prints, and what most clients read by
//! default): `t`/`f`, ISO dates, `+00` on timestamptz, `\x` hex for bytea, Postgres's
//! interval style, JSON for nested values.

use std::fmt::Write;

use arrow::array::{
    Array, AsArray, BinaryArray, BinaryViewArray, BooleanArray, LargeBinaryArray, LargeStringArray,
    StringArray, StringViewArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate};
use pgwire::api::Type;

use super::json;

/// Appends the text of `array[row]` (not NULL).
pub fn value(buf: &mut BytesMut, array: &dyn Array, row: usize, pg: &Type) -> Result<(), String> {
    if *pg == Type::JSON
        && !matches!(
            array.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )
    {
        let mut s = String::new();
        json::value(&mut s, array, row)?;
        buf.put_slice(s.as_bytes());
        return Ok(());
    }
    let w = &mut Out(buf);
    let r = match array.data_type() {
        DataType::Boolean => {
            let v = array
                .as_any()
                .downcast_ref::<BooleanArray>()
                .map(|a| a.value(row));
            w.0.put_u8(if v == Some(true) { b't' } else { b'f' });
            Ok(())
        }
        DataType::Int8 => write!(w, "{}", array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => write!(w, "{}", array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => write!(w, "{}", array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write!(w, "{}", array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => write!(w, "{}", array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => write!(w, "{}", array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => write!(w, "{}", array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => write!(w, "{}", array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => float(
            w,
            f64::from(array.as_primitive::<Float32Type>().value(row)),
            true,
        ),
        DataType::Float64 => float(w, array.as_primitive::<Float64Type>().value(row), false),
        DataType::Decimal128(_, scale) => {
            w.0.put_slice(
                decimal(array.as_primitive::<Decimal128Type>().value(row), *scale).as_bytes(),
            );
            Ok(())
        }
        DataType::Utf8 => str_value(
            w,
            array
                .as_any()
                .downcast_ref::<StringArray>()
                .map(|a| a.value(row)),
        ),
        DataType::LargeUtf8 => str_value(
            w,
            array
                .as_any()
                .downcast_ref::<LargeStringArray>()
                .map(|a| a.value(row)),
        ),
        DataType::Utf8View => str_value(
            w,
            array
                .as_any()
                .downcast_ref::<StringViewArray>()
                .map(|a| a.value(row)),
        ),
        DataType::Binary => hex(
            w,
            array
                .as_any()
                .downcast_ref::<BinaryArray>()
                .map(|a| a.value(row)),
        ),
        DataType::LargeBinary => hex(
            w,
            array
                .as_any()
                .downcast_ref::<LargeBinaryArray>()
                .map(|a| a.value(row)),
        ),
        DataType::BinaryView => hex(
            w,
            array
                .as_any()
                .downcast_ref::<BinaryViewArray>()
                .map(|a| a.value(row)),
        ),
        DataType::Date32 => date(w, array.as_primitive::<Date32Type>().value(row)),
        DataType::Time64(TimeUnit::Microsecond) => {
            time(w, array.as_primitive::<Time64MicrosecondType>().value(row))
        }
        DataType::Time64(TimeUnit::Nanosecond) => time(
            w,
            array.as_primitive::<Time64NanosecondType>().value(row) / 1_000,
        ),
        DataType::Timestamp(unit, tz) => {
            let micros = timestamp_micros(array, row, unit);
            timestamp(w, micros, tz.is_some())
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            interval(w, v.months, v.days, v.nanoseconds / 1_000)
        }
        _ => {
            let options = FormatOptions::default();
            let formatter = ArrayFormatter::try_new(array, &options).map_err(|e| e.to_string())?;
            write!(w, "{}", formatter.value(row))
        }
    };
    r.map_err(|_| format!("cannot render a {} value", array.data_type()))
}

/// `fmt::Write` into the row buffer.
struct Out<'a>(&'a mut BytesMut);

impl Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

fn str_value(w: &mut Out, v: Option<&str>) -> std::fmt::Result {
    w.write_str(v.ok_or(std::fmt::Error)?)
}

/// `\x` and two hex digits per byte (Postgres's default `bytea_output`).
fn hex(w: &mut Out, v: Option<&[u8]>) -> std::fmt::Result {
    let v = v.ok_or(std::fmt::Error)?;
    w.write_str("\\x")?;
    v.iter().try_for_each(|b| write!(w, "{b:02x}"))
}

/// Postgres spells the special values `NaN`, `Infinity`, `-Infinity`; the shortest text
/// that reads back as the same number otherwise (its default since version 12).
fn float(w: &mut Out, v: f64, single: bool) -> std::fmt::Result {
    if v.is_nan() {
        w.write_str("NaN")
    } else if v.is_infinite() {
        w.write_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else if single {
        write!(w, "{}", v as f32)
    } else {
        write!(w, "{v}")
    }
}

/// An unscaled integer with `scale` decimal places, as `-123.4500`.
pub fn decimal(v: i128, scale: i8) -> String {
    let digits = v.unsigned_abs().to_string();
    let sign = if v < 0 { "-" } else { "" };
    if scale <= 0 {
        return format!(
            "{sign}{digits}{}",
            "0".repeat(scale.unsigned_abs() as usize)
        );
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

fn date(w: &mut Out, days: i32) -> std::fmt::Result {
    let d = NaiveDate::from_num_days_from_ce_opt(days + 719_163).ok_or(std::fmt::Error)?;
    write!(w, "{}", d.format("%Y-%m-%d"))
}

fn time(w: &mut Out, micros: i64) -> std::fmt::Result {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    write!(
        w,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )?;
    fraction(w, frac)
}

/// `.ffffff` without trailing zeros; nothing for whole seconds.
fn fraction(w: &mut Out, micros: i64) -> std::fmt::Result {
    if micros == 0 {
        return Ok(());
    }
    let text = format!("{micros:06}");
    write!(w, ".{}", text.trim_end_matches('0'))
}

pub fn timestamp_micros(array: &dyn Array, row: usize, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .value(row)
            .saturating_mul(1_000_000),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .value(row)
            .saturating_mul(1_000),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000,
    }
}

/// `2024-05-01 12:00:00.5` (`+00` appended for timestamptz: sessions run in UTC).
fn timestamp(w: &mut Out, micros: i64, zoned: bool) -> std::fmt::Result {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let t = DateTime::from_timestamp(secs, 0).ok_or(std::fmt::Error)?;
    write!(w, "{}", t.naive_utc().format("%Y-%m-%d %H:%M:%S"))?;
    fraction(w, frac)?;
    if zoned {
        w.write_str("+00")?;
    }
    Ok(())
}

/// Postgres's `IntervalStyle = postgres`: `1 year 2 mons 3 days 04:05:06.5`.
fn interval(w: &mut Out, months: i32, days: i32, micros: i64) -> std::fmt::Result {
    let mut parts = Vec::new();
    let (years, months) = (months / 12, months % 12);
    for (n, one, many) in [
        (years, "year", "years"),
        (months, "mon", "mons"),
        (days, "day", "days"),
    ] {
        if n != 0 {
            parts.push(format!("{n} {}", if n.abs() == 1 { one } else { many }));
        }
    }
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let abs = micros.unsigned_abs();
        let secs = abs / 1_000_000;
        let mut t = format!(
            "{sign}{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        let frac = abs % 1_000_000;
        if frac != 0 {
            let f = format!("{frac:06}");
            t.push('.');
            t.push_str(f.trim_end_matches('0'));
        }
        parts.push(t);
    }
    w.write_str(&parts.join(" "))
}
