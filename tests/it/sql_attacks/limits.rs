//! Connections that never log in or never finish their headers, and statements whose
//! client hangs up or whose vetting outlasts its timeout: each bounded.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::wire::{typed, Wire};
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
