//! Kills at every step of the commit: the binary's fault points (compiled into test builds,
//! see `sluice_core::fault`) SIGKILL sluice at one named place; each test proves the kill
//! landed there (what was committed, renamed or archived at that moment), restarts, and
//! checks rows, Parquet files, the ledger and dead letters exactly.

use std::{collections::BTreeSet, fs, os::unix::process::ExitStatusExt, path::Path};

use crate::{
    kafka::{assert_each_message_once, assert_offsets_at, order, Kafka},
    lifecycle::{assert_exactly_once, write_inbox},
    support::{csv_rows, query_i64, query_strings, Deployment, SCHEMA},
};

const FILES: i64 = 4;
const ROWS: i64 = 2_500;

/// Runs `sluice run --once` with `SLUICE_FAULT=<fault>` and asserts it died there.
pub fn run_to_fault(d: &Deployment, fault: &str) {
    let out = d.run_once_with(&[("SLUICE_FAULT", fault)]);
    let log = String::from_utf8_lossy(&out.stderr);
    let point = fault.split('@').next().unwrap_or(fault);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "not killed: {}\n{log}",
        out.status
    );
    assert!(
        log.contains(&format!("fault point {point} reached")),
        "{log}"
    );
}

/// CSV input in several batches per file; killed at `fault`; `at_kill` checks the state
/// the kill left; then a clean run must leave every row exactly once.
fn csv_fault(fault: &str, at_kill: impl FnOnce(&Deployment)) {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 1000\n");
    let (good, bad, sum) = write_inbox(&d, FILES, ROWS);
    run_to_fault(&d, fault);
    at_kill(&d);
    d.run_once();
    assert_exactly_once(&d, FILES, good, bad, sum);
}

fn committed_batches(d: &Deployment) -> i64 {
    query_i64(&d.db(), "SELECT count(*) FROM _sluice.batches")
}

/// Parquet files in the ledger, and those on disk (hidden temporary ones included).
fn parquet_files(d: &Deployment) -> (BTreeSet<String>, BTreeSet<String>) {
    let ledger = query_strings(
        &d.db(),
        "SELECT parquet_file FROM _sluice.batches WHERE parquet_file IS NOT NULL",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    let mut disk = BTreeSet::new();
    collect(&d.data.join("parquet"), &d.data.join("parquet"), &mut disk);
    (ledger, disk)
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.display().to_string());
        }
    }
}

fn inbox_files(d: &Deployment) -> usize {
    fs::read_dir(&d.inbox).map_or(0, |e| e.count())
}

#[test]
fn killed_before_a_parquet_file_is_renamed_into_place() {
    csv_fault("parquet.before_rename@3", |d| {
        let (ledger, disk) = parquet_files(d);
        assert!(ledger.len() < 3, "{ledger:?}");
        assert!(ledger.is_subset(&disk));
        let hidden: Vec<&String> = disk.difference(&ledger).collect();
        assert!(
            hidden
                .iter()
                .any(|f| f.rsplit('/').next().is_some_and(|n| n.starts_with('.'))),
            "no temporary Parquet file left: {disk:?}"
        );
    });
}

#[test]
fn killed_after_a_parquet_file_is_renamed_but_before_its_commit() {
    csv_fault("parquet.after_rename@3", |d| {
        let (ledger, disk) = parquet_files(d);
        assert!(ledger.len() < 3, "{ledger:?}");
        assert!(
            disk.difference(&ledger).any(|f| f.ends_with(".parquet")),
            "no renamed, uncommitted Parquet file: {disk:?} vs {ledger:?}"
        );
    });
}

#[test]
fn killed_just_before_the_duckdb_commit() {
    csv_fault("commit.before@3", |d| {
        assert_eq!(committed_batches(d), 2);
        let (ledger, disk) = parquet_files(d);
        assert!(
            disk.len() > ledger.len(),
            "the third batch's file: {disk:?}"
        );
        assert_eq!(inbox_files(d), FILES as usize, "nothing archived yet");
    });
}

