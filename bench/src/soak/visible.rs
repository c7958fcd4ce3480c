//! Freshness as a reader sees it: one thread per table (each raw table, and the mart per
//! source) asks the running daemon's SQL endpoint over HTTP (`POST /query`) every
//! [`POLL`] which sampled rows became visible since it last asked, and brackets the moment
//! each became visible: after the send of the last question that did not return it,
//! before the answer of the first that did. Both bounds are reported, minus the row's
//! `produced_at`.
//!
//! Rows are sampled by `order_id` (one in [`SAMPLE`]); a batch is seen whole or not at
//! all (commits are atomic and in order, so `_sluice_batch` above the last one seen finds
//! exactly the new rows).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

/// Time between polls.
pub const POLL: Duration = Duration::from_millis(100);
/// One row in this many (by `order_id`) is followed.
const SAMPLE: u64 = 97;

/// Where rows are looked for.
struct Target {
    name: &'static str,
    table: &'static str,
    via: Option<&'static str>,
    /// The highest `_sluice_batch` seen here.
    seen: i64,
    /// When the last question was sent (epoch µs).
    last_sent: i64,
    /// Seconds from produced to the last question that did not see the row (lower
    /// bound) and to the answer that did (upper bound), one pair per sampled row.
    lower: Vec<f64>,
    upper: Vec<f64>,
    /// Seconds each question took.
    rounds: Vec<f64>,
}

/// The polling threads.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<anyhow::Result<Target>>>,
}

impl Watcher {
    /// Starts polling the daemon at `addr` (host:port of its HTTP listener); only rows
    /// produced after `since_us` (epoch µs) count.
    pub fn start(addr: String, since_us: i64) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = targets()
            .into_iter()
            .map(|mut t| {
                let (flag, addr) = (stop.clone(), addr.clone());
                std::thread::spawn(move || {
                    let agent = ureq::Agent::new_with_defaults();
                    t.last_sent = now_us();
                    while !flag.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        poll(&agent, &addr, &mut t, since_us)?;
                        t.rounds.push(started.elapsed().as_secs_f64());
                        std::thread::sleep(POLL.saturating_sub(started.elapsed()));
                    }
                    Ok(t)
                })
            })
            .collect();
        Watcher { stop, threads }
    }

    /// Stops polling and prints, per table, p50/p99/max of both bounds.
    pub fn report(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        println!(
            "\n| produced -> visible through the SQL endpoint (s) | sampled rows | p50 | p99 | max | question p50 / p99 |\n|---|---:|---:|---:|---:|---:|"
        );
        for thread in self.threads {
            let t = thread
                .join()
                .map_err(|_| anyhow::anyhow!("a freshness poller panicked"))??;
            if t.upper.is_empty() || t.rounds.is_empty() {
                bail!("no sampled row of {} became visible", t.name);
            }
            let n = t.upper.len();
            let (lo, hi, r) = (quantiles(t.lower), quantiles(t.upper), quantiles(t.rounds));
            println!(
                "| {} | {n} | {:.2}-{:.2} | {:.2}-{:.2} | {:.2}-{:.2} | {:.3} / {:.3} |",
                t.name, lo[0], hi[0], lo[2], hi[2], lo[3], hi[3], r[0], r[2]
            );
        }
        println!(
            "\n(each table asked every {} ms at most over HTTP `POST /query`, one thread each; \
             a-b: the row became visible between a and b seconds after its `produced_at`)",
            POLL.as_millis()
        );
        Ok(())
    }
}

/// p50, p90, p99 and max.
fn quantiles(mut v: Vec<f64>) -> [f64; 4] {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    [q(0.5), q(0.9), q(0.99), q(1.0)]
}

fn targets() -> Vec<Target> {
    let target = |name, table, via| Target {
        name,
        table,
        via,
        seen: 0,
        last_sent: 0,
        lower: Vec::new(),
        upper: Vec::new(),
        rounds: Vec::new(),
    };
    vec![
        target("CSV -> raw.csv_orders", "raw.csv_orders", None),
        target("Kafka -> raw.kafka_orders", "raw.kafka_orders", None),
        target("CSV -> mart fresh_orders", "main.fresh_orders", Some("csv")),
        target(
            "Kafka -> mart fresh_orders",
            "main.fresh_orders",
            Some("kafka"),
        ),
    ]
}

/// One question to the endpoint: the sampled rows of batches after the last one seen.
fn poll(agent: &ureq::Agent, addr: &str, t: &mut Target, since_us: i64) -> anyhow::Result<()> {
    let via = t
        .via
        .map(|v| format!(" AND via = '{v}'"))
        .unwrap_or_default();
    let sql = format!(
        "SELECT _sluice_batch, epoch_us(produced_at) FROM {} \
         WHERE _sluice_batch > {} AND order_id % {SAMPLE} = 0{via}",
        t.table, t.seen
    );
    let sent = now_us();
    let body = serde_json::json!({ "sql": sql }).to_string();
    let text = agent
        .post(&format!("http://{addr}/query"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .send(body)
        .with_context(|| format!("POST /query for {}", t.name))?
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer for {}", t.name))?;
    let response: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("the answer for {}: {text}", t.name))?;
    let rows = response["rows"]
        .as_array()
        .with_context(|| format!("no rows in {response}"))?;
    let answered = now_us();
    for row in rows {
        let (Some(batch), Some(produced)) = (number(&row[0]), number(&row[1])) else {
            bail!("unexpected row {row}");
        };
        t.seen = t.seen.max(batch);
        if produced >= since_us {
            t.lower.push((t.last_sent - produced).max(0) as f64 / 1e6);
            t.upper.push((answered - produced) as f64 / 1e6);
        }
    }
    t.last_sent = sent;
    Ok(())
}

/// A JSON number, or a number written as a string (large integers may be).
fn number(v: &serde_json::Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
