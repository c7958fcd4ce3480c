//! The live SQL benchmarks (`bench/clients/sql_client.py` is the client, psycopg 3):
//!
//! - `sql-fetch`: a 1M-row, 10-column result fetched through sluice's Postgres endpoint
//!   by psycopg (binary), against the same query run by DuckDB in-process in Python on a
//!   copy of the same database file; alternating, medians, the throughput ratio.
//! - `sql-load`: CSV ingest (files renamed into the inbox, timed until every full batch is
//!   committed: the last, partial one waits for `batch.max_age`, which would count a fixed
//!   pause as throughput) with models running, idle against `--clients` clients running aggregate
//!   queries on a mart in a loop plus one client running point queries on another;
//!   the throughput ratio, and the point queries' p50/p99 latency during ingestion.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::csv_bench::{median, tempfile_dir};
use crate::daemon::{alive, sluice_binary, start, stop, wait_for_http, wait_for_sql, Guarded};
use crate::generate::{write_files, COLUMNS};

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Rows in the result.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Rows ingested per round.
    #[arg(long, default_value_t = 2_000_000)]
    rows: usize,
    /// Files the rows are split into.
    #[arg(long, default_value_t = 20)]
    files: usize,
    /// Clients running aggregate queries during the loaded rounds.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Rounds (each an idle and a loaded ingest); medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The daemon's duckdb.threads (default: DuckDB's, every core).
    #[arg(long)]
    threads: Option<u16>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The sluice binary (default: next to this one).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Python with psycopg and duckdb (default: $SLUICE_TEST_PYTHON, set by scripts/bench.sh).
    #[arg(long, env = "SLUICE_TEST_PYTHON", default_value = "python3")]
    python: PathBuf,
}

impl Common {
    fn sluice(&self) -> anyhow::Result<PathBuf> {
        sluice_binary(self.sluice.as_deref())
    }
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/sql_client.py")
}

/// Runs the client to completion; its JSON.
fn client(python: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(python)
        .arg(client_script())
        .args(args)
        .output()
        .context("running the Python client")?;
    if !out.status.success() {
        bail!(
            "client {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("the client's output is not JSON")
}

/// A config with one CSV source `src` (the bench's ten columns) and the SQL endpoint.
fn config(
    root: &Path,
    models: Option<&Path>,
    threads: Option<u16>,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox)?;
    let schema: Vec<String> = COLUMNS
        .iter()
        .map(|(n, t)| format!("{n} = \"{t}\""))
        .collect();
    let models = models
        .map(|m| format!("[models]\ndir = \"{}\"\n", m.display()))
        .unwrap_or_default();
    let duckdb = threads
        .map(|t| format!("[duckdb]\nthreads = {t}\n"))
        .unwrap_or_default();
    let path = root.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n{duckdb}[http]\nlisten = \"127.0.0.1:0\"\n[sql]\nlisten = \"127.0.0.1:0\"\n\
             {models}[sources.src]\ntype = \"csv\"\npath = \"{}\"\nafter_ingest = \"delete\"\n\
             [sources.src.schema]\n{}\n",
            root.join("data").display(),
            inbox.display(),
            schema.join("\n")
        ),
    )?;
    Ok((path, inbox))
}

pub fn fetch(args: &FetchArgs) -> anyhow::Result<()> {
    let sluice = args.common.sluice()?;
    let temp = tempfile_dir(args.common.dir.as_deref())?;
    let root = temp.path();
    let (config, _) = config(root, None, None)?;
    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    let db = data.join("warehouse.duckdb");
    eprintln!("creating a {}-row, 10-column table...", args.rows);
    {
        let conn = duckdb::Connection::open(&db)?;
        conn.execute_batch(&format!(
            "CREATE SCHEMA raw; CREATE TABLE raw.wide AS SELECT i AS id, i % 1000 AS customer_id, \
             ((i % 100000) / 100)::DECIMAL(12,2) AS amount, (i % 7)::INTEGER AS quantity, \
             i * 0.5 AS price, ['EUR', 'USD', 'GBP'][i % 3 + 1] AS currency, \
             'status-' || (i % 4) AS status, TIMESTAMP '2024-01-01' + to_seconds(i) AS created_at, \
             DATE '2024-01-01' + (i % 365)::INTEGER AS day, i % 2 = 0 AS flagged \
             FROM range({}) t(i); CHECKPOINT;",
            args.rows
        ))?;
    }
    let reference = root.join("reference.duckdb");
    std::fs::copy(&db, &reference)?;
    let log = root.join("sluice.log");
    let mut child = start(&sluice, &config, &log)?;
    let port = wait_for_sql(&log, &mut child)?.to_string();
    let query = "SELECT * FROM raw.wide";
    let (mut ours, mut duck) = (Vec::new(), Vec::new());
    for round in 0..args.runs {
        alive(&mut child, &log)?;
        let pg = client(&args.common.python, &["fetch", "pg", &port, query])?;
        let reference = reference.display().to_string();
        let native = client(&args.common.python, &["fetch", "duckdb", &reference, query])?;
        for (what, r) in [("sluice", &pg), ("duckdb", &native)] {
            if r["rows"].as_u64() != Some(args.rows as u64) {
                bail!("{what} fetched {} rows, not {}", r["rows"], args.rows);
            }
        }
        ours.push(pg["seconds"].as_f64().unwrap_or(f64::NAN));
        duck.push(native["seconds"].as_f64().unwrap_or(f64::NAN));
        eprintln!(
            "round {round}: psycopg via sluice {:.2}s, duckdb in-process {:.2}s",
            ours[round], duck[round]
        );
    }
    stop(child)?;
    let (s, d) = (median(ours), median(duck));
    let rows = args.rows as f64;
    println!(
        "sql fetch: {} rows x 10 columns, {} runs (medians)",
        args.rows, args.runs
    );
    println!(
        "  duckdb in-process (Python fetchall):   {d:.2} s  {:>10.0} rows/s",
        rows / d
    );
    println!(
        "  psycopg via sluice (binary fetchall):  {s:.2} s  {:>10.0} rows/s",
        rows / s
    );
    println!("  ratio (sluice / in-process throughput): {:.2}x", d / s);
    Ok(())
}

