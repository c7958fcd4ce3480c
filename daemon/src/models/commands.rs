//! One-shot model commands: `sluice models list`, `sluice models run`, and the model part
//! of `sluice check`. They take the data directory's lock, so they refuse to run beside a
//! daemon (which maintains the models itself).

use std::{collections::BTreeSet, sync::Arc};

use anyhow::{bail, Context};
use duckdb::Connection;
use sluice_models::{compile, ModelReport, Outcome, Plan, RunOptions, Severity};

use super::{existing_raw_tables, load_plan, ModelReload, ModelScheduler};
use crate::{config::Config, health::Health, lock::lock_data_dir, notify::Notifier, warehouse};

fn plan_of(config: &Config, conn: Option<&Connection>) -> anyhow::Result<Plan> {
    let existing = conn
        .map(|c| existing_raw_tables(c, &config.duckdb.raw_schema))
        .unwrap_or_default();
    match load_plan(config, &existing) {
        None => bail!("{}: no [models] table is configured", config.path.display()),
        Some(Err(problems)) => bail!("the model files have problems:\n{problems}"),
        Some(Ok(plan)) => Ok(plan),
    }
}

/// `sluice models list`: every model in run order, how it is built, and what it reads.
pub fn list(config: &Config) -> anyhow::Result<()> {
    let plan = plan_of(config, None)?;
    println!(
        "{:<32} {:<12} {:<14} {:<20} {:<6} READS",
        "MODEL", "MATERIALIZED", "STRATEGY", "UNIQUE KEY", "TESTS"
    );
    for m in &plan.models {
        let c = &m.config;
        let incremental = c.materialized == sluice_models::Materialized::Incremental;
        let keys: Vec<&str> = c.unique_key.iter().map(|k| k.as_str()).collect();
        let reads: Vec<String> = m
            .parents
            .iter()
            .cloned()
            .chain(
                m.raw_tables
                    .iter()
                    .map(|t| format!("{}.{t}", plan.catalog.raw_schema)),
            )
            .collect();
        println!(
            "{:<32} {:<12} {:<14} {:<20} {:<6} {}",
            m.name.as_str(),
            c.materialized.to_string(),
            if incremental {
                c.strategy.to_string()
            } else {
                "-".into()
            },
            if keys.is_empty() {
                "-".into()
            } else {
                keys.join(",")
            },
            m.tests.len(),
            reads.join(", ")
        );
    }
    Ok(())
}

/// `sluice models run`: runs the due (or selected, or all with `--full-refresh`) models
/// once. Fails if a model or an error-severity data test fails.
pub fn run(config: &Config, select: Vec<String>, full_refresh: bool) -> anyhow::Result<()> {
    let _lock = lock_data_dir(&config.data_dir)?;
    let warehouse = warehouse::open(config)?;
    let conn = warehouse.connection();
    let plan = plan_of(config, Some(conn))?;
    let select: BTreeSet<String> = select.into_iter().collect();
    if let Some(unknown) = select.iter().find(|s| plan.get(s).is_none()) {
        bail!("--select {unknown}: no such model (see `sluice models list`)");
    }
    let health = Arc::new(Health::new(Notifier::disabled()));
    let mut marts =
        ModelScheduler::new(plan, config, conn, Arc::new(ModelReload::default()), health)?;
    let opts = RunOptions {
        full_refresh,
        select,
        now: true,
    };
    let reports = marts.round(conn, &opts);
    print_reports(&reports);
    verdict(&reports)
}

/// Prints one line per model of a round.
pub fn print_reports(reports: &[ModelReport]) {
    if reports.is_empty() {
        println!("no model was due (nothing new since the last run; --full-refresh rebuilds)");
    }
    for r in reports {
        let what = match &r.outcome {
            Outcome::Built { full: true, rows } => format!("built in full, {rows} rows"),
            Outcome::Built { full: false, rows } => format!("merged {rows} new rows"),
            Outcome::Failed { error } => format!("FAILED: {error}"),
            Outcome::Waiting { on } => format!("skipped: upstream {on} failed"),
        };
        println!(
            "{:<32} {:<12} {:>7} ms  {what}",
            r.model,
            r.materialized.to_string(),
            r.duration.as_millis()
        );
        for t in r.tests.iter().filter(|t| !t.passed()) {
            match &t.error {
                Some(e) => println!(
                    "  test {} ({}): could not run: {e}",
                    t.name,
                    t.severity.as_str()
                ),
                None => println!(
                    "  test {} ({}): {} failing rows",
                    t.name,
                    t.severity.as_str(),
                    t.failures
                ),
            }
        }
    }
}

/// An error naming the failed models and error-severity tests, if any.
pub fn verdict(reports: &[ModelReport]) -> anyhow::Result<()> {
    let mut failed: Vec<String> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed { .. } | Outcome::Waiting { .. }))
        .map(|r| format!("model {}", r.model))
        .collect();
    failed.extend(
        reports
            .iter()
            .flat_map(|r| &r.tests)
            .filter(|t| !t.passed() && t.severity == Severity::Error)
            .map(|t| format!("test {}", t.name)),
    );
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("{} failed: {}", failed.len(), failed.join(", "))
    }
}

/// The model part of `sluice check`: problems in the files, then compile errors. Lines
/// that are only notes (a model not compiled because its raw table has no data yet) go
/// to `notes`.
pub fn check(config: &Config, notes: &mut Vec<String>) -> Vec<String> {
    if config.models.is_none() {
        return Vec::new();
    }
    let db = config.duckdb_path();
    // Compile against the real database when no daemon holds it; else against an empty one.
    let lock = config
        .data_dir
        .is_dir()
        .then(|| lock_data_dir(&config.data_dir));
    let warehouse = match (&lock, db.is_file()) {
        (Some(Ok(_)), true) => match warehouse::open(config) {
            Ok(w) => Some(w),
            Err(e) => {
                return vec![format!(
                    "models: cannot open {} to compile them: {e:#}",
                    db.display()
                )]
            }
        },
        (Some(Err(_)), _) => {
            notes.push(
                "models were not compiled against the database: a running sluice holds it".into(),
            );
            None
        }
        _ => None,
    };
    let memory;
    let conn = match &warehouse {
        Some(w) => w.connection(),
        None => {
            memory = match Connection::open_in_memory() {
                Ok(c) => c,
                Err(e) => return vec![format!("models: cannot open DuckDB: {e}")],
            };
            &memory
        }
    };
    let plan = match plan_of(config, Some(conn)) {
        Ok(p) => p,
        Err(e) => {
            return format!("{e:#}")
                .lines()
                .skip(1)
                .map(|l| format!("models: {l}"))
                .collect()
        }
    };
    let report = compile(conn, &plan).context("compiling the models");
    match report {
        Err(e) => vec![format!("models: {e:#}")],
        Ok(report) => {
            for (model, why) in &report.skipped {
                if *why != sluice_models::compile::Skip::DoesNotCompile {
                    notes.push(format!("model {model} not compiled: {why}"));
                }
            }
            notes.push(format!(
                "{} model(s) planned, {} compiled",
                plan.models.len(),
                report.compiled
            ));
            report
                .errors
                .iter()
                .map(|e| format!("models: {e}"))
                .collect()
        }
    }
}
