//! After the soak: every row exactly once (raw tables, the append mart, the additive
//! aggregate), produce-to-visible freshness from the rows themselves, and the resource
//! trend after warm-up.

use std::path::Path;

use anyhow::{bail, Context};

use super::{
    load::CSV_IDS,
    probe::{Sample, MIB},
};

/// What the inputs produced, to check the database against.
pub struct Produced {
    pub csv: u64,
    pub kafka: u64,
}

/// Fails unless every produced row is in its raw table once, in the mart once, and
/// counted once in the aggregate; no dead letters.
pub fn check_exactly_once(db: &duckdb::Connection, produced: &Produced) -> anyhow::Result<()> {
    for (table, first, n) in [
        ("raw.csv_orders", CSV_IDS, produced.csv),
        ("raw.kafka_orders", 0, produced.kafka),
    ] {
        let (rows, distinct, min, max): (i64, i64, i64, i64) = db.query_row(
            &format!("SELECT count(*), count(DISTINCT order_id), min(order_id), max(order_id) FROM {table}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let want = (n as i64, n as i64, first as i64, (first + n) as i64 - 1);
        if (rows, distinct, min, max) != want {
            bail!(
                "{table}: rows, distinct ids, min, max = {:?}, expected {want:?}",
                (rows, distinct, min, max)
            );
        }
    }
    let total = (produced.csv + produced.kafka) as i64;
    let (mart, distinct): (i64, i64) = db.query_row(
        "SELECT count(*), count(DISTINCT (via, order_id)) FROM main.fresh_orders",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let counted: i64 = db.query_row(
        "SELECT sum(orders)::BIGINT FROM main.revenue_by_minute",
        [],
        |r| r.get(0),
    )?;
    let dead: i64 = db.query_row("SELECT count(*) FROM _sluice.dead_letters", [], |r| {
        r.get(0)
    })?;
    if (mart, distinct, counted, dead) != (total, total, total, 0) {
        bail!(
            "marts: fresh_orders {mart} rows ({distinct} distinct), revenue_by_minute counts {counted}, \
             {dead} dead letters; expected {total}, {total}, {total}, 0"
        );
    }
    println!("exactly once: {} CSV rows, {} Kafka rows, each once in raw, fresh_orders and revenue_by_minute; 0 dead letters", produced.csv, produced.kafka);
    Ok(())
}

/// p50/p90/p99/max seconds from `produced_at` to the row's raw commit
/// (`_sluice_ingested_at`) and to its mart merge (`merged_at`), rows of the soak phase only.
pub fn freshness(db: &duckdb::Connection, soak_start: &str) -> anyhow::Result<()> {
    println!("\n| produced -> visible (s) | rows | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|");
    for (what, from, at, via) in [
        (
            "CSV -> raw.csv_orders",
            "raw.csv_orders",
            "_sluice_ingested_at",
            None,
        ),
        (
            "Kafka -> raw.kafka_orders",
            "raw.kafka_orders",
            "_sluice_ingested_at",
            None,
        ),
        (
            "CSV -> mart fresh_orders",
            "main.fresh_orders",
            "merged_at",
            Some("csv"),
        ),
        (
            "Kafka -> mart fresh_orders",
            "main.fresh_orders",
            "merged_at",
            Some("kafka"),
        ),
    ] {
        let filter = via.map(|v| format!(" AND via = '{v}'")).unwrap_or_default();
        let sql = format!(
            "SELECT (epoch_us({at}) - epoch_us(produced_at)) / 1e6 AS s FROM {from} \
             WHERE produced_at >= '{soak_start}'::TIMESTAMPTZ{filter}"
        );
        let row = distribution(db, &sql, "s").with_context(|| format!("freshness of {what}"))?;
        println!(
            "| {what} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            row.0, row.1, row.2, row.3, row.4
        );
    }
    println!(
        "\n(raw: until the commit began, `_sluice_ingested_at`; mart: until the model's \
         transaction began, `current_timestamp`; visible to readers at the commit, some ms later)"
    );
    Ok(())
}

/// Where a batch's oldest row spent its time before the commit began, per raw table:
/// from `produced_at` to its arrival in sluice's source (the input's own latency: the
/// broker's fetch, the file's settle time), then from there to the commit's start (the
/// `age_ms` the daemon logs with each commit: `max_age` and the wait for the committer).
pub fn waits(db: &duckdb::Connection, log: &Path, soak_start: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    db.execute_batch("CREATE TEMP TABLE commit_ages (tbl VARCHAR, batch BIGINT, age_ms BIGINT)")?;
    let mut appender = db.appender("commit_ages")?;
    for line in text.lines().filter(|l| l.contains(" committed table=")) {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        if let (Some(t), Some(b), Some(a)) = (field("table="), field("batch="), field("age_ms=")) {
            appender.append_row(duckdb::params![t, b.parse::<i64>()?, a.parse::<i64>()?])?;
        }
    }
    drop(appender);
    println!(
        "\n| a batch's oldest row (ms) | batches | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|"
    );
    for table in ["csv_orders", "kafka_orders"] {
        let sql = format!(
            "WITH b AS (SELECT _sluice_batch AS batch, \
                 max(epoch_us(_sluice_ingested_at) - epoch_us(produced_at)) / 1000 AS total \
               FROM raw.{table} WHERE produced_at >= '{soak_start}'::TIMESTAMPTZ GROUP BY 1) \
             SELECT b.total - c.age_ms AS input, c.age_ms::DOUBLE AS age \
             FROM b JOIN commit_ages c ON c.batch = b.batch AND c.tbl = '{table}'"
        );
        for (what, column) in [
            ("produced -> reached the source", "input"),
            ("reached the source -> commit began", "age"),
        ] {
            let row = distribution(db, &sql, column)
                .with_context(|| format!("where the rows of {table} waited"))?;
            println!(
                "| {table}: {what} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
                row.0, row.1, row.2, row.3, row.4
            );
        }
    }
    Ok(())
}

/// Medians of the first and the last `window` seconds after `warmup` (a third of what
/// follows the warm-up, if that is shorter): the trend.
pub fn trend(samples: &[Sample], warmup: f64, window: f64) {
    let end = samples.last().map(|s| s.t).unwrap_or(0.0);
    let window = window.min((end - warmup) / 3.0);
    let first: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= warmup && s.t < warmup + window)
        .collect();
    let last: Vec<&Sample> = samples.iter().filter(|s| s.t > end - window).collect();
    if first.is_empty() || last.is_empty() || window <= 0.0 {
        println!("\n(run too short for a trend: warm-up {warmup:.0} s, window {window:.0} s)");
        return;
    }
    type Measure = (&'static str, fn(&Sample) -> f64);
    let measures: [Measure; 8] = [
        ("RSS (MiB)", |s| s.rss_kib as f64 / 1024.0),
        ("DuckDB memory (MiB)", |s| s.duckdb_memory as f64 / MIB),
        ("RSS minus DuckDB memory (MiB)", |s| {
            (s.rss_kib as f64 * 1024.0 - s.duckdb_memory as f64) / MIB
        }),
        ("DuckDB file (MiB)", |s| s.db_bytes as f64 / MIB),
        ("open fds", |s| s.fds as f64),
        ("WAL (MiB)", |s| s.wal_bytes as f64 / MIB),
        ("DuckDB bytes per row", |s| {
            s.db_bytes as f64 / (s.csv_rows + s.kafka_rows).max(1) as f64
        }),
        ("mart freshness gauge (s)", |s| s.mart_freshness),
    ];
    println!(
        "\n| after warm-up | median t={:.0}-{:.0} s | median t={:.0}-{:.0} s | change |\n|---|---:|---:|---:|",
        warmup, warmup + window, end - window, end
    );
    for (name, f) in measures {
        let (a, b) = (median(&first, f), median(&last, f));
        let change = if a != 0.0 {
            format!("{:+.1}%", (b - a) / a * 100.0)
        } else {
            "-".into()
        };
        println!("| {name} | {a:.2} | {b:.2} | {change} |");
    }
}

/// Count, p50, p90, p99 and max of `column` over the rows `rows_sql` selects.
fn distribution(
    db: &duckdb::Connection,
    rows_sql: &str,
    column: &str,
) -> duckdb::Result<(i64, f64, f64, f64, f64)> {
    let sql = format!(
        "WITH d AS ({rows_sql}) SELECT count(*), quantile_cont({column}, 0.5), \
         quantile_cont({column}, 0.9), quantile_cont({column}, 0.99), max({column}) FROM d"
    );
    db.query_row(&sql, [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
}

fn median(samples: &[&Sample], f: fn(&Sample) -> f64) -> f64 {
    crate::csv_bench::median(samples.iter().map(|s| f(s)).collect())
}

/// Opens the database once the daemon has stopped.
pub fn open(data: &Path) -> anyhow::Result<duckdb::Connection> {
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
    duckdb::Connection::open_with_flags(data.join("warehouse.duckdb"), config)
        .context("opening the soaked database")
}