#[test]
fn killed_just_after_the_duckdb_commit() {
    csv_fault("commit.after@3", |d| {
        assert_eq!(committed_batches(d), 3);
        let db = d.db();
        assert_eq!(
            query_i64(&db, "SELECT count(*) FROM raw.src"),
            query_i64(&db, "SELECT sum(rows) FROM _sluice.batches")
        );
    });
}

#[test]
fn killed_after_a_file_is_committed_but_before_it_is_archived() {
    csv_fault("file.before_dispose@1", |d| {
        // At least one file is wholly committed (one commit can finish two), yet none is
        // archived: every file is still in the inbox.
        let db = d.db();
        let ingested = query_i64(
            &db,
            "SELECT count(*) FROM _sluice.files WHERE status = 'ingested'",
        );
        assert!(ingested >= 1, "no file was wholly committed at the kill");
        assert_eq!(
            inbox_files(d),
            FILES as usize,
            "the ingested files are still there"
        );
        assert!(d.moved("archive").is_empty());
    });
}

#[test]
fn killed_just_after_a_file_is_archived() {
    csv_fault("file.after_dispose@1", |d| {
        assert_eq!(d.moved("archive").len(), 1);
        assert_eq!(inbox_files(d), FILES as usize - 1);
    });
}

#[test]
fn killed_inside_a_models_transaction() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 1000\n").with_models(&[(
        "all_rows.sql",
        "{{ config(materialized='incremental') }}\n\
         select id, amount, _sluice_batch from {{ ref('src') }} where {{ new_rows() }}",
    )]);
    // A first run builds the mart; the next one is killed while it merges new rows.
    d.write("first.csv", &csv_rows(900_000_000, 500));
    d.run_once();
    let (mut good, bad, mut sum) = write_inbox(&d, FILES, ROWS);
    good += 500;
    sum += (900_000_000..900_000_500).sum::<i64>();
    run_to_fault(&d, "model.before_commit");
    {
        let db = d.db();
        let watermark = query_i64(
            &db,
            "SELECT watermark FROM _sluice.models WHERE name = 'all_rows'",
        );
        // The killed run left nothing: the mart holds exactly the rows up to the
        // watermark its first run committed, and rows beyond it wait.
        assert_eq!(
            query_i64(&db, "SELECT count(*) FROM main.all_rows"),
            query_i64(
                &db,
                &format!("SELECT count(*) FROM raw.src WHERE _sluice_batch <= {watermark}")
            )
        );
        assert!(
            query_i64(&db, "SELECT count(*) FROM raw.src")
                > query_i64(&db, "SELECT count(*) FROM main.all_rows"),
            "no rows were waiting for the killed model run"
        );
    }
    d.run_once();
    assert_exactly_once(&d, FILES + 1, good, bad, sum);
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM main.all_rows"), good);
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT id) FROM main.all_rows"),
        good
    );
}

/// Kafka input; killed at `fault`; then every message exactly once and the stored offsets
/// at the high watermarks.
fn kafka_fault(fault: &str) {
    let k = Kafka::new("faults", 2);
    let d = k.deployment_with("", SCHEMA, "[batch]\nmax_rows = 500\n", "");
    let total = 3_000;
    for n in 0..total {
        k.send((n % 2) as i32, &format!("k{n}"), &order(n));
    }
    k.flush();
    run_to_fault(&d, fault);
    let committed = query_i64(&d.db(), "SELECT count(*) FROM raw.src");
    assert!(committed > 0, "killed before any commit");
    d.run_once();
    let db = d.db();
    assert_each_message_once(&db, total);
    assert_offsets_at(&db, 2, total / 2);
}

#[test]
fn kafka_killed_before_the_broker_offset_commit() {
    kafka_fault("kafka.before_broker_commit");
}

#[test]
fn kafka_killed_after_the_broker_offset_commit() {
    kafka_fault("kafka.after_broker_commit");
}
