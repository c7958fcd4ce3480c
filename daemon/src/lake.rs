//! The lake thread: with `[lake]`, follows DuckDB's commits and publishes them to the
//! Delta tables ([`sluice_lake::Publisher`]), on a thread and a connection of its own.
//!
//! The lake never holds up ingestion: when the store cannot be written (down, refusing
//! credentials, full), batches keep committing to DuckDB, the thread retries with
//! backoff, `/readyz` and `/status` say why, `sluice_lake_behind_batches` grows, and when
//! the store is back the lake catches up from DuckDB, each batch once. The bound is
//! DuckDB's own: its disk.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use chrono::Utc;
use duckdb::Connection;
use sluice_core::{retry::Backoff, Ident, SharedLedger};
use sluice_lake::{Publisher, TableSpec};
use sluice_sinks::Warehouse;
use tracing::{debug, info, warn};

use crate::{
    config::Config,
    health::Health,
    telemetry::{self, Upkeep},
};

/// How long past its deadline a finishing lake thread is waited for.
const FINISH_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for a commit before looking again (another writer's progress, a retry).
const IDLE: Duration = Duration::from_secs(1);
/// How often vacuum and retention run on each table (compaction runs whenever the lake
/// is caught up).
const UPKEEP_EVERY: Duration = Duration::from_secs(3600);
/// Pauses between attempts while the store fails.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// The running lake thread.
#[derive(Debug)]
pub struct LakeThread {
    /// The thread's outcome when it ends (it is not joined: a store call that hangs must
    /// not hold up a stop).
    done: std::sync::mpsc::Receiver<Result<(), String>>,
    /// Set when ingestion ended: publish what is left until then, and stop.
    finish_by: Arc<Mutex<Option<Instant>>>,
    health: Arc<Health>,
    /// By raw table, for the sources whose streams other instances share.
    pub ledgers: HashMap<String, Arc<dyn SharedLedger>>,
}

/// Starts the lake thread if `[lake]` is configured.
pub fn start(
    config: &Config,
    warehouse: &Warehouse,
    health: &Arc<Health>,
) -> anyhow::Result<Option<LakeThread>> {
    let Some(lake) = &config.lake else {
        return Ok(None);
    };
    let conn = warehouse
        .connection()
        .try_clone()
        .context("opening the lake's connection")?;
    let writer =
        sluice_state::lake::writer_id(&conn, || format!("{:032x}", rand::random::<u128>()))
            .context("reading the lake writer id")?;
    let raw_schema = Ident::new(&config.duckdb.raw_schema).context("duckdb.raw_schema")?;
    let mut publisher =
        Publisher::new(lake, &config.data_dir, raw_schema, &writer).map_err(anyhow::Error::msg)?;
    let specs = specs(config)?;
    let mut ledgers: HashMap<String, Arc<dyn SharedLedger>> = HashMap::new();
    for spec in &specs {
        telemetry::register_lake_table(spec.table.as_str());
        if !spec.shared.is_empty() {
            ledgers.insert(
                spec.table.to_string(),
                publisher.ledger(spec.table.as_str()),
            );
        }
    }
    info!(uri = %lake.uri, writer = %writer, tables = specs.len(), "publishing raw tables to the lake");
    let finish_by = Arc::new(Mutex::new(None));
    let mut follower = Follower {
        publisher,
        conn,
        specs,
        last_upkeep: HashMap::new(),
        health: health.clone(),
        finish_by: finish_by.clone(),
    };
    let (report, done) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lake".into())
        .spawn(move || {
            // The lake follows the commits: when cores are short, the commit goes first
            // (as for the sources; sluice_core::priority).
            if let Err(e) = sluice_core::priority::yield_to_committer() {
                debug!(error = %e, "could not lower the lake thread's priority");
            }
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| follower.run()))
                .unwrap_or_else(|_| Err("the lake thread panicked".into()));
            let _ = report.send(outcome);
        })
        .context("starting the lake thread")?;
    Ok(Some(LakeThread {
        done,
        finish_by,
        health: health.clone(),
        ledgers,
    }))
}

