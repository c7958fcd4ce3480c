//! The lake's compaction: a Delta table built as a day of 1 s batches would build it (one
//! small data file per commit, simulated in-process by sluice's own publisher over a
//! DuckDB raw table, `--batches` of them), then a full-table scan by Polars before and
//! after sluice compacts it: files per partition, scan time, and the compaction's time.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use sluice_core::{Ident, SharedStreams};
use sluice_lake::{LakeConfig, Publisher, TableSpec};

use crate::csv_bench::median;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Commits of one batch each (86,400 is a day of 1 s batches).
    #[arg(long, default_value_t = 3_600)]
    batches: i64,
    /// Rows per batch.
    #[arg(long, default_value_t = 50)]
    rows: i64,
    /// Scans timed on each side; medians are reported.
    #[arg(long, default_value_t = 5)]
    scans: usize,
    /// Data files per commit while building (each file still one batch's rows): a day's
    /// layout (86,400 files) without paying 86,400 commits; 1 builds it as sluice does.
    #[arg(long, default_value_t = 1)]
    files_per_commit: i64,
    /// Compact while building, as the daemon does (when a partition has `compact_after`
    /// = 32 small files): how commit time stays flat. The table is compacted by then, so
    /// no before/after scans.
    #[arg(long)]
    interleave: bool,
    /// The Python with Polars (scripts/bench.sh sets it).
    #[arg(long, env = "SLUICE_TEST_LAKE_PYTHON")]
    python: String,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let work = crate::csv_bench::tempfile_dir(None)?;
    let root = work.path().join("lake");
    let conn = raw_table()?;
    let compact_after = if args.interleave { 32 } else { 2 };
    let config: LakeConfig = toml::from_str(&format!(
        "format = \"delta\"\nuri = \"{}\"\ncompact_after = {compact_after}\n",
        root.display()
    ))?;
    let mut publisher = Publisher::new(&config, work.path(), Ident::new("raw")?, "bench")
        .map_err(anyhow::Error::msg)?;
    let spec = TableSpec {
        table: Ident::new("t")?,
        shared: Vec::<(String, SharedStreams)>::new(),
    };
    let started = Instant::now();
    let mut compacted_while_building = 0;
    let mut slowest = Duration::ZERO;
    for b in 1..=args.batches {
        insert_batch(&conn, b, args.rows)?;
        if b > 1 && args.files_per_commit > 1 {
            continue; // written below, several per commit
        }
        let commit = Instant::now();
        publisher
            .publish_next(&conn, &spec)?
            .context("a batch to publish")?;
        if args.interleave && publisher.compact_next("t")?.is_some() {
            compacted_while_building += 1;
        }
        slowest = slowest.max(commit.elapsed());
    }
    let table = root.join("t");
    if args.files_per_commit > 1 {
        crate::lake_layout::write_batches(&conn, &table, 2..=args.batches, args.files_per_commit)?;
    }
    let building = started.elapsed().as_secs_f64();
    let commits = if args.files_per_commit > 1 {
        1 + (args.batches - 1 + args.files_per_commit - 1) / args.files_per_commit
    } else {
        args.batches
    };
    println!(
        "lake compaction: {} batches of {} rows ({} rows), one dt partition, {commits} commits",
        args.batches,
        args.rows,
        args.batches * args.rows
    );
    println!(
        "  built in {building:.1} s ({:.1} ms per commit, slowest {} ms)",
        building * 1000.0 / commits as f64,
        slowest.as_millis()
    );
    if args.interleave {
        let files = publisher.state("t").context("the table")?.files;
        println!(
            "  compacted {compacted_while_building} times while building: {files} files at the end"
        );
        return Ok(());
    }
    let before = crate::lake_layout::files(&table)?;
    let scan_before = scans(args, &table)?;
    let started = Instant::now();
    let mut compactions = 0;
    while publisher.compact_next("t")?.is_some() {
        compactions += 1;
    }
    let compacting = started.elapsed().as_secs_f64();
    let after = publisher.state("t").context("the table")?.files;
    let scan_after = scans(args, &table)?;
    println!(
        "  before: {before} files, Polars full scan {:.3} s (median of {})",
        scan_before, args.scans
    );
    println!("  compaction: {compactions} commits in {compacting:.1} s -> {after} files");
    println!(
        "  after:  {after} files, Polars full scan {:.3} s; scan {:.1}x faster",
        scan_after,
        scan_before / scan_after
    );
    Ok(())
}

/// Batch `b`'s rows in `raw.t`, and the batch in `_sluice.batches`.
fn insert_batch(conn: &duckdb::Connection, b: i64, rows: i64) -> anyhow::Result<()> {
    conn.execute(
        "INSERT INTO raw.t SELECT i, 'name ' || i, i % 1000, ?, now() FROM range(?, ?) r(i)",
        duckdb::params![b, (b - 1) * rows, b * rows],
    )?;
    conn.execute(
        "INSERT INTO _sluice.batches VALUES (?, 't', ?, 0, NULL, NULL, '{}', now())",
        duckdb::params![b, rows],
    )?;
    Ok(())
}

/// A database with `raw.t` and the state schema.
fn raw_table() -> anyhow::Result<duckdb::Connection> {
    let conn = duckdb::Connection::open_in_memory()?;
    sluice_state::ensure(&conn)?;
    conn.execute_batch(
        "CREATE SCHEMA raw;
         CREATE TABLE raw.t (id BIGINT, name VARCHAR, amount BIGINT, _sluice_batch BIGINT,
           _sluice_ingested_at TIMESTAMPTZ);",
    )?;
    Ok(conn)
}

/// Median seconds of a Polars full scan of the table (every column read).
fn scans(args: &Args, table: &Path) -> anyhow::Result<f64> {
    let script = format!(
        "import time, polars as pl\nt = time.perf_counter()\ndf = pl.read_delta({:?})\n\
         assert df.height > 0\nprint(time.perf_counter() - t)\n",
        table.display().to_string()
    );
    let mut times = Vec::new();
    for _ in 0..args.scans {
        let out = Command::new(&args.python).arg("-c").arg(&script).output()?;
        if !out.status.success() {
            bail!("polars: {}", String::from_utf8_lossy(&out.stderr));
        }
        times.push(String::from_utf8_lossy(&out.stdout).trim().parse::<f64>()?);
    }
    Ok(median(times))
}
