//! `sluice-bench alter`: what a schema change costs on a large raw table. sluice's own
//! code (`sluice_state::tables::evolve::apply`, inside a transaction as in a commit, with
//! its exactness check and its `_sluice.schema_changes` row) adds a column and widens a
//! BIGINT column to DOUBLE on a `--rows` table in a DuckDB file; the reference is DuckDB
//! rewriting the same table natively with the column cast (`CREATE TABLE ... AS SELECT`),
//! what a manual migration does. Each round puts the table back first (untimed).

use std::time::Instant;

use duckdb::Connection;
use sluice_core::{ColumnType, Ident, SchemaChange};
use sluice_state::tables::evolve::{apply, Target};

use crate::csv_bench::{median, tempfile_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rows in the table.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let work = tempfile_dir(args.dir.as_deref())?;
    let conn = Connection::open(work.path().join("sluice.duckdb"))?;
    sluice_state::ensure(&conn)?;
    conn.execute_batch(&format!(
        "CREATE SCHEMA raw;
         CREATE TABLE raw.t AS SELECT i AS id, i * 3 AS v, 'customer-' || (i % 1000) AS name,
             (i % 10000) / 100.0 AS amount, TIMESTAMP '2026-01-01' + INTERVAL (i % 86400) SECOND AS ts
           FROM range({}) r(i);
         CHECKPOINT;",
        args.rows
    ))?;
    println!("table raw.t: {} rows, 5 columns", args.rows);
    let (schema, table) = (Ident::new("raw")?, Ident::new("t")?);
    let (mut add, mut widen, mut native) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.runs {
        let target = |batch_id| Target {
            schema: &schema,
            table: &table,
            batch_id,
            stamp: "2026-01-01 00:00:00+00",
        };
        let added = SchemaChange {
            column: "region".into(),
            old: None,
            new: ColumnType::Varchar,
        };
        let widened = SchemaChange {
            column: "v".into(),
            old: Some(ColumnType::BigInt),
            new: ColumnType::Double,
        };
        add.push(timed(&conn, |tx| apply(tx, target(1), &[added], &[]))?);
        widen.push(timed(&conn, |tx| apply(tx, target(2), &[widened], &[]))?);
        native.push(timed(&conn, |tx| {
            tx.execute_batch(
                "CREATE TABLE raw.t2 AS SELECT id, v::DOUBLE AS v, name, amount, ts FROM raw.t",
            )
        })?);
        println!(
            "round {round}: add column {:.3} s, widen BIGINT->DOUBLE {:.3} s, native rewrite {:.3} s",
            add[round - 1],
            widen[round - 1],
            native[round - 1]
        );
        conn.execute_batch(
            "DROP TABLE raw.t2; ALTER TABLE raw.t DROP COLUMN region;
             ALTER TABLE raw.t ALTER COLUMN v TYPE BIGINT; DELETE FROM _sluice.schema_changes;
             CHECKPOINT;",
        )?;
    }
    let (add, widen, native) = (median(add), median(widen), median(native));
    println!(
        "median: add column {add:.3} s, widen {widen:.3} s ({:.1} ns/row), native rewrite \
         {native:.3} s; widen / native = {:.2}x",
        widen * 1e9 / args.rows as f64,
        widen / native
    );
    Ok(())
}

/// Seconds `f` takes inside a transaction, with its commit and a checkpoint (a commit's
/// WAL is written back at the next checkpoint; the raw table's commit pays it too).
fn timed<T, E: Into<anyhow::Error>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    conn.execute_batch("BEGIN")?;
    f(conn).map_err(Into::into)?;
    conn.execute_batch("COMMIT; CHECKPOINT")?;
    Ok(started.elapsed().as_secs_f64())
}
