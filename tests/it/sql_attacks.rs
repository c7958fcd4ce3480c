//! The SQL endpoint attacked as an outsider would attack it, over loopback, with psql,
//! psycopg, curl-like HTTP requests and raw protocol bytes ([`wire`]): file names that
//! DuckDB would read as paths, settings and paths it would tell, oversized and malformed
//! messages before and after login, connections that never log in or never finish their
//! headers, values that would take gigabytes, and password guessing. Each attack is
//! refused, bounded or survived, and the daemon ingests through all of them without
//! losing or doubling a row.

mod wire;

use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{csv_rows, http_get, metric, output, query_i64, Daemon, Deployment, SCHEMA};
use wire::{claiming, first_error, scram_server_first, startup, typed, Wire};

/// psql as `user` with `password`: no `~/.psqlrc`, unaligned tuples, SQLSTATEs shown.
fn psql_as(port: u16, user: &str, password: &str) -> Command {
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
        "host=127.0.0.1 port={port} user={user} dbname=sluice sslmode=disable connect_timeout=10"
    ))
    .env("PGPASSWORD", password)
    .stdin(Stdio::null());
    cmd
}

fn psql(port: u16, user: &str, password: &str, sql: &str) -> Output {
    output(psql_as(port, user, password).args(["-c", sql]))
}

/// POST /query with `sql`: the status and body.
fn post(http: &str, sql: &str, auth: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.post(&format!("{http}/query"));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req.send(sql).expect("POST /query");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

/// The daemon's resident and peak resident memory, in MiB.
fn memory_mib(daemon: &Daemon) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).expect("status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect(name)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn scrape(daemon: &mut Daemon) -> String {
    http_get(&format!("{}/metrics", daemon.http_addr())).1
}

