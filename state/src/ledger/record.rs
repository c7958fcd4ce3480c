//! What a commit records beside the rows, in the same transaction: the ledger entry, the
//! dead letters, and the positions of file, Kafka and other (keyed) sources. The caller owns the
//! transaction; `stamp` is the commit's time as a `TIMESTAMPTZ` literal.
//!
//! Text that may quote input (a quarantine's reason, a dead letter's error and raw record)
//! is bounded here too, whoever built it: a value of megabytes in one of these rows once
//! made the commit run out of memory, and a failed commit stops the daemon.

use std::collections::BTreeMap;

use duckdb::{params, Connection, ToSql};
use sluice_core::{
    text::{bounded, TEXT_LIMIT},
    Chunk, FileProgress, KeyedProgress, Origin, PartitionProgress, Position, DEAD_LETTER_RAW_LIMIT,
};

use crate::{error::DuckdbContext, Result};

fn rows(chunks: &[Chunk]) -> i64 {
    chunks.iter().map(|c| c.rows.num_rows() as i64).sum()
}

fn dead_letter_count(chunks: &[Chunk]) -> i64 {
    chunks.iter().map(|c| c.dead_letters.len() as i64).sum()
}

/// A chunk's source and position, as `_sluice.batches.provenance` lists them.
pub fn position_json(c: &Chunk) -> serde_json::Value {
    match &c.position {
        Position::File(p) => serde_json::json!({
            "source": &*c.source, "file": p.name, "file_id": p.id.0, "hash": p.hash.0,
            "next_offset": p.next_offset, "next_line": p.next_line,
        }),
        Position::Kafka(p) => serde_json::json!({
            "source": &*c.source, "topic": &*p.topic, "partition": p.partition,
            "next_offset": p.next_offset,
        }),
        Position::Keyed(p) => serde_json::json!({
            "source": &*c.source, "key": p.key, "next": p.next,
        }),
    }
}

/// The ledger entry of batch `id` of `table`: its rows, dead letters, Parquet file
/// (relative path and bytes) and the positions of every chunk.
pub fn record_batch(
    tx: &Connection,
    table: &str,
    chunks: &[Chunk],
    id: i64,
    parquet: Option<(&str, u64)>,
    stamp: &str,
) -> Result<()> {
    let provenance: Vec<serde_json::Value> = chunks.iter().map(position_json).collect();
    // Cached: the same few statements run in every commit, and preparing them again
    // (parse, bind, plan) cost as much as running them.
    tx.prepare_cached(
        "INSERT INTO _sluice.batches VALUES (?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ))",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            table,
            rows(chunks),
            dead_letter_count(chunks),
            parquet.map(|p| p.0),
            parquet.map(|p| p.1 as i64),
            serde_json::Value::Array(provenance).to_string(),
            stamp,
        ])
    })
    .ctx(|| format!("recording batch {id} of {table}"))?;
    Ok(())
}

/// The dead letters of batch `id`, with their provenance.
pub fn record_dead_letters(
    tx: &Connection,
    table: &str,
    chunks: &[Chunk],
    id: i64,
    stamp: &str,
) -> Result<()> {
    if dead_letter_count(chunks) == 0 {
        return Ok(());
    }
    let context = || format!("recording dead letters of batch {id} of {table}");
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO _sluice.dead_letters \
             (batch_id, source, table_name, error, raw, file, line, topic, \"partition\", \"offset\", key, \
              stream, stream_position, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ))",
        )
        .ctx(context)?;
    for chunk in chunks {
        for dl in &chunk.dead_letters {
            let o = OriginColumns::of(&dl.origin);
            stmt.execute(params![
                id,
                &*chunk.source,
                table,
                bounded(&dl.error, TEXT_LIMIT),
                bounded(&dl.raw, DEAD_LETTER_RAW_LIMIT),
                o.file,
                o.line,
                o.topic,
                o.partition,
                o.offset,
                o.key,
                o.stream,
                o.stream_position,
                stamp
            ])
            .ctx(context)?;
        }
    }
    Ok(())
}

/// A dead letter's origin as `_sluice.dead_letters` columns (those of other origins NULL).
#[derive(Default)]
struct OriginColumns<'a> {
    file: Option<&'a str>,
    line: Option<i64>,
    topic: Option<&'a str>,
    partition: Option<i32>,
    offset: Option<i64>,
    key: Option<&'a str>,
    stream: Option<&'a str>,
    stream_position: Option<i64>,
}

impl<'a> OriginColumns<'a> {
    fn of(origin: &'a Origin) -> Self {
        match origin {
            Origin::File { name, line } => OriginColumns {
                file: Some(name),
                line: Some(*line as i64),
                ..Default::default()
            },
            Origin::Kafka {
                topic,
                partition,
                offset,
                key,
            } => OriginColumns {
                topic: Some(topic),
                partition: Some(*partition),
                offset: Some(*offset),
                key: key.as_deref(),
                ..Default::default()
            },
            Origin::Keyed { stream, position } => OriginColumns {
                stream: Some(stream),
                stream_position: Some(*position),
                ..Default::default()
            },
        }
    }
}

/// Per file: the last position reached in this batch, plus the rows and dead letters added.
struct FileDelta<'a> {
    progress: &'a FileProgress,
    rows: i64,
    dead_letters: i64,
}

