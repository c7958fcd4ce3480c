//! What a running file source asks of the ledger: the committed record of a file, by the
//! hash of its content.
//!
//! The ledger (`_sluice.files` in DuckDB) remembers every file a source ever ingested, so
//! that the same content dropped again months later is still recognised. A source looks a
//! file up when it sees one rather than loading the whole ledger at start: its memory stays
//! bounded by the files in its directory, not by every file it has ingested.

use std::{collections::HashMap, error::Error, fmt::Debug};

use crate::{FileHash, FileRecord};

/// Why a lookup failed (the ledger's own error, boxed: this crate does no I/O).
pub type LookupError = Box<dyn Error + Send + Sync>;

/// The committed records of one source's files.
pub trait FileLedger: Send + Debug {
    /// The committed record of the file with this content, if any.
    fn file(&mut self, hash: &FileHash) -> Result<Option<FileRecord>, LookupError>;
}

/// A ledger held in memory (tests give sources one).
impl FileLedger for HashMap<FileHash, FileRecord> {
    fn file(&mut self, hash: &FileHash) -> Result<Option<FileRecord>, LookupError> {
        Ok(self.get(hash).cloned())
    }
}
