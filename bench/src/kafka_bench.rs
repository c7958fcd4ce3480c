//! The Kafka benchmark: a plain rdkafka consumer that only drains the topic (the ceiling)
//! vs `sluice run --once` consuming the same topic into DuckDB and Parquet, same run,
//! alternating. The broker is librdkafka's mock cluster in this process; both sides join a
//! fresh consumer group each round, and the mock delays a group's first rebalance by about
//! 3 s, which both pay: the end-to-end ratio mostly measures that wait. The steady-state
//! figures leave it out: the drain from its first message to its last, sluice from its
//! "partitions assigned" log line to its last commit (`_sluice.batches.committed_at`).

use std::{path::PathBuf, process::Command, time::Instant};

use anyhow::{bail, Context};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig,
};

use crate::csv_bench::{median, run_measured, tempfile_dir};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Messages produced (each about 200 bytes of JSON).
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    #[arg(long, default_value_t = 64)]
    partitions: i32,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// sluice's batch.max_rows (default: sluice's default).
    #[arg(long, default_value_t = 122_880)]
    max_rows: usize,
    /// The sluice binary (default: next to this one).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// Also run sluice publishing to a Delta table on the local disk (`[lake]`, with the
    /// Parquet tree off, as a user picking the lake would), each round.
    #[arg(long)]
    lake: bool,
    /// ... and to one on an S3 server (SeaweedFS, started here), each round.
    #[arg(long)]
    lake_s3: bool,
    /// The Python whose directory has SeaweedFS's `weed` (scripts/bench.sh sets it).
    #[arg(long, env = "SLUICE_TEST_LAKE_PYTHON")]
    lake_python: Option<PathBuf>,
}

/// Where a lake round publishes.
enum LakeTarget {
    Local,
    S3(crate::lake_table::S3Server),
}

const TOPIC: &str = "bench";

fn message(i: u64) -> String {
    let mut m = format!(
        r#"{{"order_id": {i}, "customer_id": {}, "amount": "{}.{:02}", "currency": "EUR", "ordered_at": "2026-11-26 10:{:02}:{:02}", "note": ""#,
        i % 100_000,
        i % 1000,
        i % 100,
        (i / 60) % 60,
        i % 60
    );
    while m.len() < 196 {
        m.push('x');
    }
    m.push_str("\"}");
    m
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let sluice = crate::daemon::sluice_binary(args.sluice.as_deref())?;
    let cluster = MockCluster::new(1).context("mock cluster")?;
    cluster.create_topic(TOPIC, args.partitions, 1)?;
    let brokers = cluster.bootstrap_servers();
    let bytes = produce(&brokers, args)?;
    let mb = bytes as f64 / 1e6;
    eprintln!(
        "produced {} messages, {mb:.0} MB, over {} partitions",
        args.messages, args.partitions
    );
    let work = tempfile_dir(None)?;
    let (mut drain, mut ours, mut rss, mut cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut drain_steady, mut ours_steady) = (Vec::new(), Vec::new());
    let mut targets = Vec::new();
    if args.lake {
        targets.push(("local disk", LakeTarget::Local));
    }
    if args.lake_s3 {
        let python = args
            .lake_python
            .as_deref()
            .context("--lake-s3 needs --lake-python")?;
        let server = crate::lake_table::S3Server::start(python, work.path())?;
        server.create_bucket("bench")?;
        targets.push(("S3 (SeaweedFS)", LakeTarget::S3(server)));
    }
    let mut lake: Vec<(Vec<f64>, Vec<f64>)> = targets.iter().map(|_| Default::default()).collect();
    for round in 0..args.runs {
        let (total, steady) = drain_once(&brokers, round, args.messages)?;
        drain.push(total);
        drain_steady.push(steady);
        let data = work.path().join(format!("sluice-{round}"));
        let config = work.path().join(format!("sluice-{round}.toml"));
        let log = work.path().join(format!("sluice-{round}.log"));
        std::fs::write(&config, config_text(&brokers, &data, round, args))?;
        let sample = run_measured(
            Command::new(&sluice)
                .args(["run", "--once", "--config"])
                .arg(&config)
                .env("SLUICE_LOG", log_filter())
                .stderr(std::fs::File::create(&log)?),
        )?;
        let rows = count_rows(&data)?;
        if rows != args.messages {
            bail!("sluice committed {rows} rows of {} messages", args.messages);
        }
        let steady = sluice_steady(&log, &data)?;
        if timeline() {
            eprintln!("{}", std::fs::read_to_string(&log)?);
        }
        let _ = std::fs::remove_dir_all(&data);
        eprintln!(
            "round {round}: drain {total:.2}s ({steady_d:.2}s from its first message), sluice {:.2}s ({steady:.2}s from assignment to last commit), {:.2} CPU-s, peak RSS {} MiB",
            sample.secs,
            sample.cpu_secs,
            sample.max_rss_kib / 1024,
            steady_d = drain_steady[round],
        );
        eprintln!(
            "  sluice's CPU by thread: {}",
            crate::threads::describe(&sample.threads)
        );
        ours.push(sample.secs);
        ours_steady.push(steady);
        rss.push(sample.max_rss_kib as f64);
        cpu.push(sample.cpu_secs);
        for (i, (_, target)) in targets.iter().enumerate() {
            // A group of its own per side and round: a group that another side's consumer
            // left has committed offsets, and would start this side at the topic's end.
            let group = 1000 * (i + 1) + round;
            let (total, steady) = lake_round(&sluice, &brokers, work.path(), group, args, target)?;
            lake[i].0.push(total);
            lake[i].1.push(steady);
        }
    }
    let (ds, ss) = (median(drain_steady), median(ours_steady));
    let (d, s) = (median(drain), median(ours));
    let n = args.messages as f64;
    println!(
        "kafka consume: {} messages, {mb:.0} MB, {} partitions, {} runs (medians)",
        args.messages, args.partitions, args.runs
    );
    println!(
        "  plain consumer, drain only:               {d:.2} s  {:>10.0} msg/s  {:>6.1} MB/s",
        n / d,
        mb / d
    );
    println!(
        "  sluice run --once (DuckDB + Parquet):     {s:.2} s  {:>10.0} msg/s  {:>6.1} MB/s  peak RSS {:.0} MiB  CPU {:.2} s (user+sys, whole run)",
        n / s,
        mb / s,
        median(rss) / 1024.0,
        median(cpu)
    );
    println!(
        "  steady state: drain {ds:.2} s from its first message ({:.0} msg/s), sluice {ss:.2} s from assignment to its last commit ({:.0} msg/s)",
        n / ds,
        n / ss
    );
    println!(
        "  ratio sluice/drain, steady state (the throughput figure): {:.2}x",
        ds / ss
    );
    println!(
        "  ratio sluice/drain, end to end (both include the mock's ~3 s group join): {:.2}x",
        d / s
    );
    for ((label, _), (totals, steadies)) in targets.iter().zip(lake) {
        let (l, ls) = (median(totals), median(steadies));
        println!(
            "  sluice run --once (DuckDB + Delta on {label}, no Parquet tree): {l:.2} s end to end, {ls:.2} s from assignment to the last Delta commit ({:.0} msg/s)",
            n / ls
        );
        println!(
            "  ratio lake ({label})/DuckDB + Parquet, steady state (the throughput figure): {:.2}x; end to end {:.2}x",
            ss / ls,
            s / l
        );
    }
    Ok(())
}