/// Writes `files` CSV files of 200 rows into the inbox, one every 100 ms, on a thread:
/// the ingestion the attacks run beside.
fn ingest_meanwhile(d: &Deployment, files: i64) -> std::thread::JoinHandle<()> {
    let inbox = d.inbox.clone();
    std::thread::spawn(move || {
        for f in 0..files {
            let tmp = inbox.join(format!(".f{f}.tmp"));
            std::fs::write(&tmp, csv_rows(1 + f * 200, 200)).expect("write");
            std::fs::rename(&tmp, inbox.join(format!("f{f}.csv"))).expect("rename");
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Every row of the `files` files landed once, and nothing else.
fn assert_ingested_once(d: &Deployment, daemon: Daemon, files: i64) {
    let mut daemon = daemon;
    daemon.wait_until("every file archived", |_| {
        d.moved("archive").len() == files as usize
    });
    let (exit, log) = daemon.terminate();
    assert!(exit.success(), "{log}");
    assert!(!log.contains("panicked"), "a panic:\n{log}");
    let db = d.db();
    let rows = files * 200;
    assert_eq!(query_i64(&db, "SELECT count(*) FROM raw.src"), rows);
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT id) FROM raw.src"),
        rows
    );
    assert_eq!(
        query_i64(&db, "SELECT sum(id) FROM raw.src"),
        rows * (rows + 1) / 2
    );
}

/// Files every attacked daemon ingests meanwhile.
const FILES: i64 = 15;

/// A daemon configured with `top_extra`, ingesting [`FILES`] files while it is attacked.
fn attacked(top_extra: &str) -> (Deployment, Daemon, std::thread::JoinHandle<()>) {
    let d = Deployment::new(SCHEMA, top_extra);
    let mut daemon = d.start();
    daemon.wait_for_log("SQL endpoint listening");
    let writer = ingest_meanwhile(&d, FILES);
    (d, daemon, writer)
}

/// The attacks are over: everything written landed exactly once.
fn survived(d: &Deployment, daemon: Daemon, writer: std::thread::JoinHandle<()>) {
    writer.join().expect("writer");
    assert_ingested_once(d, daemon, FILES);
}

#[test]
fn no_name_reads_a_file_over_postgres_or_http_while_sluice_ingests() {
    let (d, mut daemon, writer) = attacked("");
    let secret = d.dir.path().join("secret.csv");
    std::fs::write(&secret, "TOPSECRET,1\n2,3\n").expect("secret");
    let s = secret.display().to_string();
    let port = daemon.sql_port();
    let http = daemon.http_addr();
    let attacks = [
        "SELECT * FROM raw.\"x.csv?/../../../../etc/passwd\"".to_string(),
        format!("SELECT * FROM raw.\"x.csv?/../../../../../../../..{s}\""),
        format!("SELECT * FROM main.\"{s}\""),
        format!("SELECT * FROM _sluice.\"{s}\""),
        format!("SELECT * FROM information_schema.\"{s}\""),
        format!("SELECT * FROM raw.\"file://{s}\""),
        format!("SELECT * FROM \"{s}\""),
        format!("SELECT * FROM '{s}'"),
        format!("FROM '{s}'"),
        format!("DESCRIBE '{s}'"),
        format!("SUMMARIZE '{s}'"),
        format!("SELECT * FROM read_csv('{s}')"),
        format!("SELECT * FROM (WITH \"{s}\" AS (SELECT 1) SELECT 1), \"{s}\""),
        format!("SELECT (SELECT count(*) FROM raw.\"{s}\")"),
        "SELECT * FROM raw.\"https://example.invalid/x.parquet\"".to_string(),
        "SELECT path FROM duckdb_databases()".to_string(),
        "SELECT * FROM duckdb_databases".to_string(),
    ];
    for sql in &attacks {
        let out = psql(port, "sluice", "", sql);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "psql read {sql}: {text}");
        assert!(
            text.contains("42P01") || text.contains("42501"),
            "{sql}: {text}"
        );
        let (status, body) = post(&http, sql, None);
        assert_eq!(status, 400, "{sql}: {body}");
        for (how, t) in [("psql", &text), ("HTTP", &body)] {
            assert!(
                !t.contains("TOPSECRET") && !t.contains("root:"),
                "{how} {sql}: {t}"
            );
            assert!(
                !t.contains(&d.data.display().to_string()),
                "{how} {sql} shows the path: {t}"
            );
        }
    }
    survived(&d, daemon, writer);
}

#[test]
fn clients_hear_what_is_theirs_not_the_servers_settings_or_paths() {
    let (d, mut daemon, writer) = attacked("[duckdb]\nmemory_limit = \"512MB\"\n");
    let port = daemon.sql_port();
    let rows = |sql: &str| {
        let out = psql(port, "sluice", "", sql);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // pg_settings lists the session's parameters only.
    let settings = rows("SELECT string_agg(name, ',' ORDER BY name) FROM pg_settings");
    assert!(
        settings.contains("statement_timeout") && settings.contains("search_path"),
        "{settings}"
    );
    for hidden in [
        "memory_limit",
        "temp_directory",
        "threads",
        "enable_external_access",
    ] {
        assert!(!settings.contains(hidden), "{hidden} in {settings}");
    }
    assert_eq!(
        rows("SELECT coalesce(current_setting('memory_limit'), 'none')"),
        "none"
    );
    assert_eq!(rows("SHOW is_superuser"), "off");
    // A timeout too large to hold is refused, never wrapped around to a small one.
    for value in ["'99999999999999s'", "'25d'", "18446744073709551616"] {
        let out = psql(
            port,
            "sluice",
            "",
            &format!("SET statement_timeout = {value}"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("22003") || err.contains("22023"),
            "{value}: {err}"
        );
    }
    // What the startup message says, as psycopg reads it.
    let python = std::env::var("SLUICE_TEST_PYTHON").expect("SLUICE_TEST_PYTHON (scripts/test.sh)");
    let script = format!(
        "import psycopg\nc = psycopg.connect('host=127.0.0.1 port={port} user=sluice dbname=sluice')\n\
         print(c.info.parameter_status('is_superuser'), c.info.parameter_status('default_transaction_read_only'))\n"
    );
    let out = output(Command::new(python).args(["-c", &script]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "off on",
        "{out:?}"
    );
    survived(&d, daemon, writer);
}

#[test]
fn passwords_cannot_be_guessed_quickly_or_users_enumerated_and_failures_are_counted() {
    let (d, mut daemon, writer) =
        attacked("[sql]\nlisten = \"127.0.0.1:0\"\n[sql.users]\nanalyst = \"s3cret-pass\"\n");
    let port = daemon.sql_port();
    let http = daemon.http_addr();
    // A known and an unknown user each get the same salt every time, in the same form.
    let salt = |first: &str| {
        first
            .split(',')
            .find_map(|f| f.strip_prefix("s="))
            .map(String::from)
    };
    let known = (
        scram_server_first(port, "analyst"),
        scram_server_first(port, "analyst"),
    );
    let unknown = (
        scram_server_first(port, "nobody"),
        scram_server_first(port, "nobody"),
    );
    assert_eq!(salt(&known.0), salt(&known.1));
    assert_eq!(
        salt(&unknown.0),
        salt(&unknown.1),
        "an unknown user's salt changes: {unknown:?}"
    );
    assert_ne!(salt(&unknown.0), salt(&known.0));
    assert_eq!(
        salt(&unknown.0).map(|s| s.len()),
        salt(&known.0).map(|s| s.len())
    );
    assert!(unknown.0.contains(",i=4096") && known.0.contains(",i=4096"));
    // Failures take a second each, and are counted by reason.
    let started = Instant::now();
    let wrong = psql(port, "analyst", "guess", "SELECT 1");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "answered in {:?}",
        started.elapsed()
    );
    let nobody = psql(port, "nobody", "guess", "SELECT 1");
    for out in [&wrong, &nobody] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("password authentication failed"), "{out:?}");
    }
    let basic = format!("Basic {}", "YW5hbHlzdDpndWVzcw=="); // analyst:guess
    assert_eq!(post(&http, "SELECT 1", Some(&basic)).0, 401);
    let ok = psql(port, "analyst", "s3cret-pass", "SELECT 41 + 1");
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "42", "{ok:?}");
    let m = scrape(&mut daemon);
    let count = |endpoint: &str, reason: &str| {
        metric(
            &m,
            &format!(
                "sluice_sql_auth_failures_total{{endpoint=\"{endpoint}\",reason=\"{reason}\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    assert!(count("postgres", "wrong_password") >= 1.0, "{m}");
    assert!(count("postgres", "unknown_user") >= 1.0, "{m}");
    assert!(count("http", "wrong_password") >= 1.0, "{m}");
    let log = daemon.log_text();
    survived(&d, daemon, writer);
    // Logged, but a burst is one line per interval, and never the password.
    let lines = log.matches("SQL login failed").count();
    assert!((1..=2).contains(&lines), "{lines} lines:\n{log}");
    assert!(!log.contains("guess") && !log.contains("s3cret"), "{log}");
}

#[test]
fn malformed_and_oversized_messages_are_refused_before_pgwire_or_memory_sees_them() {
    let (d, mut daemon, writer) =
        attacked("[sql]\nlisten = \"127.0.0.1:0\"\nmax_query_size = \"64KiB\"\n");
    let port = daemon.sql_port();
    let (rss_before, _) = memory_mib(&daemon);
    // A startup packet claiming 300 MB, then two Query messages claiming as much.
    let mut huge = Wire::connect(port);
    let mut packet = (300_000_000i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&[0, 3, 0, 0]);
    let _ = huge.send(&packet);
    let refusal = first_error(&huge.until_ready());
    assert_eq!(refusal.map(|e| e.0), Some("54000".into()));
    for _ in 0..2 {
        let mut w = Wire::login(port);
        // Only the header and a little: the guard reads all that was sent, so the close is
        // clean and the client reads the error.
        let _ = w.send(&claiming(b'Q', 300_000_000, &[b'x'; 100]));
        let got = w.until_ready();
        let (code, message) = first_error(&got).expect("an error");
        assert_eq!(code, "54000", "{message}");
        assert!(message.contains("sql.max_query_size"), "{message}");
        assert!(w.closed());
    }
    // The reported panics: each is a FATAL protocol violation now.
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&1i16.to_be_bytes());
    bind.extend_from_slice(&1000i32.to_be_bytes());
    bind.extend_from_slice(b"abc");
    bind.extend_from_slice(&0i16.to_be_bytes());
    for message in [
        typed(b'B', &bind),
        claiming(b'd', 1, b""),
        typed(b'C', b"X\0"),
        typed(b'F', b""),
    ] {
        let mut w = Wire::login(port);
        w.send(&message).expect("send");
        let got = w.until_ready();
        assert_eq!(
            first_error(&got).map(|e| e.0),
            Some("08P01".into()),
            "{got:?}"
        );
        assert!(w.closed());
    }
    // A query just under the limit still runs.
    let list: Vec<String> = (0..9_000).map(|i| i.to_string()).collect();
    let long = format!("SELECT 1 WHERE 1 IN ({})", list.join(","));
    assert!(long.len() > 40_000 && long.len() < 64 * 1024);
    let out = psql(port, "sluice", "", &long);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, peak) = memory_mib(&daemon);
    assert!(
        peak < rss_before + 200,
        "peak {peak} MiB from {rss_before} MiB"
    );
    let m = scrape(&mut daemon);
    assert!(
        metric(
            &m,
            "sluice_sql_rejected_messages_total{reason=\"too_long\"}"
        ) >= Some(3.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "sluice_sql_rejected_messages_total{reason=\"malformed\"}"
        ) >= Some(3.0),
        "{m}"
    );
    survived(&d, daemon, writer);
}

#[test]
fn messages_before_login_are_password_messages_of_bounded_size() {
    let (d, mut daemon, writer) =
        attacked("[sql]\nlisten = \"127.0.0.1:0\"\n[sql.users]\nanalyst = \"s3cret-pass\"\n");
    let port = daemon.sql_port();
    let open = |w: &mut Wire| {
        w.send(&startup("analyst")).expect("startup");
        assert_eq!(w.read().map(|m| m.0), Some(b'R'));
    };
    // A cleartext password where SASL's first message is due; a SASL data length of
    // 1,000,000 in a short message; a query; 300 MB: each ends the connection, unread.
    let mut sasl = b"SCRAM-SHA-256\0".to_vec();
    sasl.extend_from_slice(&1_000_000i32.to_be_bytes());
    sasl.extend_from_slice(b"n,,n=,r=x");
    for (message, code) in [
        (typed(b'p', b"s3cret-pass\0"), "08P01"),
        (typed(b'p', &sasl), "08P01"),
        (typed(b'Q', b"SELECT 1\0"), "08P01"),
        (claiming(b'p', 300_000_000, b"x"), "54000"),
    ] {
        let mut w = Wire::connect(port);
        open(&mut w);
        let _ = w.send(&message);
        let got = w.until_ready();
        assert_eq!(first_error(&got).map(|e| e.0), Some(code.into()), "{got:?}");
        assert!(w.closed());
    }
    survived(&d, daemon, writer);
}

#[test]
fn connections_that_never_log_in_or_finish_their_headers_are_bounded() {
    // The first line lands in the deployment's own [http] table.
    let (d, mut daemon, writer) = attacked(
        "max_connections = 8\n\
         [sql]\nlisten = \"127.0.0.1:0\"\nmax_unauthenticated = 4\nauth_timeout = \"2s\"\n",
    );
    let port = daemon.sql_port();
    let http = daemon.http_addr();
    let addr = http.trim_start_matches("http://").to_string();
    // Four connections that say nothing hold every place; a fifth is closed at once.
    let mut silent: Vec<Wire> = (0..4).map(|_| Wire::connect(port)).collect();
    let mut fifth = Wire::connect(port);
    let started = Instant::now();
    assert!(fifth.closed());
    assert!(started.elapsed() < Duration::from_secs(1));
    // The silent ones are closed after auth_timeout, and a client logs in again.
    for w in &mut silent {
        assert!(w.closed());
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let ok = psql(port, "sluice", "", "SELECT 1");
    assert!(ok.status.success(), "{ok:?}");
    // Eight HTTP connections with half a header hold every place; a ninth is closed; the
    // eight are closed within the header timeout, and /readyz answers again.
    let mut partial: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).expect("connect");
            std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .expect("half");
            s
        })
        .collect();
    let ninth = TcpStream::connect(&addr).expect("connect");
    ninth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(
        std::io::Read::read(&mut &ninth, &mut [0u8; 16]).ok(),
        Some(0)
    );
    let held = Instant::now();
    for s in &mut partial {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(s, &mut rest);
    }
    assert!(
        held.elapsed() < Duration::from_secs(20),
        "{:?}",
        held.elapsed()
    );
    let (status, _) = http_get(&format!("{http}/readyz"));
    assert_eq!(status, 200);
    let m = scrape(&mut daemon);
    assert!(
        metric(&m, "sluice_http_connections_refused_total") >= Some(1.0),
        "{m}"
    );
    assert!(
        metric(&m, "sluice_sql_unauthenticated_refused_total") >= Some(1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "sluice_sql_auth_failures_total{endpoint=\"postgres\",reason=\"timeout\"}"
        ) >= Some(4.0),
        "{m}"
    );
    survived(&d, daemon, writer);
}

