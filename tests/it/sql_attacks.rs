//! The SQL endpoint attacked as an outsider would attack it, over loopback, with psql,
//! psycopg, curl-like HTTP requests and raw protocol bytes ([`wire`]). Each attack is
//! refused, bounded or survived, and the daemon ingests through all of them without
//! losing or doubling a row ([`attacked`], [`survived`]):
//!
//! - [`files`]: names DuckDB would read as files or URLs, settings and paths it would
//!   tell, values it would build outside its `memory_limit`.
//! - [`protocol`]: oversized and malformed messages, before and after login.
//! - [`limits`]: connections that never log in or finish their headers; a client hanging
//!   up; vetting that outlasts its timeout.
//! - [`logins`]: password guessing and user enumeration.

mod files;
mod limits;
mod logins;
mod protocol;
mod wire;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{csv_rows, http_get, output, query_i64, Daemon, Deployment, SCHEMA};

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
