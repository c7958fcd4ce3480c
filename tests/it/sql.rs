//! The live SQL endpoint, with real clients while sluice ingests, all installed by
//! `scripts/env.sh`: psql (Debian's `postgresql-client`) for the simple protocol, catalog
//! browsing, `\copy`, refusals, cancel, timeouts, the connection limit, a 10M-row result,
//! consistency under load and a SIGKILL mid-query; psycopg 3, SQLAlchemy and pandas
//! (tests/clients/psycopg_check.py) and the PostgreSQL JDBC driver
//! (tests/clients/JdbcCheck.java) for the extended protocol, binary formats and types;
//! DuckDB's postgres scanner (tests/clients/duckdb_scanner_check.py) for the catalog and
//! binary COPY.

use std::{
    fs,
    io::Write,
    process::{Command, Output, Stdio},
    time::Instant,
};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::{
    csv_rows, http_get, metric, open_read_only, output, query_i64, Daemon, Deployment, PATIENCE,
    SCHEMA,
};

/// `psql` against the daemon's endpoint: no `~/.psqlrc`, unaligned tuples only, stop at
/// the first error, SQLSTATEs in error messages.
fn psql(port: u16) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        "VERBOSITY=verbose",
    ])
    .arg(format!(
        "host=127.0.0.1 port={port} user=sluice dbname=sluice sslmode=disable connect_timeout=10"
    ))
    .env_remove("PGPASSWORD")
    .stdin(Stdio::null());
    cmd
}

fn run(port: u16, sql: &str) -> Output {
    output(psql(port).args(["-c", sql]))
}

