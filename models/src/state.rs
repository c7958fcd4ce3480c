//! The models' own state, beside the data in the `_sluice` schema:
//! - `_sluice.models`: per model, the hash of the SQL it was built from and its watermark
//!   (the last `_sluice_batch` it has consumed), written in the same transaction as the
//!   model's rows;
//! - `_sluice.test_results`: the latest result of every data test.

use duckdb::{params, Connection, OptionalExt};

use crate::error::{DuckdbContext, Result};

const DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS _sluice;
CREATE TABLE IF NOT EXISTS _sluice.models (
    name VARCHAR PRIMARY KEY,
    materialized VARCHAR NOT NULL,
    sql_hash VARCHAR NOT NULL,
    watermark BIGINT NOT NULL,
    rows_written BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    last_run_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS _sluice.test_results (
    model VARCHAR NOT NULL,
    test VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    failures BIGINT NOT NULL,
    batch_id BIGINT NOT NULL,
    run_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model, test)
);
"#;

/// Creates the models' state tables if missing.
pub fn ensure(conn: &Connection) -> Result<()> {
    conn.execute_batch(DDL).ctx("*", || {
        "creating _sluice.models and _sluice.test_results".into()
    })
}

/// What `_sluice.models` says about one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelState {
    pub sql_hash: String,
    pub watermark: i64,
}

pub fn load(conn: &Connection, model: &str) -> Result<Option<ModelState>> {
    conn.query_row(
        "SELECT sql_hash, watermark FROM _sluice.models WHERE name = ?",
        params![model],
        |r| {
            Ok(ModelState {
                sql_hash: r.get(0)?,
                watermark: r.get(1)?,
            })
        },
    )
    .optional()
    .ctx(model, || "reading its watermark".into())
}

/// A model's last successful build as `_sluice.models` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBuild {
    pub watermark: i64,
    pub rows: u64,
    pub duration_ms: u64,
    /// When it ran (epoch µs).
    pub at_us: i64,
}

pub fn stored_build(conn: &Connection, model: &str) -> Result<Option<StoredBuild>> {
    conn.query_row(
        "SELECT watermark, rows_written, duration_ms, epoch_us(last_run_at) \
         FROM _sluice.models WHERE name = ?",
        params![model],
        |r| {
            Ok(StoredBuild {
                watermark: r.get(0)?,
                rows: r.get::<_, i64>(1)?.max(0) as u64,
                duration_ms: r.get::<_, i64>(2)?.max(0) as u64,
                at_us: r.get(3)?,
            })
        },
    )
    .optional()
    .ctx(model, || "reading its last build".into())
}

/// The latest result of each of `model`'s data tests: (test, severity, failing rows).
pub fn stored_tests(conn: &Connection, model: &str) -> Result<Vec<(String, String, u64)>> {
    let mut stmt = conn
        .prepare(
            "SELECT test, severity, failures FROM _sluice.test_results \
             WHERE model = ? ORDER BY test",
        )
        .ctx(model, || "reading its test results".into())?;
    let rows = stmt
        .query_map(params![model], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .ctx(model, || "reading its test results".into())?;
    Ok(rows)
}

/// Records a successful build (inside the build's transaction).
pub fn record(
    conn: &Connection,
    model: &str,
    materialized: &str,
    state: &ModelState,
    rows: u64,
    duration_ms: u64,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO _sluice.models \
         (name, materialized, sql_hash, watermark, rows_written, duration_ms, last_run_at) \
         VALUES (?, ?, ?, ?, ?, ?, now())",
        params![
            model,
            materialized,
            state.sql_hash,
            state.watermark,
            rows as i64,
            duration_ms as i64
        ],
    )
    .map(|_| ())
    .ctx(model, || "recording its watermark".into())
}

/// The newest committed batch.
pub fn last_batch(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT coalesce(max(batch_id), 0) FROM _sluice.batches",
        [],
        |r| r.get(0),
    )
    .ctx("*", || "reading the last batch id".into())
}

/// Whether any of `tables` received a batch after `watermark`.
pub fn has_new_batches<'a>(
    conn: &Connection,
    model: &str,
    tables: impl IntoIterator<Item = &'a String>,
    watermark: i64,
) -> Result<bool> {
    let found = over_batches(conn, "count(*) > 0", "batch_id > ?", tables, watermark)
        .ctx(model, || "looking for new batches".into())?;
    Ok(found.unwrap_or(false))
}

/// When the newest batch of `tables` at or below `watermark` was committed (epoch µs).
pub fn newest_consumed<'a>(
    conn: &Connection,
    model: &str,
    tables: impl IntoIterator<Item = &'a String>,
    watermark: i64,
) -> Result<Option<i64>> {
    over_batches::<Option<i64>>(
        conn,
        "epoch_us(max(committed_at))",
        "batch_id <= ?",
        tables,
        watermark,
    )
    .map(Option::flatten)
    .ctx(model, || "reading its freshness".into())
}

/// `SELECT <select> FROM _sluice.batches WHERE <batch_filter> AND table_name IN (tables)`,
/// the filter bound to `watermark`; `None` without tables.
fn over_batches<'a, T: duckdb::types::FromSql>(
    conn: &Connection,
    select: &str,
    batch_filter: &str,
    tables: impl IntoIterator<Item = &'a String>,
    watermark: i64,
) -> duckdb::Result<Option<T>> {
    let tables: Vec<&String> = tables.into_iter().collect();
    if tables.is_empty() {
        return Ok(None);
    }
    let list = vec!["?"; tables.len()].join(", ");
    let sql = format!(
        "SELECT {select} FROM _sluice.batches WHERE {batch_filter} AND table_name IN ({list})"
    );
    let mut args: Vec<&dyn duckdb::ToSql> = vec![&watermark];
    args.extend(tables.iter().map(|t| *t as &dyn duckdb::ToSql));
    conn.query_row(&sql, args.as_slice(), |r| r.get(0))
        .map(Some)
}

/// Whether `schema.name` exists as a table or view.
pub fn relation_exists(conn: &Connection, schema: &str, name: &str) -> Result<bool> {
    relation_kind(conn, schema, name).map(|k| k.is_some())
}

/// `BASE TABLE`, `VIEW`, ... or `None` if `schema.name` does not exist.
pub fn relation_kind(conn: &Connection, schema: &str, name: &str) -> Result<Option<String>> {
    conn.query_row(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        params![schema, name],
        |r| r.get(0),
    )
    .optional()
    .ctx(name, || "checking whether it exists".into())
}
