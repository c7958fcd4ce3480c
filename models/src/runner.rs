//! Running the models after commits: which are due, in dependency order, each in its own
//! transaction with its watermark, then its data tests. A model that fails is retried with
//! backoff; the models downstream of it wait; ingestion is never blocked by it.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use duckdb::Connection;
use sluice_core::retry::Backoff;
use sluice_state::{
    ledger,
    models::{self as stored, ModelState},
    tables,
};
use tracing::{debug, info, warn};

use crate::{
    config::Materialized,
    data_tests::{Severity, TestResult},
    error::{DuckdbContext, ModelError, Result},
    materialize::{self, Build},
    plan::{ModelPlan, Plan},
    render::Mode,
};

/// Pauses before retrying a failed model: 1 s, doubling up to a minute.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));

/// What happened to one model in a round.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Built; `full` when rebuilt from scratch (first run, changed SQL, table, view).
    Built {
        full: bool,
        rows: u64,
    },
    Failed {
        error: String,
    },
    /// Not run because an upstream model failed or is not yet rebuilt.
    Waiting {
        on: String,
    },
}

/// One model's result in a round.
#[derive(Debug, Clone)]
pub struct ModelReport {
    pub model: String,
    pub materialized: Materialized,
    pub outcome: Outcome,
    pub duration: Duration,
    /// The watermark after the round.
    pub watermark: i64,
    /// Commit time (epoch µs) of the newest batch the model has consumed.
    pub newest_consumed_us: Option<i64>,
    pub tests: Vec<TestResult>,
}

/// How a round is run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rebuild every selected model from scratch.
    pub full_refresh: bool,
    /// Only these models (all when empty).
    pub select: BTreeSet<String>,
    /// Ignore `min_interval` and retry delays (one-shot runs).
    pub now: bool,
}

#[derive(Debug, Clone)]
struct Retry {
    at: Instant,
    delay: Duration,
}

/// Keeps the plan and what is due; owned by the thread that owns the connection.
#[derive(Debug)]
pub struct ModelRunner {
    plan: Plan,
    retries: BTreeMap<String, Retry>,
    last_build: BTreeMap<String, Instant>,
}

