//! The warehouse (DuckDB file and Parquet directory) opened as the configuration says,
//! for `sluice run` and the one-shot commands alike.

use std::thread;

use sluice_core::{retry::Backoff, Ident};
use sluice_sinks::{ParquetSink, SinkError, Warehouse, WarehouseOptions};
use sluice_state::StateError;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{config::Config, health::Health};

/// How often a locked DuckDB file is tried again at start-up.
const LOCKED_RETRY: Backoff = Backoff::fixed(std::time::Duration::from_secs(1));

/// Opens the warehouse, waiting (not ready, retrying every second) while another process
/// holds the DuckDB file, such as a DuckDB CLI left open. `None` if stopped meanwhile.
pub fn open_when_free(
    config: &Config,
    health: &Health,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Warehouse>> {
    let mut warned = false;
    loop {
        match open(config) {
            Ok(w) => {
                health.set_waiting_for(None);
                return Ok(Some(w));
            }
            Err(e) if is_lock_conflict(&e) => {
                let what = format!(
                    "{} is locked by another process; waiting for it to close the file",
                    config.duckdb_path().display()
                );
                if !warned {
                    warn!(error = %e, "{what}");
                    warned = true;
                }
                health.set_waiting_for(Some(what));
            }
            Err(e) => return Err(e),
        }
        if stop.is_cancelled() {
            return Ok(None);
        }
        thread::sleep(LOCKED_RETRY.after(None));
    }
}

fn is_lock_conflict(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<SinkError>(),
        Some(SinkError::State(StateError::Locked { .. }))
    )
}

pub fn open(config: &Config) -> anyhow::Result<Warehouse> {
    let raw_schema = Ident::new(&config.duckdb.raw_schema)?;
    let parquet = config
        .parquet
        .enabled
        .then(|| ParquetSink::new(config.parquet_dir(), config.parquet.compression.into()));
    let warehouse = Warehouse::open(WarehouseOptions {
        db_path: config.duckdb_path(),
        raw_schema,
        memory_limit: config.duckdb.memory_limit.clone(),
        threads: config.duckdb.threads,
        checkpoint_threshold: config
            .duckdb
            .checkpoint_threshold
            .map(|b| format!("{}B", b.as_u64())),
        parquet,
    })?;
    Ok(warehouse)
}
