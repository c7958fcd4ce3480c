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
    // The session's parameter, else NULL: never one of DuckDB's settings, which are the
    // whole database's (its memory, threads, paths).
    (
        "current_setting",
        "setting_name, missing_ok := false",
        "getvariable('sluice_settings')[lower(setting_name)]",
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

/// The most a value-making function may make over the SQL endpoint: characters of a
/// string (`repeat`, `lpad`, `rpad`) or elements of a list (`repeat`, `list_resize`,
/// `array_resize`, `range`). DuckDB builds such a value outside its `memory_limit`, whole,
/// before anything can interrupt it (`repeat('x', 2e9)` takes 4 GB), and a whole vector of
/// 2,048 of them at once (`repeat('x', 1e6) FROM range(...)`: 2 GB), so the bound is
/// checked before the call, small enough that a vector stays within 256 MB (2,048 lists
/// of 16,384 BIGINTs); a longer result is an error (`22023`).
pub const MAX_VALUE_LENGTH: u64 = 16_384;

/// The functions that make a value longer than their arguments, each as a macro that
/// checks the length first. `{max}` is [`MAX_VALUE_LENGTH`]; `{n}` wraps the length
/// argument so that DuckDB's constant folding cannot build the value at planning time
/// (a volatile term keeps the call for execution, after the check).
const BOUNDED: &[(&str, &str, &str, &str)] = &[
    ("repeat", "s, n", "len(s) * n", "repeat(s, {n})"),
    ("lpad", "s, n, p", "n", "lpad(s, {n}, p)"),
    ("rpad", "s, n, p", "n", "rpad(s, {n}, p)"),
    (
        "list_resize",
        "l, n, v := NULL",
        "n",
        "list_resize(l, {n}, v)",
    ),
    (
        "array_resize",
        "l, n, v := NULL",
        "n",
        "array_resize(l, {n}, v)",
    ),
];

/// Whether `name` (lower-case) is a function sluice bounds: every call of it over the
/// endpoint must become its macro, or the query is refused.
pub fn is_bounded(name: &str) -> bool {
    BOUNDED.iter().any(|(shim, ..)| *shim == name)
}

/// Whether every call of `name` (lower-case) must become sluice's stand-in, or the query
/// is refused: the bounded functions, and DuckDB's own that would tell a client what is
/// not its business (`current_setting('temp_directory')` is a path on the server).
pub fn must_be_shimmed(name: &str) -> bool {
    is_bounded(name) || name == "current_setting"
}

/// The widest field a `printf`/`format` string may ask for: a width is padding DuckDB
/// builds outside its `memory_limit`, like `repeat`'s.
pub const MAX_FORMAT_WIDTH: u64 = 10_000;

/// Why the format string `fmt` of `printf` (`%10d`) or `format` (`{:>10}`) may not run:
/// a width or precision over [`MAX_FORMAT_WIDTH`], or one taken from an argument.
pub fn format_problem(function: &str, fmt: &str) -> Option<String> {
    let specs = if function == "printf" {
        fmt.split('%').skip(1).map(String::from).collect()
    } else {
        match format_specs(fmt) {
            Some(specs) => specs,
            None => return Some(format!("{function}: a width taken from an argument")),
        }
    };
    let mut total: u64 = 0;
    for spec in specs {
        let head: String = spec
            .chars()
            .take_while(|c| !c.is_ascii_alphabetic())
            .collect();
        if head.contains('*') {
            return Some(format!("{function}: a width taken from an argument"));
        }
        let widest = head
            .split(|c: char| !c.is_ascii_digit())
            .filter(|d| !d.is_empty())
            .map(|d| d.parse::<u64>().unwrap_or(u64::MAX))
            .max()
            .unwrap_or(0);
        if widest > MAX_FORMAT_WIDTH {
            return Some(format!(
                "{function}: a field of width {widest} (at most {MAX_FORMAT_WIDTH} over sluice's SQL endpoint)"
            ));
        }
        // Many narrow fields make one long value too (`%1$9999s` repeated).
        total = total.saturating_add(widest);
        if total > MAX_VALUE_LENGTH {
            return Some(format!(
                "{function}: fields {total} wide in all (at most {MAX_VALUE_LENGTH} over sluice's SQL endpoint)"
            ));
        }
    }
    None
}

/// The specs (after `:`) of a `format` string's fields; `None` if a field nests another
/// (a width taken from an argument).
fn format_specs(fmt: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = fmt.chars().collect();
    let (mut specs, mut i) = (Vec::new(), 0);
    while i < chars.len() {
        if chars[i] != '{' {
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            i += 2;
            continue;
        }
        let field: String = chars[i + 1..].iter().take_while(|c| **c != '}').collect();
        if field.contains('{') {
            return None;
        }
        if let Some((_, spec)) = field.split_once(':') {
            specs.push(spec.to_string());
        }
        i += field.chars().count() + 2;
    }
    Some(specs)
}

/// The macro of each [`BOUNDED`] function.
fn bounded_macros() -> String {
    BOUNDED
        .iter()
        .map(|(name, params, length, call)| {
            let n = "(n + CAST(random() * 0 AS INTEGER))";
            format!(
                "CREATE OR REPLACE TEMP MACRO sluice_{name}({params}) AS CASE \
                 WHEN {length} > {MAX_VALUE_LENGTH} THEN error('{name}: the result would be \
                 longer than {MAX_VALUE_LENGTH} (sluice''s SQL endpoint bounds what one value \
                 may hold)') ELSE {} END;\n",
                call.replace("{n}", n)
            )
        })
        .collect()
}

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
        .chain(std::iter::once(bounded_macros()))
        .collect();
    conn.execute_batch(&sql)
}

/// What a call to `name` (lower-case, unqualified or in `pg_catalog`) becomes: its
/// shim, DuckDB's own name for it, or nothing (it is not renamed).
pub fn renamed(name: &str) -> Option<String> {
    if let Some((_, builtin)) = RENAMES.iter().find(|(from, _)| *from == name) {
        return Some(builtin.to_string());
    }
    let shimmed = SHIMS.iter().any(|(shim, _, _)| *shim == name)
        || is_bounded(name)
        || crate::catalog::FUNCTIONS.contains(&name);
    shimmed.then(|| format!("sluice_{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_widths_are_bounded() {
        for (f, fmt) in [
            ("printf", "%2000000000d"),
            ("printf", "%.99999999f"),
            ("printf", "%*d"),
            ("printf", "x %-20000s y"),
            ("format", "{:>2000000000}"),
            ("format", "{0:.50000}"),
            ("format", "{:{}}"),
            ("printf", &"%1$9999s".repeat(200)),
        ] {
            assert!(format_problem(f, fmt).is_some(), "{f}({fmt:?})");
        }
        for (f, fmt) in [
            ("printf", "%5d of %s, 100%% in 2026"),
            ("printf", "%08.3f"),
            ("format", "{} rows in 20260 files"),
            ("format", "{:>10} {:.2f}"),
        ] {
            assert_eq!(format_problem(f, fmt), None, "{f}({fmt:?})");
        }
    }
}
