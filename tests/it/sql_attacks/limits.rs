//! Connections that never log in or never finish their headers, and statements whose
//! client hangs up or whose vetting outlasts its timeout: each bounded.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::wire::{first_error, typed, Wire};
use super::{attacked, psql, psql_as, scrape, survived, FILES};
use crate::support::{http_get, metric, output, Daemon};

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
    let (d, mut daemon, writer) =
        attacked("[sql]\nlisten = \"127.0.0.1:0\"\nmax_query_size = \"2MiB\"\n");
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

/// `Parse`, `Bind`, `Execute` (at most `rows` rows) of `sql`, and `Flush`: no `Sync`, so
/// the portal stays suspended.
fn execute_suspended(sql: &str, rows: i32) -> Vec<u8> {
    let mut parse = b"\0".to_vec();
    parse.extend_from_slice(sql.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    let mut bind = b"\0\0".to_vec();
    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut execute = b"\0".to_vec();
    execute.extend_from_slice(&rows.to_be_bytes());
    [
        typed(b'P', &parse),
        typed(b'B', &bind),
        typed(b'E', &execute),
        typed(b'H', b""),
    ]
    .concat()
}

#[test]
fn a_slow_reader_or_a_suspended_portal_does_not_outlive_its_statement_timeout() {
    let (d, mut daemon, writer) = attacked("");
    let port = daemon.sql_port();
    let set = typed(b'Q', b"SET statement_timeout = '1s'\0");
    // A client that stops reading a long result: the result ends with 57014 once the
    // timeout passes, instead of streaming for as long as the client takes.
    let mut slow = Wire::login(port);
    slow.send(&set).expect("set");
    slow.until_ready();
    slow.send(&typed(
        b'Q',
        b"SELECT range, repeat('x', 100) FROM range(100000000)\0",
    ))
    .expect("query");
    std::thread::sleep(Duration::from_secs(3)); // the attack: not reading
    let got = slow.until_ready();
    let rows = got.iter().filter(|m| m.0 == b'D').count();
    assert_eq!(
        first_error(&got).map(|e| e.0),
        Some("57014".into()),
        "{rows} rows"
    );
    assert!(rows < 10_000_000, "{rows} rows");
    // A portal executed for one row and left suspended: its next Execute hears 57014.
    let mut portal = Wire::login(port);
    portal.send(&set).expect("set");
    portal.until_ready();
    portal
        .send(&execute_suspended("SELECT * FROM range(1000000)", 1))
        .expect("execute");
    let mut first = Vec::new();
    while let Some(m) = portal.read() {
        let suspended = m.0 == b's';
        first.push(m);
        if suspended {
            break;
        }
    }
    assert!(first.iter().any(|m| m.0 == b'D'), "{first:?}");
    std::thread::sleep(Duration::from_secs(3)); // the attack: holding the portal
    let mut again = b"\0".to_vec();
    again.extend_from_slice(&1i32.to_be_bytes());
    portal
        .send(&[typed(b'E', &again), typed(b'S', b"")].concat())
        .expect("execute again");
    let got = portal.until_ready();
    assert_eq!(
        first_error(&got).map(|e| e.0),
        Some("57014".into()),
        "{got:?}"
    );
    survived(&d, daemon, writer);
}

#[test]
fn deep_queries_floods_of_statements_and_oversized_bodies_are_refused_and_the_daemon_lives() {
    let (d, mut daemon, writer) = attacked("");
    let port = daemon.sql_port();
    let http = daemon.http_addr();
    // 15,000 nested subqueries (240 KB): their tree overflowed the client thread's stack,
    // aborting the daemon. And 15,000 tables in one FROM: a tree as deep, not nested.
    let nested = format!(
        "SELECT * FROM {}raw.src{}",
        "(SELECT * FROM ".repeat(15_000),
        ")".repeat(15_000)
    );
    let joined = format!(
        "SELECT 1 FROM {}",
        (0..15_000)
            .map(|i| format!("raw.src a{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (sql, code) in [(nested, "54001"), (joined, "54001")] {
        let file = d.dir.path().join("deep.sql");
        std::fs::write(&file, &sql).expect("deep.sql");
        let out = output(psql_as(port, "sluice", "").arg("-f").arg(&file));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(code), "{err}");
        assert_eq!(psql(port, "sluice", "", "SELECT 1").status.code(), Some(0));
    }
    // Statements prepared without end: refused once the connection holds 64 MiB of them.
    let mut w = Wire::login(port);
    let text = format!("SELECT 1 -- {}", "x".repeat(200_000));
    let mut refused = None;
    for i in 0..400 {
        let mut parse = format!("s{i}\0{text}\0").into_bytes();
        parse.extend_from_slice(&[0, 0]);
        w.send(&[typed(b'P', &parse), typed(b'H', b"")].concat())
            .expect("parse");
        let (tag, body) = w.read().expect("an answer");
        if tag == b'E' {
            refused = Some((i, super::wire::error(&body).0));
            break;
        }
    }
    let (at, code) = refused.expect("never refused");
    assert_eq!(code, "54000");
    assert!((300..=340).contains(&at), "refused at the {at}th");
    // An HTTP body declared too long is refused at once, unread.
    let mut s = TcpStream::connect(http.trim_start_matches("http://")).expect("connect");
    std::io::Write::write_all(
        &mut s,
        b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nSELECT",
    )
    .expect("request");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut s, &mut head).expect("an answer at once");
    assert_eq!(&head, b"HTTP/1.1 413");
    // A COPY stopped by its timeout ends with an error, not a message only clients send.
    let out = output(
        psql_as(port, "sluice", "")
            .args(["-o", "/dev/null", "-c", "SET statement_timeout = '500ms'"])
            .args(["-c", "COPY (SELECT * FROM range(10000000000)) TO STDOUT"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("57014") && !err.contains("unexpected response"),
        "{err}"
    );
    survived(&d, daemon, writer);
}
