//! The `_sluice` schema: sluice's own state, kept in the same database as the data so that
//! one transaction commits both.
//!
//! - `_sluice.meta`: key/value facts about the database (the state schema version).
//! - `_sluice.batches`: the ledger, one row per committed batch.
//! - `_sluice.files`: every file a file source has seen, with how far it has been read,
//!   the hash of the bytes committed so far and its status (`partial`, `ingested`,
//!   `quarantined`).
//! - `_sluice.dead_letters`: records that could not become rows, with their provenance.
//! - `_sluice.offsets`: per Kafka source, topic and partition, the offset of the next
//!   message to read: the source of truth for where consumption resumes.

use std::collections::HashMap;

use duckdb::{params, Connection};
use sluice_core::{FileHash, FileId, FileLedger, FileRecord, FileStatus, LookupError};

use crate::{error::DuckdbContext, Result};

/// Version of the layout below; bumped with a migration when it changes.
/// 2: `_sluice.files` is keyed by `file_id`; `hash` is the hash of the committed bytes.
pub const STATE_VERSION: i64 = 2;

const META_DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS _sluice;
CREATE TABLE IF NOT EXISTS _sluice.meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
"#;

/// The `_sluice.files` table of state version 2.
const FILES_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS _sluice.files (
    source VARCHAR NOT NULL,
    -- Stable from the file's first commit on; `hash` changes as more of it is committed.
    file_id VARCHAR NOT NULL,
    -- BLAKE3 of exactly the bytes before next_offset (for an ingested file, its content;
    -- for a quarantined one, the content quarantined). NULL only for a file left partial
    -- by state version 1, which did not record it.
    hash VARCHAR,
    original_name VARCHAR NOT NULL,
    rows BIGINT NOT NULL,
    dead_letters BIGINT NOT NULL,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    next_offset BIGINT NOT NULL,
    next_line BIGINT NOT NULL,
    last_batch BIGINT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, file_id)
);
"#;

/// State version 1 -> 2: `_sluice.files` gets `file_id` (the old content hash) as its key
/// (DuckDB cannot change a primary key in place). A partial file's committed bytes were
/// never hashed, so its `hash` becomes NULL. The old table's index must go before the
/// table can be renamed; [`DDL`] recreates it.
fn migrate_1_to_2() -> String {
    format!(
        "DROP INDEX IF EXISTS _sluice.files_by_hash;
ALTER TABLE _sluice.files RENAME TO files_v1;
{FILES_DDL}
INSERT INTO _sluice.files
SELECT source, hash, CASE WHEN status = 'partial' THEN NULL ELSE hash END, original_name,
       rows, dead_letters, status, reason, next_offset, next_line, last_batch, updated_at
FROM _sluice.files_v1;
DROP TABLE _sluice.files_v1;
UPDATE _sluice.meta SET value = '2' WHERE key = 'state_version';"
    )
}

/// Everything else, as of the current version (each statement idempotent).
const DDL: &str = r#"
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
-- A running source looks each file it sees up by hash, then by name. DuckDB (2.0)
-- answers that from an index only on a single column: without these, each lookup scans
-- the whole table (34 ms at 3M files, 1 ms with one).
CREATE INDEX IF NOT EXISTS files_by_hash ON _sluice.files (hash);
CREATE INDEX IF NOT EXISTS files_by_name ON _sluice.files (original_name);
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

/// Creates the state schema if it is missing, migrates an older one, and refuses one
/// written by a newer sluice.
pub fn ensure(conn: &Connection) -> Result<()> {
    conn.execute_batch(META_DDL)
        .ctx(|| "creating the _sluice state schema".into())?;
    match state_version(conn)? {
        None => {
            conn.execute(
                "INSERT INTO _sluice.meta VALUES ('state_version', ?)",
                params![STATE_VERSION.to_string()],
            )
            .ctx(|| "recording the state version".into())?;
        }
        Some(1) => migrate(conn, &migrate_1_to_2(), 1)?,
        Some(STATE_VERSION) => {}
        Some(v) => {
            return Err(crate::SinkError::StateVersion {
                detail: format!(
                    "state version {v} was written by a newer sluice (this one knows {STATE_VERSION}); \
                     upgrade sluice or restore a backup"
                ),
            })
        }
    }
    conn.execute_batch(&format!("{FILES_DDL}{DDL}"))
        .ctx(|| "creating the _sluice state schema".into())
}

/// The recorded state version (`None` in a new database).
fn state_version(conn: &Connection) -> Result<Option<i64>> {
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
    version
        .map(|v| {
            v.parse().map_err(|_| crate::SinkError::StateVersion {
                detail: format!("state_version {v:?} is not a number"),
            })
        })
        .transpose()
}

/// Runs one migration step in a transaction of its own (all of it or nothing).
fn migrate(conn: &Connection, sql: &str, from: i64) -> Result<()> {
    let context = || format!("migrating the _sluice state schema from version {from}");
    conn.execute_batch(&format!("BEGIN TRANSACTION;\n{sql}\nCOMMIT;"))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })
        .ctx(context)?;
    tracing::info!(
        from,
        to = STATE_VERSION,
        "migrated the _sluice state schema"
    );
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

    /// The newest record of this source whose committed bytes hash to `hash`.
    pub fn by_content(&self, hash: &FileHash) -> Result<Option<FileRecord>> {
        self.newest("hash", &hash.0, "")
    }

    /// The newest record of this source's file read under `name` (quarantined files were
    /// not read).
    pub fn by_name(&self, name: &str) -> Result<Option<FileRecord>> {
        self.newest("original_name", name, "AND status <> 'quarantined'")
    }

    fn newest(
        &self,
        column: &'static str,
        value: &str,
        and: &'static str,
    ) -> Result<Option<FileRecord>> {
        let context = || format!("reading _sluice.files for source {}", self.source);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT file_id, hash, original_name, status, reason, next_offset, next_line \
                 FROM _sluice.files WHERE {column} = ? AND source = ? {and} \
                 ORDER BY updated_at DESC, last_batch DESC NULLS LAST LIMIT 1"
            ))
            .ctx(context)?;
        let mut rows = stmt
            .query_map(params![value, self.source], |r| {
                let status: String = r.get(3)?;
                let reason: Option<String> = r.get(4)?;
                let status = match status.as_str() {
                    "partial" => FileStatus::Partial,
                    "quarantined" => FileStatus::Quarantined {
                        reason: reason.unwrap_or_default(),
                    },
                    _ => FileStatus::Ingested,
                };
                Ok(FileRecord {
                    id: FileId(r.get(0)?),
                    hash: r.get::<_, Option<String>>(1)?.map(FileHash),
                    original_name: r.get(2)?,
                    status,
                    next_offset: r.get::<_, i64>(5)? as u64,
                    next_line: r.get::<_, i64>(6)? as u64,
                })
            })
            .ctx(context)?;
        rows.next().transpose().ctx(context)
    }
}

impl FileLedger for SourceFiles {
    fn by_content(&mut self, hash: &FileHash) -> Result<Option<FileRecord>, LookupError> {
        Ok(SourceFiles::by_content(self, hash)?)
    }

    fn by_name(&mut self, name: &str) -> Result<Option<FileRecord>, LookupError> {
        Ok(SourceFiles::by_name(self, name)?)
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
