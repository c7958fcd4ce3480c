//! The lake as `/status` and `/readyz` show it: per table its Delta version, files and
//! how many batches it is behind DuckDB; the store's problem while it has one. Also the
//! signal the lake thread waits on: a commit happened ([`CommitSignal`]).

use std::{
    collections::BTreeMap,
    sync::{Condvar, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One table in the lake.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LakeTableStatus {
    /// The Delta table's version (None until the table is open).
    pub version: Option<u64>,
    pub files: Option<usize>,
    /// Batches committed to DuckDB that the lake does not hold yet.
    pub behind_batches: u64,
    /// The last batch of this database the lake holds.
    pub through_batch: i64,
    pub last_commit: Option<DateTime<Utc>>,
}

/// The lake's side of the daemon's health (empty without `[lake]`).
#[derive(Debug, Default)]
pub struct LakeHealth {
    tables: Mutex<BTreeMap<String, LakeTableStatus>>,
    problem: Mutex<Option<String>>,
}

impl LakeHealth {
    pub fn update(&self, table: &str, f: impl FnOnce(&mut LakeTableStatus)) {
        if let Ok(mut tables) = self.tables.lock() {
            f(tables.entry(table.to_string()).or_default());
        }
    }

    /// Why the lake cannot be written now (`None`: it can).
    pub fn set_problem(&self, problem: Option<String>) {
        if let Ok(mut p) = self.problem.lock() {
            *p = problem;
        }
    }

    pub fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }

    pub fn snapshot(&self) -> BTreeMap<String, LakeTableStatus> {
        self.tables.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// Counts commits so that a waiting thread wakes on the next one.
#[derive(Debug, Default)]
pub struct CommitSignal {
    count: Mutex<u64>,
    changed: Condvar,
}

impl CommitSignal {
    /// A batch was committed.
    pub fn notify(&self) {
        if let Ok(mut n) = self.count.lock() {
            *n += 1;
            self.changed.notify_all();
        }
    }

    /// Commits so far.
    pub fn count(&self) -> u64 {
        self.count.lock().map(|n| *n).unwrap_or(0)
    }

    /// Waits until more than `seen` commits happened, or `timeout`; the count then.
    pub fn wait_after(&self, seen: u64, timeout: Duration) -> u64 {
        let Ok(guard) = self.count.lock() else {
            return seen;
        };
        match self
            .changed
            .wait_timeout_while(guard, timeout, |n| *n <= seen)
        {
            Ok((n, _)) => *n,
            Err(_) => seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_waiter_wakes_on_the_next_commit_not_before() {
        let signal = Arc::new(CommitSignal::default());
        assert_eq!(signal.wait_after(0, Duration::from_millis(10)), 0);
        let waiter = {
            let signal = signal.clone();
            std::thread::spawn(move || signal.wait_after(0, Duration::from_secs(60)))
        };
        signal.notify();
        assert_eq!(waiter.join().expect("joins"), 1);
    }
}