/// The rows psql printed (`|` between columns); the command must succeed.
fn rows(port: u16, sql: &str) -> Vec<String> {
    let out = run(port, sql);
    assert!(
        out.status.success(),
        "psql -c {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// psql's error for `sql`, which must fail.
fn refused(port: u16, sql: &str) -> String {
    let out = run(port, sql);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "psql -c {sql:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// A daemon with a CSV source `src` (150 rows committed) and an incremental model `m`.
fn warehouse(extra: &str) -> (Deployment, Daemon, u16) {
    let d = Deployment::new(SCHEMA, extra).with_models(&[(
        "m.sql",
        "{{ config(materialized='incremental') }}\nselect id, amount, _sluice_batch from {{ ref('src') }} where {{ new_rows() }}",
    )]);
    let mut daemon = d.start_logging("info,sluice_sql=debug");
    d.write("a.csv", &csv_rows(1, 100));
    d.write("b.csv", &csv_rows(101, 50));
    daemon.wait_until("both files archived", |_| d.moved("archive").len() == 2);
    let port = daemon.sql_port();
    (d, daemon, port)
}

#[test]
fn psql_reads_raw_tables_marts_and_state_while_sluice_runs() {
    let (d, mut daemon, port) = warehouse("");
    assert_eq!(
        rows(port, "SELECT count(*), sum(id) FROM raw.src"),
        ["150|11325"]
    );
    daemon.wait_until("the mart caught up", |_| {
        rows(port, "SELECT count(*) FROM m") == ["150"]
    });
    // Unqualified names resolve in the model schema, then the raw schema.
    assert_eq!(rows(port, "SELECT count(*) FROM src"), ["150"]);
    assert_eq!(
        rows(
            port,
            "SELECT sum(rows) FROM _sluice.batches WHERE table_name = 'src'"
        ),
        ["150"]
    );
    // Several statements in one query string: each result, in order.
    assert_eq!(rows(port, "SELECT 1; SELECT 'two'"), ["1", "two"]);
    // Parameters through the extended protocol (psql's \bind, PG 16+, is not in
    // Debian 12's psql; psycopg and JDBC cover it): here a prepared statement by SQL.
    let version = rows(port, "SELECT version()");
    assert!(version[0].starts_with("PostgreSQL 16.6"), "{version:?}");
    assert_eq!(rows(port, "SHOW statement_timeout"), ["300000ms"]);
    assert_eq!(
        rows(port, "SHOW transaction_isolation"),
        ["repeatable read"]
    );
    assert_eq!(
        rows(
            port,
            "BEGIN READ ONLY; SELECT count(*) FROM raw.src; COMMIT"
        ),
        ["BEGIN", "150", "COMMIT"]
    );
    // A query per type, as psql prints Postgres's text format.
    assert_eq!(
        rows(
            port,
            "SELECT true, 7::TINYINT, 7::SMALLINT, 7::INTEGER, 7::BIGINT, 7::UBIGINT, \
             12345678901234567890123::HUGEINT, 1.5::FLOAT, 2.25::DOUBLE, 12.34::DECIMAL(10,2), \
             'héllo', '{\"a\": [1, 2]}'::JSON, '\\x01\\xff'::BLOB, DATE '2024-02-29', \
             TIME '13:14:15.5', TIMESTAMP '2024-02-29 13:14:15.25', \
             TIMESTAMPTZ '2024-02-29 13:14:15+00', INTERVAL '1 day 02:03:04', \
             '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::UUID, [1, 2], {'k': 'v'}, NULL::INTEGER"
        ),
        [
            "t|7|7|7|7|7|12345678901234567890123|1.5|2.25|12.34|héllo|{\"a\": [1, 2]}|\\x01ff|\
          2024-02-29|13:14:15.5|2024-02-29 13:14:15.25|2024-02-29 13:14:15+00|1 day 02:03:04|\
          6ba7b810-9dad-11d1-80b4-00c04fd430c8|[1,2]|{\"k\":\"v\"}|"
        ]
    );
    // psql's \copy: the rows come over the protocol, the file is psql's.
    let copied: Vec<String> = rows(
        port,
        "\\copy (SELECT id, name, NULL AS n FROM raw.src WHERE id <= 2 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .into_iter()
    .filter(|l| !l.starts_with("COPY "))
    .collect();
    assert_eq!(copied, ["id,name,n", "1,name 1,", "2,name 2,"]);
    // psql's catalog commands.
    let tables = rows(port, "\\dt raw.*");
    assert!(
        tables.iter().any(|l| l.starts_with("raw|src|table")),
        "{tables:?}"
    );
    // `\d table` reads Postgres's catalog: Postgres type names and numeric's precision.
    assert_eq!(
        rows(port, "\\d raw.src"),
        [
            "id|bigint|||",
            "name|text|||",
            "amount|numeric(12,2)|||",
            "_sluice_batch|bigint|||",
            "_sluice_ingested_at|timestamp with time zone|||",
            "_sluice_source|text|||",
            "_sluice_file|text|||",
            "_sluice_line|bigint|||",
        ]
    );
    let views = rows(port, "\\dv");
    assert!(views.is_empty(), "{views:?}");
    let databases = rows(port, "\\l");
    assert_eq!(databases.len(), 1, "{databases:?}");
    let schemas = rows(port, "\\dn");
    assert!(schemas.iter().any(|l| l.starts_with("raw|")), "{schemas:?}");

    let scrape = http_get(&format!("{}/metrics", daemon.http_addr())).1;
    assert!(metric(&scrape, "sluice_sql_queries_total{result=\"ok\"}").unwrap_or(0.0) >= 10.0);
    assert!(metric(&scrape, "sluice_sql_rows_sent_total").unwrap_or(0.0) >= 5.0);
    assert!(metric(&scrape, "sluice_sql_query_duration_seconds_count").unwrap_or(0.0) >= 10.0);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    drop(d);
}

#[test]
fn every_write_and_everything_outside_the_warehouse_is_refused() {
    let (d, daemon, port) = warehouse("");
    let secret = d.dir.path().join("secret.csv");
    fs::write(&secret, "a\nsecret-row\n").expect("write");
    let secret = secret.display().to_string();
    let cases = [
        ("INSERT INTO raw.src (id) VALUES (1)", "25006"),
        ("DELETE FROM raw.src", "25006"),
        ("UPDATE raw.src SET id = 0", "25006"),
        ("CREATE TABLE raw.t (a INT)", "25006"),
        ("DROP TABLE raw.src", "25006"),
        ("ATTACH ':memory:' AS other", "25006"),
        ("INSTALL httpfs", "25006"),
        ("LOAD httpfs", "25006"),
        ("COPY raw.src TO '/tmp/sluice-copy-out.csv'", "25006"),
        ("EXPORT DATABASE '/tmp/sluice-export'", "25006"),
        ("CHECKPOINT", "25006"),
        ("SET memory_limit = '1GB'", "42501"),
        ("SET GLOBAL threads = 1", "25006"),
        ("SELECT * FROM read_csv('/etc/passwd')", "42501"),
        (&format!("SELECT * FROM '{secret}'"), "42P01"),
        ("SELECT * FROM read_text('/etc/hostname')", "42501"),
        ("SELECT * FROM glob('/etc/*')", "42501"),
        ("SELECT getenv('HOME')", "42501"),
        ("SELECT 1; DROP TABLE raw.src", "25006"),
    ];
    for (sql, sqlstate) in &cases {
        let err = refused(port, sql);
        assert!(err.contains(&format!("ERROR:  {sqlstate}")), "{sql}: {err}");
        assert!(
            !err.contains("secret-row") && !err.contains("root:"),
            "{sql}: {err}"
        );
    }
    // A write inside a transaction fails the same way; the transaction can be ended.
    let err = refused(port, "BEGIN; DELETE FROM raw.src");
    assert!(err.contains("25006"), "{err}");
    assert!(!std::path::Path::new("/tmp/sluice-copy-out.csv").exists());
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
    let db = open_read_only(&d.data.join("warehouse.duckdb"));
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), 150);
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'raw'"
        ),
        1
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM duckdb_databases() WHERE database_name = 'other'"
        ),
        0
    );
}

