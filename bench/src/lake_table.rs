//! The lake side of the Kafka benchmark: a local Delta table's rows (from its files'
//! statistics, through delta-rs) and the time of its last commit.

use std::path::Path;

use anyhow::Context;
use sluice_lake::deltalake;

/// Rows in the table's current version, and its last commit's time (ms since the epoch).
pub fn rows_and_last_commit(table: &Path) -> anyhow::Result<(u64, i64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = url::Url::from_directory_path(table)
        .map_err(|()| anyhow::anyhow!("{} is not an absolute path", table.display()))?;
    let delta = runtime
        .block_on(deltalake::open_table(url))
        .with_context(|| format!("opening the Delta table {}", table.display()))?;
    let snapshot = delta.snapshot()?;
    let rows = snapshot
        .log_data()
        .iter()
        .map(|f| f.num_records().unwrap_or(0) as u64)
        .sum();
    let version = snapshot.version();
    let commit = table.join(format!("_delta_log/{version:020}.json"));
    let modified = std::fs::metadata(&commit)
        .and_then(|m| m.modified())
        .with_context(|| format!("the commit file {}", commit.display()))?;
    let ms = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    Ok((rows, ms))
}
