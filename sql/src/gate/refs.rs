//! What a query's parse tree names: tables (each knowing whether a CTE in scope answers
//! it), table functions, functions, and the mentions the rewrite may rename, each with
//! where it is written.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::rewrite::Mention;

/// A table a query names, as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct TableRef {
    pub(super) catalog: String,
    pub(super) schema: String,
    pub(super) table: String,
    /// A CTE in scope where the name is written answers it (DuckDB resolves it there).
    pub(super) cte: bool,
}

/// What a query tree names.
#[derive(Debug, Default)]
pub(super) struct Refs {
    pub(super) tables: Vec<TableRef>,
    /// Lower-case.
    pub(super) table_functions: BTreeSet<String>,
    /// Lower-case; table functions appear here too.
    pub(super) functions: BTreeSet<String>,
    /// What the rewrite may rename: calls, tables and columns, with their locations.
    pub(super) mentions: Vec<Mention>,
    /// Calls of functions that must become sluice's stand-ins
    /// ([`crate::shims::must_be_shimmed`]), by name, one per call wherever it is written
    /// (`x.repeat(n)` too).
    pub(super) bounded_calls: Vec<String>,
    /// Calls of `printf`/`format`: the name and the format when it is a string literal.
    pub(super) formats: Vec<(String, Option<String>)>,
    /// `SELECT`s in the statement (each branch of a `UNION`, each subquery and CTE).
    pub(super) selects: usize,
    /// Scalar (list-making) calls of `range`/`generate_series`: how many elements each
    /// makes when its arguments are integer literals (`None`: not known before running).
    pub(super) scalar_ranges: Vec<Option<u64>>,
    /// Lower-case names of the CTEs in scope at the node being walked, as DuckDB binds
    /// them: a query node's `WITH` covers that node; a CTE's body sees only the CTEs
    /// before it, and a recursive one itself in its recursive branch only.
    in_scope: Vec<String>,
    /// The function node next walked is a table function's call.
    in_table_call: bool,
}

impl Refs {
    pub(super) fn collect(&mut self, node: &Value) {
        match node {
            Value::Object(map) => {
                let scope_len = self.in_scope.len();
                let ctes = cte_names(map);
                self.in_scope.extend(ctes.iter().cloned());
                let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
                match text("type") {
                    "SELECT_NODE" => self.selects += 1,
                    "BASE_TABLE" => {
                        let table = TableRef {
                            catalog: text("catalog_name").to_string(),
                            schema: text("schema_name").to_string(),
                            table: text("table_name").to_string(),
                            cte: false,
                        };
                        let cte = table.catalog.is_empty()
                            && table.schema.is_empty()
                            && self.in_scope.contains(&table.table.to_lowercase());
                        self.table_mention(map, cte);
                        self.tables.push(TableRef { cte, ..table });
                    }
                    "COLUMN_REF" => self.column_mention(map),
                    "TYPE" => {
                        if let (true, Some((at, len))) = (text("catalog").is_empty(), span(map)) {
                            self.mentions.push(Mention::Type {
                                schema: text("schema").to_string(),
                                name: text("type_name").to_string(),
                                at,
                                len,
                            });
                        }
                    }
                    "TABLE_FUNCTION" => {
                        let function = |k: &str| {
                            map.get("function")
                                .and_then(|f| f.get(k))
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_lowercase()
                        };
                        self.table_functions.insert(function("function_name"));
                        // The call inside has no location of its own; it starts where
                        // the table reference does.
                        if let Some((at, _)) = span(map) {
                            self.mentions.push(Mention::Call {
                                name: function("function_name"),
                                schema: function("schema"),
                                at,
                            });
                        }
                    }
                    _ => {}
                }
                if text("class") == "FUNCTION" {
                    let table = std::mem::take(&mut self.in_table_call);
                    self.function(map, table);
                    self.functions.insert(text("function_name").to_lowercase());
                    if let Some((at, _)) = span(map) {
                        self.mentions.push(Mention::Call {
                            name: text("function_name").to_lowercase(),
                            schema: text("schema").to_lowercase(),
                            at,
                        });
                    }
                }
                let recursive =
                    (text("type") == "RECURSIVE_CTE_NODE").then(|| text("cte_name").to_lowercase());
                for (key, value) in map {
                    match key.as_str() {
                        "cte_map" => self.cte_bodies(value, scope_len, &ctes),
                        "function" if text("type") == "TABLE_FUNCTION" => {
                            self.in_table_call = true;
                            self.collect(value);
                        }
                        "right" if recursive.is_some() => {
                            self.in_scope.extend(recursive.clone());
                            self.collect(value);
                            self.in_scope.pop();
                        }
                        _ => self.collect(value),
                    }
                }
                self.in_scope.truncate(scope_len);
            }
            Value::Array(items) => items.iter().for_each(|v| self.collect(v)),
            _ => {}
        }
    }

