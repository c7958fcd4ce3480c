//! The process as an operator sees it: one writer per data directory, clean stops on
//! SIGTERM, and every input row exactly once however often the process is killed.

use std::{
    collections::BTreeSet,
    fs, thread,
    time::{Duration, Instant},
};

use nix::sys::signal::{kill, Signal};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::support::{csv_rows, query_i64, query_strings, Deployment, SCHEMA};

#[test]
fn a_second_sluice_on_the_same_data_dir_is_refused() {
    let d = Deployment::new(SCHEMA, "");
    let mut first = d.start();
    first.wait_for_log("watching");
    let out = d.run_once_with(&[]);
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
pub fn write_inbox(d: &Deployment, files: i64, rows: i64) -> (i64, i64, i64) {
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
pub fn assert_exactly_once(d: &Deployment, files: i64, good: i64, bad: i64, sum: i64) {
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
    daemon.wait_for_log("committed table=");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "exit {status}: {log}");
    assert!(log.contains("SIGTERM") && log.contains("stopped"), "{log}");
    let done = d.moved("archive").len();
    assert!(
        done < 20,
        "SIGTERM came after ingestion finished; the test proves nothing"
    );
    // Everything the stopped process read, it committed itself before exiting.
    let read: i64 = log
        .lines()
        .find(|l| l.contains("stopped reading"))
        .and_then(|l| l.split("records=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of records read in the log: {log}"));
    let db = d.db();
    let committed = query_i64(&db, "SELECT count(*) FROM raw.src")
        + query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters");
    assert_eq!(
        committed, read,
        "records read by the stopped sluice vs committed by it"
    );
    assert!(
        read > 0 && read < good + bad,
        "read {read} of {}",
        good + bad
    );
    drop(db);
    d.run_once();
    assert_exactly_once(&d, 20, good, bad, sum);
}

#[test]
fn every_row_exactly_once_across_sigkills_at_random_moments() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 1000\n");
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
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut last_batch, mut rounds) = (0, 0);
    while rounds < 6 {
        let mut daemon = d.start();
        // The kill clock starts once this round has committed: each kill lands while
        // sluice ingests, not while it starts.
        daemon.wait_for_log("committed table=");
        thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        let log = daemon.log.clone();
        daemon.kill();
        let db = d.db();
        let batch = query_i64(
            &db,
            "SELECT coalesce(max(batch_id), 0) FROM _sluice.batches",
        );
        let records = query_i64(&db, "SELECT count(*) FROM raw.src")
            + query_i64(&db, "SELECT count(*) FROM _sluice.dead_letters");
        assert!(
            batch > last_batch,
            "round {rounds}: nothing committed before the kill (batch {batch}, before {last_batch}): {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            records < good + bad,
            "round {rounds}: the kill came after everything was committed (seed {seed})"
        );
        last_batch = batch;
        rounds += 1;
    }
    d.run_once();
    assert_exactly_once(&d, files as i64, good, bad, sum);
}

#[test]
fn a_commit_that_cannot_succeed_stops_the_daemon_with_its_error() {
    // One batch (a long max_age) for the two files that follow.
    let d = Deployment::new(SCHEMA, "[batch]\nmax_age = \"1h\"\n");
    d.write("a.csv", &csv_rows(1, 3));
    d.run_once();
    // Someone tightens the raw table; each of the next files has a row that breaks the
    // rule. A failure tied to one file would quarantine it (tests/it/csv_poison.rs); one
    // that every file of the batch hits on its own is the table's, and stops sluice.
    let db = duckdb::Connection::open(d.data.join("warehouse.duckdb")).expect("open");
    db.execute_batch("ALTER TABLE raw.src ALTER COLUMN name SET NOT NULL")
        .expect("alter");
    drop(db);
    d.write("b.csv", "id,name,amount\n4,,1.00\n");
    d.write("c.csv", "id,name,amount\n5,,1.00\n");

    let out = d.run_once_with(&[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("NOT NULL") && log.contains("src"), "{log}");
    // Nothing of the failed batch is committed or acknowledged: the files wait.
    assert_eq!(query_i64(&d.db(), "SELECT count(*) FROM raw.src"), 3);
    assert!(d.inbox.join("b.csv").exists() && d.inbox.join("c.csv").exists());
    assert!(d.moved("quarantine").is_empty());
}

/// The signal mask bits of SIGHUP (1), SIGINT (2) and SIGTERM (15) in /proc/<pid>/status:
/// signal n is bit n - 1.
const STOP_SIGNALS_MASK: u64 = 1 | (1 << 1) | (1 << 14);

/// Waits (bounded) until the process's main thread has SIGTERM, SIGINT and SIGHUP
/// blocked, failing if it logs anything before that (start-up work logs as it begins).
fn wait_for_blocked_signals(daemon: &crate::support::Daemon) {
    let status = format!("/proc/{}/status", daemon.pid());
    let deadline = Instant::now() + crate::support::PATIENCE;
    loop {
        let log = daemon.log_text();
        let text = fs::read_to_string(&status).unwrap_or_default();
        let blocked = text
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        if blocked & STOP_SIGNALS_MASK == STOP_SIGNALS_MASK {
            return;
        }
        assert!(
            log.is_empty(),
            "sluice logged before blocking signals: {log}"
        );
        assert!(
            Instant::now() < deadline,
            "sluice never blocked the stop signals"
        );
        thread::yield_now();
    }
}

#[test]
fn a_signal_at_any_moment_of_start_up_stops_cleanly_or_reloads() {
    let d = Deployment::new(SCHEMA, "[batch]\nmax_rows = 700\n");
    let (good, bad, sum) = write_inbox(&d, 10, 2_000);
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut before_ready = 0;
    let signals = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];
    for round in 0..18 {
        let signal = signals[round % 3];
        let mut daemon = d.start();
        // sluice blocks the signals before it starts anything; a signal sent earlier than
        // that, while the program is still being loaded, is the one moment no program can
        // catch.
        wait_for_blocked_signals(&daemon);
        // Start-up takes some tens of milliseconds here: most signals land within it.
        thread::sleep(Duration::from_millis(rng.random_range(0..80)));
        if !daemon.log_text().contains("run: ready") {
            before_ready += 1;
        }
        kill(daemon.pid(), signal).expect("signal");
        if signal == Signal::SIGHUP {
            daemon.wait_for_log("SIGHUP: configuration unchanged");
            daemon.wait_for_log("run: ready");
            let (status, log) = daemon.terminate();
            assert!(
                status.success(),
                "round {round}, after SIGHUP: exit {status}: {log}"
            );
            continue;
        }
        let status = daemon.wait_exit();
        let log = daemon.log_text();
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}, {signal}: {status}: {log}"
        );
        assert!(
            log.contains(&format!("{signal}: committing what is in flight"))
                && log.contains("stopped"),
            "round {round}: {log}"
        );
    }
    assert!(
        before_ready >= 3,
        "only {before_ready} signals landed before sluice was ready; the test proves little"
    );
    d.run_once();
    assert_exactly_once(&d, 10, good, bad, sum);
}
