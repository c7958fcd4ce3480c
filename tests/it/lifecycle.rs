//! The process as an operator sees it: one writer per data directory, clean stops on
//! SIGTERM, and every input row exactly once however often the process is killed.

use std::{collections::BTreeSet, fs, thread, time::Duration};

use rand::Rng;

use crate::support::{csv_rows, query_i64, query_strings, Deployment, SCHEMA};

#[test]
fn a_second_sluice_on_the_same_data_dir_is_refused() {
    let d = Deployment::new(SCHEMA, "");
    let mut first = d.start();
    first.wait_for_log("watching");
    let out = d
        .command(&["run", "--once"])
        .output()
        .expect("second sluice");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another sluice") && err.contains(&format!("pid {}", first.pid())),
        "{err}"
    );
    let (status, log) = first.terminate();
    assert!(status.success(), "{log}");
}

/// Files with unique ids: `files` files of `rows` rows, one bad row in every fifth file.
/// Returns (good rows, bad rows, sum of good ids).
fn write_inbox(d: &Deployment, files: i64, rows: i64) -> (i64, i64, i64) {
    let (mut good, mut bad, mut sum) = (0, 0, 0);
    for f in 0..files {
        let mut body = String::from("id,name,amount\n");
        for r in 0..rows {
            let id = f * 1_000_000 + r;
            if f % 5 == 0 && r == rows / 2 {
                body.push_str(&format!("{id},bad,not-a-number\n"));
                bad += 1;
                continue;
            }
            body.push_str(&format!("{id},n{id},{}.{:02}\n", r % 1000, r % 100));
            good += 1;
            sum += id;
        }
        d.write(&format!("f{f:03}.csv"), &body);
    }
    (good, bad, sum)
}

/// Everything that must hold once all input is committed exactly once.
fn assert_exactly_once(d: &Deployment, files: i64, good: i64, bad: i64, sum: i64) {
    let db = d.db();
    let q = |sql: &str| query_i64(&db, sql);
    assert_eq!(q("SELECT count(*) FROM raw.src"), good, "raw rows");
    assert_eq!(
        q("SELECT count(DISTINCT id) FROM raw.src"),
        good,
        "distinct ids"
    );
    assert_eq!(
        q("SELECT count(*) FROM (SELECT DISTINCT _sluice_file, _sluice_line FROM raw.src)"),
        good
    );
    assert_eq!(
        q("SELECT sum(id)::BIGINT FROM raw.src"),
        sum,
        "the exact ids"
    );
    assert_eq!(
        q("SELECT count(*) FROM _sluice.dead_letters"),
        bad,
        "dead letters"
    );
    assert_eq!(
        q("SELECT count(*) FROM (SELECT DISTINCT file, line FROM _sluice.dead_letters)"),
        bad
    );
    let glob = d.parquet_glob("src");
    assert_eq!(
        q(&format!("SELECT count(*) FROM read_parquet('{glob}')")),
        good,
        "parquet rows"
    );
    assert_eq!(
        q(&format!(
            "SELECT count(DISTINCT id) FROM read_parquet('{glob}')"
        )),
        good
    );
    assert_eq!(
        q("SELECT sum(rows) FROM _sluice.batches"),
        good,
        "ledger rows"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM (SELECT _sluice_batch, count(*) n FROM raw.src GROUP BY 1) r \
           FULL JOIN _sluice.batches b ON r._sluice_batch = b.batch_id \
           WHERE b.rows > 0 AND r.n IS DISTINCT FROM b.rows"
        ),
        0,
        "every batch's rows are its ledger rows"
    );
    assert_eq!(
        q("SELECT count(*) FROM _sluice.files WHERE status = 'ingested'"),
        files
    );
    assert_eq!(q("SELECT sum(rows) FROM _sluice.files"), good);
    let ledger: BTreeSet<String> = query_strings(
        &db,
        "SELECT parquet_file FROM _sluice.batches WHERE parquet_file IS NOT NULL",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    let on_disk: BTreeSet<String> = fs::read_dir(d.data.join("parquet/src"))
        .expect("partitions")
        .flat_map(|p| {
            let p = p.expect("partition").path();
            let dt = p.file_name().expect("name").to_string_lossy().into_owned();
            fs::read_dir(&p).expect("files").map(move |f| {
                format!(
                    "src/{dt}/{}",
                    f.expect("file").file_name().to_string_lossy()
                )
            })
        })
        .collect();
    assert_eq!(ledger, on_disk, "Parquet files are exactly the ledger's");
    assert_eq!(
        d.moved("archive").len() as i64,
        files,
        "every file archived"
    );
    assert_eq!(
        fs::read_dir(&d.inbox).expect("inbox").count(),
        0,
        "inbox drained"
    );
}

#[test]
fn sigterm_during_ingestion_commits_what_is_in_flight_and_exits_zero() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 2000\n");
    let (good, bad, sum) = write_inbox(&d, 20, 5_000);
    let mut daemon = d.start();
    daemon.wait_for_log("committed");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "exit {status}: {log}");
    assert!(log.contains("SIGTERM") && log.contains("stopped"), "{log}");
    let done = d.moved("archive").len();
    assert!(
        done < 20,
        "SIGTERM came after ingestion finished; the test proves nothing"
    );
    d.run_once();
    assert_exactly_once(&d, 20, good, bad, sum);
}

#[test]
fn every_row_exactly_once_across_sigkills_at_random_moments() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 1500\n");
    let (mut good, bad, mut sum) = write_inbox(&d, 40, 3_000);
    // A few larger files, so kills also land between the batches of one file.
    for f in 0..3 {
        let name = format!("big{f}.csv");
        let mut body = String::from("id,name,amount\n");
        for r in 0..20_000 {
            let id = 900_000_000 + f * 100_000 + r;
            body.push_str(&format!("{id},big,{}.00\n", r % 500));
            good += 1;
            sum += id;
        }
        d.write(&name, &body);
    }
    let files = 43;
    let mut rng = rand::rng();
    let mut interrupted = 0;
    for _round in 0..8 {
        let daemon = d.start();
        // The kill moment is what is random here; nothing waits on sluice.
        thread::sleep(Duration::from_millis(rng.random_range(30..900)));
        let before = d.moved("archive").len();
        daemon.kill();
        if before < files {
            interrupted += 1;
        }
    }
    assert!(
        interrupted > 0,
        "no kill landed during ingestion; the test proves nothing"
    );
    d.run_once();
    assert_exactly_once(&d, files as i64, good, bad, sum);
}

#[test]
fn a_commit_that_cannot_succeed_stops_the_daemon_with_its_error() {
    let d = Deployment::new(SCHEMA, "");
    d.write("a.csv", &csv_rows(1, 3));
    d.run_once();
    // Someone tightens the raw table; the next file has a row that breaks the rule.
    let db = duckdb::Connection::open(d.data.join("warehouse.duckdb")).expect("open");
    db.execute_batch("ALTER TABLE raw.src ALTER COLUMN name SET NOT NULL")
        .expect("alter");
    drop(db);
    d.write("b.csv", "id,name,amount\n4,,1.00\n");

    let mut daemon = d.start();
    let status = daemon.wait_exit();

    let log = daemon.log_text();
    assert!(!status.success(), "{log}");
    assert!(log.contains("NOT NULL") && log.contains("src"), "{log}");
    // Nothing of the failed batch is committed or acknowledged: b.csv waits in the inbox.
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 3);
    assert!(d.inbox.join("b.csv").exists());
}
