//! What the daemon knows about itself, shared by the pipeline (which updates it) and the
//! HTTP endpoints and systemd notifications (which report it).
//!
//! - liveness: the batch loop beats on every turn; a loop stuck for [`STUCK_AFTER`] fails
//!   `/healthz` (and stops the systemd watchdog pings, so systemd restarts sluice);
//! - readiness: recovery done, DuckDB open, every source started and reporting no problem;
//! - status: per source rows, dead letters, last commit, files pending; recent batches;
//!   per model the latest run ([`models`]); per lake table its Delta version ([`lake`]).

pub mod lake;
pub mod models;

pub use lake::{CommitSignal, LakeHealth};
pub use models::ModelHealth;

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_sinks::CommitReceipt;
use sluice_sources::{SourceKind, SourceStatus};

use crate::notify::Notifier;

/// A batch loop that has not turned for this long is stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);
/// Batches kept for `/status`.
const RECENT_BATCHES: usize = 20;

/// One source as `/status` shows it.
#[derive(Debug)]
pub struct SourceHealth {
    pub kind: SourceKind,
    pub table: String,
    pub status: Arc<SourceStatus>,
    stats: Mutex<SourceStats>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct SourceStats {
    pub rows: u64,
    pub dead_letters: u64,
    pub batches: u64,
    pub last_commit: Option<DateTime<Utc>>,
}

/// A committed batch as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchSummary {
    pub batch_id: i64,
    pub table: String,
    pub rows: u64,
    pub dead_letters: u64,
    pub parquet_file: Option<String>,
    pub committed_at: DateTime<Utc>,
    pub duration_ms: u64,
}

/// A raw table's latest schema change, as `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastSchemaChange {
    pub column: String,
    pub change: &'static str,
    pub old_type: Option<String>,
    pub new_type: String,
    pub batch_id: Option<i64>,
    pub changed_at: DateTime<Utc>,
}

/// The daemon's view of itself.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    started_at: DateTime<Utc>,
    heartbeat_ms: AtomicU64,
    ready: AtomicBool,
    stopping: AtomicBool,
    /// What start-up is waiting for, if anything (e.g. a database file locked elsewhere).
    waiting_for: Mutex<Option<String>>,
    /// Why commits cannot succeed for now (a full disk), if they cannot.
    commits_blocked: Mutex<Option<String>>,
    sources: BTreeMap<String, SourceHealth>,
    recent: Mutex<VecDeque<BatchSummary>>,
    /// Per raw table, its latest schema change.
    schema_changes: Mutex<BTreeMap<String, LastSchemaChange>>,
    pub models: models::ModelsHealth,
    pub lake: LakeHealth,
    /// Wakes whoever follows commits (the lake thread).
    pub commits: CommitSignal,
    notifier: Notifier,
}

impl Health {
    pub fn new(notifier: Notifier) -> Self {
        Health {
            started: Instant::now(),
            started_at: Utc::now(),
            heartbeat_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            waiting_for: Mutex::new(None),
            commits_blocked: Mutex::new(None),
            sources: BTreeMap::new(),
            recent: Mutex::new(VecDeque::new()),
            schema_changes: Mutex::new(BTreeMap::new()),
            models: models::ModelsHealth::default(),
            lake: LakeHealth::default(),
            commits: CommitSignal::default(),
            notifier,
        }
    }

    /// Registers a source before the daemon starts; returns its status handle.
    pub fn add_source(&mut self, name: &str, kind: SourceKind, table: &str) -> Arc<SourceStatus> {
        let status = Arc::new(SourceStatus::default());
        self.sources.insert(
            name.to_string(),
            SourceHealth {
                kind,
                table: table.to_string(),
                status: status.clone(),
                stats: Mutex::default(),
            },
        );
        status
    }

    /// Start-up is waiting for something (`None`: no longer).
    pub fn set_waiting_for(&self, what: Option<String>) {
        if let Ok(mut w) = self.waiting_for.lock() {
            *w = what;
        }
    }

    /// Commits fail for a reason that may pass, such as a full disk (`None`: they succeed).
    pub fn set_commits_blocked(&self, why: Option<String>) {
        if let Ok(mut b) = self.commits_blocked.lock() {
            *b = why;
        }
    }

