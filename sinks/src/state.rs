//! The `_sluice` schema: sluice's own state, kept in the same database as the data so that
//! one transaction commits both.
//!
//! - `_sluice.meta`: key/value facts about the database (the state schema version).
//! - `_sluice.batches`: the ledger, one row per committed batch.
//! - `_sluice.files`: every file a file source has seen, by content hash, with how far it
//!   has been read and its status (`partial`, `ingested`, `quarantined`).
//! - `_sluice.dead_letters`: records that could not become rows, with their provenance.
//! - `_sluice.offsets`: per Kafka source, topic and partition, the offset of the next
//!   message to read: the source of truth for where consumption resumes.

use std::collections::HashMap;

use duckdb::{params, Connection};
use sluice_core::{FileHash, FileLedger, FileRecord, FileStatus, LookupError};

use crate::{error::DuckdbContext, Result};

/// Version of the layout below; bumped with a migration when it changes.
pub const STATE_VERSION: i64 = 1;

const DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS _sluice;
CREATE TABLE IF NOT EXISTS _sluice.meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS _sluice.batches (
    batch_id BIGINT PRIMARY KEY,
    table_name VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    dead_letters BIGINT NOT NULL,
    parquet_file VARCHAR,
    parquet_bytes BIGINT,
    provenance JSON NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS _sluice.files (
    source VARCHAR NOT NULL,
    hash VARCHAR NOT NULL,
    original_name VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    dead_letters BIGINT NOT NULL,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    next_offset BIGINT NOT NULL,
    next_line BIGINT NOT NULL,
    last_batch BIGINT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, hash)
);
-- A running source looks each file it sees up by hash. DuckDB (2.0) answers that from an
-- index only on a single column: without this, each lookup scans the whole table (34 ms
-- at 3M files, 1 ms with it).
CREATE INDEX IF NOT EXISTS files_by_hash ON _sluice.files (hash);
CREATE TABLE IF NOT EXISTS _sluice.dead_letters (
    batch_id BIGINT NOT NULL,
    source VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    error VARCHAR NOT NULL,
    raw VARCHAR,
    file VARCHAR,
    line BIGINT,
    topic VARCHAR,
    "partition" INTEGER,
    "offset" BIGINT,
    key VARCHAR,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS _sluice.offsets (
    source VARCHAR NOT NULL,
    topic VARCHAR NOT NULL,
    "partition" INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    last_batch BIGINT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, topic, "partition")
);
"#;

/// Creates the state schema if it is missing and checks its version.
pub fn ensure(conn: &Connection) -> Result<()> {
    conn.execute_batch(DDL)
        .ctx(|| "creating the _sluice state schema".into())?;
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM _sluice.meta WHERE key = 'state_version'",
            [],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })
        .ctx(|| "reading the state version".into())?;
    match version {
        None => {
            conn.execute(
                "INSERT INTO _sluice.meta VALUES ('state_version', ?)",
                params![STATE_VERSION.to_string()],
            )
            .ctx(|| "recording the state version".into())?;
        }
        Some(v) if v == STATE_VERSION.to_string() => {}
        Some(v) => {
            return Err(crate::SinkError::Schema {
                table: "_sluice.meta".into(),
                detail: format!(
                    "state version {v} was written by a newer sluice (this one knows {STATE_VERSION}); \
                     upgrade sluice or restore a backup"
                ),
            })
        }
    }
    Ok(())
}

/// The ledger's records of one source's files, read through a connection of their own
/// (a running source looks files up on its own thread while the committer writes).
#[derive(Debug)]
pub struct SourceFiles {
    conn: Connection,
    source: String,
}

impl SourceFiles {
    pub fn new(conn: Connection, source: &str) -> SourceFiles {
        SourceFiles {
            conn,
            source: source.to_string(),
        }
    }

    /// The committed record of the file of `source` with this content hash, if any.
    pub fn lookup(&self, hash: &FileHash) -> Result<Option<FileRecord>> {
        let context = || format!("reading _sluice.files for source {}", self.source);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT original_name, status, reason, next_offset, next_line \
                 FROM _sluice.files WHERE source = ? AND hash = ?",
            )
            .ctx(context)?;
        let mut rows = stmt
            .query_map(params![self.source, hash.0], |r| {
                let status: String = r.get(1)?;
                let reason: Option<String> = r.get(2)?;
                let status = match status.as_str() {
                    "partial" => FileStatus::Partial,
                    "quarantined" => FileStatus::Quarantined {
                        reason: reason.unwrap_or_default(),
                    },
                    _ => FileStatus::Ingested,
                };
                Ok(FileRecord {
                    original_name: r.get(0)?,
                    status,
                    next_offset: r.get::<_, i64>(3)? as u64,
                    next_line: r.get::<_, i64>(4)? as u64,
                })
            })
            .ctx(context)?;
        rows.next().transpose().ctx(context)
    }
}

impl FileLedger for SourceFiles {
    fn file(&mut self, hash: &FileHash) -> Result<Option<FileRecord>, LookupError> {
        Ok(self.lookup(hash)?)
    }
}

/// The highest committed batch id (0 before the first commit).
pub fn last_batch_id(conn: &Connection) -> Result<i64> {
    conn.query_row(
        "SELECT coalesce(max(batch_id), 0) FROM _sluice.batches",
        [],
        |r| r.get(0),
    )
    .ctx(|| "reading the last batch id".into())
}

/// Parquet files the ledger records, relative to the Parquet root.
pub fn ledger_parquet_files(conn: &Connection) -> Result<Vec<String>> {
    let context = || "reading Parquet files from the ledger".to_string();
    let mut stmt = conn
        .prepare("SELECT parquet_file FROM _sluice.batches WHERE parquet_file IS NOT NULL")
        .ctx(context)?;
    let rows = stmt.query_map([], |r| r.get(0)).ctx(context)?;
    rows.collect::<duckdb::Result<_>>().ctx(context)
}

/// The stored offsets of a Kafka source: (topic, partition) -> next offset.
pub fn offsets_of(conn: &Connection, source: &str) -> Result<HashMap<(String, i32), i64>> {
    let context = || format!("reading _sluice.offsets for source {source}");
    let mut stmt = conn
        .prepare("SELECT topic, \"partition\", next_offset FROM _sluice.offsets WHERE source = ?")
        .ctx(context)?;
    let rows = stmt
        .query_map(params![source], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .ctx(context)?;
    rows.collect::<duckdb::Result<_>>().ctx(context)
}
