//! What a running file source asks of the ledger: the committed records of files, by the
//! hash of the bytes committed or by name.
//!
//! The ledger (`_sluice.files` in DuckDB) remembers every file a source ever ingested, so
//! that the same content dropped again months later is still recognised, and a file that
//! grew or changed after (part of) it was committed is told apart from a new one. A source
//! looks a file up when it sees one rather than loading the whole ledger at start: its
//! memory stays bounded by the files in its directory, not by every file it has ingested.

use std::{error::Error, fmt::Debug};

use crate::{FileHash, FileRecord, FileStatus};

/// Why a lookup failed (the ledger's own error, boxed: this crate does no I/O).
pub type LookupError = Box<dyn Error + Send + Sync>;

/// The committed records of one source's files.
pub trait FileLedger: Send + Debug {
    /// The newest record whose committed bytes hash to `hash` (for a whole file: the
    /// record of a file with exactly this content).
    fn by_content(&mut self, hash: &FileHash) -> Result<Option<FileRecord>, LookupError>;

    /// The newest record of a file read under `name` (relative to the watched directory);
    /// quarantined files are not records of what was read.
    fn by_name(&mut self, name: &str) -> Result<Option<FileRecord>, LookupError>;
}

/// A ledger held in memory, newest record last (tests give sources one).
impl FileLedger for Vec<FileRecord> {
    fn by_content(&mut self, hash: &FileHash) -> Result<Option<FileRecord>, LookupError> {
        Ok(self
            .iter()
            .rev()
            .find(|r| r.hash.as_ref() == Some(hash))
            .cloned())
    }

    fn by_name(&mut self, name: &str) -> Result<Option<FileRecord>, LookupError> {
        Ok(self
            .iter()
            .rev()
            .find(|r| {
                r.original_name == name && !matches!(r.status, FileStatus::Quarantined { .. })
            })
            .cloned())
    }
}
