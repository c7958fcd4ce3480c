//! Readers of the live warehouse across a change: psql's catalog and queries, and a JDBC
//! statement prepared before the change (tests/clients/JdbcSchemaChange.java).

use std::process::Command;

use super::{feed, start, A, B};
use crate::support::{output, Deployment};

/// What `psql` prints for `sql` (or a psql meta-command) against the daemon's SQL
/// endpoint, one line per row, without sluice's own columns' lines.
fn psql_lines(port: u16, sql: &str) -> Vec<String> {
    let out = output(
        Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(format!(
                "host=127.0.0.1 port={port} user=sluice dbname=sluice sslmode=disable connect_timeout=10"
            ))
            .env_remove("PGPASSWORD"),
    );
    assert!(
        out.status.success(),
        "psql -c {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("_sluice_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn schema_change_psql_sees_a_new_column_and_a_wider_type_once_their_batch_commits() {
    let d = Deployment::new("", "[sql]\nlisten = \"127.0.0.1:0\"\n");
    let (mut daemon, _) = start(&d);
    let port = daemon.sql_port();
    feed(&d, &mut daemon, "a.csv", A);
    assert_eq!(
        psql_lines(port, "\\d raw.src"),
        ["id|bigint|||", "amount|bigint|||"]
    );
    feed(&d, &mut daemon, "b.csv", B);
    assert_eq!(
        psql_lines(port, "\\d raw.src"),
        [
            "id|bigint|||",
            "amount|double precision|||",
            "region|text|||"
        ]
    );
    assert_eq!(
        psql_lines(
            port,
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'raw' AND table_name = 'src' AND column_name = 'region'"
        ),
        ["region|VARCHAR"]
    );
    // SQLAlchemy's reflection (what BI tools and notebooks build their models from).
    assert_eq!(
        reflected(port),
        "[('id', 'BIGINT'), ('amount', 'DOUBLE PRECISION'), ('region', 'TEXT')]"
    );
    assert_eq!(
        psql_lines(port, "SELECT id, amount, region FROM raw.src ORDER BY id"),
        ["1|10|", "2|20|", "3|2.5|north", "4|40|south"]
    );
    let (code, log) = daemon.terminate();
    assert!(code.success(), "{log}");
}

#[test]
fn schema_change_a_jdbc_statement_prepared_before_the_change_returns_the_new_shape() {
    let d = Deployment::new("", "[sql]\nlisten = \"127.0.0.1:0\"\n");
    let (mut daemon, _) = start(&d);
    let port = daemon.sql_port();
    feed(&d, &mut daemon, "a.csv", A);
    let program = crate::support::repo_root().join("tests/clients/JdbcSchemaChange.java");
    let out = output(
        Command::new("java")
            .args([
                "-Duser.timezone=UTC",
                "-cp",
                "/usr/share/java/postgresql.jar",
            ])
            .arg(program)
            .arg(port.to_string())
            .arg(&d.inbox),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "before: [id int8, amount int8]",
            "held: cols=7 [1 10] [2 20]",
            "after: [id int8, amount float8, region text]",
            // Prepared again (in text, then binary, as pgjdbc does): the new shape.
            "held: cols=8 [1 10 null] [2 20 null] [3 2.5 north]",
            "held: cols=8 [1 10.0 null] [2 20.0 null] [3 2.5 north]",
        ],
        "{stdout}"
    );
    let (code, log) = daemon.terminate();
    assert!(code.success(), "{log}");
}

/// `raw.src`'s data columns as SQLAlchemy reflects them, as Python prints them.
fn reflected(port: u16) -> String {
    let python = std::env::var("SLUICE_TEST_PYTHON")
        .expect("SLUICE_TEST_PYTHON is not set: run the tests through scripts/test.sh");
    let script = format!(
        r#"
import sqlalchemy
engine = sqlalchemy.create_engine("postgresql+psycopg://sluice@127.0.0.1:{port}/sluice")
columns = sqlalchemy.inspect(engine).get_columns("src", schema="raw")
print([(c["name"], str(c["type"])) for c in columns if not c["name"].startswith("_sluice_")])
"#
    );
    let out = output(Command::new(python).arg("-c").arg(script));
    assert!(
        out.status.success(),
        "SQLAlchemy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
