use duckdb::Connection;

use super::*;
use crate::Command;

fn warehouse() -> (Connection, Scope) {
    let conn = Connection::open_in_memory().expect("duckdb");
    conn.execute_batch(
        "CREATE SCHEMA raw; CREATE SCHEMA _sluice; CREATE SCHEMA hidden;
         CREATE TABLE raw.orders (id BIGINT, amount DECIMAL(12,2));
         CREATE TABLE _sluice.batches (batch_id BIGINT);
         CREATE TABLE hidden.secrets (s VARCHAR);
         CREATE VIEW main.daily AS SELECT count(*) AS n FROM raw.orders;",
    )
    .expect("schema");
    let scope = Scope {
        schemas: vec!["raw".into(), "main".into(), "_sluice".into()],
        search_path: vec!["main".into(), "raw".into()],
    };
    (conn, scope)
}

fn queries(text: &str) -> Vec<String> {
    let (conn, scope) = warehouse();
    vet(&conn, text, &scope)
        .unwrap_or_else(|r| panic!("{text}: refused: {r} ({})", r.sqlstate))
        .into_iter()
        .map(|v| match v {
            Vetted::Query(sql) => sql,
            Vetted::Session(c) => format!("session {c:?}"),
        })
        .collect()
}

fn refused(text: &str) -> Refusal {
    let (conn, scope) = warehouse();
    match vet(&conn, text, &scope) {
        Ok(v) => panic!("{text}: allowed as {v:?}"),
        Err(r) => r,
    }
}

#[test]
fn queries_over_the_warehouse_run_as_written() {
    for text in [
        "SELECT * FROM raw.orders WHERE id = $1",
        "select count(*) from orders",
        "FROM daily",
        "with x as (select 1 as a) select * from x",
        "describe raw.orders",
        "summarize raw.orders",
        "show tables",
        "select * from _sluice.batches",
        "select * from information_schema.columns",
        "select * from range(3)",
        "select * from duckdb_tables()",
        "values (1), (2)",
        "SELECT * FROM \"raw\".\"orders\";",
    ] {
        assert_eq!(queries(text), [text.trim()], "{text}");
    }
}

#[test]
fn postgres_catalog_names_become_sluice_stand_ins_where_written() {
    for (text, want) in [
        (
            "select * from pg_catalog.pg_class",
            "select * from sluice_pg_class() AS \"pg_class\"",
        ),
        (
            "select relname from pg_class c join PG_CATALOG.pg_namespace as n on true",
            "select relname from sluice_pg_class() AS \"c\" join sluice_pg_namespace() AS \"n\" on true",
        ),
        (
            "select pg_catalog.pg_collation.collname from pg_catalog.pg_collation",
            "select \"pg_collation\".\"collname\" from sluice_pg_collation() AS \"pg_collation\"",
        ),
        (
            "select * from pg_inherits where inhrelid = 1",
            "select * from sluice_pg_inherits() AS \"pg_inherits\" where inhrelid = 1",
        ),
        (
            "select pg_catalog.format_type(20, NULL)",
            "select sluice_format_type(20, NULL)",
        ),
        // Not Postgres's catalog: a CTE of that name, DuckDB's own catalog, another schema.
        (
            "with pg_class as (select 1 as oid) select oid from pg_class",
            "with pg_class as (select 1 as oid) select oid from pg_class",
        ),
        (
            "select * from pg_settings",
            "select * from sluice_pg_settings() AS \"pg_settings\"",
        ),
    ] {
        assert_eq!(queries(text), [want], "{text}");
    }
}

#[test]
fn several_statements_are_cut_where_duckdb_agrees() {
    assert_eq!(
        queries("select 'a;b' as x; -- one\nFROM raw.orders;"),
        ["select 'a;b' as x", "-- one\nFROM raw.orders"]
    );
    assert_eq!(
        queries("SET application_name = 'psql'; select 1"),
        [
            format!(
                "session {:?}",
                Command::Set {
                    name: "application_name".into(),
                    value: "psql".into()
                }
            ),
            "select 1".into()
        ]
    );
    assert!(queries(" ; -- nothing\n").is_empty());
}

#[test]
fn session_statements_are_answered_by_sluice() {
    assert_eq!(queries("BEGIN"), [format!("session {:?}", Command::Begin)]);
    assert_eq!(
        queries("COMMIT"),
        [format!("session {:?}", Command::Commit)]
    );
    let show = |name: &str| format!("session {:?}", Command::Show { name: name.into() });
    assert_eq!(
        queries("SHOW TRANSACTION ISOLATION LEVEL"),
        [show("transaction_isolation")]
    );
    assert_eq!(queries("SHOW server_version"), [show("server_version")]);
    assert_eq!(queries("SET TIME ZONE 'UTC'").len(), 1);
}

