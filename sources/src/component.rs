//! The seam between the daemon and the source types. Each type's configuration implements
//! [`SourceType`]: its kind, raw table, pure validation, declared columns, the paths it
//! resolves, what `sluice check` verifies, and how a running source is built from what
//! the daemon hands over ([`BuildContext`]: the warehouse's state for it, batch limits).
//! [`SourceConfig`] is the registry: one line per type in [`registry!`] (serde reads
//! `type = "..."`), and the only dispatch on kinds. Adding a source type means a module
//! with its config, an `impl SourceType` and a [`RunningSource`], and one line in the
//! registry; the daemon does not change (see the README's *Development* section, and
//! the test-only `sequence` type, which is built that way).

use std::{collections::HashMap, path::Path, sync::Arc};

use serde::Deserialize;
use sluice_core::{FileLedger, Ident, IdentError, SharedLedger, SharedStreams, TableSchema};

use crate::{typing::contract::SchemaContract, SourceContext, SourceError, SourceStatus};

/// What a source type is called in the configuration (`type = "..."`) and what its
/// backlog counts. Each type declares its own as a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceKind {
    name: &'static str,
    backlog: Backlog,
}

/// What a source's pending count ([`SourceStatus::pending`]) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// Files waiting in a directory.
    Files,
    /// Messages of lag behind the broker.
    Messages,
    /// Nothing the source can count.
    Unknown,
}

impl SourceKind {
    pub const fn new(name: &'static str, backlog: Backlog) -> Self {
        SourceKind { name, backlog }
    }

    /// `type` as written in the configuration.
    pub fn as_str(self) -> &'static str {
        self.name
    }

    pub fn backlog(self) -> Backlog {
        self.backlog
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reading what a source resumes from.
pub type ResumeError = Box<dyn std::error::Error + Send + Sync>;

/// What sources resume from, kept with the data (the warehouse implements it).
pub trait ResumeState {
    /// The ledger of a file source's files.
    fn files(&self, source: &str) -> Result<Box<dyn FileLedger>, ResumeError>;
    /// A Kafka source's next offsets by (topic, partition).
    fn offsets(&self, source: &str) -> Result<HashMap<(String, i32), i64>, ResumeError>;
    /// Another source type's positions by the keys it chose (see
    /// `sluice_core::KeyedProgress`).
    fn positions(&self, source: &str) -> Result<HashMap<String, i64>, ResumeError>;
}

/// What the daemon hands a source type to build a running source.
pub struct BuildContext<'a> {
    pub name: &'a str,
    pub table: Ident,
    /// The table's data columns: declared, or those of the existing raw table.
    pub data_schema: Option<TableSchema>,
    pub data_dir: &'a Path,
    pub chunk_rows: usize,
    pub chunk_bytes: usize,
    pub status: Arc<SourceStatus>,
    pub resume: &'a dyn ResumeState,
    /// The lake, when the table is published to one that other instances write too: a
    /// source with [`SourceType::shared_streams`] starts each stream no lower than the
    /// lake holds it, and tells others (a broker) only what the lake holds.
    pub shared_ledger: Option<Arc<dyn SharedLedger>>,
}

impl std::fmt::Debug for BuildContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildContext")
            .field("name", &self.name)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// A source ready to run on its own thread.
pub trait RunningSource: Send {
    fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError>;
}

/// A source type's configuration, as the daemon uses it.
pub trait SourceType {
    fn kind(&self) -> SourceKind;
    /// The raw table the source feeds.
    fn table_ident(&self, name: &str) -> Result<Ident, IdentError>;
    /// Every problem, as `(key relative to the source, message)`; no I/O.
    fn validate(&self, name: &str) -> Vec<(String, String)>;
    /// Declared data columns, if any (and valid).
    fn declared_schema(&self) -> Option<TableSchema>;
    /// What new columns and values of other types do.
    fn schema_contract(&self) -> SchemaContract {
        SchemaContract::default()
    }
    /// Whether columns are declared at all (sources sharing a table must not).
    fn declares_schema(&self) -> bool;
    /// Makes relative paths relative to `base` (the configuration file's directory).
    fn resolve_paths(&mut self, base: &Path);
    /// What `sluice check` verifies beyond the configuration's shape (a directory exists);
    /// problems as `(key relative to the source, message)`.
    fn check(&self) -> Vec<(String, String)>;
    /// The streams this source reads together with other sluice instances, if any (a
    /// Kafka consumer group's partitions); a lake records how far it holds each.
    fn shared_streams(&self) -> Option<SharedStreams> {
        None
    }
    fn build(&self, ctx: BuildContext<'_>) -> Result<Box<dyn RunningSource>, SourceError>;
}

/// Declares the registry: the [`SourceConfig`] enum (serde reads `type = "..."`, the
/// variant's name in lower case) and its dispatch to each type's [`SourceType`].
macro_rules! registry {
    ($($(#[doc = $doc:literal])* $(#[cfg $cfg:tt])? $variant:ident($config:ty),)*) => {
        /// `[sources.<name>]`, by `type`: the registry of source types.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        pub enum SourceConfig {
            $($(#[doc = $doc])* $(#[cfg $cfg])? $variant($config),)*
        }

        impl SourceConfig {
            pub fn component(&self) -> &dyn SourceType {
                match self {
                    $($(#[cfg $cfg])? SourceConfig::$variant(c) => c,)*
                }
            }

            pub fn component_mut(&mut self) -> &mut dyn SourceType {
                match self {
                    $($(#[cfg $cfg])? SourceConfig::$variant(c) => c,)*
                }
            }
        }
    };
}

// The registry: one line per source type.
registry! {
    /// A watched directory of CSV files.
    Csv(crate::csv_dir::CsvSourceConfig),
    /// Kafka topics, consumed as a member of a consumer group.
    Kafka(crate::kafka::KafkaSourceConfig),
    /// Test builds only: numbered rows, resumed by a keyed position (see `sequence`).
    #[cfg(feature = "test-sources")]
    Sequence(crate::sequence::SequenceConfig),
}

/// A source type's failure to read what it resumes from.
pub fn resume_failed(name: &str, e: ResumeError) -> SourceError {
    SourceError::Resume {
        source_name: name.to_string(),
        detail: e.to_string(),
    }
}