impl LakeThread {
    /// After ingestion ended: publishes what is left, for at most `within`, and stops.
    /// An error says the lake is behind (what it lacks is in DuckDB; the next start
    /// publishes it).
    /// A store that hangs (accepts connections, never answers) can keep a call inside
    /// delta-rs for minutes (its client's timeouts and retries); past `within` plus
    /// [`FINISH_GRACE`] the stop goes on without the thread.
    pub fn finish(self, within: Duration) -> anyhow::Result<()> {
        if let Ok(mut by) = self.finish_by.lock() {
            *by = Some(Instant::now() + within);
        }
        self.health.commits.notify();
        match self.done.recv_timeout(within + FINISH_GRACE) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => anyhow::bail!(
                "the lake is behind DuckDB ({e}); the next start publishes what it lacks"
            ),
            Err(_) => anyhow::bail!(
                "the lake is behind DuckDB (a call to the store did not return in time); the next start publishes what it lacks"
            ),
        }
    }
}

/// Each configured table, with the sources that share their streams with other instances.
fn specs(config: &Config) -> anyhow::Result<Vec<TableSpec>> {
    let mut by_table: BTreeMap<String, TableSpec> = BTreeMap::new();
    for (name, source) in &config.sources {
        let component = source.component();
        let table = component.table_ident(name)?;
        let spec = by_table
            .entry(table.to_string())
            .or_insert_with(|| TableSpec {
                table,
                shared: Vec::new(),
            });
        if let Some(streams) = component.shared_streams() {
            spec.shared.push((name.clone(), streams));
        }
    }
    Ok(by_table.into_values().collect())
}

struct Follower {
    publisher: Publisher,
    conn: Connection,
    specs: Vec<TableSpec>,
    /// When each table was last vacuumed and expired.
    last_upkeep: HashMap<String, Instant>,
    health: Arc<Health>,
    finish_by: Arc<Mutex<Option<Instant>>>,
}

impl Follower {
    fn run(&mut self) -> Result<(), String> {
        let mut seen = self.health.commits.count();
        let mut delay: Option<Duration> = None;
        loop {
            let passed = self.pass();
            self.report();
            let caught_up = match &passed {
                Ok(progress) => {
                    if delay.take().is_some() {
                        info!("the lake can be written again; catching up");
                    }
                    self.health.lake.set_problem(None);
                    !progress
                }
                Err(e) => {
                    if delay.is_none() {
                        warn!(error = %e, "cannot publish to the lake; ingestion goes on into DuckDB, retrying");
                    } else {
                        debug!(error = %e, "the lake still cannot be written");
                    }
                    self.health.lake.set_problem(Some(e.clone()));
                    delay = Some(RETRY.after(delay));
                    false
                }
            };
            if let Some(by) = self.finish_by() {
                let due = Instant::now() >= by;
                if caught_up {
                    return Ok(());
                }
                if due {
                    return Err(passed.err().unwrap_or_else(|| "out of time".into()));
                }
            }
            if caught_up && self.finish_by().is_none() && self.upkeep() {
                continue;
            }
            match delay {
                Some(d) => self.pause(d),
                None if caught_up => seen = self.health.commits.wait_after(seen, IDLE),
                None => {}
            }
        }
    }

    /// One commit per table that has something to publish; whether any had.
    fn pass(&mut self) -> Result<bool, String> {
        let mut progress = false;
        for spec in &self.specs {
            let table = spec.table.as_str();
            let published = self.publisher.publish_next(&self.conn, spec);
            telemetry::lake_conflicts(table, self.publisher.take_conflicts(table));
            match published {
                Ok(Some(p)) => {
                    debug!(
                        table,
                        version = p.version,
                        batches = p.batches,
                        rows = p.rows,
                        files = p.files,
                        ms = p.took.as_millis() as u64,
                        refresh_ms = p.phases.refresh.as_millis() as u64,
                        plan_ms = p.phases.plan.as_millis() as u64,
                        read_ms = p.phases.read.as_millis() as u64,
                        encode_ms = p.phases.encode.as_millis() as u64,
                        upload_ms = p.phases.upload.as_millis() as u64,
                        commit_ms = p.phases.commit.as_millis() as u64,
                        "published to the lake"
                    );
                    telemetry::lake_published(&p);
                    self.health.lake.update(table, |s| {
                        s.through_batch = p.through_batch;
                        s.last_commit = Some(Utc::now());
                    });
                    progress = true;
                }
                Ok(None) => {}
                Err(e) => {
                    telemetry::lake_failed(table);
                    return Err(e.to_string());
                }
            }
        }
        Ok(progress)
    }

