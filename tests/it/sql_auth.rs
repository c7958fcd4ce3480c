//! The SQL endpoint reachable from other hosts: SCRAM-SHA-256 passwords from `${VAR}`,
//! TLS from a certificate made by `openssl`, checked with psql; and the refusal to
//! listen off loopback without users.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::{csv_rows, http_get, output, run_tool, Deployment, SCHEMA};

const PASSWORD: &str = "correct horse battery staple";

/// A self-signed certificate and its key in `dir` (`cert.pem`, `key.pem`).
fn certificate(dir: &Path) {
    run_tool(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args([
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .current_dir(dir),
    );
}

/// psql as `user` with `password`, over a connection string's extra `options`.
fn psql(port: u16, user: &str, password: &str, options: &str, sql: &str) -> Output {
    output(
        Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(format!(
                "host=127.0.0.1 port={port} user={user} dbname=sluice connect_timeout=10 {options}"
            ))
            .env("PGPASSWORD", password)
            .stdin(Stdio::null()),
    )
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn refused(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "psql connected: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn passwords_and_tls_guard_an_endpoint_reachable_from_other_hosts() {
    let d = Deployment::new(
        SCHEMA,
        "[sql]\nlisten = \"0.0.0.0:0\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         [sql.users]\nanalyst = \"${SLUICE_TEST_SQL_PASSWORD}\"\n",
    );
    certificate(d.dir.path());
    let mut daemon = d.start_with("info", &[("SLUICE_TEST_SQL_PASSWORD", PASSWORD)]);
    d.write("a.csv", &csv_rows(1, 20));
    daemon.wait_until("the file archived", |_| d.moved("archive").len() == 1);
    let port = daemon.sql_port();

    // The right password over TLS, bound to the channel (SCRAM-SHA-256-PLUS).
    let tls = "sslmode=require channel_binding=require";
    let out = psql(
        port,
        "analyst",
        PASSWORD,
        tls,
        "SELECT count(*) FROM raw.src",
    );
    assert_eq!(stdout(&out), "20");
    let info = stdout(&psql(port, "analyst", PASSWORD, tls, "\\conninfo"));
    assert!(info.contains("SSL connection"), "{info}");

    // Without TLS: refused before any password is asked.
    let plain = refused(&psql(
        port,
        "analyst",
        PASSWORD,
        "sslmode=disable",
        "SELECT 1",
    ));
    assert!(plain.contains("requires TLS"), "{plain}");
    // A wrong password, and a user that does not exist: the same failure.
    let wrong = refused(&psql(port, "analyst", "guess", tls, "SELECT 1"));
    let unknown = refused(&psql(port, "nobody", PASSWORD, tls, "SELECT 1"));
    for (who, err) in [("analyst", &wrong), ("nobody", &unknown)] {
        let words = format!("password authentication failed for user \"{who}\"");
        assert!(err.contains(&words), "{who}: {err}");
    }

    // The password is nowhere sluice writes.
    let status = http_get(&format!("{}/status", daemon.http_addr())).1;
    let (exit, log) = daemon.terminate();
    assert!(exit.success(), "{log}");
    assert!(log.contains("SQL endpoint listening"), "{log}");
    for (what, text) in [("log", &log), ("/status", &status)] {
        assert!(
            !text.contains("horse battery"),
            "the password is in the {what}"
        );
    }
}

#[test]
fn a_non_loopback_listen_without_users_is_refused_at_start() {
    let d = Deployment::new(SCHEMA, "[sql]\nlisten = \"0.0.0.0:0\"\n");
    let out = d.run_once_with(&[]);
    assert!(!out.status.success(), "started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sql.listen") && err.contains("sql.users"),
        "{err}"
    );
}