#[test]
fn writes_ddl_and_everything_but_queries_are_read_only_errors() {
    for text in [
        "insert into raw.orders values (1, 2)",
        "update raw.orders set id = 2",
        "delete from raw.orders",
        "create table t (a int)",
        "create or replace view main.daily as select 1",
        "drop table raw.orders",
        "alter table raw.orders add column x int",
        "attach 'other.duckdb' as other",
        "detach other",
        "install httpfs",
        "load httpfs",
        "copy raw.orders to '/tmp/orders.csv'",
        "copy raw.orders from '/tmp/orders.csv'",
        "export database '/tmp/export'",
        "pragma version",
        "call pragma_version()",
        "checkpoint",
        "vacuum",
        "use raw",
        "select 1; drop table raw.orders",
        "create secret (type s3, key_id 'k', secret 's')",
    ] {
        assert_eq!(refused(text).sqlstate, sqlstate::READ_ONLY, "{text}");
    }
}

#[test]
fn files_other_schemas_and_global_settings_are_not_reachable() {
    for (text, state) in [
        (
            "select * from read_csv('/etc/passwd')",
            sqlstate::NOT_ALLOWED,
        ),
        (
            "select * from read_text('/etc/passwd')",
            sqlstate::NOT_ALLOWED,
        ),
        ("select * from glob('/*')", sqlstate::NOT_ALLOWED),
        (
            "select * from read_parquet('x.parquet')",
            sqlstate::NOT_ALLOWED,
        ),
        (
            "select (select count(*) from read_blob('/etc/shadow'))",
            sqlstate::NOT_ALLOWED,
        ),
        (
            "select * from raw.orders, query('select 1')",
            sqlstate::NOT_ALLOWED,
        ),
        ("select * from duckdb_secrets()", sqlstate::NOT_ALLOWED),
        ("select * from '/etc/passwd'", sqlstate::NO_RELATION),
        ("select * from 'data.csv'", sqlstate::NO_RELATION),
        ("select * from hidden.secrets", sqlstate::NOT_ALLOWED),
        ("select * from other.main.t", sqlstate::NOT_ALLOWED),
        ("select getenv('HOME')", sqlstate::NOT_ALLOWED),
        ("select nextval('s')", sqlstate::NOT_ALLOWED),
        ("set memory_limit = '1GB'", sqlstate::NOT_ALLOWED),
        ("SET threads TO 1", sqlstate::NOT_ALLOWED),
        ("selec 1", sqlstate::SYNTAX),
        (
            "select 1; select * from '/etc/passwd'",
            sqlstate::NO_RELATION,
        ),
    ] {
        let r = refused(text);
        assert_eq!(r.sqlstate, state, "{text}: {r}");
    }
    // The message names what was refused.
    assert!(refused("select * from read_csv('x')")
        .message
        .contains("read_csv"));
    assert!(refused("set memory_limit = '1GB'")
        .message
        .contains("memory_limit"));
}

#[test]
fn vetting_runs_nothing() {
    let (conn, scope) = warehouse();
    for text in [
        "drop table raw.orders",
        "select 1; drop table raw.orders",
        "create table main.t (a int)",
    ] {
        let _ = vet(&conn, text, &scope);
    }
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('orders', 't')",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(tables, 1);
}

