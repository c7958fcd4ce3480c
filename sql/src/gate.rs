//! What a client may run, decided from DuckDB's own parse of the text.
//!
//! `json_serialize_sql` parses a query string with DuckDB's parser and returns every
//! statement's syntax tree, or says that some statement is not a query. So:
//! - Queries (`SELECT`, `FROM`, `WITH`, `VALUES`, `SHOW`, `DESCRIBE`, `SUMMARIZE`) are
//!   walked: every table they name must be a CTE in scope or exist, as a table or view,
//!   in a schema clients may read (the raw schema, the model schema, `_sluice`,
//!   `pg_catalog`, `information_schema`); any other name DuckDB would try as a file or
//!   URL (a replacement scan). Table functions come from a short list that cannot reach
//!   the file system (`read_csv`, `read_text`, `glob`, `query`, ... are refused).
//!   DuckDB's own sandbox (external access off, configuration locked:
//!   [`sluice_state::sandbox`]) stands behind the gate, so a name the gate wrongly let
//!   through still reads no file.
//! - Anything that is not a query (writes, DDL, `ATTACH`, `INSTALL`, `LOAD`, `COPY`,
//!   `EXPORT`, `PRAGMA`, `CALL`, `SET` of a DuckDB setting) is refused, unless it is one of
//!   the [`session`] statements sluice answers itself.
//! - A string of several statements is cut with [`split`], and the cut is accepted only
//!   where DuckDB's parse of each piece equals its parse of the whole.
//!
//! Refusals carry the SQLSTATE a Postgres server would send: `25006` (read-only), `42501`
//! (not allowed), `42P01` (no such relation), `42601` (syntax).

use std::collections::BTreeSet;

use duckdb::Connection;
use serde_json::Value;

use crate::rewrite;
use crate::{session, split};

mod refs;
use refs::{Refs, TableRef};

/// What clients may read, for one database.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Schemas whose tables and views clients may read, lower-case (`pg_catalog` and
    /// `information_schema` are always readable).
    pub schemas: Vec<String>,
    /// Where unqualified names resolve, in order (the client connections' `search_path`).
    pub search_path: Vec<String>,
}

/// A statement that may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vetted {
    /// A query, run as written (one statement).
    Query(String),
    /// A session statement, answered by sluice.
    Session(session::Command),
}

/// Why a statement may not run: a message for the client and its SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub sqlstate: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            sqlstate,
            message: message.into(),
        }
    }
}

/// The SQLSTATEs used.
pub mod sqlstate {
    pub const READ_ONLY: &str = "25006";
    pub const NOT_ALLOWED: &str = "42501";
    pub const NO_RELATION: &str = "42P01";
    pub const SYNTAX: &str = "42601";
    pub const INTERNAL: &str = "XX000";
    pub const CANCELED: &str = "57014";
    pub const TOO_COMPLEX: &str = "54001";
}

/// Table functions a query may call: they read the catalog or compute, never files.
const TABLE_FUNCTIONS: &[&str] = &[
    "range",
    "generate_series",
    "unnest",
    "json_each",
    "json_tree",
    "duckdb_columns",
    "duckdb_constraints",
    "duckdb_dependencies",
    "duckdb_functions",
    "duckdb_indexes",
    "duckdb_memory",
    "duckdb_keywords",
    "duckdb_schemas",
    "duckdb_tables",
    "duckdb_types",
    "duckdb_views",
    "pragma_table_info",
    "pragma_version",
];

/// `SELECT`s one statement may hold: DuckDB's planner holds about 200 KB for each branch
/// of a `UNION` (8,000 of them, a 150 KB query, take 1.7 GB and 10 s to plan, and an
/// interrupt lands only after that); 1,000 take 100 MB and a tenth of a second.
pub const MAX_SELECTS: usize = 1000;

/// Tables one statement may name (each join's sides, each subquery's): DuckDB plans a
/// join of each with the others.
pub const MAX_TABLES: usize = 1000;

/// How deep a statement's parentheses may nest: DuckDB's own `max_expression_depth`. Its
/// parse tree is serialized and walked recursively, and 20,000 nested subqueries (a
/// 320 KB query) overflowed the client thread's stack (which is large besides:
/// [`crate::reader`]).
pub const MAX_NESTING: usize = 1000;

