//! A raw table's schema changing inside a commit's transaction: `ALTER TABLE` for each new
//! column and each widened type, and a row per change in `_sluice.schema_changes`. The
//! caller owns the transaction, so the change commits with the batch that brought it, or
//! neither does.

use duckdb::{params, Connection};
use sluice_core::{quote_ident, Chunk, ColumnType, Ident, SchemaChange};

use crate::{error::DuckdbContext, ledger::position_json, Result, StateError};

/// Where one batch's schema changes are applied.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub schema: &'a Ident,
    pub table: &'a Ident,
    pub batch_id: i64,
    /// The commit's time as a `TIMESTAMPTZ` literal.
    pub stamp: &'a str,
}

/// Largest integer magnitude a DOUBLE holds exactly (2^53).
const DOUBLE_EXACT: &str = "9007199254740992";

/// Applies `changes` to the table and records them; returns them as applied. A column of
/// integers or decimals holding values a `DOUBLE` would not hold exactly (beyond 2^53, or
/// more than 15 digits) is not widened to `DOUBLE`: the commit fails with
/// [`StateError::ChangeRefused`] naming the column, which quarantines the file that brought
/// the change (a Kafka batch stops the daemon with that error); no stored value is altered.
pub fn apply(
    tx: &Connection,
    at: Target<'_>,
    changes: &[SchemaChange],
    chunks: &[Chunk],
) -> Result<Vec<SchemaChange>> {
    let name = format!("{}.{}", at.schema, at.table);
    let qualified = format!("{}.{}", at.schema.quoted(), at.table.quoted());
    let mut applied = Vec::with_capacity(changes.len());
    for change in changes {
        let change = change.clone();
        let column = quote_ident(&change.column);
        sluice_core::fault::point("schema.before_alter");
        let sql = match &change.old {
            None => format!("ALTER TABLE {qualified} ADD COLUMN {column} {}", change.new),
            Some(old) => {
                for (path, exact) in rounded_paths(&column, old, &change.new) {
                    refuse_inexact(tx, &qualified, &path, &exact)?;
                }
                format!(
                    "ALTER TABLE {qualified} ALTER COLUMN {column} TYPE {}",
                    change.new
                )
            }
        };
        tx.execute_batch(&sql).ctx(|| {
            format!(
                "changing column {} of {name} ({} -> {})",
                change.column,
                change.old.as_ref().map_or("new".into(), |t| t.to_string()),
                change.new
            )
        })?;
        sluice_core::fault::point("schema.after_alter");
        record(tx, at, &change, chunks)?;
        applied.push(change);
    }
    Ok(applied)
}

/// The values (a column, or a field of a struct column, as SQL) that widening `old` to
/// `new` turns from an exact type a `DOUBLE` may not hold exactly (`BIGINT`, `UBIGINT`,
/// `DECIMAL` of more than 15 digits) into a floating one, each with its exact type.
fn rounded_paths(path: &str, old: &ColumnType, new: &ColumnType) -> Vec<(String, ColumnType)> {
    use ColumnType::*;
    match (old, new) {
        (Struct(from), Struct(to)) => from
            .iter()
            .filter_map(|f| {
                let g = to.iter().find(|g| g.name.eq_ignore_ascii_case(&f.name))?;
                Some(rounded_paths(
                    &format!("{path}.{}", quote_ident(&f.name)),
                    &f.ty,
                    &g.ty,
                ))
            })
            .flatten()
            .collect(),
        (BigInt | UBigInt, Double | Float) => vec![(path.to_string(), old.clone())],
        (Decimal { precision, .. }, Double | Float) if *precision > 15 => {
            vec![(path.to_string(), old.clone())]
        }
        _ => Vec::new(),
    }
}

