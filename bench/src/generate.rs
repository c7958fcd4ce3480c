//! Deterministic CSV data with ten mixed columns (integers, decimals, doubles, strings,
//! timestamps, dates, booleans), about 110 bytes a row.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use rand::{rngs::StdRng, Rng, SeedableRng};

/// The columns, as declared to both sides.
pub const COLUMNS: [(&str, &str); 10] = [
    ("id", "BIGINT"),
    ("customer_id", "BIGINT"),
    ("amount", "DECIMAL(12,2)"),
    ("quantity", "INTEGER"),
    ("price", "DOUBLE"),
    ("currency", "VARCHAR"),
    ("status", "VARCHAR"),
    ("created_at", "TIMESTAMP"),
    ("day", "DATE"),
    ("flagged", "BOOLEAN"),
];

const STATUSES: [&str; 4] = ["pending", "paid", "refunded", "shipped"];
const CURRENCIES: [&str; 3] = ["EUR", "USD", "GBP"];

/// Writes `files` files of `rows_per_file` rows into `dir`; returns the bytes written.
pub fn write_files(dir: &Path, files: usize, rows_per_file: usize) -> anyhow::Result<u64> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut bytes = 0u64;
    for f in 0..files {
        let path = dir.join(format!("part-{f:03}.csv"));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let header: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        writeln!(out, "{}", header.join(","))?;
        for r in 0..rows_per_file {
            let id = (f * rows_per_file + r) as u64;
            let secs = rng.random_range(0..86_400 * 365);
            let (d, s) = (secs / 86_400, secs % 86_400);
            let day = 1 + d % 28;
            let month = 1 + (d / 28) % 12;
            writeln!(
                out,
                "{id},{},{}.{:02},{},{:.4},{},{},2026-{month:02}-{day:02} {:02}:{:02}:{:02},2026-{month:02}-{day:02},{}",
                rng.random_range(1..1_000_000u32),
                rng.random_range(0..100_000u32),
                rng.random_range(0..100u32),
                rng.random_range(1..500u32),
                rng.random_range(0.0..1000.0f64),
                CURRENCIES[rng.random_range(0..CURRENCIES.len())],
                STATUSES[rng.random_range(0..STATUSES.len())],
                s / 3600,
                (s / 60) % 60,
                s % 60,
                rng.random_bool(0.1),
            )?;
        }
        out.flush()?;
        bytes += std::fs::metadata(&path)?.len();
    }
    Ok(bytes)
}
