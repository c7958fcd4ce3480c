//! `sluice-bench new-fields`: a feed that brings a new column in each of `--files`
//! consecutive batches (CSV files of `--rows` rows, one batch each), against the same
//! files without the new columns, side by side in one run: time per batch (first tenth
//! against last tenth of the batches, from `_sluice.batches`), wall time and peak RSS.

use std::fmt::Write as _;
use std::path::Path;

use crate::csv_bench::{median, run_sluice, tempfile_dir, Sample};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files, one batch each; each brings one new column on the growing side.
    #[arg(long, default_value_t = 1_000)]
    files: usize,
    /// Rows per file.
    #[arg(long, default_value_t = 100)]
    rows: usize,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// The sluice binary (default: next to this one).
    #[arg(long)]
    sluice: Option<std::path::PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let sluice = crate::daemon::sluice_binary(args.sluice.as_deref())?;
    let work = tempfile_dir(args.dir.as_deref())?;
    for (side, shape) in [
        ("same", Shape::Same),
        ("growing", Shape::Growing),
        ("wide", Shape::Wide),
    ] {
        let inbox = work.path().join(format!("inbox-{side}"));
        write_files(&inbox, args, shape)?;
        let data = work.path().join(format!("data-{side}"));
        let config = work.path().join(format!("{side}.toml"));
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[http]\nlisten = \"\"\n[batch]\nmax_rows = {}\n\
                 max_age = \"10s\"\n[sources.s]\ntype = \"csv\"\npath = \"{}\"\n\
                 after_ingest = \"keep\"\nsettle = \"10ms\"\n\
                 [sources.s.schema_contract]\nmax_columns = {}\n",
                data.display(),
                args.rows,
                inbox.display(),
                args.files + 10
            ),
        )?;
        let sample = run_sluice(&sluice, &config)?;
        report(side, &sample, &data, args)?;
    }
    Ok(())
}

/// What the files' headers are.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// `id,amount` in every file.
    Same,
    /// File `i` has a column `f<i>` more than the files before it.
    Growing,
    /// Every file has every column from the start (the table is born wide), with a value
    /// in its own `f<i>` only: the cost of the width without the changes.
    Wide,
}

/// File `i` holds rows `i * rows ..`, in columns as `shape` says (files are named so that
/// they are read in order).
fn write_files(inbox: &Path, args: &Args, shape: Shape) -> anyhow::Result<()> {
    std::fs::create_dir_all(inbox)?;
    for i in 0..args.files {
        let extra: Vec<usize> = match shape {
            Shape::Same => Vec::new(),
            Shape::Growing => (1..=i).collect(),
            Shape::Wide => (1..args.files).collect(),
        };
        let mut text = String::from("id,amount");
        for f in &extra {
            write!(text, ",f{f:05}")?;
        }
        text.push('\n');
        for r in 0..args.rows {
            let id = i * args.rows + r;
            write!(text, "{id},{}", id % 1000)?;
            for f in &extra {
                match *f == i {
                    true => write!(text, ",{}", id % 7)?,
                    false => text.push(','),
                }
            }
            text.push('\n');
        }
        std::fs::write(inbox.join(format!("f{i:05}.csv")), text)?;
    }
    Ok(())
}

fn report(side: &str, sample: &Sample, data: &Path, args: &Args) -> anyhow::Result<()> {
    let conn = duckdb::Connection::open(data.join("warehouse.duckdb"))?;
    let rows: i64 = conn.query_row("SELECT count(DISTINCT id) FROM raw.s", [], |r| r.get(0))?;
    let expected = (args.files * args.rows) as i64;
    if rows != expected {
        anyhow::bail!("{side}: {rows} distinct rows of {expected}");
    }
    let columns: i64 = conn.query_row(
        "SELECT count(*) FROM (DESCRIBE raw.s) WHERE column_name NOT LIKE '\\_sluice\\_%' ESCAPE '\\'",
        [],
        |r| r.get(0),
    )?;
    // Seconds between one batch's commit and the next's, in batch order (read as raw
    // microseconds: TIMESTAMPTZ arithmetic needs DuckDB's ICU extension).
    let mut stmt = conn.prepare("SELECT committed_at FROM _sluice.batches ORDER BY batch_id")?;
    let micros: Vec<i64> = stmt
        .query_map([], |r| r.get::<_, duckdb::types::Value>(0))?
        .map(|v| match v? {
            duckdb::types::Value::Timestamp(_, t) => Ok(t),
            other => anyhow::bail!("committed_at is {other:?}"),
        })
        .collect::<anyhow::Result<_>>()?;
    let gaps: Vec<f64> = micros
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .collect();
    let tenth = (gaps.len() / 10).max(1);
    let first = median(gaps[..tenth].to_vec());
    let last = median(gaps[gaps.len() - tenth..].to_vec());
    println!(
        "{side}: {} batches, {columns} data columns, {:.2} s, peak RSS {} MiB; \
         per batch (median) first tenth {:.1} ms, last tenth {:.1} ms ({:.2}x)",
        gaps.len() + 1,
        sample.secs,
        sample.max_rss_kib / 1024,
        first * 1e3,
        last * 1e3,
        last / first
    );
    Ok(())
}
