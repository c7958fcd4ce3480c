//! File names DuckDB would read as paths or URLs, settings and paths it would tell, and
//! values it would build outside its memory_limit: each refused, over Postgres and HTTP.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{attacked, memory_mib, post, psql, survived};
use crate::support::output;

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
fn huge_values_are_refused_before_duckdb_builds_them() {
    let (d, mut daemon, writer) = attacked("[duckdb]\nmemory_limit = \"512MB\"\n");
    let port = daemon.sql_port();
    let (rss, _) = memory_mib(&daemon);
    // 6,000 UNION branches: 114 KB (under the 128 KiB of one command-line argument) that
    // DuckDB would take over a gigabyte to plan.
    let union = vec!["SELECT 1"; 6000].join(" UNION ALL ");
    for (sql, code) in [
        ("SELECT length(repeat('x', 2000000000))", "22023"),
        // Each under the old bound, but 2,048 at once are 2 GB.
        (
            "SELECT max(length(repeat('x', 1000000))) FROM range(100000)",
            "22023",
        ),
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
