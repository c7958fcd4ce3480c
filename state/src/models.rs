//! The models' state: `_sluice.models` (per model, its SQL's hash, its watermark and its
//! last build, written in the build's transaction) and `_sluice.test_results`.

use duckdb::{params, Connection, OptionalExt};

use crate::{error::DuckdbContext, Result};

/// The query behind `GET /catalog`'s models: name, materialization, watermark, rows
/// written, last run, and seconds since the batch at its watermark was committed.
pub const FRESHNESS_SQL: &str =
    "SELECT m.name, m.materialized, m.watermark, m.rows_written, m.last_run_at, \
        round(epoch(now()::TIMESTAMP - b.committed_at::TIMESTAMP), 3) \
     FROM _sluice.models m LEFT JOIN _sluice.batches b ON b.batch_id = m.watermark \
     ORDER BY m.name";

/// What `_sluice.models` says about one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelState {
    pub sql_hash: String,
    pub watermark: i64,
}

/// The stored state of `model`, `None` before its first build.
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
    .ctx(|| format!("model {model}: reading its watermark"))
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

/// `model`'s last successful build, `None` before its first.
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
    .ctx(|| format!("model {model}: reading its last build"))
}

/// The latest result of each of `model`'s data tests: (test, severity, failing rows).
pub fn stored_tests(conn: &Connection, model: &str) -> Result<Vec<(String, String, u64)>> {
    let mut stmt = conn
        .prepare(
            "SELECT test, severity, failures FROM _sluice.test_results \
             WHERE model = ? ORDER BY test",
        )
        .ctx(|| format!("model {model}: reading its test results"))?;
    let rows = stmt
        .query_map(params![model], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
        })
        .and_then(|rows| rows.collect::<duckdb::Result<Vec<_>>>())
        .ctx(|| format!("model {model}: reading its test results"))?;
    Ok(rows)
}

/// Records a successful build (inside the build's transaction).
pub fn record_build(
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
    .ctx(|| format!("model {model}: recording its watermark"))
}

/// One data test's result, as `_sluice.test_results` keeps the latest of each.
#[derive(Debug, Clone, Copy)]
pub struct TestRecord<'a> {
    pub model: &'a str,
    pub test: &'a str,
    pub column: &'a str,
    pub severity: &'a str,
    pub failures: i64,
    /// The last batch when it ran.
    pub batch: i64,
}

/// Records a data test's result (replacing the previous one).
pub fn record_test(conn: &Connection, t: &TestRecord<'_>) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO _sluice.test_results \
         (model, test, column_name, severity, failures, batch_id, run_at) \
         VALUES (?, ?, ?, ?, ?, ?, now())",
        params![t.model, t.test, t.column, t.severity, t.failures, t.batch],
    )
    .map(|_| ())
    .ctx(|| format!("model {}: recording test {}", t.model, t.test))
}
