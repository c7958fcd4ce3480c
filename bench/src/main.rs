//! # sluice-bench: sluice side by side with a reference, in the same run
//!
//! `sluice-bench csv`: generates CSV files, then, for each of `--runs` rounds, measures
//! (a) DuckDB doing the same work natively in-process (`read_csv` into a table, then
//! `COPY ... TO` Parquet) and (b) the real `sluice run --once` binary ingesting the same
//! files into DuckDB and Parquet. Prints medians and the ratio of sluice's throughput to
//! DuckDB's. Results are recorded in BENCHMARKS.md with the command that produced them.
//!
//! With `--duckdb-reader`, a third side: DuckDB's `read_csv` as sluice's reader, inside
//! the shape of sluice's commit ([`csv_duckdb_reader`]). `sluice-bench csv-cases`: the
//! CSV bad-input cases through both readers, side by side ([`csv_cases`]).
//!
//! `sluice-bench models`: an incremental run of a merge model and of a delete+insert
//! aggregate, side by side with a full refresh of the same models, as the base table
//! grows (1M -> 10M rows by default) under a fixed delta.
//!
//! `sluice-bench kafka`: 1M JSON messages over 64 partitions of librdkafka's mock
//! cluster, consumed by sluice into DuckDB + Parquet, against a plain consumer draining
//! the same topic; with `--lake`, also sluice publishing to a local Delta table
//! ([`lake_table`] reads it back).
//!
//! `sluice-bench lake-compaction`: a Delta table of `--batches` one-batch commits (a day
//! of 1 s batches is 86,400), a Polars full scan before and after sluice compacts it.
//!
//! `sluice-bench soak`: the daemon for 30 minutes under steady CSV + Kafka input at a
//! fraction (`--load`) of its measured throughput, models running; RSS, DuckDB and WAL
//! size, open files every 10 s, then every row checked once and produce-to-mart
//! freshness percentiles.
//!
//! `sluice-bench sql-fetch`: a 1M-row, 10-column result through sluice's Postgres
//! endpoint (psycopg) against DuckDB in-process on the same data. `sluice-bench
//! sql-load`: CSV ingest while clients query the marts, against idle, and point-query
//! latency meanwhile.
//!
//! `sluice-bench alter`: a column added and a BIGINT widened to DOUBLE on a 10M-row
//! table by sluice's own code, against DuckDB rewriting the table ([`alter_bench`]).
//!
//! `sluice-bench new-fields`: a new column in each of 1,000 consecutive batches against
//! the same batches without ([`new_fields_bench`]).
//!
//! Layout: [`generate`] writes the CSV data; [`csv_bench`] runs the CSV sides
//! ([`csv_duckdb_reader`] the read_csv one, [`csv_cases`] the bad-input cases);
//! [`models_bench`] the model sides; [`kafka_bench`] the Kafka sides;
//! [`soak`] the long run; [`sql_bench`] the SQL endpoint's; [`daemon`] starts and stops
//! the daemon for those.

mod alter_bench;
mod csv_bench;
mod csv_cases;
mod csv_duckdb_reader;
mod daemon;
mod generate;
mod kafka_bench;
mod lake_bench;
mod lake_layout;
mod lake_table;
mod models_bench;
mod new_fields_bench;
mod soak;
mod sql_bench;
mod threads;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "sluice benchmarks (reference side by side, ratio printed)")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// CSV directory -> DuckDB + Parquet, against DuckDB's own read_csv + COPY TO Parquet.
    Csv(csv_bench::Args),
    /// The CSV bad-input cases through sluice and through DuckDB's read_csv, side by side.
    CsvCases(csv_cases::Args),
    /// Incremental model runs vs full refresh as the table grows, fixed delta.
    Models(models_bench::Args),
    /// Kafka topic -> DuckDB + Parquet, against a plain consumer draining the topic.
    Kafka(kafka_bench::Args),
    /// A Delta table of many small commits: Polars full scans before and after compaction.
    LakeCompaction(lake_bench::Args),
    /// The daemon under steady CSV + Kafka input for a long time: resources and freshness.
    Soak(soak::Args),
    /// A 1M-row result through sluice's Postgres endpoint (psycopg) vs DuckDB in-process.
    SqlFetch(sql_bench::FetchArgs),
    /// CSV ingest with clients querying the marts vs idle; point-query latency meanwhile.
    SqlLoad(sql_bench::LoadArgs),
    /// A column added and one widened on a large table, against DuckDB rewriting it.
    Alter(alter_bench::Args),
    /// A new column in each of 1,000 consecutive batches, against the same batches without.
    NewFields(new_fields_bench::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Csv(args) => csv_bench::run(&args),
        Bench::CsvCases(args) => csv_cases::run(&args),
        Bench::Models(args) => models_bench::run(&args),
        Bench::Kafka(args) => kafka_bench::run(&args),
        Bench::LakeCompaction(args) => lake_bench::run(&args),
        Bench::Soak(args) => soak::run(&args),
        Bench::SqlFetch(args) => sql_bench::fetch(&args),
        Bench::SqlLoad(args) => sql_bench::load(&args),
        Bench::Alter(args) => alter_bench::run(&args),
        Bench::NewFields(args) => new_fields_bench::run(&args),
    }
}
