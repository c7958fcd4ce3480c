//! The one edit sluice makes to a client's query text: names that mean Postgres's
//! catalog are renamed to sluice's stand-ins, where DuckDB's parse says they are written.
//!
//! - a call to a shimmed function (`pg_catalog.version()`, `format_type(...)`) becomes a
//!   call to its temporary macro ([`crate::shims`]); any other `pg_catalog.f(...)` loses
//!   the schema (DuckDB would read it as `f(pg_catalog, ...)`);
//! - a catalog table answered by sluice (`pg_catalog.pg_class c`, `pg_attribute`)
//!   becomes its table macro under the same name (`sluice_pg_class() AS c`,
//!   `sluice_pg_attribute() AS pg_attribute`) ([`crate::catalog`]);
//! - a type written with its schema (`x::pg_catalog.regtype`, as psql writes casts)
//!   loses it: DuckDB's own types and sluice's aliases ([`crate::shims`]) are not in a
//!   schema called `pg_catalog`;
//! - a column written with its schema (`pg_catalog.pg_collation.collname`, as
//!   SQLAlchemy writes them) loses the schema, since the table macro is known by its name.
//!
//! Each edit replaces exactly the span DuckDB reports for the node, after checking the
//! span shows what the node says; anything written otherwise is left alone (and the
//! query runs, or fails, against DuckDB's own catalog).

use sluice_core::quote_ident;

use crate::{catalog, shims};

/// Something in a query that may be renamed, with where DuckDB's parse puts it.
#[derive(Debug, Clone)]
pub enum Mention {
    /// A function call (lower-case name and schema); `at` is where the name starts.
    Call {
        name: String,
        schema: String,
        at: usize,
    },
    /// A table reference with no column aliases or sample: `[schema.]name [[AS] alias]`.
    Table {
        schema: String,
        name: String,
        alias: String,
        at: usize,
        len: usize,
    },
    /// A type name in a cast, with its schema as written.
    Type {
        schema: String,
        name: String,
        at: usize,
        len: usize,
    },
    /// A column reference, its name parts as written.
    Column {
        parts: Vec<String>,
        at: usize,
        len: usize,
    },
}

/// `sql` with each mention of something sluice stands in for renamed.
pub fn rewrite(sql: &str, mentions: &[Mention]) -> String {
    let mut edits: Vec<(usize, usize, String)> =
        mentions.iter().filter_map(|m| edit(sql, m)).collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    edits.dedup_by_key(|e| e.0);
    let mut out = sql.to_string();
    let mut limit = usize::MAX;
    for (from, to, text) in edits {
        // Spans never overlap in a parse tree; a defect that made them would corrupt the
        // text, so such an edit is dropped instead.
        if to <= limit {
            out.replace_range(from..to, &text);
            limit = from;
        }
    }
    out
}

/// How many tables of Postgres's catalog that sluice answers ([`catalog::answers`]) the
/// rewrite renames to their stand-ins.
pub fn renamed_catalog_tables(sql: &str, mentions: &[Mention]) -> usize {
    mentions
        .iter()
        .filter(|m| matches!(m, Mention::Table { .. }))
        .filter(|m| edit(sql, m).is_some())
        .count()
}

/// How many calls of `name` in `mentions` the rewrite renames.
pub fn renamed_calls(sql: &str, mentions: &[Mention], name: &str) -> usize {
    mentions
        .iter()
        .filter(|m| matches!(m, Mention::Call { name: n, .. } if n == name))
        .filter(|m| edit(sql, m).is_some())
        .count()
}