    /// Compaction (one per table, when one is due); retention hourly; vacuum hourly and
    /// after a compaction. Whether anything was compacted (then the caller looks for new
    /// batches before more).
    fn upkeep(&mut self) -> bool {
        let mut compacted_any = false;
        let tables: Vec<String> = self.specs.iter().map(|s| s.table.to_string()).collect();
        for table in &tables {
            let table = table.as_str();
            let compacted = match self.publisher.compact_next(table) {
                Ok(Some(c)) => {
                    info!(table, partition = %c.partition, files_in = c.files_in, files_out = c.files_out,
                        rows = c.rows, version = c.version, "compacted a lake partition");
                    telemetry::lake_upkeep(table, Upkeep::Compactions, 1);
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    warn!(table, error = %e, "compacting the lake failed; trying again later");
                    telemetry::lake_upkeep(table, Upkeep::Failures, 1);
                    false
                }
            };
            compacted_any |= compacted;
            let due = self
                .last_upkeep
                .get(table)
                .is_none_or(|t| t.elapsed() >= UPKEEP_EVERY);
            if self.publisher.state(table).is_none() || !(due || compacted) {
                continue;
            }
            if due {
                self.last_upkeep.insert(table.to_string(), Instant::now());
                self.expire(table);
            }
            match self.publisher.vacuum(table) {
                Ok(n) => {
                    debug!(table, files = n, "vacuumed the lake table");
                    telemetry::lake_upkeep(table, Upkeep::VacuumedFiles, n as u64);
                }
                Err(e) => {
                    warn!(table, error = %e, "vacuuming the lake failed; trying again later");
                    telemetry::lake_upkeep(table, Upkeep::Failures, 1);
                }
            }
        }
        compacted_any
    }

    /// Removes partitions older than `lake.retention`, if set.
    fn expire(&mut self, table: &str) {
        match self.publisher.expire(table) {
            Ok(0) => {}
            Ok(n) => {
                info!(
                    table,
                    files = n,
                    "removed lake partitions older than lake.retention"
                );
                telemetry::lake_upkeep(table, Upkeep::ExpiredFiles, n as u64);
            }
            Err(e) => {
                warn!(table, error = %e, "removing old lake partitions failed; trying again in an hour");
                telemetry::lake_upkeep(table, Upkeep::Failures, 1);
            }
        }
    }

    /// Versions, files and how far behind each table is, for `/status` and the gauges.
    fn report(&self) {
        for spec in &self.specs {
            let table = spec.table.as_str();
            let behind = self.publisher.behind(&self.conn, table).unwrap_or_default();
            let state = self.publisher.state(table);
            telemetry::lake_state(table, state.as_ref(), behind);
            self.health.lake.update(table, |s| {
                s.behind_batches = behind;
                if let Some(state) = state {
                    s.version = Some(state.version);
                    s.files = Some(state.files);
                    s.through_batch = state.watermark;
                }
            });
        }
    }

    /// When the thread must be done by, once ingestion has ended.
    fn finish_by(&self) -> Option<Instant> {
        self.finish_by.lock().ok().and_then(|b| *b)
    }

    /// Waits `d` before retrying, ending early when asked to finish.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && self.finish_by().is_none() {
            let left = until.saturating_duration_since(Instant::now());
            // Not a synchronisation: a retry's backoff, sliced to notice a stop.
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}
