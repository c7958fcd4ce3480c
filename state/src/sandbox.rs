//! DuckDB's own sandbox, for every database sluice opens: no file, URL or extension
//! outside the database itself, and a configuration no statement can change.
//!
//! The SQL endpoint's gate ([`sluice_sql::gate`] in the `sql` crate) decides what a
//! client may run; this is the wall behind it. With `enable_external_access = false`
//! DuckDB reads and writes only the database file, its WAL and its temporary directory
//! (it allows those itself): no `read_csv`, no replacement scan of a path or URL, no
//! `COPY TO`, `ATTACH`, `INSTALL` or `LOAD`. With `lock_configuration = true` no
//! statement can turn that back on, nor change any other setting of the database, except
//! `threads`, which the committer sets between commits and model runs
//! (`sluice_sinks::Warehouse`).
//!
//! These are settings of the whole database, not of a connection: ingestion, models and
//! the lake publisher run under them too. None of them needs DuckDB to touch a file other
//! than the database: Parquet and Delta files are written by sluice's own code, not by
//! DuckDB. Models therefore read only the warehouse (a model's `read_csv(...)` fails with
//! DuckDB's "file system operations are disabled by configuration").

use duckdb::Connection;

use crate::{DuckdbContext, Result};

/// The settings the running database may still change after [`lock`].
pub const CHANGEABLE: &[&str] = &["threads"];

/// Turns external access off and locks the configuration of `conn`'s database, for good
/// (DuckDB cannot turn either back while the database is open).
pub fn lock(conn: &Connection) -> Result<()> {
    let changeable = CHANGEABLE
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute_batch(&format!(
        "SET enable_external_access = false; \
         SET allowed_configs = [{changeable}]; \
         SET lock_configuration = true;"
    ))
    .ctx(|| "locking DuckDB's sandbox (enable_external_access, lock_configuration)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("dir");
        let conn = Connection::open(dir.path().join("w.duckdb")).expect("open");
        conn.execute_batch("CREATE SCHEMA raw; CREATE TABLE raw.t AS SELECT 1 AS a")
            .expect("table");
        std::fs::write(dir.path().join("x.csv"), "secret\n1\n").expect("file");
        lock(&conn).expect("lock");
        (dir, conn)
    }

    fn refused(conn: &Connection, sql: &str) -> String {
        match conn.execute_batch(sql) {
            Ok(()) => panic!("{sql}: ran"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn no_statement_reaches_a_file_or_changes_a_setting() {
        let (dir, conn) = locked();
        let csv = dir.path().join("x.csv").display().to_string();
        for sql in [
            format!("SELECT * FROM read_csv('{csv}')"),
            format!("SELECT * FROM '{csv}'"),
            format!("SELECT * FROM raw.\"x.csv?/../../../..{csv}\""),
            format!("COPY raw.t TO '{}'", dir.path().join("out.csv").display()),
            format!(
                "ATTACH '{}' AS other",
                dir.path().join("o.duckdb").display()
            ),
            "INSTALL httpfs".to_string(),
        ] {
            let e = refused(&conn, &sql);
            assert!(e.contains("disabled by configuration"), "{sql}: {e}");
        }
        for sql in [
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET memory_limit = '1TB'",
            "SET allowed_directories = ['/']",
        ] {
            let e = refused(&conn, sql);
            assert!(e.contains("locked"), "{sql}: {e}");
        }
        assert!(!dir.path().join("out.csv").exists());
    }

    #[test]
    fn the_database_itself_still_works() {
        let (_dir, conn) = locked();
        conn.execute_batch(
            "SET threads = 1; INSERT INTO raw.t SELECT range FROM range(100000); CHECKPOINT; \
             SET threads = 2; SET search_path = 'raw'; SET VARIABLE v = 1;",
        )
        .expect("writes, checkpoints, threads, search_path and variables");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 100_001);
    }
}