#[test]
fn a_cancel_request_and_the_statement_timeout_interrupt_duckdb() {
    let (_d, mut daemon, port) = warehouse("");
    // Minutes of work for DuckDB: only an interrupt ends it in time.
    let endless = "SELECT sum(a.range * b.range) FROM range(100000000) a, range(100000) b";
    let child = psql(port)
        .args(["-c", endless])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    daemon.wait_for_log("statement started");
    // psql answers SIGINT with a protocol cancel request on a new connection.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT");
    let out = wait_bounded(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("57014") && stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );

    let err = refused(port, &format!("SET statement_timeout = '300ms'; {endless}"));
    assert!(
        err.contains("canceling statement due to statement timeout"),
        "{err}"
    );
    // The connection limit is not held by the stopped statements, and the endpoint
    // still answers.
    assert_eq!(rows(port, "SELECT count(*) FROM raw.src"), ["150"]);
    let scrape = http_get(&format!("{}/metrics", daemon.http_addr())).1;
    assert_eq!(
        metric(&scrape, "sluice_sql_queries_total{result=\"canceled\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&scrape, "sluice_sql_queries_total{result=\"timeout\"}"),
        Some(1.0)
    );
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

/// The output of a client that must end within PATIENCE.
fn wait_bounded(mut child: std::process::Child) -> Output {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("psql did not end after the cancel request");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn connections_beyond_max_connections_are_refused_until_one_leaves() {
    let (_d, mut daemon, port) =
        warehouse("[sql]\nlisten = \"127.0.0.1:0\"\nmax_connections = 1\n");
    // An interactive psql holds the only slot once it has answered a query.
    let mut holder = psql(port)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    let mut stdin = holder.stdin.take().expect("stdin");
    stdin.write_all(b"SELECT 'holding';\n").expect("write");
    stdin.flush().expect("flush");
    let base = daemon.http_addr();
    daemon.wait_until("the first client connected", |_| {
        let scrape = http_get(&format!("{base}/metrics")).1;
        metric(&scrape, "sluice_sql_connections") == Some(1.0)
    });
    let err = refused(port, "SELECT 1");
    assert!(
        err.contains("FATAL:  sorry, too many clients already"),
        "{err}"
    );
    let scrape = http_get(&format!("{}/metrics", daemon.http_addr())).1;
    assert_eq!(
        metric(&scrape, "sluice_sql_connections_refused_total"),
        Some(1.0)
    );
    drop(stdin);
    let out = wait_bounded(holder);
    assert!(String::from_utf8_lossy(&out.stdout).contains("holding"));
    daemon.wait_until("the slot is free again", |_| {
        run(port, "SELECT 1").status.success()
    });
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn a_10m_row_result_streams_without_growing_sluice() {
    let (_d, mut daemon, port) = warehouse("");
    let pid = daemon.pid().as_raw();
    let before = rss_kib(pid);
    // ~80 bytes a row: 800 MB of text if sluice held the result.
    let mut child = psql(port)
        .args([
            "-c",
            "SELECT range AS i, range * 2 AS j, repeat('x', 60) AS pad FROM range(10000000)",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    let mut stdout = child.stdout.take().expect("stdout");
    let counter = std::thread::spawn(move || {
        let mut lines = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => return lines,
                Ok(n) => lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64,
            }
        }
    });
    let mut peak = before;
    let deadline = Instant::now() + PATIENCE * 3;
    while child.try_wait().expect("try_wait").is_none() {
        peak = peak.max(rss_kib(pid));
        assert!(Instant::now() < deadline, "psql did not finish");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(child.wait().expect("wait").success());
    assert_eq!(counter.join().expect("counter"), 10_000_000);
    let grown_mib = (peak.saturating_sub(before)) / 1024;
    assert!(
        grown_mib < 200,
        "sluice grew by {grown_mib} MiB while streaming 10M rows"
    );
    let scrape = http_get(&format!("{}/metrics", daemon.http_addr())).1;
    assert!(metric(&scrape, "sluice_sql_rows_sent_total").unwrap_or(0.0) >= 10_000_000.0);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn every_statement_sees_whole_batches_and_whole_model_runs_under_load() {
    // Small batches: many commits and model runs while the queries run.
    let (d, daemon, port) = warehouse("[batch]\nmax_rows = 300\n");
    let check = "SELECT (SELECT count(*) FROM raw.src), \
         (SELECT count(*) FROM raw.src) = (SELECT coalesce(sum(rows), 0) FROM _sluice.batches WHERE table_name = 'src'), \
         (SELECT count(*) FROM m) = (SELECT count(*) FROM raw.src WHERE _sluice_batch <= (SELECT watermark FROM _sluice.models WHERE name = 'm'));\n";
    let script = d.dir.path().join("check.sql");
    fs::write(&script, check.repeat(400)).expect("script");
    let lines = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..40 {
                d.write(&format!("load-{i}.csv"), &csv_rows(1000 + i * 1000, 1000));
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        });
        let out = output(psql(port).arg("-f").arg(&script));
        writer.join().expect("writer");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    });
    let rows: Vec<&str> = lines.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 400);
    let mut counts = std::collections::BTreeSet::new();
    for row in &rows {
        let cols: Vec<&str> = row.split('|').collect();
        assert_eq!(
            cols[1..],
            ["t", "t"],
            "a statement saw part of a commit: {row}"
        );
        counts.insert(cols[0].to_string());
    }
    // The reads overlapped ingestion: they saw the table at several sizes.
    assert!(counts.len() >= 3, "the queries all saw {counts:?}");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn sigkill_during_a_long_query_loses_and_doubles_nothing() {
    let (d, mut daemon, port) = warehouse("");
    let child = psql(port)
        .args([
            "-c",
            "SELECT sum(a.range * b.range) FROM range(100000000) a, range(100000) b",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    daemon.wait_for_log("statement started");
    daemon.kill();
    let out = wait_bounded(child);
    assert!(!out.status.success(), "the query cannot have finished");
    let mut daemon = d.start();
    d.write("c.csv", &csv_rows(151, 50));
    daemon.wait_until("the new file archived", |_| d.moved("archive").len() == 3);
    let port = daemon.sql_port();
    assert_eq!(
        rows(
            port,
            "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM raw.src"
        ),
        ["200|200|1|200"]
    );
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

/// The Python with psycopg, SQLAlchemy and pandas that `scripts/env.sh` installs.
fn python_clients() -> String {
    std::env::var("SLUICE_TEST_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SLUICE_TEST_PYTHON is not set: run the tests through scripts/test.sh, which \
             installs psycopg, SQLAlchemy and pandas and sets it"
        )
    })
}

/// Runs a client check program (tests/clients/) against the endpoint on `port`, with the
/// 150 rows `warehouse` commits; it must succeed. Its standard output.
fn client_check(cmd: &mut Command, port: u16) -> String {
    let out = output(cmd.arg(port.to_string()).arg("150"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn psycopg_and_sqlalchemy_read_every_type_in_binary_and_text() {
    let (_d, daemon, port) = warehouse("");
    let script = crate::support::repo_root().join("tests/clients/psycopg_check.py");
    let stdout = client_check(Command::new(python_clients()).arg(script), port);
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn duckdbs_postgres_scanner_attaches_the_live_warehouse() {
    let (_d, mut daemon, port) = warehouse("");
    daemon.wait_until("the mart caught up", |_| {
        rows(port, "SELECT count(*) FROM m") == ["150"]
    });
    let python = std::env::var("SLUICE_TEST_SCANNER_PYTHON").unwrap_or_else(|_| {
        panic!(
            "SLUICE_TEST_SCANNER_PYTHON is not set: run the tests through scripts/test.sh, \
             which installs DuckDB with its postgres scanner and sets it"
        )
    });
    let script = crate::support::repo_root().join("tests/clients/duckdb_scanner_check.py");
    let stdout = client_check(Command::new(python).arg(script), port);
    assert_eq!(stdout.trim(), "ok");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn the_jdbc_driver_lists_tables_and_reads_every_type() {
    let (_d, daemon, port) = warehouse("");
    let program = crate::support::repo_root().join("tests/clients/JdbcCheck.java");
    let mut java = Command::new("java");
    java.args([
        "-Duser.timezone=UTC",
        "-cp",
        "/usr/share/java/postgresql.jar",
    ])
    .arg(program);
    let stdout = client_check(&mut java, port);
    assert_eq!(stdout.trim(), "ok");
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn a_transaction_left_idle_is_ended_and_its_connection_with_it() {
    let (_d, mut daemon, port) = warehouse("");
    let mut client = psql(port)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    let mut stdin = client.stdin.take().expect("stdin");
    stdin
        .write_all(b"SET idle_in_transaction_session_timeout = '200ms';\nBEGIN;\nSELECT count(*) FROM raw.src;\n")
        .expect("write");
    stdin.flush().expect("flush");
    daemon.wait_for_log("idle longer than idle_in_transaction_session_timeout");
    stdin.write_all(b"SELECT 'after';\n").expect("write");
    drop(stdin);
    let out = wait_bounded(client);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("150"), "{stdout}");
    assert!(!stdout.contains("after"), "{stdout}");
    assert!(
        stderr.contains("25P03") && stderr.contains("idle-in-transaction timeout"),
        "{stderr}"
    );
    // Other clients are not affected.
    assert_eq!(rows(port, "SELECT count(*) FROM raw.src"), ["150"]);
    let (status, log) = daemon.terminate();
    assert!(status.success(), "{log}");
}
