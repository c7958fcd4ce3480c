//! `min_interval` on incremental models: a fold-in of new rows waits until that long after
//! the model's last build (its downstream waits with it), a one-shot run does not wait,
//! and without it an incremental model runs after every commit.

#![allow(clippy::unwrap_used)] // test helpers: a panic with the value is the clearest failure

use std::collections::BTreeMap;

use duckdb::Connection;
use sluice_models::{ModelRunner, Outcome, RunOptions};

const MODELS: &[(&str, &str)] = &[
    (
        "slow.sql",
        "{{ config(materialized='incremental', incremental_strategy='append', min_interval='1h') }}\n\
         select seq, _sluice_batch from {{ source('raw', 'events') }} where {{ new_rows() }}",
    ),
    (
        "after_slow.sql",
        "{{ config(materialized='incremental', incremental_strategy='append') }}\n\
         select seq from {{ ref('slow') }} where {{ new_rows() }}",
    ),
    (
        "every_commit.sql",
        "{{ config(materialized='incremental', incremental_strategy='append') }}\n\
         select seq from {{ source('raw', 'events') }} where {{ new_rows() }}",
    ),
];

mod common;

/// These model files planned over an empty `raw.events`, ready to run (the directory
/// lives as long as the returned guard).
fn runner_with(models: &[(&str, &str)]) -> (tempfile::TempDir, Connection, ModelRunner) {
    let dir = tempfile::tempdir().unwrap();
    common::write_models(dir.path(), models);
    let conn = common::database("CREATE TABLE raw.events (seq BIGINT, _sluice_batch BIGINT);");
    let runner = common::runner(dir.path(), &conn);
    (dir, conn, runner)
}

/// Commits batch `id` of `raw.events` (rows `seq` in `rows`), as the committer does.
fn commit(conn: &Connection, id: i64, rows: std::ops::Range<i64>) {
    conn.execute_batch(&format!(
        "INSERT INTO raw.events SELECT range, {id} FROM range({}, {})",
        rows.start, rows.end
    ))
    .unwrap();
    common::record_batch(conn, "events", id);
}

fn outcomes(
    runner: &mut ModelRunner,
    conn: &Connection,
    opts: &RunOptions,
) -> BTreeMap<String, String> {
    runner
        .run(conn, opts)
        .into_iter()
        .map(|r| {
            let o = match r.outcome {
                Outcome::Built { .. } => "built".to_string(),
                Outcome::Waiting { on } => format!("waiting on {on}"),
                Outcome::Failed { error } => format!("failed: {error}"),
            };
            (r.model, o)
        })
        .collect()
}

/// `name`'s outcome in a round's `map`, if it ran or waited.
fn outcome<'a>(map: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    map.get(name).map(String::as_str)
}

fn count(conn: &Connection, model: &str) -> i64 {
    conn.query_row(&format!("SELECT count(*) FROM main.{model}"), [], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn an_incremental_model_with_min_interval_waits_and_a_one_shot_run_does_not() {
    let (_dir, conn, mut runner) = runner_with(MODELS);
    let round = RunOptions::default();

    // The first build does not wait.
    commit(&conn, 1, 0..10);
    let first = outcomes(&mut runner, &conn, &round);
    assert!(first.values().all(|o| o == "built"), "{first:?}");
    assert_eq!(count(&conn, "slow"), 10);

    // New rows within the hour: `slow` waits, and so does what reads it; the model
    // without min_interval folds them in at once.
    commit(&conn, 2, 10..15);
    let second = outcomes(&mut runner, &conn, &round);
    assert_eq!(
        outcome(&second, "every_commit"),
        Some("built"),
        "{second:?}"
    );
    assert_eq!(
        outcome(&second, "after_slow"),
        Some("waiting on slow"),
        "{second:?}"
    );
    assert!(
        !second.contains_key("slow"),
        "slow is deferred, not run: {second:?}"
    );
    assert!(
        runner.has_pending(),
        "the deferred model is pending (idle rounds retry it)"
    );
    assert_eq!(
        (count(&conn, "slow"), count(&conn, "every_commit")),
        (10, 15)
    );

    // A one-shot run (`sluice run --once`, `sluice models run`) does not wait.
    let now = RunOptions {
        now: true,
        ..RunOptions::default()
    };
    let third = outcomes(&mut runner, &conn, &now);
    assert_eq!(outcome(&third, "slow"), Some("built"), "{third:?}");
    assert_eq!(outcome(&third, "after_slow"), Some("built"), "{third:?}");
    assert_eq!((count(&conn, "slow"), count(&conn, "after_slow")), (15, 15));
}

#[test]
fn a_deferred_model_is_due_min_interval_after_its_last_build_not_after_the_deferral() {
    let text = "{{ config(materialized='incremental', incremental_strategy='append', min_interval='1s') }}\n\
                select seq from {{ source('raw', 'events') }} where {{ new_rows() }}";
    let (_dir, conn, mut runner) = runner_with(&[("paced.sql", text)]);
    let round = RunOptions::default();
    commit(&conn, 1, 0..10);
    assert_eq!(outcomes(&mut runner, &conn, &round)["paced"], "built");
    // The build ended before `built`: the model is due by `built + 1s`.
    let built = std::time::Instant::now();
    // Time passing is what is tested here: a round 0.6 s after the build defers...
    std::thread::sleep(std::time::Duration::from_millis(600));
    commit(&conn, 2, 10..15);
    assert!(outcomes(&mut runner, &conn, &round).is_empty(), "deferred");
    // ... and one 1.15 s after it builds (a deadline counted from the deferral, 1.6 s,
    // would still hold it back).
    std::thread::sleep(
        (built + std::time::Duration::from_millis(1150))
            .saturating_duration_since(std::time::Instant::now()),
    );
    assert_eq!(outcomes(&mut runner, &conn, &round)["paced"], "built");
    assert_eq!(count(&conn, "paced"), 15);
}
