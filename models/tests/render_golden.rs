//! Golden tests: each model of `golden/project` rendered in full and incremental mode must
//! equal the files under `golden/expected`. The project uses every Jinja feature sluice
//! supports (config, ref to a model, to a raw table and to an ephemeral model, source, this,
//! is_incremental, new_rows with and without alias, set, for, comments, whitespace control).
//! Run with `SLUICE_BLESS=1` to rewrite the expected files after a deliberate change, then
//! review the diff.

#![allow(clippy::unwrap_used)] // test helpers: a panic with the value is the clearest failure

use std::{collections::BTreeSet, path::PathBuf};

use sluice_core::Ident;
use sluice_models::{render::Mode, Plan, Project};

/// This crate's directory in the checkout under test (read at run time, so a binary built
/// in another checkout sharing the target directory reads this one's files).
fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn plan() -> Plan {
    let dir = crate_dir().join("tests/golden/project");
    let project = Project::load(&dir).unwrap();
    let raw: BTreeSet<String> = ["orders".to_string()].into();
    Plan::build(
        &project,
        Ident::new("main").unwrap(),
        Ident::new("raw").unwrap(),
        Some(&raw),
    )
    .unwrap()
}

#[test]
fn rendered_sql_matches_the_golden_files() {
    let plan = plan();
    let expected_dir = crate_dir().join("tests/golden/expected");
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for m in &plan.models {
        for (suffix, mode) in [
            ("full", Mode::Full),
            ("incremental", Mode::Incremental { watermark: 41 }),
        ] {
            let got = plan.sql(m, mode).unwrap();
            let file = expected_dir.join(format!("{}.{suffix}.sql", m.name));
            if bless {
                std::fs::create_dir_all(&expected_dir).unwrap();
                std::fs::write(&file, format!("{got}\n")).unwrap();
            }
            let want = std::fs::read_to_string(&file).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run with SLUICE_BLESS=1 to create it)",
                    file.display()
                )
            });
            if want.trim_end() != got {
                mismatches.push(format!("--- {}\n{want}\n+++ got\n{got}\n", file.display()));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12, "every model is checked in both modes");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn plan_orders_parents_first_and_knows_raw_upstreams() {
    let plan = plan();
    let names: Vec<&str> = plan.models.iter().map(|m| m.name.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(pos("stg_orders") < pos("eph_big_orders"));
    assert!(pos("eph_big_orders") < pos("big_order_log"));
    assert!(pos("fct_orders") < pos("daily"));
    let log = plan.get("big_order_log").unwrap();
    assert_eq!(log.raw_tables, ["orders".to_string()].into());
    assert_eq!(
        plan.get("daily").unwrap().config.materialized,
        sluice_models::Materialized::Table
    );
    assert_eq!(
        plan.get("fct_orders").unwrap().config.strategy,
        sluice_models::Strategy::Merge
    );
    // folder config: marts are incremental unless the model says otherwise
    assert_eq!(
        plan.get("fct_customer_totals").unwrap().config.materialized,
        sluice_models::Materialized::Incremental
    );
    assert!(plan.depends_on("daily", "stg_orders"));
    assert!(!plan.depends_on("stg_orders", "daily"));
}