impl ModelRunner {
    pub fn new(plan: Plan) -> Self {
        ModelRunner {
            plan,
            retries: BTreeMap::new(),
            last_build: BTreeMap::new(),
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Swaps in a new plan (after SIGHUP); models whose SQL changed rebuild in full.
    pub fn replace_plan(&mut self, plan: Plan) {
        self.plan = plan;
        self.retries.clear();
    }

    /// Whether something may be due even without a new commit (retries, deferred tables).
    pub fn has_pending(&self) -> bool {
        !self.retries.is_empty()
    }

    /// Creates the state tables and the model schema.
    pub fn prepare(&self, conn: &Connection) -> Result<()> {
        sluice_state::ensure(conn)?;
        let schema = self.plan.catalog.model_schema.quoted();
        conn.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .ctx("*", || format!("creating schema {schema}"))
    }

    /// Each built model's last successful build as the database keeps it, in the form of
    /// a report (for what a restarted daemon shows before its models run again); models
    /// never built are left out.
    pub fn stored(&self, conn: &Connection) -> Result<Vec<StoredReport>> {
        let mut out = Vec::new();
        for m in self.plan.built() {
            let name = m.name.as_str();
            let Some(build) = stored::stored_build(conn, name)? else {
                continue;
            };
            let newest_consumed_us = ledger::newest_consumed(conn, &m.raw_tables, build.watermark)?;
            let tests = stored::stored_tests(conn, name)?
                .into_iter()
                .map(|(test, severity, failures)| TestResult {
                    name: test,
                    model: name.to_string(),
                    severity: if severity == "warn" {
                        Severity::Warn
                    } else {
                        Severity::Error
                    },
                    failures,
                    error: None,
                })
                .collect();
            out.push(StoredReport {
                model: name.to_string(),
                build,
                newest_consumed_us,
                tests,
            });
        }
        Ok(out)
    }

    /// Runs every model that is due, in order. Never fails as a whole: each model's
    /// problem is in its report.
    pub fn run(&mut self, conn: &Connection, opts: &RunOptions) -> Vec<ModelReport> {
        let mut reports = Vec::new();
        let mut held: BTreeMap<String, String> = BTreeMap::new();
        let models: Vec<ModelPlan> = self.plan.built().cloned().collect();
        for m in &models {
            let name = m.name.to_string();
            if !opts.select.is_empty() && !opts.select.contains(&name) {
                continue;
            }
            let blocked = self.blocked_by(m, &held);
            if let Some(root) = blocked {
                held.insert(name.clone(), root.clone());
                reports.push(self.report(
                    conn,
                    m,
                    Outcome::Waiting { on: root },
                    Duration::ZERO,
                    Vec::new(),
                ));
                continue;
            }
            match self.run_one(conn, m, opts) {
                Ok(None) => {}
                Ok(Some(report)) => reports.push(report),
                Err(Deferred) => {
                    held.insert(name.clone(), name.clone());
                }
            }
            if let Some(Outcome::Failed { .. }) = reports
                .last()
                .filter(|r| r.model == name)
                .map(|r| &r.outcome)
            {
                held.insert(name.clone(), name);
            }
        }
        // Tests run once every model of the round is built: a relationships test may
        // read a model that comes later in the order.
        for r in reports
            .iter_mut()
            .filter(|r| matches!(r.outcome, Outcome::Built { .. }))
        {
            if let Some(m) = self.plan.get(&r.model) {
                r.tests = self.run_tests(conn, m);
            }
        }
        reports
    }

    /// The held model (failed, deferred, waiting) that `m` reads, through ephemeral parents.
    fn blocked_by(&self, m: &ModelPlan, held: &BTreeMap<String, String>) -> Option<String> {
        m.parents.iter().find_map(|p| {
            held.get(p).cloned().or_else(|| {
                let parent = self.plan.get(p)?;
                (parent.config.materialized == Materialized::Ephemeral)
                    .then(|| self.blocked_by(parent, held))
                    .flatten()
            })
        })
    }

    /// Runs `m` if it is due. `Err(Deferred)` when it is due but must wait (min_interval,
    /// retry backoff), so its descendants wait too.
    fn run_one(
        &mut self,
        conn: &Connection,
        m: &ModelPlan,
        opts: &RunOptions,
    ) -> Result<Option<ModelReport>, Deferred> {
        let name = m.name.to_string();
        let now = Instant::now();
        // A model waiting for its retry is not even looked at (idle rounds come often).
        if !opts.now && self.retries.get(&name).is_some_and(|r| r.at > now) {
            return Err(Deferred);
        }
        let started = Instant::now();
        let decision = self.decide(conn, m, opts);
        let due = match decision {
            Ok(Some(due)) => due,
            Ok(None) => return Ok(None),
            Err(e) => return Ok(Some(self.failed(conn, m, e, started))),
        };
        if !opts.now {
            // A rebuild of a table or a fold-in of new rows waits out `min_interval`; a
            // first build or one after its SQL changed does not.
            let regular = matches!(
                (m.config.materialized, &due.build),
                (Materialized::Table, Build::Full)
                    | (Materialized::Incremental, Build::Incremental { .. })
            );
            // Due `min_interval` after its last build (not after this round).
            let waits_until = self
                .last_build
                .get(&name)
                .map(|t| *t + m.config.min_interval)
                .filter(|at| regular && !due.changed && *at > now);
            if let Some(at) = waits_until {
                self.retries.entry(name).or_insert(Retry {
                    at,
                    delay: RETRY.first,
                });
                return Err(Deferred);
            }
        }
        match self.build(conn, m, due) {
            Ok((rows, full)) => {
                self.retries.remove(&name);
                self.last_build.insert(name.clone(), Instant::now());
                let took = started.elapsed();
                info!(model = %name, rows, full, ms = took.as_millis() as u64, "model built");
                Ok(Some(self.report(
                    conn,
                    m,
                    Outcome::Built { full, rows },
                    took,
                    Vec::new(),
                )))
            }
            Err(e) => Ok(Some(self.failed(conn, m, e, started))),
        }
    }

    /// Whether `m` is due, and how to build it.
    fn decide(&self, conn: &Connection, m: &ModelPlan, opts: &RunOptions) -> Result<Option<Due>> {
        let name = m.name.as_str();
        let raw = self.plan.catalog.raw_schema.as_str();
        for table in &m.raw_tables {
            if !tables::relation_exists(conn, raw, table)? {
                // Nothing to read yet: the model waits for the first batch of its input.
                return Ok(None);
            }
        }
        let full_sql = self.plan.sql(m, Mode::Full)?;
        let hash = sql_hash(m, &full_sql);
        let stored = stored::load(conn, name)?;
        let exists = tables::relation_exists(conn, self.plan.catalog.model_schema.as_str(), name)?;
        let last = ledger::last_batch_id(conn)?;
        let next = ModelState {
            sql_hash: hash.clone(),
            watermark: last,
        };
        let stored = match stored {
            Some(s) if !opts.full_refresh && exists && s.sql_hash == hash => s,
            _ => {
                return Ok(Some(Due {
                    next,
                    build: Build::Full,
                    changed: true,
                }))
            }
        };
        if m.config.materialized == Materialized::View {
            return Ok(None);
        }
        if !ledger::has_new_batches(conn, &m.raw_tables, stored.watermark)? {
            return Ok(None);
        }
        let how = match m.config.materialized {
            Materialized::Incremental => Build::Incremental {
                watermark: stored.watermark,
            },
            _ => Build::Full,
        };
        Ok(Some(Due {
            next,
            build: how,
            changed: false,
        }))
    }

    /// Builds in one transaction with the watermark; returns (rows, rebuilt in full).
    fn build(
        &self,
        conn: &Connection,
        m: &ModelPlan,
        Due {
            next, build: how, ..
        }: Due,
    ) -> Result<(u64, bool)> {
        let name = m.name.as_str();
        let started = Instant::now();
        conn.execute_batch("BEGIN TRANSACTION")
            .ctx(name, || "starting its transaction".into())?;
        let result = materialize::build(conn, &self.plan, m, how).and_then(|rows| {
            let ms = started.elapsed().as_millis() as u64;
            stored::record_build(
                conn,
                name,
                &m.config.materialized.to_string(),
                &next,
                rows,
                ms,
            )?;
            sluice_core::fault::point("model.before_commit");
            conn.execute_batch("COMMIT")
                .ctx(name, || "committing".into())?;
            Ok(rows)
        });
        if result.is_err() {
            // Nothing of a failed build remains; the error says why.
            let _ = conn.execute_batch("ROLLBACK");
        }
        Ok((result?, matches!(how, Build::Full)))
    }

    fn run_tests(&self, conn: &Connection, m: &ModelPlan) -> Vec<TestResult> {
        let batch = ledger::last_batch_id(conn).unwrap_or_default();
        let mut results = Vec::new();
        for t in &m.tests {
            match t.run(conn, &self.plan.catalog, batch) {
                Ok(r) if r.passed() => {
                    debug!(model = %t.model, test = %r.name, "data test passed");
                    results.push(r);
                }
                Ok(r) => {
                    warn!(model = %t.model, test = %r.name, failures = r.failures,
                        severity = r.severity.as_str(), "data test failed");
                    results.push(r);
                }
                Err(e) => {
                    warn!(model = %t.model, test = %t.name(), error = %e, "data test could not run")
                }
            }
        }
        results
    }

    fn failed(
        &mut self,
        conn: &Connection,
        m: &ModelPlan,
        e: ModelError,
        started: Instant,
    ) -> ModelReport {
        let name = m.name.to_string();
        let delay = RETRY.after(self.retries.get(&name).map(|r| r.delay));
        self.retries.insert(
            name.clone(),
            Retry {
                at: Instant::now() + delay,
                delay,
            },
        );
        warn!(model = %name, file = %m.path.display(), error = %e, retry_in = ?delay, "model failed");
        self.report(
            conn,
            m,
            Outcome::Failed {
                error: e.to_string(),
            },
            started.elapsed(),
            Vec::new(),
        )
    }

    fn report(
        &self,
        conn: &Connection,
        m: &ModelPlan,
        outcome: Outcome,
        duration: Duration,
        tests: Vec<TestResult>,
    ) -> ModelReport {
        let name = m.name.as_str();
        let watermark = stored::load(conn, name)
            .ok()
            .flatten()
            .map_or(0, |s| s.watermark);
        ModelReport {
            model: name.to_string(),
            materialized: m.config.materialized,
            outcome,
            duration,
            watermark,
            newest_consumed_us: ledger::newest_consumed(conn, &m.raw_tables, watermark)
                .ok()
                .flatten(),
            tests,
        }
    }
}

/// A model's last successful build, read back from the database.
#[derive(Debug, Clone)]
pub struct StoredReport {
    pub model: String,
    pub build: stored::StoredBuild,
    pub newest_consumed_us: Option<i64>,
    pub tests: Vec<TestResult>,
}

/// A model that is due: the state to record once it is built, how to build it, and
/// whether its SQL changed (or it was never built).
struct Due {
    next: ModelState,
    build: Build,
    changed: bool,
}

/// A model that is due but waits (min_interval or a retry delay).
#[derive(Debug)]
struct Deferred;

/// Identifies what a model was built from: its full SQL and how it is materialized.
fn sql_hash(m: &ModelPlan, full_sql: &str) -> String {
    let c = &m.config;
    let keys: Vec<&str> = c.unique_key.iter().map(|k| k.as_str()).collect();
    let identity = format!(
        "{}\n{}\n{}\n{}",
        c.materialized,
        c.strategy,
        keys.join(","),
        full_sql
    );
    blake3::hash(identity.as_bytes()).to_hex().to_string()
}