/// Fails ([`StateError::ChangeRefused`]) if a stored value of the column (of type `old`)
/// is not a DOUBLE without loss.
fn refuse_inexact(tx: &Connection, table: &str, column: &str, old: &ColumnType) -> Result<()> {
    let lost = match old {
        ColumnType::Decimal { .. } => {
            format!("TRY_CAST(TRY_CAST({column} AS DOUBLE) AS {old}) IS DISTINCT FROM {column}")
        }
        _ => format!("abs({column}::HUGEINT) > {DOUBLE_EXACT}"),
    };
    let sql = format!("SELECT count(*) FROM {table} WHERE {column} IS NOT NULL AND {lost}");
    let inexact: i64 = tx
        .query_row(&sql, [], |r| r.get(0))
        .ctx(|| format!("checking that {table}.{column} fits a DOUBLE"))?;
    match inexact {
        0 => Ok(()),
        n => Err(StateError::ChangeRefused {
            table: table.to_string(),
            detail: format!(
                "column {column} holds {n} values a DOUBLE would not hold exactly; it is not \
                 widened to DOUBLE (it stays {old})"
            ),
        }),
    }
}

/// The row of `_sluice.schema_changes`, with the position of the first chunk that carries
/// the change.
fn record(tx: &Connection, at: Target<'_>, change: &SchemaChange, chunks: &[Chunk]) -> Result<()> {
    let carrier = chunks
        .iter()
        .find(|c| {
            c.raw_columns
                .position(&change.column)
                .is_some_and(|i| Some(&c.raw_columns.columns[i].ty) != change.old.as_ref())
        })
        .or(chunks.first());
    tx.prepare_cached(
        "INSERT INTO _sluice.schema_changes VALUES (?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ))",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            at.table.as_str(),
            change.column,
            change.kind(),
            change.old.as_ref().map(|t| t.to_string()),
            change.new.to_string(),
            at.batch_id,
            carrier.map(|c| c.source.to_string()),
            carrier.map(|c| position_json(c).to_string()),
            at.stamp,
        ])
    })
    .ctx(|| format!("recording the change of {}.{}", at.table, change.column))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bigint_column_beyond_two_to_the_53_is_not_widened_to_double() {
        let conn = Connection::open_in_memory().expect("duckdb");
        crate::schema::ensure(&conn).expect("state");
        conn.execute_batch(
            "CREATE SCHEMA raw; CREATE TABLE raw.t (small BIGINT, big BIGINT);
             INSERT INTO raw.t VALUES (3, 9007199254740993), (-5, 1);",
        )
        .expect("table");
        let (schema, table) = (Ident::new("raw").unwrap(), Ident::new("t").unwrap());
        let to_double = |c: &str| SchemaChange {
            column: c.into(),
            old: Some(ColumnType::BigInt),
            new: ColumnType::Double,
        };
        let at = Target {
            schema: &schema,
            table: &table,
            batch_id: 7,
            stamp: "2026-01-01 00:00:00+00",
        };
        let applied = apply(&conn, at, &[to_double("small")], &[]).expect("apply");
        assert_eq!(applied[0].new, ColumnType::Double);
        let refused = apply(&conn, at, &[to_double("big")], &[]).expect_err("refused");
        let text = refused.to_string();
        assert!(
            matches!(refused, StateError::ChangeRefused { .. }),
            "{text}"
        );
        assert!(text.contains("big"), "{text}");
        let (big, ty): (i64, String) = conn
            .query_row(
                "SELECT big, typeof(big) FROM raw.t WHERE small = 3",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row");
        assert_eq!((big, ty.as_str()), (9007199254740993, "BIGINT"));
        let recorded: String = conn
            .query_row(
                "SELECT string_agg(column_name || ':' || change || ':' || old_type || '->' || new_type || '@' || batch_id, ' ' ORDER BY column_name) FROM _sluice.schema_changes",
                [],
                |r| r.get(0),
            )
            .expect("recorded");
        assert_eq!(recorded, "small:widen_column:BIGINT->DOUBLE@7");
        // A field of a struct likewise.
        conn.execute_batch(
            "CREATE TABLE raw.s (s STRUCT(a BIGINT)); INSERT INTO raw.s VALUES ({'a': 9007199254740993});",
        )
        .expect("struct table");
        let s = Ident::new("s").unwrap();
        let change = SchemaChange {
            column: "s".into(),
            old: Some("STRUCT(a BIGINT)".parse().expect("type")),
            new: "STRUCT(a DOUBLE)".parse().expect("type"),
        };
        let at = Target { table: &s, ..at };
        let refused = apply(&conn, at, &[change], &[]).expect_err("refused");
        assert!(refused.to_string().contains("\"a\""), "{refused}");
    }
}
