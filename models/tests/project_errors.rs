//! What `sluice check` reports for broken model folders: every problem, with file and line.

#![allow(clippy::unwrap_used)] // test helpers: a panic with the value is the clearest failure

use std::{collections::BTreeSet, path::Path};

use sluice_core::Ident;
use sluice_models::Plan;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn problems(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), files);
    let raw: BTreeSet<String> = ["events".to_string()].into();
    let result = Plan::load(
        dir.path(),
        Ident::new("main").unwrap(),
        Ident::new("raw").unwrap(),
        Some(&raw),
    );
    result.expect_err("the project must be refused").to_string()
}

#[test]
fn unknown_macro_names_file_and_line() {
    let e = problems(&[(
        "a.sql",
        "select 1\nfrom {{ ref('events') }}\nwhere {{ dbt_utils.star('x') }}\n",
    )]);
    assert!(e.contains("a.sql:3"), "{e}");
    assert!(e.contains("not supported"), "{e}");
    let e = problems(&[("b.sql", "\n\nselect {{ var('x') }}\n")]);
    assert!(e.contains("b.sql:3") && e.contains("var"), "{e}");
}

#[test]
fn cycles_and_unknown_refs_name_the_ref() {
    let e = problems(&[
        ("a.sql", "select * from {{ ref('b') }}"),
        ("b.sql", "-- b\nselect * from {{ ref('a') }}"),
    ]);
    assert!(e.contains("ref cycle: a -> b -> a"), "{e}");
    assert!(e.contains("b.sql:2"), "{e}");
    let e = problems(&[(
        "c.sql",
        "select 1\nunion all select * from {{ ref('nope') }}",
    )]);
    assert!(e.contains("c.sql:2") && e.contains("nope"), "{e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = problems(&[
        ("a.sql", "{{ config(materialized='snapshot') }} select 1"),
        ("b.sql", "{{ config(materialized='incremental', incremental_strategy='merge') }} select 1"),
        ("c.sql", "select {{ oops( }}"),
        ("schema.yml", "version: 2\nmodels:\n  - name: a\n    columns:\n      - name: id\n        tests:\n          - dbt_utils.at_least_one\n"),
    ]);
    for needle in [
        "a.sql:1",
        "snapshot",
        "b.sql:1",
        "unique_key",
        "c.sql:1",
        "schema.yml:7",
        "at_least_one",
    ] {
        assert!(e.contains(needle), "{needle} missing from: {e}");
    }
}

#[test]
fn packages_macros_and_unknown_yaml_are_refused() {
    let e = problems(&[
        ("dbt_project.yml", "name: p\n"),
        (
            "packages.yml",
            "packages:\n  - package: dbt-labs/dbt_utils\n",
        ),
        ("models/a.sql", "select 1"),
    ]);
    assert!(
        e.contains("packages.yml:1") && e.contains("packages are not supported"),
        "{e}"
    );
    let e = problems(&[
        ("dbt_project.yml", "name: p\n"),
        ("macros/m.sql", "{% macro m() %}1{% endmacro %}"),
        ("models/a.sql", "select 1"),
    ]);
    assert!(
        e.contains("m.sql") && e.contains("macros are not supported"),
        "{e}"
    );
    let e = problems(&[("a.sql", "select 1"), ("s.yml", "version: 2\nseeds: []\n")]);
    assert!(e.contains("s.yml:2") && e.contains("seeds"), "{e}");
}