/// Functions with effects beyond the query, or that read the environment.
const DENIED_FUNCTIONS: &[&str] = &["getenv", "nextval", "setseed"];

/// Schemas every client reads: the catalog views Postgres clients browse.
const CATALOG_SCHEMAS: &[&str] = &["pg_catalog", "information_schema"];

/// The statements of `text`, each allowed, or why not.
pub fn vet(conn: &Connection, text: &str, scope: &Scope) -> Result<Vec<Vetted>, Refusal> {
    vet_until(conn, text, scope, &|| false)
}

/// [`vet`], giving up (with a refusal the caller replaces by why it stopped) once
/// `stopped` says so: checked after each parse (each bounded by the query's size), so
/// between the statements of a string too.
pub fn vet_until(
    conn: &Connection,
    text: &str,
    scope: &Scope,
    stopped: &dyn Fn() -> bool,
) -> Result<Vec<Vetted>, Refusal> {
    let text = &*split::postgres_spellings(text);
    // Before DuckDB sees it: its parse tree is walked recursively, on the client's thread.
    let depth = split::nesting(text);
    if depth > MAX_NESTING {
        return Err(Refusal::new(
            sqlstate::TOO_COMPLEX,
            format!("parentheses nest {depth} deep; sluice's SQL endpoint allows {MAX_NESTING}"),
        ));
    }
    let parse = |text: &str| {
        let parsed = parse(conn, text)?;
        match stopped() {
            true => Err(Refusal::new(
                sqlstate::CANCELED,
                "vetting the query was stopped",
            )),
            false => Ok(parsed),
        }
    };
    match parse(text)? {
        Parsed::Queries(trees) if trees.is_empty() => Ok(Vec::new()),
        Parsed::Queries(trees) if trees.len() == 1 => {
            Ok(vec![query(conn, &trees[0], text, scope)?])
        }
        Parsed::Queries(trees) => {
            let pieces = split::statements(text);
            if pieces.len() != trees.len() {
                return Err(cannot_split(text));
            }
            pieces
                .into_iter()
                .zip(&trees)
                .map(|(piece, tree)| match parse(piece)? {
                    // The piece's own tree: its locations are offsets into the piece.
                    Parsed::Queries(mine) if mine.len() == 1 && same_tree(&mine[0], tree) => {
                        query(conn, &mine[0], piece, scope)
                    }
                    _ => Err(cannot_split(text)),
                })
                .collect()
        }
        Parsed::NotOnlyQueries | Parsed::Syntax(_) if split::statements(text).len() > 1 => {
            split::statements(text)
                .into_iter()
                .map(|piece| one(conn, piece, scope, stopped))
                .collect()
        }
        Parsed::NotOnlyQueries => Ok(vec![not_a_query(conn, text)?]),
        Parsed::Syntax(message) => match session::parse(text) {
            Some(command) => Ok(vec![Vetted::Session(command)]),
            None => Err(Refusal::new(sqlstate::SYNTAX, message)),
        },
    }
}

/// One statement of several, vetted on its own.
fn one(
    conn: &Connection,
    piece: &str,
    scope: &Scope,
    stopped: &dyn Fn() -> bool,
) -> Result<Vetted, Refusal> {
    let mut vetted = vet_until(conn, piece, scope, stopped)?;
    match (vetted.pop(), vetted.is_empty()) {
        (Some(v), true) => Ok(v),
        _ => Err(cannot_split(piece)),
    }
}

fn cannot_split(text: &str) -> Refusal {
    Refusal::new(
        sqlstate::SYNTAX,
        format!(
            "cannot tell the statements of this query string apart; send them one at a time: {}",
            shorten(text)
        ),
    )
}

