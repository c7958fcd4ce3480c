//! The models benchmark: with a fixed delta of new rows, an incremental run of a merge
//! model and of a delete+insert aggregate, side by side with a full refresh of the same
//! models in the same run, as the base table grows. The incremental time should follow
//! the delta; the full refresh follows the table.
//!
//! Data: `raw.events(id, customer_id, amount, day, _sluice_batch)`, 20k rows per day,
//! committed in batches of 100k rows, in id and day order, as a stream of events arrives.
//! Each delta has half new events (the next day) and half late updates to recent events.

use std::{path::Path, time::Duration};

use anyhow::Context;
use duckdb::Connection;
use sluice_core::Ident;
use sluice_models::{ModelRunner, Outcome, Plan, RunOptions};

use crate::csv_bench::{median, tempfile_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base table sizes (rows), measured in this order as the table grows.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000000,5000000,10000000"
    )]
    sizes: Vec<u64>,
    /// Rows in each delta.
    #[arg(long, default_value_t = 10_000)]
    delta: u64,
    /// Deltas measured per size; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

const ROWS_PER_DAY: u64 = 20_000;
const BASE_BATCH: u64 = 100_000;
const MODELS: [&str; 2] = ["fct_events", "agg_daily"];

const MERGE_MODEL: &str =
    "{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }}
select id, customer_id, amount, day, _sluice_batch from {{ ref('events') }} where {{ new_rows() }}";
const AGGREGATE_MODEL: &str = "{{ config(materialized='incremental', unique_key='day', incremental_strategy='delete+insert') }}
select day, count(*) as events, count(distinct customer_id) as customers, sum(amount) as revenue
from {{ ref('events') }}
{% if is_incremental() %}
where day in (select day from {{ ref('events') }} where {{ new_rows() }})
{% endif %}
group by day";

/// The database being grown, with the next id and batch.
struct Events {
    conn: Connection,
    rows: u64,
    batch: i64,
}

impl Events {
    fn commit(&mut self, sql: &str) -> anyhow::Result<()> {
        self.batch += 1;
        let sql = sql.replace("{batch}", &self.batch.to_string());
        self.conn.execute_batch(&format!(
            "BEGIN; {sql}; INSERT INTO _sluice.batches VALUES ({}, 'events', now()); COMMIT",
            self.batch
        ))?;
        Ok(())
    }

    /// Appends base rows up to `target`, 100k per batch.
    fn grow(&mut self, target: u64) -> anyhow::Result<()> {
        while self.rows < target {
            let end = (self.rows + BASE_BATCH).min(target);
            self.commit(&insert_range(self.rows, end))?;
            self.rows = end;
        }
        Ok(())
    }

    /// A delta: half new events, half late updates to recent ones (distinct ids).
    fn delta(&mut self, n: u64) -> anyhow::Result<()> {
        let new = n / 2;
        let (start, end) = (self.rows, self.rows + new);
        let updates = n - new;
        let step = 10;
        let from = self.rows.saturating_sub(updates * step);
        let sql = format!(
            "{}; INSERT INTO raw.events SELECT i, (i * 7919) % 100000, ((i % 997) + 1.5)::DECIMAL(12,2), \
             DATE '2020-01-01' + CAST(i // {ROWS_PER_DAY} AS INTEGER), {{batch}} \
             FROM range({from}, {}, {step}) t(i)",
            insert_range(start, end),
            from + updates * step
        );
        self.commit(&sql)?;
        self.rows = end;
        Ok(())
    }
}

