//! How far one Delta table holds each shared stream (a Kafka partition of a consumer
//! group), for the source reading those streams ([`SharedLedger`]): what this instance's
//! publisher wrote or read ([`LakeLedger::learn`]), and a fresh read of the log when a
//! source is assigned partitions.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use deltalake::{DeltaTable, DeltaTableError};
use sluice_core::{SharedLedger, SharedLedgerError};
use tokio::runtime::Runtime;

use crate::table::Store;

/// One table's shared-stream versions.
pub struct LakeLedger {
    table: String,
    store: Store,
    known: Mutex<HashMap<String, i64>>,
    /// The reader's runtime and table, opened at the first read.
    reader: Mutex<Option<(Runtime, DeltaTable)>>,
}

impl std::fmt::Debug for LakeLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeLedger")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LakeLedger {
    pub fn new(table: &str, store: Store) -> Self {
        LakeLedger {
            table: table.to_string(),
            store,
            known: Mutex::default(),
            reader: Mutex::default(),
        }
    }

    /// The lake holds `stream` up to `version` (versions only grow).
    pub fn learn(&self, stream: &str, version: i64) {
        let mut known = lock(&self.known);
        let v = known.entry(stream.to_string()).or_insert(version);
        *v = (*v).max(version);
    }

    /// The versions the log has now; empty while the table does not exist. Bounded by
    /// [`READ_TIMEOUT`]: it runs inside a Kafka rebalance, which a slow or unreachable
    /// store must not stall (the caller then starts from DuckDB's and the broker's
    /// offsets, which costs a re-read, never a row).
    fn read_log(&self, streams: &[String]) -> Result<HashMap<String, i64>, DeltaTableError> {
        let mut reader = lock(&self.reader);
        if reader.is_none() {
            let runtime =
                crate::table::runtime().map_err(|e| DeltaTableError::Generic(e.to_string()))?;
            let table = self.store.table(&self.table)?;
            *reader = Some((runtime, table));
        }
        let Some((runtime, table)) = reader.as_mut() else {
            return Ok(HashMap::new());
        };
        runtime
            // The timer is made inside the runtime (it needs its time driver).
            .block_on(async {
                tokio::time::timeout(READ_TIMEOUT, read_versions(table, streams)).await
            })
            .map_err(|_| {
                DeltaTableError::Generic(format!("no answer from the store in {READ_TIMEOUT:?}"))
            })?
    }
}

/// Longest a read of the log may take.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn read_versions(
    table: &mut DeltaTable,
    streams: &[String],
) -> Result<HashMap<String, i64>, DeltaTableError> {
    if !crate::table::load_if_exists(table).await? {
        return Ok(HashMap::new());
    }
    let snapshot = table.snapshot()?;
    let log_store = table.log_store();
    let mut held = HashMap::new();
    for id in streams {
        if let Some(v) = snapshot.transaction_version(log_store.as_ref(), id).await? {
            held.insert(id.clone(), v);
        }
    }
    Ok(held)
}

impl SharedLedger for LakeLedger {
    fn known(&self, stream: &str) -> Option<i64> {
        lock(&self.known).get(stream).copied()
    }

    fn read(&self, streams: &[String]) -> Result<HashMap<String, i64>, SharedLedgerError> {
        let held = self
            .read_log(streams)
            .map_err(|e| format!("reading the Delta table {}: {e}", self.table))?;
        for (id, v) in &held {
            self.learn(id, *v);
        }
        Ok(held)
    }
}