fn edit(sql: &str, mention: &Mention) -> Option<(usize, usize, String)> {
    match mention {
        Mention::Call { name, schema, at } => {
            if !matches!(schema.as_str(), "" | "pg_catalog" | "information_schema") {
                return None;
            }
            // DuckDB reads `pg_catalog.f(x)` as `f(pg_catalog, x)` unless its own
            // pg_catalog has `f`; unqualified, `f` is found wherever it is.
            let to =
                shims::renamed(name).or_else(|| (schema == "pg_catalog").then(|| name.clone()))?;
            let (from, end) = call_span(sql, schema, name, *at)?;
            Some((from, end, to))
        }
        Mention::Table {
            schema,
            name,
            alias,
            at,
            len,
        } => {
            let lower = name.to_lowercase();
            if !matches!(schema.to_lowercase().as_str(), "" | "pg_catalog")
                || !catalog::answers(&lower)
            {
                return None;
            }
            let written = words(sql.get(*at..at + len)?)?;
            let mut expected = Vec::new();
            if !schema.is_empty() {
                expected.extend([schema.to_lowercase(), ".".into()]);
            }
            expected.push(lower.clone());
            let rest = written.strip_prefix(expected.as_slice())?;
            let alias_ok = match rest {
                [] => alias.is_empty(),
                [a] | [_, a] => a.eq_ignore_ascii_case(alias),
                _ => false,
            };
            if !alias_ok || (rest.len() == 2 && rest[0] != "as") {
                return None;
            }
            let shown = if alias.is_empty() { name } else { alias };
            Some((
                *at,
                at + len,
                format!("sluice_{lower}() AS {}", quote_ident(shown)),
            ))
        }
        Mention::Type {
            schema,
            name,
            at,
            len,
        } => {
            if !schema.eq_ignore_ascii_case("pg_catalog") {
                return None;
            }
            let written = words(sql.get(*at..at + len)?)?;
            let expected = [schema.to_lowercase(), ".".into(), name.to_lowercase()];
            (written == expected).then(|| (*at, at + len, quote_ident(name)))
        }
        Mention::Column { parts, at, len } => {
            let [schema, table, column] = parts.as_slice() else {
                return None;
            };
            if !schema.eq_ignore_ascii_case("pg_catalog")
                || !catalog::answers(&table.to_lowercase())
            {
                return None;
            }
            let written = words(sql.get(*at..at + len)?)?;
            let expected = [schema, ".", table, ".", column].map(|w| w.to_lowercase());
            (written == expected).then(|| {
                (
                    *at,
                    at + len,
                    format!("{}.{}", quote_ident(table), quote_ident(column)),
                )
            })
        }
    }
}

/// Where the call's (possibly `pg_catalog.`-qualified) name is written, if it is
/// written plainly at its location (quoted or spaced-out names are left alone).
fn call_span(sql: &str, schema: &str, name: &str, at: usize) -> Option<(usize, usize)> {
    let rest = sql.get(at..)?;
    for prefix in [format!("{schema}."), String::new()] {
        let written = format!("{prefix}{name}");
        let here = rest.get(..written.len());
        let after = rest.get(written.len()..).map(str::trim_start);
        if here.is_some_and(|h| h.eq_ignore_ascii_case(&written))
            && after.is_some_and(|a| a.starts_with('('))
        {
            return Some((at, at + written.len()));
        }
    }
    None
}

