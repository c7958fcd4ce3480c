//! Watched directories of CSV files.
//!
//! A file is read once it is complete (renamed into the directory, closed after writing,
//! or unchanged for `settle`), identified by its content and its name against the ledger
//! (new, a duplicate, grown, or changed: `source/identify.rs`), parsed in bounded chunks
//! into Arrow rows of the table's schema while the bytes parsed are hashed, and disposed of
//! (`after_ingest`) only after its last chunk is committed. Its progress and the hash of
//! the bytes read so far are committed with each chunk, so a crash resumes it where the
//! last commit ended, if the file still begins with those bytes.
//!
//! Layout:
//! - [`config`]: the `[sources.<name>]` keys of `type = "csv"` and their validation;
//!   `component.rs` makes it a source type (the registry's `Csv`).
//! - [`scan`]: listing candidate files, confined to the watched root (symlinks included).
//! - [`settle`]: deciding when a file is complete.
//! - [`sniff`]: telling text CSV from binary or undecodable content.
//! - [`reader`]: streaming records of one file into chunks, hashing what was parsed.
//! - [`dispose`]: archive, delete or keep; quarantine.
//! - [`source`]: the source's thread: events, rescans, deciding what to do with a file;
//!   `source/read.rs` reads one file into chunks, `source/acks.rs` acts on acknowledgements
//!   (and on the committer's refusal of a file's chunks: the file is quarantined).

mod component;
pub mod config;
pub mod dispose;
pub mod reader;
pub mod scan;
pub mod settle;
pub mod sniff;
pub mod source;

pub use config::{AfterIngest, CsvSourceConfig, WatchMode};

/// The provenance columns a CSV source fills for every row.
pub mod provenance {
    use sluice_core::{meta, Column, ColumnType};

    /// The file's original name.
    pub const FILE: &str = "_sluice_file";
    /// 1-based physical line where the record starts (the header is line 1).
    pub const LINE: &str = "_sluice_line";

    pub fn columns() -> [Column; 3] {
        [
            Column::new(meta::SOURCE, ColumnType::Varchar),
            Column::new(FILE, ColumnType::Varchar),
            Column::new(LINE, ColumnType::BigInt),
        ]
    }
}
pub use source::{CsvDirSetup, CsvDirSource};
