//! Parameter values from `Bind` as DuckDB values. Text parameters go to DuckDB as text
//! (it casts them to the type the statement needs, as Postgres does with `unknown`),
//! except bytea's `\x` hex; binary parameters are decoded by the type the client
//! declared.

use bytes::Bytes;
use duckdb::types::{TimeUnit, Value};
use pgwire::api::portal::Format;
use pgwire::api::Type;

use super::{text, PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use crate::gate::Refusal;

/// Every parameter of a `Bind`, in order.
pub fn decode(
    values: &[Option<Bytes>],
    format: &Format,
    types: &[Option<Type>],
) -> Result<Vec<Value>, Refusal> {
    if let Format::Individual(codes) = format {
        if codes.len() != values.len() {
            return Err(protocol(format!(
                "{} parameter formats given for {} parameters",
                codes.len(),
                values.len()
            )));
        }
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let ty = types.get(i).cloned().flatten().unwrap_or(Type::UNKNOWN);
            match v {
                None => Ok(Value::Null),
                Some(bytes) if format.is_binary(i) => binary(bytes, &ty),
                Some(bytes) => text_value(bytes, &ty),
            }
            .map_err(|e| Refusal {
                sqlstate: "22P02",
                message: format!("parameter ${}: {e}", i + 1),
            })
        })
        .collect()
}

fn text_value(bytes: &[u8], ty: &Type) -> Result<Value, String> {
    let s = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    if *ty == Type::BYTEA {
        if let Some(hex) = s.strip_prefix("\\x") {
            return unhex(hex).map(Value::Blob);
        }
    }
    Ok(Value::Text(s.to_string()))
}

fn binary(b: &[u8], ty: &Type) -> Result<Value, String> {
    let fixed = |n: usize| -> Result<&[u8], String> {
        (b.len() == n)
            .then_some(b)
            .ok_or_else(|| format!("{} bytes for a binary {ty}", b.len()))
    };
    let int = |n: usize| -> Result<i64, String> {
        let bytes = fixed(n)?;
        Ok(bytes
            .iter()
            .fold(if bytes[0] & 0x80 != 0 { -1i64 } else { 0 }, |acc, x| {
                (acc << 8) | i64::from(*x)
            }))
    };
    Ok(match *ty {
        Type::BOOL => Value::Boolean(fixed(1)?[0] != 0),
        Type::INT2 => Value::SmallInt(int(2)? as i16),
        Type::INT4 => Value::Int(int(4)? as i32),
        Type::INT8 => Value::BigInt(int(8)?),
        Type::OID => Value::UInt(int(4)? as u32),
        Type::FLOAT4 => Value::Float(f32::from_bits(int(4)? as u32)),
        Type::FLOAT8 => Value::Double(f64::from_bits(int(8)? as u64)),
        Type::DATE => Value::Date32(int(4)? as i32 + PG_EPOCH_DAYS),
        Type::TIME => Value::Time64(TimeUnit::Microsecond, int(8)?),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            Value::Timestamp(TimeUnit::Microsecond, int(8)? + PG_EPOCH_MICROS)
        }
        Type::BYTEA => Value::Blob(b.to_vec()),
        Type::UUID => {
            let h: String = fixed(16)?.iter().map(|x| format!("{x:02x}")).collect();
            Value::Text(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
        Type::NUMERIC => Value::Text(numeric(b)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
            Value::Text(
                std::str::from_utf8(b)
                    .map_err(|e| e.to_string())?
                    .to_string(),
            )
        }
        _ => {
            return Err(format!(
                "binary values of type {ty} are not supported; send it in text format"
            ))
        }
    })
}

/// Postgres's binary numeric as decimal text.
fn numeric(b: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        b.get(i..i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .ok_or_else(|| "a truncated numeric".to_string())
    };
    let (ndigits, weight, sign, dscale) = (word(0)?, word(2)? as i16, word(4)?, word(6)?);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits as usize)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<_, _>>()?;
    // value = sum(digit[i] * 10000^(weight - i)); as an unscaled integer at scale 4*k.
    let frac_groups = (i32::from(ndigits) - 1 - i32::from(weight)).max(0) as u32;
    let mut unscaled: i128 = 0;
    for d in &digits {
        unscaled = unscaled
            .checked_mul(10_000)
            .and_then(|u| u.checked_add(i128::from(*d)))
            .ok_or("a numeric too large")?;
    }
    let trailing = (i32::from(weight) - (i32::from(ndigits) - 1)).max(0) as u32;
    for _ in 0..trailing {
        unscaled = unscaled.checked_mul(10_000).ok_or("a numeric too large")?;
    }
    if sign == 0x4000 {
        unscaled = -unscaled;
    }
    let scale = (frac_groups * 4) as i8;
    let full = text::decimal(unscaled, scale);
    // Trim to the display scale.
    let keep = usize::from(dscale);
    Ok(match full.split_once('.') {
        Some((int, _)) if keep == 0 => int.to_string(),
        Some((int, frac)) => format!("{int}.{:0<keep$}", &frac[..frac.len().min(keep)]),
        None if keep > 0 => format!("{full}.{}", "0".repeat(keep)),
        None => full,
    })
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn protocol(message: String) -> Refusal {
    Refusal {
        sqlstate: "08P01",
        message,
    }
}
