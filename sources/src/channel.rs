//! The wiring between a source thread and the committer.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    mpsc::{Receiver, SyncSender},
    Arc, Mutex,
};

use sluice_core::{Chunk, Position};
use tokio_util::sync::CancellationToken;

/// What a source sends to the committer.
#[derive(Debug)]
pub enum SourceEvent {
    /// Rows (and dead letters, and a position) to commit.
    Chunk(Chunk),
    /// The source has nothing more to read for now (used by `--once`): commit what it
    /// sent without waiting for the batch's age limit.
    Drained { source: Arc<str> },
    /// Kafka partitions this source no longer owns: chunks of them not yet committed
    /// must be dropped (the partitions' new owner reads them again).
    Revoked {
        source: Arc<str>,
        partitions: Vec<(Arc<str>, i32)>,
    },
}

/// Everything a source needs to run.
#[derive(Debug)]
pub struct SourceContext {
    pub events: SyncSender<SourceEvent>,
    /// Positions of this source that are now committed, in commit order. For a file
    /// source, a position may instead say that the file's chunks are refused
    /// (`FileStatus::Refused`: DuckDB refused a value of its rows); nothing of it from that
    /// chunk on is committed, and the source is to quarantine the file.
    pub acks: Receiver<Position>,
    /// Cancelled on shutdown: stop reading, wait for acknowledgements, return.
    pub stop: CancellationToken,
    /// Read what is there now, wait until it is committed, then return.
    pub once: bool,
    /// What the source reports about itself (for readiness and status).
    pub status: Arc<SourceStatus>,
}

/// A running source's own report: whether something keeps it from working, and how much
/// input it sees waiting. Read by the daemon's `/readyz` and `/status`.
#[derive(Debug, Default)]
pub struct SourceStatus {
    problem: Mutex<Option<String>>,
    pending: AtomicU64,
    /// Committed positions by name (`topic/partition` -> next offset, for Kafka).
    positions: Mutex<std::collections::BTreeMap<String, i64>>,
    /// What the schema contract kept out, by reason.
    refused: Mutex<std::collections::BTreeMap<&'static str, Refused>>,
}

/// Values a schema contract kept out for one reason (see `typing::contract`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refused {
    pub values: u64,
    /// The column (or field) of the latest.
    pub last_column: String,
}

impl SourceStatus {
    /// Sets (or with `None`, clears) the problem keeping the source from working.
    pub fn set_problem(&self, problem: Option<String>) {
        if let Ok(mut p) = self.problem.lock() {
            *p = problem;
        }
    }

    /// The current problem, if any.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    /// Input waiting to be read or committed (files for a directory source, messages of
    /// lag for Kafka).
    pub fn set_pending(&self, n: u64) {
        self.pending.store(n, Ordering::Relaxed);
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Records a committed position (`name` is e.g. `orders/3`).
    pub fn set_position(&self, name: String, next: i64) {
        if let Ok(mut p) = self.positions.lock() {
            p.insert(name, next);
        }
    }

    pub fn positions(&self) -> std::collections::BTreeMap<String, i64> {
        self.positions.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Counts `n` values of `column` the schema contract kept out for `reason`.
    pub fn record_refused(&self, reason: &'static str, column: &str, n: u64) {
        if let Ok(mut r) = self.refused.lock() {
            let entry = r.entry(reason).or_default();
            entry.values += n;
            entry.last_column = sluice_core::text::bounded(column, 200).into_owned();
        }
    }

    /// What the schema contract kept out, by reason.
    pub fn refused(&self) -> std::collections::BTreeMap<&'static str, Refused> {
        self.refused.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
