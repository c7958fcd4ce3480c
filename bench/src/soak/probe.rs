//! Reading the running daemon from outside, as an operator would: its `/metrics`, and
//! `/proc` and the data directory for what it holds (memory, descriptors, files).

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;

/// One sample of the daemon's footprint and progress.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Seconds since the soak phase began (negative during calibration).
    pub t: f64,
    pub csv_rows: u64,
    pub kafka_rows: u64,
    pub rss_kib: u64,
    pub fds: u64,
    pub db_bytes: u64,
    pub wal_bytes: u64,
    pub parquet_files: u64,
    pub mart_freshness: f64,
    /// What DuckDB itself accounts for (`duckdb_memory()`, read over the SQL endpoint).
    pub duckdb_memory: u64,
}

impl Sample {
    pub fn header() -> &'static str {
        "| t (s) | CSV rows | Kafka rows | RSS MiB | DuckDB memory MiB | fds | DuckDB MiB | WAL MiB | Parquet files | mart freshness (s) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    }

    pub fn row(&self) -> String {
        format!(
            "| {:.0} | {} | {} | {:.0} | {:.0} | {} | {:.0} | {:.1} | {} | {:.2} |",
            self.t,
            self.csv_rows,
            self.kafka_rows,
            self.rss_kib as f64 / 1024.0,
            self.duckdb_memory as f64 / MIB,
            self.fds,
            self.db_bytes as f64 / MIB,
            self.wal_bytes as f64 / MIB,
            self.parquet_files,
            self.mart_freshness
        )
    }
}

pub const MIB: f64 = 1024.0 * 1024.0;

/// The daemon under test: its pid, HTTP address and data directory.
pub struct Daemon {
    pub pid: u32,
    pub addr: String,
    /// The SQL endpoint's port (psql reads DuckDB's memory accounting through it).
    pub sql_port: u16,
    pub data: PathBuf,
}

impl Daemon {
    pub fn sample(&self, t: f64) -> anyhow::Result<Sample> {
        let metrics = self.metrics()?;
        let db = self.data.join("warehouse.duckdb");
        Ok(Sample {
            t,
            csv_rows: metric(
                &metrics,
                "sluice_rows_ingested_total",
                "source=\"csv_orders\"",
            ) as u64,
            kafka_rows: metric(
                &metrics,
                "sluice_rows_ingested_total",
                "source=\"kafka_orders\"",
            ) as u64,
            rss_kib: proc_status(self.pid, "VmRSS:").unwrap_or(0),
            fds: std::fs::read_dir(format!("/proc/{}/fd", self.pid))
                .map(|d| d.count() as u64)
                .unwrap_or(0),
            db_bytes: size(&db),
            wal_bytes: size(&db.with_extension("duckdb.wal")),
            parquet_files: count_files(&self.data.join("parquet")),
            mart_freshness: metric(&metrics, "sluice_model_freshness_seconds", "fresh_orders"),
            duckdb_memory: self.duckdb_memory().unwrap_or(0),
        })
    }

    /// Bytes DuckDB accounts for (buffer pool and the rest `duckdb_memory()` lists),
    /// asked of the running daemon with psql.
    fn duckdb_memory(&self) -> Option<u64> {
        let out = std::process::Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "sluice",
                "-d",
                "sluice",
            ])
            .args(["-p", &self.sql_port.to_string()])
            .args(["-c", "SELECT sum(memory_usage_bytes) FROM duckdb_memory()"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// The text of `/metrics`.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(&self.addr).context("connecting to /metrics")?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.addr
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default())
    }

    /// A counter's value summed over the label sets containing `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> anyhow::Result<f64> {
        Ok(metric(&self.metrics()?, name, labels))
    }
}

/// Sums the samples of `name` whose labels contain `labels`.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A `/proc/<pid>/status` field in KiB.
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn count_files(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}