/// Any name DuckDB would try as a file or URL (a replacement scan) is refused by the gate
/// itself, whichever schema it is written in, however it is quoted, wherever it stands.
#[test]
fn a_name_that_is_no_table_is_refused_wherever_it_is_written() {
    for text in [
        r#"SELECT * FROM raw."x.csv?/../../../../etc/passwd""#,
        r#"SELECT * FROM "raw"."x.csv?/../../../../etc/passwd""#,
        r#"SELECT * FROM main."/etc/passwd""#,
        r#"SELECT * FROM _sluice."../../etc/shadow""#,
        r#"SELECT * FROM information_schema."/etc/passwd""#,
        r#"SELECT * FROM pg_catalog."/etc/passwd""#,
        r#"SELECT * FROM memory.raw."x.csv""#,
        r#"SELECT * FROM raw."https://example.com/x.parquet""#,
        r#"SELECT * FROM raw."s3://bucket/x.parquet""#,
        r#"SELECT * FROM "/etc/passwd""#,
        "SELECT * FROM 'x.csv?/../../etc/passwd'",
        "FROM '/etc/hostname'",
        "SELECT * FROM 'https://example.com/data.json'",
        r#"DESCRIBE raw."x.csv""#,
        "DESCRIBE '/etc/passwd'",
        "SUMMARIZE '/etc/passwd'",
        "SELECT (SELECT count(*) FROM raw.\"x.csv\")",
        "SELECT * FROM raw.orders WHERE id IN (SELECT 1 FROM '/etc/passwd')",
        "SELECT * FROM raw.orders JOIN 'x.csv' USING (id)",
        "SELECT * FROM raw.no_such_table",
        "WITH a AS (SELECT 1) SELECT * FROM a, raw.\"x.csv\"",
        // A CTE answers a name only inside the query that defines it.
        r#"SELECT * FROM (WITH "/etc/passwd" AS (SELECT 1) SELECT 1), "/etc/passwd""#,
        r#"SELECT (WITH "x.csv" AS (SELECT 1) SELECT 1), * FROM "x.csv""#,
        // DuckDB's own system views say more than a client needs (the database's path,
        // every setting).
        "SELECT * FROM duckdb_databases",
        "SELECT * FROM main.duckdb_databases",
        "SELECT * FROM duckdb_settings",
        "SELECT * FROM sqlite_master",
    ] {
        let r = refused(text);
        assert_eq!(r.sqlstate, sqlstate::NO_RELATION, "{text}: {r}");
    }
    assert_eq!(
        refused("SELECT * FROM duckdb_databases()").sqlstate,
        sqlstate::NOT_ALLOWED
    );
    // The message names what was refused, shortened.
    let r = refused(&format!("SELECT * FROM raw.\"{}\"", "x".repeat(10_000)));
    assert!(r.message.len() < 1_000, "{}", r.message.len());
}

#[test]
fn catalog_tables_sluice_answers_are_never_read_from_duckdbs_own_catalog() {
    // Written so that the rewrite cannot stand sluice's table in: DuckDB's own
    // pg_settings would list every setting of the database.
    for text in [
        "select * from pg_catalog.pg_class c(a, b)",
        "select * from pg_settings as s(a, b, c)",
        "select * from pg_settings tablesample 100%",
        "select * from pg_catalog./* x */pg_settings",
    ] {
        assert_eq!(refused(text).sqlstate, sqlstate::NOT_ALLOWED, "{text}");
    }
}

#[test]
fn duckdbs_own_current_setting_is_never_reached() {
    assert_eq!(queries("select current_setting('search_path')").len(), 1);
    for text in [
        r#"select "current_setting"('temp_directory')"#,
        "select main.current_setting('allowed_paths')",
        "select current_setting /**/ ('threads')",
        "select system.main.current_setting('memory_limit')",
    ] {
        assert_eq!(refused(text).sqlstate, sqlstate::NOT_ALLOWED, "{text}");
    }
}

#[test]
fn lists_from_range_are_bounded_and_rows_from_range_are_not() {
    assert_eq!(
        queries("select range(10), generate_series(1, 5, 2)").len(),
        1
    );
    assert_eq!(queries("select count(*) from range(100000000000)").len(), 1);
    for (text, state) in [
        ("select len(range(300000000))", "54000"),
        ("select range(0, 2000000000, 1)", "54000"),
        ("select len(range(x)) from (select 10 as x)", sqlstate::NOT_ALLOWED),
        (
            "select generate_series(timestamp '2000-01-01', timestamp '2001-01-01', interval 1 second)",
            sqlstate::NOT_ALLOWED,
        ),
    ] {
        assert_eq!(refused(text).sqlstate, state, "{text}");
    }
}

#[test]
fn a_cte_is_not_in_scope_in_its_own_body_or_earlier_ones() {
    for text in [
        r#"WITH "/etc/passwd" AS (SELECT * FROM "/etc/passwd") SELECT * FROM "/etc/passwd""#,
        r#"WITH a AS (SELECT * FROM "x.csv"), "x.csv" AS (SELECT 1) SELECT * FROM a"#,
        r#"WITH RECURSIVE "x.csv"(n) AS (SELECT * FROM "x.csv" UNION ALL SELECT n FROM "x.csv") SELECT 1"#,
    ] {
        assert_eq!(refused(text).sqlstate, sqlstate::NO_RELATION, "{text}");
    }
    // A later CTE sees an earlier one; a recursive one sees itself in its recursive part.
    for text in [
        "WITH a AS (SELECT 1 AS x), b AS (SELECT * FROM a) SELECT * FROM b",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    ] {
        assert_eq!(queries(text).len(), 1, "{text}");
    }
}

