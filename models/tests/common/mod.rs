//! Set-up the model test binaries share: model files in a directory, planned over a raw
//! schema, and batches recorded in the ledger as a commit records them. (A `common/`
//! directory, not `common.rs`, so Cargo does not build it as a test binary of its own.)

#![allow(dead_code)] // each test binary uses its own part of it

use std::path::Path;

use duckdb::Connection;
use sluice_core::Ident;
use sluice_models::{ModelRunner, Plan};

/// Writes each `(file name, text)` model into `dir`.
pub fn write_models(dir: &Path, models: &[(&str, &str)]) {
    for (name, text) in models {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// An in-memory database with sluice's state tables and the raw tables `raw_ddl` makes.
pub fn database(raw_ddl: &str) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    sluice_state::ensure(&conn).unwrap();
    conn.execute_batch(&format!("CREATE SCHEMA raw; {raw_ddl}"))
        .unwrap();
    conn
}

/// The models in `dir` planned into schema `main` over sources in schema `raw`.
pub fn plan(dir: &Path) -> Plan {
    Plan::load(
        dir,
        Ident::new("main").unwrap(),
        Ident::new("raw").unwrap(),
        None,
    )
    .unwrap()
}

/// The models in `dir`, planned and their tables prepared in `conn`, ready to run.
pub fn runner(dir: &Path, conn: &Connection) -> ModelRunner {
    let runner = ModelRunner::new(plan(dir));
    runner.prepare(conn).unwrap();
    runner
}

/// Records batch `id` of `raw.<table>` in the ledger, as a commit does.
pub fn record_batch(conn: &Connection, table: &str, id: i64) {
    sluice_state::ledger::record_batch(conn, table, &[], id, None, "2026-01-01 00:00:00+00")
        .unwrap();
}