/// One round of sluice publishing to a Delta table: seconds end to end, and from
/// assignment to the last Delta commit. Fails unless the table holds every message.
fn lake_round(
    sluice: &std::path::Path,
    brokers: &str,
    work: &std::path::Path,
    round: usize,
    args: &Args,
    target: &LakeTarget,
) -> anyhow::Result<(f64, f64)> {
    let data = work.join(format!("lake-{round}"));
    let config = work.join(format!("lake-{round}.toml"));
    let log = work.join(format!("lake-{round}.log"));
    let mut text = config_text(brokers, &data, round, args);
    text.push_str("[parquet]\nenabled = false\n[lake]\nformat = \"delta\"\n");
    let (table, options) = match target {
        LakeTarget::Local => {
            text.push_str("uri = \"lake\"\n");
            let table = url::Url::from_directory_path(data.join("lake/orders"))
                .map_err(|()| anyhow::anyhow!("not an absolute path"))?;
            (table, Default::default())
        }
        LakeTarget::S3(server) => {
            let prefix = format!("round-{round}");
            text.push_str(&format!(
                "uri = \"s3://bench/{prefix}\"\n[lake.storage_options]\n"
            ));
            for (k, v) in server.options() {
                text.push_str(&format!("{k} = {v:?}\n"));
            }
            (
                url::Url::parse(&format!("s3://bench/{prefix}/orders/"))?,
                server.options(),
            )
        }
    };
    std::fs::write(&config, text)?;
    let server_cpu = || match target {
        LakeTarget::S3(server) => server.cpu_secs().map(Some),
        LakeTarget::Local => Ok(None),
    };
    let server_before = server_cpu()?;
    let sample = run_measured(
        Command::new(sluice)
            .args(["run", "--once", "--config"])
            .arg(&config)
            .env("SLUICE_LOG", log_filter())
            .stderr(std::fs::File::create(&log)?),
    )
    .with_context(|| log_tail(&log))?;
    let server_used = server_cpu()?.zip(server_before).map(|(a, b)| a - b);
    if timeline() {
        eprintln!("{}", std::fs::read_to_string(&log)?);
    }
    let (rows, last_commit_ms) = crate::lake_table::rows_and_last_commit(&table, &options)?;
    if rows != args.messages {
        bail!(
            "the Delta table holds {rows} rows of {} messages",
            args.messages
        );
    }
    let assigned = assigned_at(&log)?;
    let steady = (last_commit_ms * 1000 - assigned) as f64 / 1e6;
    let _ = std::fs::remove_dir_all(&data);
    eprintln!(
        "round {round}: sluice with the lake ({}) {:.2}s ({steady:.2}s from assignment to the last Delta commit), {:.2} CPU-s, peak RSS {} MiB{}",
        match target {
            LakeTarget::Local => "local",
            LakeTarget::S3(_) => "S3",
        },
        sample.secs,
        sample.cpu_secs,
        sample.max_rss_kib / 1024,
        server_used.map_or(String::new(), |s| format!(
            "; the S3 server used {s:.2} CPU-s of the same cores"
        ))
    );
    eprintln!(
        "  sluice's CPU by thread: {}",
        crate::threads::describe(&sample.threads)
    );
    Ok((sample.secs, steady))
}

