//! Turning a model's SQL into a relation: a view, a rebuilt table, or new rows folded into
//! an incremental table by its strategy. Callers run this inside a transaction together
//! with the watermark update.

use duckdb::Connection;

use crate::{
    config::{Materialized, Strategy},
    error::{DuckdbContext, ModelError, Result},
    plan::{ModelPlan, Plan},
    render::Mode,
};

/// Temporary table holding an incremental run's new rows.
const NEW_ROWS: &str = "\"__sluice_new_rows\"";
/// Most offending keys quoted in a duplicate-key error.
const KEYS_SHOWN: usize = 5;

/// What to do to the model's relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// (Re)create the view, or rebuild the table from scratch.
    Full,
    /// Fold in the rows after `watermark`.
    Incremental { watermark: i64 },
}

/// Builds `m` and returns the rows written (0 for views).
pub fn build(conn: &Connection, plan: &Plan, m: &ModelPlan, how: Build) -> Result<u64> {
    let name = m.name.as_str();
    let relation = plan.catalog.relation(&plan.catalog.model_schema, &m.name);
    match (m.config.materialized, how) {
        (Materialized::Ephemeral, _) => Ok(0),
        (Materialized::View, _) => {
            let sql = plan.sql(m, Mode::Full)?;
            exec(
                conn,
                name,
                &format!("CREATE OR REPLACE VIEW {relation} AS\n{sql}"),
                "creating the view",
            )?;
            Ok(0)
        }
        (Materialized::Table, _) | (Materialized::Incremental, Build::Full) => {
            let sql = plan.sql(m, Mode::Full)?;
            exec(
                conn,
                name,
                &format!("CREATE OR REPLACE TABLE {relation} AS\n{sql}"),
                "building the table",
            )?;
            count(conn, name, &relation)
        }
        (Materialized::Incremental, Build::Incremental { watermark }) => {
            let sql = plan.sql(m, Mode::Incremental { watermark })?;
            exec(
                conn,
                name,
                &format!("CREATE OR REPLACE TEMP TABLE {NEW_ROWS} AS\n{sql}"),
                "selecting the new rows",
            )?;
            let rows = count(conn, name, NEW_ROWS)?;
            if rows > 0 {
                fold(conn, m, &relation)?;
            }
            exec(
                conn,
                name,
                &format!("DROP TABLE {NEW_ROWS}"),
                "dropping the new rows",
            )?;
            Ok(rows)
        }
    }
}

/// Folds the new rows into `relation` by the model's strategy.
fn fold(conn: &Connection, m: &ModelPlan, relation: &str) -> Result<()> {
    let name = m.name.as_str();
    let keys: Vec<String> = m.config.unique_key.iter().map(|k| k.quoted()).collect();
    if m.config.strategy == Strategy::Merge {
        refuse_duplicate_keys(conn, name, &keys)?;
    }
    if m.config.strategy != Strategy::Append {
        delete_replaced(conn, m, relation, &keys)?;
    }
    exec(
        conn,
        name,
        &format!("INSERT INTO {relation} BY NAME SELECT * FROM {NEW_ROWS}"),
        "inserting the new rows",
    )
}

/// Deletes the target rows whose key appears among the new rows. Keys compare with `=`,
/// which lets DuckDB prune the target's row groups by the new keys' min/max (`IS NOT
/// DISTINCT FROM` would scan the whole table); new rows with NULL in a key column, rare,
/// take a second pass that matches NULLs too, so a NULL key is replaced like any other.
fn delete_replaced(
    conn: &Connection,
    m: &ModelPlan,
    relation: &str,
    keys: &[String],
) -> Result<()> {
    let name = m.name.as_str();
    let target = m.name.quoted();
    let matching = |op: &str| -> Vec<String> {
        keys.iter()
            .map(|k| format!("{target}.{k} {op} n.{k}"))
            .collect()
    };
    let delete = |op: &str| {
        format!(
            "DELETE FROM {relation} USING {NEW_ROWS} AS n WHERE {}",
            matching(op).join(" AND ")
        )
    };
    exec(conn, name, &delete("="), "deleting the rows being replaced")?;
    let null_keys: Vec<String> = keys.iter().map(|k| format!("{k} IS NULL")).collect();
    let sql = format!(
        "SELECT count(*) FROM {NEW_ROWS} WHERE {}",
        null_keys.join(" OR ")
    );
    let with_null: i64 = conn
        .query_row(&sql, [], |r| r.get(0))
        .ctx(name, || "looking for NULL keys".into())?;
    if with_null > 0 {
        exec(
            conn,
            name,
            &delete("IS NOT DISTINCT FROM"),
            "deleting the rows with NULL keys being replaced",
        )?;
    }
    Ok(())
}

/// A merge needs one new row per key; otherwise the result would depend on row order.
fn refuse_duplicate_keys(conn: &Connection, model: &str, keys: &[String]) -> Result<()> {
    let key_list = keys.join(", ");
    let shown_key = match keys {
        [one] => format!("CAST({one} AS VARCHAR)"),
        many => {
            let parts: Vec<String> = many
                .iter()
                .map(|k| format!("CAST({k} AS VARCHAR)"))
                .collect();
            format!("'(' || concat_ws(', ', {}) || ')'", parts.join(", "))
        }
    };
    let sql = format!(
        "SELECT {shown_key}, count(*) FROM {NEW_ROWS} \
         GROUP BY {key_list} HAVING count(*) > 1 ORDER BY 2 DESC, 1 LIMIT {KEYS_SHOWN}"
    );
    let mut stmt = conn
        .prepare(&sql)
        .ctx(model, || "checking unique_key".into())?;
    let dups: Vec<(String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .ctx(model, || "checking unique_key".into())?;
    if dups.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = dups
        .iter()
        .map(|(k, n)| format!("{k} ({n} rows)"))
        .collect();
    Err(ModelError::Output {
        model: model.to_string(),
        message: format!(
            "merge on unique_key ({key_list}) got several new rows for the same key: {}; \
             deduplicate in the model (e.g. QUALIFY row_number() OVER (PARTITION BY ...) = 1) \
             or use incremental_strategy='delete+insert'",
            shown.join(", ")
        ),
    })
}

fn exec(conn: &Connection, model: &str, sql: &str, what: &str) -> Result<()> {
    conn.execute_batch(sql).ctx(model, || what.to_string())
}

fn count(conn: &Connection, model: &str, relation: &str) -> Result<u64> {
    conn.query_row(&format!("SELECT count(*) FROM {relation}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n.max(0) as u64)
    .ctx(model, || "counting its rows".into())
}
