//! What a raw table's rows become in the lake: the query that reads a range of batches
//! from DuckDB in the lake's types, with the `dt` partition column.
//!
//! Delta has no unsigned integers and no time of day, so those columns are widened or
//! written as text: `UTINYINT` -> `SMALLINT`, `USMALLINT` -> `INTEGER`, `UINTEGER` ->
//! `BIGINT`, `UBIGINT` -> `DECIMAL(20,0)`, `TIME` -> `VARCHAR` (`HH:MM:SS[.ffffff]`),
//! `JSON` -> `VARCHAR`; inside structs too. Everything else keeps its type.

use std::sync::Arc;

use sluice_core::{meta, quote_ident, Column, ColumnType, Ident, TableSchema};

/// The partition column: the UTC date of the batch's commit (the Parquet tree's `dt=`).
pub const PARTITION: &str = "dt";

/// The type a column has in the lake.
pub fn lake_type(ty: &ColumnType) -> ColumnType {
    use ColumnType::*;
    match ty {
        UTinyInt => SmallInt,
        USmallInt => Integer,
        UInteger => BigInt,
        UBigInt => Decimal {
            precision: 20,
            scale: 0,
        },
        Time | Json => Varchar,
        Struct(fields) => Struct(
            fields
                .iter()
                .map(|c| Column::new(c.name.clone(), lake_type(&c.ty)))
                .collect::<Vec<_>>()
                .into(),
        ),
        other => other.clone(),
    }
}

/// The select list reading `columns` in the lake's types, then `dt`; an error if the
/// table has a column of its own called `dt`.
pub fn select_list(columns: &TableSchema) -> Result<String, String> {
    let mut list = Vec::with_capacity(columns.columns.len() + 1);
    for c in &columns.columns {
        if c.name.eq_ignore_ascii_case(PARTITION) {
            return Err(format!(
                "it has a column named {PARTITION:?}, the name of the lake's partition column"
            ));
        }
        let name = quote_ident(&c.name);
        let to = lake_type(&c.ty);
        list.push(if to == c.ty {
            name
        } else {
            format!("CAST({name} AS {to}) AS {name}")
        });
    }
    // TIMESTAMPTZ -> TIMESTAMP is UTC without DuckDB's ICU extension (not built in).
    list.push(format!(
        "CAST(CAST({} AS TIMESTAMP) AS DATE) AS {PARTITION}",
        quote_ident(meta::INGESTED_AT)
    ));
    Ok(list.join(", "))
}

/// `SELECT <list> FROM schema.table WHERE _sluice_batch BETWEEN ? AND ?` and, per stream
/// the lake holds part of, `AND NOT (<stream is ?> AND <position> < ?)` (`skips` of them).
pub fn batch_query(list: &str, schema: &Ident, table: &Ident, skip: &[SkipClause]) -> String {
    let mut sql = format!(
        "SELECT {list} FROM {schema}.{table} WHERE {} BETWEEN ? AND ?",
        quote_ident(meta::BATCH)
    );
    for s in skip {
        sql.push_str(" AND NOT (");
        sql.push_str(&s.condition);
        sql.push(')');
    }
    sql
}

/// A condition matching the rows of one stream the lake already holds (placeholders for
/// the source, the stream's values and the position the lake holds up to, in order).
#[derive(Debug, Clone)]
pub struct SkipClause {
    pub condition: Arc<str>,
}

impl SkipClause {
    /// `_sluice_source = ? AND <c1> = ? AND ... AND <position> < ?`.
    pub fn new(stream_columns: &[&str], position: &str) -> Self {
        let mut condition = format!("{} = ?", quote_ident(meta::SOURCE));
        for c in stream_columns {
            condition.push_str(&format!(" AND CAST({} AS VARCHAR) = ?", quote_ident(c)));
        }
        condition.push_str(&format!(" AND {} < ?", quote_ident(position)));
        SkipClause {
            condition: condition.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_time_and_json_columns_are_widened_and_dt_is_added() {
        let schema = TableSchema::new(vec![
            Column::new("id", ColumnType::UBigInt),
            Column::new("at", ColumnType::Time),
            Column::new("name", ColumnType::Varchar),
            Column::new(
                "s",
                ColumnType::Struct(vec![Column::new("n", ColumnType::UTinyInt)].into()),
            ),
            Column::new(meta::INGESTED_AT, ColumnType::TimestampTz),
        ]);
        let list = select_list(&schema).expect("list");
        assert_eq!(
            list,
            "CAST(\"id\" AS DECIMAL(20,0)) AS \"id\", CAST(\"at\" AS VARCHAR) AS \"at\", \"name\", \
             CAST(\"s\" AS STRUCT(\"n\" SMALLINT)) AS \"s\", \"_sluice_ingested_at\", \
             CAST(CAST(\"_sluice_ingested_at\" AS TIMESTAMP) AS DATE) AS dt"
        );
    }

    #[test]
    fn a_column_named_dt_is_refused() {
        let schema = TableSchema::new(vec![Column::new("DT", ColumnType::Date)]);
        assert!(select_list(&schema)
            .unwrap_err()
            .contains("partition column"));
    }
}
