//! `GET /catalog`: what an agent or a script needs to write a query: the readable
//! schemas, their tables and views with columns, DuckDB types and row counts, and each
//! model's watermark and freshness.

use std::collections::BTreeMap;

use pgwire::api::portal::Format;
use serde_json::{json, Value};

use super::internal;
use crate::gate::Refusal;
use crate::pg::types::fields;
use crate::reader::Statement;
use crate::service::Service;

/// The catalog as JSON: `{"schemas": [{"name", "tables": [{"name", "kind", "rows",
/// "columns": [{"name", "type", "nullable"}]}]}], "models": [{"name", "materialized",
/// "watermark", "rows_written", "last_run_at", "freshness_seconds"}]}`.
pub async fn catalog(service: &Service) -> Result<Value, Refusal> {
    let _permit = service.slot()?;
    let reader = service.reader("sql-catalog".into())?;
    let schemas: Vec<String> = service
        .scope
        .schemas
        .iter()
        .map(|s| format!("'{}'", s.replace('\'', "''")))
        .collect();
    let columns = rows(
        &reader,
        &format!(
            "SELECT r.schema_name, r.name, r.kind, r.rows, c.column_name, c.data_type, \
                    c.is_nullable \
             FROM (SELECT database_name, schema_name, table_name AS name, 'table' AS kind, \
                          estimated_size AS rows FROM duckdb_tables() \
                   UNION ALL SELECT database_name, schema_name, view_name, 'view', NULL \
                   FROM duckdb_views()) r \
             JOIN duckdb_columns() c ON c.database_name = r.database_name \
                  AND c.schema_name = r.schema_name AND c.table_name = r.name \
             WHERE r.database_name = current_database() \
               AND lower(r.schema_name) IN ({}) \
             ORDER BY r.schema_name, r.name, c.column_index",
            schemas.join(", ")
        ),
    )
    .await?;
    // The daemon opened the database through sluice-state, which created every `_sluice`
    // table: the models' are there even before any model ran.
    let models = rows(&reader, sluice_state::models::FRESHNESS_SQL).await?;
    Ok(json!({
        "schemas": schemas_json(columns),
        "models": models.into_iter().map(|m| json!({
            "name": m[0],
            "materialized": m[1],
            "watermark": number(&m[2]),
            "rows_written": number(&m[3]),
            "last_run_at": m[4],
            "freshness_seconds": number(&m[5]),
        })).collect::<Vec<_>>(),
    }))
}

/// Rows (schema, table, kind, rows, column, type, nullable) grouped into schemas and tables.
fn schemas_json(rows: Vec<Vec<Option<String>>>) -> Value {
    let mut schemas: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for r in rows {
        let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let table = schemas
            .entry(text(0))
            .or_default()
            .entry(text(1))
            .or_insert_with(
                || json!({"name": text(1), "kind": text(2), "rows": number(&r[3]), "columns": []}),
            );
        if let Some(columns) = table["columns"].as_array_mut() {
            columns.push(json!({"name": text(4), "type": text(5), "nullable": text(6) == "t"}));
        }
    }
    Value::from(
        schemas
            .into_iter()
            .map(|(name, tables)| json!({"name": name, "tables": tables.into_values().collect::<Vec<_>>()}))
            .collect::<Vec<_>>(),
    )
}

fn number(v: &Option<String>) -> Value {
    v.as_deref()
        .and_then(|s| serde_json::from_str::<serde_json::Number>(s).ok())
        .map_or(Value::Null, Value::Number)
}

/// Every row of `sql` (sluice's own query, not a client's), as text values.
async fn rows(
    reader: &crate::reader::Reader,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, Refusal> {
    let id = reader.new_id();
    let statement = Statement::query(sql.to_string(), Vec::new(), Format::UnifiedText);
    reader.run(id, statement).await?;
    let mut out: Vec<Vec<Option<String>>> = Vec::new();
    while let Some(chunk) = reader.next(id).await? {
        for row in &chunk {
            out.push(
                fields(row)
                    .into_iter()
                    .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            );
        }
    }
    if out.iter().any(|r| r.is_empty()) {
        return Err(internal(&"a catalog row without values"));
    }
    Ok(out)
}
