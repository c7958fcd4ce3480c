//! Compaction, vacuum and retention against Delta tables in a temporary directory.

use std::path::Path;

use super::super::tests::{add_batch, empty_database, publisher_with, rows_in, spec};
use super::*;

const NOW: &str = "now()";

/// Data files on disk under the table (the log aside).
fn files_on_disk(table: &Path) -> usize {
    let mut n = 0;
    let mut dirs = vec![table.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("_delta_log") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                n += 1;
            }
        }
    }
    n
}

fn files_in_log(p: &Publisher) -> usize {
    p.state("t").expect("open").files
}

#[test]
fn a_partition_of_small_files_is_compacted_then_vacuumed_with_every_row_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = empty_database();
    let mut p = publisher_with(
        dir.path(),
        "w",
        "compact_after = 8\nvacuum_retention = \"0s\"\n",
    );
    // One Delta commit per batch: twelve small files in today's partition.
    for b in 1..=12 {
        add_batch(&conn, b, (b - 1) * 100, b * 100, NOW);
        p.publish_next(&conn, &spec())
            .expect("publish")
            .expect("a commit");
    }
    assert_eq!(files_in_log(&p), 12);
    let c = p
        .compact_next("t")
        .expect("compact")
        .expect("due: 12 small files");
    assert_eq!((c.files_in, c.files_out, c.rows), (12, 1, 1_200));
    assert_eq!(files_in_log(&p), 1);
    assert_eq!(rows_in(&p), 1_200, "every row, once");
    assert!(
        p.compact_next("t").expect("compact").is_none(),
        "one file: nothing to do"
    );
    // The compacted-away files are still on disk until vacuumed (retention 0 here).
    let table = dir.path().join("t");
    assert_eq!(files_on_disk(&table), 13);
    assert_eq!(p.vacuum("t").expect("vacuum"), 12);
    assert_eq!(files_on_disk(&table), 1);
    // Publishing goes on after both.
    add_batch(&conn, 13, 1_200, 1_300, NOW);
    p.publish_next(&conn, &spec())
        .expect("publish")
        .expect("a commit");
    assert_eq!(rows_in(&p), 1_300);
    // The compaction commit changed no data: a streaming reader skips it.
    let log = std::fs::read_to_string(table.join(format!("_delta_log/{:020}.json", c.version)))
        .expect("the compaction's commit");
    assert!(log.contains("\"OPTIMIZE\""), "{log}");
    assert!(!log.contains("\"dataChange\":true"), "{log}");
}

#[test]
fn a_compaction_racing_another_writers_compaction_of_the_same_files_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = empty_database();
    let mut p = publisher_with(dir.path(), "w", "compact_after = 4\n");
    for b in 1..=5 {
        add_batch(&conn, b, (b - 1) * 10, b * 10, NOW);
        p.publish_next(&conn, &spec())
            .expect("publish")
            .expect("a commit");
    }
    let mut other = publisher_with(dir.path(), "other", "compact_after = 4\n");
    other.ensure_open(&conn, &spec()).expect("open");
    // Both see the five small files; the other compacts them first.
    let files_seen = {
        let open = p.open.get_mut("t").expect("open");
        small_files(open, "t", p.target_file_size, 4)
            .expect("files")
            .expect("due")
            .1
            .len()
    };
    assert_eq!(files_seen, 5);
    assert!(other.compact_next("t").expect("other").is_some());
    // This one's snapshot still has the five: its commit removes files already removed.
    let open = p.open.get_mut("t").expect("open");
    let (dt, files) = small_files(open, "t", p.target_file_size, 4)
        .expect("files")
        .expect("due");
    let store = open.delta.object_store();
    let target = p.target_file_size;
    let (adds, _) = p
        .runtime
        .block_on(rewrite(
            &p.open["t"].delta,
            store,
            &files,
            20_000,
            target,
            "t",
        ))
        .expect("rewrite");
    let (actions, op) = compaction(adds, files, &dt, target);
    let err = p.commit("t", actions, op).expect_err("a conflict");
    assert!(err.is_conflict(), "{err}");
    // Through the public entry point a conflict is not an error: it is tried later.
    let mut again = publisher_with(dir.path(), "w", "compact_after = 4\n");
    again.ensure_open(&conn, &spec()).expect("open");
    assert!(
        again.compact_next("t").expect("no error").is_none(),
        "nothing left to compact"
    );
    assert_eq!(rows_in(&again), 50);
}

#[test]
fn partitions_older_than_the_retention_are_removed_with_a_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = empty_database();
    let mut p = publisher_with(dir.path(), "w", "retention = \"30days\"\n");
    add_batch(
        &conn,
        1,
        0,
        100,
        "CAST(TIMESTAMP '2001-02-03 04:05:06' AS TIMESTAMPTZ)",
    );
    add_batch(&conn, 2, 100, 150, NOW);
    p.publish_next(&conn, &spec())
        .expect("publish")
        .expect("a commit");
    assert_eq!(rows_in(&p), 150);
    assert_eq!(
        p.expire("t").expect("expire"),
        1,
        "the 2001 partition's file"
    );
    assert_eq!(rows_in(&p), 50, "today's rows stay");
    assert_eq!(p.expire("t").expect("expire"), 0);
}
