//! The soak benchmark: the real daemon (`sluice run`) for a long time under steady CSV and
//! Kafka input with two incremental models, sampled every `--sample` seconds (RSS, open
//! file descriptors, DuckDB file and WAL size, Parquet files, the mart's freshness gauge),
//! then stopped with SIGTERM and checked: every row once in the raw tables and the marts,
//! produce-to-visible freshness percentiles from the rows themselves, and the resource
//! trend after warm-up (flat means no leak).
//!
//! Phases, all against one daemon and one database:
//! 1. calibration: a Kafka backlog, then a CSV backlog, each drained alone by the running
//!    daemon; the drain rates are the measured throughput of each source on this machine,
//!    models included;
//! 2. the soak: each source fed at `load / 2` of its measured rate (the two together are
//!    `load` of what the machine can take), for `--minutes`;
//! 3. drain, SIGTERM (must exit 0), checks, report.
//!
//! Layout: [`load`] feeds the inputs; [`probe`] reads the daemon from outside;
//! [`visible`] polls its SQL endpoint (HTTP) for when sampled rows become visible;
//! [`report`] checks the database and prints freshness and the trend.

mod load;
mod probe;
mod report;
mod visible;

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use rdkafka::mocking::MockCluster;

use crate::csv_bench::tempfile_dir;
use crate::daemon::{alive, start, stop, wait_for_http, wait_for_sql};
use load::{CSV_IDS, TOPIC};
use probe::{Daemon, Sample};
use report::Produced;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Length of the steady phase.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Fraction of the measured throughput fed (split evenly between CSV and Kafka).
    #[arg(long, default_value_t = 0.5)]
    load: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample: u64,
    /// Minutes of the steady phase left out of the trend.
    #[arg(long, default_value_t = 5.0)]
    warmup_minutes: f64,
    /// Partitions of the topic. The mock broker keeps only about 5 MB (some 37,000 of
    /// these messages) per partition, so a consumer that falls behind by more loses
    /// messages (sluice stops the source at the gap). More partitions give more slack but,
    /// at a steady rate, smaller chunks per partition, which sluice commits slower.
    #[arg(long, default_value_t = 16)]
    partitions: i32,
    /// Kafka messages of the calibration backlog (must fit the broker's 5 MB per partition).
    #[arg(long, default_value_t = 400_000)]
    kafka_backlog: u64,
    /// CSV rows of the calibration backlog.
    #[arg(long, default_value_t = 4_000_000)]
    csv_backlog: u64,
    /// A CSV file is dropped this often (milliseconds).
    #[arg(long, default_value_t = 1000)]
    file_interval_ms: u64,
    /// Kafka messages a second in the steady phase (default: from the calibration).
    #[arg(long)]
    kafka_rate: Option<f64>,
    /// CSV rows a second in the steady phase (default: from the calibration).
    #[arg(long)]
    csv_rate: Option<f64>,
    /// sluice's `duckdb.memory_limit` (default: DuckDB's, 80% of RAM; DuckDB keeps the
    /// blocks it wrote or read cached up to it, so RSS follows the database's size).
    #[arg(long)]
    memory_limit: Option<String>,
    /// `min_interval` of both models (default: none, a fold-in after every commit).
    #[arg(long)]
    model_min_interval: Option<String>,
    /// The sluice binary (default: next to this one).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Everything under the work directory.
struct Layout {
    inbox: PathBuf,
    staging: PathBuf,
    data: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let sluice = crate::daemon::sluice_binary(args.sluice.as_deref())?;
    let work = tempfile_dir(args.dir.as_deref())?;
    let cluster = MockCluster::new(1).context("mock cluster")?;
    cluster.create_topic(TOPIC, args.partitions, 1)?;
    let brokers = cluster.bootstrap_servers();
    let dirs = set_up(work.path(), &brokers, args)?;

