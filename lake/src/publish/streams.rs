//! A shared source's streams in a range of batches (a Kafka partition of a consumer
//! group): where each ends, and how far the lake already holds it.

use sluice_core::{meta, quote_ident};

use super::*;

/// Whether the raw table has a shared source's stream and position columns.
pub(super) fn has_columns(columns: &TableSchema, shared: &SharedStreams) -> bool {
    let has = |c: &str| columns.position(c).is_some();
    has(meta::SOURCE) && has(shared.position_column) && shared.stream_columns.iter().all(|c| has(c))
}

/// One stream's rows in a range of batches.
pub(super) struct StreamEnds {
    /// The stream (its columns' values).
    pub(super) values: Vec<String>,
    /// The position of its first row there, and the position after its last.
    pub(super) first: i64,
    pub(super) next: i64,
}

/// The streams `source`'s rows in batches `lo..=hi` come from, with their ends.
pub(super) fn stream_ends(
    conn: &Connection,
    raw_schema: &Ident,
    table: &Ident,
    source: &str,
    shared: &SharedStreams,
    lo: i64,
    hi: i64,
) -> Result<Vec<StreamEnds>, LakeError> {
    let keys: Vec<String> = shared
        .stream_columns
        .iter()
        .map(|c| format!("CAST({} AS VARCHAR)", quote_ident(c)))
        .collect();
    let sql = format!(
        "SELECT {keys}, min({pos}), max({pos}) + 1 FROM {raw_schema}.{table} \
         WHERE {batch} BETWEEN ? AND ? AND {src} = ? GROUP BY ALL",
        keys = keys.join(", "),
        pos = quote_ident(shared.position_column),
        batch = quote_ident(meta::BATCH),
        src = quote_ident(meta::SOURCE),
    );
    let n = keys.len();
    let mut stmt = conn
        .prepare(&sql)
        .map_err(LakeError::duckdb(table.as_str()))?;
    let rows = stmt
        .query_map(duckdb::params![lo, hi, source], |r| {
            let values = (0..n)
                .map(|i| r.get(i))
                .collect::<duckdb::Result<Vec<String>>>()?;
            Ok(StreamEnds {
                values,
                first: r.get(n)?,
                next: r.get(n + 1)?,
            })
        })
        .map_err(LakeError::duckdb(table.as_str()))?;
    rows.collect::<duckdb::Result<_>>()
        .map_err(LakeError::duckdb(table.as_str()))
}

/// How far the lake holds stream `id` (None: none of it), from what this publisher knows
/// or else the log.
pub(super) fn stream_version(
    runtime: &Runtime,
    open: &Open,
    table: &str,
    id: &str,
) -> Result<Option<i64>, LakeError> {
    if let Some(v) = open.streams.get(id) {
        return Ok(Some(*v));
    }
    let snapshot = open.delta.snapshot().map_err(LakeError::delta(table))?;
    runtime
        .block_on(snapshot.transaction_version(open.delta.log_store().as_ref(), id))
        .map_err(LakeError::delta(table))
}
