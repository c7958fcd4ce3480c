//! Files that change after (part of) them was committed: a file that grows has only its
//! new lines read; one whose committed bytes changed is quarantined, never doubled; a
//! file rewritten after a SIGKILL in its middle likewise; a file quarantined after part
//! of it was committed keeps that part, and the same name dropped again corrected is
//! read on after it. Each row exactly once.

use std::{fs, io::Write};

use crate::{
    faults::run_to_fault,
    support::{csv_rows, query_i64, query_strings, Deployment, SCHEMA},
};

fn keep() -> Deployment {
    Deployment::new(&format!("after_ingest = \"keep\"\n{SCHEMA}"), "")
}

fn append(d: &Deployment, name: &str, text: &str) {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(d.inbox.join(name))
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// Data rows `first..first + rows` without the header line.
fn lines(first: i64, rows: i64) -> String {
    csv_rows(first, rows)
        .split_once('\n')
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default()
}

fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// (count, distinct ids, sum of ids) in raw.src.
fn ids(d: &Deployment) -> (i64, i64, i64) {
    let db = d.db();
    let q = |sql: &str| query_i64(&db, sql);
    (
        q("SELECT count(*) FROM raw.src"),
        q("SELECT count(DISTINCT id) FROM raw.src"),
        q("SELECT coalesce(sum(id), 0)::BIGINT FROM raw.src"),
    )
}

#[test]
fn a_kept_file_that_grows_has_only_its_new_lines_read() {
    let d = keep();
    d.write("daily.csv", &csv_rows(1, 3));
    d.run_once();
    assert_eq!(ids(&d), (3, 3, 6));

    append(&d, "daily.csv", &lines(4, 2));
    let out = d.run_once();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("grew after it was ingested"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ids(&d), (5, 5, 15));

    // A last line without a line end is a row; the line end that comes with the next
    // append closes it and is not read as a line of its own.
    append(&d, "daily.csv", "6,name 6,6.06");
    d.run_once();
    append(&d, "daily.csv", "\n7,name 7,7.07\n");
    d.run_once();
    assert_eq!(ids(&d), (7, 7, 28));

    let db = d.db();
    let lines = query_strings(&db, "SELECT id, _sluice_line FROM raw.src ORDER BY id");
    let expected: Vec<Vec<String>> = (1..=7)
        .map(|id| vec![id.to_string(), (id + 1).to_string()])
        .collect();
    assert_eq!(lines, expected, "physical line of every row");
    // One ledger record for the file, holding the hash of all of it.
    let content = fs::read(d.inbox.join("daily.csv")).expect("read");
    let files = query_strings(
        &db,
        "SELECT status, hash, rows, next_offset FROM _sluice.files",
    );
    assert_eq!(
        files,
        vec![vec![
            "ingested".to_string(),
            b3(&content),
            "7".to_string(),
            content.len().to_string()
        ]]
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters"),
        0
    );
}

#[test]
fn a_kept_file_whose_committed_lines_changed_is_quarantined_not_read_again() {
    let d = keep();
    d.write("rewritten.csv", &csv_rows(1, 3));
    d.write("truncated.csv", &csv_rows(10, 3));
    d.write("continued.csv", csv_rows(20, 2).trim_end());
    d.run_once();
    assert_eq!(ids(&d), (8, 8, 6 + 33 + 41));

    // Rewritten with one value changed and a row more; cut short; the last line,
    // committed without a line end, continued.
    d.write(
        "rewritten.csv",
        &csv_rows(1, 4).replace("name 2", "name two"),
    );
    d.write("truncated.csv", &csv_rows(10, 2));
    append(&d, "continued.csv", "9,name 219,3.00\n");
    d.run_once();

    assert_eq!(ids(&d), (8, 8, 6 + 33 + 41), "no row read twice or changed");
    let db = d.db();
    let quarantined = query_strings(
        &db,
        "SELECT original_name, reason FROM _sluice.files WHERE status = 'quarantined' \
         ORDER BY 1",
    );
    let names: Vec<&str> = quarantined.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["continued.csv", "rewritten.csv", "truncated.csv"]);
    for (row, expect) in quarantined.iter().zip([
        "that line was continued",
        "no longer the start of the file",
        "the file is now",
    ]) {
        assert!(
            row[1].contains("changed after it was read") && row[1].contains(expect),
            "{row:?}"
        );
    }
    assert_eq!(
        d.moved("quarantine"),
        ["continued.csv", "rewritten.csv", "truncated.csv"]
    );
}

