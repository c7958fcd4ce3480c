//! The defining property of incremental models: after any sequence of batches (random
//! sizes, keys that repeat, late updates to old keys, empty batches, model runs skipped as
//! if the process died between the ingest commit and the model run, restarts that forget
//! everything in memory) every model equals a full refresh of itself, row for row. One
//! model per strategy (append, merge, delete+insert on one and on two keys), dbt's own
//! `max(...) from {{ this }}` idiom, plus a view, an ephemeral model and a table downstream.

#![allow(clippy::unwrap_used)] // test helpers: a panic with the value is the clearest failure

use std::path::Path;

use duckdb::{params, Connection};
use proptest::prelude::*;
use sluice_models::{render::Mode, ModelRunner, Outcome, Plan, RunOptions};

const MODELS: &[(&str, &str)] = &[
    ("stg_events.sql", "select seq, k, v, _sluice_batch from {{ source('raw', 'events') }}"),
    (
        "eph_positive.sql",
        "{{ config(materialized='ephemeral') }}\nselect * from {{ ref('stg_events') }} where v > 0",
    ),
    (
        "all_events.sql",
        "{{ config(materialized='incremental') }}\n\
         select seq, k, v from {{ ref('stg_events') }} where {{ new_rows() }}",
    ),
    (
        "positive_events.sql",
        "{{ config(materialized='incremental', incremental_strategy='append') }}\n\
         select seq, v from {{ ref('eph_positive') }} where {{ new_rows() }}",
    ),
    (
        "latest_by_key.sql",
        "{{ config(materialized='incremental', unique_key='k', incremental_strategy='merge') }}\n\
         select k, v, seq from {{ ref('events') }} as e where {{ new_rows('e') }}\n\
         qualify row_number() over (partition by k order by seq desc) = 1",
    ),
    (
        "totals_by_key.sql",
        "{{ config(materialized='incremental', unique_key='k', incremental_strategy='delete+insert') }}\n\
         select k, sum(v) as total, count(*) as n from {{ ref('events') }}\n\
         {% if is_incremental() %}\
         where k in (select k from {{ ref('events') }} where {{ new_rows() }})\n\
         {% endif %}\
         group by k",
    ),
    (
        "totals_by_key_sign.sql",
        "{{ config(materialized='incremental', unique_key=['k', 'pos'], incremental_strategy='delete+insert') }}\n\
         with e as (select k, v > 0 as pos, v, _sluice_batch from {{ ref('stg_events') }})\n\
         select k, pos, sum(v) as total from e\n\
         {% if is_incremental() %}\
         where (k, pos) in (select (k, pos) from e where {{ new_rows() }})\n\
         {% endif %}\
         group by k, pos",
    ),
    (
        // dbt's own idiom, without new_rows().
        "dbt_idiom.sql",
        "{{ config(materialized='incremental') }}\n\
         select seq, k, v from {{ ref('events') }}\n\
         {% if is_incremental() %}where seq > (select coalesce(max(seq), 0) from {{ this }}){% endif %}",
    ),
    (
        "summary.sql",
        "{{ config(materialized='table', min_interval='0s') }}\n\
         select count(*) as keys, sum(total) as total from {{ ref('totals_by_key') }}",
    ),
];

mod common;

/// Records batch `id` of `raw.events` in the ledger, as a commit does.
fn ledger(conn: &Connection, id: i64) {
    common::record_batch(conn, "events", id);
}

const RAW: &str =
    "CREATE TABLE raw.events (seq BIGINT, k INTEGER, v INTEGER, _sluice_batch BIGINT);";

fn setup(dir: &Path) -> (Connection, Plan) {
    common::write_models(dir, MODELS);
    let conn = common::database(RAW);
    (conn, common::plan(dir))
}

/// The standard models with `file` replaced by `text`, planned and ready to run.
fn with_model(dir: &Path, file: &str, text: &str) -> (Connection, ModelRunner) {
    common::write_models(dir, MODELS);
    common::write_models(dir, &[(file, text)]);
    let conn = common::database(RAW);
    let runner = common::runner(dir, &conn);
    (conn, runner)
}

/// What happens after a batch commits.
#[derive(Debug, Clone, Copy)]
enum After {
    RunModels,
    /// The process died before the models ran.
    Crash,
    /// The process restarted: a new runner with nothing in memory.
    Restart,
}

fn after() -> impl Strategy<Value = After> {
    prop_oneof![6 => Just(After::RunModels), 2 => Just(After::Crash), 1 => Just(After::Restart)]
}

fn batches() -> impl Strategy<Value = Vec<(Vec<(i32, i32)>, After)>> {
    let row = (0..6i32, -50..50i32);
    prop::collection::vec((prop::collection::vec(row, 0..25), after()), 1..9)
}

fn run(runner: &mut ModelRunner, conn: &Connection) {
    for r in runner.run(conn, &RunOptions::default()) {
        assert!(
            matches!(r.outcome, Outcome::Built { .. }),
            "{}: {:?}",
            r.model,
            r.outcome
        );
    }
}

