//! A SQL client holding a snapshot, and DuckDB's checkpoints. While any transaction is
//! open, DuckDB cannot checkpoint after a commit that replaced a table or updated rows
//! (a `table` model does, every run): the write-ahead log grows with every commit. Ended
//! by `idle_in_transaction_session_timeout`, the next commit checkpoints and the log is
//! emptied. Measured here with the real daemon, psql and a small `checkpoint_threshold`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::support::{csv_rows, query_i64, Daemon, Deployment, SCHEMA};

const THRESHOLD: u64 = 64 * 1024;

#[test]
fn a_held_snapshot_holds_back_checkpoints_only_until_its_idle_timeout_ends_it() {
    let d = Deployment::new(
        SCHEMA,
        "[duckdb]\ncheckpoint_threshold = \"64KiB\"\n[sql]\nlisten = \"127.0.0.1:0\"\n",
    )
    .with_models(&[(
        "totals.sql",
        "{{ config(materialized='table') }}\nselect count(*) as n, sum(amount) as s from {{ ref('src') }}",
    )]);
    let mut daemon = d.start();
    d.write("f000.csv", &csv_rows(1, 1000));
    daemon.wait_until("the first file archived", |_| d.moved("archive").len() == 1);
    let port = daemon.sql_port();
    let wal_path = d.data.join("warehouse.duckdb.wal");
    let wal = || std::fs::metadata(&wal_path).map_or(0, |m| m.len());

    // A client opens a transaction, reads, and stays (no idle timeout for now).
    let mut psql = Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host=127.0.0.1 port={port} user=sluice dbname=sluice sslmode=disable"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    let mut stdin = psql.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(psql.stdout.take().expect("stdout"));
    stdin
        .write_all(b"SET idle_in_transaction_session_timeout = 0;\nBEGIN;\nSELECT 'held', count(*) FROM raw.src;\n")
        .expect("write");
    stdin.flush().expect("flush");
    let mut line = String::new();
    while !line.starts_with("held|") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("read") > 0, "psql ended");
    }
    assert_eq!(line.trim(), "held|1000");

    // Commits go on; with the snapshot held, none can checkpoint: the WAL grows past the
    // threshold many times over.
    let mut files = 1;
    while wal() < 4 * THRESHOLD {
        assert!(
            files < 40,
            "the WAL stayed at {} bytes over {files} commits",
            wal()
        );
        ingest_one(&d, &mut daemon, &mut files);
    }
    let held_back = wal();

    // The client goes idle past its timeout: its transaction is rolled back, and the next
    // commit checkpoints.
    stdin
        .write_all(b"SET idle_in_transaction_session_timeout = '300ms';\n")
        .expect("write");
    stdin.flush().expect("flush");
    daemon.wait_for_log("idle longer than idle_in_transaction_session_timeout");
    ingest_one(&d, &mut daemon, &mut files);
    daemon.wait_until("the WAL checkpointed", |_| wal() < THRESHOLD);
    assert!(held_back >= 4 * THRESHOLD, "{held_back}");
    drop(stdin);
    let _ = psql.wait();

    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), files * 1000);
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"),
        files * 1000
    );
    assert_eq!(query_i64(&db, "SELECT n FROM main.totals"), files * 1000);
}

/// One more file of 1,000 rows, committed (the daemon archives it after its commit).
fn ingest_one(d: &Deployment, daemon: &mut Daemon, files: &mut i64) {
    d.write(
        &format!("f{files:03}.csv"),
        &csv_rows(*files * 1000 + 1, 1000),
    );
    *files += 1;
    daemon.wait_until("the file archived", |_| {
        d.moved("archive").len() == *files as usize
    });
}
