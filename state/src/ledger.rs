//! The ledger: `_sluice.batches`, `_sluice.offsets`, `_sluice.positions` and
//! `_sluice.dead_letters`; what a
//! commit records beside its rows (in its transaction), and what others read back: the
//! last batch, the batches of some tables since a watermark, the stored Kafka offsets,
//! the Parquet files.

mod record;

use std::collections::HashMap;

use duckdb::{params, Connection};

use crate::{error::DuckdbContext, Result};

pub use record::{
    position_json, record_batch, record_dead_letters, record_files, record_offsets,
    record_positions,
};

/// The highest committed batch id (0 before the first commit).
pub fn last_batch_id(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT coalesce(max(batch_id), 0) FROM _sluice.batches",
        [],
        |r| r.get(0),
    )
    .ctx(|| "reading the last batch id".into())
}

/// Parquet files the ledger records, relative to the Parquet root.
pub fn ledger_parquet_files(conn: &Connection) -> Result<Vec<String>> {
    let context = || "reading Parquet files from the ledger".to_string();
    let mut stmt = conn
        .prepare("SELECT parquet_file FROM _sluice.batches WHERE parquet_file IS NOT NULL")
        .ctx(context)?;
    let rows = stmt.query_map([], |r| r.get(0)).ctx(context)?;
    rows.collect::<duckdb::Result<_>>().ctx(context)
}

/// The stored offsets of a Kafka source: (topic, partition) -> next offset.
pub fn offsets_of(conn: &Connection, source: &str) -> Result<HashMap<(String, i32), i64>> {
    let context = || format!("reading _sluice.offsets for source {source}");
    let mut stmt = conn
        .prepare("SELECT topic, \"partition\", next_offset FROM _sluice.offsets WHERE source = ?")
        .ctx(context)?;
    let rows = stmt
        .query_map(params![source], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .ctx(context)?;
    rows.collect::<duckdb::Result<_>>().ctx(context)
}

/// Whether any of `tables` received a batch after `watermark`.
pub fn has_new_batches<'a>(
    conn: &Connection,
    tables: impl IntoIterator<Item = &'a String>,
    watermark: i64,
) -> Result<bool> {
    let found = over_batches(conn, "count(*) > 0", "batch_id > ?", tables, watermark)
        .ctx(|| format!("looking for batches after {watermark}"))?;
    Ok(found.unwrap_or(false))
}

/// When the newest batch of `tables` at or below `watermark` was committed (epoch µs).
pub fn newest_consumed<'a>(
    conn: &Connection,
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
    .ctx(|| format!("reading when batch {watermark} was committed"))
}

/// `SELECT <select> FROM _sluice.batches WHERE <batch_filter> AND table_name IN (tables)`,
/// the filter bound to `watermark`; `None` without tables.
pub(crate) fn over_batches<'a, T: duckdb::types::FromSql>(
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

/// The stored positions of a keyed source: key -> next position.
pub fn positions_of(conn: &Connection, source: &str) -> Result<HashMap<String, i64>> {
    let context = || format!("reading _sluice.positions for source {source}");
    let mut stmt = conn
        .prepare("SELECT key, next FROM _sluice.positions WHERE source = ?")
        .ctx(context)?;
    let rows = stmt
        .query_map(params![source], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx(context)?;
    rows.collect::<duckdb::Result<_>>().ctx(context)
}