#[test]
fn an_archived_name_dropped_again_with_new_content_is_a_new_file() {
    let d = Deployment::new(SCHEMA, "");
    d.write("export.csv", &csv_rows(1, 3));
    d.run_once();
    d.write("export.csv", &csv_rows(100, 2));
    d.run_once();
    assert_eq!(ids(&d), (5, 5, 6 + 201));
    assert_eq!(
        query_i64(
            &d.db(),
            "SELECT count(*) FROM _sluice.files WHERE status = 'ingested'"
        ),
        2
    );
}

/// Starts sluice on a large file in small batches and SIGKILLs it once some, not all,
/// of the file is committed. Returns the rows committed before the kill.
fn kill_in_the_middle_of(d: &Deployment, name: &str) -> i64 {
    let mut daemon = d.start();
    daemon.wait_for_log("batch=3 ");
    daemon.kill();
    let db = d.db();
    let partial = query_strings(
        &db,
        &format!("SELECT status, rows FROM _sluice.files WHERE original_name = '{name}'"),
    );
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert_eq!(
        partial[0][0], "partial",
        "the kill landed after the file was done"
    );
    let committed = query_i64(&db, "SELECT count(*) FROM raw.src");
    assert!(committed > 0, "the kill landed before any commit");
    committed
}

#[test]
fn a_file_killed_in_its_middle_then_grown_resumes_exactly_once() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 1000\n");
    let rows = 200_000;
    d.write("big.csv", &csv_rows(1, rows));
    let committed = kill_in_the_middle_of(&d, "big.csv");
    assert!(committed < rows);
    append(&d, "big.csv", &lines(rows + 1, 500));
    d.run_once();
    let n = rows + 500;
    assert_eq!(ids(&d), (n, n, n * (n + 1) / 2));
    assert_eq!(d.moved("archive"), ["big.csv"]);
}

#[test]
fn a_file_killed_in_its_middle_then_rewritten_is_quarantined_not_doubled() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 1000\n");
    let rows = 200_000;
    d.write("big.csv", &csv_rows(1, rows));
    let committed = kill_in_the_middle_of(&d, "big.csv");
    // The producer writes the file again, its first row changed.
    d.write(
        "big.csv",
        &csv_rows(1, rows).replace("name 1,", "name one,"),
    );
    d.run_once();
    let db = d.db();
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), committed);
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"),
        committed
    );
    let reason = query_strings(
        &db,
        "SELECT reason FROM _sluice.files WHERE status = 'quarantined'",
    );
    assert!(
        reason.len() == 1 && reason[0][0].contains("no longer the start of the file"),
        "{reason:?}"
    );
    assert_eq!(d.moved("quarantine"), ["big.csv"]);
}

