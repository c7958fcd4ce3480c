//! Compiling a plan binds every model against the database and leaves it unchanged.

#![allow(clippy::unwrap_used)] // test helpers: a panic with the value is the clearest failure

use duckdb::Connection;
use sluice_models::{compile, ModelRunner, Plan, RunOptions};

mod common;

fn plan(dir: &std::path::Path, files: &[(&str, &str)]) -> Plan {
    common::write_models(dir, files);
    common::plan(dir)
}

fn db() -> Connection {
    let conn = common::database(
        "CREATE TABLE raw.t (id BIGINT, _sluice_batch BIGINT);
         INSERT INTO raw.t VALUES (1, 1), (2, 1);",
    );
    common::record_batch(&conn, "t", 1);
    conn
}

#[test]
fn compiles_over_built_tables_and_leaves_them_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let conn = db();
    let first = plan(dir.path(), &[
        ("a.sql", "{{ config(materialized='table') }} select id from {{ ref('t') }}"),
        ("b.sql", "{{ config(materialized='incremental') }} select id, _sluice_batch from {{ ref('t') }} where {{ new_rows() }}"),
    ]);
    let mut runner = ModelRunner::new(first);
    runner.prepare(&conn).unwrap();
    runner.run(&conn, &RunOptions::default());
    let second = plan(
        dir.path(),
        &[
            (
                "a.sql",
                "{{ config(materialized='table') }} select id, id * 2 as twice from {{ ref('t') }}",
            ),
            ("c.sql", "select twice from {{ ref('a') }}"),
        ],
    );
    let report = compile(&conn, &second).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.compiled, 3);
    let cols: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'a'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cols, 1, "the built table is unchanged");
    let c: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'c'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(c, 0, "nothing was created");
    let broken = plan(dir.path(), &[("c.sql", "select nope from {{ ref('a') }}")]);
    let report = compile(&conn, &broken).unwrap();
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0].to_string().contains("c.sql"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn every_broken_model_is_reported_not_only_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let conn = db();
    let p = plan(
        dir.path(),
        &[
            ("a.sql", "select nope from {{ ref('t') }}"),
            ("b.sql", "select id from {{ ref('t') }}"),
            ("c.sql", "select id from {{ ref('b') }}"),
            ("d.sql", "select also_nope from {{ ref('c') }}"),
        ],
    );
    let report = compile(&conn, &p).unwrap();
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("a.sql") && errors[0].contains("nope"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("d.sql") && errors[1].contains("also_nope"),
        "{errors:?}"
    );
    assert_eq!(report.compiled, 2);
}
