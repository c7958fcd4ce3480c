//! The soak's inputs: a Kafka producer and a CSV dropper, each at a steady rate in its own
//! thread, and the backlogs the calibration drains. Every record carries its own
//! `produced_at` (the moment it was produced, or its file's content written), which the
//! report subtracts from the moment it became visible.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    producer::{BaseProducer, BaseRecord, Producer},
    ClientConfig,
};

pub const TOPIC: &str = "orders";

/// The columns both sources declare (CSV in this order).
pub const COLUMNS: [(&str, &str); 5] = [
    ("order_id", "BIGINT"),
    ("customer_id", "BIGINT"),
    ("amount", "DECIMAL(12,2)"),
    ("produced_at", "TIMESTAMPTZ"),
    ("note", "VARCHAR"),
];

/// CSV order ids start here, so the two sources' ids never meet.
pub const CSV_IDS: u64 = 1_000_000_000_000;

fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f+00:00")
        .to_string()
}

fn kafka_message(id: u64, at: &str) -> String {
    format!(
        r#"{{"order_id": {id}, "customer_id": {}, "amount": "{}.{:02}", "produced_at": "{at}", "note": "{}"}}"#,
        id % 10_007,
        id % 1000,
        id % 100,
        "x".repeat(16)
    )
}

fn csv_line(out: &mut impl Write, id: u64, at: &str) -> std::io::Result<()> {
    writeln!(
        out,
        "{id},{},{}.{:02},{at},{}",
        id % 10_007,
        id % 1000,
        id % 100,
        "y".repeat(40)
    )
}

pub fn producer(brokers: &str) -> anyhow::Result<BaseProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

/// Sends one message, waiting for queue room if needed.
fn send(producer: &BaseProducer, partitions: i32, id: u64, at: &str) {
    let (key, payload) = (id.to_string(), kafka_message(id, at));
    let record = BaseRecord::to(TOPIC)
        .partition((id % partitions as u64) as i32)
        .key(&key)
        .payload(&payload);
    crate::kafka_bench::send_waiting(producer, record);
}

/// Produces messages `ids` as fast as the broker takes them.
pub fn produce_backlog(
    brokers: &str,
    partitions: i32,
    ids: std::ops::Range<u64>,
) -> anyhow::Result<()> {
    let producer = producer(brokers)?;
    let at = now_text();
    for id in ids {
        send(&producer, partitions, id, &at);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Writes `rows` CSV rows (ids from `first`) into `files` files under `staging`.
pub fn write_csv_backlog(
    staging: &Path,
    first: u64,
    rows: u64,
    files: u64,
) -> anyhow::Result<Vec<PathBuf>> {
    let per_file = rows / files;
    (0..files)
        .map(|f| {
            write_csv_file(
                staging,
                &format!("backlog-{f:03}"),
                first + f * per_file,
                per_file,
            )
        })
        .collect()
}

fn write_csv_file(dir: &Path, name: &str, first: u64, rows: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.csv"));
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    writeln!(out, "{}", names.join(","))?;
    let at = now_text();
    for id in first..first + rows {
        csv_line(&mut out, id, &at)?;
    }
    out.flush()?;
    Ok(path)
}

/// Moves files into the watched directory (a rename: complete at once for sluice).
pub fn drop_into(files: &[PathBuf], inbox: &Path) -> anyhow::Result<()> {
    for f in files {
        let name = f.file_name().context("file name")?;
        std::fs::rename(f, inbox.join(name))?;
    }
    Ok(())
}

/// A feeder thread; `stop` ends it and `join` returns how many records it produced.
pub struct Feeder {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<u64>>,
}

impl Feeder {
    pub fn stop(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.join() {
            Ok(result) => result,
            Err(_) => bail!("feeder thread panicked"),
        }
    }
}

fn spawn(work: impl FnOnce(&AtomicBool) -> anyhow::Result<u64> + Send + 'static) -> Feeder {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    Feeder {
        stop,
        handle: std::thread::spawn(move || work(&flag)),
    }
}

/// Paces work in slices: returns how many records are due in the next slice so that the
/// running total follows `rate` per second (no drift from rounding or slow slices).
struct Pace {
    rate: f64,
    started: Instant,
    done: u64,
}

impl Pace {
    fn due(&self) -> u64 {
        ((self.started.elapsed().as_secs_f64() * self.rate) as u64).saturating_sub(self.done)
    }
}

/// Produces `rate` messages a second (ids from `first`) until stopped.
pub fn kafka_feeder(brokers: String, partitions: i32, rate: f64, first: u64) -> Feeder {
    spawn(move |stop| {
        let producer = producer(&brokers)?;
        let mut pace = Pace {
            rate,
            started: Instant::now(),
            done: 0,
        };
        while !stop.load(Ordering::SeqCst) {
            let at = now_text();
            for _ in 0..pace.due() {
                send(&producer, partitions, first + pace.done, &at);
                pace.done += 1;
            }
            producer.poll(Duration::from_millis(10));
        }
        producer.flush(Duration::from_secs(120))?;
        Ok(pace.done)
    })
}

/// Drops a CSV file every `interval` with the rows due at `rate` (ids from `first`).
pub fn csv_feeder(
    staging: PathBuf,
    inbox: PathBuf,
    rate: f64,
    interval: Duration,
    first: u64,
) -> Feeder {
    spawn(move |stop| {
        let mut pace = Pace {
            rate,
            started: Instant::now(),
            done: 0,
        };
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let next = pace.started + interval.mul_f64((n + 1) as f64);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            let rows = pace.due();
            if rows > 0 {
                let file =
                    write_csv_file(&staging, &format!("soak-{n:06}"), first + pace.done, rows)?;
                drop_into(&[file], &inbox)?;
                pace.done += rows;
            }
            n += 1;
        }
        Ok(pace.done)
    })
}

/// Messages delivered to the topic (sum of high watermarks). With `untouched`, fails if
/// the broker has deleted any (the mock keeps about 5 MB per partition): a backlog must
/// fit, or the calibration would wait for rows that are gone.
pub fn delivered(brokers: &str, partitions: i32, untouched: bool) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let mut total = 0;
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        if untouched && low > 0 {
            bail!("the mock broker deleted offsets 0..{low} of partition {p} (retention): produce fewer messages per partition");
        }
        total += high as u64;
    }
    Ok(total)
}
