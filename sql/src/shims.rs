//! Postgres catalog functions that DuckDB lacks or answers differently, for the queries
//! clients send on their own (psql's `\dt`, SQLAlchemy's version check, JDBC's metadata).
//!
//! Each shim is a `TEMP MACRO` on the client's connection, named `sluice_<function>`
//! ([`create`]). The gate renames calls to the shimmed functions in a vetted query
//! ([`crate::rewrite`]) using the locations in DuckDB's own parse, so
//! `pg_catalog.version()` and `version()` become `sluice_version()`. (A
//! macro cannot simply take the name: DuckDB reads `pg_catalog.version()` as
//! `version(pg_catalog)` unless the function is in the system's `pg_catalog`.)

use duckdb::Connection;

/// The DuckDB variable holding the session's parameters (a MAP of name to value), set by
/// the reader whenever they change.
pub const SETTINGS_VARIABLE: &str = "sluice_settings";

/// The shimmed functions: name, parameters, body (`{version}` is sluice's version text).
const SHIMS: &[(&str, &str, &str)] = &[
    // The session's parameter, else a DuckDB setting of that name, else NULL.
    (
        "current_setting",
        "setting_name, missing_ok := false",
        "coalesce(getvariable('sluice_settings')[lower(setting_name)], \
         (SELECT s.value FROM duckdb_settings() s WHERE lower(s.name) = lower(setting_name)))",
    ),
    ("version", "", "'{version}'"),
    ("pg_get_userbyid", "role_oid", "'sluice'"),
    ("pg_encoding_to_char", "encoding", "'UTF8'"),
    ("has_schema_privilege", "a, b, c := NULL", "true"),
    ("has_table_privilege", "a, b, c := NULL", "true"),
    ("pg_get_viewdef", "view_oid, pretty := false", "NULL"),
    ("pg_get_expr", "expr, relation_oid, pretty := false", "expr"),
    // Definitions of objects a warehouse has none of (its catalog tables are empty).
    ("pg_get_statisticsobjdef_columns", "oid", "NULL::VARCHAR"),
    ("pg_get_triggerdef", "oid, pretty := false", "NULL::VARCHAR"),
    ("pg_get_ruledef", "oid, pretty := false", "NULL::VARCHAR"),
    ("pg_get_partkeydef", "oid", "NULL::VARCHAR"),
    ("pg_relation_is_publishable", "oid", "false"),
    // The elements of an array with their positions, one row each (JDBC's
    // getPrimaryKeys reads `(information_schema._pg_expandarray(indkey)).n`).
    (
        "_pg_expandarray",
        "arr",
        "unnest(list_transform(range(1, len(arr) + 1), lambda i: {'x': arr[i], 'n': i}))",
    ),
    // Sizes on disk are the database file's, not a table's: unknown per table.
    ("pg_table_size", "oid", "NULL::BIGINT"),
    ("pg_relation_size", "oid, fork := 'main'", "NULL::BIGINT"),
    ("pg_total_relation_size", "oid", "NULL::BIGINT"),
    ("pg_get_function_result", "oid", "NULL::VARCHAR"),
    ("pg_get_function_arguments", "oid", "NULL::VARCHAR"),
    ("array_upper", "arr, dimension", "len(arr)"),
    (
        "pg_get_serial_sequence",
        "table_name, column_name",
        "NULL::VARCHAR",
    ),
    (
        "pg_get_indexdef",
        "index_oid, column_no := 0, pretty := false",
        "NULL::VARCHAR",
    ),
    (
        "to_regtype",
        "sluice_type_name",
        "(SELECT t.oid FROM pg_catalog.pg_type t WHERE t.typname = sluice_type_name LIMIT 1)",
    ),
];

/// Postgres functions DuckDB has under another name (variadic ones, which a macro cannot
/// stand in for): calls are renamed to DuckDB's.
const RENAMES: &[(&str, &str)] = &[("json_build_object", "json_object")];

/// Postgres's object-identifier types, which clients cast to (`oid::regtype::text`,
/// `'t'::regclass`), and `name`, as temporary aliases of VARCHAR: the cast works and
/// keeps the text.
const TYPES: &[&str] = &[
    "regtype",
    "regclass",
    "regproc",
    "regnamespace",
    "regrole",
    "name",
];

/// Creates the shims and the catalog's stand-ins ([`crate::catalog`]) on `conn` (a
/// client's connection; temporary, so no other connection sees them).
pub fn create(conn: &Connection, version: &str) -> duckdb::Result<()> {
    crate::catalog::create(conn)?;
    let version = version.replace('\'', "''");
    let sql: String = SHIMS
        .iter()
        .map(|(name, params, body)| {
            format!(
                "CREATE OR REPLACE TEMP MACRO sluice_{name}({params}) AS {};\n",
                body.replace("{version}", &version)
            )
        })
        .chain(
            TYPES
                .iter()
                .map(|t| format!("CREATE TEMP TYPE IF NOT EXISTS {t} AS VARCHAR;\n")),
        )
        .collect();
    conn.execute_batch(&sql)
}

/// What a call to `name` (lower-case, unqualified or in `pg_catalog`) becomes: its
/// shim, DuckDB's own name for it, or nothing (it is not renamed).
pub fn renamed(name: &str) -> Option<String> {
    if let Some((_, builtin)) = RENAMES.iter().find(|(from, _)| *from == name) {
        return Some(builtin.to_string());
    }
    let shimmed =
        SHIMS.iter().any(|(shim, _, _)| *shim == name) || crate::catalog::FUNCTIONS.contains(&name);
    shimmed.then(|| format!("sluice_{name}"))
}
