//! The Kafka benchmark: a plain rdkafka consumer that only drains the topic (the ceiling)
//! vs `sluice run --once` consuming the same topic into DuckDB and Parquet, same run,
//! alternating. The broker is librdkafka's mock cluster in this process; both sides join a
//! fresh consumer group each round (the mock delays a group's first rebalance by about
//! 3 s, which both pay).

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig,
};

use crate::csv_bench::{median, run_sluice, tempfile_dir};

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
    let sluice = match &args.sluice {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("sluice"),
    };
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
    let (mut drain, mut ours, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.runs {
        drain.push(drain_once(&brokers, round, args.messages)?);
        let data = work.path().join(format!("sluice-{round}"));
        let config = work.path().join(format!("sluice-{round}.toml"));
        std::fs::write(&config, config_text(&brokers, &data, round, args))?;
        let sample = run_sluice(&sluice, &config)?;
        let rows = count_rows(&data)?;
        if rows != args.messages {
            bail!("sluice committed {rows} rows of {} messages", args.messages);
        }
        let _ = std::fs::remove_dir_all(&data);
        eprintln!(
            "round {round}: drain {:.2}s, sluice {:.2}s",
            drain[round], sample.secs
        );
        ours.push(sample.secs);
        rss.push(sample.max_rss_kib as f64);
    }
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
        "  sluice run --once (DuckDB + Parquet):     {s:.2} s  {:>10.0} msg/s  {:>6.1} MB/s  peak RSS {:.0} MiB",
        n / s,
        mb / s,
        median(rss) / 1024.0
    );
    println!("  ratio sluice/drain throughput: {:.2}x", d / s);
    Ok(())
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

/// A consumer group member that only counts messages until it has seen them all.
fn drain_once(brokers: &str, round: usize, expected: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("drain-{round}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[TOPIC])?;
    let mut seen = 0;
    while seen < expected {
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(m)) => {
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
    Ok(started.elapsed().as_secs_f64())
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
