//! Compiling models against the database without running them (`sluice check`, SIGHUP):
//! inside a transaction that is always rolled back, each model is created as a view in
//! dependency order and its incremental SQL is prepared, so DuckDB binds every name.

use std::collections::BTreeMap;

use duckdb::Connection;

use crate::{
    config::Materialized,
    error::{DuckdbContext, ModelError, Result},
    plan::Plan,
    render::Mode,
    state,
};

/// The outcome of compiling a plan.
#[derive(Debug, Default)]
pub struct CompileReport {
    pub errors: Vec<ModelError>,
    /// Models not compiled, with why (a raw table not yet created, an upstream error).
    pub skipped: BTreeMap<String, String>,
    pub compiled: usize,
}

/// Compiles every model of `plan`; leaves the database unchanged.
pub fn compile(conn: &Connection, plan: &Plan) -> Result<CompileReport> {
    conn.execute_batch("BEGIN TRANSACTION")
        .ctx("*", || "starting a compile transaction".into())?;
    let report = compile_all(conn, plan);
    conn.execute_batch("ROLLBACK")
        .ctx("*", || "rolling back the compile transaction".into())?;
    Ok(report)
}

fn compile_all(conn: &Connection, plan: &Plan) -> CompileReport {
    let mut report = CompileReport::default();
    let schema = plan.catalog.model_schema.quoted();
    if let Err(e) = conn.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")) {
        report.errors.push(ModelError::Duckdb {
            model: "*".into(),
            context: format!("creating schema {schema}"),
            source: e,
        });
        return report;
    }
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
            Ok(()) => report.compiled += 1,
            Err(e) => {
                report.skipped.insert(name, "it does not compile".into());
                report.errors.push(e);
            }
        }
    }
    report
}

fn skip_reason(
    conn: &Connection,
    plan: &Plan,
    m: &crate::plan::ModelPlan,
    skipped: &BTreeMap<String, String>,
) -> Option<String> {
    if let Some(p) = m.parents.iter().find(|p| skipped.contains_key(*p)) {
        return Some(format!("upstream model {p} was not compiled"));
    }
    let raw = plan.catalog.raw_schema.as_str();
    m.raw_tables
        .iter()
        .find(|t| !state::relation_exists(conn, raw, t).unwrap_or(false))
        .map(|t| format!("raw table {raw}.{t} does not exist yet (no data ingested)"))
}

fn compile_one(conn: &Connection, plan: &Plan, m: &crate::plan::ModelPlan) -> Result<()> {
    let name = m.name.as_str();
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
    let _ = name;
    Ok(())
}