#[test]
fn deep_expressions_are_read_and_statements_with_too_many_tables_are_refused() {
    // DuckDB's tree of a 900-term sum is thousands of levels deep.
    let sum = vec!["1"; 900].join(" + ");
    assert_eq!(queries(&format!("select {sum}")).len(), 1);
    let many = (0..=MAX_TABLES)
        .map(|i| format!("raw.orders o{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(
        refused(&format!("select 1 from {many}")).sqlstate,
        sqlstate::TOO_COMPLEX
    );
}

#[test]
fn statements_with_too_many_selects_are_refused_before_duckdb_plans_them() {
    let many = vec!["SELECT 1"; MAX_SELECTS + 1].join(" UNION ALL ");
    assert_eq!(refused(&many).sqlstate, sqlstate::TOO_COMPLEX);
    let enough = vec!["SELECT 1"; MAX_SELECTS].join(" UNION ALL ");
    assert_eq!(queries(&enough).len(), 1);
}

#[test]
fn names_that_exist_or_are_ctes_in_scope_are_read() {
    for text in [
        "SELECT * FROM RAW.Orders",
        r#"SELECT * FROM "raw"."ORDERS""#,
        r#"WITH "Q" AS (SELECT 1 AS a) SELECT * FROM q"#,
        "WITH a AS (SELECT 1 AS x) SELECT * FROM (SELECT * FROM a) s",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
        "WITH a AS (SELECT 1 AS x), b AS (SELECT * FROM a) SELECT * FROM b",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM pg_catalog.pg_namespace",
        "SELECT * FROM memory.raw.orders",
    ] {
        assert_eq!(queries(text).len(), 1, "{text}");
    }
}

/// Whatever string a name is, quoted in any readable schema or none, in any clause, the
/// gate refuses it unless it is a table, a view or a CTE in scope: DuckDB would try it as
/// a path or URL.
mod replacement_scans {
    use proptest::prelude::*;

    use super::*;

    fn name() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/etc/passwd".to_string()),
            Just("..".to_string()),
            Just("x.csv".to_string()),
            Just("?".to_string()),
            Just("*".to_string()),
            Just("s3://b/k.parquet".to_string()),
            Just("https://h/x.json".to_string()),
            Just("file://".to_string()),
            Just("data.parquet".to_string()),
            "[a-z./~:?*_-]{1,8}",
        ];
        proptest::collection::vec(piece, 1..5)
            .prop_map(|p| p.join("/").replace('"', ""))
            // Something an identifier never is (a slash, a dot, ...): never a table name.
            .prop_filter("path-like", |n| {
                !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    }

    fn place() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("SELECT * FROM {t}".to_string()),
            Just("FROM {t}".to_string()),
            Just("DESCRIBE {t}".to_string()),
            Just("SUMMARIZE {t}".to_string()),
            Just("SELECT (SELECT count(*) FROM {t})".to_string()),
            Just("SELECT * FROM raw.orders JOIN {t} USING (id)".to_string()),
            Just("WITH a AS (SELECT * FROM {t}) SELECT * FROM a".to_string()),
            Just("SELECT * FROM raw.orders WHERE id IN (SELECT 1 FROM {t})".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("SLUICE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
        ))]

        #[test]
        fn no_path_or_url_gets_through(name in name(), place in place(), schema in prop_oneof![
            Just(""), Just("raw."), Just("main."), Just("_sluice."), Just("pg_catalog."),
            Just("information_schema."), Just("memory.raw.")
        ], quote in prop_oneof![Just('"'), Just('\'')]) {
            let table = if quote == '\'' && schema.is_empty() {
                format!("'{}'", name.replace('\'', ""))
            } else {
                format!("{schema}\"{name}\"")
            };
            let sql = place.replace("{t}", &table);
            let (conn, scope) = warehouse();
            let r = vet(&conn, &sql, &scope);
            prop_assert!(
                matches!(&r, Err(e) if matches!(e.sqlstate, sqlstate::NO_RELATION | sqlstate::NOT_ALLOWED | sqlstate::SYNTAX)),
                "{sql}: {r:?}"
            );
        }
    }
}