/// The marts the load bench queries: every order (point queries by id) and an additive
/// aggregate by status and currency.
const ORDERS: &str = "{{ config(materialized='incremental', incremental_strategy='append') }}\n\
select id, customer_id, amount, status, currency from {{ ref('src') }} where {{ new_rows() }}\n";
/// sluice's default `batch.max_rows` (the bench's config keeps the defaults).
const BATCH_ROWS: u64 = 122_880;
const AGGREGATE: &str = "SELECT currency, status, count(*), sum(amount), avg(customer_id) \
                         FROM orders GROUP BY ALL ORDER BY ALL";

pub fn load(args: &LoadArgs) -> anyhow::Result<()> {
    let sluice = args.common.sluice()?;
    let temp = tempfile_dir(args.common.dir.as_deref())?;
    let root = temp.path();
    let generated = root.join("generated");
    std::fs::create_dir_all(&generated)?;
    eprintln!("generating {} rows in {} files...", args.rows, args.files);
    write_files(&generated, args.files, args.rows / args.files)?;
    let rows = (args.rows / args.files * args.files) as u64;
    let models = root.join("models");
    std::fs::create_dir_all(&models)?;
    std::fs::write(models.join("orders.sql"), ORDERS)?;
    let (mut idle, mut loaded, mut p50, mut p99, mut aggs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_idle, mut cpu_loaded) = (Vec::new(), Vec::new());
    for round in 0..args.runs {
        for busy in [false, true] {
            let run = root.join(format!(
                "round-{round}-{}",
                if busy { "loaded" } else { "idle" }
            ));
            let outcome = ingest(&sluice, args, &run, &generated, &models, rows, busy)?;
            eprintln!(
                "round {round} {}: {:.2}s ({:.0} rows/s), CPU sluice {:.2}s clients {:.2}s{}",
                if busy { "loaded" } else { "idle" },
                outcome.secs,
                outcome.rate,
                outcome.sluice_cpu,
                outcome.clients_cpu,
                outcome
                    .point
                    .as_ref()
                    .map(|p| format!(
                        ", point p50 {} ms p99 {} ms ({} queries), aggregates {}",
                        p["p50_ms"], p["p99_ms"], p["queries"], outcome.aggregates
                    ))
                    .unwrap_or_default()
            );
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let share = |c: f64| c / (outcome.secs * cores);
            if busy {
                cpu_loaded.push((share(outcome.sluice_cpu), share(outcome.clients_cpu)));
                loaded.push(outcome.rate);
                if let Some(p) = &outcome.point {
                    p50.push(p["p50_ms"].as_f64().unwrap_or(f64::NAN));
                    p99.push(p["p99_ms"].as_f64().unwrap_or(f64::NAN));
                }
                aggs.push(outcome.aggregates as f64 / outcome.secs);
            } else {
                cpu_idle.push(share(outcome.sluice_cpu));
                idle.push(outcome.rate);
            }
            let _ = std::fs::remove_dir_all(&run);
        }
    }
    let (i, l) = (median(idle), median(loaded));
    println!(
        "sql load: {rows} rows in {} files, models on, {} runs (medians)",
        args.files, args.runs
    );
    println!("  ingest, no clients:                       {i:>10.0} rows/s");
    println!(
        "  ingest, {} aggregate clients + 1 point:   {l:>10.0} rows/s  ({:.1} aggregate queries/s)",
        args.clients,
        median(aggs)
    );
    println!("  ratio (loaded / idle throughput): {:.2}x", l / i);
    println!(
        "  CPU used of all cores during the ingest: idle: sluice {:.0}%; loaded: sluice {:.0}%, clients {:.0}%",
        100.0 * median(cpu_idle),
        100.0 * median(cpu_loaded.iter().map(|c| c.0).collect()),
        100.0 * median(cpu_loaded.iter().map(|c| c.1).collect()),
    );
    println!(
        "  point query on the orders mart during ingestion: p50 {:.2} ms, p99 {:.2} ms",
        median(p50),
        median(p99)
    );
    Ok(())
}