/// The words of a span: identifiers (lower-cased unless quoted; quotes removed) and
/// dots. `None` for anything else (a comment, a parenthesis).
fn words(span: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = span.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '.' => out.push(".".into()),
            '"' => {
                let mut word = String::new();
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            word.push('"');
                        }
                        '"' => break,
                        c => word.push(c),
                    }
                }
                out.push(word);
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = c.to_lowercase().to_string();
                while let Some(&n) = chars.peek() {
                    if !(n.is_alphanumeric() || n == '_' || n == '$') {
                        break;
                    }
                    word.extend(n.to_lowercase());
                    chars.next();
                }
                out.push(word);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, schema: &str, at: usize) -> Mention {
        Mention::Call {
            name: name.into(),
            schema: schema.into(),
            at,
        }
    }

    fn table(sql: &str, written: &str, schema: &str, name: &str, alias: &str) -> Mention {
        Mention::Table {
            schema: schema.into(),
            name: name.into(),
            alias: alias.into(),
            at: sql.find(written).unwrap(),
            len: written.len(),
        }
    }

    #[test]
    fn calls_are_renamed_where_they_are_written() {
        let sql = "SELECT pg_catalog.version(), Version (), upper('version()'), \
                   pg_catalog.array_to_string(a, ',')";
        let out = rewrite(
            sql,
            &[
                call("version", "pg_catalog", 7),
                call("version", "", 29),
                call("upper", "", 41),
                call("array_to_string", "pg_catalog", 61),
            ],
        );
        assert_eq!(
            out,
            "SELECT sluice_version(), sluice_version (), upper('version()'), \
             array_to_string(a, ',')"
        );
    }

    #[test]
    fn a_location_that_does_not_show_the_name_is_left_alone() {
        let sql = "SELECT \"version\"()";
        assert_eq!(rewrite(sql, &[call("version", "", 7)]), sql);
    }

    #[test]
    fn catalog_tables_become_their_macros_under_the_same_name() {
        let sql = "SELECT c.oid FROM pg_catalog.pg_class c JOIN \"pg_catalog\".\"pg_namespace\" \
                   ON true JOIN pg_attribute AS a ON true, raw.pg_class";
        let out = rewrite(
            sql,
            &[
                table(sql, "pg_catalog.pg_class c", "pg_catalog", "pg_class", "c"),
                table(
                    sql,
                    "\"pg_catalog\".\"pg_namespace\"",
                    "pg_catalog",
                    "pg_namespace",
                    "",
                ),
                table(sql, "pg_attribute AS a", "", "pg_attribute", "a"),
                table(sql, "raw.pg_class", "raw", "pg_class", ""),
            ],
        );
        assert_eq!(
            out,
            "SELECT c.oid FROM sluice_pg_class() AS \"c\" JOIN sluice_pg_namespace() AS \
             \"pg_namespace\" ON true JOIN sluice_pg_attribute() AS \"a\" ON true, raw.pg_class"
        );
    }

    #[test]
    fn a_span_that_does_not_show_the_table_is_left_alone() {
        let sql = "SELECT 1 FROM pg_class /* c */ x";
        let m = table(sql, "pg_class /* c */ x", "", "pg_class", "x");
        assert_eq!(rewrite(sql, &[m]), sql);
    }

    #[test]
    fn types_lose_the_pg_catalog_schema() {
        let sql = "SELECT x::pg_catalog.regtype::PG_CATALOG.\"char\", y::main.t";
        let ty = |w: &str, schema: &str, name: &str| Mention::Type {
            schema: schema.into(),
            name: name.into(),
            at: sql.find(w).unwrap(),
            len: w.len(),
        };
        let out = rewrite(
            sql,
            &[
                ty("pg_catalog.regtype", "pg_catalog", "regtype"),
                ty("PG_CATALOG.\"char\"", "PG_CATALOG", "char"),
                ty("main.t", "main", "t"),
            ],
        );
        assert_eq!(out, "SELECT x::\"regtype\"::\"char\", y::main.t");
    }

    #[test]
    fn schema_qualified_columns_of_catalog_tables_lose_the_schema() {
        let sql = "SELECT pg_catalog.pg_collation.collname, pg_catalog.pg_proc.x";
        let col = |w: &str, parts: [&str; 3]| Mention::Column {
            parts: parts.map(String::from).to_vec(),
            at: sql.find(w).unwrap(),
            len: w.len(),
        };
        let out = rewrite(
            sql,
            &[
                col(
                    "pg_catalog.pg_collation.collname",
                    ["pg_catalog", "pg_collation", "collname"],
                ),
                col("pg_catalog.pg_proc.x", ["pg_catalog", "pg_proc", "x"]),
            ],
        );
        assert_eq!(
            out,
            "SELECT \"pg_collation\".\"collname\", pg_catalog.pg_proc.x"
        );
    }
}