    eprintln!(
        "calibration backlogs: {} Kafka messages, {} CSV rows",
        args.kafka_backlog, args.csv_backlog
    );
    load::produce_backlog(&brokers, args.partitions, 0..args.kafka_backlog)?;
    load::delivered(&brokers, args.partitions, true)?;
    let csv_files = load::write_csv_backlog(&dirs.staging, CSV_IDS, args.csv_backlog, 16)?;
    let mut child = start(&sluice, &dirs.config, &dirs.log)?;
    let daemon = Daemon {
        pid: child.id(),
        addr: wait_for_http(&dirs.log, &mut child)?,
        sql_port: wait_for_sql(&dirs.log, &mut child)?,
        data: dirs.data.clone(),
    };
    let kafka = drain_rate(
        &daemon,
        &mut child,
        |s| s.kafka_rows,
        args.kafka_backlog,
        || Ok(()),
    )?;
    let csv = drain_rate(
        &daemon,
        &mut child,
        |s| s.csv_rows,
        args.csv_backlog,
        || load::drop_into(&csv_files, &dirs.inbox),
    )?;
    let kafka_rate = args.kafka_rate.unwrap_or(kafka * args.load / 2.0);
    let csv_rate = args.csv_rate.unwrap_or(csv * args.load / 2.0);
    println!("measured throughput (each source draining its backlog alone, models running): Kafka {kafka:.0} msg/s, CSV {csv:.0} rows/s");
    println!(
        "steady phase: {} min, Kafka {kafka_rate:.0} msg/s + CSV {csv_rate:.0} rows/s (a file every {} ms), samples every {} s; \
         consumer fetch.wait.max.ms = {MOCK_FETCH_WAIT_MS} (see MOCK_FETCH_WAIT_MS); models' min_interval {}\n",
        args.minutes,
        args.file_interval_ms,
        args.sample,
        args.model_min_interval.as_deref().unwrap_or("(none)")
    );

    let soak_start = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f+00:00")
        .to_string();
    let started = Instant::now();
    let watcher =
        visible::Watcher::start(daemon.addr.clone(), chrono::Utc::now().timestamp_micros());
    let feeders = [
        load::kafka_feeder(
            brokers.clone(),
            args.partitions,
            kafka_rate,
            args.kafka_backlog,
        ),
        load::csv_feeder(
            dirs.staging.clone(),
            dirs.inbox.clone(),
            csv_rate,
            Duration::from_millis(args.file_interval_ms),
            CSV_IDS + args.csv_backlog,
        ),
    ];
    let samples = sample_until(&daemon, &mut child, started, args)?;
    // The reader's view, for the steady phase only (not the drain after it).
    let seen_by_readers = watcher.report();
    let [kafka_feeder, csv_feeder] = feeders;
    let produced = Produced {
        kafka: args.kafka_backlog + kafka_feeder.stop()?,
        csv: args.csv_backlog + csv_feeder.stop()?,
    };
    let delivered = load::delivered(&brokers, args.partitions, false)?;
    if delivered != produced.kafka {
        bail!(
            "the broker holds {delivered} messages, {} were produced",
            produced.kafka
        );
    }
    let drained = Instant::now();
    wait_caught_up(&daemon, &mut child, &produced)?;
    println!(
        "\ncaught up {:.1} s after the inputs stopped",
        drained.elapsed().as_secs_f64()
    );
    stop(child)?;

    let db = report::open(&dirs.data)?;
    report::check_exactly_once(&db, &produced)?;
    report::freshness(&db, &soak_start)?;
    report::waits(&db, &dirs.log, &soak_start)?;
    seen_by_readers?;
    report::trend(&samples, args.warmup_minutes * 60.0, 300.0);
    Ok(())
}

fn set_up(root: &Path, brokers: &str, args: &Args) -> anyhow::Result<Layout> {
    let memory_limit = args.memory_limit.as_deref();
    let dirs = Layout {
        inbox: root.join("inbox"),
        staging: root.join("staging"),
        data: root.join("data"),
        config: root.join("sluice.toml"),
        log: root.join("sluice.log"),
    };
    let models = root.join("models");
    for d in [&dirs.inbox, &dirs.staging, &models] {
        std::fs::create_dir_all(d)?;
    }
    for (file, text) in [
        ("fresh_orders.sql", FRESH_ORDERS),
        ("revenue_by_minute.sql", REVENUE_BY_MINUTE),
    ] {
        let text = match &args.model_min_interval {
            Some(d) => text.replacen(
                "{{ config(",
                &format!("{{{{ config(min_interval='{d}', "),
                1,
            ),
            None => text.to_string(),
        };
        std::fs::write(models.join(file), text)?;
    }
    let schema: Vec<String> = load::COLUMNS
        .iter()
        .map(|(n, t)| format!("{n} = \"{t}\""))
        .collect();
    let schema = schema.join("\n");
    std::fs::write(
        &dirs.config,
        format!(
            "data_dir = \"{}\"\n{}[http]\nlisten = \"127.0.0.1:0\"\n[sql]\nlisten = \"127.0.0.1:0\"\n[models]\ndir = \"{}\"\n\
             [sources.csv_orders]\ntype = \"csv\"\npath = \"{}\"\nafter_ingest = \"delete\"\n\
             [sources.csv_orders.schema]\n{schema}\n\
             [sources.kafka_orders]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"{TOPIC}\"]\ngroup_id = \"soak\"\n\
             [sources.kafka_orders.schema]\n{schema}\n\
             [sources.kafka_orders.librdkafka]\n\"fetch.wait.max.ms\" = \"{MOCK_FETCH_WAIT_MS}\"\n",
            dirs.data.display(),
            memory_limit
                .map(|m| format!("[duckdb]\nmemory_limit = \"{m}\"\n"))
                .unwrap_or_default(),
            models.display(),
            dirs.inbox.display(),
        ),
    )?;
    Ok(dirs)
}