    /// The bodies of a `WITH`'s CTEs (`cte_map`), each seeing those before it: `outer`
    /// is the scope outside the query node, `names` its CTEs in order.
    fn cte_bodies(&mut self, cte_map: &Value, outer: usize, names: &[String]) {
        let all = self.in_scope.split_off(outer);
        let entries = cte_map.get("map").and_then(Value::as_array);
        for (i, entry) in entries.into_iter().flatten().enumerate() {
            self.in_scope.extend(names.iter().take(i).cloned());
            self.collect(entry);
            self.in_scope.truncate(outer);
        }
        self.in_scope.extend(all);
    }

    /// What a function call means for the value bounds. `table`: the call of a table
    /// function (`FROM range(10)`, rows streamed), not a scalar one (`range(10)`, a list).
    fn function(&mut self, map: &serde_json::Map<String, Value>, table: bool) {
        let name = map
            .get("function_name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        if !table && matches!(name.as_str(), "range" | "generate_series") {
            self.scalar_ranges.push(range_length(map));
        }
        if crate::shims::must_be_shimmed(&name) {
            self.bounded_calls.push(name);
        } else if matches!(name.as_str(), "printf" | "format") {
            let first = map
                .get("arguments")
                .and_then(|a| a.get(0))
                .and_then(|a| a.get("expression"))
                .and_then(|e| e.get("literal"))
                .filter(|l| l.get("kind").and_then(Value::as_str) == Some("STRING"))
                .and_then(|l| l.get("text").and_then(Value::as_str))
                .map(String::from);
            self.formats.push((name, first));
        }
    }

    /// A table reference the rewrite may stand a catalog macro in for: catalog-less, not
    /// a CTE, without column aliases or a sample.
    fn table_mention(&mut self, map: &serde_json::Map<String, Value>, cte: bool) {
        let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
        let plain = !cte
            && text("catalog_name").is_empty()
            && map.get("sample").is_none_or(Value::is_null)
            && map
                .get("column_name_alias")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
        if let (true, Some((at, len))) = (plain, span(map)) {
            self.mentions.push(Mention::Table {
                schema: text("schema_name").to_string(),
                name: text("table_name").to_string(),
                alias: text("alias").to_string(),
                at,
                len,
            });
        }
    }

    fn column_mention(&mut self, map: &serde_json::Map<String, Value>) {
        let parts: Vec<String> = map
            .get("column_names")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if let (3, Some((at, len))) = (parts.len(), span(map)) {
            self.mentions.push(Mention::Column { parts, at, len });
        }
    }
}

/// The names of a query node's CTEs, lower-case, in order.
fn cte_names(map: &serde_json::Map<String, Value>) -> Vec<String> {
    map.get("cte_map")
        .and_then(|m| m.get("map"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("key")?.as_str())
        .map(str::to_lowercase)
        .collect()
}

/// How many elements a scalar `range`/`generate_series` call makes, when every argument
/// is an integer literal (`range(n)`, `range(a, b)`, `range(a, b, step)`).
fn range_length(map: &serde_json::Map<String, Value>) -> Option<u64> {
    let args: Vec<i128> = map
        .get("arguments")?
        .as_array()?
        .iter()
        .map(|a| {
            let literal = a.get("expression")?.get("literal")?;
            (literal.get("kind")?.as_str()? == "INTEGER")
                .then(|| literal.get("text")?.as_str()?.parse::<i128>().ok())?
        })
        .collect::<Option<_>>()?;
    let (from, to, step) = match args.as_slice() {
        [n] => (0, *n, 1),
        [a, b] => (*a, *b, 1),
        [a, b, s] if *s != 0 => (*a, *b, *s),
        _ => return None,
    };
    u64::try_from(((to - from) / step).max(0)).ok()
}

/// Where a node is written: its location and length in the text, when DuckDB gives both.
fn span(map: &serde_json::Map<String, Value>) -> Option<(usize, usize)> {
    let at = map.get("query_location").and_then(Value::as_u64)?;
    let len = map
        .get("query_location_length")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some((at as usize, len as usize))
}