/// A statement DuckDB does not parse as a query: a session statement, or refused.
fn not_a_query(conn: &Connection, text: &str) -> Result<Vetted, Refusal> {
    let Some(command) = session::parse(text) else {
        return Err(Refusal::new(
            sqlstate::READ_ONLY,
            format!(
                "sluice's SQL endpoint is read-only: only queries (SELECT, FROM, WITH, VALUES, \
                 SHOW, DESCRIBE, SUMMARIZE) and session statements (BEGIN, COMMIT, ROLLBACK, \
                 SET, SHOW, RESET) may run, not: {}",
                shorten(text)
            ),
        ));
    };
    if let session::Command::Set { name, .. } = &command {
        if duckdb_setting(conn, name)? && !CLIENT_PARAMETERS.contains(&name.as_str()) {
            return Err(Refusal::new(
                sqlstate::NOT_ALLOWED,
                format!("{name} is a setting of the whole database; clients cannot change it"),
            ));
        }
    }
    Ok(Vetted::Session(command))
}

/// Session parameters Postgres clients set; kept per session by sluice (some share a
/// name with a DuckDB setting, which they do not change).
pub const CLIENT_PARAMETERS: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "intervalstyle",
    "lc_messages",
    "lock_timeout",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "timezone",
];

fn duckdb_setting(conn: &Connection, name: &str) -> Result<bool, Refusal> {
    conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_settings() WHERE lower(name) = lower(?)",
        [name],
        |r| r.get(0),
    )
    .map_err(internal)
}

/// A query's tree vetted: every relation and function it names is allowed.
fn query(conn: &Connection, tree: &Value, sql: &str, scope: &Scope) -> Result<Vetted, Refusal> {
    if let Some(command) = shows_a_setting(tree)
        .then(|| session::parse(sql.trim()))
        .flatten()
    {
        return Ok(Vetted::Session(command));
    }
    let mut refs = Refs::default();
    refs.collect(tree);
    if refs.selects > MAX_SELECTS {
        return Err(Refusal::new(
            sqlstate::TOO_COMPLEX,
            format!(
                "the statement holds {} SELECTs (UNION branches, subqueries, CTEs); sluice's SQL endpoint plans at most {MAX_SELECTS} in one statement",
                refs.selects
            ),
        ));
    }
    if refs.tables.len() > MAX_TABLES {
        return Err(Refusal::new(
            sqlstate::TOO_COMPLEX,
            format!(
                "the statement names {} tables; sluice's SQL endpoint plans at most {MAX_TABLES} in one statement",
                refs.tables.len()
            ),
        ));
    }
    let mut checked = BTreeSet::new();
    for table in &refs.tables {
        if checked.insert(table) {
            relation(conn, scope, table)?;
        }
    }
    answered_by_sluice(&refs, sql)?;
    if let Some(f) = refs
        .table_functions
        .iter()
        .find(|f| !TABLE_FUNCTIONS.contains(&f.as_str()))
    {
        return Err(Refusal::new(
            sqlstate::NOT_ALLOWED,
            format!("the table function {f} is not available over sluice's SQL endpoint (only the catalog functions and range/generate_series/unnest/json_each/json_tree: nothing that reads files)"),
        ));
    }
    bounded(&refs, sql)?;
    if let Some(f) = refs
        .functions
        .iter()
        .find(|f| DENIED_FUNCTIONS.contains(&f.as_str()))
    {
        return Err(Refusal::new(
            sqlstate::NOT_ALLOWED,
            format!("the function {f} is not available over sluice's SQL endpoint"),
        ));
    }
    Ok(Vetted::Query(
        rewrite::rewrite(sql, &refs.mentions).trim().to_string(),
    ))
}

