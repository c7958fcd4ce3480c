//! DuckDB's own CSV reader as sluice's reader (issue 16, item 3), measured beside today's:
//! the CSV bench's third side (`--duckdb-reader`) and the bad-input cases (`csv-cases`,
//! in [`crate::csv_cases`]).
//!
//! The side does, per file, what a sluice commit would do if `read_csv` read the file
//! inside the commit transaction: the rows with sluice's provenance columns inserted into
//! `raw.bench` straight from `read_csv` (declared schema, fixed dialect), the rejected
//! rows (`store_rejects`) into `_sluice.dead_letters` with their line and text, the
//! batch's rows written to zstd Parquet from the table (`COPY (SELECT ...)`, fsynced),
//! the ledger and file rows (`sluice_state`'s schema; the file's BLAKE3 hashed by a
//! second thread meanwhile), then `COMMIT`. One file is one batch: `read_csv` reads whole
//! files, so `batch.max_rows` cannot cut it.
//!
//! What this route cannot give (see `csv-cases` for each, measured): `_sluice_line` for
//! good rows (DuckDB has no line column for CSV; [`Lines::RowNumber`] stands in with the
//! record's ordinal, right only for files without rejected rows, blank lines or quoted
//! line breaks), physical line numbers after a quoted line break, columns matched by
//! header name, and reading from a byte offset (a grown or partly committed file).

use std::{
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context};

use crate::{csv_bench::Sample, generate::COLUMNS};

/// What the side stores as `_sluice_line` of good rows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Lines {
    /// NULL: the cheapest, the guarantee dropped.
    Null,
    /// `row_number() OVER () + 1`: the record's ordinal plus the header (not its physical
    /// line once a file has rejected rows, blank lines or quoted line breaks).
    RowNumber,
}

/// The `read_csv(...)` call sluice would make for `path` with the declared `columns`:
/// the dialect fixed (no sniffing), rejected rows kept in the temporary tables
/// `sluice_rejects` and `sluice_reject_scans`.
pub fn read_csv_call(path: &Path, columns: &[(&str, &str)]) -> String {
    format!(
        "read_csv('{}', header = true, columns = {}, delim = ',', quote = '\"', \
         escape = '\"', store_rejects = true, rejects_table = 'sluice_rejects', \
         rejects_scan = 'sluice_reject_scans')",
        path.display(),
        columns_struct(columns)
    )
}

/// `read_csv`'s `columns` argument: `{'name': 'TYPE', ...}`.
pub fn columns_struct(columns: &[(&str, &str)]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("'{n}': '{t}'"))
        .collect();
    format!("{{{}}}", columns.join(", "))
}

/// One round of the side over every file of `inbox`, into a fresh database under `root`.
pub fn run_side(
    root: &Path,
    inbox: &Path,
    round: usize,
    expected_rows: usize,
    lines: Lines,
) -> anyhow::Result<Sample> {
    let data = root.join(format!("readcsv-{round}"));
    std::fs::create_dir_all(data.join("parquet"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(inbox)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let started = Instant::now();
    let conn = duckdb::Connection::open(data.join("warehouse.duckdb"))?;
    sluice_state::ensure(&conn)?;
    conn.execute_batch(&raw_table_ddl())?;
    let mut phases = Phases::default();
    for (i, file) in files.iter().enumerate() {
        commit_file(&conn, &data, file, i as i64 + 1, lines, &mut phases)
            .with_context(|| format!("read_csv commit of {}", file.display()))?;
    }
    let checkpoint = Instant::now();
    conn.execute_batch("CHECKPOINT")?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  read_csv side's phases: insert {:.2}s, dead letters {:.2}s, Parquet (COPY + fsync) {:.2}s, \
         ledger + COMMIT {:.2}s, final CHECKPOINT {:.2}s",
        phases.insert,
        phases.dead_letters,
        phases.parquet,
        phases.commit,
        checkpoint.elapsed().as_secs_f64()
    );
    let loaded: i64 = conn.query_row("SELECT count(*) FROM raw.bench", [], |r| r.get(0))?;
    drop(conn);
    let _ = std::fs::remove_dir_all(&data);
    if loaded != expected_rows as i64 {
        bail!("the read_csv side loaded {loaded} rows of {expected_rows}");
    }
    Ok(Sample {
        secs,
        max_rss_kib: 0,
        cpu_secs: 0.0,
        threads: Vec::new(),
    })
}

/// `raw.bench` as sluice creates it: the declared columns, then the provenance columns.
fn raw_table_ddl() -> String {
    let columns: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("{n} {t}")).collect();
    format!(
        "CREATE SCHEMA IF NOT EXISTS raw; CREATE TABLE raw.bench ({}, _sluice_batch BIGINT, \
         _sluice_ingested_at TIMESTAMPTZ, _sluice_source VARCHAR, _sluice_file VARCHAR, \
         _sluice_line BIGINT)",
        columns.join(", ")
    )
}

