//! Start-up consistency between the Parquet directory and the ledger.
//!
//! A crash after a Parquet file is renamed into place but before its DuckDB transaction
//! commits leaves a file the ledger does not know: its rows are not committed and will be
//! written again, so the file is removed. A ledger entry whose file is gone (deleted by
//! hand, a restored backup) cannot be repaired by sluice and is reported.

use std::collections::HashSet;

use crate::{Result, Warehouse};

/// What reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Files removed because no committed batch names them (relative to the Parquet root).
    pub removed: Vec<String>,
    /// Files the ledger names that do not exist.
    pub missing: Vec<String>,
}

impl Warehouse {
    /// Removes unledgered Parquet files and lists ledgered ones that are missing.
    /// Must run before the first commit of a process.
    pub fn reconcile(&self) -> Result<ReconcileReport> {
        let Some(sink) = self.parquet() else {
            return Ok(ReconcileReport::default());
        };
        let ledger: HashSet<String> =
            sluice_state::ledger::ledger_parquet_files(self.connection())?
                .into_iter()
                .collect();
        let mut report = ReconcileReport::default();
        for file in sink.list()? {
            if !ledger.contains(&file) {
                sink.remove(&file)?;
                report.removed.push(file);
            }
        }
        let mut missing: Vec<String> = ledger.into_iter().filter(|f| !sink.exists(f)).collect();
        missing.sort();
        report.missing = missing;
        Ok(report)
    }
}
