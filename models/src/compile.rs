//! Compiling models against the database without running them (`sluice check`, SIGHUP):
//! inside a transaction that is always rolled back, each model is created as a view in a
//! scratch schema (so built tables are never touched), in dependency order; its
//! incremental SQL and its data tests are prepared, so DuckDB binds every name.

use std::collections::BTreeMap;

use duckdb::Connection;
use sluice_core::Ident;

use crate::{
    config::Materialized,
    error::{DuckdbContext, ModelError, Result},
    plan::{ModelPlan, Plan},
    render::Mode,
};

/// Why a model was not compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// It failed to compile: its error is in [`CompileReport::errors`].
    DoesNotCompile,
    /// A model it reads was not compiled.
    Upstream { model: String },
    /// A raw table it reads does not exist yet (no data ingested).
    NoRawTable { schema: String, table: String },
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::DoesNotCompile => f.write_str("it does not compile"),
            Skip::Upstream { model } => write!(f, "upstream model {model} was not compiled"),
            Skip::NoRawTable { schema, table } => {
                write!(
                    f,
                    "raw table {schema}.{table} does not exist yet (no data ingested)"
                )
            }
        }
    }
}

/// The outcome of compiling a plan.
#[derive(Debug, Default)]
pub struct CompileReport {
    pub errors: Vec<ModelError>,
    /// Models not compiled, with why (a raw table not yet created, an upstream error).
    pub skipped: BTreeMap<String, Skip>,
    pub compiled: usize,
}

/// Where models are compiled; it only ever exists inside the rolled-back transaction.
const SCRATCH_SCHEMA: &str = "_sluice_compile";

/// Compiles every model of `plan`; leaves the database unchanged.
pub fn compile(conn: &Connection, plan: &Plan) -> Result<CompileReport> {
    let mut scratch = plan.clone();
    scratch.catalog.model_schema = Ident::new(SCRATCH_SCHEMA).expect("a valid identifier");
    conn.execute_batch("BEGIN TRANSACTION")
        .ctx("*", || "starting a compile transaction".into())?;
    let report = compile_all(conn, &scratch);
    conn.execute_batch("ROLLBACK")
        .ctx("*", || "rolling back the compile transaction".into())?;
    Ok(report)
}

fn compile_all(conn: &Connection, plan: &Plan) -> CompileReport {
    let mut report = CompileReport::default();
    if let Err(e) = create_scratch(conn, plan) {
        report.errors.push(e);
        return report;
    }
    let mut compiled: Vec<&ModelPlan> = Vec::new();
    for m in &plan.models {
        let name = m.name.to_string();
        if let Some(why) = skip_reason(conn, plan, m, &report.skipped) {
            report.skipped.insert(name, why);
            continue;
        }
        if m.config.materialized == Materialized::Ephemeral {
            continue;
        }
        match compile_one(conn, plan, m) {
            Ok(()) => compiled.push(m),
            Err(e) => {
                report.skipped.insert(name, Skip::DoesNotCompile);
                report.errors.push(e);
                // An error aborts DuckDB's transaction (there are no savepoints): start a
                // new one and recreate what compiled so far, for the models after it.
                let restarted = restart(conn, plan, &compiled);
                if let Err(e) = restarted {
                    report.errors.push(e);
                    return report;
                }
            }
        }
    }
    report.compiled = compiled.len();
    report
}

fn create_scratch(conn: &Connection, plan: &Plan) -> Result<()> {
    let schema = plan.catalog.model_schema.quoted();
    conn.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .ctx("*", || format!("creating schema {schema}"))
}

fn restart(conn: &Connection, plan: &Plan, compiled: &[&ModelPlan]) -> Result<()> {
    conn.execute_batch("ROLLBACK; BEGIN TRANSACTION")
        .ctx("*", || "restarting the compile transaction".into())?;
    create_scratch(conn, plan)?;
    compiled.iter().try_for_each(|m| compile_one(conn, plan, m))
}

fn skip_reason(
    conn: &Connection,
    plan: &Plan,
    m: &ModelPlan,
    skipped: &BTreeMap<String, Skip>,
) -> Option<Skip> {
    if let Some(p) = m.parents.iter().find(|p| skipped.contains_key(*p)) {
        return Some(Skip::Upstream { model: p.clone() });
    }
    let raw = plan.catalog.raw_schema.as_str();
    m.raw_tables
        .iter()
        .find(|t| !sluice_state::tables::relation_exists(conn, raw, t).unwrap_or(false))
        .map(|t| Skip::NoRawTable {
            schema: raw.to_string(),
            table: t.clone(),
        })
}

fn compile_one(conn: &Connection, plan: &Plan, m: &ModelPlan) -> Result<()> {
    let relation = plan.catalog.relation(&plan.catalog.model_schema, &m.name);
    let full = plan.sql(m, Mode::Full)?;
    let at =
        |e: duckdb::Error| ModelError::invalid(&m.path, None, format!("does not compile: {e}"));
    conn.execute_batch(&format!("CREATE OR REPLACE VIEW {relation} AS\n{full}"))
        .map_err(at)?;
    if m.config.materialized == Materialized::Incremental {
        let incremental = plan.sql(m, Mode::Incremental { watermark: 0 })?;
        conn.prepare(&incremental).map(drop).map_err(|e| {
            ModelError::invalid(
                &m.path,
                None,
                format!("its is_incremental() branch does not compile: {e}"),
            )
        })?;
    }
    Ok(())
}