/// Every name of Postgres's catalog that sluice answers itself becomes its stand-in: one
/// written so that the rewrite cannot rename it (column aliases, a sample, a comment
/// inside) would read DuckDB's own `pg_catalog` (its `pg_settings` lists every setting).
fn answered_by_sluice(refs: &Refs, sql: &str) -> Result<(), Refusal> {
    let answered: Vec<&TableRef> = refs.tables.iter().filter(|t| answered(t)).collect();
    if rewrite::renamed_catalog_tables(sql, &refs.mentions) < answered.len() {
        let names: Vec<&str> = answered.iter().map(|t| t.table.as_str()).collect();
        return Err(Refusal::new(
            sqlstate::NOT_ALLOWED,
            format!(
                "write {} plainly ([pg_catalog.]name [AS alias], no column aliases or sample): sluice answers it itself",
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

/// A table of Postgres's catalog that sluice answers ([`crate::catalog`]).
fn answered(r: &TableRef) -> bool {
    r.catalog.is_empty()
        && !r.cte
        && matches!(r.schema.to_lowercase().as_str(), "" | "pg_catalog")
        && crate::catalog::answers(&r.table.to_lowercase())
}

/// Every call of a function that makes long values becomes its bounded macro (a call
/// written so that the rewrite cannot rename it, `x.repeat(n)` or `"repeat"(x, n)`, is
/// refused), and every format string asks for narrow fields ([`crate::shims`]).
fn bounded(refs: &Refs, sql: &str) -> Result<(), Refusal> {
    let mut names: Vec<&String> = refs.bounded_calls.iter().collect();
    names.sort();
    names.dedup();
    for name in names {
        let calls = refs.bounded_calls.iter().filter(|n| *n == name).count();
        if rewrite::renamed_calls(sql, &refs.mentions, name) < calls {
            return Err(Refusal::new(
                sqlstate::NOT_ALLOWED,
                format!("write {name} as a plain call, {name}(...): sluice's SQL endpoint answers it with its own (bounded) version"),
            ));
        }
    }
    for length in &refs.scalar_ranges {
        match length {
            Some(n) if *n <= crate::shims::MAX_VALUE_LENGTH => {}
            Some(n) => {
                return Err(Refusal::new(
                    "54000",
                    format!("range/generate_series would make a list of {n} elements (at most {} over sluice's SQL endpoint); FROM range(...) streams rows instead", crate::shims::MAX_VALUE_LENGTH),
                ))
            }
            None => {
                return Err(Refusal::new(
                    sqlstate::NOT_ALLOWED,
                    "range/generate_series as a list takes integer literals over sluice's SQL endpoint; FROM range(...) or FROM generate_series(...) streams rows for any arguments",
                ))
            }
        }
    }
    for (function, fmt) in &refs.formats {
        let problem = match fmt {
            Some(fmt) => crate::shims::format_problem(function, fmt),
            None => Some(format!(
                "{function} takes a string literal as its format over sluice's SQL endpoint"
            )),
        };
        if let Some(problem) = problem {
            return Err(Refusal::new(sqlstate::NOT_ALLOWED, problem));
        }
    }
    Ok(())
}

/// `SHOW name` (a setting: DuckDB parses it as a query over its settings); sluice
/// answers it with the session's parameters.
fn shows_a_setting(tree: &Value) -> bool {
    let from = &tree["node"]["from_table"];
    from["type"] == "SHOW_REF" && from["show_type"] == "SHOW"
}

/// A table or view named by a query: a CTE in scope, one of the Postgres catalog tables
/// sluice answers, or a table or view that exists in a readable schema. Nothing else:
/// DuckDB would try any other name as a file path or URL (a replacement scan), quoted,
/// schema-qualified or not (`raw."x.csv?/../../etc/passwd"`).
fn relation(conn: &Connection, scope: &Scope, r: &TableRef) -> Result<(), Refusal> {
    let name = [&r.catalog, &r.schema, &r.table]
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(".");
    if !r.catalog.is_empty() && r.catalog != current_database(conn)? {
        return Err(Refusal::new(
            sqlstate::NOT_ALLOWED,
            format!(
                "{}: only the warehouse's own database can be read",
                shorten(&name)
            ),
        ));
    }
    let schema = r.schema.to_lowercase();
    if r.cte || answered(r) {
        return Ok(());
    }
    let schemas: Vec<String> = if schema.is_empty() {
        let mut path = scope.search_path.clone();
        path.extend(CATALOG_SCHEMAS.iter().map(|s| s.to_string()));
        path
    } else if scope.schemas.contains(&schema) || CATALOG_SCHEMAS.contains(&schema.as_str()) {
        vec![schema]
    } else {
        return Err(Refusal::new(
            sqlstate::NOT_ALLOWED,
            format!(
                "{}: only the schemas {} (and pg_catalog, information_schema) can be read",
                shorten(&name),
                scope.schemas.join(", ")
            ),
        ));
    };
    if exists(conn, &schemas, &r.table)? {
        return Ok(());
    }
    Err(Refusal::new(
        sqlstate::NO_RELATION,
        format!(
            "relation {} does not exist (looked in {}; files cannot be read)",
            shorten(&name),
            schemas.join(", ")
        ),
    ))
}

fn current_database(conn: &Connection) -> Result<String, Refusal> {
    conn.query_row("SELECT current_database()", [], |r| r.get(0))
        .map_err(internal)
}

/// Whether `table` is a table or view in one of `schemas` (lower-case): the warehouse's
/// own, or for the catalog schemas DuckDB's system ones. Never DuckDB's own system views
/// in `main` (`duckdb_databases`, `duckdb_settings`, ...), which say more than a client
/// needs to know.
fn exists(conn: &Connection, schemas: &[String], table: &str) -> Result<bool, Refusal> {
    let list = schemas
        .iter()
        .map(|s| format!("'{}'", s.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let catalogs = CATALOG_SCHEMAS
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT count(*) > 0 FROM (SELECT database_name, schema_name, table_name FROM duckdb_tables() \
         UNION ALL SELECT database_name, schema_name, view_name FROM duckdb_views()) \
         WHERE lower(schema_name) IN ({list}) AND lower(table_name) = lower(?) \
         AND (database_name = current_database() \
              OR (database_name = 'system' AND lower(schema_name) IN ({catalogs})))"
    );
    conn.query_row(&sql, [table], |r| r.get(0))
        .map_err(internal)
}

/// DuckDB's parse of a query string.
enum Parsed {
    /// Every statement is a query: their trees, in order.
    Queries(Vec<Value>),
    /// Some statement is not a query.
    NotOnlyQueries,
    /// DuckDB cannot parse it.
    Syntax(String),
}

fn parse(conn: &Connection, text: &str) -> Result<Parsed, Refusal> {
    let json: String = conn
        .query_row("SELECT json_serialize_sql(?::VARCHAR)", [text], |r| {
            r.get(0)
        })
        .map_err(internal)?;
    // As deep as DuckDB's tree goes (bounded by MAX_NESTING, DuckDB's own expression
    // depth and the query's size), on the client thread's large stack.
    let mut reader = serde_json::Deserializer::from_str(&json);
    reader.disable_recursion_limit();
    let value: Value = serde::Deserialize::deserialize(&mut reader).map_err(internal)?;
    if value.get("error").and_then(Value::as_bool) != Some(true) {
        let trees = match value.get("statements") {
            Some(Value::Array(s)) => s.clone(),
            _ => Vec::new(),
        };
        return Ok(Parsed::Queries(trees));
    }
    let message = value
        .get("error_message")
        .and_then(Value::as_str)
        .unwrap_or("cannot parse the query")
        .to_string();
    match value.get("error_type").and_then(Value::as_str) {
        Some("parser") => Ok(Parsed::Syntax(message)),
        _ => Ok(Parsed::NotOnlyQueries),
    }
}

/// Two trees equal but for where their nodes are in the text.
fn same_tree(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| {
                m.keys()
                    .filter(|k| !k.starts_with("query_location"))
                    .cloned()
                    .collect::<BTreeSet<_>>()
            };
            keys(x) == keys(y) && keys(x).iter().all(|k| same_tree(&x[k], &y[k]))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_tree(a, b))
        }
        _ => a == b,
    }
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    let e = e.to_string();
    if e.contains("Out of Memory") {
        // DuckDB's message names its memory_limit and how to change it: not the client's.
        return Refusal::new(
            crate::reader::OUT_OF_MEMORY,
            "out of memory vetting the query: send a smaller one",
        );
    }
    Refusal::new(sqlstate::INTERNAL, format!("vetting the query failed: {e}"))
}

/// A client's text as quoted back in a refusal: at most 200 bytes of it.
fn shorten(text: &str) -> String {
    sluice_core::text::bounded(text.trim(), 200).into_owned()
}

#[cfg(test)]
mod tests;
