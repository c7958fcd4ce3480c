//! Password guessing and user enumeration, over Postgres and HTTP Basic.

use std::time::{Duration, Instant};

use super::wire::scram_server_first;
use super::{attacked, post, psql, scrape, survived};
use crate::support::metric;

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
    // A wrong password and an unknown user count alike: /metrics needs no credentials,
    // and must not tell which user names exist.
    assert_eq!(count("postgres", "password"), 2.0, "{m}");
    assert_eq!(count("http", "password"), 1.0, "{m}");
    assert!(
        !m.contains("unknown_user") && !m.contains("wrong_password"),
        "{m}"
    );
    let log = daemon.log_text();
    survived(&d, daemon, writer);
    // Logged, but a burst is one line per interval, and never the password.
    let lines = log.matches("SQL login failed").count();
    assert!((1..=2).contains(&lines), "{lines} lines:\n{log}");
    assert!(!log.contains("guess") && !log.contains("s3cret"), "{log}");
}