/// The end of a failed run's log, for the error; the whole log is kept in the system's
/// temporary directory (the bench's own is removed).
fn log_tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let kept = std::env::temp_dir().join(format!("sluice-bench-failed-{}.log", std::process::id()));
    let _ = std::fs::write(&kept, &text);
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "sluice's log ({}) ends:\n{}",
        kept.display(),
        lines[lines.len().saturating_sub(20)..].join("\n")
    )
}

/// When sluice logged its first "partitions assigned" (microseconds since the epoch).
fn assigned_at(log: &std::path::Path) -> anyhow::Result<i64> {
    let text = std::fs::read_to_string(log)?;
    let line = text
        .lines()
        .find(|l| l.contains("partitions assigned"))
        .context("no \"partitions assigned\" line in sluice's log")?;
    let stamp = line.split_whitespace().next().unwrap_or_default();
    Ok(chrono::DateTime::parse_from_rfc3339(stamp)
        .with_context(|| format!("the log line's time {stamp:?}"))?
        .timestamp_micros())
}

/// Seconds from sluice's first "partitions assigned" log line to its last commit.
fn sluice_steady(log: &std::path::Path, data: &std::path::Path) -> anyhow::Result<f64> {
    let assigned = assigned_at(log)?;
    let conn = duckdb::Connection::open(data.join("warehouse.duckdb"))?;
    let last: i64 = conn.query_row(
        "SELECT epoch_us(max(committed_at)) FROM _sluice.batches",
        [],
        |r| r.get(0),
    )?;
    Ok((last - assigned) as f64 / 1e6)
}

fn produce(brokers: &str, args: &Args) -> anyhow::Result<u64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut bytes = 0;
    for i in 0..args.messages {
        let payload = message(i);
        bytes += payload.len() as u64;
        let key = i.to_string();
        let record = BaseRecord::to(TOPIC)
            .partition((i % args.partitions as u64) as i32)
            .key(&key)
            .payload(&payload);
        send_waiting(&producer, record);
    }
    producer.flush(std::time::Duration::from_secs(120))?;
    Ok(bytes)
}

/// Sends one record, polling for delivery reports while the producer's queue is full.
pub(crate) fn send_waiting(producer: &BaseProducer, mut record: BaseRecord<'_, String, String>) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                producer.poll(std::time::Duration::from_millis(5));
                record = r;
            }
        }
    }
}

/// A consumer group member that only counts messages until it has seen them all: seconds
/// from joining, and from its first message.
fn drain_once(brokers: &str, round: usize, expected: u64) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("drain-{round}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[TOPIC])?;
    let mut seen = 0;
    let mut first = None;
    while seen < expected {
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                std::hint::black_box(rdkafka::Message::payload(&m));
                seen += 1;
            }
            Some(Err(e)) => bail!("drain: {e}"),
            None => {}
        }
        if started.elapsed().as_secs() > 600 {
            bail!("drain: only {seen} of {expected} messages in 10 minutes");
        }
    }
    let steady = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok((started.elapsed().as_secs_f64(), steady))
}

fn config_text(brokers: &str, data: &std::path::Path, round: usize, args: &Args) -> String {
    format!(
        "data_dir = \"{}\"\n[batch]\nmax_rows = {}\nmax_bytes = \"256MiB\"\nmax_age = \"5s\"\n\
         [sources.orders]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopics = [\"{TOPIC}\"]\ngroup_id = \"sluice-{round}\"\n\
         [sources.orders.schema]\norder_id = \"BIGINT\"\ncustomer_id = \"BIGINT\"\namount = \"DECIMAL(12,2)\"\n\
         currency = \"VARCHAR\"\nordered_at = \"TIMESTAMP\"\nnote = \"VARCHAR\"\n",
        data.display(),
        args.max_rows
    )
}

fn count_rows(data: &std::path::Path) -> anyhow::Result<u64> {
    let conn = duckdb::Connection::open(data.join("warehouse.duckdb"))?;
    let n: i64 = conn.query_row("SELECT count(*) FROM raw.orders", [], |r| r.get(0))?;
    Ok(n as u64)
}

/// `SLUICE_BENCH_TIMELINE=1` prints sluice's log of each round (assignment, commits and
/// their phases, shutdown) with its timestamps.
fn timeline() -> bool {
    std::env::var_os("SLUICE_BENCH_TIMELINE").is_some()
}

fn log_filter() -> &'static str {
    if timeline() {
        "info,sluice_sinks::warehouse=debug,sluice::lake=debug"
    } else {
        "info"
    }
}