fn insert_range(start: u64, end: u64) -> String {
    format!(
        "INSERT INTO raw.events SELECT i, (i * 7919) % 100000, ((i % 10000) / 100.0)::DECIMAL(12,2), \
         DATE '2020-01-01' + CAST(i // {ROWS_PER_DAY} AS INTEGER), {{batch}} FROM range({start}, {end}) t(i)"
    )
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let work = tempfile_dir(args.dir.as_deref())?;
    let models_dir = work.path().join("models");
    std::fs::create_dir_all(&models_dir)?;
    std::fs::write(models_dir.join("fct_events.sql"), MERGE_MODEL)?;
    std::fs::write(models_dir.join("agg_daily.sql"), AGGREGATE_MODEL)?;
    let db = work.path().join("bench.duckdb");
    let _ = std::fs::remove_file(&db);
    let mut events = setup(&db)?;
    let plan = Plan::load(&models_dir, Ident::new("main")?, Ident::new("raw")?, None)
        .map_err(|p| anyhow::anyhow!("{p}"))?;
    let mut runner = ModelRunner::new(plan);
    runner.prepare(&events.conn)?;
    println!(
        "models: delta {} rows (half new, half late updates), {} runs per size, medians in ms",
        args.delta, args.runs
    );
    println!(
        "{:>12}  {:<11} {:>12} {:>12} {:>8}",
        "base rows", "model", "incremental", "full", "full/inc"
    );
    let mut first: Option<Vec<(f64, f64)>> = None;
    let mut last = Vec::new();
    for &size in &args.sizes {
        events.grow(size)?;
        expect_built(runner.run(&events.conn, &RunOptions::default()))?; // catch up, untimed
        let mut samples = vec![(Vec::new(), Vec::new()); MODELS.len()];
        for _ in 0..args.runs {
            events.delta(args.delta)?;
            let inc = expect_built(runner.run(&events.conn, &RunOptions::default()))?;
            let full = expect_built(runner.run(
                &events.conn,
                &RunOptions {
                    full_refresh: true,
                    ..RunOptions::default()
                },
            ))?;
            for (i, m) in MODELS.iter().enumerate() {
                samples[i].0.push(ms(&inc, m)?);
                samples[i].1.push(ms(&full, m)?);
            }
        }
        last = samples
            .into_iter()
            .map(|(i, f)| (median(i), median(f)))
            .collect();
        for (m, (i, f)) in MODELS.iter().zip(&last) {
            println!(
                "{:>12}  {:<11} {:>12.1} {:>12.1} {:>7.1}x",
                events.rows,
                m,
                i,
                f,
                f / i
            );
        }
        first.get_or_insert_with(|| last.clone());
    }
    if let Some(first) = first {
        println!(
            "growth from the first size to the last ({}x rows):",
            args.sizes.last().unwrap_or(&1) / args.sizes[0].max(1)
        );
        for ((m, (i0, f0)), (i1, f1)) in MODELS.iter().zip(&first).zip(&last) {
            println!(
                "  {m:<11} incremental {:.2}x, full refresh {:.2}x",
                i1 / i0,
                f1 / f0
            );
        }
    }
    Ok(())
}

fn setup(db: &Path) -> anyhow::Result<Events> {
    let conn = Connection::open(db).context("opening the bench database")?;
    conn.execute_batch(
        "CREATE SCHEMA raw; CREATE SCHEMA _sluice;
         CREATE TABLE raw.events (id BIGINT, customer_id BIGINT, amount DECIMAL(12,2), day DATE, _sluice_batch BIGINT);
         CREATE TABLE _sluice.batches (batch_id BIGINT, table_name VARCHAR, committed_at TIMESTAMPTZ);",
    )?;
    Ok(Events {
        conn,
        rows: 0,
        batch: 0,
    })
}

/// The reports, or the first failure.
fn expect_built(
    reports: Vec<sluice_models::ModelReport>,
) -> anyhow::Result<Vec<sluice_models::ModelReport>> {
    for r in &reports {
        if let Outcome::Failed { error } = &r.outcome {
            anyhow::bail!("model {} failed: {error}", r.model);
        }
    }
    Ok(reports)
}

fn ms(reports: &[sluice_models::ModelReport], model: &str) -> anyhow::Result<f64> {
    let r = reports
        .iter()
        .find(|r| r.model == model)
        .with_context(|| format!("model {model} did not run"))?;
    Ok(as_ms(r.duration))
}

fn as_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
