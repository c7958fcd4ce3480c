//! What a query's parse tree names: tables, table functions, functions, CTEs, and the
//! mentions the rewrite may rename, each with where it is written.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::rewrite::Mention;

/// What a query tree names.
#[derive(Debug, Default)]
pub(super) struct Refs {
    /// (catalog, schema, table) as written.
    pub(super) tables: Vec<(String, String, String)>,
    /// Lower-case.
    pub(super) table_functions: BTreeSet<String>,
    /// Lower-case; table functions appear here too.
    pub(super) functions: BTreeSet<String>,
    /// Lower-case names of the CTEs defined anywhere in the tree.
    pub(super) ctes: BTreeSet<String>,
    /// What the rewrite may rename: calls, tables and columns, with their locations.
    pub(super) mentions: Vec<Mention>,
}

impl Refs {
    pub(super) fn collect(&mut self, node: &Value) {
        match node {
            Value::Object(map) => {
                let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
                match text("type") {
                    "BASE_TABLE" => {
                        self.tables.push((
                            text("catalog_name").to_string(),
                            text("schema_name").to_string(),
                            text("table_name").to_string(),
                        ));
                        self.table_mention(map);
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
                    self.functions.insert(text("function_name").to_lowercase());
                    if let Some((at, _)) = span(map) {
                        self.mentions.push(Mention::Call {
                            name: text("function_name").to_lowercase(),
                            schema: text("schema").to_lowercase(),
                            at,
                        });
                    }
                }
                if let Some(Value::Array(entries)) = map.get("cte_map").and_then(|m| m.get("map")) {
                    for e in entries {
                        if let Some(k) = e.get("key").and_then(Value::as_str) {
                            self.ctes.insert(k.to_lowercase());
                        }
                    }
                }
                map.values().for_each(|v| self.collect(v));
            }
            Value::Array(items) => items.iter().for_each(|v| self.collect(v)),
            _ => {}
        }
    }

    /// The mentions the rewrite may rename: not a table that is one of the query's CTEs.
    pub(super) fn rewritable(&self) -> Vec<Mention> {
        let cte = |m: &Mention| {
            matches!(m, Mention::Table { schema, name, .. }
                if schema.is_empty() && self.ctes.contains(&name.to_lowercase()))
        };
        self.mentions.iter().filter(|m| !cte(m)).cloned().collect()
    }

    /// A table reference the rewrite may stand a catalog macro in for: catalog-less,
    /// without column aliases or a sample.
    fn table_mention(&mut self, map: &serde_json::Map<String, Value>) {
        let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
        let plain = text("catalog_name").is_empty()
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

/// Where a node is written: its location and length in the text, when DuckDB gives both.
fn span(map: &serde_json::Map<String, Value>) -> Option<(usize, usize)> {
    let at = map.get("query_location").and_then(Value::as_u64)?;
    let len = map
        .get("query_location_length")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some((at as usize, len as usize))
}