/// The consumer's `fetch.wait.max.ms` in the soak. librdkafka's mock broker holds a fetch
/// that finds no new data for the whole wait, even if messages are produced a moment later
/// (`rdkafka_mock_handlers.c`: "this isn't strictly correct ... too much of a hassle"); a
/// real broker answers as soon as data arrives. At the default (500 ms) the oldest row of
/// a Kafka batch had reached the source 0.50 s (median) after it was produced: the mock's,
/// not sluice's, latency. A short wait makes the mock behave like a broker, at the cost of
/// more (empty) fetches, which the daemon pays for.
const MOCK_FETCH_WAIT_MS: u32 = 10;

/// Every row of both raw tables, stamped with the moment its model run began.
const FRESH_ORDERS: &str = "\
{{ config(materialized='incremental', incremental_strategy='append') }}
select 'csv' as via, order_id, customer_id, amount, produced_at, _sluice_batch,
       current_timestamp as merged_at
from {{ ref('csv_orders') }} where {{ new_rows() }}
union all
select 'kafka' as via, order_id, customer_id, amount, produced_at, _sluice_batch,
       current_timestamp as merged_at
from {{ ref('kafka_orders') }} where {{ new_rows() }}
";

/// An additive aggregate: only the minutes the new rows touch are rewritten.
const REVENUE_BY_MINUTE: &str = "\
{{ config(materialized='incremental', unique_key='minute') }}
with new as (
    select date_trunc('minute', produced_at::TIMESTAMP) as minute, count(*) as orders, sum(amount) as revenue
    from {{ ref('fresh_orders') }} where {{ new_rows() }} group by 1
)
{% if is_incremental() %}
select new.minute, new.orders + coalesce(old.orders, 0) as orders,
       new.revenue + coalesce(old.revenue, 0) as revenue
from new left join {{ this }} old using (minute)
{% else %}
select * from new
{% endif %}
";

/// Starts a backlog's drain with `release`, polls until `rows` reaches `target`, and
/// returns the rate from the first rows seen to the last (rows a second).
fn drain_rate(
    daemon: &Daemon,
    child: &mut Child,
    rows: fn(&Sample) -> u64,
    target: u64,
    release: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let before = rows(&daemon.sample(0.0)?);
    release()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(Instant, u64)> = None;
    loop {
        alive(child, &daemon_log(daemon))?;
        let now = Instant::now();
        let n = rows(&daemon.sample(0.0)?) - before;
        if n > 0 && first.is_none() {
            first = Some((now, n));
        }
        if let Some((t1, n1)) = first.filter(|_| n >= target) {
            let secs = now.duration_since(t1).as_secs_f64().max(0.05);
            return Ok((target - n1) as f64 / secs);
        }
        if now > deadline {
            bail!("calibration: {n} of {target} rows after 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn daemon_log(daemon: &Daemon) -> PathBuf {
    daemon.data.with_file_name("sluice.log")
}

/// Samples every `args.sample` seconds until the steady phase is over; prints each row.
fn sample_until(
    daemon: &Daemon,
    child: &mut Child,
    started: Instant,
    args: &Args,
) -> anyhow::Result<Vec<Sample>> {
    println!("{}", Sample::header());
    let mut samples = Vec::new();
    let every = Duration::from_secs(args.sample);
    let end = started + Duration::from_secs_f64(args.minutes * 60.0);
    for n in 1.. {
        let at = started + every * n;
        if at > end {
            break;
        }
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        alive(child, &daemon_log(daemon))?;
        let sample = daemon.sample(started.elapsed().as_secs_f64())?;
        println!("{}", sample.row());
        samples.push(sample);
    }
    Ok(samples)
}

/// Waits until both raw tables and the append mart hold every produced row.
fn wait_caught_up(daemon: &Daemon, child: &mut Child, produced: &Produced) -> anyhow::Result<()> {
    let total = (produced.csv + produced.kafka) as f64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        alive(child, &daemon_log(daemon))?;
        let s = daemon.sample(0.0)?;
        let merged = daemon.metric("sluice_model_rows_written_total", "fresh_orders")?;
        if s.csv_rows == produced.csv && s.kafka_rows == produced.kafka && merged >= total {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "not caught up after 10 minutes: CSV {} of {}, Kafka {} of {}, mart {merged} of {total}",
                s.csv_rows, produced.csv, s.kafka_rows, produced.kafka
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