/// Per file of a file source: the position reached, and the rows and dead letters added.
pub fn record_files(
    tx: &Connection,
    table: &str,
    chunks: &[Chunk],
    batch_id: Option<i64>,
    stamp: &str,
) -> Result<()> {
    // One upsert per file and transaction: chunks of a file arrive in order, the last wins.
    let mut files: BTreeMap<(&str, &str), FileDelta<'_>> = BTreeMap::new();
    for chunk in chunks {
        let Position::File(progress) = &chunk.position else {
            continue;
        };
        let entry = files
            .entry((&*chunk.source, progress.id.0.as_str()))
            .or_insert(FileDelta {
                progress,
                rows: 0,
                dead_letters: 0,
            });
        entry.progress = progress;
        entry.rows += chunk.rows.num_rows() as i64;
        entry.dead_letters += chunk.dead_letters.len() as i64;
    }
    if files.is_empty() {
        return Ok(());
    }
    let context = || format!("recording file positions for {table}");
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO _sluice.files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ)) \
             ON CONFLICT (source, file_id) DO UPDATE SET hash = excluded.hash, \
               original_name = excluded.original_name, \
               rows = rows + excluded.rows, dead_letters = dead_letters + excluded.dead_letters, \
               status = excluded.status, reason = excluded.reason, \
               next_offset = excluded.next_offset, next_line = excluded.next_line, \
               last_batch = coalesce(excluded.last_batch, last_batch), updated_at = excluded.updated_at",
        )
        .ctx(context)?;
    for ((source, id), delta) in files {
        let p = delta.progress;
        let reason = match &p.status {
            sluice_core::FileStatus::Quarantined { reason } => Some(bounded(reason, TEXT_LIMIT)),
            _ => None,
        };
        stmt.execute(params![
            source,
            id,
            p.hash.0,
            p.name,
            delta.rows,
            delta.dead_letters,
            p.status.as_str(),
            reason,
            p.next_offset as i64,
            p.next_line as i64,
            batch_id,
            stamp
        ])
        .ctx(context)?;
    }
    Ok(())
}

/// Per Kafka partition, the offset after the last message of this batch, upserted into
/// `_sluice.offsets` (chunks of a partition arrive in order: the last wins).
pub fn record_offsets(
    tx: &Connection,
    table: &str,
    chunks: &[Chunk],
    batch_id: Option<i64>,
    stamp: &str,
) -> Result<()> {
    let mut latest: BTreeMap<(&str, &str, i32), &PartitionProgress> = BTreeMap::new();
    for chunk in chunks {
        if let Position::Kafka(p) = &chunk.position {
            latest.insert((&*chunk.source, &*p.topic, p.partition), p);
        }
    }
    let mut values: Vec<Box<dyn ToSql + '_>> = Vec::with_capacity(latest.len() * 6);
    for ((source, topic, partition), p) in &latest {
        values.push(Box::new(*source));
        values.push(Box::new(*topic));
        values.push(Box::new(*partition));
        values.push(Box::new(p.next_offset));
        values.push(Box::new(batch_id));
        values.push(Box::new(stamp));
    }
    upsert(
        tx,
        "_sluice.offsets",
        "(?, ?, ?, ?, ?, CAST(? AS TIMESTAMPTZ))",
        "(source, topic, \"partition\") DO UPDATE SET next_offset = excluded.next_offset",
        latest.len(),
        values,
    )
    .ctx(|| format!("recording Kafka offsets for {table}"))
}

/// Per source and key, the next position of this batch's last chunk, upserted into
/// `_sluice.positions` (chunks of a key arrive in order: the last wins).
pub fn record_positions(
    tx: &Connection,
    table: &str,
    chunks: &[Chunk],
    batch_id: Option<i64>,
    stamp: &str,
) -> Result<()> {
    let mut latest: BTreeMap<(&str, &str), &KeyedProgress> = BTreeMap::new();
    for chunk in chunks {
        if let Position::Keyed(p) = &chunk.position {
            latest.insert((&*chunk.source, p.key.as_str()), p);
        }
    }
    let mut values: Vec<Box<dyn ToSql + '_>> = Vec::with_capacity(latest.len() * 5);
    for ((source, key), p) in &latest {
        values.push(Box::new(*source));
        values.push(Box::new(*key));
        values.push(Box::new(p.next));
        values.push(Box::new(batch_id));
        values.push(Box::new(stamp));
    }
    upsert(
        tx,
        "_sluice.positions",
        "(?, ?, ?, ?, CAST(? AS TIMESTAMPTZ))",
        "(source, key) DO UPDATE SET next = excluded.next",
        latest.len(),
        values,
    )
    .ctx(|| format!("recording positions for {table}"))
}

/// One `INSERT INTO <into> VALUES <row>, <row>, ... ON CONFLICT <key> DO UPDATE SET ...`
/// for all `rows` (their `values` in order), which also keeps the row's last batch and
/// time; nothing without rows. One statement rather than one per row: 64 single-row
/// upserts (a Kafka batch over 64 partitions) cost 20-40 ms a commit. Cached per row
/// count, which stays the same from one commit to the next.
fn upsert(
    tx: &Connection,
    into: &str,
    row: &str,
    on_conflict: &str,
    rows: usize,
    values: Vec<Box<dyn ToSql + '_>>,
) -> duckdb::Result<()> {
    if rows == 0 {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO {into} VALUES {} ON CONFLICT {on_conflict}, \
         last_batch = coalesce(excluded.last_batch, last_batch), updated_at = excluded.updated_at",
        vec![row; rows].join(", ")
    );
    tx.prepare_cached(&sql)
        .and_then(|mut stmt| stmt.execute(duckdb::params_from_iter(values)))
        .map(|_| ())
}
