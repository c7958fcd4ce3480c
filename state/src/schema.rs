//! The layout of the `_sluice` schema, its version and its migrations.
//!
//! - `_sluice.meta`: key/value facts about the database (the state schema version).
//! - `_sluice.batches`: the ledger, one row per committed batch.
//! - `_sluice.files`: every file a file source has seen, with how far it has been read,
//!   the hash of the bytes committed so far and its status (`partial`, `ingested`,
//!   `quarantined`).
//! - `_sluice.dead_letters`: records that could not become rows, with their provenance.
//! - `_sluice.offsets`: per Kafka source, topic and partition, the offset of the next
//!   message to read: the source of truth for where consumption resumes.
//! - `_sluice.positions`: per source of another type and a key it chooses, where reading
//!   resumes (see `sluice_core::KeyedProgress`).
//! - `_sluice.models`: per model, its SQL's hash, its watermark and its last build.
//! - `_sluice.test_results`: the latest result of every data test.
//! - `_sluice.schema_changes`: every column a raw table gained and every type it widened
//!   to, with the batch (and its positions) that brought it.

use std::path::Path;

use duckdb::{params, Config, Connection};

use crate::{
    error::{is_lock_conflict, DuckdbContext},
    Result, StateError,
};

/// Opens (creating if needed) the database at `path` and its state schema, migrating an
/// older one. Another process holding the file is [`StateError::Locked`].
pub fn open(path: &Path, config: Config) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, config).map_err(|source| {
        if is_lock_conflict(&source) {
            StateError::Locked {
                path: path.to_path_buf(),
                source,
            }
        } else {
            StateError::Duckdb {
                context: format!("opening {}", path.display()),
                source,
            }
        }
    })?;
    ensure(&conn)?;
    Ok(conn)
}

/// Version of the layout below; bumped with a migration when it changes.
/// 2: `_sluice.files` is keyed by `file_id`; `hash` is the hash of the committed bytes.
/// (`_sluice.models` and `_sluice.test_results` were created by the models crate under
/// the same version until this crate owned them; their layout did not change, so neither
/// did the version: a database written since reads with the sluice before.)
/// 3: `_sluice.positions` (positions of source types other than files and Kafka), and
///    `_sluice.dead_letters.stream` / `stream_position` for their dead letters.
/// 4: `_sluice.schema_changes`; raw tables may have gained columns and wider types that
///    a sluice of version 3 would refuse.
pub const STATE_VERSION: i64 = 4;

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

/// The `_sluice.positions` table of state version 3.
const POSITIONS_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS _sluice.positions (
    source VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    next BIGINT NOT NULL,
    last_batch BIGINT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, key)
);
"#;

/// State version 2 -> 3: adds `_sluice.positions` and two columns of dead letters (at
/// the end, where a new database has them too); nothing else changes.
fn migrate_2_to_3() -> String {
    format!(
        "{POSITIONS_DDL}\
         ALTER TABLE IF EXISTS _sluice.dead_letters ADD COLUMN IF NOT EXISTS stream VARCHAR;
         ALTER TABLE IF EXISTS _sluice.dead_letters ADD COLUMN IF NOT EXISTS stream_position BIGINT;
         UPDATE _sluice.meta SET value = '3' WHERE key = 'state_version';"
    )
}

/// State version 3 -> 4: `_sluice.schema_changes` (created with the rest by [`ensure`]).
const MIGRATE_3_TO_4: &str = "UPDATE _sluice.meta SET value = '4' WHERE key = 'state_version';";

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
    created_at TIMESTAMPTZ NOT NULL,
    stream VARCHAR,
    stream_position BIGINT
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
CREATE TABLE IF NOT EXISTS _sluice.schema_changes (
    table_name VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL,
    change VARCHAR NOT NULL,
    old_type VARCHAR,
    new_type VARCHAR NOT NULL,
    batch_id BIGINT NOT NULL,
    source VARCHAR,
    position JSON,
    changed_at TIMESTAMPTZ NOT NULL
);
"#;