fn assert_equals_full_refresh(conn: &Connection, plan: &Plan) {
    for m in plan.built() {
        let table = plan.catalog.relation(&plan.catalog.model_schema, &m.name);
        let full = plan.sql(m, Mode::Full).unwrap();
        for (a, b) in [
            (table.clone(), format!("({full})")),
            (format!("({full})"), table.clone()),
        ] {
            let extra: i64 = conn
                .query_row(
                    &format!(
                        "SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})"
                    ),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(extra, 0, "model {} differs from its full refresh", m.name);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full_refresh(batches in batches()) {
        let dir = tempfile::tempdir().unwrap();
        let (conn, plan) = setup(dir.path());
        let mut runner = ModelRunner::new(plan.clone());
        runner.prepare(&conn).unwrap();
        let mut seq = 0i64;
        for (batch_id, (rows, after)) in (1i64..).zip(batches) {
            for (k, v) in rows {
                seq += 1;
                conn.execute("INSERT INTO raw.events VALUES (?, ?, ?, ?)", params![seq, k, v, batch_id]).unwrap();
            }
            ledger(&conn, batch_id);
            match after {
                After::RunModels => run(&mut runner, &conn),
                After::Crash => {}
                After::Restart => runner = ModelRunner::new(plan.clone()),
            }
        }
        run(&mut runner, &conn);
        assert_equals_full_refresh(&conn, &plan);
    }
}

#[test]
fn incremental_runs_read_only_new_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (conn, plan) = setup(dir.path());
    let mut runner = ModelRunner::new(plan);
    runner.prepare(&conn).unwrap();
    let rows_of = |reports: &[sluice_models::ModelReport], model: &str| {
        reports
            .iter()
            .find(|r| r.model == model)
            .map(|r| match r.outcome {
                Outcome::Built { rows, full } => (rows, full),
                _ => panic!("{model} did not build"),
            })
    };
    conn.execute_batch("INSERT INTO raw.events VALUES (1, 1, 5, 1), (2, 2, 5, 1)")
        .unwrap();
    ledger(&conn, 1);
    let first = runner.run(&conn, &RunOptions::default());
    assert_eq!(rows_of(&first, "all_events"), Some((2, true)));
    conn.execute_batch("INSERT INTO raw.events VALUES (3, 1, 7, 2)")
        .unwrap();
    ledger(&conn, 2);
    let second = runner.run(&conn, &RunOptions::default());
    assert_eq!(
        rows_of(&second, "all_events"),
        Some((1, false)),
        "only the new row"
    );
    assert_eq!(
        rows_of(&second, "totals_by_key"),
        Some((1, false)),
        "only the affected key"
    );
    let third = runner.run(&conn, &RunOptions::default());
    assert!(
        third.is_empty(),
        "nothing is due without a new batch: {third:?}"
    );
    let stored = sluice_state::models::load(&conn, "all_events").unwrap();
    assert_eq!(stored.map(|s| s.watermark), Some(2));
}

#[test]
fn merge_with_duplicate_new_keys_fails_and_leaves_the_model_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (conn, mut runner) = with_model(
        dir.path(),
        "latest_by_key.sql",
        "{{ config(materialized='incremental', unique_key='k', incremental_strategy='merge') }}\n\
         select k, v from {{ ref('events') }} where {{ new_rows() }}",
    );
    conn.execute_batch("INSERT INTO raw.events VALUES (1, 1, 5, 1)")
        .unwrap();
    ledger(&conn, 1);
    runner.run(&conn, &RunOptions::default());
    conn.execute_batch("INSERT INTO raw.events VALUES (2, 4, 1, 2), (3, 4, 2, 2)")
        .unwrap();
    ledger(&conn, 2);
    let reports = runner.run(&conn, &RunOptions::default());
    let r = reports.iter().find(|r| r.model == "latest_by_key").unwrap();
    let Outcome::Failed { error } = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(
        error.contains("got several new rows for the same key: 4 (2 rows)"),
        "{error}"
    );
    assert_eq!(r.watermark, 1, "the watermark did not move");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM main.latest_by_key", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    assert!(runner.has_pending(), "the failed model is retried");
}

#[test]
fn a_null_key_is_replaced_like_any_other() {
    let dir = tempfile::tempdir().unwrap();
    let (conn, mut runner) = with_model(
        dir.path(),
        "latest_by_key.sql",
        "{{ config(materialized='incremental', unique_key='k', incremental_strategy='delete+insert') }}\n\
         select k, v from {{ ref('events') }} where {{ new_rows() }}",
    );
    conn.execute_batch("INSERT INTO raw.events VALUES (1, NULL, 1, 1), (2, 7, 1, 1)")
        .unwrap();
    ledger(&conn, 1);
    run(&mut runner, &conn);
    conn.execute_batch("INSERT INTO raw.events VALUES (3, NULL, 2, 2)")
        .unwrap();
    ledger(&conn, 2);
    run(&mut runner, &conn);
    let rows: Vec<(Option<i32>, i32)> = {
        let mut stmt = conn
            .prepare("SELECT k, v FROM main.latest_by_key ORDER BY k NULLS FIRST")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(rows, [(None, 2), (Some(7), 1)]);
}
