//! The CSV benchmark: DuckDB native vs `sluice run --once`, same files, same machine, same
//! run, alternating so drift affects both sides alike. Each side's row count is checked
//! against the rows generated (a side that lost rows would look fast).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context};

use crate::generate::{write_files, COLUMNS};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Total rows generated.
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Number of files the rows are split into.
    #[arg(long, default_value_t = 10)]
    files: usize,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The sluice binary (default: next to this one).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// sluice's batch.max_rows (default: sluice's default).
    #[arg(long, default_value_t = 122_880)]
    max_rows: usize,
    /// sluice's batch.max_bytes (default: sluice's default).
    #[arg(long, default_value = "64MiB")]
    max_bytes: String,
    /// sluice's duckdb.memory_limit, e.g. "256MB" (default: DuckDB's, 80% of RAM).
    #[arg(long)]
    memory_limit: Option<String>,
    /// Also measure DuckDB's read_csv as sluice's reader, inside sluice's commit shape
    /// (issue 16, item 3; see `csv_duckdb_reader`), storing good rows' `_sluice_line` as given.
    #[arg(long, value_enum)]
    duckdb_reader: Option<crate::csv_duckdb_reader::Lines>,
}

pub(crate) struct Sample {
    pub(crate) secs: f64,
    pub(crate) max_rss_kib: i64,
    /// User plus system CPU time of the child (0 for in-process references).
    pub(crate) cpu_secs: f64,
    /// The child's CPU seconds by thread name, largest first (see [`crate::threads`]).
    pub(crate) threads: Vec<(String, f64)>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let temp = tempfile_dir(args.dir.as_deref())?;
    let root = temp.path().to_path_buf();
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox)?;
    let sluice = crate::daemon::sluice_binary(args.sluice.as_deref())?;
    eprintln!("generating {} rows in {} files...", args.rows, args.files);
    let bytes = write_files(&inbox, args.files, args.rows / args.files)?;
    let expected = args.rows / args.files * args.files;
    let rows = expected as f64;
    eprintln!("{:.0} MB of CSV", bytes as f64 / 1e6);
    let (mut duck, mut ours, mut reader) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.runs {
        duck.push(duckdb_native(&root, &inbox, round, expected)?);
        if let Some(lines) = args.duckdb_reader {
            let side = crate::csv_duckdb_reader::run_side(&root, &inbox, round, expected, lines)?;
            eprintln!(
                "round {round}: read_csv in sluice's commit {:.2}s",
                side.secs
            );
            reader.push(side.secs);
        }
        ours.push(sluice_once(&sluice, &root, &inbox, round, args)?);
        eprintln!(
            "round {round}: duckdb {:.2}s, sluice {:.2}s, {:.2} CPU-s; by thread: {}",
            duck[round].secs,
            ours[round].secs,
            ours[round].cpu_secs,
            crate::threads::describe(&ours[round].threads)
        );
    }
    let d = median(duck.iter().map(|s| s.secs).collect());
    let s = median(ours.iter().map(|s| s.secs).collect());
    let rss = median(ours.iter().map(|s| s.max_rss_kib as f64).collect());
    let mb = bytes as f64 / 1e6;
    println!(
        "csv ingest: {} rows, {} files, {:.0} MB, {} runs (medians)",
        rows, args.files, mb, args.runs
    );
    println!("  duckdb native (read_csv -> table, COPY TO parquet): {d:.2} s  {:>10.0} rows/s  {:>6.1} MB/s", rows / d, mb / d);
    println!("  sluice run --once (DuckDB + Parquet, exactly-once): {s:.2} s  {:>10.0} rows/s  {:>6.1} MB/s  peak RSS {:.0} MiB", rows / s, mb / s, rss / 1024.0);
    println!("  ratio sluice/duckdb throughput: {:.2}x", d / s);
    if let Some(lines) = args.duckdb_reader {
        let r = median(reader);
        println!(
            "  read_csv in sluice's commit shape (_sluice_line {lines:?}): {r:.2} s  {:>10.0} rows/s  {:>6.1} MB/s  ratio to duckdb {:.2}x",
            rows / r,
            mb / r,
            d / r
        );
    }
    Ok(())
}

/// DuckDB alone: read every file into a table in a fresh database, then write Parquet.
fn duckdb_native(
    root: &Path,
    inbox: &Path,
    round: usize,
    expected_rows: usize,
) -> anyhow::Result<Sample> {
    let db_path = root.join(format!("native-{round}.duckdb"));
    let out = root.join(format!("native-{round}.parquet"));
    let sql = format!(
        "CREATE TABLE t AS SELECT * FROM read_csv('{}/*.csv', header = true, columns = {}); \
         COPY t TO '{}' (FORMAT parquet, COMPRESSION zstd);",
        inbox.display(),
        crate::csv_duckdb_reader::columns_struct(&COLUMNS),
        out.display()
    );
    let started = Instant::now();
    let conn = duckdb::Connection::open(&db_path)?;
    conn.execute_batch(&sql).context("duckdb native")?;
    conn.execute_batch("CHECKPOINT")?;
    let secs = started.elapsed().as_secs_f64();
    let loaded: i64 = conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    drop(conn);
    if loaded != expected_rows as i64 {
        bail!("duckdb loaded {loaded} rows of {expected_rows}");
    }
    let _ = std::fs::remove_file(&db_path);
    let _ = std::fs::remove_file(&out);
    Ok(Sample {
        secs,
        max_rss_kib: 0,
        cpu_secs: 0.0,
        threads: Vec::new(),
    })
}