struct Outcome {
    /// Seconds until every full batch was committed, and the rows a second till then.
    secs: f64,
    rate: f64,
    point: Option<serde_json::Value>,
    aggregates: u64,
    /// CPU seconds used during the ingest by the daemon and by the clients.
    sluice_cpu: f64,
    clients_cpu: f64,
}

/// One ingest of the generated files into a fresh data directory, with or without clients.
fn ingest(
    sluice: &Path,
    args: &LoadArgs,
    run: &Path,
    generated: &Path,
    models: &Path,
    rows: u64,
    busy: bool,
) -> anyhow::Result<Outcome> {
    let (config, inbox) = config(run, Some(models), args.threads)?;
    // Staged on the same filesystem, then renamed in: files appear whole and at once.
    let staging = run.join("staging");
    std::fs::create_dir_all(&staging)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(generated)? {
        let from = entry?.path();
        let to = staging.join(from.file_name().context("a file name")?);
        std::fs::copy(&from, &to)?;
        files.push(to);
    }
    let log = run.join("sluice.log");
    let mut child = start(sluice, &config, &log)?;
    let http = wait_for_http(&log, &mut child)?;
    let port = wait_for_sql(&log, &mut child)?.to_string();
    // The source watches its directory once the daemon is ready: files renamed in
    // before that are found by the start-up scan, which waits `settle` for them.
    wait_ready(&http, &mut child, &log)?;
    let mut clients: Vec<Guarded> = Vec::new();
    if busy {
        for _ in 0..args.clients {
            clients.push(spawn_client(
                &args.common.python,
                &["loop", &port, AGGREGATE],
            )?);
        }
        clients.push(spawn_client(
            &args.common.python,
            &["point", &port, &rows.to_string()],
        )?);
    }
    let cpu = |pids: &[u32]| pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let client_pids: Vec<u32> = clients.iter().map(|c| c.id()).collect();
    let (sluice_before, clients_before) = (cpu(&[child.id()]), cpu(&client_pids));
    let started = Instant::now();
    for f in &files {
        std::fs::rename(f, inbox.join(f.file_name().context("a file name")?))?;
    }
    // Timed until the last full batch is in: the rest (less than a batch) waits for
    // batch.max_age, a fixed pause both kinds of round would pay.
    let timed = wait_committed(&http, rows.saturating_sub(BATCH_ROWS), &mut child, &log)?;
    let secs = started.elapsed().as_secs_f64();
    let sluice_cpu = cpu(&[child.id()]) - sluice_before;
    let clients_cpu = cpu(&client_pids) - clients_before;
    wait_committed(&http, rows, &mut child, &log)?;
    let mut point = None;
    let mut aggregates = 0;
    for (i, c) in clients.into_iter().enumerate() {
        let out = finish_client(c)?;
        if i == args.clients {
            point = Some(out);
        } else {
            aggregates += out["queries"].as_u64().unwrap_or(0);
        }
    }
    stop(child)?;
    Ok(Outcome {
        secs,
        rate: timed as f64 / secs,
        point,
        aggregates,
        sluice_cpu,
        clients_cpu,
    })
}

/// CPU time (user + system) a process has used so far, in seconds; 0 if unreadable.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) closed by its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the file (11 and 12 after the name), in
    // clock ticks: USER_HZ, 100 on Linux's mainstream architectures.
    (ticks(11) + ticks(12)) / 100.0
}

fn spawn_client(python: &Path, args: &[&str]) -> anyhow::Result<Guarded> {
    Command::new(python)
        .arg(client_script())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a Python client")
        .map(Guarded::new)
}

/// SIGTERM, then the client's JSON.
fn finish_client(mut child: Guarded) -> anyhow::Result<serde_json::Value> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    let status = child.wait()?;
    child.ended();
    if !status.success() {
        bail!("a client exited with {status}");
    }
    serde_json::from_str(&out).with_context(|| format!("client output {out:?}"))
}

/// Polls `/readyz` until it answers 200.
fn wait_ready(http: &str, child: &mut Child, log: &Path) -> anyhow::Result<()> {
    let url = format!("http://{http}/readyz");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        alive(child, log)?;
        let status = ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()?
            .status();
        if status == 200 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("sluice not ready after 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls the daemon's metrics until at least `rows` rows of `src` are committed; how many
/// are.
fn wait_committed(http: &str, rows: u64, child: &mut Child, log: &Path) -> anyhow::Result<u64> {
    let url = format!("http://{http}/metrics");
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        alive(child, log)?;
        let text = ureq::get(&url).call()?.body_mut().read_to_string()?;
        let committed = text
            .lines()
            .find(|l| l.starts_with("sluice_rows_ingested_total{source=\"src\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or(0, |n| n as u64);
        if committed >= rows {
            return Ok(committed);
        }
        if Instant::now() > deadline {
            bail!("{rows} rows not committed after 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
