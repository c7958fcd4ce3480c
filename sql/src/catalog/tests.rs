use duckdb::Connection;

use super::*;
use crate::pg::types::pg_type;

/// Every DuckDB type a raw table or model can have, as a column type.
const DUCKDB_TYPES: &[&str] = &[
    "BOOLEAN",
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL(12,2)",
    "DECIMAL(38,10)",
    "VARCHAR",
    "JSON",
    "BLOB",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMP_S",
    "TIMESTAMP_MS",
    "TIMESTAMP_NS",
    "TIMESTAMPTZ",
    "INTERVAL",
    "UUID",
    "INTEGER[]",
    "VARCHAR[3]",
    "STRUCT(a INTEGER, b VARCHAR[])",
    "MAP(VARCHAR, INTEGER)",
    "UNION(n INTEGER, s VARCHAR)",
    "ENUM('a', 'b')",
    "BIT",
];

fn warehouse() -> Connection {
    let conn = Connection::open_in_memory().expect("duckdb");
    conn.execute_batch("INSTALL json; LOAD json;").ok();
    let columns: Vec<String> = DUCKDB_TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| format!("c{i} {t}"))
        .collect();
    conn.execute_batch(&format!(
        "CREATE SCHEMA raw; CREATE TABLE raw.every (id BIGINT NOT NULL DEFAULT 7, {});
         CREATE VIEW raw.v AS SELECT id FROM raw.every;",
        columns.join(", ")
    ))
    .expect("table");
    create(&conn).expect("catalog macros");
    conn
}

#[test]
fn pg_attribute_announces_the_types_result_columns_are_sent_as() {
    let conn = warehouse();
    let prepared = conn
        .prepare("SELECT * EXCLUDE (id) FROM raw.every")
        .unwrap();
    let mut from_catalog = conn
        .prepare(
            "SELECT a.attname, a.atttypid, a.atttypmod FROM sluice_pg_attribute() a \
             JOIN sluice_pg_class() c ON c.oid = a.attrelid \
             WHERE c.relname = 'every' AND a.attname <> 'id' ORDER BY a.attnum",
        )
        .unwrap();
    let rows: Vec<(String, i64, i32)> = from_catalog
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), DUCKDB_TYPES.len());
    for (i, (name, oid, typmod)) in rows.into_iter().enumerate() {
        let (pg, want_typmod) = pg_type(&prepared.column_logical_type(i));
        assert_eq!(
            (oid, typmod),
            (i64::from(pg.oid()), want_typmod),
            "{name} ({}): pg_attribute says {oid}/{typmod}, results are sent as {}",
            DUCKDB_TYPES[i],
            pg.name()
        );
    }
}

#[test]
fn format_type_writes_postgres_names_with_numeric_precision() {
    let conn = warehouse();
    let mut stmt = conn
        .prepare(
            "SELECT a.attname, sluice_format_type(a.atttypid, a.atttypmod) \
             FROM sluice_pg_attribute() a JOIN sluice_pg_class() c ON c.oid = a.attrelid \
             WHERE c.relname = 'every' AND a.attname IN ('id', 'c13', 'c24', 'c17') \
             ORDER BY a.attnum",
        )
        .unwrap();
    let got: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let want = [
        ("id", "bigint"),
        ("c13", "numeric(12,2)"),
        ("c17", "bytea"),
        ("c24", "timestamp with time zone"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn every_answered_table_has_a_macro_and_joins_by_postgres_oids() {
    let conn = warehouse();
    for table in TABLES {
        conn.prepare(&format!("SELECT * FROM sluice_{table}()"))
            .unwrap_or_else(|e| panic!("{table}: {e}"));
    }
    let (kind, nsp, natts, default): (String, String, i16, String) = conn
        .query_row(
            "SELECT c.relkind, n.nspname, c.relnatts, d.adbin \
             FROM sluice_pg_class() c JOIN sluice_pg_namespace() n ON n.oid = c.relnamespace \
             JOIN sluice_pg_attrdef() d ON d.adrelid = c.oid \
             WHERE c.relname = 'every'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), nsp.as_str(), default.as_str()),
        ("r", "raw", "7")
    );
    assert_eq!(natts as usize, DUCKDB_TYPES.len() + 1);
    let typname: String = conn
        .query_row(
            "SELECT t.typname FROM sluice_pg_attribute() a \
             JOIN sluice_pg_type() t ON t.oid = a.atttypid \
             JOIN sluice_pg_namespace() n ON n.oid = t.typnamespace \
             WHERE a.attname = 'id' AND a.attrelid = \
               (SELECT oid FROM sluice_pg_class() WHERE relname = 'every') \
               AND n.nspname = 'pg_catalog'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(typname, "int8");
    let view: String = conn
        .query_row(
            "SELECT relkind FROM sluice_pg_class() WHERE relname = 'v'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(view, "v");
}