#[test]
fn huge_values_are_refused_before_duckdb_builds_them() {
    let (d, mut daemon, writer) = attacked("[duckdb]\nmemory_limit = \"512MB\"\n");
    let port = daemon.sql_port();
    let (rss, _) = memory_mib(&daemon);
    // 6,000 UNION branches: 114 KB (under the 128 KiB of one command-line argument) that
    // DuckDB would take over a gigabyte to plan.
    let union = vec!["SELECT 1"; 6000].join(" UNION ALL ");
    for (sql, code) in [
        ("SELECT length(repeat('x', 2000000000))", "22023"),
        ("SELECT length(lpad('x', 2000000000, 'y'))", "22023"),
        ("SELECT len(list_resize([1], 300000000))", "22023"),
        ("SELECT length('x'.repeat(2000000000))", "22023"),
        ("SELECT length(\"repeat\"('x', 2000000000))", "42501"),
        ("SELECT length(printf('%2000000000d', 1))", "42501"),
        ("SELECT length(format('{:>2000000000}', 1))", "42501"),
        (union.as_str(), "54001"),
    ] {
        let started = Instant::now();
        let out = psql(port, "sluice", "", sql);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(code), "{sql}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{sql} took {:?}",
            started.elapsed()
        );
    }
    // Small values still work, as plain calls.
    let out = psql(
        port,
        "sluice",
        "",
        "SELECT length(repeat('ab', 10)) + length(lpad('x', 5, '-'))",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "25", "{out:?}");
    let (_, peak) = memory_mib(&daemon);
    assert!(peak < rss + 300, "peak {peak} MiB from {rss} MiB");
    survived(&d, daemon, writer);
}

