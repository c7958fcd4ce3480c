//! The ledger's records of one file source's files, for the source's own lookups.

use duckdb::{params, Connection};
use sluice_core::{FileHash, FileId, FileLedger, FileRecord, FileStatus, LookupError};

use crate::{error::DuckdbContext, Result};

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

    /// The newest record of this source's file read under `name`, quarantine records
    /// aside: they hold no committed bytes. (A file quarantined after some of its rows were
    /// committed keeps them under its own record, left as it was, and this finds it; the
    /// quarantine is recorded beside it.)
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