#[test]
fn a_file_that_grows_while_it_is_read_is_not_archived_before_its_new_lines_are_read() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 1000\n");
    let rows = 300_000;
    d.write("growing.csv", &csv_rows(1, rows));
    let mut daemon = d.start();
    daemon.wait_for_log("batch=2 ");
    append(&d, "growing.csv", &lines(rows + 1, 1_000));
    let inbox = d.inbox.clone();
    daemon.wait_until("the grown file read and archived", |daemon| {
        daemon.log_text().contains("changed while it was read")
            && fs::read_dir(&inbox).is_ok_and(|mut e| e.next().is_none())
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let n = rows + 1_000;
    assert_eq!(ids(&d), (n, n, n * (n + 1) / 2));
}

/// The ledger's records of `name`: status, rows, next_offset, reason (oldest first).
fn records(d: &Deployment, name: &str) -> Vec<Vec<String>> {
    query_strings(
        &d.db(),
        &format!(
            "SELECT status, rows, next_offset, coalesce(reason, '') FROM _sluice.files \
             WHERE original_name = '{name}' ORDER BY updated_at, status"
        ),
    )
}

#[test]
fn a_kept_file_grown_with_binary_is_quarantined_and_dropped_again_corrected_read_on_once() {
    let d = keep();
    let first = csv_rows(1, 3);
    d.write("daily.csv", &first);
    d.run_once();
    assert_eq!(ids(&d), (3, 3, 6));

    // What is appended is not text: the file is quarantined, after its rows 1-3.
    append(&d, "daily.csv", &format!("{}\0\0\0\n", lines(4, 1)));
    d.run_once();
    assert_eq!(ids(&d), (3, 3, 6));
    assert_eq!(d.moved("quarantine"), ["daily.csv"]);
    let after_quarantine = records(&d, "daily.csv");
    assert_eq!(after_quarantine.len(), 2, "{after_quarantine:?}");
    // The record of the committed rows stays as it was: where they end, their hash.
    let committed = [
        "ingested".to_string(),
        "3".into(),
        first.len().to_string(),
        String::new(),
    ];
    assert_eq!(after_quarantine[0], committed);
    assert_eq!(
        query_strings(
            &d.db(),
            "SELECT hash FROM _sluice.files WHERE status = 'ingested'"
        ),
        [[b3(first.as_bytes())]]
    );
    let quarantine = &after_quarantine[1];
    assert_eq!(
        (quarantine[0].as_str(), quarantine[1].as_str()),
        ("quarantined", "0")
    );
    let nul_at = first.len() + lines(4, 1).len();
    assert_eq!(
        quarantine[3],
        format!(
            "binary content: NUL byte at offset {nul_at}; {} bytes of it (lines before 5) \
             were committed before, and their rows stay",
            first.len()
        )
    );

    // The producer drops the file again, corrected and grown: its rows 1-3 are not read
    // again, its rows 4-5 are read once.
    d.write("daily.csv", &csv_rows(1, 5));
    d.run_once();
    assert_eq!(ids(&d), (5, 5, 15));
    let db = d.db();
    let lines = query_strings(&db, "SELECT id, _sluice_line FROM raw.src ORDER BY id");
    let expected: Vec<Vec<String>> = (1..=5)
        .map(|id| vec![id.to_string(), (id + 1).to_string()])
        .collect();
    assert_eq!(lines, expected);
}

#[test]
fn a_file_quarantined_after_a_kill_in_its_middle_is_read_on_once_when_dropped_again_corrected() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 100\n");
    let rows = 300;
    let whole = csv_rows(1, rows);
    d.write("part.csv", &whole);
    run_to_fault(&d, "commit.after@1");
    let at_kill = records(&d, "part.csv");
    assert_eq!(at_kill.len(), 1, "{at_kill:?}");
    assert_eq!(
        (at_kill[0][0].as_str(), at_kill[0][1].as_str()),
        ("partial", "100")
    );
    assert_eq!(ids(&d), (100, 100, 5050));

    // Before the restart, a line after the rows committed became binary: the file is
    // quarantined, and what was committed of it stays recorded.
    let broken = whole.replace(&lines(250, 1), "\0\0\0\n");
    assert_ne!(broken, whole);
    d.write("part.csv", &broken);
    d.run_once();
    assert_eq!(ids(&d), (100, 100, 5050));
    assert_eq!(d.moved("quarantine"), ["part.csv"]);
    let after_quarantine = records(&d, "part.csv");
    assert_eq!(after_quarantine.len(), 2, "{after_quarantine:?}");
    assert_eq!(after_quarantine[0], at_kill[0]);
    assert_eq!(after_quarantine[1][0], "quarantined");
    assert!(
        after_quarantine[1][3].starts_with("binary content: NUL byte")
            && after_quarantine[1][3].contains(&format!(
                "{} bytes of it (lines before 102) were committed before",
                at_kill[0][2]
            )),
        "{after_quarantine:?}"
    );

    // Dropped again corrected: rows 101-300 are read, 1-100 are not read again.
    d.write("part.csv", &whole);
    d.run_once();
    assert_eq!(ids(&d), (rows, rows, rows * (rows + 1) / 2));
    let parquet = query_i64(
        &d.db(),
        &format!(
            "SELECT count(*) FROM read_parquet('{}')",
            d.parquet_glob("src")
        ),
    );
    assert_eq!(parquet, rows);
    assert_eq!(d.moved("archive"), ["part.csv"]);
    // The file's one record of rows: ingested whole.
    let done = query_strings(
        &d.db(),
        "SELECT status, rows, next_offset FROM _sluice.files WHERE status <> 'quarantined'",
    );
    assert_eq!(
        done,
        [[
            "ingested".to_string(),
            rows.to_string(),
            whole.len().to_string()
        ]]
    );
}
