//! Fault points: the places in the commit path where a test can have the process killed
//! (SIGKILL, as a crash or `kill -9` would), to prove that a restart from exactly there
//! leaves every input row exactly once.
//!
//! They are compiled in only with this crate's `fault-points` feature, which the
//! integration tests turn on (the daemon's dev-dependencies); a build without it has an
//! empty [`point`] and ignores `SLUICE_FAULT`. With it, `SLUICE_FAULT=<point>` kills the
//! process the first time it reaches that point, `SLUICE_FAULT=<point>@<n>` the n-th time,
//! after writing `fault point <point> reached` to stderr.

/// Every fault point, in the order a commit passes them.
pub const POINTS: &[&str] = &[
    // The batch's Parquet file is written and fsynced under its temporary name.
    "parquet.before_rename",
    // ... renamed into place (and the directory fsynced); nothing in DuckDB yet.
    "parquet.after_rename",
    // A batch that changes its raw table's columns: its transaction is open, the next
    // ALTER TABLE not yet run (`@2` for the second change of the batch).
    "schema.before_alter",
    // ... that ALTER TABLE run in the transaction, not yet recorded nor committed.
    "schema.after_alter",
    // Rows, ledger and positions are in the DuckDB transaction, not yet committed.
    "commit.before",
    // Committed; the source has not been told.
    "commit.after",
    // A batch's commit failed for a reason tied to its rows (DuckDB refused a value); its
    // files are about to be committed one at a time. Nothing of the batch is committed.
    "isolate.before",
    // ... each file's chunks committed on their own, but for the file(s) whose own commit
    // failed; their sources are about to be told to quarantine them.
    "isolate.refused",
    // A file's last rows are committed; it is about to be archived or deleted.
    "file.before_dispose",
    // ... archived or deleted.
    "file.after_dispose",
    // A file's quarantine is committed; it is about to be moved to quarantine.
    "file.before_quarantine",
    // Kafka offsets are committed in DuckDB; about to be committed to the broker.
    "kafka.before_broker_commit",
    // ... committed to the broker.
    "kafka.after_broker_commit",
    // A model's rows and watermark are in its transaction, not yet committed.
    "model.before_commit",
    // The lake's data files of some batches are written; the Delta commit is not made.
    "lake.before_commit",
    // ... the Delta commit is made.
    "lake.after_commit",
];

/// Kills the process here if `SLUICE_FAULT` names this point (see the module doc).
#[cfg(feature = "fault-points")]
pub fn point(name: &'static str) {
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    };
    static WANTED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let wanted = WANTED.get_or_init(|| {
        let spec = std::env::var("SLUICE_FAULT").ok()?;
        Some(match spec.split_once('@') {
            Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        })
    });
    let Some((point, nth)) = wanted else {
        return;
    };
    if point != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != *nth {
        return;
    }
    eprintln!("fault point {name} reached: killing the process");
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
}

/// Without the `fault-points` feature: nothing.
#[cfg(not(feature = "fault-points"))]
#[inline(always)]
pub fn point(_name: &'static str) {}
