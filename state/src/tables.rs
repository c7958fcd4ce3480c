//! Tables as the database has them: raw tables (`<raw_schema>.<table>`, one per source
//! table, holding the data columns and sluice's provenance columns), the tables of a
//! schema, and whether a relation exists.
//!
//! A raw table is created on its first batch. A later batch may bring new columns and wider
//! types ([`evolve`] applies them in its commit); rows are written in the table's order, so
//! a column added by `ALTER TABLE ... ADD COLUMN` (placed last by DuckDB) works.

pub mod evolve;

use duckdb::{params, Connection};
use sluice_core::{quote_ident, Column, ColumnType, Ident, SchemaChange, TableSchema};

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

/// Creates `schema.table` with `columns` unless it exists. Returns the table's columns,
/// in the table's order.
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
        Some(existing) => Ok(existing),
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

/// The data columns a source writes to `schema.table`: the existing table's (sluice's
/// own aside), each widened to its declared type and with the declared columns it lacks
/// added, in the declaration's order, with the changes that takes (made with the first
/// batch); the declared ones for a new table; the existing table's without a declaration;
/// `None` for a new table without one (its columns are inferred). A column the declaration
/// no longer has stays in the table (NULL in new rows); none ever narrows.
pub fn data_columns(
    conn: &Connection,
    schema: &Ident,
    table: &Ident,
    declared: Option<TableSchema>,
) -> Result<(Option<TableSchema>, Vec<SchemaChange>)> {
    let existing = describe(conn, schema, table)?.map(|s| {
        TableSchema::new(
            s.columns
                .into_iter()
                .filter(|c| !sluice_core::meta::is_reserved(&c.name))
                .collect(),
        )
    });
    Ok(match (declared, existing) {
        (Some(d), Some(e)) => {
            // The declaration's order (a file without a header is read by position),
            // with the table's wider types.
            let (evolved, changes) = e.evolve(&d);
            let columns = d
                .columns
                .iter()
                .map(|c| match evolved.position(&c.name) {
                    Some(i) => evolved.columns[i].clone(),
                    None => c.clone(),
                })
                .collect();
            (Some(TableSchema::new(columns)), changes)
        }
        (Some(d), None) => (Some(d), Vec::new()),
        (None, e) => (e, Vec::new()),
    })
}
