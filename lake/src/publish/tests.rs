//! The publisher against in-memory DuckDB databases and Delta tables in a temporary
//! directory: what a commit covers, the watermark, and two writers racing for a stream.

use std::{cell::RefCell, rc::Rc};

use sluice_core::SharedLedger;

use super::*;

/// A database with `raw.t` holding Kafka-like rows of stream `t/0`, source `s`: batch
/// `b` has offsets `from..to`.
fn database(batches: &[(i64, i64, i64)]) -> Connection {
    let conn = empty_database();
    for &(batch, from, to) in batches {
        add_batch(
            &conn,
            batch,
            from,
            to,
            "CAST(TIMESTAMP '2026-11-30 10:00:00' AS TIMESTAMPTZ)",
        );
    }
    conn
}

/// Batch `batch` of offsets `from..to`, committed at `at` (SQL).
pub(super) fn add_batch(conn: &Connection, batch: i64, from: i64, to: i64, at: &str) {
    conn.execute(
        &format!("INSERT INTO raw.t SELECT o, 7, ?, {at}, 's', 't', 0, o FROM range(?, ?) r(o)"),
        duckdb::params![batch, from, to],
    )
    .expect("rows");
    conn.execute(
        "INSERT INTO _sluice.batches VALUES (?, 't', ?, 0, NULL, NULL, '{}', now())",
        duckdb::params![batch, to - from],
    )
    .expect("ledger");
}

pub(super) fn empty_database() -> Connection {
    let conn = Connection::open_in_memory().expect("duckdb");
    sluice_state::ensure(&conn).expect("state");
    conn.execute_batch(
        "CREATE SCHEMA raw;
         CREATE TABLE raw.t (id BIGINT, small UTINYINT, _sluice_batch BIGINT,
           _sluice_ingested_at TIMESTAMPTZ, _sluice_source VARCHAR, _sluice_topic VARCHAR,
           _sluice_partition INTEGER, _sluice_offset BIGINT);",
    )
    .expect("raw table");
    conn
}

fn publisher(root: &Path, writer: &str) -> Publisher {
    publisher_with(root, writer, "")
}

pub(super) fn publisher_with(root: &Path, writer: &str, extra: &str) -> Publisher {
    let config: LakeConfig = toml::from_str(&format!(
        "format = \"delta\"\nuri = \"{}\"\n{extra}",
        root.display()
    ))
    .expect("config");
    Publisher::new(&config, root, Ident::new("raw").expect("ident"), writer).expect("publisher")
}

pub(super) fn spec() -> TableSpec {
    TableSpec {
        table: Ident::new("t").expect("ident"),
        shared: vec![(
            "s".into(),
            SharedStreams {
                scope: "kafka:g".into(),
                stream_columns: vec!["_sluice_topic", "_sluice_partition"],
                position_column: "_sluice_offset",
            },
        )],
    }
}

/// Rows in the table's current version, by the files' statistics.
pub(super) fn rows_in(p: &Publisher) -> usize {
    let open = p.open.get("t").expect("open");
    let snapshot = open.delta.snapshot().expect("snapshot");
    snapshot
        .log_data()
        .iter()
        .map(|f| f.num_records().expect("stats"))
        .sum()
}

#[test]
fn batches_are_published_once_with_the_watermark_and_stream_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = database(&[(1, 0, 100), (2, 100, 250)]);
    let mut p = publisher(dir.path(), "w1");
    let first = p
        .publish_next(&conn, &spec())
        .expect("publish")
        .expect("a commit");
    assert_eq!(
        (first.batches, first.through_batch, first.rows),
        (2, 2, 250)
    );
    assert_eq!(rows_in(&p), 250);
    assert_eq!(
        p.publish_next(&conn, &spec())
            .expect("publish")
            .map(|c| c.version),
        None
    );
    assert_eq!(p.ledger("t").known("kafka:g/t/0"), Some(250));
    // A new publisher (a restart) reads the watermark from the log: nothing again.
    let mut again = publisher(dir.path(), "w1");
    assert!(again
        .publish_next(&conn, &spec())
        .expect("publish")
        .is_none());
    assert_eq!(again.state("t").map(|s| s.watermark), Some(2));
    let held = again
        .ledger("t")
        .read(&["kafka:g/t/0".into()])
        .expect("read");
    assert_eq!(held.get("kafka:g/t/0"), Some(&250));
}

#[test]
fn two_writers_racing_for_a_stream_conflict_and_the_loser_publishes_only_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    // Both read offsets 0..100 of the stream; the loser also read 100..150.
    let winner_db = Rc::new(database(&[(1, 0, 100)]));
    let loser_db = database(&[(1, 0, 150)]);
    // The table exists before the race, so both commit on version 0.
    let mut setup = publisher(&root, "setup");
    setup.ensure_open(&database(&[]), &spec()).expect("create");
    let winner = Rc::new(RefCell::new(publisher(&root, "winner")));
    let mut loser = publisher(&root, "loser");
    let raced = Rc::new(RefCell::new(false));
    {
        let (winner, winner_db, raced) = (winner.clone(), winner_db.clone(), raced.clone());
        loser.before_commit = Some(Box::new(move || {
            if !raced.replace(true) {
                let won = winner
                    .borrow_mut()
                    .publish_next(&winner_db, &spec())
                    .expect("winner");
                assert!(won.is_some(), "the winner commits first");
            }
        }));
    }
    let lost = loser
        .publish_next(&loser_db, &spec())
        .expect("loser")
        .expect("a commit");
    assert!(*raced.borrow());
    assert_eq!(
        loser.take_conflicts("t"),
        1,
        "the loser's first attempt conflicted"
    );
    assert_eq!(loser.take_conflicts("t"), 0, "taken");
    assert_eq!(lost.rows, 50, "only the offsets the winner did not publish");
    assert_eq!(rows_in(&loser), 150, "every offset once");
    assert_eq!(loser.ledger("t").known("kafka:g/t/0"), Some(150));
}

#[test]
fn unsigned_columns_are_published_widened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = database(&[(1, 0, 10)]);
    let mut p = publisher(dir.path(), "w");
    p.publish_next(&conn, &spec()).expect("publish");
    let open = p.open.get("t").expect("open");
    let schema = open.delta.snapshot().expect("snapshot").schema();
    let small = schema.field("small").expect("column");
    assert_eq!(small.data_type(), &deltalake::kernel::DataType::SHORT);
    assert!(schema.field("dt").is_some(), "the partition column");
}