/// Seconds spent in each step of the side's commits, summed over the files.
#[derive(Debug, Default)]
struct Phases {
    insert: f64,
    dead_letters: f64,
    parquet: f64,
    commit: f64,
}

/// Seconds since `*mark`, which moves to now.
fn lap(mark: &mut Instant) -> f64 {
    let now = Instant::now();
    let secs = now.duration_since(*mark).as_secs_f64();
    *mark = now;
    secs
}

/// One file as one batch, in one transaction.
fn commit_file(
    conn: &duckdb::Connection,
    data: &Path,
    file: &Path,
    batch: i64,
    lines: Lines,
    phases: &mut Phases,
) -> anyhow::Result<()> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .context("file name")?;
    let line = match lines {
        Lines::Null => "NULL::BIGINT",
        Lines::RowNumber => "row_number() OVER () + 1",
    };
    let parquet = data
        .join("parquet")
        .join(format!("part-{batch:06}.parquet"));
    let tmp = parquet.with_extension("parquet.tmp");
    std::thread::scope(|s| -> anyhow::Result<()> {
        let hasher = s.spawn(|| hash_file(file));
        let mut mark = Instant::now();
        conn.execute_batch("BEGIN")?;
        let rows = conn.execute(
            &format!(
                "INSERT INTO raw.bench SELECT *, {batch}, now(), 'bench', '{name}', {line} FROM {}",
                read_csv_call(file, &COLUMNS)
            ),
            [],
        )?;
        phases.insert += lap(&mut mark);
        let dead = conn.execute(
            &format!(
                "INSERT INTO _sluice.dead_letters (batch_id, source, table_name, error, raw, \
                 file, line, created_at) SELECT {batch}, 'bench', 'bench', error_message, \
                 csv_line, '{name}', line, now() FROM sluice_rejects"
            ),
            [],
        )?;
        phases.dead_letters += lap(&mut mark);
        conn.execute_batch(&format!(
            "COPY (SELECT * FROM raw.bench WHERE _sluice_batch = {batch}) TO '{}' \
             (FORMAT parquet, COMPRESSION zstd)",
            tmp.display()
        ))?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &parquet)?;
        let bytes = std::fs::metadata(&parquet)?.len();
        phases.parquet += lap(&mut mark);
        let (hash, size) = hasher.join().expect("hash thread")?;
        conn.execute(
            "INSERT INTO _sluice.batches VALUES (?, 'bench', ?, ?, ?, ?, '[]', now())",
            duckdb::params![
                batch,
                rows as i64,
                dead as i64,
                parquet.display().to_string(),
                bytes as i64
            ],
        )?;
        conn.execute(
            "INSERT INTO _sluice.files VALUES ('bench', ?, ?, ?, ?, ?, 'ingested', NULL, ?, 0, ?, now())",
            duckdb::params![&hash, &hash, name, rows as i64, dead as i64, size as i64, batch],
        )?;
        conn.execute_batch("COMMIT")?;
        phases.commit += lap(&mut mark);
        conn.execute_batch("DELETE FROM sluice_rejects; DELETE FROM sluice_reject_scans")?;
        Ok(())
    })
}

/// BLAKE3 of the file's bytes, and its length.
fn hash_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finalize().to_hex().to_string(), size))
}
