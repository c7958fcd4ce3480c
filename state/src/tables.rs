//! Tables as the database has them: raw tables (`<raw_schema>.<table>`, one per source
//! table, holding the data columns and sluice's provenance columns), the tables of a
//! schema, and whether a relation exists.
//!
//! A raw table is created on its first batch; afterwards every batch must
//! have exactly the table's columns and types, so a schema change is an error rather than a
//! silently wrong table. The order may differ: rows are written in the table's order, so a
//! column an operator added with `ALTER TABLE ... ADD COLUMN` (placed last by DuckDB) works.

use duckdb::{params, Connection};
use sluice_core::{quote_ident, Column, ColumnType, Ident, TableSchema};

use crate::{error::DuckdbContext, Result, StateError};

/// The columns of `schema.table`, or `None` if it does not exist.
pub fn describe(conn: &Connection, schema: &Ident, table: &Ident) -> Result<Option<TableSchema>> {
    let context = || format!("describing {schema}.{table}");
    let mut stmt = conn
        .prepare(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        )
        .ctx(context)?;
    let rows: Vec<(String, String)> = stmt
        .query_map(params![schema.as_str(), table.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .ctx(context)?
        .collect::<duckdb::Result<_>>()
        .ctx(context)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut columns = Vec::with_capacity(rows.len());
    for (name, ty) in rows {
        let ty: ColumnType = ty.parse().map_err(|e| StateError::Schema {
            table: format!("{schema}.{table}"),
            detail: format!("column {name}: {e}"),
        })?;
        columns.push(Column::new(name, ty));
    }
    Ok(Some(TableSchema::new(columns)))
}

/// Creates `schema.table` with `columns` unless it exists; if it exists, checks that it has
/// exactly `columns` (in any order). Returns the table's columns, in the table's order.
pub fn ensure(
    conn: &Connection,
    schema: &Ident,
    table: &Ident,
    columns: &TableSchema,
) -> Result<TableSchema> {
    match describe(conn, schema, table)? {
        None => {
            create(conn, schema, table, columns)?;
            Ok(columns.clone())
        }
        Some(existing) => {
            check_same(&format!("{schema}.{table}"), &existing, columns)?;
            Ok(existing)
        }
    }
}

fn create(conn: &Connection, schema: &Ident, table: &Ident, columns: &TableSchema) -> Result<()> {
    let cols: Vec<String> = columns
        .columns
        .iter()
        .map(|c| format!("{} {}", quote_ident(&c.name), c.ty))
        .collect();
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema_q}; CREATE TABLE IF NOT EXISTS {schema_q}.{table_q} ({cols})",
        schema_q = schema.quoted(),
        table_q = table.quoted(),
        cols = cols.join(", ")
    );
    conn.execute_batch(&sql)
        .ctx(|| format!("creating {schema}.{table}"))
}

/// Checks that `wanted` has the table's `existing` columns and types, in any order; if not,
/// says how they differ.
pub fn check_same(table: &str, existing: &TableSchema, wanted: &TableSchema) -> Result<()> {
    if existing.same_columns(wanted) {
        return Ok(());
    }
    Err(StateError::Schema {
        table: table.to_string(),
        detail: format!(
            "the table has columns ({}) but the batch has ({}); sluice does not alter raw \
             tables: declare the table's columns, or rename the table",
            existing, wanted
        ),
    })
}

/// The names of the tables in `schema` (an empty set if it does not exist).
pub fn tables_in(conn: &Connection, schema: &str) -> Result<std::collections::BTreeSet<String>> {
    let context = || format!("listing the tables of {schema}");
    let mut stmt = conn
        .prepare("SELECT table_name FROM information_schema.tables WHERE table_schema = ?")
        .ctx(context)?;
    let rows = stmt.query_map([schema], |r| r.get(0)).ctx(context)?;
    rows.collect::<duckdb::Result<_>>().ctx(context)
}

/// Whether `schema.name` exists as a table or view.
pub fn relation_exists(conn: &Connection, schema: &str, name: &str) -> Result<bool> {
    relation_kind(conn, schema, name).map(|k| k.is_some())
}

/// `BASE TABLE`, `VIEW`, ... or `None` if `schema.name` does not exist.
pub fn relation_kind(conn: &Connection, schema: &str, name: &str) -> Result<Option<String>> {
    use duckdb::OptionalExt;
    conn.query_row(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        params![schema, name],
        |r| r.get(0),
    )
    .optional()
    .ctx(|| format!("checking whether {schema}.{name} exists"))
}

/// The data columns a source writes to `schema.table`: the declared ones, which must be
/// those of the existing table (sluice's own columns aside); else the existing table's;
/// `None` for a new table without a declaration (its columns are inferred).
pub fn data_columns(
    conn: &Connection,
    schema: &Ident,
    table: &Ident,
    declared: Option<TableSchema>,
) -> Result<Option<TableSchema>> {
    let existing = describe(conn, schema, table)?.map(|s| {
        TableSchema::new(
            s.columns
                .into_iter()
                .filter(|c| !sluice_core::meta::is_reserved(&c.name))
                .collect(),
        )
    });
    match (declared, existing) {
        (Some(d), Some(e)) if !d.same_columns(&e) => Err(StateError::Schema {
            table: format!("{schema}.{table}"),
            detail: format!(
                "the declared schema ({d}) differs from the existing raw table ({e}); \
                 sluice does not alter raw tables: restore the declaration or use a new table"
            ),
        }),
        (Some(d), _) => Ok(Some(d)),
        (None, e) => Ok(e),
    }
}
