//! Postgres catalog functions that DuckDB lacks or answers differently, for the queries
//! clients send on their own (psql's `\dt`, SQLAlchemy's version check, JDBC's metadata).
//!
//! Each shim is a `TEMP MACRO` on the client's connection, named `sluice_<function>`
//! ([`create`]). The gate renames calls to the shimmed functions in a vetted query
//! ([`rewrite`]) using the locations in DuckDB's own parse, so `pg_catalog.version()`
//! and `version()` become `sluice_version()`; nothing else in the text changes. (A
//! macro cannot simply take the name: DuckDB reads `pg_catalog.version()` as
//! `version(pg_catalog)` unless the function is in the system's `pg_catalog`.)

use duckdb::Connection;

/// A function call in a query: lower-case name and schema, and where it starts.
#[derive(Debug, Clone)]
pub struct Call {
    pub name: String,
    pub schema: String,
    pub at: usize,
}

/// The shimmed functions: name, parameters, body (`{version}` is sluice's version text).
const SHIMS: &[(&str, &str, &str)] = &[
    ("version", "", "'{version}'"),
    ("pg_get_userbyid", "role_oid", "'sluice'"),
    ("pg_encoding_to_char", "encoding", "'UTF8'"),
    ("has_schema_privilege", "a, b, c := NULL", "true"),
    ("has_table_privilege", "a, b, c := NULL", "true"),
    ("pg_get_viewdef", "view_oid, pretty := false", "NULL"),
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
/// `'t'::regclass`), as temporary aliases of VARCHAR: the cast works and keeps the text.
const TYPES: &[&str] = &["regtype", "regclass", "regproc", "regnamespace", "regrole"];

/// Creates the shims on `conn` (a client's connection; temporary, so no other
/// connection sees them).
pub fn create(conn: &Connection, version: &str) -> duckdb::Result<()> {
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

/// `sql` with each call to a shimmed function renamed to its shim.
pub fn rewrite(sql: &str, calls: &[Call]) -> String {
    let mut edits: Vec<(usize, usize, String)> = calls
        .iter()
        .filter(|c| matches!(c.schema.as_str(), "" | "pg_catalog"))
        .filter_map(|c| {
            let to = match RENAMES.iter().find(|(from, _)| *from == c.name) {
                Some((_, builtin)) => builtin.to_string(),
                None if SHIMS.iter().any(|(name, _, _)| *name == c.name) => {
                    format!("sluice_{}", c.name)
                }
                None => return None,
            };
            name_span(sql, c).map(|(from, end)| (from, end, to))
        })
        .collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    edits.dedup_by_key(|e| e.0);
    let mut out = sql.to_string();
    for (from, to, name) in edits {
        out.replace_range(from..to, &name);
    }
    out
}

/// Where the call's (possibly `pg_catalog.`-qualified) name is written, if it is
/// written plainly at its location (quoted or spaced-out names are left alone).
fn name_span(sql: &str, call: &Call) -> Option<(usize, usize)> {
    let rest = sql.get(call.at..)?;
    for prefix in ["pg_catalog.", ""] {
        let written = format!("{prefix}{}", call.name);
        let here = rest.get(..written.len());
        let after = rest.get(written.len()..).map(str::trim_start);
        if here.is_some_and(|h| h.eq_ignore_ascii_case(&written))
            && after.is_some_and(|a| a.starts_with('('))
        {
            return Some((call.at, call.at + written.len()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, schema: &str, at: usize) -> Call {
        Call {
            name: name.into(),
            schema: schema.into(),
            at,
        }
    }

    #[test]
    fn calls_are_renamed_where_they_are_written() {
        let sql = "SELECT pg_catalog.version(), Version (), upper('version()')";
        let out = rewrite(
            sql,
            &[
                call("version", "pg_catalog", 7),
                call("version", "", 29),
                call("upper", "", 41),
            ],
        );
        assert_eq!(
            out,
            "SELECT sluice_version(), sluice_version (), upper('version()')"
        );
    }

    #[test]
    fn a_location_that_does_not_show_the_name_is_left_alone() {
        let sql = "SELECT \"version\"()";
        assert_eq!(rewrite(sql, &[call("version", "", 7)]), sql);
    }
}
