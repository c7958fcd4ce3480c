//! A commit DuckDB refuses for a value, and batches taken back after it (the committer
//! then commits a failed batch one file at a time).

use super::*;

/// A JSON string holding a lone surrogate escape: valid to the CSV typing, refused by
/// DuckDB's JSON on insert.
pub(super) const REFUSED_JSON: &str = "\"\\ud800\"";

#[test]
fn a_value_duckdb_refuses_fails_the_commit_as_tied_to_the_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let bad = chunk(
        vec!["{\"a\": 1}", REFUSED_JSON],
        ColumnType::Json,
        10,
        FileStatus::Ingested,
    );
    let err = w.commit(batch_of(bad)).expect_err("refused");
    assert!(err.is_refused_value(), "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("Malformed JSON"), "{err}");
    // A batch of a narrower type is taken into the JSON column (it holds numbers).
    let other = chunk(vec!["1"], ColumnType::BigInt, 20, FileStatus::Ingested);
    let receipt = w
        .commit(batch_of(other))
        .expect("a number into a JSON column");
    assert!(receipt.schema_changes.is_empty());
}

#[test]
fn batches_taken_back_after_a_failed_commit_give_their_ids_back_and_leave_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let json = |v, offset| chunk(vec![v], ColumnType::Json, offset, FileStatus::Partial);
    let mut failing = w.stage(batch_of(json(REFUSED_JSON, 10))).expect("stage");
    // Staged while the other commits: its Parquet file is written meanwhile.
    let behind = w.stage(batch_of(json("{\"a\": 2}", 20))).expect("stage");
    assert!(w.commit_staged(&mut failing).is_err());
    // Newest first, each with its chunks.
    let behind = w.unstage(behind).expect("unstage the batch behind");
    let failed = w.unstage(failing).expect("unstage the failed batch");
    assert_eq!((behind.chunks.len(), failed.chunks.len()), (1, 1));
    let sink = w.parquet().expect("parquet").clone();
    assert_eq!(sink.list().expect("list"), Vec::<String>::new());
    // Staged again, the batch behind gets the first id.
    let receipt = w.commit(behind).expect("commit");
    assert_eq!(receipt.batch_id, Some(1));
    assert_eq!(count(&w, "SELECT count(*) FROM raw.t"), 1);
    assert_eq!(sink.list().expect("list").len(), 1);
}

#[test]
fn only_the_batch_staged_last_can_be_taken_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let int = |offset| chunk(vec!["1"], ColumnType::BigInt, offset, FileStatus::Partial);
    let first = w.stage(batch_of(int(10))).expect("stage");
    let _second = w.stage(batch_of(int(20))).expect("stage");
    let err = w.unstage(first).expect_err("out of order");
    assert!(
        err.to_string().contains("batch 1 staged out of order"),
        "{err}"
    );
}