/// The real binary, `run --once`, on a fresh data directory over the same files.
fn sluice_once(
    sluice: &Path,
    root: &Path,
    inbox: &Path,
    round: usize,
    args: &Args,
) -> anyhow::Result<Sample> {
    let data = root.join(format!("sluice-{round}"));
    let config = root.join(format!("sluice-{round}.toml"));
    let settings = format!(
        "{}[batch]\nmax_rows = {}\nmax_bytes = \"{}\"\nmax_age = \"5s\"\n",
        args.memory_limit
            .as_deref()
            .map(|m| format!("[duckdb]\nmemory_limit = \"{m}\"\n"))
            .unwrap_or_default(),
        args.max_rows,
        args.max_bytes,
    );
    std::fs::write(
        &config,
        csv_config(&data, &settings, "bench", inbox, &COLUMNS),
    )?;
    let sample = run_sluice(sluice, &config)?;
    let committed = {
        let conn = duckdb::Connection::open(data.join("warehouse.duckdb"))?;
        conn.query_row("SELECT count(*) FROM raw.bench", [], |r| r.get::<_, i64>(0))?
    };
    let _ = std::fs::remove_dir_all(&data);
    let expected = (args.rows / args.files * args.files) as i64;
    if committed != expected {
        bail!("sluice committed {committed} rows of {expected}");
    }
    Ok(sample)
}

/// A sluice config: `data_dir`, then `settings` (TOML tables such as `[batch]`), then one
/// CSV source `source` over `inbox` (files kept after ingest) with the declared `columns`.
pub(crate) fn csv_config(
    data: &Path,
    settings: &str,
    source: &str,
    inbox: &Path,
    columns: &[(&str, &str)],
) -> String {
    let schema: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("{n} = \"{t}\""))
        .collect();
    format!(
        "data_dir = \"{}\"\n{settings}[sources.{source}]\ntype = \"csv\"\npath = \"{}\"\n\
         after_ingest = \"keep\"\nsettle = \"10ms\"\n[sources.{source}.schema]\n{}\n",
        data.display(),
        inbox.display(),
        schema.join("\n")
    )
}

/// Runs `sluice run --once --config <config>`; its wall time and peak RSS.
pub(crate) fn run_sluice(sluice: &Path, config: &Path) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(sluice);
    cmd.args(["run", "--once", "--config"])
        .arg(config)
        // SLUICE_BENCH_LOG=info shows sluice's own timeline (commits, assignments).
        .env(
            "SLUICE_LOG",
            std::env::var("SLUICE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        );
    run_measured(&mut cmd)
}

/// Runs `cmd` to completion: its wall time and peak RSS.
pub(crate) fn run_measured(cmd: &mut Command) -> anyhow::Result<Sample> {
    let cpu_before = children_cpu_secs()?;
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
    // The child's own high-water mark, sampled until it exits (it only grows). getrusage
    // of children would also count this process's memory, which the child shares between
    // spawn and exec.
    let status_file = format!("/proc/{}/status", child.id());
    let mut max_rss_kib = 0;
    let mut threads = crate::threads::ThreadCpu::default();
    let mut polls = 0u32;
    let status = loop {
        if let Some(hwm) = read_vm_hwm(&status_file) {
            max_rss_kib = max_rss_kib.max(hwm);
        }
        // Threads every 50 ms: reading each thread's stat costs this process CPU too.
        if polls.is_multiple_of(5) {
            threads.sample(child.id());
        }
        polls += 1;
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    // The benches run one child at a time: the children's CPU grows by this one's.
    let cpu_secs = children_cpu_secs()? - cpu_before;
    Ok(Sample {
        secs,
        max_rss_kib,
        cpu_secs,
        threads: threads.by_name(),
    })
}

/// User plus system CPU seconds of every child waited for so far.
fn children_cpu_secs() -> anyhow::Result<f64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(usage.user_time()) + secs(usage.system_time()))
}

/// `VmHWM` (peak resident set, KiB) from a `/proc/<pid>/status` file.
fn read_vm_hwm(path: &str) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A work directory: the given one (kept), or a temporary one removed on drop.
pub(crate) fn tempfile_dir(dir: Option<&Path>) -> anyhow::Result<WorkDir> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            Ok(WorkDir(d.to_path_buf(), false))
        }
        None => {
            let d = std::env::temp_dir().join(format!("sluice-bench-{}", std::process::id()));
            std::fs::create_dir_all(&d)?;
            Ok(WorkDir(d, true))
        }
    }
}

pub(crate) struct WorkDir(PathBuf, bool);

impl WorkDir {
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
