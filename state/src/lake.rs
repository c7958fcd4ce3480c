//! What the lake publisher (`sluice-lake`) reads of `_sluice`: this database's writer id
//! and the batches of a table it has not published yet.
//!
//! The lake keeps its own watermark, in the Delta log (a transaction per writer id), so
//! nothing here is written in a commit's transaction: a database restored from a backup
//! or copied keeps its id, and with it what the lake already holds from it.

use duckdb::{params, Connection};

use crate::{error::DuckdbContext, Result};

/// `_sluice.meta` key of the writer id.
const WRITER_ID: &str = "lake_writer_id";

/// This database's writer id: random, chosen the first time it is asked for and kept in
/// `_sluice.meta`, so two databases never share one.
pub fn writer_id(conn: &Connection, fresh: impl FnOnce() -> String) -> Result<String> {
    let context = || "reading the lake writer id from _sluice.meta".to_string();
    conn.execute(
        "INSERT INTO _sluice.meta VALUES (?, ?) ON CONFLICT DO NOTHING",
        params![WRITER_ID, fresh()],
    )
    .ctx(context)?;
    conn.query_row(
        "SELECT value FROM _sluice.meta WHERE key = ?",
        params![WRITER_ID],
        |r| r.get(0),
    )
    .ctx(context)
}

/// A committed batch, as the lake needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRef {
    pub batch_id: i64,
    pub rows: i64,
}

/// The batches of `table` after `after` in commit order, at most `limit` of them.
pub fn batches_after(
    conn: &Connection,
    table: &str,
    after: i64,
    limit: usize,
) -> Result<Vec<BatchRef>> {
    let context = || format!("reading batches of {table} after {after}");
    let mut stmt = conn
        .prepare_cached(
            "SELECT batch_id, rows FROM _sluice.batches \
             WHERE table_name = ? AND batch_id > ? ORDER BY batch_id LIMIT ?",
        )
        .ctx(context)?;
    let rows = stmt
        .query_map(params![table, after, limit as i64], |r| {
            Ok(BatchRef {
                batch_id: r.get(0)?,
                rows: r.get(1)?,
            })
        })
        .ctx(context)?;
    rows.collect::<duckdb::Result<_>>().ctx(context)
}

/// How many batches of `table` came after `after`.
pub fn count_after(conn: &Connection, table: &str, after: i64) -> Result<u64> {
    let table = table.to_string();
    crate::ledger::over_batches::<i64>(conn, "count(*)", "batch_id > ?", [&table], after)
        .map(|n| n.unwrap_or(0).max(0) as u64)
        .ctx(|| format!("counting batches of {table} after {after}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        crate::ensure(&conn).expect("state");
        conn
    }

    #[test]
    fn the_writer_id_is_chosen_once_and_kept() {
        let conn = db();
        let first = writer_id(&conn, || "a".into()).expect("id");
        let again = writer_id(&conn, || "b".into()).expect("id");
        assert_eq!((first.as_str(), again.as_str()), ("a", "a"));
    }

    #[test]
    fn batches_after_a_watermark_are_those_of_the_table_in_order() {
        let conn = db();
        for (id, table, rows) in [(1, "t", 5), (2, "u", 7), (3, "t", 0), (4, "t", 9)] {
            conn.execute(
                "INSERT INTO _sluice.batches VALUES (?, ?, ?, 0, NULL, NULL, '{}', now())",
                params![id, table, rows],
            )
            .expect("insert");
        }
        let got = batches_after(&conn, "t", 1, 10).expect("read");
        let ids: Vec<_> = got.iter().map(|b| (b.batch_id, b.rows)).collect();
        assert_eq!(ids, vec![(3, 0), (4, 9)]);
        assert_eq!(batches_after(&conn, "t", 0, 1).expect("read").len(), 1);
        assert_eq!(count_after(&conn, "t", 0).expect("count"), 3);
        assert_eq!(count_after(&conn, "t", 4).expect("count"), 0);
    }
}
