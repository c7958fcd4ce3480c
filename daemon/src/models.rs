//! The daemon's side of models: loading the plan from the configuration, running rounds
//! on the committer thread after commits ([`ModelScheduler`]), applying a reload sent by SIGHUP, and
//! the one-shot `sluice models` commands ([`commands`]).
//!
//! Rounds run on the committer thread because it owns the only read-write connection:
//! a model always sees every committed batch and never races a commit.

pub mod commands;

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use duckdb::Connection;
use sluice_core::Ident;
use sluice_models::{
    compile, render::Catalog, ModelReport, ModelRunner, Outcome, Plan, Problems, RunOptions,
};
use tracing::{info, warn};

use crate::{config::Config, health::Health, pipeline::committer::AfterCommit, telemetry};

/// Longest a round waits while more batches are queued: marts stay fresh under load.
const MAX_ROUND_DELAY: Duration = Duration::from_secs(1);

/// Reads and plans the model files of `config` (`None` without `[models]`). `existing`
/// adds raw tables already in the database to those the sources feed.
pub fn load_plan(config: &Config, existing: &BTreeSet<String>) -> Option<Result<Plan, Problems>> {
    let models = config.models.as_ref()?;
    let mut tables = config.source_tables();
    tables.extend(existing.iter().cloned());
    Some(schemas(config).and_then(|(model_schema, raw_schema)| {
        Plan::load(&models.dir, model_schema, raw_schema, Some(&tables))
    }))
}

/// The models' schema and the raw tables' schema (validated with the configuration).
fn schemas(config: &Config) -> Result<(Ident, Ident), Problems> {
    let ident = |key: &str, name: &str| {
        Ident::new(name).map_err(|e| {
            Problems(vec![sluice_models::ModelError::Output {
                model: "*".into(),
                message: format!("{key} {name:?}: {e}"),
            }])
        })
    };
    let models = config.models.as_ref().map_or("main", |m| m.schema.as_str());
    Ok((
        ident("models.schema", models)?,
        ident("duckdb.raw_schema", &config.duckdb.raw_schema)?,
    ))
}

/// The raw tables that exist in the database (none if they cannot be listed: the models
/// then wait for their input as for a table not created yet).
pub fn existing_raw_tables(conn: &Connection, raw_schema: &str) -> BTreeSet<String> {
    sluice_state::tables::tables_in(conn, raw_schema).unwrap_or_default()
}

/// The models are the step the committer runs between commits.
impl AfterCommit for ModelScheduler {
    /// After a commit: run a round now, unless more batches are queued and a round ran
    /// less than [`MAX_ROUND_DELAY`] ago (then the next commit's round covers both).
    fn after_commit(&mut self, conn: &Connection, backlog: bool) {
        if backlog && self.last_round.elapsed() < MAX_ROUND_DELAY {
            return;
        }
        self.apply_reload(conn);
        self.round(conn, &RunOptions::default());
    }

    /// While no batch is coming: apply a reload, retry failed or deferred models.
    fn idle(&mut self, conn: &Connection) {
        let reloaded = self.apply_reload(conn);
        if reloaded || self.due || self.runner.has_pending() {
            self.round(conn, &RunOptions::default());
        }
    }
}

/// Set by SIGHUP: the committer re-reads the model files at its next turn.
#[derive(Debug, Default)]
pub struct ModelReload(AtomicBool);

impl ModelReload {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// A plan with no models, for a daemon whose model files could not be read at start
/// (ingestion runs; SIGHUP loads the fixed files).
pub fn empty_plan(config: &Config) -> anyhow::Result<Plan> {
    let (model_schema, raw_schema) = schemas(config)?;
    Ok(Plan {
        catalog: Catalog {
            model_schema,
            raw_schema,
            models: Default::default(),
            sources: Default::default(),
        },
        models: Vec::new(),
    })
}

/// Models maintained by the committer.
#[derive(Debug)]
pub struct ModelScheduler {
    runner: ModelRunner,
    config: Config,
    reload: Arc<ModelReload>,
    health: Arc<Health>,
    last_round: Instant,
    /// A round is due at start: models may be behind (a crash after a commit, changed SQL).
    due: bool,
}

impl ModelScheduler {
    /// Prepares the state tables and model schema.
    pub fn new(
        plan: Plan,
        config: &Config,
        conn: &Connection,
        reload: Arc<ModelReload>,
        health: Arc<Health>,
    ) -> anyhow::Result<Self> {
        let runner = ModelRunner::new(plan);
        runner.prepare(conn)?;
        health.models.set_plan(runner.plan());
        restore(&runner, conn, &health);
        for m in runner.plan().built() {
            telemetry::register_model(m.name.as_str());
        }
        Ok(ModelScheduler {
            runner,
            config: config.clone(),
            reload,
            health,
            last_round: Instant::now(),
            due: true,
        })
    }

    /// Runs the due models and reports each to the log, metrics and `/status`.
    pub fn round(&mut self, conn: &Connection, opts: &RunOptions) -> Vec<ModelReport> {
        let reports = self.runner.run(conn, opts);
        self.last_round = Instant::now();
        self.due = false;
        for r in &reports {
            telemetry::model_ran(r);
            if let Outcome::Waiting { on } = &r.outcome {
                info!(model = %r.model, upstream = %on, "model waits for a failing upstream model");
            }
        }
        self.health.models.record(&reports);
        reports
    }

    /// After SIGHUP: re-reads the model files and swaps in the new plan if it plans and
    /// compiles; otherwise keeps the running models and logs why.
    fn apply_reload(&mut self, conn: &Connection) -> bool {
        if !self.reload.take() {
            return false;
        }
        let existing = existing_raw_tables(conn, &self.config.duckdb.raw_schema);
        let plan = match load_plan(&self.config, &existing) {
            None => return false,
            Some(Err(problems)) => {
                warn!(problems = %problems.to_string().replace('\n', "; "), "SIGHUP: the model files have problems; keeping the running models");
                return false;
            }
            Some(Ok(plan)) => plan,
        };
        let errors = match compile(conn, &plan) {
            Ok(report) => report.errors.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        };
        if !errors.is_empty() {
            warn!(errors = %errors.join("; "), "SIGHUP: the new model files do not compile; keeping the running models");
            return false;
        }
        info!(models = plan.models.len(), "SIGHUP: model files applied");
        self.health.models.set_plan(&plan);
        for m in plan.built() {
            telemetry::register_model(m.name.as_str());
        }
        self.runner.replace_plan(plan);
        restore(&self.runner, conn, &self.health);
        true
    }
}

/// Shows what the database keeps of models not run yet in this process (their last
/// build, watermark, tests), so a restarted daemon does not report them `pending`.
fn restore(runner: &ModelRunner, conn: &Connection, health: &Health) {
    match runner.stored(conn) {
        Ok(stored) => health.models.restore(&stored),
        Err(e) => warn!(error = %e, "could not read the models' last builds for /status"),
    }
}