    /// Start-up is done: recovery ran, DuckDB is open, sources are running.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.notifier.ready();
    }

    /// Shutdown has begun.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.notifier.stopping();
    }

    /// The batch loop turned: alive (and, under systemd, a watchdog ping when due).
    pub fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
        self.notifier.watchdog();
    }

    /// How long since the batch loop last turned.
    pub fn since_beat(&self) -> Duration {
        let beat = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(beat)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// Why the daemon is not ready (empty when it is).
    pub fn unready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.stopping.load(Ordering::SeqCst) {
            reasons.push("stopping".to_string());
        } else if !self.ready.load(Ordering::SeqCst) {
            match self.waiting_for.lock().ok().and_then(|w| w.clone()) {
                Some(what) => reasons.push(format!("starting: {what}")),
                None => reasons.push("starting: recovery and sources not done yet".to_string()),
            }
        }
        if let Some(why) = self.commits_blocked.lock().ok().and_then(|b| b.clone()) {
            reasons.push(format!("commits blocked: {why}"));
        }
        for (name, s) in &self.sources {
            if let Some(problem) = s.status.problem() {
                reasons.push(format!("source {name}: {problem}"));
            }
        }
        if let Some(problem) = self.lake.problem() {
            reasons.push(format!("lake: {problem}"));
        }
        reasons
    }

    /// Records a commit.
    pub fn committed(
        &self,
        receipt: &CommitReceipt,
        by_source: &[(String, u64, u64)],
        took: Duration,
    ) {
        for (source, rows, dead) in by_source {
            if let Some(s) = self.sources.get(source) {
                if let Ok(mut st) = s.stats.lock() {
                    st.rows += rows;
                    st.dead_letters += dead;
                    st.batches += u64::from(receipt.batch_id.is_some());
                    st.last_commit = Some(receipt.committed_at);
                }
            }
        }
        if let (Some(change), Ok(mut last)) =
            (receipt.schema_changes.last(), self.schema_changes.lock())
        {
            last.insert(
                receipt.table.to_string(),
                LastSchemaChange {
                    column: sluice_core::text::bounded(&change.column, 200).into_owned(),
                    change: change.kind(),
                    old_type: change.old.as_ref().map(|t| t.to_string()),
                    new_type: change.new.to_string(),
                    batch_id: receipt.batch_id,
                    changed_at: receipt.committed_at,
                },
            );
        }
        let Some(batch_id) = receipt.batch_id else {
            return;
        };
        self.commits.notify();
        let summary = BatchSummary {
            batch_id,
            table: receipt.table.to_string(),
            rows: receipt.rows,
            dead_letters: receipt.dead_letters,
            parquet_file: receipt.parquet.as_ref().map(|p| p.relative.clone()),
            committed_at: receipt.committed_at,
            duration_ms: took.as_millis() as u64,
        };
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT_BATCHES {
                recent.pop_front();
            }
            recent.push_back(summary);
        }
        let total: u64 = self.sources_stats().iter().map(|(_, _, st)| st.rows).sum();
        self.notifier.status(&format!(
            "{total} rows committed; last batch {batch_id} into {}",
            receipt.table
        ));
    }

    /// Every source with its stats, by name.
    pub fn sources_stats(&self) -> Vec<(&str, &SourceHealth, SourceStats)> {
        self.sources
            .iter()
            .map(|(name, s)| {
                (
                    name.as_str(),
                    s,
                    s.stats.lock().map(|st| st.clone()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The most recent batches, newest last.
    /// Per raw table, its latest schema change since start-up.
    pub fn schema_changes(&self) -> BTreeMap<String, LastSchemaChange> {
        self.schema_changes
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    pub fn recent_batches(&self) -> Vec<BatchSummary> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_start_up_sources_and_shutdown() {
        let mut h = Health::new(Notifier::disabled());
        let status = h.add_source(
            "s",
            SourceKind::new("csv", sluice_sources::Backlog::Files),
            "t",
        );
        assert!(
            !h.unready_reasons().is_empty(),
            "ready before start-up finished"
        );
        h.set_ready();
        assert!(h.unready_reasons().is_empty());
        status.set_problem(Some("cannot list /in".into()));
        assert_eq!(h.unready_reasons(), ["source s: cannot list /in"]);
        status.set_problem(None);
        h.set_stopping();
        assert_eq!(h.unready_reasons(), ["stopping"]);
    }
}