/// The models' state: per model, the hash of the SQL it was built from and its watermark
/// (the last `_sluice_batch` it consumed), written in the build's transaction; and the
/// latest result of every data test.
const MODELS_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS _sluice.models (
    name VARCHAR PRIMARY KEY,
    materialized VARCHAR NOT NULL,
    sql_hash VARCHAR NOT NULL,
    watermark BIGINT NOT NULL,
    rows_written BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    last_run_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS _sluice.test_results (
    model VARCHAR NOT NULL,
    test VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    failures BIGINT NOT NULL,
    batch_id BIGINT NOT NULL,
    run_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (model, test)
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
        Some(1) => {
            migrate(conn, &migrate_1_to_2(), 1)?;
            migrate(conn, &migrate_2_to_3(), 2)?;
            migrate(conn, MIGRATE_3_TO_4, 3)?;
        }
        Some(2) => {
            migrate(conn, &migrate_2_to_3(), 2)?;
            migrate(conn, MIGRATE_3_TO_4, 3)?;
        }
        Some(3) => migrate(conn, MIGRATE_3_TO_4, 3)?,
        Some(STATE_VERSION) => {}
        Some(v) => {
            return Err(StateError::StateVersion {
                detail: format!(
                    "state version {v} was written by a newer sluice (this one knows {STATE_VERSION}); \
                     upgrade sluice or restore a backup"
                ),
            })
        }
    }
    conn.execute_batch(&format!("{FILES_DDL}{DDL}{POSITIONS_DDL}{MODELS_DDL}"))
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
            v.parse().map_err(|_| StateError::StateVersion {
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
    tracing::info!(from, to = from + 1, "migrated the _sluice state schema");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// The README's table of `_sluice` tables: table -> the columns it names (backticked
    /// words outside parentheses, which hold explanations).
    fn documented() -> BTreeMap<String, BTreeSet<String>> {
        let readme = include_str!("../../README.md");
        let mut out = BTreeMap::new();
        for line in readme.lines().filter(|l| l.starts_with("| `_sluice.")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let table = cells[0]
                .trim_start_matches("| `_sluice.")
                .trim_end_matches('`');
            let mut columns = cells[2].trim_end_matches(" |").to_string();
            while let (Some(open), Some(close)) = (columns.find('('), columns.find(')')) {
                if close < open {
                    break;
                }
                columns.replace_range(open..=close, "");
            }
            let names = columns
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect();
            out.insert(table.to_string(), names);
        }
        out
    }

    #[test]
    fn a_version_2_database_gains_positions_and_keyed_dead_letter_columns() {
        let conn = Connection::open_in_memory().expect("duckdb");
        conn.execute_batch(
            "CREATE SCHEMA _sluice;
             CREATE TABLE _sluice.meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
             INSERT INTO _sluice.meta VALUES ('state_version', '2');
             CREATE TABLE _sluice.dead_letters (
                 batch_id BIGINT NOT NULL, source VARCHAR NOT NULL, table_name VARCHAR NOT NULL,
                 error VARCHAR NOT NULL, raw VARCHAR, file VARCHAR, line BIGINT, topic VARCHAR,
                 \"partition\" INTEGER, \"offset\" BIGINT, key VARCHAR,
                 created_at TIMESTAMPTZ NOT NULL);
             INSERT INTO _sluice.dead_letters (batch_id, source, table_name, error, created_at)
                 VALUES (7, 's', 't', 'bad', now());",
        )
        .expect("a version 2 database");
        ensure(&conn).expect("migrated");
        let one = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
        assert_eq!(
            one("SELECT value FROM _sluice.meta WHERE key = 'state_version'"),
            STATE_VERSION.to_string()
        );
        assert_eq!(
            one(
                "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) \
                 FROM information_schema.columns \
                 WHERE table_schema = '_sluice' AND table_name = 'dead_letters' \
                   AND ordinal_position > 11"
            ),
            "created_at,stream,stream_position"
        );
        assert_eq!(
            one("SELECT error || count(*) FROM _sluice.dead_letters GROUP BY error"),
            "bad1"
        );
        assert_eq!(one("SELECT count(*)::VARCHAR FROM _sluice.positions"), "0");
    }

    #[test]
    fn the_readme_lists_every_state_table_with_its_columns() {
        let conn = Connection::open_in_memory().expect("duckdb");
        ensure(&conn).expect("state schema");
        let mut stmt = conn
            .prepare(
                "SELECT table_name, column_name FROM information_schema.columns \
                 WHERE table_schema = '_sluice' ORDER BY table_name, ordinal_position",
            )
            .expect("prepare");
        let mut created: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .expect("query")
        {
            let (table, column) = row.expect("row");
            created.entry(table).or_default().insert(column);
        }
        assert_eq!(documented(), created);
    }
}