/// The daemon's client query threads (`sql-<pid>`): one per client, ending when the
/// client is gone and its statement has stopped.
fn query_threads(daemon: &Daemon) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", daemon.pid())).expect("tasks");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("sql-"))
        .count()
}

#[test]
fn a_statement_stops_when_its_client_hangs_up_and_vetting_counts_in_its_timeout() {
    let (d, mut daemon, writer) = attacked("");
    let port = daemon.sql_port();
    writer.join().expect("writer");
    daemon.wait_until("every file archived", |_| {
        d.moved("archive").len() == FILES as usize
    });
    // A statement that would run for many minutes; then the client goes.
    let mut w = Wire::login(port);
    w.send(&typed(
        b'Q',
        b"SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3\0",
    ))
    .expect("query");
    daemon.wait_until("the client's query thread", |d| query_threads(d) == 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(query_threads(&daemon), 1, "the statement ended on its own");
    drop(w);
    let gone = Instant::now();
    daemon.wait_until("the query thread to end", |d| query_threads(d) == 0);
    assert!(
        gone.elapsed() < Duration::from_secs(5),
        "{:?}",
        gone.elapsed()
    );
    // Vetting a long query is part of its statement: a short timeout stops it (the
    // table does not exist, so only the vetting could have taken the time: without the
    // timeout the answer is 42P01).
    let list: Vec<String> = (0..150_000).map(|i| i.to_string()).collect();
    let long = d.dir.path().join("long.sql");
    let sql = format!(
        "SELECT count(*) FROM raw.no_such_table WHERE id IN ({});",
        list.join(",")
    );
    std::fs::write(&long, sql).expect("long.sql");
    let out = output(
        psql_as(port, "sluice", "")
            .args(["-c", "SET statement_timeout = '50ms'", "-f"])
            .arg(&long),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("57014") && err.contains("statement timeout"),
        "{err}"
    );
    let (exit, log) = daemon.terminate();
    assert!(exit.success(), "{log}");
}
